/**
 * Adapter states past MAX_HOT_ADAPTERS leave memory (least recently used first), snapshotted if they
 * have steps since their last snapshot, and come back on their next request. Two servers over real
 * SQLite and onnxruntime take the same interleaved stream of observes and predicts for four adapters
 * of digits-mlp: one keeps two states in memory (so nearly every request recovers one), the other
 * keeps all. Every answer, and every state at the end, must be the same.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { digitStream } from '../../src/data/index.js';
import type { Server } from '../../src/server/server.js';
import { cleanupTemp, modelsDir, multipart, startServer, testConfig } from './helpers.js';

const MODELS = fileURLToPath(new URL('../../models/', import.meta.url));
const samples = Array.from(digitStream({ user: 0, seed: 1 })).slice(0, 64);
const image = (i: number) => Array.from(samples[i]!.image);
/** Sample i as a parsed batch of one (OnlineService.train's form). */
const batch = (i: number) => ({ inputs: { image: { data: Float32Array.from(image(i)), dims: [1, 784] } }, labels: [samples[i]!.label] });
const PROBS = { observation: 'probs', p0Low: 0.01, p0High: 0.1, r0: 0.01 };
const OPTIMIZERS = [{ type: 'loko', ...PROBS }, { type: 'adamw', lr: 3e-3 }, { type: 'r-kalman', ...PROBS }, { type: 'loko' }];
const STEPS = 24;

interface Side { server: Server; ids: string[] }
let capped: Side;
let free: Side;

async function side(env: Record<string, string>): Promise<Side> {
  const server = await startServer(testConfig({ MODELS_DIR: modelsDir(), RATE_LIMIT_MAX: '0', ...env }));
  const body = multipart({ name: 'digits-mlp' }, { bytes: readFileSync(join(MODELS, 'digits-mlp.onnx')), filename: 'digits-mlp.onnx' });
  const up = await server.app.inject({ method: 'POST', url: '/v1/models', payload: body.payload, headers: body.headers });
  expect(up.statusCode, up.body).toBe(201);
  const ids: string[] = [];
  for (const [k, optimizer] of OPTIMIZERS.entries()) {
    const res = await server.app.inject({ method: 'POST', url: '/v1/adapters', payload: { modelId: up.json().id, targets: ['fc1', 'fc2', 'head'], rank: 4, alpha: 4, optimizer, seed: k + 1 } });
    expect(res.statusCode, res.body).toBe(201);
    ids.push(res.json().id as string);
  }
  return { server, ids };
}

/** The same requests on a side: each round, every adapter observes one sample and predicts two, all at once. */
async function stream(s: Side): Promise<unknown[]> {
  const answers: unknown[] = [];
  for (let i = 0; i < STEPS; i++) {
    const round = await Promise.all(s.ids.flatMap((id, k) => [
      s.server.app.inject({ method: 'POST', url: `/v1/adapters/${id}/observe`, payload: { inputs: { image: [image(i + k)] }, labels: [samples[i + k]!.label] } }),
      s.server.app.inject({ method: 'POST', url: `/v1/adapters/${id}/predict`, payload: { inputs: { image: [image(40), image(41)] } } }),
    ]));
    for (const res of round) {
      expect(res.statusCode, res.body).toBe(200);
      answers.push(res.json());
    }
  }
  return answers;
}

const metric = (text: string, name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);

beforeAll(async () => {
  capped = await side({ MAX_HOT_ADAPTERS: '2' });
  free = await side({});
}, 120_000);

afterAll(async () => {
  await capped?.server.close();
  await free?.server.close();
  cleanupTemp();
});

