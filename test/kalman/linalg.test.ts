import { describe, expect, it } from 'vitest';
import { cholesky, choleskySolve, createRng, matmulInto, newtonSchulzInverse, Rng, woodburyWarmStart } from '../../src/kalman/index.js';
import { expectKalmanError, maxRelErr, TestRandom } from './helpers.js';

/** A direct inverse by Gauss–Jordan with partial pivoting: the test's oracle, not used by src. */
function gaussJordanInverse(a: Float64Array, d: number): Float64Array {
  const m = Array.from({ length: d }, (_, i) => [...Array.from(a.subarray(i * d, (i + 1) * d)), ...Array.from({ length: d }, (_, j) => (i === j ? 1 : 0))]);
  for (let c = 0; c < d; c++) {
    let piv = c;
    for (let r = c + 1; r < d; r++) if (Math.abs(m[r]![c]!) > Math.abs(m[piv]![c]!)) piv = r;
    [m[c], m[piv]] = [m[piv]!, m[c]!];
    const div = m[c]![c]!;
    for (let j = 0; j < 2 * d; j++) m[c]![j]! /= div;
    for (let r = 0; r < d; r++) {
      if (r === c) continue;
      const f = m[r]![c]!;
      for (let j = 0; j < 2 * d; j++) m[r]![j]! -= f * m[c]![j]!;
    }
  }
  const out = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) out[i * d + j] = m[i]![d + j]!;
  return out;
}

/** A random SPD matrix Q·diag(λ)·Qᵀ-like: XᵀX/k + shift·I. */
function randomSpd(rnd: TestRandom, d: number, shift: number): Float64Array {
  const k = d + 3;
  const x = rnd.f64(k * d);
  const a = new Float64Array(d * d);
  for (let i = 0; i < d; i++)
    for (let j = 0; j < d; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += x[t * d + i]! * x[t * d + j]!;
      a[i * d + j] = s / k + (i === j ? shift : 0);
    }
  return a;
}

describe('cholesky', () => {
  it('factors a known SPD matrix and solves a known system', () => {
    const a = Float64Array.of(4, 12, -16, 12, 37, -43, -16, -43, 98);
    const l = cholesky(a, 3);
    expect(Array.from(l)).toEqual([2, 0, 0, 6, 1, 0, -8, 5, 3]);
    // A·[1, −2, 0.5] = [4 − 24 − 8, 12 − 74 − 21.5, −16 + 86 + 49] = [−28, −83.5, 119]
    const x = choleskySolve(l, 3, [-28, -83.5, 119]);
    expect(maxRelErr(x, [1, -2, 0.5])).toBeLessThan(1e-14);
  });

  it('solves random SPD systems to float64 precision', () => {
    const rnd = new TestRandom(3);
    for (const d of [1, 2, 7, 30]) {
      const a = randomSpd(rnd, d, 0.1);
      const xTrue = rnd.f64(d);
      const b = new Float64Array(d);
      for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) b[i] += a[i * d + j]! * xTrue[j]!;
      const x = choleskySolve(cholesky(a, d), d, b);
      expect(maxRelErr(x, xTrue)).toBeLessThan(1e-9);
    }
  });

  it('rejects a matrix that is not positive definite with KALMAN_NOT_PD', () => {
    const err = expectKalmanError(() => cholesky(Float64Array.of(1, 2, 2, 1), 2), 'KALMAN_NOT_PD');
    expect(err.details).toEqual({ pivot: 1 });
    expectKalmanError(() => cholesky(Float64Array.of(-1), 1), 'KALMAN_NOT_PD');
    expectKalmanError(() => cholesky(Float64Array.of(NaN), 1), 'KALMAN_NOT_PD');
  });

  it('rejects a wrongly sized matrix or right-hand side', () => {
    expectKalmanError(() => cholesky(new Float64Array(5), 2), 'OPTIMIZER_INPUT');
    expectKalmanError(() => choleskySolve(Float64Array.of(1), 1, [1, 2]), 'OPTIMIZER_INPUT');
  });
});

