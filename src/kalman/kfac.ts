/**
 * K-FAC and the GRNG frequentist variants RING and RENG: per LoRA matrix W [rows, cols], the
 * gradient is preconditioned by the inverse of a damped Kronecker-factored curvature,
 *   ΔW = (G + (√λ/π)·I)⁻¹ · ∇W · (A + π√λ·I)⁻¹,   θ_W ← θ_W − lr·ΔW,
 * with A = EMA of E[a·aᵀ] (cols×cols, inputs) and G = EMA of E[g·gᵀ] (rows×rows, output gradients),
 * per sample A_i = (1/T)·Σ_t a_t·a_tᵀ and G_i = Σ_t g_t·g_tᵀ ("K-FAC expand" for T tokens), averaged
 * over the batch (g is `gFisher` where the caller gives it, else the empirical output gradient);
 * π = √((tr A/cols)/(tr G/rows)) splits λ between the factors so that every
 * eigenvalue of the damped Kronecker product is ≥ λ (Martens & Grosse 2015, factored Tikhonov).
 * The inverses come from Newton–Schulz iteration warm-started from the previous step's inverses;
 * no explicit inverse is formed. ∇W is the batch mean of the per-sample Σ_t g_t·a_tᵀ. A factor of
 * dimension above `maxFactorDim` (e.g. A of a LoRA A matrix on a 784-wide input) is kept as its
 * diagonal and inverted elementwise: Newton–Schulz costs d³ per iteration, seconds at d ≈ 800 in JS.
 *
 * GRNG (penalised objective ℓ + (ρ/2)‖∇ℓ‖²). These two are our reconstruction from the abstract of
 * arXiv 2601.18420 ("Gradient Regularized Natural Gradients"), not a transcription of the paper:
 * - RING (implicit): K-FAC with adaptive damping λ = λ₀ + ρ‖ḡ‖², ḡ the batch-mean gradient over all
 *   of θ; ρ = 0 skips the term, so it is K-FAC bit for bit.
 * - RENG (explicit): RING's preconditioner (the same adaptive damping λ₀ + ρ‖ḡ‖², DESIGN 4: "the same
 *   preconditioner") applied to ḡ + ρ·H_ℓ·ḡ, the gradient of the penalised batch objective. With K-FAC's
 *   fixed λ₀ instead it diverged on the built-in digits stream within four samples: at LoRA's start
 *   (B = 0) an A matrix's output-gradient factor is zero, so its damped inverse scales by ~1/λ₀,
 *   while H_ℓ·ḡ has A components (the A–B cross terms); test/lora/stream-stability.test.ts.
 *   H_ℓ·ḡ = ‖ḡ‖·H_ℓ·v with v = ḡ/‖ḡ‖ is taken by a finite difference of two
 *   gradients, (∇ℓ(θ + ε·v) − ∇ℓ(θ))/ε: `kfacHvpPoint` gives the caller θ + ε·v, the caller returns
 *   the per-sample gradients there as `gradPerturbed` (the unperturbed ones are each sample's `grad`
 *   where given, else its factors' Σ_t g_t·a_tᵀ).
 */
import { addFactorGradient, assertFiniteResult, baseMetrics, meanGradient, meanLoss, norm, validateBatch } from './batch.js';
import { needsOf } from './config.js';
import { matmulInto, newtonSchulzInverse, woodburyWarmStart } from './linalg.js';
import type { Rng } from './rng.js';
import type {
  FloatArray,
  HvpPoint,
  KfacBlockState,
  KfacConfig,
  KfacState,
  ParamLayout,
  RengConfig,
  RingConfig,
  SampleRecord,
  StepResult,
} from './types.js';

/** Initial K-FAC state: zero factors (the first step takes the batch's), zero inverses. */
export function initKfac(config: KfacConfig | RingConfig | RengConfig, layout: ParamLayout, theta: Float64Array, rng: Rng): KfacState {
  return {
    type: config.type,
    config,
    layout,
    step: 0,
    samples: 0,
    theta,
    rng: rng.getState(),
    blocks: layout.blocks.map((b) => {
      const a = factorSize(b.cols, config.maxFactorDim);
      const g = factorSize(b.rows, config.maxFactorDim);
      return { A: new Float64Array(a), G: new Float64Array(g), Ainv: new Float64Array(a), Ginv: new Float64Array(g) };
    }),
  };
}

