import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTrainingGraph, clearTrainingGraphCache, OnnxRuntime, type Tensor, type TrainingGraph } from '../../src/onnx/index.js';
import { FIXTURE_FILES, fixtureModel, golden, relErr, type Golden } from '../fixtures.js';
import { buildModel } from './gradients/harness.js';
import { floatTensor } from '../../src/onnx/proto.js';

const rt = new OnnxRuntime();
afterAll(() => rt.close());

function feeds(tg: TrainingGraph, g: Golden, labels?: Tensor): Record<string, Tensor> {
  const f: Record<string, Tensor> = { ...g.inputs };
  if (tg.labels) f[tg.labels] = labels ?? g.labels;
  for (const s of tg.sites) {
    f[s.aInput] = { data: g.lora[s.module]!.A, dims: [s.rank, s.in] };
    f[s.bInput] = { data: g.lora[s.module]!.B, dims: [s.out, s.rank] };
  }
  return f;
}

const TOL = 1e-3;

describe.each(FIXTURE_FILES)('per-sample outputs on %s match functorch', (stem) => {
  const g = golden(stem);
  const model = fixtureModel(stem);
  const lora = { targets: g.targets, rank: g.rank, alpha: g.alpha };

  it('softmax cross-entropy: loss and per-sample gradients of every A and B', async () => {
    const tg = await buildTrainingGraph(model, { lora, mode: 'gradient', loss: 'softmax-ce' }, rt);
    expect(tg.sites.map((s) => s.module)).toEqual(g.targets);
    const out = await (await rt.session(tg.bytes)).run(feeds(tg, g));
    expect(relErr(out.output!.data as Float32Array, g.expected.logits)).toBeLessThan(TOL);
    expect(relErr(out.loss!.data as Float32Array, g.expected.loss)).toBeLessThan(TOL);
    for (const s of tg.sites) {
      expect(out[s.gradA!]!.dims).toEqual([4, s.rank, s.in]);
      expect(out[s.gradB!]!.dims).toEqual([4, s.out, s.rank]);
      expect(relErr(out[s.gradA!]!.data as Float32Array, g.expected.grads[s.module]!.A), `${s.module}.A`).toBeLessThan(TOL);
      expect(relErr(out[s.gradB!]!.data as Float32Array, g.expected.grads[s.module]!.B), `${s.module}.B`).toBeLessThan(TOL);
    }
  });

  it('mean-squared error: loss and per-sample gradients', async () => {
    const tg = await buildTrainingGraph(model, { lora, mode: 'gradient', loss: 'mse' }, rt);
    const out = await (await rt.session(tg.bytes)).run(feeds(tg, g, g.mseTarget));
    expect(relErr(out.loss!.data as Float32Array, g.expected.mse)).toBeLessThan(TOL);
    for (const s of tg.sites) {
      expect(relErr(out[s.gradA!]!.data as Float32Array, g.expected.mseGrads[s.module]!.A), `${s.module}.A`).toBeLessThan(TOL);
      expect(relErr(out[s.gradB!]!.data as Float32Array, g.expected.mseGrads[s.module]!.B), `${s.module}.B`).toBeLessThan(TOL);
    }
  });

  it('softmax-probability Jacobians [B, m, ...] of every A and B', async () => {
    const tg = await buildTrainingGraph(model, { lora, mode: 'jacobian', observation: 'probs' }, rt);
    const out = await (await rt.session(tg.bytes)).run(feeds(tg, g));
    expect(relErr(out.output!.data as Float32Array, g.expected.logits)).toBeLessThan(TOL);
    const m = tg.m;
    for (const s of tg.sites) {
      expect(out[s.gradA!]!.dims).toEqual([4, m, s.rank, s.in]);
      expect(relErr(out[s.gradA!]!.data as Float32Array, g.expected.jacProbs[s.module]!.A), `${s.module}.A`).toBeLessThan(TOL);
      expect(relErr(out[s.gradB!]!.data as Float32Array, g.expected.jacProbs[s.module]!.B), `${s.module}.B`).toBeLessThan(TOL);
    }
  });
});