describe('newtonSchulzInverse', () => {
  it('matches a direct inverse of an SPD matrix', () => {
    const rnd = new TestRandom(5);
    for (const d of [1, 3, 12, 40]) {
      const a = randomSpd(rnd, d, 1e-2);
      const direct = gaussJordanInverse(a, d);
      const ns = newtonSchulzInverse(a, d, { tol: 1e-12, maxIter: 100 });
      expect(ns.residual).toBeLessThan(1e-12);
      expect(ns.warm).toBe(false);
      let scale = 0;
      for (const v of direct) scale = Math.max(scale, Math.abs(v));
      let err = 0;
      for (let i = 0; i < d * d; i++) err = Math.max(err, Math.abs(ns.inverse[i]! - direct[i]!));
      expect(err / scale).toBeLessThan(1e-10);
      // symmetric
      for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) expect(ns.inverse[i * d + j]).toBe(ns.inverse[j * d + i]);
    }
  });

  it('converges in a few iterations from a nearby warm start', () => {
    const rnd = new TestRandom(6);
    const d = 20;
    const a = randomSpd(rnd, d, 0.05);
    const cold = newtonSchulzInverse(a, d, { tol: 1e-10 });
    const b = a.slice();
    for (let i = 0; i < d; i++) b[i * d + i] += 0.01; // a nearby matrix, as after one EMA step
    const warm = newtonSchulzInverse(b, d, { tol: 1e-10, init: cold.inverse });
    const coldB = newtonSchulzInverse(b, d, { tol: 1e-10 });
    expect(warm.warm).toBe(true);
    expect(warm.residual).toBeLessThan(1e-10);
    expect(warm.iterations).toBeLessThan(coldB.iterations / 2);
    expect(maxRelErr(warm.inverse, coldB.inverse)).toBeLessThan(1e-8);
  });

  it('rescales a warm start that is off by a factor, and abandons one that diverges', () => {
    const a = Float64Array.of(2, 0.5, 0.5, 3);
    const exact = [3 / 5.75, -0.5 / 5.75, -0.5 / 5.75, 2 / 5.75];
    const scaled = newtonSchulzInverse(a, 2, { init: Float64Array.of(10 * exact[0]!, 10 * exact[1]!, 10 * exact[2]!, 10 * exact[3]!), tol: 1e-14 });
    expect(scaled.warm).toBe(true);
    expect(scaled.iterations).toBeLessThan(newtonSchulzInverse(a, 2, { tol: 1e-14 }).iterations);
    expect(maxRelErr(scaled.inverse, exact)).toBeLessThan(1e-14);
    const wrong = newtonSchulzInverse(a, 2, { init: Float64Array.of(-1, 0, 0, -1), tol: 1e-14 });
    expect(wrong.warm).toBe(false);
    expect(maxRelErr(wrong.inverse, exact)).toBeLessThan(1e-14);
  });

  it('returns the last iterate and its residual when maxIter runs out', () => {
    const a = Float64Array.of(1, 0, 0, 1e-8);
    const r = newtonSchulzInverse(a, 2, { maxIter: 3 });
    expect(r.iterations).toBe(3);
    expect(r.residual).toBeGreaterThan(0.5);
  });
});

describe('matmulInto', () => {
  it('equals the plain triple loop bit for bit, for row counts that are and are not multiples of 4', () => {
    const rnd = new TestRandom(13);
    for (const [r, k, c] of [[1, 1, 1], [3, 5, 2], [4, 4, 4], [7, 3, 9], [13, 17, 11], [64, 64, 64]] as const) {
      const a = rnd.f64(r * k);
      const b = rnd.f64(k * c);
      for (let i = 0; i < a.length; i += 3) a[i] = 0; // zeros, which the kernel skips
      const want = new Float64Array(r * c);
      for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) {
        let acc = 0;
        for (let t = 0; t < k; t++) acc += a[i * k + t]! * b[t * c + j]!;
        want[i * c + j] = acc;
      }
      const out = new Float64Array(r * c).fill(7); // overwritten, not accumulated into
      matmulInto(a, b, out, r, k, c);
      expect(Array.from(out)).toEqual(Array.from(want));
    }
  });
});