/** ḡ from the samples' factors only (float64), so `kfacHvpPoint` and `stepKfac` agree bit for bit. */
function factorMeanGradient(layout: ParamLayout, batch: readonly SampleRecord[]): Float64Array {
  const g = new Float64Array(layout.n);
  const inv = 1 / batch.length;
  for (const s of batch) addFactorGradient(layout, s, inv, g);
  return g;
}

/** Entries of a factor of dimension d: d² when full, d when kept diagonal (d > maxFactorDim). */
function factorSize(d: number, maxFactorDim: number): number {
  return d > maxFactorDim ? d : d * d;
}

/**
 * Adds w·Σ_t v_t·v_tᵀ (v_t = x[t·d, (t+1)·d)) into `out`: the lower triangle of the d×d matrix, or
 * only the diagonal when `diag`.
 */
function addSecondMoment(out: Float64Array, x: FloatArray, d: number, w: number, diag: boolean): void {
  const T = x.length / d;
  for (let t = 0; t < T; t++) {
    const o = t * d;
    if (diag) {
      for (let i = 0; i < d; i++) out[i] += w * x[o + i] * x[o + i];
      continue;
    }
    for (let i = 0; i < d; i++) {
      const xi = x[o + i] * w;
      if (xi === 0) continue;
      const ri = i * d;
      for (let j = 0; j <= i; j++) out[ri + j] += xi * x[o + j];
    }
  }
}

/** Batch second moments of one block: A = mean_i (1/T_i)·Σ_t a·aᵀ, G = mean_i Σ_t g·gᵀ (g = gFisher where given). */
function blockMoments(
  batch: readonly SampleRecord[],
  name: string,
  rows: number,
  cols: number,
  diagA: boolean,
  diagG: boolean,
): { A: Float64Array; G: Float64Array } {
  const A = new Float64Array(diagA ? cols : cols * cols);
  const G = new Float64Array(diagG ? rows : rows * rows);
  const B = batch.length;
  for (const s of batch) {
    const f = s.factors![name]!;
    const T = f.a.length / cols;
    addSecondMoment(A, f.a, cols, 1 / (T * B), diagA);
    addSecondMoment(G, f.gFisher ?? f.g, rows, 1 / B, diagG);
  }
  if (!diagA) mirrorLower(A, cols);
  if (!diagG) mirrorLower(G, rows);
  return { A, G };
}

function mirrorLower(a: Float64Array, d: number): void {
  for (let i = 0; i < d; i++) for (let j = 0; j < i; j++) a[j * d + i] = a[i * d + j];
}

function trace(a: Float64Array, d: number, diag: boolean): number {
  let s = 0;
  for (let i = 0; i < d; i++) s += diag ? a[i] : a[i * d + i];
  return s;
}

/** Inverse of (factor + damp·I): Newton–Schulz (warm-started from `prev` when given) or elementwise. */
function dampedInverse(
  f: Float64Array,
  d: number,
  damp: number,
  diag: boolean,
  prev: Float64Array | undefined,
  cfg: { nsMaxIter: number; nsTol: number },
): { inverse: Float64Array; iterations: number; residual: number } {
  if (diag) {
    const inverse = new Float64Array(d);
    for (let i = 0; i < d; i++) inverse[i] = 1 / (f[i] + damp);
    return { inverse, iterations: 0, residual: 0 };
  }
  const M = f.slice();
  for (let i = 0; i < d; i++) M[i * d + i] += damp;
  const opts = { maxIter: cfg.nsMaxIter, tol: cfg.nsTol };
  return newtonSchulzInverse(M, d, prev === undefined ? opts : { ...opts, init: prev });
}

