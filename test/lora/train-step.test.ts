import { afterAll, describe, expect, it } from 'vitest';
import { OnnxRuntime, type Tensor } from '../../src/onnx/index.js';
import { AdapterEngine, initTheta, predict, softmaxRows, trainStep } from '../../src/lora/index.js';
import { initState, serializeState, OPTIMIZER_TYPES, type OptimizerConfigInput, type OptimizerState } from '../../src/kalman/index.js';
import { exportState } from '../../src/lora/index.js';
import { firstNonFinite, outputLoss } from '../../src/lora/engine.js';
import { fixtureModel, golden, randomArray, relErr, seeded, TIED_INPUTS, tiedWeightModel } from '../fixtures.js';

const rt = new OnnxRuntime();
afterAll(() => rt.close());

const stem = 'mlp.opset17';
const g = golden(stem);
const inputs: Record<string, Tensor> = g.inputs;
const labels = Array.from(g.labels.data as BigInt64Array, Number);

async function engineFor(task: 'classification' | 'regression' = 'classification') {
  return AdapterEngine.create(fixtureModel(stem), { targets: 'all', rank: 2, alpha: 4 }, rt, { task });
}
const fresh = (engine: AdapterEngine, cfg: OptimizerConfigInput) => initState(cfg, engine.layout, initTheta(engine.sites, 7), 7);
const bytesOf = (s: OptimizerState) => Buffer.from(exportState(serializeState(s)));

describe('trainStep', () => {
  it.each(OPTIMIZER_TYPES)('%s: prequential output is the pre-update forward pass, and repeated steps lower the loss', async (type) => {
    const engine = await engineFor();
    const cfg: OptimizerConfigInput = type === 'sgd' ? { type, lr: 0.05 } : type === 'adamw' ? { type, lr: 0.01 } : type === 'adagrad' ? { type, lr: 0.05 } : ['kfac', 'ring', 'reng'].includes(type) ? { type, lr: 0.01 } as OptimizerConfigInput : { type } as OptimizerConfigInput;
    let state = fresh(engine, cfg);
    const before = bytesOf(state);
    const first = await trainStep(engine, state, { inputs, labels });
    expect(bytesOf(state).equals(before)).toBe(true);
    expect(relErr(first.output, await engine.forward(state.theta, inputs))).toBeLessThan(1e-6);
    expect(first.state.step).toBe(1);
    expect(first.loss).toHaveLength(4);
    if (type === 'loko' || type === 'r-kalman') {
      expect(first.predictiveVariance).toHaveLength(4);
      expect(first.predictiveVariance!.every((v) => v.every((x) => x > 0))).toBe(true);
    }
    const loss0 = first.loss.reduce((a, b) => a + b, 0);
    state = first.state;
    let last = first;
    for (let i = 0; i < 15; i++) {
      last = await trainStep(engine, state, { inputs, labels });
      state = last.state;
    }
    const loss1 = last.loss.reduce((a, b) => a + b, 0);
    expect(loss1).toBeLessThan(loss0 * 0.9);
  });

  it('Kalman mini-batches are B sequential per-sample updates (B = 4 sees 4 samples in one step)', async () => {
    const engine = await engineFor();
    const out = await trainStep(engine, fresh(engine, { type: 'loko', observation: 'probs' }), { inputs, labels });
    expect(out.metrics.batchSize).toBe(4);
    expect(out.state.samples).toBe(4);
    expect(out.metrics.kalman!.residual).toHaveLength(4);
  });

  it('regression with the LoKO regression observation fits a target', async () => {
    const engine = await engineFor('regression');
    const target = g.mseTarget.data as Float32Array;
    let state = fresh(engine, { type: 'loko', observation: 'regression' });
    const first = await trainStep(engine, state, { inputs, labels: target });
    state = first.state;
    let last = first;
    for (let i = 0; i < 10; i++) {
      last = await trainStep(engine, state, { inputs, labels: target });
      state = last.state;
    }
    expect(last.loss.reduce((a, b) => a + b, 0)).toBeLessThan(first.loss.reduce((a, b) => a + b, 0) * 0.5);
  });

  describe('bad input changes nothing', () => {
    const cases: [string, () => { inputs: Record<string, Tensor>; labels: number[] }, string][] = [
      ['a NaN label', () => ({ inputs, labels: [0, Number.NaN, 1, 2] }), 'INVALID_LABEL'],
      ['a label out of range', () => ({ inputs, labels: [0, 5, 1, 2] }), 'INVALID_LABEL'],
      ['too few labels', () => ({ inputs, labels: [0, 1] }), 'INVALID_LABEL'],
      ['an infinite input', () => {
        const x = Float32Array.from(inputs.x!.data as Float32Array);
        x[3] = Infinity;
        return { inputs: { x: { data: x, dims: inputs.x!.dims } }, labels };
      }, 'INVALID_INPUT'],
      ['a wrong input shape', () => ({ inputs: { x: { data: new Float32Array(4 * 19), dims: [4, 19] } }, labels }), 'INVALID_INPUT'],
      ['an unknown input', () => ({ inputs: { ...inputs, y: { data: new Float32Array(1), dims: [1] } }, labels }), 'INVALID_INPUT'],
    ];
    it.each(cases)('%s', async (_, make, code) => {
      const engine = await engineFor();
      for (const type of ['loko', 'adamw', 'kfac'] as const) {
        const state = fresh(engine, { type } as OptimizerConfigInput);
        const before = bytesOf(state);
        await expect(trainStep(engine, state, make())).rejects.toMatchObject({ code });
        expect(bytesOf(state).equals(before)).toBe(true);
      }
    });
  });
});

