import { describe, expect, it } from 'vitest';
import {
  cholesky,
  createOptimizer,
  KalmanStepper,
  predictiveVariance,
  stepState,
  type KalmanState,
  type OptimizerConfigInput,
  type OptimizerState,
  type ParamLayout,
  type SampleRecord,
} from '../../src/kalman/index.js';
import { CONFIGS, expectKalmanError, fullBatch, LAYOUT, maxRelErr, snapshot, TestRandom } from './helpers.js';

const asKalman = (s: OptimizerState): KalmanState => {
  if (s.type !== 'loko' && s.type !== 'r-kalman') throw new Error('not a Kalman state');
  return s;
};

function flatLayout(n: number): ParamLayout {
  return { n, blocks: [{ name: 'w', rows: 1, cols: n, offset: 0 }] };
}

/** A sample of the linear model h = H·θ at θ. */
function linearSample(H: Float64Array, theta: ArrayLike<number>, y: Float64Array): SampleRecord {
  const m = y.length;
  const n = theta.length;
  const h = new Float64Array(m);
  for (let c = 0; c < m; c++) for (let i = 0; i < n; i++) h[c] += H[c * n + i]! * theta[i]!;
  return { H, h, y };
}

describe('LoKO on a linear-Gaussian model', () => {
  it('equals the closed-form scalar Kalman filter (one parameter, β = 1, λ = 1)', () => {
    const P0 = 0.7;
    const R = 0.05;
    const theta0 = 0.3;
    const opt = createOptimizer({ type: 'loko', observation: 'regression', beta: 1, r0: R, p0Low: P0, p0High: P0 });
    let state = opt.init(flatLayout(1), [theta0], 1);
    const rnd = new TestRandom(11);
    let precision = 1 / P0;
    let info = theta0 / P0;
    for (let k = 0; k < 60; k++) {
      const H = rnd.uniform(-2, 2);
      const y = 1.7 * H + 0.2 * rnd.normal();
      state = opt.step(state, [linearSample(Float64Array.of(H), state.theta, Float64Array.of(y))]).state;
      // Closed form: 1/p_k = 1/p0 + Σ H²/R, θ_k = p_k·(θ0/p0 + Σ H·y/R).
      precision += (H * H) / R;
      info += (H * y) / R;
      const s = asKalman(state);
      expect(Math.abs(s.p[0]! - 1 / precision) / (1 / precision)).toBeLessThan(1e-12);
      expect(Math.abs(s.theta[0]! - info / precision)).toBeLessThan(1e-12);
      expect(Array.from(s.R)).toEqual([R]);
    }
  });

  it('follows the scalar filter with forgetting, process noise and the EMA noise estimate', () => {
    const cfg = { p0Low: 0.4, p0High: 0.4, r0: 0.1, forgetting: 0.97, processNoise: 1e-3, beta: 0.9, rMin: 1e-4 };
    const opt = createOptimizer({ type: 'loko', observation: 'regression', ...cfg });
    let state = opt.init(flatLayout(1), [0], 7);
    let th = 0;
    let P = 0.4;
    let R = 0.1;
    const rnd = new TestRandom(12);
    for (let k = 0; k < 80; k++) {
      const H = rnd.uniform(-1, 1);
      const y = -0.8 * H + 0.3 * rnd.normal();
      const { state: next, metrics } = opt.step(state, [linearSample(Float64Array.of(H), state.theta, Float64Array.of(y))]);
      state = next;
      // Textbook scalar EKF with the DESIGN 4 noise update.
      P = P / cfg.forgetting + cfg.processNoise;
      const e = y - H * th;
      const S = H * H * P + R;
      expect(metrics.kalman!.predictiveVariance[0]![0]).toBeCloseTo(S, 12);
      expect(metrics.kalman!.residual[0]![0]).toBeCloseTo(e, 12);
      const K = (P * H) / S;
      th += K * e;
      P *= 1 - K * H;
      const eps = (R * e) / S;
      R = cfg.beta * R + (1 - cfg.beta) * (eps * eps + H * H * P + cfg.rMin);
      const s = asKalman(state);
      expect(Math.abs(s.theta[0]! - th)).toBeLessThan(1e-12);
      expect(Math.abs(s.p[0]! - P) / P).toBeLessThan(1e-12);
      expect(Math.abs(s.R[0]! - R) / R).toBeLessThan(1e-12);
    }
  });

  it('reaches the exact Bayesian posterior with diagonal observations (diagonal covariance is exact)', () => {
    const n = 5;
    const r0 = 0.02;
    const opt = createOptimizer({ type: 'loko', observation: 'regression', beta: 1, r0 });
    const theta0 = Float64Array.of(0.1, -0.2, 0.3, 0, 1);
    let state = opt.init(flatLayout(n), theta0, 99);
    const p0 = asKalman(state).p.slice();
    const rnd = new TestRandom(13);
    const truth = rnd.f64(n);
    const precision = p0.map((v) => 1 / v);
    const info = theta0.map((v, i) => v / p0[i]!);
    for (let k = 0; k < 40; k++) {
      const H = new Float64Array(n * n);
      const y = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        const hv = rnd.uniform(-3, 3);
        H[i * n + i] = hv;
        y[i] = hv * truth[i]! + Math.sqrt(r0) * rnd.normal();
        precision[i] += (hv * hv) / r0;
        info[i] += (hv * y[i]!) / r0;
      }
      state = opt.step(state, [linearSample(H, state.theta, y)]).state;
    }
    const s = asKalman(state);
    expect(maxRelErr(s.p, precision.map((v) => 1 / v))).toBeLessThan(1e-12);
    expect(maxRelErr(s.theta, info.map((v, i) => v / precision[i]!))).toBeLessThan(1e-12);
  });

  it('matches a full-covariance Kalman update for one dense m-dimensional observation', () => {
    const n = 6;
    const m = 3;
    const rnd = new TestRandom(14);
    const opt = createOptimizer({ type: 'loko', observation: 'regression', beta: 1, r0: 0.3 });
    const theta0 = rnd.f64(n);
    const state = asKalman(opt.init(flatLayout(n), theta0, 5));
    const H = rnd.f64(m * n);
    const y = rnd.f64(m);
    const s1 = asKalman(opt.step(state, [linearSample(H, theta0, y)]).state);
    // Oracle: S = H·P·Hᵀ + R with P = diag(p₀); θ⁺ = θ + P·Hᵀ·S⁻¹·e; P⁺ = P − P·Hᵀ·S⁻¹·H·P.
    const P = state.p;
    const S = Array.from({ length: m }, (_, c) =>
      Array.from({ length: m }, (_, d) => {
        let v = c === d ? 0.3 : 0;
        for (let i = 0; i < n; i++) v += H[c * n + i]! * P[i]! * H[d * n + i]!;
        return v;
      }),
    );
    const Sinv = invert3(S);
    const e = Array.from({ length: m }, (_, c) => {
      let h = 0;
      for (let i = 0; i < n; i++) h += H[c * n + i]! * theta0[i]!;
      return y[c]! - h;
    });
    for (let i = 0; i < n; i++) {
      let dth = 0;
      let dp = 0;
      for (let c = 0; c < m; c++)
        for (let d = 0; d < m; d++) {
          dth += P[i]! * H[c * n + i]! * Sinv[c]![d]! * e[d]!;
          dp += P[i]! * H[c * n + i]! * Sinv[c]![d]! * H[d * n + i]! * P[i]!;
        }
      expect(Math.abs(s1.theta[i]! - (theta0[i]! + dth))).toBeLessThan(1e-12);
      expect(Math.abs(s1.p[i]! - (P[i]! - dp))).toBeLessThan(1e-12);
    }
  });

  it('runs a mini-batch like the same samples one at a time on a linear model', () => {
    const n = 8;
    const m = 2;
    const rnd = new TestRandom(15);
    const opt = createOptimizer({ type: 'loko', observation: 'regression', beta: 0.9, r0: 0.1 });
    const start = opt.init(flatLayout(n), rnd.f64(n), 3);
    const data = Array.from({ length: 6 }, () => ({ H: rnd.f64(m * n), y: rnd.f64(m) }));
    // One batch: every H and h taken at the starting θ.
    const batched = opt.step(
      start,
      data.map((d) => linearSample(d.H, start.theta, d.y)),
    ).state;
    let seq = start;
    for (const d of data) seq = opt.step(seq, [linearSample(d.H, seq.theta, d.y)]).state;
    expect(maxRelErr(batched.theta, seq.theta)).toBeLessThan(1e-12);
    expect(maxRelErr(asKalman(batched).p, asKalman(seq).p)).toBeLessThan(1e-12);
    expect(maxRelErr(asKalman(batched).R, asKalman(seq).R)).toBeLessThan(1e-12);
    expect(batched.step).toBe(1);
    expect(batched.samples).toBe(6);
  });
});

