/**
 * Choosing the model output an adapter trains, through app.inject over a real SQLite database and
 * real onnxruntime sessions: a model uploaded with three outputs (ReLU activations [batch, 32] first,
 * logits [batch, 5], an int64 ArgMax), adapters and datasets on its logits, and the errors that
 * store nothing.
 */
import type { InjectOptions } from 'fastify';
import { unzipSync } from 'fflate';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { encodeModel, floatTensor, int64Tensor } from '../../src/onnx/index.js';
import type { Server } from '../../src/server/server.js';
import { multiOutputMlp, seeded, valueInfo } from '../fixtures.js';
import { ADMIN_KEY, bearer, cleanupTemp, multipart, pollUntil, startServer, testConfig } from './helpers.js';

const admin = bearer(ADMIN_KEY);
let server: Server;
let alice: Record<string, string>;
let modelId: string;

const inject = (opts: InjectOptions) => server.app.inject(opts);
const x = (i: number) => Array.from({ length: 20 }, (_, k) => Math.round(Math.sin(i * 7 + k) * 1000) / 1000);
const adapterBody = (extra: Record<string, unknown> = {}) => ({ modelId, targets: 'all', rank: 2, alpha: 4, seed: 3, optimizer: { type: 'loko', observation: 'probs' }, ...extra });
const createAdapter = (body: Record<string, unknown>) => inject({ method: 'POST', url: '/v1/adapters', payload: body, headers: alice });

function uploadDataset(rows: unknown[], fields: Record<string, string> = {}) {
  const body = multipart({ modelId, ...fields }, { bytes: Buffer.from(rows.map((r) => JSON.stringify(r)).join('\n') + '\n'), filename: 'rows.jsonl' });
  return inject({ method: 'POST', url: '/v1/datasets', payload: body.payload, headers: { ...alice, ...body.headers } });
}

beforeAll(async () => {
  server = await startServer(testConfig({ ADMIN_API_KEY: ADMIN_KEY, RATE_LIMIT_MAX: '0' }));
  const res = await inject({ method: 'POST', url: '/v1/users', payload: { name: 'alice' }, headers: admin });
  alice = bearer(res.json().apiKey.key as string);
  const body = multipart({ name: 'three-outputs' }, { bytes: encodeModel(multiOutputMlp()), filename: 'three.onnx' });
  const up = await inject({ method: 'POST', url: '/v1/models', payload: body.payload, headers: { ...admin, ...body.headers } });
  expect(up.statusCode, up.body).toBe(201);
  modelId = up.json().id;
  expect(up.json().outputs.map((o: { name: string }) => o.name)).toEqual(['hidden', 'logits', 'predicted']);
}, 60_000);

afterAll(async () => {
  await server?.close();
  cleanupTemp();
});

