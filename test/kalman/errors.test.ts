import { describe, expect, it } from 'vitest';
import {
  createOptimizer,
  hvpPoint,
  initState,
  predictiveVariance,
  reconfigure,
  stepState,
  type OptimizerConfigInput,
  type OptimizerState,
  type SampleRecord,
} from '../../src/kalman/index.js';
import { expectKalmanError, fullBatch, LAYOUT, rawBytes, TestRandom } from './helpers.js';

/** Steps `state` with `batch`, expecting `code`, and checks that neither the state nor the batch changed. */
function expectRejected(state: OptimizerState, batch: SampleRecord[], code: string): ReturnType<typeof expectKalmanError> {
  const before = rawBytes(state);
  const batchBefore = JSON.stringify(batch, (_k, v: unknown) => (ArrayBuffer.isView(v) ? Array.from(v as Float32Array).map(String) : v));
  const err = expectKalmanError(() => stepState(state, batch), code);
  expect(rawBytes(state)).toBe(before);
  expect(JSON.stringify(batch, (_k, v: unknown) => (ArrayBuffer.isView(v) ? Array.from(v as Float32Array).map(String) : v))).toBe(batchBefore);
  return err;
}

function warmState(cfg: OptimizerConfigInput, rnd: TestRandom): OptimizerState {
  const opt = createOptimizer(cfg);
  let state = opt.init(LAYOUT, rnd.f32(LAYOUT.n, 0.1), 3);
  state = opt.step(state, fullBatch(rnd, 2)).state; // so p, R, factors are not at their initial values
  return state;
}

describe('non-finite inputs are rejected and leave the state untouched', () => {
  const cases: [string, OptimizerConfigInput, (s: SampleRecord) => void, string][] = [
    ['a NaN label (probs target y)', { type: 'loko', observation: 'probs' }, (s) => (s.y![1] = NaN), 'batch[1].y'],
    ['a NaN regression target', { type: 'loko', observation: 'regression' }, (s) => (s.y![0] = NaN), 'batch[1].y'],
    ['an infinite Jacobian entry', { type: 'loko', observation: 'probs' }, (s) => (s.H![17] = Infinity), 'batch[1].H'],
    ['a NaN prediction', { type: 'r-kalman', observation: 'regression' }, (s) => (s.h![2] = NaN), 'batch[1].h'],
    ['an infinite gradient (loss observation)', { type: 'loko', observation: 'loss' }, (s) => (s.grad![5] = -Infinity), 'batch[1].grad'],
    ['a NaN loss (loss observation)', { type: 'r-kalman', observation: 'loss' }, (s) => (s.loss = NaN), 'batch[1].loss'],
    ['an infinite gradient (R-Kalman ρ > 0)', { type: 'r-kalman', observation: 'probs', rho: 0.01 }, (s) => (s.grad![0] = Infinity), 'batch[1].grad'],
    ['an infinite gradient (SGD)', { type: 'sgd' }, (s) => (s.grad![3] = Infinity), 'batch[1].grad'],
    ['an infinite gradient (AdamW)', { type: 'adamw' }, (s) => (s.grad![3] = Infinity), 'batch[1].grad'],
    ['a NaN gradient (AdaGrad)', { type: 'adagrad' }, (s) => (s.grad![3] = NaN), 'batch[1].grad'],
    ['a NaN input activation (K-FAC)', { type: 'kfac' }, (s) => (s.factors!['fc1.lora_B']!.a[1] = NaN), "batch[1].factors['fc1.lora_B'].a"],
    ['an infinite output gradient (RING)', { type: 'ring' }, (s) => (s.factors!['fc1.lora_A']!.g[0] = Infinity), "batch[1].factors['fc1.lora_A'].g"],
    ['an infinite perturbed gradient (RENG)', { type: 'reng' }, (s) => (s.gradPerturbed![9] = Infinity), 'batch[1].gradPerturbed'],
  ];
  for (const [what, cfg, spoil, field] of cases) {
    it(`${what} → NON_FINITE_INPUT`, () => {
      const rnd = new TestRandom(51);
      const state = warmState(cfg, rnd);
      const batch = fullBatch(rnd, 3);
      spoil(batch[1]!);
      const err = expectRejected(state, batch, 'NON_FINITE_INPUT');
      expect(err.details?.['field']).toBe(field);
      expect(err.message).toContain(field);
    });
  }
});

