/**
 * Fine-tuning jobs over the built-in digits-mlp, through app.inject and (for SSE) a real listening
 * server: a job over an uploaded dataset of rotated digits runs to `succeeded` with events and
 * checkpoints and raises validation accuracy; cancel, pause and resume with their state conflicts;
 * idempotency keys; ownership; live events over SSE with replay from Last-Event-ID.
 */
import { fileURLToPath } from 'node:url';

import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { digitStream } from '../../src/data/index.js';
import { encodeModel, floatTensor, int64Tensor } from '../../src/onnx/index.js';
import type { Server } from '../../src/server/server.js';
import { ADMIN_KEY, bearer, captureLogger, cleanupTemp, multipart, pollUntil, startServer, testConfig } from './helpers.js';
import { valueInfo } from '../fixtures.js';

const MODELS = fileURLToPath(new URL('../../models/', import.meta.url));
const admin = bearer(ADMIN_KEY);
let server: Server;
let alice: Record<string, string>;
let bob: Record<string, string>;
let modelId: string;
let datasetId: string;

const inject = (opts: InjectOptions) => server.app.inject(opts);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** User 0's digits are rotated: the base model is poor on them, so fine-tuning has room to help. */
const ROWS = Array.from(digitStream({ user: 0, seed: 1 })).slice(0, 120);

async function createAdapter(headers = alice, seed = 1): Promise<string> {
  const res = await inject({ method: 'POST', url: '/v1/adapters', headers, payload: { modelId, targets: ['fc1', 'fc2', 'head'], rank: 4, alpha: 4, optimizer: { type: 'loko' }, seed } });
  expect(res.statusCode, res.body).toBe(201);
  return res.json().id as string;
}

async function createJob(body: Record<string, unknown>, headers: Record<string, string> = alice) {
  return inject({ method: 'POST', url: '/v1/jobs', headers, payload: { datasetId, epochs: 1, batchSize: 8, validationSplit: 0.25, checkpointEvery: 0, ...body } });
}

async function job(id: string, headers = alice) {
  return (await inject({ url: `/v1/jobs/${id}`, headers })).json();
}

/** Polls until the job satisfies `ok` (or fails the test after `ms`). */
function waitFor(id: string, ok: (j: { status: string; progress: Record<string, unknown> }) => boolean, ms = 60_000) {
  return pollUntil(`job ${id}`, () => job(id), (j) => ok(j), ms);
}

const isFinal = (j: { status: string }) => ['succeeded', 'failed', 'cancelled'].includes(j.status);

async function events(id: string, headers = alice) {
  return (await inject({ url: `/v1/jobs/${id}/events?limit=1000`, headers })).json().items as { seq: number; level: string; type: string; data: Record<string, any> }[];
}

beforeAll(async () => {
  server = await startServer(testConfig({ ADMIN_API_KEY: ADMIN_KEY, MODELS_DIR: MODELS, RATE_LIMIT_MAX: '0' }));
  for (const name of ['alice', 'bob']) {
    const res = await inject({ method: 'POST', url: '/v1/users', payload: { name }, headers: admin });
    const key = bearer(res.json().apiKey.key as string);
    if (name === 'alice') alice = key;
    else bob = key;
  }
  modelId = ((await inject({ url: '/v1/models', headers: alice })).json().items as { id: string; name: string }[]).find((m) => m.name === 'digits-mlp')!.id;
  const text = ROWS.map((s) => JSON.stringify({ inputs: Array.from(s.image, (v) => Math.round(v * 1000) / 1000), label: s.label })).join('\n');
  const body = multipart({ modelId, name: 'rotated' }, { bytes: Buffer.from(text), filename: 'rotated.jsonl' });
  const res = await inject({ method: 'POST', url: '/v1/datasets', payload: body.payload, headers: { ...alice, ...body.headers } });
  expect(res.statusCode, res.body).toBe(201);
  datasetId = res.json().id;
}, 120_000);

afterAll(async () => {
  await server?.close();
  cleanupTemp();
});

