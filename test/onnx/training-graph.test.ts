import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTrainingGraph, clearTrainingGraphCache, decodeModel, OnnxRuntime, siteResult, thetaFeed, labelFeed, type SiteOutputs, type Tensor, type TrainingGraph } from '../../src/onnx/index.js';
import { FIXTURE_FILES, fixtureModel, golden, randomArray, relErr, seeded, TIED_INPUTS, tiedWeightModel, type Golden } from '../fixtures.js';
import { buildModel } from './gradients/harness.js';
import { f, floatTensor } from '../../src/onnx/proto.js';
import { MAX_NODE_TENSORS } from '../../src/onnx/ops.js';

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

/** One site's A or B results out of the packed output, [rows, ...] like functorch's. */
const res = (tg: TrainingGraph, out: Record<string, Tensor>, s: SiteOutputs, which: 'A' | 'B'): Float32Array =>
  siteResult(tg, out[tg.packed!]!.data as Float32Array, s, which);

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
    // One [B, n] output; each row is a sample's gradient in θ order (per site: A [r, in], then B [out, r]).
    expect(out[tg.packed!]!.dims).toEqual([4, tg.n]);
    let offset = 0;
    for (const s of tg.sites) {
      expect([s.offsetA, s.offsetB]).toEqual([offset, offset + s.rank * s.in]);
      offset += s.rank * s.in + s.out * s.rank;
    }
    expect(tg.n).toBe(offset);
    for (const s of tg.sites) {
      expect(relErr(res(tg, out, s, 'A'), g.expected.grads[s.module]!.A), `${s.module}.A`).toBeLessThan(TOL);
      expect(relErr(res(tg, out, s, 'B'), g.expected.grads[s.module]!.B), `${s.module}.B`).toBeLessThan(TOL);
    }
  });

  it('mean-squared error: loss and per-sample gradients', async () => {
    const tg = await buildTrainingGraph(model, { lora, mode: 'gradient', loss: 'mse' }, rt);
    const out = await (await rt.session(tg.bytes)).run(feeds(tg, g, g.mseTarget));
    expect(relErr(out.loss!.data as Float32Array, g.expected.mse)).toBeLessThan(TOL);
    for (const s of tg.sites) {
      expect(relErr(res(tg, out, s, 'A'), g.expected.mseGrads[s.module]!.A), `${s.module}.A`).toBeLessThan(TOL);
      expect(relErr(res(tg, out, s, 'B'), g.expected.mseGrads[s.module]!.B), `${s.module}.B`).toBeLessThan(TOL);
    }
  });

  it('softmax-probability Jacobians [B, m, ...] of every A and B', async () => {
    const tg = await buildTrainingGraph(model, { lora, mode: 'jacobian', observation: 'probs' }, rt);
    const out = await (await rt.session(tg.bytes)).run(feeds(tg, g));
    expect(relErr(out.output!.data as Float32Array, g.expected.logits)).toBeLessThan(TOL);
    const m = tg.m;
    expect(out[tg.packed!]!.dims).toEqual([4, m, tg.n]);
    for (const s of tg.sites) {
      expect(relErr(res(tg, out, s, 'A'), g.expected.jacProbs[s.module]!.A), `${s.module}.A`).toBeLessThan(TOL);
      expect(relErr(res(tg, out, s, 'B'), g.expected.jacProbs[s.module]!.B), `${s.module}.B`).toBeLessThan(TOL);
    }
  });
});

