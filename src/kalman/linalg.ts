/**
 * Small dense linear algebra in float64 for the optimizers: Cholesky factorisation and solves for
 * the m×m innovation covariance (m ≤ ~100), and Newton–Schulz iteration for the inverses of K-FAC's
 * Kronecker factors. Matrices are row-major Float64Arrays; the *InPlace variants allocate nothing so
 * the per-sample loops can reuse buffers.
 */
import { KalmanError } from './errors.js';

/**
 * Factorises the symmetric matrix `a` (m×m, only its lower triangle is read) as L·Lᵀ in place: the
 * lower triangle becomes L, the strict upper triangle is zeroed. Returns -1 on success, else the
 * index of the first pivot that was not positive (or not finite); `a` is then partly overwritten.
 */
export function choleskyInPlace(a: Float64Array, m: number): number {
  for (let j = 0; j < m; j++) {
    const rj = j * m;
    let d = a[rj + j];
    for (let k = 0; k < j; k++) d -= a[rj + k] * a[rj + k];
    if (!(d > 0) || !Number.isFinite(d)) return j;
    const ljj = Math.sqrt(d);
    a[rj + j] = ljj;
    for (let i = j + 1; i < m; i++) {
      const ri = i * m;
      let s = a[ri + j];
      for (let k = 0; k < j; k++) s -= a[ri + k] * a[rj + k];
      a[ri + j] = s / ljj;
    }
    for (let k = j + 1; k < m; k++) a[rj + k] = 0;
  }
  return -1;
}

/** Solves L·Lᵀ·x = b in place (b becomes x), given the factor from `choleskyInPlace`. */
export function choleskySolveInPlace(l: Float64Array, m: number, b: Float64Array): void {
  for (let i = 0; i < m; i++) {
    const ri = i * m;
    let s = b[i];
    for (let k = 0; k < i; k++) s -= l[ri + k] * b[k];
    b[i] = s / l[ri + i];
  }
  for (let i = m - 1; i >= 0; i--) {
    let s = b[i];
    for (let k = i + 1; k < m; k++) s -= l[k * m + i] * b[k];
    b[i] = s / l[i * m + i];
  }
}

/**
 * The Cholesky factor L (lower triangular, row-major m×m) of the symmetric positive definite `a`.
 * Throws KalmanError `KALMAN_NOT_PD` naming the failing pivot when `a` is not positive definite.
 */
export function cholesky(a: Float64Array, m: number): Float64Array {
  checkSquare(a, m, 'a');
  const l = Float64Array.from(a);
  const bad = choleskyInPlace(l, m);
  if (bad >= 0) {
    throw new KalmanError('KALMAN_NOT_PD', `matrix is not positive definite (pivot ${bad})`, { pivot: bad });
  }
  return l;
}

/** Solves A·x = b for symmetric positive definite A given its Cholesky factor L; returns a new x. */
export function choleskySolve(l: Float64Array, m: number, b: ArrayLike<number>): Float64Array {
  checkSquare(l, m, 'l');
  if (b.length !== m) throw new KalmanError('OPTIMIZER_INPUT', `b must have length ${m}, got ${b.length}`);
  const x = Float64Array.from(b);
  choleskySolveInPlace(l, m, x);
  return x;
}

/**
 * out (r×c) = a (r×k) · b (k×c), all row-major; `out` must not alias `a` or `b`. Four rows of `a` at a
 * time, so each row of `b` is read once per four output rows (2–4x faster than one row at a time in
 * V8 for the d = 64..256 products of Newton–Schulz); every output element still sums its k terms in
 * order, so the result is the same as the plain triple loop.
 */
export function matmulInto(
  a: Float64Array,
  b: Float64Array,
  out: Float64Array,
  r: number,
  k: number,
  c: number,
): void {
  out.fill(0, 0, r * c);
  let i = 0;
  for (; i + 3 < r; i += 4) {
    const o0 = i * c;
    const o1 = o0 + c;
    const o2 = o1 + c;
    const o3 = o2 + c;
    const a0 = i * k;
    const a1 = a0 + k;
    const a2 = a1 + k;
    const a3 = a2 + k;
    for (let t = 0; t < k; t++) {
      const x0 = a[a0 + t];
      const x1 = a[a1 + t];
      const x2 = a[a2 + t];
      const x3 = a[a3 + t];
      if (x0 === 0 && x1 === 0 && x2 === 0 && x3 === 0) continue;
      const rb = t * c;
      for (let j = 0; j < c; j++) {
        const bv = b[rb + j];
        out[o0 + j] += x0 * bv;
        out[o1 + j] += x1 * bv;
        out[o2 + j] += x2 * bv;
        out[o3 + j] += x3 * bv;
      }
    }
  }
  for (; i < r; i++) {
    const ro = i * c;
    const ra = i * k;
    for (let t = 0; t < k; t++) {
      const av = a[ra + t];
      if (av === 0) continue;
      const rb = t * c;
      for (let j = 0; j < c; j++) out[ro + j] += av * b[rb + j];
    }
  }
}