/**
 * Warm start for the damped inverse of a factor after its EMA update F ← β·F + (1 − β)·(batch
 * moments): the batch moments are Σ w·v·vᵀ over the batch's vectors (a side: w = 1/(T·B), g side:
 * w = 1/B, as `blockMoments`), so with U's columns √((1 − β)·w)·v the new damped factor is about
 * β·(old damped factor) + U·Uᵀ (the damping's own change is left to Newton–Schulz). Used when the
 * vectors are fewer than half the dimension; otherwise (or when the correction fails) the previous
 * inverse itself, as before.
 */
function emaWarmStart(prevInv: Float64Array, d: number, decay: number, batch: readonly SampleRecord[], name: string, side: 'a' | 'g', cols: number): Float64Array {
  let k = 0;
  for (const s of batch) {
    const f = s.factors![name]!;
    k += (side === 'a' ? f.a.length : (f.gFisher ?? f.g).length) / d;
  }
  if (k === 0 || 2 * k > d) return prevInv;
  const u = new Float64Array(k * d);
  let row = 0;
  for (const s of batch) {
    const f = s.factors![name]!;
    const vecs = side === 'a' ? f.a : (f.gFisher ?? f.g);
    const T = side === 'a' ? f.a.length / cols : 1;
    const c = Math.sqrt(((1 - decay) / (T * batch.length)));
    for (let t = 0; t < vecs.length / d; t++, row++) for (let i = 0; i < d; i++) u[row * d + i] = c * vecs[t * d + i];
  }
  return woodburyWarmStart(prevInv, d, decay, u, k) ?? prevInv;
}

/**
 * Where RENG needs the second gradient: θ + ε·v with v = ḡ/‖ḡ‖ from the batch's factors (v = 0 and
 * θ unchanged when ḡ = 0). Validates the factors (OPTIMIZER_INPUT / NON_FINITE_INPUT).
 */
export function kfacHvpPoint(state: KfacState, batch: readonly SampleRecord[]): HvpPoint {
  validateBatch(batch, state.layout, ['factors']);
  const eps = state.config.type === 'reng' ? state.config.hvpEps : 0;
  const g = factorMeanGradient(state.layout, batch);
  const gn = norm(g);
  const direction = new Float64Array(g.length);
  if (gn > 0) for (let i = 0; i < g.length; i++) direction[i] = g[i] / gn;
  const theta = state.theta.slice();
  for (let i = 0; i < theta.length; i++) theta[i] += eps * direction[i];
  return { theta, epsilon: eps, direction };
}