// The training graph may run a site on its merged weight W + s·ΔW instead of the injected branch
// (`mergeWeights`, default `auto`: where that is cheaper). Both ways must give functorch's numbers.
describe.each(FIXTURE_FILES)('per-sample outputs on %s with every site merged, and with none', (stem) => {
  const g = golden(stem);
  const model = fixtureModel(stem);
  const lora = { targets: g.targets, rank: g.rank, alpha: g.alpha };
  it.each(['always', 'never'] as const)('mergeWeights %s: gradients and probs Jacobians', async (mergeWeights) => {
    const tg = await buildTrainingGraph(model, { lora, mode: 'gradient', mergeWeights }, rt);
    const merged = decodeModel(tg.bytes).graph!.node!.filter((n) => n.name!.includes('/merged_weight')).length;
    expect(merged).toBe(mergeWeights === 'always' ? tg.sites.length : 0);
    const out = await (await rt.session(tg.bytes)).run(feeds(tg, g));
    expect(relErr(out.output!.data as Float32Array, g.expected.logits)).toBeLessThan(TOL);
    for (const s of tg.sites) {
      expect(relErr(res(tg, out, s, 'A'), g.expected.grads[s.module]!.A), `${s.module}.A`).toBeLessThan(TOL);
      expect(relErr(res(tg, out, s, 'B'), g.expected.grads[s.module]!.B), `${s.module}.B`).toBeLessThan(TOL);
    }
    const tj = await buildTrainingGraph(model, { lora, mode: 'jacobian', observation: 'probs', mergeWeights }, rt);
    const oj = await (await rt.session(tj.bytes)).run(feeds(tj, g));
    for (const s of tj.sites) {
      expect(relErr(res(tj, oj, s, 'A'), g.expected.jacProbs[s.module]!.A), `${s.module}.A`).toBeLessThan(TOL);
      expect(relErr(res(tj, oj, s, 'B'), g.expected.jacProbs[s.module]!.B), `${s.module}.B`).toBeLessThan(TOL);
    }
  });
});

describe('merged training sites in every weight layout', () => {
  // MatMul with the weight on either side, Gemm with each transA/transB and alpha ≠ 1. The batch leads
  // the model's input and output: an op that reads its activation as [in, rows] gets it through a
  // Transpose, and a left-form product (W·x, [out, rows]) is transposed back.
  const layouts = [
    { name: 'MatMul x·W', op: 'MatMul', side: 1, tA: 0, tB: 0 },
    { name: 'MatMul W·x', op: 'MatMul', side: 0, tA: 0, tB: 0 },
    ...[0, 1].flatMap((tA) => [0, 1].flatMap((tB) => [1, 0].map((side) => ({ name: `Gemm transA=${tA} transB=${tB} weight=${side === 1 ? 'B' : 'A'}`, op: 'Gemm', side, tA, tB })))),
  ];
  it.each(layouts)('$name: merged = unmerged', async (L) => {
    const nIn = 5, nOut = 4, rows = 3, r = 2;
    const rand = seeded(11);
    const right = L.side === 1;
    const storedOutIn = L.op === 'MatMul' ? !right : right ? L.tB === 1 : L.tA === 0;
    const wDims = storedOutIn ? [nOut, nIn] : [nIn, nOut];
    const dataTransposed = right ? L.op === 'Gemm' && L.tA === 1 : !(L.op === 'Gemm' && L.tB === 1);
    const attrs = L.op === 'Gemm' ? { transA: L.tA, transB: L.tB, alpha: f(0.5) } : {};
    const xs = dataTransposed ? 'xt' : 'x';
    const nodes = [
      ...(dataTransposed ? [{ op: 'Transpose', inputs: ['x'], outputs: ['xt'], attrs: { perm: [1, 0] } }] : []),
      { op: L.op, inputs: right ? [xs, 'W'] : ['W', xs], outputs: [right ? 'y' : 'yt'], name: '/lin/Op', attrs },
      ...(right ? [] : [{ op: 'Transpose', inputs: ['yt'], outputs: ['y'], attrs: { perm: [1, 0] } }]),
    ];
    const model = buildModel({ opset: 17, inputs: [{ name: 'x', shape: ['N', nIn] }], nodes, outputs: ['y'], initializers: [floatTensor('W', wDims, randomArray(nIn * nOut, rand))] });
    const x = randomArray(rows * nIn, rand);
    const A = randomArray(r * nIn, rand);
    const B = randomArray(nOut * r, rand);
    const y = randomArray(rows * nOut, rand);
    const results = [];
    for (const mergeWeights of ['always', 'never'] as const) {
      const tg = await buildTrainingGraph(model, { lora: { targets: ['lin'], rank: r, alpha: 3 }, mode: 'gradient', loss: 'mse', mergeWeights }, rt);
      const feedsNow: Record<string, Tensor> = {
        x: { data: x, dims: [rows, nIn] }, labels: { data: y, dims: [rows, nOut] },
        'lin.lora_A': { data: A, dims: [r, nIn] }, 'lin.lora_B': { data: B, dims: [nOut, r] },
      };
      results.push(await (await rt.session(tg.bytes)).run(feedsNow));
    }
    const [m, u] = results as [Record<string, Tensor>, Record<string, Tensor>];
    for (const k of ['output', 'loss', 'grads']) {
      expect(m[k]!.dims, k).toEqual(u[k]!.dims);
      expect(relErr(m[k]!.data as Float32Array, u[k]!.data as Float32Array), k).toBeLessThan(1e-5);
    }
  });
});