describe('an empty sequence', () => {
  it('gets INVALID_INPUT naming the empty axis, before any graph runs, and changes nothing', async () => {
    const engine = await AdapterEngine.create(fixtureModel('transformer.opset17'), { targets: 'all', rank: 2, alpha: 4 }, rt);
    const state = fresh(engine, { type: 'loko', observation: 'probs' });
    const before = bytesOf(state);
    const ids = { data: new BigInt64Array(0), dims: [2, 0] };
    await expect(trainStep(engine, state, { inputs: { ids }, labels: [0, 1] })).rejects.toMatchObject({
      code: 'INVALID_INPUT', details: { input: 'ids', shape: [2, 0], axis: 1 }, message: expect.stringContaining('axis 1 is empty'),
    });
    await expect(predict(engine, state, { ids })).rejects.toMatchObject({ code: 'INVALID_INPUT', details: { axis: 1 } });
    expect(bytesOf(state).equals(before)).toBe(true);
  });
});

describe('per-sample Jacobians in sub-batches (maxJacobianFloats)', () => {
  it('give each sample the H, h and output of one run, and the same Kalman step', async () => {
    const whole = await engineFor();
    const per = whole.m * whole.layout.n;
    const split = await AdapterEngine.create(fixtureModel(stem), { targets: 'all', rank: 2, alpha: 4 }, rt, { maxJacobianFloats: 3 * per });
    const theta = Float64Array.from({ length: whole.layout.n }, (_, i) => Math.sin(i) * 0.2);
    const [a, b] = [await whole.jacobians(theta, inputs), await split.jacobians(theta, inputs)];
    expect(b.H).toHaveLength(4);
    expect(b.H[0]!.buffer).not.toBe(b.H[3]!.buffer); // samples 0-2 and 3 came from two runs
    expect(relErr(b.output, a.output)).toBeLessThan(1e-6);
    for (let i = 0; i < 4; i++) {
      expect(relErr(b.H[i]!, a.H[i]!)).toBeLessThan(1e-6);
      expect(relErr(b.h[i]!, a.h[i]!)).toBeLessThan(1e-6);
    }
    const cfg = { type: 'loko', observation: 'probs' } as const;
    const [sa, sb] = [await trainStep(whole, fresh(whole, cfg), { inputs, labels }), await trainStep(split, fresh(split, cfg), { inputs, labels })];
    expect(relErr(sb.state.theta, sa.state.theta)).toBeLessThan(1e-6);
    expect(relErr(sb.predictiveVariance!.flatMap((v) => Array.from(v)), sa.predictiveVariance!.flatMap((v) => Array.from(v)))).toBeLessThan(1e-6);
  });
});