describe('a job over an uploaded dataset', () => {
  it('runs to succeeded with events and checkpoints, and raises validation accuracy', async () => {
    const adapterId = await createAdapter();
    const res = await createJob({ adapterId, epochs: 3, checkpointEvery: 5, progressEvery: 2 });
    expect(res.statusCode, res.body).toBe(201);
    const created = res.json();
    expect(created).toMatchObject({ adapterId, datasetId, status: 'queued', params: { epochs: 3, batchSize: 8, validationSplit: 0.25, checkpointEvery: 5, progressEvery: 2 }, error: null });
    const done = await waitFor(created.id, isFinal, 120_000);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    // 120 rows: 30 held out, 90 trained in batches of 8 → 12 steps per epoch.
    expect(done.progress).toMatchObject({ epoch: 3, step: 36, totalSteps: 36, fraction: 1 });
    expect(done.startedAt).not.toBeNull();
    expect(done.finishedAt).not.toBeNull();

    const evs = await events(created.id);
    expect(evs.map((e) => e.seq)).toEqual(evs.map((_, i) => i + 1));
    const types = evs.map((e) => e.type);
    expect(types.slice(0, 3)).toEqual(['queued', 'validating', 'started']);
    expect(types[types.length - 1]).toBe('finished');
    expect(types.filter((t) => t === 'epoch')).toHaveLength(3);
    expect(types.filter((t) => t === 'progress')).toHaveLength(18);
    expect(evs.find((e) => e.type === 'started')!.data).toMatchObject({ trainRows: 90, validationRows: 30, totalSteps: 36 });

    const validation = evs.filter((e) => e.type === 'validation').map((e) => e.data);
    expect(validation.map((v) => v['epoch'])).toEqual([0, 1, 2, 3]);
    const [before, , , after] = validation.map((v) => v['accuracy'] as number);
    expect(after!).toBeGreaterThan(before!);
    expect(validation[3]!['loss']).toBeLessThan(validation[0]!['loss']);
    expect(evs.find((e) => e.type === 'finished')!.data['validation']['accuracy']).toBe(after);

    // Checkpoints at steps 5, 10, ..., 35 and one at the end (36), each with the job's metrics.
    const cks = (await inject({ url: `/v1/jobs/${created.id}/checkpoints`, headers: alice })).json().items as { step: number; kind: string; metrics: Record<string, any> }[];
    expect(cks.map((c) => c.step)).toEqual([5, 10, 15, 20, 25, 30, 35, 36]);
    expect(cks.every((c) => c.kind === 'job')).toBe(true);
    expect(cks[cks.length - 1]!.metrics['job']).toMatchObject({ step: 36, epoch: 3, validation: { accuracy: after, n: 30 } });
    expect(evs.filter((e) => e.type === 'checkpoint')).toHaveLength(8);

    // The job's steps are ordinary adapter steps.
    expect((await inject({ url: `/v1/adapters/${adapterId}`, headers: alice })).json().step).toBe(36);
  }, 180_000);

  it('lists jobs, filters by adapter and status', async () => {
    const items = (await inject({ url: '/v1/jobs?status=succeeded', headers: alice })).json().items as { status: string }[];
    expect(items.length).toBeGreaterThan(0);
    expect(items.every((j) => j.status === 'succeeded')).toBe(true);
    expect((await inject({ url: '/v1/jobs', headers: bob })).json().items).toEqual([]);
  });
});

