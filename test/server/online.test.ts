/**
 * Online adaptation through app.inject over a real SQLite database and a real ONNX Runtime, on
 * digits-mlp uploaded through the API: an adapter per optimizer type learns from a stream of 200
 * observes (prequential accuracy rises for LoKO and AdamW), predict (with the Kalman variance), downloads in every format
 * checked against independent readers (zip + safetensors header by hand, the merged model in
 * onnxruntime-node), the NDJSON stream, recovery from snapshot + log after a restart, and bad input
 * that stores nothing.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { InjectOptions } from 'fastify';
import { unzipSync } from 'fflate';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { digitStream } from '../../src/data/index.js';
import { deserializeState, OPTIMIZER_TYPES } from '../../src/kalman/index.js';
import { importState } from '../../src/lora/index.js';
import type { Server } from '../../src/server/server.js';
import { ADMIN_KEY, bearer, cleanupTemp, modelsDir, multipart, startServer, testConfig } from './helpers.js';

const MODELS = fileURLToPath(new URL('../../models/', import.meta.url));
const admin = bearer(ADMIN_KEY);
let server: Server;
let config: ReturnType<typeof testConfig>;
let alice: Record<string, string>;
let bob: Record<string, string>;
let modelId: string;

const inject = (opts: InjectOptions) => server.app.inject(opts);

/** User 0's digits are rotated by 35-55°: the base model is poor on them, adaptation helps. */
const samples = Array.from(digitStream({ user: 0, seed: 1 })).slice(0, 240);
const image = (i: number) => Array.from(samples[i]!.image);

// Learning rates from bench/online's grids; the K-FAC family inverts its factors every 20 steps, as the bench does (an inversion costs tens of ms at batch 1).
const KFAC = { lr: 1e-4, inverseEvery: 20 };
// The Kalman adapters use the probs observation at DESIGN 4's reference values here: its predictive
// variance is per class (the default observation, loss, has m = 1).
const PROBS = { observation: 'probs', p0Low: 0.01, p0High: 0.1, r0: 0.01 };
const HYPER: Record<string, Record<string, unknown>> = { loko: PROBS, 'r-kalman': PROBS, adamw: { lr: 3e-3 }, sgd: { lr: 1e-3 }, adagrad: { lr: 1e-2 }, kfac: KFAC, ring: KFAC, reng: KFAC };

