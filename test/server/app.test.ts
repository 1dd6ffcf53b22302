/**
 * The app through app.inject, over a real SQLite database in a temp DATA_DIR and a real ONNX Runtime:
 * health, readiness, metrics, the OpenAPI document, auth and ownership, model upload (good, malformed,
 * oversized, duplicate), targets, adapter creation and its validation errors, deletion rules.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { OPTIMIZER_TYPES } from '../../src/kalman/index.js';
import { decodeModel, encodeModel } from '../../src/onnx/index.js';
import { encodeAttrs, floatTensor, int64Tensor, type NodeProto, type TensorProto } from '../../src/onnx/proto.js';
import type { Server } from '../../src/server/server.js';
import { ADMIN_KEY, bearer, cleanupTemp, filesUnder, fixture, multipart, startServer, testConfig } from './helpers.js';
import { valueInfo } from '../fixtures.js';

const MAX_UPLOAD = 256 * 1024;
let server: Server;
let dataDir: string;
const admin = bearer(ADMIN_KEY);
let alice: Record<string, string>;
let bob: Record<string, string>;
let modelId: string;

const inject = (opts: InjectOptions) => server.app.inject(opts);

async function upload(bytes: Uint8Array, fields: Record<string, string> = { name: 'mlp' }, headers = admin) {
  const body = multipart(fields, { bytes, filename: 'mlp.onnx' });
  return inject({ method: 'POST', url: '/v1/models', payload: body.payload, headers: { ...headers, ...body.headers } });
}

async function createAdapter(body: Record<string, unknown>, headers = alice) {
  return inject({ method: 'POST', url: '/v1/adapters', payload: body, headers });
}

/**
 * The fixture MLP with one node added: after the logits (`where: 'output'`, the graph output keeps its
 * name, and `dims` replaces its shape) or on the input x, before every LoRA target.
 */
function mlpWith(where: 'output' | 'input', op: string, consts: TensorProto[], attrs: Record<string, number> = {}, dims?: (string | number)[]): Uint8Array {
  const m = decodeModel(fixture('mlp.opset17'));
  const g = m.graph!;
  const [from, to] = where === 'output' ? ['pre_logits', 'logits'] : ['x', 'x_through'];
  for (const n of g.node!) {
    if (where === 'output') n.output = n.output!.map((o) => (o === 'logits' ? from : o));
    else n.input = n.input!.map((i) => (i === 'x' ? to : i));
  }
  const node: NodeProto = { opType: op, domain: '', name: `added_${op}`, input: [from, ...consts.map((t) => t.name!)], output: [to], attribute: encodeAttrs(attrs) };
  if (where === 'output') g.node!.push(node);
  else g.node!.unshift(node);
  g.initializer!.push(...consts);
  if (dims) g.output![0]!.type!.tensorType!.shape!.dim = dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d }));
  return encodeModel(m);
}

const goodAdapter = () => ({ modelId, targets: ['fc1', 'head'], rank: 4, alpha: 8, optimizer: { type: 'loko' }, seed: 7 });

beforeAll(async () => {
  const config = testConfig({ ADMIN_API_KEY: ADMIN_KEY, MAX_UPLOAD_BYTES: String(MAX_UPLOAD), BODY_LIMIT: String(64 * 1024) });
  dataDir = config.dataDir;
  server = await startServer(config);
  for (const name of ['alice', 'bob']) {
    const res = await inject({ method: 'POST', url: '/v1/users', payload: { name }, headers: admin });
    expect(res.statusCode).toBe(201);
    const key = res.json().apiKey.key as string;
    if (name === 'alice') alice = bearer(key);
    else bob = bearer(key);
  }
});

afterAll(async () => {
  await server?.close();
  cleanupTemp();
});

