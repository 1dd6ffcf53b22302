/**
 * Online adaptation over real HTTP on loopback (fixture model tiny-mlp: x [batch, 20], 5 classes):
 *  - durability: `npm start`'s entry point as a child process, a long-lived NDJSON stream of observes,
 *    SIGKILL while an observe is in flight, a restart on the same data directory; every acknowledged
 *    observe is there and the state equals a replay of the logged samples in src/lora;
 *  - concurrency: 32 concurrent streams to 32 adapters and 8 concurrent streams to one adapter.
 */
import { request } from 'node:http';

import { afterAll, describe, expect, it } from 'vitest';

import { initState, type OptimizerState } from '../../src/kalman/index.js';
import { AdapterEngine, initTheta, predict, trainStep } from '../../src/lora/index.js';
import { loadModelBytes, OnnxRuntime } from '../../src/onnx/index.js';
import { cleanupTemp, fixture, modelsDir, startChild, startServer, tempDir, testConfig } from './helpers.js';

afterAll(cleanupTemp);


/** Deterministic samples: x ~ U(-1, 1)^20, a label in [0, 5). */
function sample(i: number): { x: number[]; y: number } {
  let s = (i + 1) * 2654435761;
  const next = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
  const x = Array.from({ length: 20 }, () => Math.round((next() * 2 - 1) * 1e4) / 1e4);
  return { x, y: Math.floor(next() * 5) };
}

const observeLine = (i: number) => `${JSON.stringify({ op: 'observe', id: i, inputs: { x: [sample(i).x] }, labels: [sample(i).y] })}\n`;


