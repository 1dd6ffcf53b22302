import { describe, expect, it } from 'vitest';
import {
  createOptimizer,
  hvpPoint,
  type OptimizerConfigInput,
  type OptimizerState,
  type ParamLayout,
  type SampleRecord,
} from '../../src/kalman/index.js';
import { snapshot, TestRandom } from './helpers.js';

/**
 * Least squares W·a ≈ y built from factors: W* is [2, 5] (one LoRA-like block) plus a second block
 * [3, 2] fitting its own target, so the layout has two blocks. Inputs are badly scaled, which is
 * what preconditioning is for. Per-sample loss ½‖W·a − y‖², output gradient δ = W·a − y,
 * gradient δ·aᵀ: the factors are (a, δ) exactly.
 */
const LAYOUT: ParamLayout = {
  n: 16,
  blocks: [
    { name: 'fc1.lora_A', rows: 2, cols: 5, offset: 0 },
    { name: 'fc1.lora_B', rows: 3, cols: 2, offset: 10 },
  ],
};
const SCALES = [[1, 3, 0.3, 2, 0.5], [2, 0.25]];

function makeProblem(seed: number, count = 64, noise = 0.3) {
  const rnd = new TestRandom(seed);
  const truth = rnd.f64(LAYOUT.n);
  const data = Array.from({ length: count }, () =>
    LAYOUT.blocks.map((b, k) => {
      const a = new Float64Array(b.cols);
      for (let j = 0; j < b.cols; j++) a[j] = rnd.normal() * SCALES[k]![j]!;
      const y = new Float64Array(b.rows);
      for (let r = 0; r < b.rows; r++) {
        let v = 0;
        for (let j = 0; j < b.cols; j++) v += truth[b.offset + r * b.cols + j]! * a[j]!;
        y[r] = v + noise * rnd.normal();
      }
      return { a, y };
    }),
  );
  return { truth, data, solution: leastSquares(data) };
}

/** The exact minimiser: per block and row, the normal equations (Σ a·aᵀ)·w = Σ a·y by Gaussian elimination. */
function leastSquares(data: { a: Float64Array; y: Float64Array }[][]): Float64Array {
  const out = new Float64Array(LAYOUT.n);
  LAYOUT.blocks.forEach((b, k) => {
    for (let r = 0; r < b.rows; r++) {
      const M = Array.from({ length: b.cols }, () => new Array<number>(b.cols + 1).fill(0));
      for (const d of data) {
        const { a, y } = d[k]!;
        for (let i = 0; i < b.cols; i++) {
          for (let j = 0; j < b.cols; j++) M[i]![j]! += a[i]! * a[j]!;
          M[i]![b.cols]! += a[i]! * y[r]!;
        }
      }
      for (let c = 0; c < b.cols; c++) {
        for (let i = c + 1; i < b.cols; i++) {
          const f = M[i]![c]! / M[c]![c]!;
          for (let j = c; j <= b.cols; j++) M[i]![j]! -= f * M[c]![j]!;
        }
      }
      for (let i = b.cols - 1; i >= 0; i--) {
        let v = M[i]![b.cols]!;
        for (let j = i + 1; j < b.cols; j++) v -= M[i]![j]! * out[b.offset + r * b.cols + j]!;
        out[b.offset + r * b.cols + i] = v / M[i]![i]!;
      }
    }
  });
  return out;
}

/** The per-sample record at θ: loss, flat gradient and factors. */
function sampleAt(theta: ArrayLike<number>, blocks: { a: Float64Array; y: Float64Array }[]): SampleRecord {
  const grad = new Float32Array(LAYOUT.n);
  const factors: NonNullable<SampleRecord['factors']> = {};
  let loss = 0;
  LAYOUT.blocks.forEach((b, k) => {
    const { a, y } = blocks[k]!;
    const g = new Float64Array(b.rows);
    for (let r = 0; r < b.rows; r++) {
      let v = -y[r]!;
      for (let j = 0; j < b.cols; j++) v += theta[b.offset + r * b.cols + j]! * a[j]!;
      g[r] = v;
      loss += 0.5 * v * v;
      for (let j = 0; j < b.cols; j++) grad[b.offset + r * b.cols + j] = v * a[j]!;
    }
    factors[b.name] = { a: Float32Array.from(a), g: Float32Array.from(g) };
  });
  return { loss, grad, factors };
}