describe('health, readiness, metrics, docs', () => {
  it('answers /healthz and /readyz (database and ONNX Runtime checked) without a key', async () => {
    expect((await inject({ url: '/healthz' })).json()).toEqual({ status: 'ok' });
    const ready = await inject({ url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ status: 'ready', checks: { database: { ok: true, provider: 'sqlite' }, onnxruntime: { ok: true, provider: 'cpu' } } });
  });

  it('gives each response a request id, and keeps the caller`s', async () => {
    const res = await inject({ url: '/healthz' });
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect((await inject({ url: '/healthz', headers: { 'x-request-id': 'trace-123' } })).headers['x-request-id']).toBe('trace-123');
  });

  it('serves Prometheus text with request counts by route pattern, adapters and models', async () => {
    await inject({ url: '/v1/adapters/adp_nope', headers: alice });
    const res = await inject({ url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/text\/plain/);
    expect(res.body).toMatch(/http_requests_total\{method="GET",route="\/v1\/adapters\/:id",status="404"\} \d+/);
    expect(res.body).toContain('http_request_duration_seconds_bucket');
    expect(res.body).toMatch(/^adapters \d+$/m);
    expect(res.body).toMatch(/^base_models \d+$/m);
    expect(res.body).toContain('adapter_observes_total');
  });

  it('serves the OpenAPI document at /docs/json and the UI at /docs', async () => {
    const spec = (await inject({ url: '/docs/json' })).json();
    expect(spec.openapi).toMatch(/^3\./);
    for (const path of ['/v1/models', '/v1/models/{id}', '/v1/adapters', '/v1/adapters/{id}', '/v1/users', '/healthz', '/readyz']) expect(spec.paths).toHaveProperty([path]);
    const create = spec.paths['/v1/adapters'].post;
    expect(create.requestBody.content['application/json'].schema.required).toEqual(expect.arrayContaining(['modelId', 'targets', 'rank', 'optimizer']));
    expect(create.responses['201']).toBeDefined();
    const ui = await inject({ url: '/docs' });
    expect([200, 302]).toContain(ui.statusCode);
  });

  it('answers unknown routes and bad JSON in the error shape', async () => {
    expect((await inject({ url: '/v1/nope', headers: alice })).json()).toMatchObject({ code: 'ROUTE_NOT_FOUND' });
    const bad = await inject({ method: 'POST', url: '/v1/adapters', payload: '{"rank": 4', headers: { ...alice, 'content-type': 'application/json' } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().code).toBe('INVALID_JSON');
  });

  it('refuses a JSON body over BODY_LIMIT with 413 PAYLOAD_TOO_LARGE', async () => {
    const res = await createAdapter({ ...goodAdapter(), name: 'x'.repeat(70 * 1024) });
    expect(res.statusCode).toBe(413);
    expect(res.json().code).toBe('PAYLOAD_TOO_LARGE');
  });
});

describe('auth', () => {
  it('answers 401 UNAUTHENTICATED without a key, with an unknown key and with a malformed header', async () => {
    for (const headers of [{}, bearer(`olk_abcdefgh_${'A'.repeat(43)}`), bearer('not-a-key'), { authorization: 'Basic abc' }, bearer(`${ADMIN_KEY}x`)]) {
      const res = await inject({ url: '/v1/models', headers });
      expect(res.statusCode).toBe(401);
      expect(res.json()).toMatchObject({ code: 'UNAUTHENTICATED' });
    }
  });

  it('tells a key who it belongs to', async () => {
    expect((await inject({ url: '/v1/me', headers: alice })).json()).toMatchObject({ user: { name: 'alice' }, isAdmin: false, mode: 'api-key' });
    expect((await inject({ url: '/v1/me', headers: admin })).json()).toMatchObject({ user: { name: 'admin' }, isAdmin: true, mode: 'admin-key' });
  });

  it('keeps user management and model upload/deletion to admins (403 FORBIDDEN)', async () => {
    expect((await inject({ method: 'POST', url: '/v1/users', payload: { name: 'mallory' }, headers: alice })).json().code).toBe('FORBIDDEN');
    const res = await upload(fixture(), { name: 'sneaky' }, alice);
    expect(res.statusCode).toBe(403);
    expect(res.json().code).toBe('FORBIDDEN');
    expect((await inject({ url: '/v1/models', headers: alice })).json().items.map((m: { name: string }) => m.name)).not.toContain('sneaky');
  });

  it('refuses a taken user name with 409 NAME_TAKEN', async () => {
    const res = await inject({ method: 'POST', url: '/v1/users', payload: { name: 'alice' }, headers: admin });
    expect(res.statusCode).toBe(409);
    expect(res.json().code).toBe('NAME_TAKEN');
  });

  it('stops a revoked key at once', async () => {
    const created = (await inject({ method: 'POST', url: '/v1/users', payload: { name: 'carol' }, headers: admin })).json();
    const carol = bearer(created.apiKey.key);
    expect((await inject({ url: '/v1/me', headers: carol })).statusCode).toBe(200);
    const revoked = await inject({ method: 'DELETE', url: `/v1/users/${created.user.id}/keys/${created.apiKey.id}`, headers: admin });
    expect(revoked.json().revokedAt).not.toBeNull();
    expect((await inject({ url: '/v1/me', headers: carol })).statusCode).toBe(401);
  });

  it('stores only the hash of a key', async () => {
    const key = (await inject({ method: 'POST', url: '/v1/users/' + (await inject({ url: '/v1/me', headers: alice })).json().user.id + '/keys', payload: {}, headers: admin })).json().key as string;
    const rows = await server.ctx.db.prisma.apiKey.findMany();
    expect(JSON.stringify(rows)).not.toContain(key.slice(13));
  });
});

describe('models', () => {
  it('uploads a real ONNX model, stores it content-addressed, and lists its targets', async () => {
    const res = await upload(fixture('mlp.opset17'), { name: 'mlp', description: 'fixture MLP' });
    expect(res.statusCode).toBe(201);
    const m = res.json();
    modelId = m.id;
    expect(m).toMatchObject({ name: 'mlp', description: 'fixture MLP', builtin: false, opset: 17, size: fixture().length });
    expect(m.inputs).toEqual([{ name: 'x', dtype: 'float32', shape: ['batch', 20] }]);
    expect(existsSync(join(dataDir, 'blobs', 'sha256', m.sha256.slice(0, 2), m.sha256))).toBe(true);

    const got = (await inject({ url: `/v1/models/${modelId}`, headers: alice })).json();
    expect(got.targets.map((t: { module: string; op: string; in: number; out: number }) => [t.module, t.op, t.in, t.out])).toEqual([
      ['fc1', 'Gemm', 20, 32],
      ['fc2', 'Gemm', 32, 32],
      ['head', 'Gemm', 32, 5],
    ]);
    expect((await inject({ url: '/v1/models', headers: bob })).json().items.map((x: { id: string }) => x.id)).toContain(modelId);
  });

  it('refuses the same bytes again (409 MODEL_EXISTS) and a taken name (409 NAME_TAKEN)', async () => {
    const again = await upload(fixture('mlp.opset17'), { name: 'mlp-again' });
    expect(again.statusCode).toBe(409);
    expect(again.json()).toMatchObject({ code: 'MODEL_EXISTS', details: { id: modelId } });
    const sameName = await upload(fixture('cnn.opset17'), { name: 'mlp' });
    expect(sameName.statusCode).toBe(409);
    expect(sameName.json().code).toBe('NAME_TAKEN');
  });

  it('refuses malformed bytes with 422 MODEL_FORMAT and stores nothing', async () => {
    const before = { files: filesUnder(dataDir), models: await server.ctx.repos.models.count() };
    for (const bytes of [Buffer.from('this is not an onnx model at all'), fixture().subarray(0, 4000), Buffer.alloc(0)]) {
      const res = await upload(bytes, { name: 'broken' });
      expect(res.statusCode).toBe(422);
      expect(res.json().code).toBe('MODEL_FORMAT');
    }
    expect(filesUnder(dataDir)).toEqual(before.files);
    expect(await server.ctx.repos.models.count()).toBe(before.models);
  });

  it('refuses an upload over MAX_UPLOAD_BYTES with 413 PAYLOAD_TOO_LARGE and stores nothing', async () => {
    const before = { files: filesUnder(dataDir), models: await server.ctx.repos.models.count() };
    const res = await upload(Buffer.alloc(MAX_UPLOAD + 1024, 7), { name: 'huge' });
    expect(res.statusCode).toBe(413);
    expect(res.json()).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', details: { limit: MAX_UPLOAD } });
    expect(filesUnder(dataDir)).toEqual(before.files);
    expect(await server.ctx.repos.models.count()).toBe(before.models);
    expect(readdirSync(join(dataDir, 'tmp'))).toEqual([]);
  });

  it('answers a bad upload request with its own code', async () => {
    const noFile = multipart({ name: 'x' });
    expect((await inject({ method: 'POST', url: '/v1/models', payload: noFile.payload, headers: { ...admin, ...noFile.headers } })).json().code).toBe('MULTIPART_INVALID');
    const json = await inject({ method: 'POST', url: '/v1/models', payload: { name: 'x' }, headers: admin });
    expect(json.statusCode).toBe(415);
    expect(json.json().code).toBe('UNSUPPORTED_MEDIA_TYPE');
    const badName = await upload(fixture('cnn.opset17'), { name: '../../etc' });
    expect(badName.statusCode).toBe(400);
    expect(badName.json().code).toBe('VALIDATION_ERROR');
  });

  it('answers 404 MODEL_NOT_FOUND for an unknown id', async () => {
    const res = await inject({ url: '/v1/models/mdl_nope', headers: alice });
    expect(res.statusCode).toBe(404);
    expect(res.json().code).toBe('MODEL_NOT_FOUND');
  });
});

describe('adapters', () => {
  let aliceAdapter: string;

  it('creates an adapter with the optimizer defaults filled in', async () => {
    const res = await createAdapter({ ...goodAdapter(), name: 'first', optimizer: { type: 'loko', r0: 0.02 } });
    expect(res.statusCode).toBe(201);
    const a = res.json();
    aliceAdapter = a.id;
    expect(a).toMatchObject({
      name: 'first',
      modelId,
      targets: ['fc1', 'head'],
      modules: [
        { module: 'fc1', in: 20, out: 32 },
        { module: 'head', in: 32, out: 5 },
      ],
      rank: 4,
      alpha: 8,
      rslora: false,
      observation: 'loss',
      seed: 7,
      step: 0,
      status: 'ready',
      parameterCount: 4 * (20 + 32) + 4 * (32 + 5),
    });
    expect(a.optimizer).toMatchObject({ type: 'loko', r0: 0.02, observation: 'loss', noise: 'ema', p0Low: 0.03 });
    expect((await inject({ url: `/v1/adapters/${a.id}`, headers: alice })).json()).toEqual(a);
  });

  it.each(OPTIMIZER_TYPES)('creates a %s adapter', async (type) => {
    const res = await createAdapter({ modelId, targets: { regex: 'fc.*' }, rank: 2, optimizer: { type }, observation: 'loss' });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ optimizer: { type }, observation: 'loss', alpha: 2, modules: [{ module: 'fc1' }, { module: 'fc2' }] });
  });

  describe('refuses a bad request with its own status and code, storing nothing', () => {
    const cases: [string, () => Record<string, unknown>, number, string][] = [
      ['negative rank', () => ({ ...goodAdapter(), rank: -2 }), 400, 'LORA_INVALID_RANK'],
      ['fractional rank', () => ({ ...goodAdapter(), rank: 1.5 }), 400, 'LORA_INVALID_RANK'],
      ['rank of the wrong type', () => ({ ...goodAdapter(), rank: 'four' }), 400, 'VALIDATION_ERROR'],
      ['negative alpha', () => ({ ...goodAdapter(), alpha: -1 }), 400, 'INVALID_CONFIG'],
      ['unknown optimizer type', () => ({ ...goodAdapter(), optimizer: { type: 'lbfgs' } }), 400, 'OPTIMIZER_UNKNOWN_TYPE'],
      ['hyperparameter out of range', () => ({ ...goodAdapter(), optimizer: { type: 'adamw', lr: -1 } }), 400, 'OPTIMIZER_CONFIG'],
      ['unknown hyperparameter', () => ({ ...goodAdapter(), optimizer: { type: 'sgd', gamma: 1 } }), 400, 'OPTIMIZER_CONFIG'],
      ['observation disagreement', () => ({ ...goodAdapter(), observation: 'loss', optimizer: { type: 'loko', observation: 'probs' } }), 400, 'INVALID_CONFIG'],
      ['missing field', () => ({ modelId, rank: 4, optimizer: { type: 'loko' } }), 400, 'VALIDATION_ERROR'],
      ['unknown target', () => ({ ...goodAdapter(), targets: ['fc1', 'attention'] }), 422, 'LORA_TARGET_NOT_FOUND'],
      ['regex matching nothing', () => ({ ...goodAdapter(), targets: { regex: 'conv.*' } }), 422, 'LORA_TARGET_NOT_FOUND'],
      ['unknown model', () => ({ ...goodAdapter(), modelId: 'mdl_doesnotexist' }), 404, 'MODEL_NOT_FOUND'],
    ];
    it.each(cases)('%s', async (_what, body, status, code) => {
      const before = await server.ctx.repos.adapters.count();
      const res = await createAdapter(body());
      expect(res.statusCode).toBe(status);
      expect(res.json()).toMatchObject({ code, message: expect.any(String) });
      expect(await server.ctx.repos.adapters.count()).toBe(before);
    });

    it('names the field and the allowed values', async () => {
      const res = (await createAdapter({ ...goodAdapter(), optimizer: { type: 'lbfgs' } })).json();
      expect(res.details).toMatchObject({ field: 'optimizer.type', allowed: [...OPTIMIZER_TYPES] });
      const target = (await createAdapter({ ...goodAdapter(), targets: ['attention'] })).json();
      expect(target.details).toMatchObject({ target: 'attention', available: ['fc1', 'fc2', 'head'] });
      const lr = (await createAdapter({ ...goodAdapter(), optimizer: { type: 'adamw', lr: -1 } })).json();
      expect(lr.details).toMatchObject({ field: 'optimizer.lr' });
    });
  });

  describe('refuses an adapter that no gradient graph can train, storing nothing', () => {
    async function uploaded(name: string, bytes: Uint8Array): Promise<string> {
      const res = await upload(bytes, { name });
      expect(res.statusCode).toBe(201);
      return res.json().id;
    }

    it('an op with no gradient rule between the targets and the output: 422 ONNX_UNSUPPORTED_OP naming it, built once', async () => {
      const id = await uploaded('mlp-cumsum-out', mlpWith('output', 'CumSum', [int64Tensor('cumsum_axis', [], [1])]));
      const before = await server.ctx.repos.adapters.count();
      const failedBuilds = async () => Number(/^engine_builds_total\{result="error"\} (\S+)$/m.exec((await server.app.inject({ url: '/metrics' })).body)?.[1] ?? 0);
      const builds = await failedBuilds();
      // The same configuration again gets the same answer without another build; another one builds.
      for (const body of [{}, {}, { rank: 3 }]) {
        const res = await createAdapter({ ...goodAdapter(), modelId: id, ...body });
        expect(res.statusCode).toBe(422);
        expect(res.json()).toMatchObject({ code: 'ONNX_UNSUPPORTED_OP', details: { opType: 'CumSum', node: 'added_CumSum', opset: 17 } });
      }
      expect(await failedBuilds()).toBe(builds + 2);
      expect(await server.ctx.repos.adapters.count()).toBe(before);
    });

    it('an output the task cannot use (rank 1 where softmax cross-entropy needs [batch, classes]): 422 MODEL_UNSUPPORTED', async () => {
      const id = await uploaded('mlp-rank1', mlpWith('output', 'ReduceSum', [int64Tensor('sum_axes', [1], [1])], { keepdims: 0 }, ['batch']));
      const before = await server.ctx.repos.adapters.count();
      const res = await createAdapter({ ...goodAdapter(), modelId: id });
      expect(res.statusCode).toBe(422);
      expect(res.json()).toMatchObject({ code: 'MODEL_UNSUPPORTED', message: expect.stringContaining('rank 1') });
      expect(await server.ctx.repos.adapters.count()).toBe(before);
    });

    it('a model exported with a fixed batch size that builds it into the graph: kept as it is, and 422 MODEL_UNSUPPORTED saying how to export it', async () => {
      // The logits reshaped to [1, -1]: two samples would come out as one row.
      const m = decodeModel(mlpWith('output', 'Reshape', [int64Tensor('flat_shape', [2], [1, -1])]));
      for (const v of [...m.graph!.input!, ...m.graph!.output!]) v.type!.tensorType!.shape!.dim![0] = { dimValue: 1 };
      const res0 = await upload(encodeModel(m), { name: 'mlp-batch1-reshape' });
      expect(res0.statusCode).toBe(201);
      expect(res0.json().inputs).toEqual([{ name: 'x', dtype: 'float32', shape: [1, 20] }]);
      expect(res0.json().metadata.batch).toEqual({ fixed: 1, relaxed: false, reason: "on 2 samples its output 'logits' has 1 rows: the batch size is built into the graph" });
      const before = await server.ctx.repos.adapters.count();
      const res = await createAdapter({ ...goodAdapter(), modelId: res0.json().id });
      expect(res.statusCode).toBe(422);
      expect(res.json()).toMatchObject({ code: 'MODEL_UNSUPPORTED', message: expect.stringContaining('dynamic_axes'), details: { input: 'x', shape: [1, 20] } });
      expect(await server.ctx.repos.adapters.count()).toBe(before);
    });

    it('a model exported with a fixed batch size that computes each sample on its own: its batch axis is made symbolic, and it trains as the dynamic export does', async () => {
      const m = decodeModel(fixture('mlp.opset17'));
      for (const v of [...m.graph!.input!, ...m.graph!.output!]) v.type!.tensorType!.shape!.dim![0] = { dimValue: 1 };
      const res0 = await upload(encodeModel(m), { name: 'mlp-batch1' });
      expect(res0.statusCode).toBe(201);
      expect(res0.json()).toMatchObject({ inputs: [{ name: 'x', shape: ['batch', 20] }], outputs: [{ name: 'logits', shape: ['batch', 5] }], metadata: { batch: { fixed: 1, relaxed: true } } });
      const x = [0, 1].map((s) => Array.from({ length: 20 }, (_, i) => Math.sin(i + 3 * s)));
      const ids: string[] = [];
      for (const id0 of [res0.json().id, modelId]) {
        const res = await createAdapter({ ...goodAdapter(), modelId: id0, seed: 77 });
        expect(res.statusCode, res.body).toBe(201);
        ids.push(res.json().id);
        const observed = await inject({ method: 'POST', url: `/v1/adapters/${res.json().id}/observe`, payload: { inputs: { x }, labels: [1, 4] }, headers: alice });
        expect(observed.statusCode, observed.body).toBe(200);
      }
      const [relaxed, dynamic] = await Promise.all(ids.map(async (id) => (await inject({ method: 'POST', url: `/v1/adapters/${id}/predict`, payload: { inputs: { x } }, headers: alice })).json().outputs as number[][]));
      expect(relaxed).toHaveLength(2);
      expect(relaxed).toEqual(dynamic);
      for (const id of ids) expect((await inject({ method: 'DELETE', url: `/v1/adapters/${id}`, headers: alice })).statusCode).toBe(204);
    });

    it('a Kalman step observing 1 500 outputs (~1.4e10 operations a sample): 400 OPTIMIZER_CONFIG; the loss observation and AdamW are fine', async () => {
      const m = 1500;
      const wide = encodeModel({
        irVersion: 9, opsetImport: [{ domain: '', version: 17 }],
        graph: {
          name: 'wide', input: [valueInfo('x', 1, ['batch', 8])], output: [valueInfo('logits', 1, ['batch', m])],
          initializer: [floatTensor('W', [8, m], Array.from({ length: 8 * m }, (_, i) => Math.sin(i) * 0.1))],
          node: [{ opType: 'MatMul', name: '/head/MatMul', input: ['x', 'W'], output: ['logits'] }],
        },
      });
      const id = await uploaded('wide-head', wide);
      const before = await server.ctx.repos.adapters.count();
      const body = { modelId: id, targets: 'all', rank: 4, seed: 1 };
      const res = await createAdapter({ ...body, optimizer: { type: 'loko', observation: 'probs' } });
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ code: 'OPTIMIZER_CONFIG', message: expect.stringContaining("use observation 'loss'"), details: { field: 'observation', m, n: 4 * (8 + m) } });
      expect(await server.ctx.repos.adapters.count()).toBe(before);
      for (const optimizer of [{ type: 'loko', observation: 'loss' }, { type: 'adamw' }]) {
        const ok = await createAdapter({ ...body, optimizer }, bob);
        expect(ok.statusCode, ok.body).toBe(201);
        expect((await inject({ method: 'DELETE', url: `/v1/adapters/${ok.json().id}`, headers: bob })).statusCode).toBe(204);
      }
    });

    it('accepts the same op where it is not on the gradient path (on the input, before every target), and trains', async () => {
      const id = await uploaded('mlp-cumsum-in', mlpWith('input', 'CumSum', [int64Tensor('cumsum_axis', [], [1])]));
      const res = await createAdapter({ ...goodAdapter(), modelId: id }, bob);
      expect(res.statusCode).toBe(201);
      const adapter = res.json().id as string;
      const observed = await inject({ method: 'POST', url: `/v1/adapters/${adapter}/observe`, payload: { inputs: { x: [Array.from({ length: 20 }, (_, i) => i / 20)] }, labels: [3] }, headers: bob });
      expect(observed.statusCode).toBe(200);
      expect(observed.json()).toMatchObject({ step: 1 });
      expect((await inject({ method: 'DELETE', url: `/v1/adapters/${adapter}`, headers: bob })).statusCode).toBe(204);
    });
  });

  it("hides another user's adapter: 404 for get and delete, absent from lists", async () => {
    for (const method of ['GET', 'DELETE'] as const) {
      const res = await inject({ method, url: `/v1/adapters/${aliceAdapter}`, headers: bob });
      expect(res.statusCode).toBe(404);
      expect(res.json()).toMatchObject({ code: 'ADAPTER_NOT_FOUND' });
    }
    expect((await inject({ url: '/v1/adapters', headers: bob })).json().items).toEqual([]);
    expect((await inject({ url: `/v1/adapters/${aliceAdapter}`, headers: alice })).statusCode).toBe(200);
  });

  it('pages the list of your adapters', async () => {
    const first = (await inject({ url: '/v1/adapters?limit=3', headers: alice })).json();
    expect(first.items).toHaveLength(3);
    expect(first.nextCursor).toBe(first.items[2].id);
    const rest = (await inject({ url: `/v1/adapters?limit=100&cursor=${first.nextCursor}`, headers: alice })).json();
    expect(rest.nextCursor).toBeNull();
    const all = [...first.items, ...rest.items].map((a: { id: string }) => a.id);
    expect(new Set(all).size).toBe(all.length);
    expect(all.length).toBe(1 + OPTIMIZER_TYPES.length);
    expect((await inject({ url: '/v1/adapters?limit=0', headers: alice })).json().code).toBe('VALIDATION_ERROR');
  });

  it('refuses to delete a model in use (409 MODEL_IN_USE), deletes it once its adapters are gone', async () => {
    expect((await inject({ method: 'DELETE', url: `/v1/models/${modelId}`, headers: alice })).statusCode).toBe(403);
    const inUse = await inject({ method: 'DELETE', url: `/v1/models/${modelId}`, headers: admin });
    expect(inUse.statusCode).toBe(409);
    expect(inUse.json()).toMatchObject({ code: 'MODEL_IN_USE', details: { adapters: 1 + OPTIMIZER_TYPES.length } });

    for (const a of (await inject({ url: '/v1/adapters', headers: alice })).json().items) {
      expect((await inject({ method: 'DELETE', url: `/v1/adapters/${a.id}`, headers: alice })).statusCode).toBe(204);
    }
    expect((await inject({ url: `/v1/adapters/${aliceAdapter}`, headers: alice })).statusCode).toBe(404);
    const model = (await inject({ url: `/v1/models/${modelId}`, headers: admin })).json();
    expect((await inject({ method: 'DELETE', url: `/v1/models/${modelId}`, headers: admin })).statusCode).toBe(204);
    expect(existsSync(join(dataDir, 'blobs', 'sha256', model.sha256.slice(0, 2), model.sha256))).toBe(false);
    expect((await inject({ url: `/v1/models/${modelId}`, headers: admin })).statusCode).toBe(404);
  });
});