async function json(url: string, init?: RequestInit): Promise<any> {
  const res = await fetch(url, { ...init, headers: { 'content-type': 'application/json', ...init?.headers } });
  const body = await res.json();
  if (!res.ok) throw new Error(`${init?.method ?? 'GET'} ${url}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

/**
 * A long-lived NDJSON stream: `send` writes a line, answers arrive on `onAnswer` as they are made.
 * The request body stays open (chunked) until `end`.
 */
function openStream(url: string, onAnswer: (a: any) => void): { send: (line: string) => void; end: () => void; done: Promise<void> } {
  const req = request(url, { method: 'POST', headers: { 'content-type': 'application/x-ndjson', 'transfer-encoding': 'chunked' } });
  const done = new Promise<void>((resolve) => {
    req.on('response', (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        buf += d;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.trim()) onAnswer(JSON.parse(line));
        }
      });
      res.on('end', resolve);
      res.on('error', () => resolve());
      res.on('aborted', () => resolve());
    });
    req.on('error', () => resolve());
  });
  req.flushHeaders();
  return { send: (line) => req.write(line), end: () => req.end(), done };
}

describe('durability: SIGKILL mid-stream, restart, nothing acknowledged is lost', () => {
  it('recovers the step and a state equal to a replay of the acknowledged samples (snapshot at 50 + log)', async () => {
    const dataDir = tempDir('durable-');
    const models = modelsDir({ 'tiny-mlp': 'mlp.opset17' });
    const first = startChild({ DATA_DIR: dataDir, MODELS_DIR: models });
    let acked = 0;
    let adapter: any;
    try {
      const base = await first.address();
      const modelId = (await json(`${base}/v1/models`)).items[0].id as string;
      adapter = await json(`${base}/v1/adapters`, { method: 'POST', body: JSON.stringify({ modelId, targets: 'all', rank: 2, alpha: 4, optimizer: { type: 'loko', observation: 'probs' }, seed: 3 }) });
      const KILL_AFTER = 60;
      let killed!: () => void;
      let failure: unknown;
      const killedP = new Promise<void>((r) => (killed = r));
      const stream = openStream(`${base}/v1/adapters/${adapter.id}/stream`, (a) => {
        if (a.error || a.step !== acked + 1) {
          // Not thrown here (an event handler): recorded, and the test fails below with the server's log.
          failure ??= a;
          first.child.kill('SIGKILL');
          killed();
          return;
        }
        acked++;
        if (acked < KILL_AFTER) stream.send(observeLine(acked));
        else {
          // The next observe goes out and the server dies while it is in flight.
          stream.send(observeLine(acked));
          setTimeout(() => {
            first.child.kill('SIGKILL');
            killed();
          }, 1);
        }
      });
      stream.send(observeLine(0));
      // (The stream ending by itself means the server died on its own: the checks below say so.)
      await Promise.race([killedP, stream.done]);
      first.child.kill('SIGKILL');
      await first.exited;
      await stream.done;
      expect(failure, `unexpected answer ${JSON.stringify(failure)}; server log:\n${first.output()}`).toBeUndefined();
    } finally {
      first.child.kill('SIGKILL');
    }
    // 60 answered before the last send; the in-flight one may also have been answered before the kill landed.
    expect([60, 61], first.output()).toContain(acked);

    const second = startChild({ DATA_DIR: dataDir, MODELS_DIR: models });
    try {
      const base = await second.address();
      // Recovered at start-up, before any request reaches the adapter, and snapshotted.
      for (let i = 0; i < 600 && !/start-up recovery: \d+ adapter/.test(second.output()); i++) await new Promise((r) => setTimeout(r, 50));
      expect(second.output()).toMatch(/start-up recovery: 1 adapter\(s\) replayed from their log and snapshotted/);
      const state = await json(`${base}/v1/adapters/${adapter.id}/state`);
      // Every acknowledged observe is there; the one in flight at the kill may or may not have committed.
      expect(state.step).toBeGreaterThanOrEqual(acked);
      expect(state.step).toBeLessThanOrEqual(acked + 1);
      const stored = await json(`${base}/v1/adapters/${adapter.id}`);
      expect(stored.step).toBe(state.step);
      // Recovery starts at the snapshot of step 50 (written in the background after step 50: under load
      // the kill may come first, and then it starts from the seed) and replays the log up to `step`.
      const recovered = /adapter recovered: checkpoint at step (\d+) \+ (\d+) replayed observations/.exec(second.output());
      expect(recovered, second.output()).not.toBeNull();
      expect([0, 50]).toContain(Number(recovered![1]));
      expect(Number(recovered![1]) + Number(recovered![2])).toBe(state.step);

      // The oracle: src/lora replays the first `step` samples from the adapter's seed.
      const runtime = new OnnxRuntime({ executionProvider: 'cpu', intraOpThreads: 1 });
      try {
        const engine = await AdapterEngine.create(loadModelBytes(fixture('mlp.opset17')), { targets: adapter.modules.map((m: any) => m.module), rank: 2, alpha: 4 }, runtime);
        let s: OptimizerState = initState(adapter.optimizer, engine.layout, initTheta(engine.sites, adapter.seed), adapter.seed);
        for (let i = 0; i < state.step; i++) {
          s = (await trainStep(engine, s, { inputs: { x: { data: Float32Array.from(sample(i).x), dims: [1, 20] } }, labels: [sample(i).y] })).state;
        }
        const probe = [sample(1000).x, sample(1001).x];
        const want = await predict(engine, s, { x: { data: Float32Array.from(probe.flat()), dims: [2, 20] } });
        const got = await json(`${base}/v1/adapters/${adapter.id}/predict`, { method: 'POST', body: JSON.stringify({ inputs: { x: probe } }) });
        const flat = (got.outputs as number[][]).flat();
        for (let i = 0; i < flat.length; i++) expect(flat[i]).toBeCloseTo(want.output[i]!, 5);
        const v = (got.variance as number[][]).flat();
        const wv = want.variance!.flatMap((a) => Array.from(a));
        for (let i = 0; i < v.length; i++) expect(v[i]).toBeCloseTo(wv[i]!, 8);
        // And the recovered adapter keeps learning from where it was.
        const more = await json(`${base}/v1/adapters/${adapter.id}/observe`, { method: 'POST', body: JSON.stringify({ inputs: { x: [sample(state.step).x] }, labels: [sample(state.step).y] }) });
        expect(more.step).toBe(state.step + 1);
      } finally {
        await runtime.close();
      }
    } finally {
      second.child.kill('SIGKILL');
      await second.exited;
    }
  }, 120_000);
});

describe('concurrency over loopback', () => {
  // Also with one adapter state in memory (MAX_HOT_ADAPTERS=1) and one engine (MAX_ENGINES=1): the
  // states then leave memory and come back between nearly any two steps, with writers still holding
  // objects that others have since recovered anew (before the adapter's current object was tracked,
  // this gave STATE_CONFLICT on the shared adapter).
  it.each([
    ['', {}],
    [' (one state and one engine in memory)', { MAX_HOT_ADAPTERS: '1', MAX_ENGINES: '1' }],
  ] as const)('32 concurrent streams to 32 adapters and 8 concurrent streams to one adapter: all answered, none lost%s', async (_, limits) => {
    const config = testConfig({ MODELS_DIR: modelsDir({ 'tiny-mlp': 'mlp.opset17' }), RATE_LIMIT_MAX: '0', ...limits });
    const server = await startServer(config);
    try {
      const base = await server.app.listen({ host: '127.0.0.1', port: 0 });
      const modelId = (await json(`${base}/v1/models`)).items[0].id as string;
      const create = (type: string) => json(`${base}/v1/adapters`, { method: 'POST', body: JSON.stringify({ modelId, targets: 'all', rank: 2, optimizer: { type }, seed: 5 }) });
      const PER_STREAM = 5;
      const streamOnce = async (id: string, offset: number): Promise<any[]> => {
        const body = Array.from({ length: PER_STREAM }, (_, k) => observeLine(offset + k)).join('');
        const res = await fetch(`${base}/v1/adapters/${id}/stream`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body });
        expect(res.status).toBe(200);
        return (await res.text()).trim().split('\n').map((l) => JSON.parse(l));
      };

      const types = ['loko', 'adamw', 'sgd', 'r-kalman'];
      const many = await Promise.all(Array.from({ length: 32 }, (_, i) => create(types[i % types.length]!)));
      const shared = await create('loko');
      const [manyAnswers, sharedAnswers] = await Promise.all([
        Promise.all(many.map((a, i) => streamOnce(a.id, i * PER_STREAM))),
        Promise.all(Array.from({ length: 8 }, (_, i) => streamOnce(shared.id, 1000 + i * PER_STREAM))),
      ]);

      for (const [i, answers] of manyAnswers.entries()) {
        expect(answers.map((a) => a.error)).toEqual(new Array(PER_STREAM).fill(undefined));
        expect(answers.map((a) => a.id)).toEqual(Array.from({ length: PER_STREAM }, (_, k) => i * PER_STREAM + k));
        expect(answers.map((a) => a.step)).toEqual([1, 2, 3, 4, 5]);
        expect((await json(`${base}/v1/adapters/${many[i].id}/state`)).step).toBe(PER_STREAM);
        expect(await server.ctx.repos.online.observationCount(many[i].id)).toBe(PER_STREAM);
      }

      const steps: number[] = [];
      for (const answers of sharedAnswers) {
        expect(answers).toHaveLength(PER_STREAM);
        for (const a of answers) expect(a.error).toBeUndefined();
        const s = answers.map((a) => a.step as number);
        // In order within a stream, interleaved with the others.
        expect([...s].sort((a, b) => a - b)).toEqual(s);
        steps.push(...s);
      }
      const acknowledged = steps.length;
      expect(acknowledged).toBe(8 * PER_STREAM);
      expect(steps.sort((a, b) => a - b)).toEqual(Array.from({ length: acknowledged }, (_, k) => k + 1));
      expect((await json(`${base}/v1/adapters/${shared.id}/state`)).step).toBe(acknowledged);
      expect((await json(`${base}/v1/adapters/${shared.id}`)).step).toBe(acknowledged);
      expect(await server.ctx.repos.online.observationCount(shared.id)).toBe(acknowledged);
      // Evictions queued behind the last writes leave at most MAX_HOT_ADAPTERS states in memory.
      const most = Number((limits as { MAX_HOT_ADAPTERS?: string }).MAX_HOT_ADAPTERS ?? 1000);
      for (let i = 0; i < 100 && server.ctx.online.inMemory > most; i++) await new Promise((r) => setTimeout(r, 20));
      expect(server.ctx.online.inMemory).toBeLessThanOrEqual(most);
    } finally {
      await server.close();
    }
  }, 120_000);
});