/**
 * A warm start for the inverse of β·M₀ + U·Uᵀ from X ≈ M₀⁻¹ (d×d, symmetric), by the Woodbury
 * identity: (β·M₀ + UUᵀ)⁻¹ = Y − Y·U·(I + Uᵀ·Y·U)⁻¹·Uᵀ·Y with Y = X/β. `u` holds the k columns of
 * U as rows (k×d, row-major). Costs ~2k·d² + k²·d + k³/3, against d³ for one Newton–Schulz
 * iteration, so it pays when k < d: an EMA factor updated by a few samples (K-FAC at small batch)
 * moves along a few directions in which the old inverse says nothing useful, and without this the
 * rescaled warm start needs about log₂ of that change's size in iterations. The k×k system is
 * solved by Cholesky (I + UᵀYU is SPD for SPD X). Returns null when it is not (X not SPD enough).
 */
export function woodburyWarmStart(x: Float64Array, d: number, beta: number, u: Float64Array, k: number): Float64Array | null {
  checkSquare(x, d, 'x');
  if (u.length !== k * d) throw new KalmanError('OPTIMIZER_INPUT', `u must have ${k}×${d} entries, got ${u.length}`);
  const y = new Float64Array(d * d);
  for (let i = 0; i < d * d; i++) y[i] = x[i] / beta;
  // V = Uᵀ·Y as k rows (row i = u_iᵀ·Y, Y symmetric).
  const v = new Float64Array(k * d);
  matmulInto(u, y, v, k, d, d);
  // S = I + V·U (k×k), S_ij = δ_ij + v_i·u_j.
  const sm = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j <= i; j++) {
      let acc = 0;
      for (let t = 0; t < d; t++) acc += v[i * d + t] * u[j * d + t];
      sm[i * k + j] = acc + (i === j ? 1 : 0);
    }
  }
  if (choleskyInPlace(sm, k) >= 0) return null;
  // Z = S⁻¹·V column by column (each of the d columns of V is a k-vector).
  const z = new Float64Array(k * d);
  const col = new Float64Array(k);
  for (let t = 0; t < d; t++) {
    for (let i = 0; i < k; i++) col[i] = v[i * d + t];
    choleskySolveInPlace(sm, k, col);
    for (let i = 0; i < k; i++) z[i * d + t] = col[i];
  }
  // X₀ = Y − Vᵀ·Z.
  for (let i = 0; i < k; i++) {
    const ri = i * d;
    for (let p = 0; p < d; p++) {
      const vp = v[ri + p];
      if (vp === 0) continue;
      const rp = p * d;
      for (let q = 0; q < d; q++) y[rp + q] -= vp * z[ri + q];
    }
  }
  symmetrize(y, d);
  for (let i = 0; i < d * d; i++) if (!Number.isFinite(y[i])) return null;
  return y;
}

/** Options of `newtonSchulzInverse`. */
export interface NewtonSchulzOptions {
  /** Most iterations (two d×d products each). Default 50. */
  maxIter?: number;
  /** Stop once ‖I − M·X‖_F < tol. Default 1e-8. */
  tol?: number;
  /**
   * A warm start (e.g. the previous step's inverse): the iteration starts from X₀ = init/μ with μ
   * the largest eigenvalue of M·init (power iteration), and falls back to the cold start if an
   * iteration from it does not shrink the residual.
   */
  init?: Float64Array;
}

/** The result of `newtonSchulzInverse`. */
export interface NewtonSchulzResult {
  /** The approximate inverse X (d×d, symmetrised). */
  inverse: Float64Array;
  /** Iterations run (0 when the warm start was already within tolerance). */
  iterations: number;
  /** ‖I − M·X‖_F of the returned X (the last one measured). */
  residual: number;
  /** Whether the warm start was used. */
  warm: boolean;
}

/**
 * Inverse of a symmetric positive definite d×d matrix by the Newton–Schulz iteration
 * X ← X·(2I − M·X), started from the rescaled warm start when one is given and else from
 * X₀ = I/‖M‖∞ (which converges for any SPD M since then the spectrum of X₀·M is in
 * (0, 1]). The error contracts like (1 − λmin/λmax of M·X₀)^(2^k), so a warm start from a nearby
 * matrix's inverse (λmin/λmax of M·X₀ near 1) needs a few iterations where a cold start needs
 * about log₂ of M's condition number. Only matrix products: no pivoting, no explicit inversion.
 * If `maxIter` runs out the last iterate is returned with its residual (still SPD for SPD M, so a
 * usable preconditioner); the caller decides what to do with a large residual.
 */