describe('cancel, pause, resume', () => {
  it('pauses between steps, resumes, cancels; illegal transitions answer 409 STATE_CONFLICT', async () => {
    const adapterId = await createAdapter();
    const created = (await createJob({ adapterId, epochs: 200, progressEvery: 1, validationSplit: 0.1 })).json();
    await waitFor(created.id, (j) => j.status === 'running' && (j.progress['step'] as number) >= 2);

    const resumeEarly = await inject({ method: 'POST', url: `/v1/jobs/${created.id}/resume`, headers: alice });
    expect(resumeEarly.statusCode).toBe(409);
    expect(resumeEarly.json()).toMatchObject({ code: 'STATE_CONFLICT', details: { status: 'running', action: 'resume' } });

    const paused = await inject({ method: 'POST', url: `/v1/jobs/${created.id}/pause`, headers: alice });
    expect(paused.statusCode, paused.body).toBe(200);
    expect(paused.json().status).toBe('paused');
    const again = await inject({ method: 'POST', url: `/v1/jobs/${created.id}/pause`, headers: alice });
    expect(again.statusCode).toBe(409);
    expect(again.json().code).toBe('STATE_CONFLICT');
    // A step in flight may finish; after that the adapter does not move.
    await sleep(400);
    const held = (await inject({ url: `/v1/adapters/${adapterId}`, headers: alice })).json().step as number;
    await sleep(600);
    expect((await inject({ url: `/v1/adapters/${adapterId}`, headers: alice })).json().step).toBe(held);
    expect((await job(created.id)).status).toBe('paused');

    const resumed = await inject({ method: 'POST', url: `/v1/jobs/${created.id}/resume`, headers: alice });
    expect(resumed.json().status).toBe('running');
    await waitFor(created.id, (j) => (j.progress['adapterStep'] as number) > held + 1);

    const cancelled = await inject({ method: 'POST', url: `/v1/jobs/${created.id}/cancel`, headers: alice });
    expect(cancelled.statusCode).toBe(200);
    expect(cancelled.json()).toMatchObject({ status: 'cancelled' });
    expect(cancelled.json().finishedAt).not.toBeNull();
    for (const action of ['cancel', 'pause', 'resume']) {
      const res = await inject({ method: 'POST', url: `/v1/jobs/${created.id}/${action}`, headers: alice });
      expect(res.statusCode).toBe(409);
      expect(res.json()).toMatchObject({ code: 'STATE_CONFLICT', details: { status: 'cancelled', action } });
    }
    await sleep(300);
    const stopped = (await inject({ url: `/v1/adapters/${adapterId}`, headers: alice })).json().step as number;
    await sleep(500);
    expect((await inject({ url: `/v1/adapters/${adapterId}`, headers: alice })).json().step).toBe(stopped);
    expect((await job(created.id)).status).toBe('cancelled');

    const types = (await events(created.id)).map((e) => e.type);
    expect(types).toEqual(expect.arrayContaining(['started', 'paused', 'resumed', 'cancelled']));
    expect(types.indexOf('paused')).toBeLessThan(types.indexOf('resumed'));
    expect(types[types.length - 1]).toBe('cancelled');
    expect(types).not.toContain('finished');
  }, 120_000);

  it('cancels a queued job before it starts (jobs of one adapter run one at a time)', async () => {
    const adapterId = await createAdapter();
    const first = (await createJob({ adapterId, epochs: 200 })).json();
    const second = (await createJob({ adapterId })).json();
    await waitFor(first.id, (j) => j.status === 'running');
    expect((await job(second.id)).status).toBe('queued');
    expect((await inject({ method: 'POST', url: `/v1/jobs/${second.id}/pause`, headers: alice })).statusCode).toBe(409);
    expect((await inject({ method: 'POST', url: `/v1/jobs/${second.id}/cancel`, headers: alice })).json().status).toBe('cancelled');
    expect((await inject({ method: 'POST', url: `/v1/jobs/${first.id}/cancel`, headers: alice })).json().status).toBe('cancelled');
    await sleep(200);
    expect((await events(second.id)).map((e) => e.type)).toEqual(['queued', 'cancelled']);
  }, 60_000);
});

describe('Idempotency-Key', () => {
  it('returns the first job for the same key from the same user, and only that user', async () => {
    const adapterId = await createAdapter();
    const headers = { ...alice, 'idempotency-key': 'retry-123' };
    const a = await createJob({ adapterId }, headers);
    expect(a.statusCode).toBe(201);
    const b = await createJob({ adapterId, epochs: 5 }, headers);
    expect(b.statusCode).toBe(200);
    expect(b.json().id).toBe(a.json().id);
    expect(b.json().params.epochs).toBe(1);
    const mine = (await inject({ url: `/v1/jobs?adapterId=${adapterId}`, headers: alice })).json().items;
    expect(mine).toHaveLength(1);
    expect(mine[0].idempotencyKey).toBe('retry-123');
    await waitFor(a.json().id, isFinal);
    // Concurrent retries still make one job.
    const many = await Promise.all(Array.from({ length: 4 }, () => createJob({ adapterId }, { ...alice, 'idempotency-key': 'burst' })));
    expect(new Set(many.map((r) => r.json().id)).size).toBe(1);
    expect(many.map((r) => r.statusCode).sort()).toEqual([200, 200, 200, 201]);
    await waitFor(many[0]!.json().id, isFinal);
  }, 120_000);
});