describe('the output an adapter trains', () => {
  it("is the model's first by default, and says so", async () => {
    const res = await createAdapter(adapterBody({ optimizer: { type: 'loko', observation: 'loss' } }));
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json().output).toBe('hidden');
    // 32 "classes": label 31 is in range, 32 is not.
    const id = res.json().id as string;
    const ok = await inject({ method: 'POST', url: `/v1/adapters/${id}/observe`, payload: { inputs: { x: [x(0)] }, labels: [31] }, headers: alice });
    expect(ok.statusCode, ok.body).toBe(200);
    const bad = await inject({ method: 'POST', url: `/v1/adapters/${id}/observe`, payload: { inputs: { x: [x(0)] }, labels: [32] }, headers: alice });
    expect(bad.json().code).toBe('INVALID_LABEL');
  });

  it('is the named one: observe and predict work on the logits, and labels are checked against its 5 classes', async () => {
    const res = await createAdapter(adapterBody({ output: 'logits' }));
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json()).toMatchObject({ output: 'logits', parameterCount: 2 * (20 + 32) + 2 * (32 + 32) + 2 * (32 + 5) });
    const id = res.json().id as string;
    expect((await inject({ url: `/v1/adapters/${id}`, headers: alice })).json().output).toBe('logits');

    const bad = await inject({ method: 'POST', url: `/v1/adapters/${id}/observe`, payload: { inputs: { x: [x(0)] }, labels: [5] }, headers: alice });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: 'INVALID_LABEL', message: expect.stringContaining('[0, 5)') });
    for (let i = 0; i < 3; i++) {
      const obs = await inject({ method: 'POST', url: `/v1/adapters/${id}/observe`, payload: { inputs: { x: [x(i)] }, labels: [i % 5] }, headers: alice });
      expect(obs.statusCode, obs.body).toBe(200);
      expect(obs.json().step).toBe(i + 1);
    }
    const pred = await inject({ method: 'POST', url: `/v1/adapters/${id}/predict`, payload: { inputs: { x: [x(7), x(8)] } }, headers: alice });
    expect(pred.statusCode, pred.body).toBe(200);
    const outputs = pred.json().outputs as number[][];
    expect(outputs.map((r) => r.length)).toEqual([5, 5]);
    expect((pred.json().variance as number[][]).map((r) => r.length)).toEqual([5, 5]);
  });

  it('downloads name it: the inference bundle lists it as trainedOutput, and the merged model gives predict\'s outputs on it', async () => {
    const id = (await createAdapter(adapterBody({ output: 'logits' }))).json().id as string;
    const obs = await inject({ method: 'POST', url: `/v1/adapters/${id}/observe`, payload: { inputs: { x: [x(1), x(2)] }, labels: [1, 2] }, headers: alice });
    expect(obs.statusCode, obs.body).toBe(200);
    const bundle = await inject({ url: `/v1/adapters/${id}/download?format=inference-onnx`, headers: alice });
    expect(bundle.statusCode).toBe(200);
    const listing = JSON.parse(new TextDecoder().decode(unzipSync(new Uint8Array(bundle.rawPayload))['inputs.json']!));
    expect(listing).toMatchObject({ outputs: ['hidden', 'logits', 'predicted'], trainedOutput: 'logits' });
    const merged = await inject({ url: `/v1/adapters/${id}/download?format=merged-onnx`, headers: alice });
    const session = await ort.InferenceSession.create(new Uint8Array(merged.rawPayload));
    try {
      const probe = [x(5), x(6)];
      const got = await session.run({ x: new ort.Tensor('float32', Float32Array.from(probe.flat()), [2, 20]) });
      const want = (await inject({ method: 'POST', url: `/v1/adapters/${id}/predict`, payload: { inputs: { x: probe } }, headers: alice })).json().outputs as number[][];
      const logits = Array.from(got['logits']!.data as Float32Array);
      want.flat().forEach((v, i) => expect(Math.abs(logits[i]! - v)).toBeLessThan(1e-4));
    } finally {
      await session.release();
    }
  });

  it('refuses an output the model does not have (MODEL_OUTPUT_NOT_FOUND) and an integer one (MODEL_UNSUPPORTED), storing nothing', async () => {
    const before = await server.ctx.repos.adapters.count();
    const missing = await createAdapter(adapterBody({ output: 'logit' }));
    expect(missing.statusCode).toBe(422);
    expect(missing.json()).toMatchObject({ code: 'MODEL_OUTPUT_NOT_FOUND', details: { field: 'output', output: 'logit', available: ['hidden', 'logits', 'predicted'] } });
    const integer = await createAdapter(adapterBody({ output: 'predicted' }));
    expect(integer.statusCode).toBe(422);
    expect(integer.json()).toMatchObject({ code: 'MODEL_UNSUPPORTED', message: expect.stringContaining("'predicted' is not float32") });
    const empty = await createAdapter(adapterBody({ output: '' }));
    expect(empty.json().code).toBe('VALIDATION_ERROR');
    expect(await server.ctx.repos.adapters.count()).toBe(before);
  });
});

describe('datasets and jobs on a chosen output', () => {
  const rows = (n: number, classes: number) => Array.from({ length: n }, (_, i) => ({ inputs: x(i), label: (i * 3) % classes }));

  it('checks labels against the named output, and a job trains only an adapter on that output', async () => {
    // Against the first output (32 classes) label 20 is fine; against the logits (5) it is not.
    expect((await uploadDataset(rows(2, 32).map((r) => ({ ...r, label: 20 })))).statusCode).toBe(201);
    const datasets = async () => (await inject({ url: '/v1/datasets', headers: alice })).json().items.length as number;
    const before = await datasets();
    const refused = await uploadDataset(rows(2, 32).map((r) => ({ ...r, label: 20 })), { output: 'logits' });
    expect(refused.statusCode).toBe(422);
    expect(refused.json()).toMatchObject({ code: 'DATASET_INVALID', message: expect.stringContaining('[0, 5)') });
    const unknown = await uploadDataset(rows(2, 5), { output: 'nope' });
    expect(unknown.statusCode).toBe(422);
    expect(unknown.json()).toMatchObject({ code: 'MODEL_OUTPUT_NOT_FOUND', details: { available: ['hidden', 'logits', 'predicted'] } });
    expect(await datasets()).toBe(before);

    const ds = await uploadDataset(rows(24, 5), { output: 'logits' });
    expect(ds.statusCode, ds.body).toBe(201);
    expect(ds.json().summary.label).toEqual({ kind: 'class', output: 'logits', classes: 5, counts: [5, 5, 4, 5, 5] });
    const datasetId = ds.json().id as string;

    const onFirst = (await createAdapter(adapterBody())).json().id as string;
    const mismatch = await inject({ method: 'POST', url: '/v1/jobs', payload: { adapterId: onFirst, datasetId, epochs: 1, batchSize: 8 }, headers: alice });
    expect(mismatch.statusCode).toBe(422);
    expect(mismatch.json()).toMatchObject({ code: 'DATASET_OUTPUT_MISMATCH', details: { datasetOutput: 'logits', adapterOutput: 'hidden' } });
    expect((await inject({ url: `/v1/jobs?adapterId=${onFirst}`, headers: alice })).json().items).toEqual([]);

    const onLogits = (await createAdapter(adapterBody({ output: 'logits', optimizer: { type: 'adamw', lr: 0.01 } }))).json().id as string;
    const job = await inject({ method: 'POST', url: '/v1/jobs', payload: { adapterId: onLogits, datasetId, epochs: 1, batchSize: 8 }, headers: alice });
    expect(job.statusCode, job.body).toBe(201);
    const done = await pollUntil('the job', async () => (await inject({ url: `/v1/jobs/${job.json().id}`, headers: alice })).json(), (j) => ['succeeded', 'failed'].includes(j.status), 60_000);
    expect(done.status, JSON.stringify(done)).toBe('succeeded');
    expect((await inject({ url: `/v1/adapters/${onLogits}`, headers: alice })).json().step).toBe(3);
  });
});