describe('factored outputs', () => {
  it('rebuild the same per-sample gradients and Jacobians (transformer: T > 1 tokens per sample)', async () => {
    for (const mode of ['gradient', 'jacobian'] as const) {
      const stem = 'transformer.opset17';
      const g = golden(stem);
      const tg = await buildTrainingGraph(fixtureModel(stem), { lora: { targets: g.targets, rank: g.rank, alpha: g.alpha }, mode, emit: 'both' }, rt);
      const out = await (await rt.session(tg.bytes)).run(feeds(tg, g));
      for (const s of tg.sites) {
        const x = out[s.x!]!;
        const v = out[s.v!]!.data as Float32Array;
        const d = out[s.delta!]!;
        const dv = out[s.dv!]!.data as Float32Array;
        const [B, T] = x.dims as number[];
        const rows = mode === 'jacobian' ? tg.m : 1;
        expect(d.dims).toEqual(mode === 'jacobian' ? [B, rows, T, s.out] : [B, T, s.out]);
        // gB[b,(c),o,k] = Σ_t delta[b,(c),t,o]·v[b,t,k]; gA[b,(c),k,i] = Σ_t dv[b,(c),t,k]·x[b,t,i]
        const gB = new Float32Array(B! * rows * s.out * s.rank);
        const gA = new Float32Array(B! * rows * s.rank * s.in);
        const xd = x.data as Float32Array;
        const dd = d.data as Float32Array;
        for (let b = 0; b < B!; b++) for (let c = 0; c < rows; c++) for (let t = 0; t < T!; t++) {
          const dr = ((b * rows + c) * T! + t);
          for (let o = 0; o < s.out; o++) for (let k = 0; k < s.rank; k++) gB[((b * rows + c) * s.out + o) * s.rank + k]! += dd[dr * s.out + o]! * v[(b * T! + t) * s.rank + k]!;
          for (let k = 0; k < s.rank; k++) for (let i = 0; i < s.in; i++) gA[((b * rows + c) * s.rank + k) * s.in + i]! += dv[dr * s.rank + k]! * xd[(b * T! + t) * s.in + i]!;
        }
        expect(relErr(gB, out[s.gradB!]!.data as Float32Array), `${mode} ${s.module}.B`).toBeLessThan(1e-4);
        expect(relErr(gA, out[s.gradA!]!.data as Float32Array), `${mode} ${s.module}.A`).toBeLessThan(1e-4);
      }
    }
  });
});

describe('observations', () => {
  it('the probs Jacobian equals (diag(p) − ppᵀ) times the logits Jacobian', async () => {
    const stem = 'cnn.opset17';
    const g = golden(stem);
    const lora = { targets: g.targets, rank: g.rank, alpha: g.alpha };
    const model = fixtureModel(stem);
    const tp = await buildTrainingGraph(model, { lora, mode: 'jacobian', observation: 'probs' }, rt);
    const tl = await buildTrainingGraph(model, { lora, mode: 'jacobian', observation: 'logits' }, rt);
    const op = await (await rt.session(tp.bytes)).run(feeds(tp, g));
    const ol = await (await rt.session(tl.bytes)).run(feeds(tl, g));
    const p = op.observation!.data as Float32Array;
    const C = tp.m;
    const site = tp.sites[0]!;
    const n = site.rank * site.in;
    const jl = ol[tl.sites[0]!.gradA!]!.data as Float32Array;
    const expected = new Float32Array(jl.length);
    for (let b = 0; b < 4; b++) for (let c = 0; c < C; c++) for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let k = 0; k < C; k++) acc += ((c === k ? p[b * C + c]! : 0) - p[b * C + c]! * p[b * C + k]!) * jl[(b * C + k) * n + j]!;
      expected[(b * C + c) * n + j] = acc;
    }
    expect(relErr(op[site.gradA!]!.data as Float32Array, expected)).toBeLessThan(1e-4);
  });
});

describe('graph building', () => {
  it('is deterministic and cached in memory and on disk', async () => {
    const g = golden('mlp.opset14');
    const spec = { lora: { targets: g.targets, rank: 3, alpha: 5 }, mode: 'gradient' as const, emit: 'both' as const };
    const dir = mkdtempSync(join(tmpdir(), 'tg-cache-'));
    clearTrainingGraphCache();
    const a = await buildTrainingGraph(fixtureModel('mlp.opset14'), spec, rt, { cacheDir: dir });
    expect(await buildTrainingGraph(fixtureModel('mlp.opset14'), spec, rt, { cacheDir: dir })).toBe(a);
    expect(readdirSync(dir).sort()).toEqual([`${a.key}.json`, `${a.key}.onnx`]);
    clearTrainingGraphCache();
    const fromDisk = await buildTrainingGraph(fixtureModel('mlp.opset14'), spec, rt, { cacheDir: dir });
    expect(fromDisk).not.toBe(a);
    expect(fromDisk).toEqual(a);
    clearTrainingGraphCache();
    const rebuilt = await buildTrainingGraph(fixtureModel('mlp.opset14'), spec, rt);
    expect(Buffer.from(rebuilt.bytes).equals(Buffer.from(a.bytes))).toBe(true);
    const other = await buildTrainingGraph(fixtureModel('mlp.opset14'), { ...spec, lora: { ...spec.lora, rank: 2 } }, rt);
    expect(other.key).not.toBe(a.key);
  });

  it('refuses an op it cannot differentiate on the path, naming op, node and opset', async () => {
    const model = buildModel({
      opset: 17,
      inputs: [{ name: 'x', shape: ['N', 3] }],
      initializers: [floatTensor('W', [3, 2], [1, 2, 3, 4, 5, 6])],
      nodes: [
        { op: 'MatMul', inputs: ['x', 'W'], outputs: ['h'], name: '/fc/MatMul' },
        { op: 'Sin', inputs: ['h'], outputs: ['logits'], name: '/act/Sin' },
      ],
      outputs: ['logits'],
    });
    await expect(buildTrainingGraph(model, { lora: { targets: ['fc'], rank: 1 }, mode: 'gradient' }, rt)).rejects.toMatchObject({
      code: 'ONNX_UNSUPPORTED_OP',
      message: expect.stringMatching(/Sin.*\/act\/Sin.*opset 17/),
    });
  });
});