describe('validation and ownership', () => {
  it("answers 404 for another user's job, dataset or adapter", async () => {
    const adapterId = await createAdapter();
    const created = (await createJob({ adapterId })).json();
    for (const req of [
      { url: `/v1/jobs/${created.id}` },
      { url: `/v1/jobs/${created.id}/events` },
      { url: `/v1/jobs/${created.id}/checkpoints` },
      { method: 'POST' as const, url: `/v1/jobs/${created.id}/cancel` },
    ]) {
      const res = await inject({ ...req, headers: bob });
      expect(res.statusCode).toBe(404);
      expect(res.json().code).toBe('JOB_NOT_FOUND');
    }
    const bobAdapter = await createAdapter(bob);
    const res = await createJob({ adapterId: bobAdapter }, bob);
    expect(res.statusCode).toBe(404);
    expect(res.json().code).toBe('DATASET_NOT_FOUND');
    const theirs = await createJob({ adapterId: bobAdapter }, alice);
    expect(theirs.json().code).toBe('ADAPTER_NOT_FOUND');
    await waitFor(created.id, isFinal);
  }, 60_000);

  it('refuses bad parameters with 400', async () => {
    const adapterId = await createAdapter();
    for (const bad of [{ epochs: 0 }, { batchSize: -1 }, { validationSplit: 1.5 }, { checkpointEvery: 1.5 }]) {
      const res = await createJob({ adapterId, ...bad });
      expect(res.statusCode).toBe(400);
      expect(res.json().code).toBe('VALIDATION_ERROR');
    }
  });
});

describe('a text model', () => {
  it('takes JSONL rows of text (tokenized by the built-in tokenizer) and trains on them', async () => {
    const mail = ((await inject({ url: '/v1/models', headers: alice })).json().items as { id: string; name: string }[]).find((m) => m.name === 'mail-transformer')!.id;
    const spam = ['cheap pills buy now', 'win money now click', 'free offer limited time', 'buy cheap watches online'];
    const ham = ['meeting agenda for tomorrow', 'please review the attached report', 'lunch on friday with the team', 'notes from the design review'];
    const rows = Array.from({ length: 16 }, (_, i) => ({ inputs: (i % 2 ? spam : ham)[(i >> 1) % 4], label: i % 2 }));
    const body = multipart({ modelId: mail }, { bytes: Buffer.from(rows.map((r) => JSON.stringify(r)).join('\n')), filename: 'mail.jsonl' });
    const up = await inject({ method: 'POST', url: '/v1/datasets', payload: body.payload, headers: { ...alice, ...body.headers } });
    expect(up.statusCode, up.body).toBe(201);
    expect(up.json().summary.inputs[0]).toMatchObject({ name: 'input_ids', dtype: 'int64' });
    const adapter = await inject({ method: 'POST', url: '/v1/adapters', headers: alice, payload: { modelId: mail, targets: 'all', rank: 2, optimizer: { type: 'sgd', lr: 0.01 }, seed: 2 } });
    expect(adapter.statusCode, adapter.body).toBe(201);
    const created = await inject({ method: 'POST', url: '/v1/jobs', headers: alice, payload: { adapterId: adapter.json().id, datasetId: up.json().id, batchSize: 4, validationSplit: 0.25 } });
    expect(created.statusCode, created.body).toBe(201);
    const done = await waitFor(created.json().id, isFinal, 120_000);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    expect(done.progress).toMatchObject({ step: 3, totalSteps: 3 });
    // A dataset of another model than the adapter's: 422 before anything is queued.
    const mismatch = await createJob({ adapterId: await createAdapter(), datasetId: up.json().id });
    expect(mismatch.statusCode).toBe(422);
    expect(mismatch.json()).toMatchObject({ code: 'DATASET_MODEL_MISMATCH', details: { field: 'datasetId' } });
  }, 180_000);
});