function invert3(a: number[][]): number[][] {
  const [[a0, a1, a2], [b0, b1, b2], [c0, c1, c2]] = a as [[number, number, number], [number, number, number], [number, number, number]];
  const det = a0 * (b1 * c2 - b2 * c1) - a1 * (b0 * c2 - b2 * c0) + a2 * (b0 * c1 - b1 * c0);
  return [
    [(b1 * c2 - b2 * c1) / det, (a2 * c1 - a1 * c2) / det, (a1 * b2 - a2 * b1) / det],
    [(b2 * c0 - b0 * c2) / det, (a0 * c2 - a2 * c0) / det, (a2 * b0 - a0 * b2) / det],
    [(b0 * c1 - b1 * c0) / det, (a1 * c0 - a0 * c1) / det, (a0 * b1 - a1 * b0) / det],
  ];
}

describe('LoKO invariants over long random streams', () => {
  it('keeps p positive (and non-increasing) over 10,000 random steps, reaching the floor', () => {
    const n = 12;
    const m = 3;
    const rnd = new TestRandom(21);
    const pFloor = 1e-30;
    // R fixed and tiny: an observation that pins a coordinate (a row 1e12·e_i) makes p − p²·hᵀS⁻¹h
    // cancel to rounding noise, possibly below zero, which is what the floor is for.
    const opt = createOptimizer({ type: 'loko', observation: 'regression', beta: 1, r0: 1e-8, pFloor });
    let state = asKalman(opt.init(flatLayout(n), rnd.f64(n), 8));
    let floored = 0;
    let ok = true;
    for (let k = 0; k < 10_000; k++) {
      const H = rnd.f32(m * n, 10 ** rnd.uniform(-3, 3));
      if (k % 50 === 0) {
        const row = Math.floor(rnd.uniform(0, m));
        H.fill(0, row * n, row * n + n);
        H[row * n + Math.floor(rnd.uniform(0, n))] = 1e12;
      }
      const y = rnd.f32(m, 10 ** rnd.uniform(-2, 2));
      const h = rnd.f32(m);
      const prev = state.p;
      state = asKalman(opt.step(state, [{ H, h, y }]).state);
      for (let i = 0; i < n; i++) {
        const v = state.p[i]!;
        // λ = 1, q = 0: an observation can only shrink p (down to the floor)
        ok &&= v >= pFloor && Number.isFinite(v) && v <= prev[i]! * (1 + 1e-12);
        if (v === pFloor) floored++;
      }
      if (!ok) throw new Error(`p invariant broken at step ${k}: p = ${Array.from(state.p).join(', ')}`);
    }
    expect(floored).toBeGreaterThan(0); // the stream did need the floor
    for (const v of state.theta) expect(Number.isFinite(v)).toBe(true);
  });

  it('keeps R symmetric positive definite over 5,000 EMA updates (rMin = 0)', () => {
    const n = 12;
    const m = 3;
    const rnd = new TestRandom(24);
    const opt = createOptimizer({ type: 'loko', observation: 'regression', beta: 0.9, rMin: 0 });
    let state = asKalman(opt.init(flatLayout(n), rnd.f64(n), 8));
    let ok = true;
    let minEig = Infinity;
    for (let k = 0; k < 5000; k++) {
      // Rank-deficient Jacobians (one row) and wide scales: ε·εᵀ and H·diag(p)·Hᵀ are only PSD.
      const H = new Float32Array(m * n);
      H.set(rnd.f32(n, 10 ** rnd.uniform(-3, 2)), n * Math.floor(rnd.uniform(0, m)));
      const y = rnd.f32(m, 10 ** rnd.uniform(-2, 1));
      state = asKalman(opt.step(state, [{ H, h: rnd.f32(m), y }]).state);
      for (let c = 0; c < m; c++) for (let d = 0; d < c; d++) ok &&= state.R[c * m + d] === state.R[d * m + c];
      const L = cholesky(state.R, m); // throws KALMAN_NOT_PD if R lost definiteness
      for (let c = 0; c < m; c++) minEig = Math.min(minEig, L[c * m + c]!);
    }
    expect(ok).toBe(true);
    expect(minEig).toBeGreaterThan(0);
  });

  it('keeps p positive and the categorical R positive definite on a probs stream', () => {
    const n = 10;
    const m = 4;
    const rnd = new TestRandom(22);
    const opt = createOptimizer({ type: 'loko', observation: 'probs' });
    expect(opt.config).toMatchObject({ noise: 'categorical' });
    let state = asKalman(opt.init(flatLayout(n), rnd.f64(n), 9));
    for (let k = 0; k < 2000; k++) {
      const h = rnd.probs(m);
      const y = new Float32Array(m);
      y[Math.floor(rnd.uniform(0, m))] = 1;
      const H = rnd.f32(m * n, 10 ** rnd.uniform(-2, 2));
      state = asKalman(opt.step(state, [{ H, h, y }]).state);
      for (const v of state.p) expect(v > 0).toBe(true);
      cholesky(state.R, m);
    }
  });

  it('reports predictive variance, residual and innovation before each update', () => {
    const n = 7;
    const m = 2;
    const rnd = new TestRandom(23);
    const opt = createOptimizer({ type: 'loko', observation: 'regression', forgetting: 0.9, r0: 0.01 });
    const state = asKalman(opt.init(flatLayout(n), rnd.f64(n), 4));
    const H = rnd.f32(m * n);
    const h = rnd.f32(m);
    const y = rnd.f32(m);
    const pv = predictiveVariance(state, H);
    const { metrics } = opt.step(state, [{ H, h, y }]);
    expect(maxRelErr(metrics.kalman!.predictiveVariance[0]!, pv)).toBeLessThan(1e-15);
    // diag(H·diag(p/λ)·Hᵀ + r0·I) by hand
    for (let c = 0; c < m; c++) {
      let v = 0.01;
      for (let i = 0; i < n; i++) v += H[c * n + i]! ** 2 * (state.p[i]! / 0.9);
      expect(pv[c]).toBeCloseTo(v, 14);
    }
    const e = [y[0]! - h[0]!, y[1]! - h[1]!];
    expect(Array.from(metrics.kalman!.residual[0]!)).toEqual(e);
    expect(metrics.kalman!.innovationNorm[0]).toBeCloseTo(Math.hypot(e[0]!, e[1]!), 15);
    expect(metrics.kalman!.nis[0]).toBeGreaterThan(0);
  });

  it('uses the loss observation: H = gᵀ, y = 0, e = −loss, and descends the loss', () => {
    const n = 4;
    const opt = createOptimizer({ type: 'loko', observation: 'loss' });
    expect(opt.needs).toEqual(['loss', 'grad']);
    let state = asKalman(opt.init(flatLayout(n), [1, -2, 0.5, 3], 1));
    expect(state.m).toBe(1);
    // loss(θ) = ½‖θ‖², grad = θ
    const lossAt = (t: Float64Array) => 0.5 * t.reduce((a, v) => a + v * v, 0);
    const first = lossAt(state.theta);
    for (let k = 0; k < 30; k++) {
      const { state: next, metrics } = opt.step(state, [{ loss: lossAt(state.theta), grad: Float32Array.from(state.theta) }]);
      expect(metrics.kalman!.residual[0]![0]).toBe(-lossAt(state.theta));
      state = asKalman(next);
    }
    expect(lossAt(state.theta)).toBeLessThan(first * 0.05);
  });
});