describe('a regression output of rank 3', () => {
  /** x [batch, 4] → MatMul by a [4, 6] weight → Reshape to y [batch, 2, 3]. */
  function rank3(): Uint8Array {
    const rand = seeded(8);
    return encodeModel({
      irVersion: 9,
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'rank3',
        input: [valueInfo('x', 1, ['batch', 4])],
        output: [valueInfo('y', 1, ['batch', 2, 3])],
        initializer: [floatTensor('W', [4, 6], Array.from({ length: 24 }, () => rand() - 0.5)), int64Tensor('y_shape', [3], [0, 2, 3])],
        node: [
          { opType: 'MatMul', name: '/proj/MatMul', input: ['x', 'W'], output: ['h'] },
          { opType: 'Reshape', name: '/out/Reshape', input: ['h', 'y_shape'], output: ['y'] },
        ],
      },
    });
  }

  it('takes targets of all 6 values a sample (the flattened output), in datasets as in observe, and a job trains on them', async () => {
    const body = multipart({ name: 'rank3' }, { bytes: rank3(), filename: 'rank3.onnx' });
    const up = await inject({ method: 'POST', url: '/v1/models', payload: body.payload, headers: { ...admin, ...body.headers } });
    expect(up.statusCode, up.body).toBe(201);
    const id = up.json().id as string;
    const rows = (k: number) => Array.from({ length: 16 }, (_, i) => ({ inputs: [i / 16, 1 - i / 16, Math.sin(i), 0.5], label: Array.from({ length: k }, (_, c) => Math.cos(i + c)) }));
    const upload = (r: unknown[]) => {
      const b = multipart({ modelId: id, task: 'regression' }, { bytes: Buffer.from(r.map((x) => JSON.stringify(x)).join('\n')), filename: 'r.jsonl' });
      return inject({ method: 'POST', url: '/v1/datasets', payload: b.payload, headers: { ...alice, ...b.headers } });
    };
    const short = await upload(rows(3));
    expect(short.statusCode).toBe(422);
    expect(short.json()).toMatchObject({ code: 'DATASET_INVALID', message: "row 1, field 'label': a regression label needs 6 values, got 3" });
    const ds = await upload(rows(6));
    expect(ds.statusCode, ds.body).toBe(201);
    expect(ds.json().summary.label).toEqual({ kind: 'vector', output: 'y', size: 6 });

    const adapter = await createAdapter({ modelId: id, targets: 'all', rank: 1, seed: 2, optimizer: { type: 'loko', observation: 'regression' } });
    expect(adapter.statusCode, adapter.body).toBe(201);
    const aid = adapter.json().id as string;
    const obs = await inject({ method: 'POST', url: `/v1/adapters/${aid}/observe`, payload: { inputs: { x: [[0.1, 0.2, 0.3, 0.4]] }, labels: [[1, 2, 3, 4, 5, 6]] }, headers: alice });
    expect(obs.statusCode, obs.body).toBe(200);
    const job = await inject({ method: 'POST', url: '/v1/jobs', payload: { adapterId: aid, datasetId: ds.json().id, epochs: 1, batchSize: 4 }, headers: alice });
    expect(job.statusCode, job.body).toBe(201);
    const done = await pollUntil('the job', async () => (await inject({ url: `/v1/jobs/${job.json().id}`, headers: alice })).json(), (j) => ['succeeded', 'failed'].includes(j.status), 60_000);
    expect(done.status, JSON.stringify(done)).toBe('succeeded');
    expect((await inject({ url: `/v1/adapters/${aid}`, headers: alice })).json().step).toBe(1 + 4);
  });
});