describe('a model with int32 inputs', () => {
  it('trains on a dataset fed as int32, as online observes are', async () => {
    // ids int32 [batch, 3] → Gather from a [10, 4] table → mean over the 3 → MatMul [4, 3] → logits.
    const bytes = encodeModel({
      irVersion: 9, opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'int32-ids', input: [valueInfo('ids', 6, ['batch', 3])], output: [valueInfo('logits', 1, ['batch', 3])],
        initializer: [floatTensor('E', [10, 4], Array.from({ length: 40 }, (_, i) => Math.sin(i))), floatTensor('W', [4, 3], Array.from({ length: 12 }, (_, i) => Math.cos(i))), int64Tensor('axes', [1], [1])],
        node: [
          { opType: 'Gather', name: '/embed/Gather', input: ['E', 'ids'], output: ['e'] },
          { opType: 'ReduceMean', name: '/pool/ReduceMean', input: ['e'], output: ['m'], attribute: [{ name: 'axes', type: 7, ints: [1] }, { name: 'keepdims', type: 2, i: 0 }] },
          { opType: 'MatMul', name: '/head/MatMul', input: ['m', 'W'], output: ['logits'] },
        ],
      },
    });
    const up = multipart({ name: 'int32-ids' }, { bytes, filename: 'int32.onnx' });
    const model = await inject({ method: 'POST', url: '/v1/models', payload: up.payload, headers: { ...admin, ...up.headers } });
    expect(model.statusCode, model.body).toBe(201);
    const mid = model.json().id as string;
    const adapter = await inject({ method: 'POST', url: '/v1/adapters', headers: alice, payload: { modelId: mid, targets: 'all', rank: 2, alpha: 2, optimizer: { type: 'adamw', lr: 0.05 }, seed: 3 } });
    expect(adapter.statusCode, adapter.body).toBe(201);
    const observe = await inject({ method: 'POST', url: `/v1/adapters/${adapter.json().id}/observe`, headers: alice, payload: { inputs: [[1, 2, 3]], labels: [1] } });
    expect(observe.statusCode, observe.body).toBe(200);
    const text = Array.from({ length: 12 }, (_, i) => JSON.stringify({ inputs: [i % 10, (i * 3) % 10, (i * 7) % 10], label: i % 3 })).join('\n');
    const ds = multipart({ modelId: mid, name: 'ids' }, { bytes: Buffer.from(text), filename: 'ids.jsonl' });
    const dataset = await inject({ method: 'POST', url: '/v1/datasets', payload: ds.payload, headers: { ...alice, ...ds.headers } });
    expect(dataset.statusCode, dataset.body).toBe(201);
    expect(dataset.json().summary.inputs).toEqual([{ name: 'ids', dtype: 'int32', shape: [3] }]);
    const res = await inject({ method: 'POST', url: '/v1/jobs', headers: alice, payload: { adapterId: adapter.json().id, datasetId: dataset.json().id, epochs: 2, batchSize: 4, validationSplit: 0.25 } });
    expect(res.statusCode, res.body).toBe(201);
    const done = await waitFor(res.json().id, isFinal);
    expect(done.status, JSON.stringify(done)).toBe('succeeded');
    expect(done.progress).toMatchObject({ step: 6, totalSteps: 6 });
  });
});