describe('R-Kalman', () => {
  function run(cfg: Parameters<typeof createOptimizer>[0], steps: number): OptimizerState {
    const n = 9;
    const m = 3;
    const rnd = new TestRandom(31);
    const opt = createOptimizer(cfg);
    let state = opt.init(flatLayout(n), rnd.f64(n), 17);
    for (let k = 0; k < steps; k++) {
      const batch = Array.from({ length: 3 }, () => ({ H: rnd.f32(m * n), h: rnd.probs(m), y: rnd.probs(m), grad: rnd.f32(n), loss: rnd.uniform() }));
      state = opt.step(state, batch).state;
    }
    return state;
  }

  it('with ρ = 0 is LoKO bit for bit (probs + categorical, regression + ema, loss)', () => {
    for (const extra of [{ observation: 'probs' }, { observation: 'regression', beta: 0.9, forgetting: 0.99 }] as const) {
      const a = snapshot(run({ type: 'loko', ...extra }, 6));
      const b = snapshot(run({ type: 'r-kalman', rho: 0, ...extra }, 6));
      delete a['meta'];
      delete b['meta'];
      expect(b).toEqual(a);
      const c = snapshot(run({ type: 'r-kalman', rho: 0.5, ...extra }, 6));
      expect(c['p']).not.toEqual(a['p']);
    }
  });

  it('adds ρ‖g‖² of precision after the update', () => {
    const layout = flatLayout(3);
    const rho = 0.3;
    const base = createOptimizer({ type: 'loko', observation: 'regression', beta: 1 });
    const reg = createOptimizer({ type: 'r-kalman', observation: 'regression', beta: 1, rho });
    expect(reg.needs).toEqual(['jacobian', 'grad']);
    const sample = { H: Float32Array.of(1, 2, 3), h: Float32Array.of(0.5), y: Float32Array.of(1), grad: Float32Array.of(1, -1, 2) };
    const pl = asKalman(base.step(base.init(layout, [0, 0, 0], 2), [sample]).state).p;
    const pr = asKalman(reg.step(reg.init(layout, [0, 0, 0], 2), [sample]).state).p;
    for (let i = 0; i < 3; i++) expect(pr[i]).toBeCloseTo(1 / (1 / pl[i]! + rho * 6), 15);
  });
});