function relError(theta: ArrayLike<number>, truth: Float64Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < truth.length; i++) {
    num += (theta[i]! - truth[i]!) ** 2;
    den += truth[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

/** Full-batch training from θ = 0; returns the relative distance to the exact least-squares solution. */
function train(cfg: OptimizerConfigInput, steps: number, batchSize = 64): { state: OptimizerState; err: number; firstErr: number } {
  const { data, solution } = makeProblem(77);
  const opt = createOptimizer(cfg);
  let state = opt.init(LAYOUT, new Float64Array(LAYOUT.n), 1);
  const firstErr = relError(state.theta, solution);
  for (let k = 0; k < steps; k++) {
    const rows = Array.from({ length: batchSize }, (_, b) => data[(k * batchSize + b) % data.length]!);
    const batch = rows.map((d) => sampleAt(state.theta, d));
    if (opt.needs.includes('hvp')) {
      const point = hvpPoint(state, batch);
      batch.forEach((s, b) => (s.gradPerturbed = sampleAt(point.theta, rows[b]!).grad!));
    }
    state = opt.step(state, batch).state;
  }
  return { state, err: relError(state.theta, solution), firstErr };
}

describe('convergence on a convex least-squares problem (full batch, exact minimiser known)', () => {
  const cases: [OptimizerConfigInput, number, number][] = [
    [{ type: 'sgd', lr: 0.05, momentum: 0.9 }, 300, 1e-6],
    [{ type: 'sgd', lr: 0.05, momentum: 0.9, nesterov: true }, 300, 1e-6],
    [{ type: 'adamw', lr: 0.02, weightDecay: 0 }, 600, 1e-3],
    [{ type: 'adagrad', lr: 0.5 }, 600, 1e-4],
    // The empirical Fisher (G from the true-label δ) starts slowly on regression; see the gFisher test.
    [{ type: 'kfac', lr: 0.05 }, 300, 1e-6],
    [{ type: 'ring', lr: 0.05 }, 300, 1e-6],
    // RING's damping λ₀ + ρ‖ḡ‖² slows the first steps (large ḡ from θ = 0).
    [{ type: 'reng', lr: 0.05, rho: 0.05 }, 400, 1e-6],
    [{ type: 'kfac', lr: 0.05, maxFactorDim: 2 }, 300, 1e-6], // A of the [2, 5] block kept diagonal
  ];
  for (const [cfg, steps, tol] of cases) {
    it(`${JSON.stringify(cfg)} reaches the least-squares solution`, () => {
      const { err, firstErr } = train(cfg, steps);
      expect(firstErr).toBe(1);
      expect(err).toBeLessThan(tol);
    });
  }

  it('uses gFisher for the curvature when given (true-Fisher K-FAC converges on near-noiseless data)', () => {
    // With noise 1e-3 the empirical Fisher E[δ²] collapses with the residual; the true Fisher of
    // ½‖δ‖² is I (δ sampled from N(0, I)), which gives Newton-like steps at any residual.
    const { data, solution } = makeProblem(78, 64, 1e-3);
    const rnd = new TestRandom(3);
    const opt = createOptimizer({ type: 'kfac', lr: 0.8 });
    let state = opt.init(LAYOUT, new Float64Array(LAYOUT.n), 1);
    for (let k = 0; k < 25; k++) {
      const batch = data.map((d) => {
        const s = sampleAt(state.theta, d);
        for (const b of LAYOUT.blocks) s.factors![b.name]!.gFisher = rnd.f32(b.rows);
        return s;
      });
      state = opt.step(state, batch).state;
    }
    expect(relError(state.theta, solution)).toBeLessThan(1e-6);
    // ... where SGD, the same 25 full-batch steps, is nowhere near (the inputs are badly scaled).
    const sgd = createOptimizer({ type: 'sgd', lr: 0.05, momentum: 0.9 });
    let s2 = sgd.init(LAYOUT, new Float64Array(LAYOUT.n), 1);
    for (let k = 0; k < 25; k++) s2 = sgd.step(s2, data.map((d) => sampleAt(s2.theta, d))).state;
    expect(relError(s2.theta, solution)).toBeGreaterThan(0.05);
  });
});

describe('GRNG K-FAC variants', () => {
  it('RING with ρ = 0 is K-FAC bit for bit (and ρ > 0 is not)', () => {
    const strip = (s: OptimizerState) => {
      const snap = snapshot(s);
      delete snap['meta'];
      return snap;
    };
    const kfac = strip(train({ type: 'kfac', lr: 0.3, inverseEvery: 2 }, 7, 4).state);
    expect(strip(train({ type: 'ring', lr: 0.3, inverseEvery: 2, rho: 0 }, 7, 4).state)).toEqual(kfac);
    expect(strip(train({ type: 'ring', lr: 0.3, inverseEvery: 2, rho: 1 }, 7, 4).state)['theta']).not.toEqual(kfac['theta']);
  });

  it('RENG preconditions ḡ + ρ·H·ḡ, with H·ḡ from the finite difference matching the exact Hessian product', () => {
    const { data } = makeProblem(5);
    const rho = 0.2;
    const reng = createOptimizer({ type: 'reng', lr: 0.1, rho, hvpEps: 1e-4 });
    const kfac = createOptimizer({ type: 'kfac', lr: 0.1 });
    expect(reng.needs).toEqual(['factors', 'hvp']);
    const theta0 = new TestRandom(8).f64(LAYOUT.n);
    const s0 = reng.init(LAYOUT, theta0, 1);
    const batch = data.slice(0, 8).map((d) => sampleAt(theta0, d));
    const point = reng.hvpPoint(s0, batch);
    batch.forEach((s, b) => (s.gradPerturbed = sampleAt(point.theta, data[b]!).grad!));
    const { metrics } = reng.step(s0, batch);
    // Exact: for least squares the Hessian of block W is I_rows ⊗ mean(a·aᵀ), so H·ḡ = Ḡ_W·mean(a·aᵀ).
    const gbar = new Float64Array(LAYOUT.n);
    for (const s of batch) for (let i = 0; i < LAYOUT.n; i++) gbar[i] += s.grad![i]! / batch.length;
    let h2 = 0;
    LAYOUT.blocks.forEach((b) => {
      for (let r = 0; r < b.rows; r++)
        for (let j = 0; j < b.cols; j++) {
          let v = 0;
          for (let c = 0; c < b.cols; c++) {
            let aa = 0;
            for (const s of batch) aa += (s.factors![b.name]!.a[c]! * s.factors![b.name]!.a[j]!) / batch.length;
            v += gbar[b.offset + r * b.cols + c]! * aa;
          }
          h2 += v * v;
        }
    });
    expect(Math.abs(metrics.kfac!.hvpNorm! - Math.sqrt(h2)) / Math.sqrt(h2)).toBeLessThan(1e-3);
    // The point is θ + ε·ḡ/‖ḡ‖.
    const gn = Math.hypot(...gbar);
    // (‖ḡ‖ here is from float32 gradients, the module's from the factors in float64: agree to ~1e-7.)
    for (let i = 0; i < LAYOUT.n; i++) expect(Math.abs(point.theta[i]! - (theta0[i]! + (1e-4 * gbar[i]!) / gn))).toBeLessThan(1e-10);
    // And the step differs from K-FAC's by the regulariser.
    const k1 = kfac.step(kfac.init(LAYOUT, theta0, 1), batch).state.theta;
    const r1 = reng.step(s0, batch).state.theta;
    expect(Array.from(r1)).not.toEqual(Array.from(k1));
  });

  it('RENG uses RING\'s preconditioner: with a zero H·ḡ (the perturbed gradients equal the gradients) it takes RING\'s step bit for bit, damping λ₀ + ρ‖ḡ‖²', () => {
    const { data } = makeProblem(6);
    const cfg = { lr: 0.1, rho: 0.3, damping: 1e-3 };
    const reng = createOptimizer({ type: 'reng', ...cfg });
    const ring = createOptimizer({ type: 'ring', ...cfg });
    const theta0 = new TestRandom(10).f64(LAYOUT.n);
    let sReng = reng.init(LAYOUT, theta0, 1);
    let sRing = ring.init(LAYOUT, theta0, 1);
    for (let step = 0; step < 3; step++) {
      const batch = data.slice(step * 8, step * 8 + 8).map((d) => sampleAt(sReng.theta, d));
      batch.forEach((s) => (s.gradPerturbed = s.grad!.slice()));
      const a = reng.step(sReng, batch);
      const b = ring.step(sRing, batch);
      expect(Array.from(a.state.theta)).toEqual(Array.from(b.state.theta));
      expect(a.metrics.kfac!.hvpNorm).toBe(0);
      const gn = a.metrics.gradNorm!;
      expect(a.metrics.kfac!.damping).toBeCloseTo(cfg.damping + cfg.rho * gn * gn, 12);
      expect(a.metrics.kfac!.damping).toBe(b.metrics.kfac!.damping);
      sReng = a.state;
      sRing = b.state;
    }
  });

  it('a factor kept diagonal gives the full factor\'s step when the true factor is diagonal', () => {
    // One-hot inputs make every a·aᵀ diagonal, so the diagonal factor is the factor itself.
    const rnd = new TestRandom(9);
    const layout: ParamLayout = { n: 3 * 6, blocks: [{ name: 'w', rows: 3, cols: 6, offset: 0 }] };
    const batches = Array.from({ length: 4 }, () =>
      Array.from({ length: 5 }, () => {
        const a = new Float32Array(6);
        a[Math.floor(rnd.uniform(0, 6))] = rnd.uniform(0.5, 2);
        return { factors: { w: { a, g: rnd.f32(3) } } };
      }),
    );
    const theta0 = rnd.f64(18);
    const run = (maxFactorDim: number) => {
      const opt = createOptimizer({ type: 'kfac', maxFactorDim, nsTol: 1e-13, nsMaxIter: 200 });
      let state = opt.init(layout, theta0, 1);
      for (const b of batches) state = opt.step(state, b).state;
      return state;
    };
    const full = run(512);
    const diag = run(5);
    expect((diag as { blocks: { A: Float64Array }[] }).blocks[0]!.A.length).toBe(6);
    expect((full as { blocks: { A: Float64Array }[] }).blocks[0]!.A.length).toBe(36);
    for (let i = 0; i < 18; i++) expect(Math.abs(diag.theta[i]! - full.theta[i]!)).toBeLessThan(1e-9);
  });

  it('recomputes the factor inverses only every inverseEvery steps, warm-started', () => {
    const { data } = makeProblem(6);
    const opt = createOptimizer({ type: 'kfac', inverseEvery: 3 });
    let state = opt.init(LAYOUT, new Float64Array(LAYOUT.n), 1);
    const seen: boolean[] = [];
    const iters: number[] = [];
    for (let k = 0; k < 7; k++) {
      const { state: next, metrics } = opt.step(state, data.slice(k * 4, k * 4 + 4).map((d) => sampleAt(state.theta, d)));
      seen.push(metrics.kfac!.inverted);
      iters.push(metrics.kfac!.nsIterations);
      state = next;
    }
    expect(seen).toEqual([true, false, false, true, false, false, true]);
    expect(iters[3]!).toBeLessThan(iters[0]!);
  });
});