async function createAdapter(type: string, headers = alice): Promise<string> {
  const res = await inject({
    method: 'POST',
    url: '/v1/adapters',
    headers,
    payload: { modelId, targets: ['fc1', 'fc2', 'head'], rank: 4, alpha: 4, optimizer: { type, ...HYPER[type] }, seed: 1 },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json().id as string;
}

async function observe(id: string, i: number, headers = alice) {
  return inject({ method: 'POST', url: `/v1/adapters/${id}/observe`, headers, payload: { inputs: { image: [image(i)] }, labels: [samples[i]!.label] } });
}

async function state(id: string, headers = alice) {
  return inject({ url: `/v1/adapters/${id}/state`, headers });
}

async function observationCount(id: string): Promise<number> {
  return server.ctx.repos.online.observationCount(id);
}

/** The JSON header of a safetensors file, read by hand (8-byte little-endian length, then JSON). */
function safetensorsHeader(bytes: Uint8Array): Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  return JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
}

beforeAll(async () => {
  // No built-ins: the happy path starts with an admin uploading the model (multipart), as a user's would.
  config = testConfig({ ADMIN_API_KEY: ADMIN_KEY, MODELS_DIR: modelsDir(), RATE_LIMIT_MAX: '0' });
  server = await startServer(config);
  for (const name of ['alice', 'bob']) {
    const res = await inject({ method: 'POST', url: '/v1/users', payload: { name }, headers: admin });
    const key = bearer(res.json().apiKey.key as string);
    if (name === 'alice') alice = key;
    else bob = key;
  }
  const body = multipart({ name: 'digits-mlp' }, { bytes: readFileSync(join(MODELS, 'digits-mlp.onnx')), filename: 'digits-mlp.onnx' });
  const up = await inject({ method: 'POST', url: '/v1/models', payload: body.payload, headers: { ...admin, ...body.headers } });
  expect(up.statusCode, up.body).toBe(201);
  expect(up.json().targets.map((t: { module: string }) => t.module)).toEqual(['fc1', 'fc2', 'head']);
  modelId = up.json().id as string;
}, 120_000);

afterAll(async () => {
  await server?.close();
  cleanupTemp();
});

describe('observe a stream of 200 digits, one at a time, with each optimizer', () => {
  const adapters: Record<string, string> = {};

  it.each([...OPTIMIZER_TYPES])('%s: every observe is acknowledged with the prediction before the update and the new step', async (type) => {
    const id = await createAdapter(type);
    adapters[type] = id;
    const correct: number[] = [];
    for (let i = 0; i < 200; i++) {
      const res = await observe(id, i);
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json();
      expect(body.step).toBe(i + 1);
      expect(body.prediction).toHaveLength(1);
      expect(body.prediction[0]).toHaveLength(10);
      expect(body.loss[0]).toBeGreaterThanOrEqual(0);
      if (type === 'loko' || type === 'r-kalman') expect(body.variance[0]).toHaveLength(10);
      correct.push(body.predicted[0] === samples[i]!.label ? 1 : 0);
    }
    const first = correct.slice(0, 100).reduce((a, b) => a + b, 0);
    const last = correct.slice(100).reduce((a, b) => a + b, 0);
    if (type === 'loko' || type === 'adamw') expect(last, `${type}: ${first} right in the first 100, ${last} in the last 100`).toBeGreaterThan(first + 5);
    const s = (await state(id)).json();
    expect(s.step).toBe(200);
    expect(s.metrics.n).toBe(100);
    expect(s.metrics.accuracy).toBeCloseTo(last / 100, 10);
    expect(await observationCount(id)).toBe(200);
    if (type === 'loko' || type === 'r-kalman') {
      expect(s.R).toHaveLength(10);
      expect(s.p.min).toBeGreaterThan(0);
      expect(s.p.min).toBeLessThanOrEqual(s.p.mean);
      expect(s.p.mean).toBeLessThanOrEqual(s.p.max);
    } else {
      expect(s.R).toBeNull();
      expect(s.p).toBeNull();
    }
    const adapter = (await inject({ url: `/v1/adapters/${id}`, headers: alice })).json();
    expect(adapter.step).toBe(200);
  }, 120_000);

  it('counts the updates in adapter_observes_total', async () => {
    const text = (await inject({ url: '/metrics' })).body;
    expect(text).toMatch(/adapter_observes_total\{optimizer="loko"\} 200/);
    expect(text).toMatch(/adapter_observes_total\{optimizer="adamw"\} 200/);
  });

  it('predicts with the Kalman predictive variance (LoKO), without it for AdamW; predict changes nothing', async () => {
    const batch = [image(210), image(211), image(212)];
    const res = await inject({ method: 'POST', url: `/v1/adapters/${adapters['loko']}/predict`, headers: alice, payload: { inputs: { image: batch } } });
    expect(res.statusCode, res.body).toBe(200);
    const p = res.json();
    expect(p.step).toBe(200);
    expect(p.outputs).toHaveLength(3);
    expect(p.probs[0].reduce((a: number, b: number) => a + b, 0)).toBeCloseTo(1, 5);
    expect(p.predicted).toHaveLength(3);
    expect(p.variance).toHaveLength(3);
    for (const v of p.variance.flat()) expect(v).toBeGreaterThan(0);
    const adam = (await inject({ method: 'POST', url: `/v1/adapters/${adapters['adamw']}/predict`, headers: alice, payload: { inputs: { image: batch } } })).json();
    expect(adam.variance).toBeUndefined();
    expect((await state(adapters['loko']!)).json().step).toBe(200);
    // The bare value works for a one-input model, and base64 float32 with a shape gives the same answer.
    const f32 = Float32Array.from(batch.flat());
    const b64 = Buffer.from(f32.buffer).toString('base64');
    const viaB64 = (await inject({ method: 'POST', url: `/v1/adapters/${adapters['loko']}/predict`, headers: alice, payload: { inputs: { data: b64, shape: [3, 784] } } })).json();
    expect(viaB64.outputs).toEqual(p.outputs);
  });

  it('downloads PEFT: adapter_config.json and safetensors with PEFT naming, shapes and metadata', async () => {
    const res = await inject({ url: `/v1/adapters/${adapters['loko']}/download?format=peft`, headers: alice });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/zip');
    const files = unzipSync(new Uint8Array(res.rawPayload));
    expect(Object.keys(files).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const cfg = JSON.parse(new TextDecoder().decode(files['adapter_config.json']));
    expect(cfg).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 4, base_model_name_or_path: 'digits-mlp' });
    expect([...cfg.target_modules].sort()).toEqual(['fc1', 'fc2', 'head']);
    const header = safetensorsHeader(files['adapter_model.safetensors']!);
    const shapes = { fc1: [784, 128], fc2: [128, 64], head: [64, 10] } as const;
    for (const [mod, [inp, out]] of Object.entries(shapes)) {
      expect(header[`base_model.model.${mod}.lora_A.weight`]).toMatchObject({ dtype: 'F32', shape: [4, inp] });
      expect(header[`base_model.model.${mod}.lora_B.weight`]).toMatchObject({ dtype: 'F32', shape: [out, 4] });
    }
    expect(header['__metadata__']).toMatchObject({ optimizer: 'loko', step: '200' });
  });

  it.each(['loko', 'adamw'])('%s: the merged ONNX runs in onnxruntime-node and matches predict to 1e-4', async (type) => {
    const id = adapters[type]!;
    const res = await inject({ url: `/v1/adapters/${id}/download?format=merged-onnx`, headers: alice });
    expect(res.statusCode).toBe(200);
    const session = await ort.InferenceSession.create(new Uint8Array(res.rawPayload));
    expect(session.inputNames).toEqual(['image']);
    const batch = [image(220), image(221)];
    const out = await session.run({ image: new ort.Tensor('float32', Float32Array.from(batch.flat()), [2, 784]) });
    const merged = out[session.outputNames[0]!]!.data as Float32Array;
    const p = (await inject({ method: 'POST', url: `/v1/adapters/${id}/predict`, headers: alice, payload: { inputs: batch } })).json();
    const want = (p.outputs as number[][]).flat();
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(merged[i]! - want[i]!));
    expect(worst).toBeLessThan(1e-4);
    // The adapter changed the model: the merged outputs differ from the base model's.
    await session.release();
  });

  it('downloads the inference bundle (graph with adapter inputs + tensors)', async () => {
    const res = await inject({ url: `/v1/adapters/${adapters['loko']}/download?format=inference-onnx`, headers: alice });
    expect(res.statusCode).toBe(200);
    const files = unzipSync(new Uint8Array(res.rawPayload));
    expect(Object.keys(files)).toEqual(expect.arrayContaining(['model.onnx', 'adapter.safetensors', 'inputs.json']));
  });

  it('downloads the state: θ, p, R and counters that round-trip into an identical optimizer state', async () => {
    const res = await inject({ url: `/v1/adapters/${adapters['loko']}/download?format=state`, headers: alice });
    expect(res.statusCode).toBe(200);
    const bytes = new Uint8Array(res.rawPayload);
    const header = safetensorsHeader(bytes);
    expect(Object.keys(header)).toEqual(expect.arrayContaining(['theta', 'p', 'R', '__metadata__']));
    const s = deserializeState(importState(bytes) as Parameters<typeof deserializeState>[0]);
    expect(s.type).toBe('loko');
    expect(s.step).toBe(200);
    const live = (await state(adapters['loko']!)).json();
    if (s.type === 'loko') {
      expect(Array.from(s.R.slice(0, 10))).toEqual(live.R[0]);
      expect(Math.min(...s.p)).toBe(live.p.min);
    }
  });

  it('downloads a snapshot by step (every 50 steps) and refuses a step without one (404 CHECKPOINT_NOT_FOUND)', async () => {
    const id = adapters['loko']!;
    const at50 = await inject({ url: `/v1/adapters/${id}/download?format=state&step=50`, headers: alice });
    expect(at50.statusCode).toBe(200);
    expect(at50.headers['x-adapter-step']).toBe('50');
    const s50 = deserializeState(importState(new Uint8Array(at50.rawPayload)) as Parameters<typeof deserializeState>[0]);
    expect(s50.step).toBe(50);
    const peft50 = await inject({ url: `/v1/adapters/${id}/download?format=peft&step=50`, headers: alice });
    expect(peft50.statusCode).toBe(200);
    const missing = await inject({ url: `/v1/adapters/${id}/download?format=state&step=7`, headers: alice });
    expect(missing.statusCode).toBe(404);
    expect(missing.json().code).toBe('CHECKPOINT_NOT_FOUND');
    const bad = await inject({ url: `/v1/adapters/${id}/download?format=tflite`, headers: alice });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().code).toBe('VALIDATION_ERROR');
  });

  it('recovers after a restart from the latest snapshot plus the log: same step, same predictions', async () => {
    const id = adapters['loko']!;
    // 3 more steps past the snapshot at 200, so recovery must replay the log.
    for (let i = 200; i < 203; i++) expect((await observe(id, i)).statusCode).toBe(200);
    // The snapshot of step 200 is written in the background; wait for it (recovery would fall back to step 150 otherwise).
    for (let i = 0; i < 200 && (await server.ctx.repos.online.latestCheckpoint(id, 203))?.step !== 200; i++) await new Promise((r) => setTimeout(r, 25));
    const probe = { inputs: [image(230), image(231)] };
    const before = (await inject({ method: 'POST', url: `/v1/adapters/${id}/predict`, headers: alice, payload: probe })).json();
    const metricsBefore = (await state(id)).json().metrics;
    expect(metricsBefore.n).toBe(100);
    // A second server on the same data directory (the first keeps its hot state but takes no more writes).
    const second = await startServer({ ...config });
    try {
      const s = (await second.app.inject({ url: `/v1/adapters/${id}/state`, headers: alice })).json();
      expect(s.step).toBe(203);
      expect(s.snapshotStep).toBe(200);
      // The recent-metrics window: the snapshot's (step 200) and the three replayed steps.
      expect(s.metrics).toEqual(metricsBefore);
      const after = (await second.app.inject({ method: 'POST', url: `/v1/adapters/${id}/predict`, headers: alice, payload: probe })).json();
      expect(after.step).toBe(203);
      for (let i = 0; i < 2; i++) for (let c = 0; c < 10; c++) expect(after.outputs[i][c]).toBeCloseTo(before.outputs[i][c], 5);
      for (let i = 0; i < 2; i++) for (let c = 0; c < 10; c++) expect(after.variance[i][c]).toBeCloseTo(before.variance[i][c], 8);
    } finally {
      await second.close();
    }
  }, 60_000);
});