describe('woodburyWarmStart', () => {
  /** β·M + Σ_i u_i·u_iᵀ (u: k rows of d). */
  const update = (m: Float64Array, d: number, beta: number, u: Float64Array, k: number) => {
    const out = m.map((v) => beta * v);
    for (let i = 0; i < k; i++) for (let p = 0; p < d; p++) for (let q = 0; q < d; q++) out[p * d + q] += u[i * d + p]! * u[i * d + q]!;
    return out;
  };

  it('is the exact inverse of β·M + U·Uᵀ when started from the exact inverse of M', () => {
    const rnd = new TestRandom(11);
    for (const [d, k] of [[1, 1], [6, 2], [30, 3], [40, 20]] as const) {
      const m = randomSpd(rnd, d, 1e-2);
      const u = rnd.f64(k * d);
      const got = woodburyWarmStart(gaussJordanInverse(m, d), d, 0.95, u, k)!;
      expect(maxRelErr(got, gaussJordanInverse(update(m, d, 0.95, u, k), d))).toBeLessThan(1e-9);
    }
  });

  it('cuts Newton–Schulz iterations along a stream of rank-1 EMA updates of an ill-conditioned damped factor (K-FAC at batch 1)', () => {
    const rnd = new TestRandom(12);
    const d = 48;
    const beta = 0.95;
    const damp = 1e-3;
    let f = new Float64Array(d * d); // the EMA factor, rank-deficient for the first d steps
    let prevPlain: Float64Array | undefined;
    let prevWood: Float64Array | undefined;
    let plainIters = 0;
    let woodIters = 0;
    for (let step = 0; step < 30; step++) {
      const a = rnd.f64(d);
      const u = a.map((v) => v * Math.sqrt(1 - beta));
      const nextF = step === 0 ? update(new Float64Array(d * d), d, 0, a, 1) : update(f, d, beta, u, 1);
      const damped = nextF.slice();
      for (let i = 0; i < d; i++) damped[i * d + i] += damp;
      const plain = newtonSchulzInverse(damped, d, { tol: 1e-6, ...(prevPlain && { init: prevPlain }) });
      const init = prevWood && woodburyWarmStart(prevWood, d, beta, u, 1);
      const wood = newtonSchulzInverse(damped, d, { tol: 1e-6, ...(init && { init }) });
      expect(plain.residual).toBeLessThan(1e-6);
      expect(wood.residual).toBeLessThan(1e-6);
      expect(maxRelErr(wood.inverse, plain.inverse)).toBeLessThan(1e-4);
      if (step > 0) {
        plainIters += plain.iterations;
        woodIters += wood.iterations;
        expect(wood.warm).toBe(true);
        expect(wood.iterations).toBeLessThanOrEqual(4);
      }
      prevPlain = plain.inverse;
      prevWood = wood.inverse;
      f = nextF;
    }
    expect(woodIters * 3).toBeLessThan(plainIters);
  });

  it('returns null when the correction is not positive definite', () => {
    // X = −I is not an inverse of anything SPD: I + Uᵀ(X/β)U = 1 − 4/β < 0.
    expect(woodburyWarmStart(Float64Array.of(-1, 0, 0, -1), 2, 1, Float64Array.of(2, 0), 1)).toBeNull();
  });
});

describe('rng (xoshiro128**)', () => {
  it('matches the reference stream for state [1, 2, 3, 4]', () => {
    const r = new Rng([1, 2, 3, 4]);
    const got = Array.from({ length: 10 }, () => r.nextUint32());
    expect(got).toEqual([11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849, 3729100597, 4258142804]);
  });

  it('is deterministic per seed, differs across seeds and resumes from its state', () => {
    const a = createRng(42);
    const b = createRng(42);
    const c = createRng(42 + 2 ** 32);
    const xs = Array.from({ length: 5 }, () => a.uniform());
    expect(Array.from({ length: 5 }, () => b.uniform())).toEqual(xs);
    expect(Array.from({ length: 5 }, () => c.uniform())).not.toEqual(xs);
    const resumed = new Rng(a.getState());
    expect(resumed.uniform()).toBe(a.uniform());
    for (const x of xs) expect(x >= 0 && x < 1).toBe(true);
  });

  it('rejects a bad seed or state', () => {
    expectKalmanError(() => createRng(-1), 'OPTIMIZER_CONFIG');
    expectKalmanError(() => createRng(1.5), 'OPTIMIZER_CONFIG');
    expectKalmanError(() => new Rng([0, 0, 0, 0]), 'OPTIMIZER_STATE');
  });
});