describe('other rejected steps', () => {
  it('S not positive definite → KALMAN_NOT_PD, even after earlier samples of the batch were applied', () => {
    const rnd = new TestRandom(52);
    const state = warmState({ type: 'loko', observation: 'probs' }, rnd);
    const batch = fullBatch(rnd, 3);
    // h = [1, 1, 0] is not a distribution: diag(h) − h·hᵀ + r0·I is indefinite, and H = 0 adds nothing.
    batch[2]!.h = Float32Array.of(1, 1, 0);
    batch[2]!.H = new Float32Array(3 * LAYOUT.n);
    const err = expectRejected(state, batch, 'KALMAN_NOT_PD');
    expect(err.details?.['sample']).toBe(2);
  });

  it('a non-finite result → NON_FINITE_STATE', () => {
    const rnd = new TestRandom(53);
    const state = initState({ type: 'loko', observation: 'regression', forgetting: 1e-300 }, LAYOUT, new Float64Array(LAYOUT.n), 1);
    const batch = fullBatch(rnd, 1);
    batch[0]!.H!.fill(1e10); // p/λ ≈ 1e299, so H·diag(p)·Hᵀ overflows
    expectRejected(state, batch, 'NON_FINITE_STATE');
  });

  it('a missing or misshapen field → OPTIMIZER_INPUT naming it', () => {
    const rnd = new TestRandom(54);
    const loko = warmState({ type: 'loko', observation: 'probs' }, rnd);
    const kfac = warmState({ type: 'kfac' }, rnd);
    const reng = warmState({ type: 'reng' }, rnd);
    const sgd = warmState({ type: 'sgd' }, rnd);
    const check = (state: OptimizerState, spoil: (s: SampleRecord) => void, field: string) => {
      const batch = fullBatch(rnd, 2);
      spoil(batch[0]!);
      expect(expectRejected(state, batch, 'OPTIMIZER_INPUT').message).toContain(field);
    };
    check(loko, (s) => delete s.H, 'batch[0].H');
    check(loko, (s) => (s.H = s.H!.subarray(1)), 'batch[0].H');
    check(loko, (s) => (s.y = Float32Array.of(1, 0)), 'batch[0].y');
    check(loko, (s) => (s.h = Float32Array.of(0.5, 0.5)), 'batch[0].h'); // m = 3 was fixed by the first step
    check(loko, (s) => (s.h = Float32Array.of(1.5, -0.5, 0)), 'batch[0].h'); // not probabilities (categorical)
    check(kfac, (s) => delete s.factors!['fc1.lora_A'], "batch[0].factors['fc1.lora_A']");
    check(kfac, (s) => (s.factors!['fc1.lora_B']!.g = new Float32Array(7)), "batch[0].factors['fc1.lora_B'].g");
    check(reng, (s) => delete s.gradPerturbed, 'batch[0].gradPerturbed');
    check(sgd, (s) => (s.grad = new Float32Array(3)), 'batch[0].grad');
    expectKalmanError(() => stepState(sgd, []), 'OPTIMIZER_INPUT');
  });

  it('first-order methods take the gradient from factors when the sample has no grad', () => {
    const rnd = new TestRandom(55);
    const opt = createOptimizer({ type: 'adamw' });
    const state = opt.init(LAYOUT, rnd.f32(LAYOUT.n), 1);
    const batch = fullBatch(rnd, 2);
    // grad := Σ_t g_t·a_tᵀ per block, in float64
    const withGrad = batch.map((s) => {
      const grad = new Float64Array(LAYOUT.n);
      for (const b of LAYOUT.blocks) {
        const f = s.factors![b.name]!;
        for (let t = 0; t < 2; t++)
          for (let r = 0; r < b.rows; r++) for (let c = 0; c < b.cols; c++) grad[b.offset + r * b.cols + c] += f.g[t * b.rows + r]! * f.a[t * b.cols + c]!;
      }
      return { grad };
    });
    const viaFactors = opt.step(state, batch.map((s) => ({ factors: s.factors }))).state;
    const viaGrad = opt.step(state, withGrad).state;
    for (let i = 0; i < LAYOUT.n; i++) expect(viaFactors.theta[i]).toBeCloseTo(viaGrad.theta[i]!, 14);
  });
});