describe('the NDJSON stream', () => {
  it('answers observe and predict lines in order; a bad line gets an error line and the stream goes on', async () => {
    const id = await createAdapter('loko');
    const lines = [
      { op: 'observe', id: 'a', inputs: [image(0)], labels: [samples[0]!.label] },
      { op: 'predict', id: 'b', inputs: [image(1)] },
      { op: 'observe', id: 'c', inputs: [image(1).slice(0, 700)], labels: [samples[1]!.label] },
      { op: 'observe', id: 'd', inputs: [image(1)], labels: [42] },
      { op: 'fly', id: 'e' },
      { op: 'observe', id: 'f', inputs: [image(2)], labels: [samples[2]!.label] },
    ];
    const payload = `${lines.map((l) => JSON.stringify(l)).join('\n')}\n{not json\n`;
    const res = await inject({ method: 'POST', url: `/v1/adapters/${id}/stream`, headers: { ...alice, 'content-type': 'application/x-ndjson' }, payload });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/application\/x-ndjson/);
    const answers = res.body.trim().split('\n').map((l) => JSON.parse(l));
    expect(answers.map((a) => a.id)).toEqual(['a', 'b', 'c', 'd', 'e', 'f', undefined]);
    expect(answers[0]).toMatchObject({ op: 'observe', step: 1 });
    expect(answers[1]).toMatchObject({ op: 'predict', step: 1 });
    expect(answers[1].variance).toHaveLength(1);
    expect(answers[2].error.code).toBe('INVALID_INPUT');
    expect(answers[3].error.code).toBe('INVALID_LABEL');
    expect(answers[4].error.code).toBe('VALIDATION_ERROR');
    expect(answers[5]).toMatchObject({ op: 'observe', step: 2 });
    expect(answers[6].error.code).toBe('INVALID_JSON');
    expect((await state(id)).json().step).toBe(2);
    expect(await observationCount(id)).toBe(2);
  });

  it("answers 404 for another user's adapter before streaming, 415 for a body that is not NDJSON", async () => {
    const id = await createAdapter('adamw');
    const res = await inject({ method: 'POST', url: `/v1/adapters/${id}/stream`, headers: { ...bob, 'content-type': 'application/x-ndjson' }, payload: '{"op":"predict","inputs":[]}\n' });
    expect(res.statusCode).toBe(404);
    expect(res.json().code).toBe('ADAPTER_NOT_FOUND');
    const asJson = await inject({ method: 'POST', url: `/v1/adapters/${id}/stream`, headers: alice, payload: { op: 'predict', inputs: [image(0)] } });
    expect(asJson.statusCode).toBe(415);
    expect(asJson.json().code).toBe('UNSUPPORTED_MEDIA_TYPE');
  });
});