describe('firstNonFinite', () => {
  it('finds the first NaN or infinity at any position, and none in finite arrays', () => {
    for (const n of [1, 3, 4, 7, 64, 785]) {
      const a = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 1e30);
      expect(firstNonFinite(a), `finite ${n}`).toBe(-1);
      expect(firstNonFinite(Float64Array.from(a)), `finite f64 ${n}`).toBe(-1);
      for (const bad of [Number.NaN, Infinity, -Infinity]) {
        for (const at of new Set([0, n >> 1, n - 1])) {
          const b = Float32Array.from(a);
          b[at] = bad;
          if (at + 1 < n) b[n - 1] = Number.NaN;
          expect(firstNonFinite(b), `${bad} at ${at} of ${n}`).toBe(at);
        }
      }
    }
    expect(firstNonFinite(new Float32Array(0))).toBe(-1);
  });
});

describe('a diverged state', () => {
  it.each(OPTIMIZER_TYPES)('%s: a finite batch on a θ whose outputs overflow gives NON_FINITE_STATE (not NON_FINITE_INPUT) and changes nothing', async (type) => {
    const engine = await engineFor();
    const theta = initTheta(engine.sites, 7).map((v, i) => (i % 2 ? 1e30 : -1e30));
    const state = initState({ type } as OptimizerConfigInput, engine.layout, theta, 7);
    const before = bytesOf(state);
    await expect(trainStep(engine, state, { inputs, labels })).rejects.toMatchObject({ code: 'NON_FINITE_STATE', details: { cause: 'state' } });
    expect(bytesOf(state).equals(before)).toBe(true);
    // The same batch on a healthy state is accepted: the batch was never the problem.
    await expect(trainStep(engine, fresh(engine, { type } as OptimizerConfigInput), { inputs, labels })).resolves.toBeDefined();
  });
});

describe('predict', () => {
  it('returns probabilities and, for Kalman optimizers, a positive predictive variance', async () => {
    const engine = await engineFor();
    const loko = await predict(engine, fresh(engine, { type: 'loko', observation: 'probs' }), inputs);
    expect(loko.variance).toHaveLength(4);
    expect(loko.variance![0]).toHaveLength(5);
    expect(loko.variance!.every((v) => v.every((x) => x > 0))).toBe(true);
    expect(loko.probs!.length).toBe(20);
    const adam = await predict(engine, fresh(engine, { type: 'adamw' }), inputs);
    expect(adam.variance).toBeUndefined();
    expect(relErr(adam.output, loko.output)).toBeLessThan(1e-6);
  });
});

// The engine's gradient graph returns no loss: the engine takes it from the output in closed form
// (softmax cross-entropy, or the mean squared error over the m outputs). Both must be functorch's.
describe('AdapterEngine.gradients on the golden θ', () => {
  it.each(['classification', 'regression'] as const)('%s: output, per-sample loss and gradients match functorch', async (task) => {
    const engine = await engineFor(task);
    const theta = new Float32Array(engine.layout.n);
    for (const b of engine.layout.blocks) theta.set(g.lora[b.module]![b.matrix], b.offset);
    const y = task === 'classification' ? labels : (g.mseTarget.data as Float32Array);
    const run = await engine.gradients(theta, inputs, y);
    expect(relErr(run.output, g.expected.logits)).toBeLessThan(1e-4);
    expect(relErr(run.loss, task === 'classification' ? g.expected.loss : g.expected.mse)).toBeLessThan(1e-4);
    const want = task === 'classification' ? g.expected.grads : g.expected.mseGrads;
    for (const b of engine.layout.blocks) {
      const got = new Float32Array(4 * b.rows * b.cols);
      run.grads.forEach((row, i) => got.set(row.subarray(b.offset, b.offset + b.rows * b.cols), i * b.rows * b.cols));
      expect(relErr(got, want[b.module]![b.matrix]), `${b.module}.${b.matrix}`).toBeLessThan(1e-3);
    }
  });
});