// Tied weights (test/fixtures.ts): the merged weight W' = W + s·B·Aᵀ is the target's own tensor, so the
// other readers of W (a second target, a Gather) keep W. `never` is checked against central
// differences in test/lora/train-step.test.ts; `always` must agree with it.
describe('merged training sites on tied weights', () => {
  it.each(['tiedTargets', 'sharedWithGather'] as const)('%s: mergeWeights always gives the gradients and Jacobians of never', async (kind) => {
    const model = tiedWeightModel(kind);
    const inputs = TIED_INPUTS[kind];
    const B = Object.values(inputs)[0]!.dims[0]!;
    for (const mode of ['gradient', 'jacobian'] as const) {
      const outs: Float32Array[] = [];
      for (const mergeWeights of ['never', 'always'] as const) {
        const tg = await buildTrainingGraph(model, { lora: { targets: 'all', rank: 2, alpha: 4 }, mode, layout: 'packed', mergeWeights }, rt);
        const rand = seeded(9);
        const theta = Float32Array.from({ length: tg.n! }, () => (rand() - 0.5) * 0.6);
        const f: Record<string, Tensor> = { ...inputs, [tg.theta!]: { data: thetaFeed(tg, theta), dims: tg.thetaDims! } };
        if (mode === 'gradient') f[tg.labels!] = labelFeed(tg, 'softmax-ce', Array.from({ length: B }, (_, b) => b % tg.m), B);
        outs.push((await (await rt.session(tg.bytes)).run(f))[tg.packed!]!.data as Float32Array);
      }
      expect(relErr(outs[1]!, outs[0]!), mode).toBeLessThan(1e-5);
    }
  });
});

describe('patterns', () => {
  it("the exporter's erf-GELU is differentiated as one unit, from x alone", async () => {
    const model = fixtureModel('transformer.opset17');
    const erfs = model.graph!.node!.filter((n) => n.opType === 'Erf').length;
    expect(erfs).toBeGreaterThan(0);
    const tg = await buildTrainingGraph(model, { lora: { targets: 'all', rank: 2 }, mode: 'gradient' }, rt);
    const nodes = decodeModel(tg.bytes).graph!.node!;
    expect(nodes.filter((n) => n.name!.includes('gelu_grad')).length).toBe(erfs);
    // Nothing in the backward pass reads the forward GELU's intermediates, so onnxruntime can fuse it.
    const inner = new Set(model.graph!.node!.filter((n) => n.opType === 'Erf').flatMap((n) => [...n.input!, ...n.output!]));
    expect(nodes.filter((n) => n.name!.startsWith('train/') && n.input!.some((i) => inner.has(i)))).toEqual([]);
  });
});