describe('init, layout and optimizer/state mismatches', () => {
  it('rejects bad layouts and theta0', () => {
    const cfg = { type: 'kfac' } as const;
    const theta = new Float64Array(LAYOUT.n);
    expectKalmanError(() => initState(cfg, { n: 0, blocks: [] }, [], 1), 'OPTIMIZER_LAYOUT');
    expectKalmanError(() => initState(cfg, { ...LAYOUT, n: LAYOUT.n + 1 }, new Float64Array(LAYOUT.n + 1), 1), 'OPTIMIZER_LAYOUT'); // not covered
    const overlap = { n: 10, blocks: [{ name: 'a', rows: 2, cols: 3, offset: 0 }, { name: 'b', rows: 2, cols: 2, offset: 5 }] };
    expect(expectKalmanError(() => initState({ type: 'loko', observation: 'probs' }, overlap, new Float64Array(10), 1), 'OPTIMIZER_LAYOUT').message).toContain('overlap');
    const dup = { n: 8, blocks: [{ name: 'a', rows: 2, cols: 2, offset: 0 }, { name: 'a', rows: 2, cols: 2, offset: 4 }] };
    expectKalmanError(() => initState({ type: 'loko', observation: 'probs' }, dup, new Float64Array(8), 1), 'OPTIMIZER_LAYOUT');
    const past = { n: 5, blocks: [{ name: 'a', rows: 2, cols: 3, offset: 0 }] };
    expectKalmanError(() => initState({ type: 'sgd' }, past, new Float64Array(5), 1), 'OPTIMIZER_LAYOUT');
    expectKalmanError(() => initState(cfg, LAYOUT, theta.subarray(1), 1), 'OPTIMIZER_LAYOUT');
    const nan = theta.slice();
    nan[2] = NaN;
    expectKalmanError(() => initState(cfg, LAYOUT, nan, 1), 'NON_FINITE_INPUT');
    expect(expectKalmanError(() => initState(cfg, LAYOUT, theta, -3), 'OPTIMIZER_CONFIG').details?.['field']).toBe('seed');
    // Kalman and first-order methods do not need blocks at all.
    expect(initState({ type: 'loko', observation: 'probs' }, { n: 3, blocks: [] }, [1, 2, 3], 1).theta).toEqual(Float64Array.of(1, 2, 3));
  });

  it('refuses a state made with another config, and reconfigure switches hyperparameters', () => {
    const a = createOptimizer({ type: 'sgd', lr: 0.1 });
    const b = createOptimizer({ type: 'sgd', lr: 0.2 });
    const rnd = new TestRandom(56);
    const state = a.init(LAYOUT, new Float64Array(LAYOUT.n), 1);
    expectKalmanError(() => b.step(state, fullBatch(rnd, 1)), 'OPTIMIZER_STATE');
    expectKalmanError(() => createOptimizer({ type: 'adamw' }).step(state, fullBatch(rnd, 1)), 'OPTIMIZER_STATE');
    const moved = reconfigure(state, { type: 'sgd', lr: 0.2 });
    expect(moved.config).toEqual(b.config);
    expect(moved.theta).toBe(state.theta);
    b.step(moved, fullBatch(rnd, 1));
    expectKalmanError(() => reconfigure(state, { type: 'adamw' }), 'OPTIMIZER_STATE');
    expectKalmanError(() => reconfigure(state, { type: 'sgd', lr: -1 }), 'OPTIMIZER_CONFIG');
  });

  it('predictiveVariance and hvpPoint refuse the wrong optimizer or input', () => {
    const rnd = new TestRandom(57);
    const sgd = warmState({ type: 'sgd' }, rnd);
    expectKalmanError(() => predictiveVariance(sgd, new Float32Array(LAYOUT.n)), 'OPTIMIZER_STATE');
    expectKalmanError(() => hvpPoint(sgd, fullBatch(rnd, 1)), 'OPTIMIZER_STATE');
    const loko = warmState({ type: 'loko', observation: 'probs', r0: 0.01 }, rnd);
    expectKalmanError(() => predictiveVariance(loko, new Float32Array(3 * LAYOUT.n)), 'OPTIMIZER_INPUT'); // categorical needs h
    expectKalmanError(() => predictiveVariance(loko, new Float32Array(2 * LAYOUT.n), Float32Array.of(0.5, 0.5)), 'OPTIMIZER_INPUT'); // m = 3
    const H = new Float32Array(3 * LAYOUT.n);
    H[4] = NaN;
    expectKalmanError(() => predictiveVariance(loko, H, Float32Array.of(0.2, 0.3, 0.5)), 'NON_FINITE_INPUT');
    // With H = 0 only the categorical R remains: diag(h) − h² + r0.
    const h = Float32Array.of(0.2, 0.3, 0.5);
    const pv = predictiveVariance(loko, new Float32Array(3 * LAYOUT.n), h);
    for (let c = 0; c < 3; c++) expect(pv[c]).toBe(h[c]! + 0.01 - h[c]! * h[c]!);
  });
});