// The engine's θ and label feeds come from a pool of buffers: runs in flight at the same time must
// each keep their own.
describe('AdapterEngine under concurrent calls', () => {
  it('gives every call its own θ and labels: the same results as one call at a time', async () => {
    const engine = await engineFor();
    const thetas = [0, 1, 2, 3].map((k) => Float64Array.from({ length: engine.layout.n }, (_, i) => Math.sin(i * 0.7 + k) * 0.2));
    const ys = [0, 1, 2, 3].map((k) => labels.map((y, i) => (y + k + i) % engine.m));
    const one = async (k: number) => ({
      g: await engine.gradients(thetas[k]!, inputs, ys[k]!),
      j: await engine.jacobians(thetas[k]!, inputs),
      f: await engine.forward(thetas[k]!, inputs),
    });
    const seq = [];
    for (let k = 0; k < 4; k++) seq.push(await one(k));
    const par = await Promise.all([0, 1, 2, 3].flatMap((k) => [engine.gradients(thetas[k]!, inputs, ys[k]!), engine.jacobians(thetas[k]!, inputs), engine.forward(thetas[k]!, inputs)]));
    for (let k = 0; k < 4; k++) {
      const [g, j, f] = par.slice(3 * k, 3 * k + 3) as [typeof seq[0]['g'], typeof seq[0]['j'], typeof seq[0]['f']];
      expect(g.grads.map((r) => Array.from(r))).toEqual(seq[k]!.g.grads.map((r) => Array.from(r)));
      expect(Array.from(g.loss)).toEqual(Array.from(seq[k]!.g.loss));
      expect(j.H.map((r) => Array.from(r))).toEqual(seq[k]!.j.H.map((r) => Array.from(r)));
      expect(Array.from(f)).toEqual(Array.from(seq[k]!.f));
    }
    // Different θ and labels gave different gradients (the comparison above can fail).
    expect(Array.from(seq[0]!.g.grads[0]!)).not.toEqual(Array.from(seq[1]!.g.grads[0]!));
  });
});

// Tied weights: two targets on one weight (each with its own adapter), and a target whose weight a
// Gather that is not a target also reads. Independent reference: central differences of the forward pass.
describe('per-sample gradients and Jacobians where weights are tied', () => {
  it.each(['tiedTargets', 'sharedWithGather'] as const)('%s: match central differences of the forward pass', async (kind) => {
    const engine = await AdapterEngine.create(tiedWeightModel(kind), { targets: 'all', rank: 2, alpha: 4 }, rt);
    const inputs = TIED_INPUTS[kind];
    const { n } = engine.layout;
    const m = engine.m;
    const B = Object.values(inputs)[0]!.dims[0]!;
    const rand = seeded(9);
    const theta = Float32Array.from({ length: n }, () => (rand() - 0.5) * 0.6);
    const labels = Array.from({ length: B }, (_, b) => (2 * b + 1) % m);
    const run = await engine.gradients(theta, inputs, labels);
    const jac = await engine.jacobians(theta, inputs);
    const fdGrad = Array.from({ length: B }, () => new Float64Array(n));
    const fdJac = Array.from({ length: B }, () => new Float64Array(m * n));
    for (let i = 0; i < n; i++) {
      const up = theta.slice();
      const down = theta.slice();
      up[i] += 1e-3;
      down[i] -= 1e-3;
      const h = up[i]! - down[i]!;
      const [oUp, oDown] = [await engine.forward(up, inputs), await engine.forward(down, inputs)];
      const [lUp, lDown] = [outputLoss('classification', oUp, labels, m, new Float64Array(B)), outputLoss('classification', oDown, labels, m, new Float64Array(B))];
      const [pUp, pDown] = [softmaxRows(oUp, m), softmaxRows(oDown, m)];
      for (let b = 0; b < B; b++) {
        fdGrad[b]![i] = (lUp[b]! - lDown[b]!) / h;
        for (let c = 0; c < m; c++) fdJac[b]![c * n + i] = (pUp[b * m + c]! - pDown[b * m + c]!) / h;
      }
    }
    for (let b = 0; b < B; b++) {
      expect(relErr(run.grads[b]!, fdGrad[b]!), `gradient of sample ${b}`).toBeLessThan(5e-3);
      expect(relErr(jac.H[b]!, fdJac[b]!), `Jacobian of sample ${b}`).toBeLessThan(5e-3);
    }
  });
});