describe('per-sample gradients over many tokens', () => {
  // T·out ≥ 2048 takes the vᵀ·δ orientation for B's gradient; the reference is plain TypeScript:
  // y = x·W + s·(x·Aᵀ)·Bᵀ, per-sample loss mean((y − label)²), δ = 2(y − label)/(T·out),
  // gB[b] = s·Σ_t δ_t ⊗ (A·x_t), gA[b] = s·Σ_t (Bᵀ·δ_t) ⊗ x_t.
  it('a linear layer on [N, 64, 8] inputs matches a plain-TypeScript reference', async () => {
    const N = 3, T = 64, nIn = 8, nOut = 40, r = 2, alpha = 3, s = alpha / r;
    const rand = seeded(5);
    const W = randomArray(nIn * nOut, rand);
    const model = buildModel({ opset: 17, inputs: [{ name: 'x', shape: ['N', T, nIn] }], nodes: [{ op: 'MatMul', inputs: ['x', 'W'], outputs: ['y'], name: '/lin/MatMul' }], outputs: ['y'], initializers: [floatTensor('W', [nIn, nOut], W)] });
    const x = randomArray(N * T * nIn, rand);
    const A = randomArray(r * nIn, rand);
    const B = randomArray(nOut * r, rand);
    const label = randomArray(N * T * nOut, rand);
    const tg = await buildTrainingGraph(model, { lora: { targets: ['lin'], rank: r, alpha }, mode: 'gradient', loss: 'mse' }, rt);
    const out = await (await rt.session(tg.bytes)).run({ x: { data: x, dims: [N, T, nIn] }, labels: { data: label, dims: [N, T, nOut] }, 'lin.lora_A': { data: A, dims: [r, nIn] }, 'lin.lora_B': { data: B, dims: [nOut, r] } });
    const gA = new Float64Array(N * r * nIn);
    const gB = new Float64Array(N * nOut * r);
    for (let b = 0; b < N; b++) for (let t = 0; t < T; t++) {
      const row = (b * T + t) * nIn;
      const u = Array.from({ length: r }, (_, k) => { let a = 0; for (let i = 0; i < nIn; i++) a += A[k * nIn + i]! * x[row + i]!; return a; });
      const delta = new Float64Array(nOut);
      for (let o = 0; o < nOut; o++) {
        let y = 0;
        for (let i = 0; i < nIn; i++) y += x[row + i]! * W[i * nOut + o]!;
        for (let k = 0; k < r; k++) y += s * u[k]! * B[o * r + k]!;
        delta[o] = (2 * (y - label[(b * T + t) * nOut + o]!)) / (T * nOut);
      }
      for (let o = 0; o < nOut; o++) for (let k = 0; k < r; k++) gB[(b * nOut + o) * r + k]! += s * delta[o]! * u[k]!;
      for (let k = 0; k < r; k++) {
        let bd = 0;
        for (let o = 0; o < nOut; o++) bd += B[o * r + k]! * delta[o]!;
        for (let i = 0; i < nIn; i++) gA[(b * r + k) * nIn + i]! += s * bd * x[row + i]!;
      }
    }
    expect(out[tg.packed!]!.dims).toEqual([N, r * nIn + nOut * r]);
    expect(relErr(res(tg, out, tg.sites[0]!, 'B'), gB)).toBeLessThan(1e-4);
    expect(relErr(res(tg, out, tg.sites[0]!, 'A'), gA)).toBeLessThan(1e-4);
  });
});