describe('a regression job on an uploaded model', () => {
  it('takes a dataset of target vectors (task=regression) and lowers the validation loss', async () => {
    const W = [0.5, -0.2, 0.1, 0.3, -0.4, 0.2, 0.05, -0.1];
    const bytes = encodeModel({
      irVersion: 9, opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'regressor', input: [valueInfo('x', 1, ['batch', 4])], output: [valueInfo('y', 1, ['batch', 2])],
        initializer: [floatTensor('W', [4, 2], W)],
        node: [{ opType: 'MatMul', name: '/out/MatMul', input: ['x', 'W'], output: ['y'] }],
      },
    });
    const up = multipart({ name: 'regressor' }, { bytes, filename: 'regressor.onnx' });
    const model = await inject({ method: 'POST', url: '/v1/models', payload: up.payload, headers: { ...admin, ...up.headers } });
    expect(model.statusCode, model.body).toBe(201);
    const mid = model.json().id as string;
    // Targets from other weights: the adapter has something to learn.
    const rows = Array.from({ length: 40 }, (_, i) => {
      const xs = [Math.sin(i), Math.cos(i * 1.3), Math.sin(i * 0.7), 0.5];
      return { inputs: xs, label: [xs[0]! * 1.5 - xs[2]!, xs[1]! * 0.8 + 0.2] };
    });
    const ds = multipart({ modelId: mid, name: 'targets', task: 'regression' }, { bytes: Buffer.from(rows.map((r) => JSON.stringify(r)).join('\n')), filename: 'targets.jsonl' });
    const dataset = await inject({ method: 'POST', url: '/v1/datasets', payload: ds.payload, headers: { ...alice, ...ds.headers } });
    expect(dataset.statusCode, dataset.body).toBe(201);
    const adapter = await inject({ method: 'POST', url: '/v1/adapters', headers: alice, payload: { modelId: mid, targets: 'all', rank: 2, alpha: 2, optimizer: { type: 'loko', observation: 'regression' }, seed: 4 } });
    expect(adapter.statusCode, adapter.body).toBe(201);
    const res = await inject({ method: 'POST', url: '/v1/jobs', headers: alice, payload: { adapterId: adapter.json().id, datasetId: dataset.json().id, epochs: 5, batchSize: 4, validationSplit: 0.25 } });
    expect(res.statusCode, res.body).toBe(201);
    const done = await waitFor(res.json().id, isFinal);
    expect(done.status, JSON.stringify(done)).toBe('succeeded');
    const p = done.progress as { validation: { loss: number }; baseline: { loss: number } };
    expect(p.validation.loss).toBeLessThan(p.baseline.loss * 0.8);
    // A classifier adapter on the same model cannot train on target vectors: refused at creation.
    const classifier = await inject({ method: 'POST', url: '/v1/adapters', headers: alice, payload: { modelId: mid, targets: 'all', rank: 2, optimizer: { type: 'adamw' }, seed: 4 } });
    expect(classifier.statusCode, classifier.body).toBe(201);
    const wrong = await inject({ method: 'POST', url: '/v1/jobs', headers: alice, payload: { adapterId: classifier.json().id, datasetId: dataset.json().id, epochs: 1, batchSize: 4 } });
    expect(wrong.statusCode).toBe(422);
    expect(wrong.json()).toMatchObject({ code: 'DATASET_TASK_MISMATCH', message: expect.stringContaining('task=classification'), details: { field: 'datasetId' } });
  });
});