describe('bad input: its own status and code, and nothing stored changes', () => {
  let id: string;
  beforeAll(async () => {
    id = await createAdapter('loko');
    for (let i = 0; i < 3; i++) expect((await observe(id, i)).statusCode).toBe(200);
  });

  const unchanged = async () => {
    expect((await state(id)).json().step).toBe(3);
    expect(await observationCount(id)).toBe(3);
    expect((await inject({ url: `/v1/adapters/${id}`, headers: alice })).json().step).toBe(3);
  };

  it.each([
    { what: 'a wrong input shape', payload: { inputs: { image: [[0.1, 0.2, 0.3]] }, labels: [1] }, code: 'INVALID_INPUT', message: /image.*axis 1 must be 784/ },
    { what: 'a wrong input rank', payload: { inputs: { image: [0.1, 0.2] }, labels: [1] }, code: 'INVALID_INPUT', message: /rank 1/ },
    { what: 'an unknown input name', payload: { inputs: { pixels: [new Array(784).fill(0)] }, labels: [1] }, code: 'INVALID_INPUT', message: /unknown input 'pixels'/ },
    { what: 'a ragged input', payload: { inputs: { image: [new Array(784).fill(0), [1]] }, labels: [1, 2] }, code: 'INVALID_INPUT', message: /ragged/ },
    { what: 'a NaN label (null in JSON)', payload: { inputs: { image: [new Array(784).fill(0)] }, labels: [null] }, code: 'INVALID_LABEL', message: /label 0/ },
    { what: 'a NaN label (the string)', payload: { inputs: { image: [new Array(784).fill(0)] }, labels: ['NaN'] }, code: 'INVALID_LABEL', message: /label 0/ },
    { what: 'a label out of range', payload: { inputs: { image: [new Array(784).fill(0)] }, labels: [10] }, code: 'INVALID_LABEL', message: /\[0, 10\)/ },
    { what: 'a fractional label', payload: { inputs: { image: [new Array(784).fill(0)] }, labels: [1.5] }, code: 'INVALID_LABEL', message: /integer class/ },
    { what: 'too few labels', payload: { inputs: { image: [new Array(784).fill(0), new Array(784).fill(0)] }, labels: [1] }, code: 'INVALID_LABEL', message: /1 labels for a batch of 2/ },
    { what: 'base64 float32 with a NaN', payload: { inputs: { image: { data: Buffer.from(new Float32Array(784).fill(0.5).fill(NaN, 500, 501).buffer).toString('base64'), shape: [1, 784] } }, labels: [1] }, code: 'INVALID_INPUT', message: /non-finite value at flat index 500/ },
    { what: 'base64 float32 with an Infinity', payload: { inputs: { image: { data: Buffer.from(new Float32Array(784).fill(-Infinity, 783).buffer).toString('base64'), shape: [1, 784] } }, labels: [1] }, code: 'INVALID_INPUT', message: /non-finite value at flat index 783/ },
    { what: 'base64 of the wrong length', payload: { inputs: { image: { data: Buffer.alloc(12).toString('base64'), shape: [1, 784] } }, labels: [1] }, code: 'INVALID_INPUT', message: /needs 3136 bytes/ },
  ])('observe with $what: 400 $code', async ({ payload, code, message }) => {
    const res = await inject({ method: 'POST', url: `/v1/adapters/${id}/observe`, headers: alice, payload });
    expect(res.statusCode).toBe(400);
    expect(res.json().code).toBe(code);
    expect(res.json().message).toMatch(message);
    await unchanged();
  });

  it('unknown adapter id: 404 ADAPTER_NOT_FOUND on every online route', async () => {
    for (const [method, url] of [
      ['POST', '/v1/adapters/adp_nope/observe'],
      ['POST', '/v1/adapters/adp_nope/predict'],
      ['GET', '/v1/adapters/adp_nope/state'],
      ['GET', '/v1/adapters/adp_nope/download?format=peft'],
    ] as const) {
      const res = await inject({ method, url, headers: alice, ...(method === 'POST' && { payload: { inputs: [image(0)], labels: [1] } }) });
      expect(res.statusCode, url).toBe(404);
      expect(res.json().code).toBe('ADAPTER_NOT_FOUND');
    }
  });

  it("another user's adapter id: 404 ADAPTER_NOT_FOUND, never 200, and nothing changes", async () => {
    for (const [method, url] of [
      ['POST', `/v1/adapters/${id}/observe`],
      ['POST', `/v1/adapters/${id}/predict`],
      ['GET', `/v1/adapters/${id}/state`],
      ['GET', `/v1/adapters/${id}/download?format=state`],
    ] as const) {
      const res = await inject({ method, url, headers: bob, ...(method === 'POST' && { payload: { inputs: [image(0)], labels: [samples[0]!.label] } }) });
      expect(res.statusCode, url).toBe(404);
      expect(res.json().code).toBe('ADAPTER_NOT_FOUND');
    }
    await unchanged();
  });

  it('a diverged adapter (non-finite step or outputs on finite input) answers 422 NON_FINITE_STATE and stores nothing', async () => {
    // SGD with a huge step size: the loss turns non-finite within a few steps.
    const res = await inject({ method: 'POST', url: '/v1/adapters', headers: alice, payload: { modelId, targets: ['fc1', 'fc2', 'head'], rank: 4, optimizer: { type: 'sgd', lr: 10 }, seed: 1 } });
    const kid = res.json().id as string;
    let accepted = 0;
    let rejected: { status: number; code: string } | null = null;
    for (let i = 0; i < 60 && !rejected; i++) {
      const r = await observe(kid, i);
      if (r.statusCode === 200) accepted++;
      else rejected = { status: r.statusCode, code: r.json().code };
    }
    expect(rejected, 'no step was rejected').not.toBeNull();
    // The inputs were finite: a diverged adapter is its own fault, never the caller's (not NON_FINITE_INPUT/400).
    expect(rejected).toEqual({ status: 422, code: 'NON_FINITE_STATE' });
    expect((await state(kid)).json().step).toBe(accepted);
    expect(await observationCount(kid)).toBe(accepted);
  });

  it('no key: 401 UNAUTHENTICATED', async () => {
    const res = await inject({ method: 'POST', url: `/v1/adapters/${id}/observe`, payload: { inputs: [image(0)], labels: [1] } });
    expect(res.statusCode).toBe(401);
    expect(res.json().code).toBe('UNAUTHENTICATED');
    await unchanged();
  });
});