describe('per-sample gradients of one-row samples', () => {
  // Two linear layers read the same x (one factor shared by two sites); the reference is plain
  // TypeScript: y = x·W1 + x·W2 + s·Σ_k B_k·(A_k·x), loss mean((y − label)²), δ = 2(y − label)/out,
  // gB_k = s·δ ⊗ (A_k·x), gA_k = s·(B_kᵀ·δ) ⊗ x. Runs of neighbouring tensors of at most 1024 floats
  // a sample are gathered, a lone tensor is a batched MatMul, and the pieces are concatenated: all
  // gathered (6·2, 5·2, 6·2, 5·2), none (1200, 1400, 1200, 1400), and l1.A, l1.B, l2.A gathered with
  // l2.B alone (300 + 400 + 300, then 400) must give the same numbers.
  it.each([
    { nIn: 6, nOut: 5, gathers: 1 },
    { nIn: 600, nOut: 700, gathers: 0 },
    { nIn: 150, nOut: 200, gathers: 1 },
  ])('two sites on one input, in %o, match a plain-TypeScript reference', async ({ nIn, nOut, gathers }) => {
    const N = 4, r = 2, alpha = 3, s = alpha / r;
    const rand = seeded(11);
    const W = [randomArray(nIn * nOut, rand), randomArray(nIn * nOut, rand)];
    const model = buildModel({
      opset: 17, inputs: [{ name: 'x', shape: ['N', nIn] }],
      nodes: [
        { op: 'MatMul', inputs: ['x', 'W1'], outputs: ['y1'], name: '/l1/MatMul' },
        { op: 'MatMul', inputs: ['x', 'W2'], outputs: ['y2'], name: '/l2/MatMul' },
        { op: 'Add', inputs: ['y1', 'y2'], outputs: ['y'], name: '/add' },
      ],
      outputs: ['y'], initializers: [floatTensor('W1', [nIn, nOut], W[0]!), floatTensor('W2', [nIn, nOut], W[1]!)],
    });
    const x = randomArray(N * nIn, rand);
    const A = [randomArray(r * nIn, rand), randomArray(r * nIn, rand)];
    const B = [randomArray(nOut * r, rand), randomArray(nOut * r, rand)];
    const label = randomArray(N * nOut, rand);
    const tg = await buildTrainingGraph(model, { lora: { targets: ['l1', 'l2'], rank: r, alpha }, mode: 'gradient', loss: 'mse' }, rt);
    const ops = decodeModel(tg.bytes).graph!.node!.map((n) => n.opType);
    expect(ops.filter((o) => o === 'Gather').length).toBe(2 * gathers);
    expect(tg.n).toBe(2 * r * (nIn + nOut));
    const feeds: Record<string, Tensor> = { x: { data: x, dims: [N, nIn] }, labels: { data: label, dims: [N, nOut] } };
    tg.sites.forEach((site, k) => {
      feeds[site.aInput] = { data: A[k]!, dims: [r, nIn] };
      feeds[site.bInput] = { data: B[k]!, dims: [nOut, r] };
    });
    expect(tg.sites.map((t) => t.module)).toEqual(['l1', 'l2']);
    const out = await (await rt.session(tg.bytes)).run(feeds);
    const gA = [new Float64Array(N * r * nIn), new Float64Array(N * r * nIn)];
    const gB = [new Float64Array(N * nOut * r), new Float64Array(N * nOut * r)];
    for (let b = 0; b < N; b++) {
      const xb = x.subarray(b * nIn, (b + 1) * nIn);
      const u = A.map((a) => Array.from({ length: r }, (_, k) => { let t = 0; for (let i = 0; i < nIn; i++) t += a[k * nIn + i]! * xb[i]!; return t; }));
      const delta = new Float64Array(nOut);
      for (let o = 0; o < nOut; o++) {
        let y = 0;
        for (let k = 0; k < 2; k++) {
          for (let i = 0; i < nIn; i++) y += xb[i]! * W[k]![i * nOut + o]!;
          for (let j = 0; j < r; j++) y += s * u[k]![j]! * B[k]![o * r + j]!;
        }
        delta[o] = (2 * (y - label[b * nOut + o]!)) / nOut;
      }
      for (let k = 0; k < 2; k++) {
        for (let o = 0; o < nOut; o++) for (let j = 0; j < r; j++) gB[k]![(b * nOut + o) * r + j] = s * delta[o]! * u[k]![j]!;
        for (let j = 0; j < r; j++) {
          let bd = 0;
          for (let o = 0; o < nOut; o++) bd += B[k]![o * r + j]! * delta[o]!;
          for (let i = 0; i < nIn; i++) gA[k]![(b * r + j) * nIn + i] = s * bd * xb[i]!;
        }
      }
    }
    expect(out[tg.packed!]!.dims).toEqual([N, tg.n]);
    tg.sites.forEach((site, k) => {
      expect(relErr(res(tg, out, site, 'A'), gA[k]!)).toBeLessThan(1e-4);
      expect(relErr(res(tg, out, site, 'B'), gB[k]!)).toBeLessThan(1e-4);
    });
  });
});

/** θ as the packed layout's one input: every site's A then B in site order (θ order), laid out by thetaFeed. */
function packedTheta(tg: TrainingGraph, g: Golden): Tensor {
  const parts = tg.sites.flatMap((s) => [g.lora[s.module]!.A, g.lora[s.module]!.B]);
  const theta = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    theta.set(p, o);
    o += p.length;
  }
  expect(tg.thetaDims).toEqual([theta.length / tg.sites[0]!.rank, tg.sites[0]!.rank]);
  return { data: thetaFeed(tg, theta), dims: tg.thetaDims! };
}

/** The golden labels (or MSE targets) as a packed graph takes them (labelFeed). */
function packedLabels(tg: TrainingGraph, g: Golden, loss: 'softmax-ce' | 'mse'): Tensor {
  const ids = loss === 'mse' ? Array.from(g.mseTarget.data as Float32Array) : Array.from(g.labels.data as BigInt64Array, Number);
  return labelFeed(tg, loss, ids, 4);
}