describe('AdapterEngine.detach', () => {
  it('drops its sessions from the runtime cache and stays usable; graphs built later are not cached either', async () => {
    const own = new OnnxRuntime({ intraOpThreads: 1 });
    const model = fixtureModel('mlp.opset17');
    const engine = await AdapterEngine.create(model, { targets: 'all', rank: 2, alpha: 4 }, own);
    expect(own.cached).toBe(2); // the forward (inference) graph and the gradient graph
    const g = golden('mlp.opset17');
    const rand = seeded(7);
    const theta = Float64Array.from({ length: engine.layout.n }, () => (rand() - 0.5) * 0.2);
    const labels = Array.from(g.labels.data as BigInt64Array, Number);
    const before = await engine.gradients(theta, g.inputs, labels);
    await engine.detach();
    expect(own.cached).toBe(0);
    const after = await engine.gradients(theta, g.inputs, labels);
    expect(after.grads.map((x) => [...x])).toEqual(before.grads.map((x) => [...x]));
    await engine.jacobians(theta, g.inputs);
    expect(own.cached).toBe(0);
    // A new engine of the same configuration opens its own sessions, with the same results.
    const again = await AdapterEngine.create(model, { targets: 'all', rank: 2, alpha: 4 }, own);
    expect(own.cached).toBe(2);
    expect((await again.gradients(theta, g.inputs, labels)).grads.map((x) => [...x])).toEqual(before.grads.map((x) => [...x]));
    await own.close();
  });
});

describe('Kalman steps on Jacobians one sub-batch at a time', () => {
  const B = 9;
  const rand = seeded(31);
  const x: Record<string, Tensor> = { x: { data: randomArray(B * 20, rand), dims: [B, 20] } };
  const classes = Array.from({ length: B }, (_, i) => (i * 3) % 5);
  const targets = randomArray(B * 5, rand);

  it.each([
    ['classification', { type: 'loko', observation: 'probs' }],
    ['classification', { type: 'loko', observation: 'probs', noise: 'categorical' }],
    ['classification', { type: 'r-kalman', observation: 'probs', rho: 0.1 }],
    ['regression', { type: 'loko', observation: 'regression' }],
  ] as const)('%s %j: parts of 2 samples give the state, outputs, losses and variances of one part of 9', async (task, cfg) => {
    const lora = { targets: 'all' as const, rank: 2, alpha: 4 };
    const whole = await AdapterEngine.create(fixtureModel(stem), lora, rt, { task });
    const parts = await AdapterEngine.create(fixtureModel(stem), lora, rt, { task, maxJacobianFloats: 2 * whole.m * whole.layout.n });
    const seen: number[] = [];
    for await (const p of parts.jacobianParts(new Float64Array(parts.layout.n), x)) seen.push(p.b0, p.run.h.length);
    expect(seen).toEqual([0, 2, 2, 2, 4, 2, 6, 2, 8, 1]);
    const labels = task === 'classification' ? classes : targets;
    let a = fresh(whole, cfg as OptimizerConfigInput);
    let b = fresh(parts, cfg as OptimizerConfigInput);
    for (let step = 0; step < 2; step++) {
      const sa = await trainStep(whole, a, { inputs: x, labels });
      const sb = await trainStep(parts, b, { inputs: x, labels });
      expect(bytesOf(sb.state).equals(bytesOf(sa.state))).toBe(true);
      expect(Array.from(sb.output)).toEqual(Array.from(sa.output));
      expect(Array.from(sb.loss)).toEqual(Array.from(sa.loss));
      expect(sb.predictiveVariance!.map((v) => Array.from(v))).toEqual(sa.predictiveVariance!.map((v) => Array.from(v)));
      a = sa.state;
      b = sb.state;
    }
    const pa = await predict(whole, a, x);
    const pb = await predict(parts, b, x);
    expect(Array.from(pb.output)).toEqual(Array.from(pa.output));
    expect(pb.variance!.map((v) => Array.from(v))).toEqual(pa.variance!.map((v) => Array.from(v)));
  });
});