describe('KalmanStepper: a step whose samples come in parts', () => {
  const kalmanConfigs = CONFIGS.filter((c) => c.type === 'loko' || c.type === 'r-kalman');
  const variants = [
    ...kalmanConfigs,
    { type: 'loko', observation: 'probs', noise: 'categorical' },
    { type: 'loko', observation: 'probs', noise: 'ema', forgetting: 0.98, processNoise: 1e-5 },
  ] as OptimizerConfigInput[];

  it.each(variants.map((c) => [JSON.stringify(c), c] as const))('equals stepState over the whole batch bit for bit, fed in parts of 1, 2 and 4: %s', (_, config) => {
    const opt = createOptimizer(config);
    const rnd = new TestRandom(21);
    // Two steps: the second starts from a state with m and R set by the first.
    let whole = opt.init(LAYOUT, Array.from({ length: LAYOUT.n }, () => rnd.uniform(-0.2, 0.2)), 5);
    let parts = whole;
    for (const size of [7, 5]) {
      const batch = fullBatch(rnd, size);
      const a = stepState(whole, batch);
      const stepper = new KalmanStepper(asKalman(parts));
      for (let at = 0, k = 1; at < size; at += k, k = Math.min(k * 2, 4)) stepper.feed(batch.slice(at, at + k));
      const b = stepper.finish();
      expect(snapshot(b.state)).toEqual(snapshot(a.state));
      expect(b.metrics).toEqual(a.metrics);
      whole = a.state;
      parts = b.state;
    }
  });

  it('names a bad sample by its place in the whole batch, and is over after an error or a finish', () => {
    const opt = createOptimizer({ type: 'loko', observation: 'probs' });
    const rnd = new TestRandom(3);
    const state = asKalman(opt.init(LAYOUT, new Float64Array(LAYOUT.n), 1));
    const batch = fullBatch(rnd, 5);
    batch[3]!.H = new Float32Array(batch[3]!.H!.length).fill(NaN);
    const stepper = new KalmanStepper(state);
    stepper.feed(batch.slice(0, 2));
    const err = expectKalmanError(() => stepper.feed(batch.slice(2)), 'NON_FINITE_INPUT');
    expect(err.details).toMatchObject({ field: 'batch[3].H' });
    expectKalmanError(() => stepper.feed(batch.slice(0, 1)), 'OPTIMIZER_STATE');
    expectKalmanError(() => new KalmanStepper(state).finish(), 'OPTIMIZER_INPUT');
    const done = new KalmanStepper(state);
    done.feed(batch.slice(0, 2));
    done.finish();
    expectKalmanError(() => done.finish(), 'OPTIMIZER_STATE');
    // The state it started from is untouched.
    expect(state.step).toBe(0);
    expect(Array.from(state.theta).every((v) => v === 0)).toBe(true);
  });
});