describe('MAX_HOT_ADAPTERS', () => {
  it('evicts and recovers states in an interleaved stream without changing any answer or state', async () => {
    const [a, b] = [await stream(capped), await stream(free)];
    expect(a).toHaveLength(STEPS * OPTIMIZERS.length * 2);
    const close = (x: unknown, y: unknown): void => {
      if (typeof x === 'number') expect(x).toBeCloseTo(y as number, 6);
      else if (Array.isArray(x)) x.forEach((v, i) => close(v, (y as unknown[])[i]));
      else if (x && typeof x === 'object') for (const k of Object.keys(y as object)) close((x as Record<string, unknown>)[k], (y as Record<string, unknown>)[k]);
      else expect(x).toEqual(y);
    };
    close(a, b);

    const metrics = (await capped.server.app.inject({ url: '/metrics' })).body;
    expect(metric(metrics, 'adapter_state_evictions_total')).toBeGreaterThan(STEPS);
    expect(metric(metrics, 'adapter_states_in_memory')).toBeLessThanOrEqual(2);
    expect(metric((await free.server.app.inject({ url: '/metrics' })).body, 'adapter_state_evictions_total')).toBe(0);

    for (const [k, id] of capped.ids.entries()) {
      const [sa, sb] = await Promise.all([capped.server.app.inject({ url: `/v1/adapters/${id}/state` }), free.server.app.inject({ url: `/v1/adapters/${free.ids[k]}/state` })]);
      expect(sa.json().step).toBe(STEPS);
      const [ja, jb] = [sa.json() as Record<string, unknown>, sb.json() as Record<string, unknown>];
      // The recent-metrics window too: evictions carry it in their snapshot.
      expect((ja.metrics as { n: number }).n).toBe(STEPS);
      close({ ...ja, adapterId: null, snapshotStep: null }, { ...jb, adapterId: null, snapshotStep: null });
      expect(await capped.server.ctx.repos.online.observationCount(id)).toBe(STEPS);
      // Evictions snapshot the steps since the last snapshot (the default snapshots every 50 steps).
      const snapshots = (await capped.server.ctx.online.listCheckpoints(id)).filter((c) => c.kind === 'snapshot');
      expect(snapshots.length).toBeGreaterThan(1);
      expect((await free.server.ctx.online.listCheckpoints(free.ids[k]!)).filter((c) => c.kind === 'snapshot')).toEqual([]);
    }
  }, 120_000);

  // Many writers of one adapter at once while others push it out of memory: a writer can hold a state
  // that was evicted (and recovered by another request) before its turn. Each round every adapter
  // observes the same sample six times at once, so the order within a round does not matter.
  it('concurrent observes of evicted adapters: steps 1..n each once, the same states as without eviction', async () => {
    const burst = async (s: Side): Promise<number[][]> => {
      const steps: number[][] = s.ids.map(() => []);
      for (let r = 0; r < 3; r++) {
        const res = await Promise.all(s.ids.flatMap((id, k) => Array.from({ length: 6 }, () =>
          s.server.app.inject({ method: 'POST', url: `/v1/adapters/${id}/observe`, payload: { inputs: { image: [image(50 + r)] }, labels: [samples[50 + r]!.label] } }).then((x) => ({ k, x })))));
        for (const { k, x } of res) {
          expect(x.statusCode, x.body).toBe(200);
          steps[k]!.push(x.json().step as number);
        }
      }
      return steps;
    };
    const [sa, sb] = [await burst(capped), await burst(free)];
    for (const steps of [...sa, ...sb]) expect(steps.sort((x, y) => x - y)).toEqual(Array.from({ length: 18 }, (_, i) => STEPS + 1 + i));
    for (const [k, id] of capped.ids.entries()) {
      const probe = { inputs: { image: [image(60), image(61)] } };
      const [pa, pb] = await Promise.all([
        capped.server.app.inject({ method: 'POST', url: `/v1/adapters/${id}/predict`, payload: probe }),
        free.server.app.inject({ method: 'POST', url: `/v1/adapters/${free.ids[k]}/predict`, payload: probe }),
      ]);
      expect(pa.json().step).toBe(STEPS + 18);
      pa.json().outputs.flat().forEach((v: number, i: number) => expect(v).toBeCloseTo(pb.json().outputs.flat()[i], 5));
      expect(await capped.server.ctx.repos.online.observationCount(id)).toBe(STEPS + 18);
    }
  }, 120_000);

  // The interleaving that makes a writer hold an evicted state, step by step, on a server that keeps
  // one state: train(X) gets X's state and waits a tick; predicting for Y evicts X; a second train(X)
  // recovers X anew. The first write must not go through its old copy (it would take step n + 1 and
  // leave the recovered copy, at n, to take it again: STATE_CONFLICT).
  it('a writer whose state was evicted and recovered by another request before its turn writes the current state', async () => {
    const one = await side({ MAX_HOT_ADAPTERS: '1' });
    try {
      const online = one.server.ctx.online;
      const [x, y] = one.ids as [string, string];
      expect((await online.train(x, batch(0))).step).toBe(1);
      const first = online.train(x, batch(1));
      const other = online.predictFeeds(y, batch(2).inputs);
      const second = online.train(x, batch(3));
      const [a, , b] = await Promise.all([first, other, second]);
      expect([a.step, b.step]).toEqual([2, 3]);
      expect(await one.server.ctx.repos.online.observationCount(x)).toBe(3);
      // The same three steps on an adapter that never left memory (the free side's x: same config and seed).
      const ref = free.server.ctx.online;
      const fresh = await free.server.app.inject({ method: 'POST', url: '/v1/adapters', payload: { modelId: (await free.server.app.inject({ url: `/v1/adapters/${free.ids[0]}` })).json().modelId, targets: ['fc1', 'fc2', 'head'], rank: 4, alpha: 4, optimizer: OPTIMIZERS[0], seed: 1 } });
      const rid = fresh.json().id as string;
      for (const i of [0, 1, 3]) await ref.train(rid, batch(i));
      const probe = batch(40).inputs;
      const [pa, pb] = [await online.predictFeeds(x, probe), await ref.predictFeeds(rid, probe)];
      pa.outputs[0]!.forEach((v, c) => expect(v).toBeCloseTo(pb.outputs[0]![c]!, 6));
    } finally {
      await one.server.close();
    }
  }, 60_000);

  // MAX_ENGINES: adapters of two LoRA configurations (rank 2 and 3) on a server that keeps one engine
  // and one state take turns; every answer equals the free server's, and the runtime's session cache
  // holds one engine's sessions at most (plus the readiness probe's). Its on-disk graph cache is held
  // to one graph (GRAPH_CACHE_MAX_BYTES=1), so rebuilt engines also rebuild their graphs.
  it('MAX_ENGINES=1: engines leave the cache and are rebuilt, with the same answers', async () => {
    const one = await side({ MAX_HOT_ADAPTERS: '1', MAX_ENGINES: '1', GRAPH_CACHE_MAX_BYTES: '1' });
    try {
      const made = async (s: Server, rank: number): Promise<string> => {
        const modelId = (await s.app.inject({ url: '/v1/models' })).json().items.find((m: { name: string }) => m.name === 'digits-mlp').id as string;
        const res = await s.app.inject({ method: 'POST', url: '/v1/adapters', payload: { modelId, targets: ['fc1', 'fc2', 'head'], rank, alpha: 4, optimizer: { type: 'loko', ...PROBS }, seed: rank } });
        expect(res.statusCode, res.body).toBe(201);
        return res.json().id as string;
      };
      const a = [await made(one.server, 2), await made(one.server, 3)];
      const b = [await made(free.server, 2), await made(free.server, 3)];
      let most = 0;
      for (let i = 0; i < 8; i++) {
        for (const k of [0, 1]) {
          const payload = { inputs: { image: [image(i + k)] }, labels: [samples[i + k]!.label] };
          const [ra, rb] = [await one.server.app.inject({ method: 'POST', url: `/v1/adapters/${a[k]}/observe`, payload }), await free.server.app.inject({ method: 'POST', url: `/v1/adapters/${b[k]}/observe`, payload })];
          expect(ra.statusCode, ra.body).toBe(200);
          expect(ra.json().step).toBe(i + 1);
          (ra.json().prediction[0] as number[]).forEach((v, c) => expect(v).toBeCloseTo(rb.json().prediction[0][c], 6));
          most = Math.max(most, one.server.ctx.runtime.cached);
        }
      }
      // One engine's forward, gradient and Jacobian (LoKO's probs observation) sessions, and the probe's.
      expect(most).toBeLessThanOrEqual(4);
      expect(free.server.ctx.runtime.cached).toBeGreaterThan(4);
      // The newest graph (its .onnx and .json) and nothing else.
      expect(readdirSync(join(one.server.ctx.config.dataDir, 'graphs'))).toHaveLength(2);
    } finally {
      await one.server.close();
    }
  }, 60_000);

  // A writer's state leaves memory before its turn and a later request loads the adapter behind that
  // writer: the writer recovers it (object F, cached) and then the later load's recovery makes its
  // own object current. When F leaves memory, the current object must leave with it.
  it('the current state leaves memory with the cached one even when they are different objects', async () => {
    const one = await side({ MAX_HOT_ADAPTERS: '1' });
    try {
      const online = one.server.ctx.online;
      const [x, y] = one.ids as [string, string];
      const tick = () => new Promise((r) => setImmediate(r));
      await online.train(x, batch(0));
      const first = online.train(x, batch(1));
      const pushOut = online.predictFeeds(y, batch(9).inputs);
      await tick();
      const second = online.train(x, batch(2));
      expect((await Promise.all([first, second])).map((r) => r.step).sort()).toEqual([2, 3]);
      await pushOut;
      await online.predictFeeds(y, batch(9).inputs);
      // The eviction snapshots first (a blob and a row, both synced).
      for (let i = 0; i < 100 && online.inMemory > 1; i++) await new Promise((r) => setTimeout(r, 20));
      expect(online.inMemory).toBe(1);
      expect(await one.server.ctx.repos.online.observationCount(x)).toBe(3);
    } finally {
      await one.server.close();
    }
  }, 60_000);

  // A server that keeps one state, 8 adapters, 6 observes to each at once (48 in flight), three times:
  // the states leave memory and come back between nearly any two steps, with writers still holding
  // objects that others have since recovered anew. Every observe must get its own step.
  it('MAX_HOT_ADAPTERS=1 under 48 concurrent observes to 8 adapters: every step taken once, none refused', async () => {
    const one = await side({ MAX_HOT_ADAPTERS: '1' });
    try {
      const modelId = (await one.server.app.inject({ url: `/v1/adapters/${one.ids[0]}` })).json().modelId as string;
      const ids = [...one.ids];
      for (let k = ids.length; k < 8; k++) {
        const res = await one.server.app.inject({ method: 'POST', url: '/v1/adapters', payload: { modelId, targets: ['fc1', 'fc2', 'head'], rank: 4, alpha: 4, optimizer: { type: k % 2 ? 'adamw' : 'loko', ...(k % 2 ? { lr: 1e-3 } : {}) }, seed: k } });
        ids.push(res.json().id as string);
      }
      const steps = new Map<string, number[]>(ids.map((id) => [id, []]));
      for (let r = 0; r < 3; r++) {
        const res = await Promise.all(ids.flatMap((id) => Array.from({ length: 6 }, (_, j) =>
          one.server.app.inject({ method: 'POST', url: `/v1/adapters/${id}/observe`, payload: { inputs: { image: [image(r * 6 + j)] }, labels: [samples[r * 6 + j]!.label] } }).then((x) => ({ id, x })))));
        for (const { id, x } of res) {
          expect(x.statusCode, x.body).toBe(200);
          steps.get(id)!.push(x.json().step as number);
        }
      }
      for (const id of ids) {
        expect(steps.get(id)!.sort((x, y) => x - y)).toEqual(Array.from({ length: 18 }, (_, i) => i + 1));
        expect(await one.server.ctx.repos.online.observationCount(id)).toBe(18);
      }
      // Once the evictions queued behind the last writes have run, one state is left in memory.
      for (let i = 0; i < 100 && one.server.ctx.online.inMemory > 1; i++) await new Promise((r) => setTimeout(r, 20));
      expect(one.server.ctx.online.inMemory).toBe(1);
    } finally {
      await one.server.close();
    }
  }, 60_000);

  it('deletes an evicted adapter: 404 afterwards, and its state does not come back', async () => {
    const id = capped.ids[0]!;
    // Make sure it is out of memory: touch two others.
    for (const other of capped.ids.slice(2)) expect((await capped.server.app.inject({ url: `/v1/adapters/${other}/state` })).statusCode).toBe(200);
    expect((await capped.server.app.inject({ method: 'DELETE', url: `/v1/adapters/${id}` })).statusCode).toBe(204);
    for (const url of [`/v1/adapters/${id}/state`, `/v1/adapters/${id}`]) expect((await capped.server.app.inject({ url })).statusCode).toBe(404);
    const res = await capped.server.app.inject({ method: 'POST', url: `/v1/adapters/${id}/observe`, payload: { inputs: { image: [image(0)] }, labels: [samples[0]!.label] } });
    expect(res.statusCode).toBe(404);
    expect(res.json().code).toBe('ADAPTER_NOT_FOUND');
  });
});