// `layout: 'packed'` (what the engine runs): θ goes in as one input, and a gradient graph's only
// output is `grads`, whose rows carry the sample's model output after its n gradient values.
describe.each(FIXTURE_FILES)('packed layout on %s', (stem) => {
  const g = golden(stem);
  const model = fixtureModel(stem);
  const lora = { targets: g.targets, rank: g.rank, alpha: g.alpha };

  it.each(['softmax-ce', 'mse'] as const)('%s: rows are functorch\'s per-sample gradients, then the model output', async (loss) => {
    const tg = await buildTrainingGraph(model, { lora, mode: 'gradient', loss, layout: 'packed' }, rt);
    const m = decodeModel(tg.bytes).graph!;
    expect(m.input!.map((i) => i.name)).toEqual([...tg.dataInputs, 'labels', 'theta']);
    expect(tg.inputs).toEqual([...tg.dataInputs, 'labels', 'theta']);
    expect(m.output!.map((o) => o.name)).toEqual(['grads']);
    expect([tg.output, tg.loss, tg.theta, tg.outputOffset, tg.row]).toEqual([undefined, undefined, 'theta', tg.n, tg.n + tg.m]);
    // θ's A blocks go in transposed and need no node (only θ's Split, a tree of them past 15 blocks:
    // see MAX_NODE_TENSORS); softmax-ce labels go in one-hot.
    const thetaNodes = m.node!.filter((n) => n.name!.startsWith('theta/'));
    expect(new Set(thetaNodes.map((n) => n.opType))).toEqual(new Set(['Split']));
    expect(thetaNodes).toHaveLength(2 * tg.sites.length <= MAX_NODE_TENSORS - 1 ? 1 : 2);
    for (const n of m.node!) {
      if (n.opType === 'Split') expect(n.output!.length).toBeLessThanOrEqual(MAX_NODE_TENSORS - 1);
      if (n.opType === 'Sum') expect(n.input!.length).toBeLessThanOrEqual(MAX_NODE_TENSORS - 1);
    }
    expect(m.node!.some((n) => n.opType === 'OneHot')).toBe(false);
    // q, k and v read one x: one MatMul by their Aᵀ blocks side by side makes all three v = x·Aᵀ.
    expect(m.node!.filter((n) => n.name!.startsWith('lora/shared/')).map((n) => n.opType)).toEqual(stem.startsWith('transformer') ? ['Concat', 'MatMul', 'Split', 'Concat', 'MatMul', 'Split'] : []);
    expect(tg.labelsOneHot).toBe(loss === 'softmax-ce' ? true : undefined);
    const out = await (await rt.session(tg.bytes)).run({ ...g.inputs, labels: packedLabels(tg, g, loss), theta: packedTheta(tg, g) });
    const rows = out.grads!.data as Float32Array;
    expect(out.grads!.dims).toEqual([4, tg.n + tg.m]);
    const logits = new Float32Array(4 * tg.m);
    for (let b = 0; b < 4; b++) logits.set(rows.subarray(b * tg.row + tg.n, (b + 1) * tg.row), b * tg.m);
    expect(relErr(logits, g.expected.logits)).toBeLessThan(TOL);
    const want = loss === 'mse' ? g.expected.mseGrads : g.expected.grads;
    for (const s of tg.sites) {
      expect(relErr(res(tg, out, s, 'A'), want[s.module]!.A), `${s.module}.A`).toBeLessThan(TOL);
      expect(relErr(res(tg, out, s, 'B'), want[s.module]!.B), `${s.module}.B`).toBeLessThan(TOL);
    }
  });

  // The LoRA scale s = alpha/r (2 here) rides on the seed, or, where every one-row site is merged
  // (lateScale), on the products; the gradients are the same either way.
  it.each(['auto', 'never'] as const)('mergeWeights %s: s in the products or in the seed, the same gradients', async (mergeWeights) => {
    const tg = await buildTrainingGraph(model, { lora, mode: 'gradient', loss: 'softmax-ce', layout: 'packed', mergeWeights }, rt);
    const nodes = decodeModel(tg.bytes).graph!.node!;
    expect(nodes.some((n) => n.name!.startsWith('train/seed'))).toBe(mergeWeights === 'never');
    const out = await (await rt.session(tg.bytes)).run({ ...g.inputs, labels: packedLabels(tg, g, 'softmax-ce'), theta: packedTheta(tg, g) });
    for (const s of tg.sites) {
      expect(relErr(res(tg, out, s, 'A'), g.expected.grads[s.module]!.A), `${s.module}.A`).toBeLessThan(TOL);
      expect(relErr(res(tg, out, s, 'B'), g.expected.grads[s.module]!.B), `${s.module}.B`).toBeLessThan(TOL);
    }
  });

  it('Jacobians and factors: θ as one input gives the separate inputs\' results', async () => {
    for (const spec of [{ mode: 'jacobian' as const }, { mode: 'gradient' as const, emit: 'factors' as const }]) {
      const sep = await buildTrainingGraph(model, { lora, ...spec }, rt);
      const pk = await buildTrainingGraph(model, { lora, ...spec, layout: 'packed' }, rt);
      expect(pk.row).toBe(sep.row);
      const a = await (await rt.session(sep.bytes)).run(feeds(sep, g));
      const b = await (await rt.session(pk.bytes)).run({ ...g.inputs, ...(pk.labels ? { labels: packedLabels(pk, g, 'softmax-ce') } : {}), theta: packedTheta(pk, g) });
      expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
      for (const k of Object.keys(a)) expect(relErr(b[k]!.data as Float32Array, a[k]!.data as Float32Array), `${spec.mode} ${k}`).toBeLessThan(1e-6);
    }
  });
});