export function newtonSchulzInverse(m: Float64Array, d: number, opts: NewtonSchulzOptions = {}): NewtonSchulzResult {
  checkSquare(m, d, 'm');
  const maxIter = opts.maxIter ?? 50;
  const tol = opts.tol ?? 1e-8;
  const x = new Float64Array(d * d);
  const t = new Float64Array(d * d);
  const y = new Float64Array(d * d);
  let total = 0;
  const mu = opts.init !== undefined && opts.init.length === d * d ? spectralRadius(m, opts.init, d) : NaN;
  if (mu > 0 && Number.isFinite(mu)) {
    // X₀ = X_init/μ puts the spectrum of M·X₀ in (0, 1] (μ = its largest eigenvalue), inside the
    // basin of convergence, and keeps what X_init knows about M's shape: from the inverse of a nearby
    // matrix the spread of that spectrum is small, so few iterations are needed.
    for (let i = 0; i < d * d; i++) x[i] = opts.init![i] / mu;
    const r = iterate(m, x, t, y, d, maxIter, tol);
    if (r.converging) return { inverse: x, iterations: r.iterations, residual: r.residual, warm: true };
    total = r.iterations;
  }
  let norm = 0;
  for (let i = 0; i < d; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += Math.abs(m[i * d + j]);
    if (s > norm) norm = s;
  }
  x.fill(0);
  if (!(norm > 0) || !Number.isFinite(norm)) {
    return { inverse: x.fill(NaN), iterations: total, residual: NaN, warm: false };
  }
  for (let i = 0; i < d; i++) x[i * d + i] = 1 / norm;
  const r = iterate(m, x, t, y, d, Math.max(0, maxIter - total), tol);
  return { inverse: x, iterations: total + r.iterations, residual: r.residual, warm: false };
}

/**
 * Newton–Schulz iterations on x in place until ‖I − M·X‖_F < tol or maxIter; `converging` is false
 * when an iteration made the residual grow (a warm start outside the basin of convergence).
 */
function iterate(
  m: Float64Array,
  x: Float64Array,
  t: Float64Array,
  y: Float64Array,
  d: number,
  maxIter: number,
  tol: number,
): { iterations: number; residual: number; converging: boolean } {
  matmulInto(m, x, t, d, d, d);
  let residual = identityResidual(t, d);
  let it = 0;
  while (residual >= tol && it < maxIter && Number.isFinite(residual)) {
    // X ← 2X − X·(M·X); t holds M·X.
    matmulInto(x, t, y, d, d, d);
    for (let i = 0; i < d * d; i++) x[i] = 2 * x[i] - y[i];
    symmetrize(x, d);
    matmulInto(m, x, t, d, d, d);
    const next = identityResidual(t, d);
    it++;
    if (!(next < residual)) {
      // No progress: either rounding noise after convergence (a tiny residual: stop there) or a
      // warm start outside the basin of convergence (the caller restarts cold).
      return { iterations: it, residual: next, converging: residual < 1e-6 };
    }
    residual = next;
  }
  return { iterations: it, residual, converging: Number.isFinite(residual) };
}

/**
 * The largest eigenvalue of M·X (real and positive for SPD M and X), by 24 steps of power iteration
 * from a fixed start vector, slightly inflated (×1.02) since power iteration approaches it from below:
 * d² work per step against d³ for one Newton–Schulz iteration.
 */
function spectralRadius(m: Float64Array, x: Float64Array, d: number): number {
  let v = new Float64Array(d);
  let u = new Float64Array(d);
  const tmp = new Float64Array(d);
  for (let i = 0; i < d; i++) v[i] = 1 + (i % 7) * 0.1;
  let est = 0;
  for (let k = 0; k < 24; k++) {
    let nv = 0;
    for (let i = 0; i < d; i++) nv += v[i] * v[i];
    nv = Math.sqrt(nv);
    if (!(nv > 0) || !Number.isFinite(nv)) return NaN;
    for (let i = 0; i < d; i++) v[i] /= nv;
    // u = M·(X·v)
    for (let i = 0; i < d; i++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += x[i * d + j] * v[j];
      tmp[i] = s;
    }
    let nu = 0;
    for (let i = 0; i < d; i++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += m[i * d + j] * tmp[j];
      u[i] = s;
      nu += s * s;
    }
    est = Math.sqrt(nu);
    const swap = v;
    v = u;
    u = swap;
  }
  return est * 1.02;
}

/** ‖I − T‖_F for a d×d matrix T. */
function identityResidual(t: Float64Array, d: number): number {
  let s = 0;
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) {
      const v = t[i * d + j] - (i === j ? 1 : 0);
      s += v * v;
    }
  }
  return Math.sqrt(s);
}

/** Replaces a d×d matrix by (A + Aᵀ)/2 in place. */
export function symmetrize(a: Float64Array, d: number): void {
  for (let i = 0; i < d; i++) {
    for (let j = i + 1; j < d; j++) {
      const v = 0.5 * (a[i * d + j] + a[j * d + i]);
      a[i * d + j] = v;
      a[j * d + i] = v;
    }
  }
}

function checkSquare(a: Float64Array, m: number, name: string): void {
  if (!Number.isInteger(m) || m < 0 || a.length !== m * m) {
    throw new KalmanError('OPTIMIZER_INPUT', `${name} must be a ${m}×${m} matrix (length ${m * m}), got length ${a.length}`);
  }
}