describe('deleting an adapter while its job runs and observes arrive', () => {
  it('stops the job at a step boundary and drains the updates: observes get 200 or 404, nothing errors, nothing is left', async () => {
    const { log, lines } = captureLogger();
    const own = await startServer(testConfig({ MODELS_DIR: MODELS, RATE_LIMIT_MAX: '0' }), { log, localMode: true });
    try {
      const call = (opts: InjectOptions) => own.app.inject(opts);
      const mid = ((await call({ url: '/v1/models' })).json().items as { id: string; name: string }[]).find((m) => m.name === 'digits-mlp')!.id;
      const text = ROWS.map((r) => JSON.stringify({ inputs: Array.from(r.image, (v) => Math.round(v * 1000) / 1000), label: r.label })).join('\n');
      const ds = multipart({ modelId: mid }, { bytes: Buffer.from(text), filename: 'rows.jsonl' });
      const dataset = (await call({ method: 'POST', url: '/v1/datasets', payload: ds.payload, headers: ds.headers })).json().id as string;
      const adapter = (await call({ method: 'POST', url: '/v1/adapters', payload: { modelId: mid, targets: 'all', rank: 4, alpha: 4, optimizer: { type: 'loko' }, seed: 5 } })).json().id as string;
      const queued: string[] = [];
      for (let k = 0; k < 2; k++) queued.push((await call({ method: 'POST', url: '/v1/jobs', payload: { adapterId: adapter, datasetId: dataset, epochs: 40, batchSize: 8, progressEvery: 1 } })).json().id as string);
      // Past the adapter's first snapshot (every 50 steps), so one may be in flight too.
      await pollUntil('the first job', async () => (await call({ url: `/v1/jobs/${queued[0]}` })).json(), (j) => (j.progress?.step ?? 0) >= 55, 60_000);
      const x = Array.from(ROWS[0]!.image);
      const observes = Array.from({ length: 6 }, () => call({ method: 'POST', url: `/v1/adapters/${adapter}/observe`, payload: { inputs: [x], labels: [1] } }));
      const del = await call({ method: 'DELETE', url: `/v1/adapters/${adapter}` });
      expect(del.statusCode, del.body).toBe(204);
      for (const res of await Promise.all(observes)) {
        expect([200, 404], res.body).toContain(res.statusCode);
        if (res.statusCode === 404) expect(res.json().code).toBe('ADAPTER_NOT_FOUND');
      }
      expect((await call({ method: 'POST', url: `/v1/adapters/${adapter}/observe`, payload: { inputs: [x], labels: [1] } })).json().code).toBe('ADAPTER_NOT_FOUND');
      for (const j of queued) expect((await call({ url: `/v1/jobs/${j}` })).statusCode).toBe(404);
      await sleep(300); // a runner that had not stopped would log its failure by now
      expect(lines.filter((l) => (l.level as number) >= 50).map((l) => l.msg)).toEqual([]);
      expect(await own.ctx.repos.adapters.count()).toBe(0);
    } finally {
      await own.close();
    }
  }, 120_000);
});

describe('events over SSE (a real listening server)', () => {
  it('streams live events until the job ends, and replays from Last-Event-ID', async () => {
    const base = await server.app.listen({ port: 0, host: '127.0.0.1' });
    const adapterId = await createAdapter();
    const created = (await createJob({ adapterId, epochs: 2, progressEvery: 1 })).json();
    const read = async (headers: Record<string, string>) => {
      const res = await fetch(`${base}/v1/jobs/${created.id}/events`, { headers: { ...alice, accept: 'text/event-stream', ...headers } });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
      const got: { id: number; event: string; data: { seq: number; type: string }; at: number }[] = [];
      const decoder = new TextDecoder();
      let buf = '';
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true });
        let k;
        while ((k = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, k);
          buf = buf.slice(k + 2);
          const f = Object.fromEntries(block.split('\n').filter((l) => !l.startsWith(':')).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)]));
          if (f['id']) got.push({ id: Number(f['id']), event: f['event']!, data: JSON.parse(f['data']!), at: Date.now() });
        }
      }
      return got;
    };
    const live = await read({});
    expect(live.map((e) => e.id)).toEqual(live.map((_, i) => i + 1));
    expect(live[0]!.event).toBe('queued');
    expect(live[live.length - 1]!.event).toBe('finished');
    expect(live.every((e) => e.data.seq === e.id && e.data.type === e.event)).toBe(true);
    // Live, not replayed at the end: events arrived spread over the job's run.
    expect(live.filter((e) => e.event === 'progress').length).toBeGreaterThan(10);
    expect(live[live.length - 1]!.at - live[0]!.at).toBeGreaterThan(0);
    expect((await job(created.id)).status).toBe('succeeded');

    const replay = await read({ 'last-event-id': '5' });
    expect(replay[0]!.id).toBe(6);
    expect(replay.map((e) => e.id)).toEqual(live.slice(5).map((e) => e.id));
    const after = await fetch(`${base}/v1/jobs/${created.id}/events?after=${live.length - 1}`, { headers: { ...alice, accept: 'text/event-stream' } });
    expect(await after.text()).toMatch(/event: finished/);

    const other = await fetch(`${base}/v1/jobs/${created.id}/events`, { headers: { ...bob, accept: 'text/event-stream' } });
    expect(other.status).toBe(404);
    expect((await other.json()).code).toBe('JOB_NOT_FOUND');
  }, 120_000);
});