/** One K-FAC / RING / RENG step on the batch's factors; never mutates `state`. */
export function stepKfac(state: KfacState, batch: readonly SampleRecord[]): StepResult<KfacState> {
  const cfg = state.config;
  const layout = state.layout;
  validateBatch(batch, layout, needsOf(cfg));
  const n = layout.n;
  const B = batch.length;
  const gbar = factorMeanGradient(layout, batch);
  const gn = norm(gbar);

  // The direction to precondition: ḡ, or ḡ + ρ·H_ℓ·ḡ for RENG.
  let dir = gbar;
  let hvpNorm: number | undefined;
  if (cfg.type === 'reng' && cfg.rho > 0) {
    hvpNorm = 0;
    if (gn > 0) {
      const base = meanGradient(layout, batch);
      const pert = new Float64Array(n);
      const inv = 1 / B;
      for (const s of batch) {
        const gp = s.gradPerturbed!;
        for (let i = 0; i < n; i++) pert[i] += gp[i] * inv;
      }
      dir = gbar.slice();
      const scale = gn / cfg.hvpEps;
      let h2 = 0;
      for (let i = 0; i < n; i++) {
        const hv = (pert[i] - base[i]) * scale;
        h2 += hv * hv;
        dir[i] += cfg.rho * hv;
      }
      hvpNorm = Math.sqrt(h2);
    }
  }

  const damping = (cfg.type === 'ring' || cfg.type === 'reng') && cfg.rho > 0 ? cfg.damping + cfg.rho * gn * gn : cfg.damping;
  const sqrtDamping = Math.sqrt(damping);
  const invert = state.step % cfg.inverseEvery === 0;
  const decay = cfg.factorDecay;
  const theta = state.theta.slice();
  const blocks: KfacBlockState[] = [];
  let nsResidual = 0;
  let nsIterations = 0;

  for (let k = 0; k < layout.blocks.length; k++) {
    const { name, rows, cols, offset } = layout.blocks[k]!;
    const prev = state.blocks[k]!;
    const diagA = cols > cfg.maxFactorDim;
    const diagG = rows > cfg.maxFactorDim;
    const batchM = blockMoments(batch, name, rows, cols, diagA, diagG);
    let A: Float64Array;
    let G: Float64Array;
    if (state.step === 0) {
      A = batchM.A;
      G = batchM.G;
    } else {
      A = prev.A.slice();
      G = prev.G.slice();
      for (let i = 0; i < A.length; i++) A[i] = decay * A[i] + (1 - decay) * batchM.A[i];
      for (let i = 0; i < G.length; i++) G[i] = decay * G[i] + (1 - decay) * batchM.G[i];
    }
    let Ainv = prev.Ainv;
    let Ginv = prev.Ginv;
    if (invert) {
      const trA = trace(A, cols, diagA) / cols;
      const trG = trace(G, rows, diagG) / rows;
      const pi = trA > 0 && trG > 0 && Number.isFinite(trA / trG) ? Math.sqrt(trA / trG) : 1;
      const warm = state.step > 0;
      // With inverses every step, the previous ones are of the factors this step's EMA starts from:
      // a low-rank Woodbury correction for the batch's vectors makes a close warm start.
      const lowRank = warm && cfg.inverseEvery === 1 && decay > 0;
      const startA = warm ? (lowRank && !diagA ? emaWarmStart(prev.Ainv, cols, decay, batch, name, 'a', cols) : prev.Ainv) : undefined;
      const startG = warm ? (lowRank && !diagG ? emaWarmStart(prev.Ginv, rows, decay, batch, name, 'g', cols) : prev.Ginv) : undefined;
      const ra = dampedInverse(A, cols, pi * sqrtDamping, diagA, startA, cfg);
      const rg = dampedInverse(G, rows, sqrtDamping / pi, diagG, startG, cfg);
      Ainv = ra.inverse;
      Ginv = rg.inverse;
      nsResidual = Math.max(nsResidual, ra.residual, rg.residual);
      nsIterations += ra.iterations + rg.iterations;
    }
    // ΔW = Ginv · D · Ainv, D the block of the direction (row-major [rows, cols] at offset).
    const D = dir.subarray(offset, offset + rows * cols);
    const tmp = new Float64Array(rows * cols);
    const delta = new Float64Array(rows * cols);
    if (diagA) {
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) tmp[r * cols + c] = D[r * cols + c] * Ainv[c];
    } else {
      matmulInto(D, Ainv, tmp, rows, cols, cols);
    }
    if (diagG) {
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) delta[r * cols + c] = Ginv[r] * tmp[r * cols + c];
    } else {
      matmulInto(Ginv, tmp, delta, rows, rows, cols);
    }
    for (let j = 0; j < rows * cols; j++) theta[offset + j] -= cfg.lr * delta[j];
    blocks.push({ A, G, Ainv, Ginv });
  }

  assertFiniteResult('theta', theta);
  for (let k = 0; k < blocks.length; k++) {
    const name = layout.blocks[k]!.name;
    const b = blocks[k]!;
    assertFiniteResult(`${name}.A`, b.A);
    assertFiniteResult(`${name}.G`, b.G);
    assertFiniteResult(`${name}.Ainv`, b.Ainv);
    assertFiniteResult(`${name}.Ginv`, b.Ginv);
  }
  const next: KfacState = { ...state, step: state.step + 1, samples: state.samples + B, theta, blocks };
  const loss = meanLoss(batch);
  return {
    state: next,
    metrics: {
      ...baseMetrics(next.step, B, loss, theta, state.theta),
      gradNorm: gn,
      kfac: {
        damping,
        inverted: invert,
        nsResidual,
        nsIterations,
        ...(hvpNorm === undefined ? {} : { hvpNorm }),
      },
    },
  };
}