describe('factored outputs', () => {
  // The transformer has T > 1 tokens per sample (only its classifier's A and B are gathered); the MLP
  // one row, and all its packed gradients come from gathered outer products while the factors are
  // emitted too.
  it.each(['transformer.opset17', 'mlp.opset17'])('rebuild the same per-sample gradients and Jacobians (%s)', async (stem) => {
    for (const mode of ['gradient', 'jacobian'] as const) {
      const g = golden(stem);
      const tg = await buildTrainingGraph(fixtureModel(stem), { lora: { targets: g.targets, rank: g.rank, alpha: g.alpha }, mode, emit: 'both' }, rt);
      // Gathered outer products: Gathers of factor rows from a transposed Concat.
      const nodes = decodeModel(tg.bytes).graph!.node!;
      const transposed = new Set(nodes.filter((n) => n.opType === 'Transpose').map((n) => n.output![0]!));
      const gathered = nodes.some((n) => n.opType === 'Gather' && n.name?.startsWith('train/') && transposed.has(n.input![0]!));
      expect(gathered).toBe(mode === 'gradient');
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
        expect(relErr(gB, res(tg, out, s, 'B')), `${mode} ${s.module}.B`).toBeLessThan(1e-4);
        expect(relErr(gA, res(tg, out, s, 'A')), `${mode} ${s.module}.A`).toBeLessThan(1e-4);
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
    const jl = res(tl, ol, tl.sites[0]!, 'A');
    const expected = new Float32Array(jl.length);
    for (let b = 0; b < 4; b++) for (let c = 0; c < C; c++) for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let k = 0; k < C; k++) acc += ((c === k ? p[b * C + c]! : 0) - p[b * C + c]! * p[b * C + k]!) * jl[(b * C + k) * n + j]!;
      expected[(b * C + c) * n + j] = acc;
    }
    expect(relErr(res(tp, op, site, 'A'), expected)).toBeLessThan(1e-4);
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

  it('refuses a model exported with a fixed batch size, saying how to export it with a dynamic one', async () => {
    const model = fixtureModel('mlp.opset17');
    for (const v of [...model.graph!.input!, ...model.graph!.output!]) v.type!.tensorType!.shape!.dim![0] = { dimValue: 1 };
    await expect(buildTrainingGraph(model, { lora: { targets: 'all', rank: 2 }, mode: 'gradient' }, rt)).rejects.toMatchObject({
      code: 'MODEL_UNSUPPORTED',
      message: expect.stringMatching(/batch size is fixed: input 'x' is \[1, 20\].*dynamic_axes=\{'x': \{0: 'batch'\}, 'logits': \{0: 'batch'\}\}/),
      details: { input: 'x', shape: [1, 20] },
    });
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
