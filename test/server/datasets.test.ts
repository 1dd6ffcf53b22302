/**
 * Datasets through app.inject over a real SQLite database, on a fixture model (input x: float32
 * [batch, 20], 5 classes): JSONL and CSV uploads in every documented layout, errors that name the row
 * and field (and store nothing), ownership, size limits.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Server } from '../../src/server/server.js';
import { parseDataset, toFeeds, type DatasetSignature } from '../../src/server/services/datasets.js';
import { ADMIN_KEY, bearer, cleanupTemp, filesUnder, modelsDir, multipart, startServer, testConfig } from './helpers.js';

const MAX_UPLOAD = 64 * 1024;
const admin = bearer(ADMIN_KEY);
let server: Server;
let dataDir: string;
let alice: Record<string, string>;
let bob: Record<string, string>;
let modelId: string;

const inject = (opts: InjectOptions) => server.app.inject(opts);

function upload(text: string, fields: Record<string, string> = {}, filename = 'data.jsonl', headers = alice) {
  const body = multipart({ modelId, ...fields }, { bytes: Buffer.from(text), filename });
  return inject({ method: 'POST', url: '/v1/datasets', payload: body.payload, headers: { ...headers, ...body.headers } });
}

const x = (i: number, n = 20) => Array.from({ length: n }, (_, k) => Math.round(Math.sin(i * 7 + k) * 1000) / 1000);
const jsonl = (rows: unknown[]) => rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n';
const goodRows = (n: number) => Array.from({ length: n }, (_, i) => ({ inputs: x(i), label: i % 5 }));
const csvHeader = (n = 20) => [...Array.from({ length: n }, (_, k) => `x.${k}`), 'label'].join(',');

async function expectInvalid(res: Awaited<ReturnType<typeof upload>>, row: number | null, field: string | null) {
  expect(res.statusCode, res.body).toBe(422);
  const body = res.json();
  expect(body.code).toBe('DATASET_INVALID');
  expect(body.details).toMatchObject({ row, field });
  return body as { message: string };
}

beforeAll(async () => {
  const config = testConfig({ ADMIN_API_KEY: ADMIN_KEY, MAX_UPLOAD_BYTES: String(MAX_UPLOAD), MODELS_DIR: modelsDir({ mlp: 'mlp.opset17' }), RATE_LIMIT_MAX: '0' });
  dataDir = config.dataDir;
  server = await startServer(config);
  for (const name of ['alice', 'bob']) {
    const res = await inject({ method: 'POST', url: '/v1/users', payload: { name }, headers: admin });
    const key = bearer(res.json().apiKey.key as string);
    if (name === 'alice') alice = key;
    else bob = key;
  }
  modelId = ((await inject({ url: '/v1/models', headers: alice })).json().items as { id: string; name: string }[]).find((m) => m.name === 'mlp')!.id;
}, 60_000);

afterAll(async () => {
  await server?.close();
  cleanupTemp();
});

describe('upload', () => {
  it('stores a JSONL dataset content-addressed and describes it', async () => {
    const text = jsonl(goodRows(12));
    const res = await upload(text, { name: 'twelve' });
    expect(res.statusCode, res.body).toBe(201);
    const d = res.json();
    expect(d).toMatchObject({ name: 'twelve', modelId, format: 'jsonl', rows: 12, size: Buffer.byteLength(text) });
    expect(d.summary).toEqual({ inputs: [{ name: 'x', dtype: 'float32', shape: [20] }], label: { kind: 'class', output: 'logits', classes: 5, counts: [3, 3, 2, 2, 2] } });
    expect(d.id).toMatch(/^dst_/);
    expect(existsSync(join(dataDir, 'blobs', 'sha256', d.sha256.slice(0, 2), d.sha256))).toBe(true);
    const got = await inject({ url: `/v1/datasets/${d.id}`, headers: alice });
    expect(got.json()).toEqual(d);
    expect((await inject({ url: '/v1/datasets', headers: alice })).json().items.map((i: { id: string }) => i.id)).toContain(d.id);
  });

  it('accepts inputs keyed by input name, base64 float32 {data, shape}, and blank lines', async () => {
    const b64 = Buffer.from(new Float32Array(x(3)).buffer).toString('base64');
    const res = await upload(jsonl([{ inputs: { x: x(1) }, label: 0 }, '', { inputs: { data: b64, shape: [20] }, label: 4 }, { inputs: { x: { data: b64, shape: [20] } }, label: 2 }]));
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json().rows).toBe(3);
  });

  it('reads regression targets (one per model output) when the upload says task=regression, in JSONL and in CSV', async () => {
    const target = (i: number) => Array.from({ length: 5 }, (_, k) => Math.round(Math.cos(i + k) * 100) / 100);
    const rows = Array.from({ length: 6 }, (_, i) => ({ inputs: x(i), label: target(i) }));
    const refused = await upload(jsonl(rows), { name: 'targets' });
    const msg = await expectInvalid(refused, 1, 'label');
    expect(msg.message).toContain('task=regression');
    const res = await upload(jsonl(rows), { name: 'targets', task: 'regression' });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json().summary.label).toEqual({ kind: 'vector', output: 'logits', size: 5 });
    const csv = [[...Array.from({ length: 20 }, (_, k) => `x.${k}`), ...Array.from({ length: 5 }, (_, k) => `label.${k}`)].join(','), ...rows.map((r) => [...r.inputs, ...r.label].join(','))].join('\n');
    const viaCsv = await upload(csv, { task: 'regression' }, 'targets.csv');
    expect(viaCsv.statusCode, viaCsv.body).toBe(201);
    expect(viaCsv.json()).toMatchObject({ format: 'csv', rows: 6, summary: { label: { kind: 'vector', size: 5 } } });
    await expectInvalid(await upload(csv.replace('label.4', 'label.9'), { task: 'regression' }, 'targets.csv'), 1, 'label');
  });

  it('accepts CSV with <input>.<i> columns in any order, and with positional feature columns', async () => {
    const named = [`label,${csvHeader().replace(',label', '')}`, ...Array.from({ length: 6 }, (_, i) => [i % 5, ...x(i)].join(','))].join('\n');
    const r1 = await upload(named, {}, 'named.csv');
    expect(r1.statusCode, r1.body).toBe(201);
    expect(r1.json()).toMatchObject({ format: 'csv', rows: 6 });
    expect(r1.json().summary.columns[0]).toBe('label');
    const positional = [[...Array.from({ length: 20 }, (_, k) => `f${k}`), 'label'].join(','), ...Array.from({ length: 4 }, (_, i) => [...x(i), i].join(','))].join('\r\n');
    const r2 = await upload(positional, { format: 'csv' }, 'blob.txt');
    expect(r2.statusCode, r2.body).toBe(201);
    expect(r2.json()).toMatchObject({ format: 'csv', rows: 4 });
  });
});

describe('errors name the row and field, and nothing is stored', () => {
  it('a row that is not JSON', async () => {
    const before = filesUnder(join(dataDir, 'blobs'));
    const count = (await inject({ url: '/v1/datasets', headers: alice })).json().items.length;
    const rows = jsonl([...goodRows(2), '{"inputs": [1, 2', ...goodRows(1)]);
    const body = await expectInvalid(await upload(rows), 3, null);
    expect(body.message).toMatch(/row 3/);
    expect(filesUnder(join(dataDir, 'blobs'))).toEqual(before);
    expect((await inject({ url: '/v1/datasets', headers: alice })).json().items.length).toBe(count);
  });

  it('a wrong-length input', async () => {
    const body = await expectInvalid(await upload(jsonl([...goodRows(1), { inputs: x(1, 19), label: 1 }])), 2, 'inputs');
    expect(body.message).toMatch(/expected 20 values/);
    await expectInvalid(await upload(jsonl([{ inputs: { x: x(0, 21) }, label: 1 }])), 1, 'inputs.x');
    await expectInvalid(await upload(jsonl([{ inputs: { y: x(0) }, label: 1 }])), 1, 'inputs.x');
  });

  it('a NaN label, an out-of-range label, a missing label', async () => {
    const nan = `${JSON.stringify(goodRows(3)[0])}\n${JSON.stringify(goodRows(3)[1])}\n{"inputs": ${JSON.stringify(x(2))}, "label": NaN}\n`;
    const body = await expectInvalid(await upload(nan), 3, 'label');
    expect(body.message).toMatch(/finite/);
    await expectInvalid(await upload(jsonl([{ inputs: x(0), label: 5 }])), 1, 'label');
    await expectInvalid(await upload(jsonl([{ inputs: x(0), label: 1.5 }])), 1, 'label');
    await expectInvalid(await upload(jsonl([{ inputs: x(0) }])), 1, 'label');
  });

  it('a non-finite or non-numeric input value', async () => {
    const bad = x(0);
    const line = `{"inputs": [${bad.slice(0, 4).join(',')}, Infinity, ${bad.slice(5).join(',')}], "label": 0}`;
    const body = await expectInvalid(await upload(line + '\n'), 1, 'inputs');
    expect(body.message).toMatch(/value 4/);
    await expectInvalid(await upload(jsonl([{ inputs: [...x(0).slice(0, 19), 'a'], label: 0 }])), 1, 'inputs');
  });

  it('a CSV with a missing column, a missing label column, a NaN cell, a short row', async () => {
    const cols = csvHeader().split(',').filter((c) => c !== 'x.7');
    const rows = [cols.join(','), [...x(0).slice(0, 19), 0].join(',')].join('\n');
    const body = await expectInvalid(await upload(rows, {}, 'd.csv'), 1, 'x.7');
    expect(body.message).toMatch(/missing column/);
    await expectInvalid(await upload([csvHeader().replace(',label', ''), x(0).join(',')].join('\n'), {}, 'd.csv'), 1, 'label');
    await expectInvalid(await upload([csvHeader(), [...x(0), 1].join(','), [...x(1), 'NaN'].join(',')].join('\n'), {}, 'd.csv'), 3, 'label');
    await expectInvalid(await upload([csvHeader(), [...x(0).slice(0, 3), 'oops', ...x(0).slice(4), 1].join(',')].join('\n'), {}, 'd.csv'), 2, 'x.3');
    await expectInvalid(await upload([csvHeader(), x(0).join(',')].join('\n'), {}, 'd.csv'), 2, 'label');
  });

  it('text for a model without a tokenizer', async () => {
    const body = await expectInvalid(await upload(jsonl([...goodRows(1), { inputs: 'hello there', label: 1 }])), 2, 'inputs');
    expect(body.message).toMatch(/tokenizer/);
  });

  it('an empty file', async () => {
    const res = await upload('\n\n');
    expect(res.statusCode).toBe(422);
    expect(res.json().code).toBe('DATASET_INVALID');
  });
});

describe('requests', () => {
  it('refuses an upload over MAX_UPLOAD_BYTES with 413 and stores nothing', async () => {
    const before = filesUnder(join(dataDir, 'blobs'));
    const res = await upload(jsonl(goodRows(600)));
    expect(res.statusCode).toBe(413);
    expect(res.json().code).toBe('PAYLOAD_TOO_LARGE');
    expect(filesUnder(join(dataDir, 'blobs'))).toEqual(before);
  });

  it('wants a modelId that exists, and a file', async () => {
    const body = multipart({}, { bytes: Buffer.from(jsonl(goodRows(1))), filename: 'a.jsonl' });
    const res = await inject({ method: 'POST', url: '/v1/datasets', payload: body.payload, headers: { ...alice, ...body.headers } });
    expect(res.statusCode).toBe(400);
    expect(res.json().code).toBe('VALIDATION_ERROR');
    const unknown = await upload(jsonl(goodRows(1)), { modelId: 'mdl_nope' });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().code).toBe('MODEL_NOT_FOUND');
    const nofile = multipart({ modelId });
    const r3 = await inject({ method: 'POST', url: '/v1/datasets', payload: nofile.payload, headers: { ...alice, ...nofile.headers } });
    expect(r3.statusCode).toBe(400);
    expect(r3.json().code).toBe('MULTIPART_INVALID');
  });

  it("answers 404 for another user's dataset and keeps it out of their list", async () => {
    const d = (await upload(jsonl(goodRows(2)))).json();
    const res = await inject({ url: `/v1/datasets/${d.id}`, headers: bob });
    expect(res.statusCode).toBe(404);
    expect(res.json().code).toBe('DATASET_NOT_FOUND');
    expect((await inject({ url: '/v1/datasets', headers: bob })).json().items).toEqual([]);
    expect((await inject({ url: `/v1/datasets/${d.id}`, headers: {} })).statusCode).toBe(401);
  });
});

describe('integer and float64 inputs (parseDataset, toFeeds)', () => {
  const sig = (dtype: string): DatasetSignature => ({ inputs: [{ name: 'ids', dtype, dims: [3] }], task: 'classification', classes: 2, output: 'logits' });
  const rows = (values: number[][]) => new TextEncoder().encode(values.map((v, i) => JSON.stringify({ inputs: v, label: i % 2 })).join('\n'));

  it.each([
    ['int64', BigInt64Array, [[1, 2 ** 40, -5], [0, 1, 2]]],
    ['int32', Int32Array, [[1, 2 ** 31 - 1, -(2 ** 31)], [0, 1, 2]]],
    ['int8', Int8Array, [[127, -128, 0], [1, 2, 3]]],
    ['uint8', Uint8Array, [[255, 0, 7], [1, 2, 3]]],
    ['float64', Float64Array, [[0.1, 1e-300, -2.5], [1, 2, 3]]],
    ['float32', Float32Array, [[0.5, -1, 2], [1, 2, 3]]],
  ] as const)('%s: the feeds have the input\'s own element type and the values sent', (dtype, Type, values) => {
    const parsed = parseDataset(rows(values as unknown as number[][]), 'jsonl', sig(dtype));
    const feed = toFeeds(parsed.samples, parsed.summary).ids!;
    expect(feed.data).toBeInstanceOf(Type);
    expect(feed.dims).toEqual([2, 3]);
    const flat = (values as unknown as number[][]).flat();
    expect(Array.from(feed.data as ArrayLike<number | bigint>, (v) => (typeof v === 'bigint' ? Number(v) : v))).toEqual(dtype === 'float32' ? Array.from(Float32Array.from(flat)) : flat);
  });

  it.each([
    ['int32', 2 ** 31], ['int32', -(2 ** 31) - 1], ['int8', 128], ['uint8', -1], ['uint8', 256], ['int64', 2 ** 53],
  ] as const)('%s: %s is refused as out of range, naming row and field', (dtype, bad) => {
    expect(() => parseDataset(rows([[0, 1, 2], [1, bad, 2]]), 'jsonl', sig(dtype))).toThrow(expect.objectContaining({
      code: 'DATASET_INVALID', details: expect.objectContaining({ row: 2, field: 'inputs', index: 1 }), message: expect.stringContaining('outside'),
    }));
  });

  it('float16 inputs: refused with a message (JSON numbers cannot feed them)', () => {
    expect(() => parseDataset(rows([[0, 1, 2]]), 'jsonl', sig('float16'))).toThrow(expect.objectContaining({ code: 'DATASET_INVALID', message: expect.stringContaining('float16') }));
  });
});
