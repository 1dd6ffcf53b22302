/**
 * LoKO and R-Kalman: the diagonal-covariance extended Kalman filter over θ of DESIGN 4, one
 * per-sample update at a time, in float64. Per sample (H m×n, R m×m):
 *   p ← p/λ + q;  e = y − h;  U = H·diag(p);  S = U·Hᵀ + R;  K = Uᵀ·S⁻¹;  θ ← θ + K·e;
 *   p ← p ⊙ (1 − Σ_c K[:,c] ⊙ H[c,:]) ≥ pFloor;  ε = R·S⁻¹·e;
 *   R ← β·R + (1−β)·(ε·εᵀ + H·diag(p)·Hᵀ + rMin·I)          (noise `ema`)
 *   R = diag(h) − h·hᵀ + r₀·I  from the sample's prediction      (noise `categorical`)
 * R-Kalman (GRNG, Bayesian) adds p ← 1/(1/p + ρ‖g‖²) right after the p update (before R's update);
 * with ρ = 0 that line is skipped, so it is LoKO bit for bit. The GRNG variants are our
 * reconstruction from the abstract of arXiv 2601.18420, not a transcription of the paper's code.
 *
 * Implementation notes. S is factored as L·Lᵀ (Cholesky, float64). With h_i = H[:, i],
 * K[i,:] = p_i·h_iᵀ·S⁻¹, so θ_i += p_i·h_iᵀ·(S⁻¹e) and Σ_c K[i,c]·H[c,i] = p_i·‖L⁻¹·h_i‖²: every
 * n-dimensional quantity is a per-coordinate expression in h_i, p_i and m×m matrices. A sample is
 * therefore two passes over θ (S and the carried prediction; then θ, p and H·diag(p)·Hᵀ), each
 * reading H once, with no m×n temporary at all (U = H·diag(p) is never stored). A mini-batch is B sequential updates with every
 * H taken at the batch's starting θ₀; the prediction is carried to the current θ to first order,
 * h ≈ h(θ₀) + H·(θ − θ₀), which is exact for a linear model and makes a batch of B equal to B
 * single-sample steps there (B = 1 is exactly DESIGN 4). The categorical R uses h(θ₀) as given, which
 * is a probability vector.
 */
import { assertFiniteResult, baseMetrics, validateBatch } from './batch.js';
import { choleskyInPlace, choleskySolveInPlace } from './linalg.js';
import { KalmanError } from './errors.js';
import { needsOf } from './config.js';
import type { Rng } from './rng.js';
import type {
  FloatArray,
  KalmanState,
  LokoConfig,
  ParamLayout,
  RKalmanConfig,
  SampleRecord,
  StepResult,
} from './types.js';

/** Initial Kalman state: p₀ uniform in [p0Low, p0High] from `rng`, R₀ = r₀·I (m = 1 for `loss`, else 0 until the first step). */
export function initKalman(
  config: LokoConfig | RKalmanConfig,
  layout: ParamLayout,
  theta: Float64Array,
  rng: Rng,
): KalmanState {
  const n = layout.n;
  const p = new Float64Array(n);
  const span = config.p0High - config.p0Low;
  for (let i = 0; i < n; i++) p[i] = config.p0Low + span * rng.uniform();
  const m = config.observation === 'loss' ? 1 : 0;
  return {
    type: config.type,
    config,
    layout,
    step: 0,
    samples: 0,
    theta,
    rng: rng.getState(),
    p,
    m,
    R: scaledIdentity(m, config.r0),
  };
}

function scaledIdentity(m: number, v: number): Float64Array {
  const r = new Float64Array(m * m);
  for (let c = 0; c < m; c++) r[c * m + c] = v;
  return r;
}

/** The categorical noise covariance diag(h) − h·hᵀ + r₀·I into `out` (m×m). */
function categoricalR(h: FloatArray, m: number, r0: number, out: Float64Array): void {
  for (let c = 0; c < m; c++) {
    for (let d = 0; d < m; d++) out[c * m + d] = (c === d ? h[c] + r0 : 0) - h[c] * h[d];
  }
}

/**
 * diag(H·diag(p)·Hᵀ + R) for a prediction-only call (the predict endpoint), with p after this
 * state's forgetting (p/λ + q: the prior of the next observation). H is m×n row-major (for the
 * `loss` observation, the loss gradient, m = 1); `h` (the prediction) is required for `categorical`
 * noise, whose R depends on it. Throws OPTIMIZER_INPUT on a wrong length, NON_FINITE_INPUT on NaN/Inf.
 */
export function kalmanPredictiveVariance(state: KalmanState, H: FloatArray, h?: FloatArray): Float64Array {
  const n = state.layout.n;
  const cfg = state.config;
  const m = H.length / n;
  if (!Number.isInteger(m) || m < 1) {
    throw new KalmanError('OPTIMIZER_INPUT', `H must have length m·n (n = ${n}), got ${H.length}`, { field: 'H' });
  }
  if (state.m > 0 && m !== state.m) {
    throw new KalmanError('OPTIMIZER_INPUT', `H must have m = ${state.m} rows (fixed by the first step), got ${m}`, { field: 'H' });
  }
  const hf = firstBad(H);
  if (hf >= 0) throw new KalmanError('NON_FINITE_INPUT', `H[${hf}] is ${String(H[hf])}`, { field: 'H', index: hf });
  let R: Float64Array;
  if (cfg.noise === 'categorical') {
    if (h === undefined || h.length !== m) {
      throw new KalmanError('OPTIMIZER_INPUT', `h (length ${m}) is required for categorical noise`, { field: 'h' });
    }
    const bad = firstBad(h);
    if (bad >= 0) throw new KalmanError('NON_FINITE_INPUT', `h[${bad}] is ${String(h[bad])}`, { field: 'h', index: bad });
    R = new Float64Array(m * m);
    categoricalR(h, m, cfg.r0, R);
  } else {
    R = state.m === m ? state.R : scaledIdentity(m, cfg.r0);
  }
  const { p } = state;
  const lam = cfg.forgetting;
  const q = cfg.processNoise;
  const forget = lam !== 1 || q !== 0;
  const out = new Float64Array(m);
  for (let c = 0; c < m; c++) {
    const row = c * n;
    let s = 0;
    for (let i = 0; i < n; i++) {
      const hv = H[row + i];
      s += hv * hv * (forget ? p[i] / lam + q : p[i]);
    }
    out[c] = s + R[c * m + c];
  }
  return out;
}

function firstBad(a: ArrayLike<number>): number {
  for (let i = 0; i < a.length; i++) if (a[i] - a[i] !== 0) return i;
  return -1;
}

/** One LoKO / R-Kalman step over a batch: B sequential per-sample updates; never mutates `state`. */
export function stepKalman(state: KalmanState, batch: readonly SampleRecord[]): StepResult<KalmanState> {
  const stepper = new KalmanStepper(state);
  stepper.feed(batch);
  return stepper.finish();
}

/**
 * A LoKO / R-Kalman step whose samples come in parts: `feed` them in order (each part is checked
 * before any of it is used, errors name the sample by its place in the whole batch), then `finish`.
 * The result is stepKalman's over all of them, bit for bit: every H is taken at the same θ₀, so a
 * caller can compute one part's Jacobians, feed them and drop them before computing the next (a
 * batch's Jacobians need not all be in memory at once). Never mutates `state`.
 */
export class KalmanStepper {
  private readonly cfg: KalmanState['config'];
  private readonly n: number;
  private readonly needs: ReturnType<typeof needsOf>;
  private readonly theta0: Float64Array;
  private readonly theta: Float64Array;
  private readonly p: Float64Array;
  /** The observation dimension, from the first part (0 before it). */
  private m = 0;
  private R: Float64Array = new Float64Array(0);
  private Rnext: Float64Array = new Float64Array(0);
  // Small m-sized scratch (allocated with the first part); nothing of size n·m is allocated.
  private S: Float64Array = new Float64Array(0);
  private hpht: Float64Array = new Float64Array(0);
  private hv: Float64Array = new Float64Array(0);
  private z: Float64Array = new Float64Array(0);
  private dh: Float64Array = new Float64Array(0);
  private e: Float64Array = new Float64Array(0);
  private w: Float64Array = new Float64Array(0);
  private eps: Float64Array = new Float64Array(0);
  private invDiag: Float64Array = new Float64Array(0);
  /** Samples fed so far. */
  private B = 0;
  private lossSum = 0;
  private lossCount = 0;
  private readonly predictiveVariance: Float64Array[] = [];
  private readonly residual: Float64Array[] = [];
  private readonly innovationNorm: number[] = [];
  private readonly nis: number[] = [];
  private done = false;

  constructor(private readonly state: KalmanState) {
    this.cfg = state.config;
    this.n = state.layout.n;
    this.needs = needsOf(state.config);
    this.theta0 = state.theta;
    this.theta = state.theta.slice();
    this.p = state.p.slice();
  }

  /** Run the per-sample updates of the next samples of the batch. After an error the step is over. */
  feed(batch: readonly SampleRecord[]): void {
    if (this.done) throw new KalmanError('OPTIMIZER_STATE', 'this step is finished or failed; start another');
    try {
      this.run(batch);
    } catch (err) {
      this.done = true;
      throw err;
    }
  }

  private run(batch: readonly SampleRecord[]): void {
    const cfg = this.cfg;
    const n = this.n;
    const obs = cfg.observation;
    const categorical = cfg.noise === 'categorical';
    const first = this.B === 0;
    const { m } = validateBatch(batch, this.state.layout, this.needs, { observation: obs, stateM: first ? this.state.m : this.m, categorical, offset: this.B });
    if (first) {
      this.m = m;
      this.R = this.state.m === m ? this.state.R.slice() : scaledIdentity(m, cfg.r0);
      this.Rnext = new Float64Array(m * m);
      this.S = new Float64Array(m * m);
      this.hpht = new Float64Array(m * m);
      for (const k of ['hv', 'z', 'dh', 'e', 'w', 'eps', 'invDiag'] as const) this[k] = new Float64Array(m);
    }
    for (const rec of batch) {
      if (typeof rec.loss === 'number') {
        this.lossSum += rec.loss;
        this.lossCount++;
      }
    }
    const rho = cfg.type === 'r-kalman' ? cfg.rho : 0;
    const lam = cfg.forgetting;
    const q = cfg.processNoise;
    const forget = lam !== 1 || q !== 0;
    const beta = cfg.beta;
    const emaUpdate = !categorical && beta !== 1;
    const floor = cfg.pFloor;
    const { theta0, theta, p, S, hpht, hv, z, dh, e, w, eps, invDiag, predictiveVariance, residual, innovationNorm, nis } = this;
    let { R, Rnext } = this;

    for (let k = 0; k < batch.length; k++) {
      const s = batch[k]!;
      const b = this.B + k;
      const H: FloatArray = obs === 'loss' ? s.grad! : s.H!;
      const carry = b > 0;

      // Pass 1 over θ: p ← p/λ + q; S = H·diag(p)·Hᵀ (lower triangle); dh = H·(θ − θ₀).
      S.fill(0);
      dh.fill(0);
      if (m === 1) {
        // The same loop for one observation (the `loss` model), without the inner loops' overhead.
        let s00 = 0;
        let dh0 = 0;
        for (let i = 0; i < n; i++) {
          let pi = p[i];
          if (forget) {
            pi = pi / lam + q;
            p[i] = pi;
          }
          const hc = H[i];
          s00 += pi * hc * hc;
          if (carry) dh0 += hc * (theta[i] - theta0[i]);
        }
        S[0] = s00;
        dh[0] = dh0;
      } else {
        for (let i = 0; i < n; i++) {
          let pi = p[i];
          if (forget) {
            pi = pi / lam + q;
            p[i] = pi;
          }
          const dt = carry ? theta[i] - theta0[i] : 0;
          for (let c = 0; c < m; c++) {
            const hc = H[c * n + i];
            hv[c] = hc;
            const u = pi * hc;
            const row = c * m;
            for (let d = 0; d < c; d++) S[row + d] += u * hv[d];
            S[row + c] += u * hc;
            dh[c] += hc * dt;
          }
        }
      }

      // e = y − h, with h carried from θ₀ to the current θ to first order.
      let e2 = 0;
      for (let c = 0; c < m; c++) {
        const hc = (obs === 'loss' ? s.loss! : s.h![c]) + dh[c];
        const ec = (obs === 'loss' ? 0 : s.y![c]) - hc;
        e[c] = ec;
        e2 += ec * ec;
      }
      residual.push(e.slice());
      innovationNorm[b] = Math.sqrt(e2);

      if (categorical) categoricalR(s.h!, m, cfg.r0, R);
      for (let c = 0; c < m; c++) {
        for (let d = 0; d <= c; d++) {
          const v = S[c * m + d] + 0.5 * (R[c * m + d] + R[d * m + c]);
          S[c * m + d] = v;
          S[d * m + c] = v;
        }
      }
      const pv = new Float64Array(m);
      for (let c = 0; c < m; c++) pv[c] = S[c * m + c];
      predictiveVariance.push(pv);
      if (firstBad(S) >= 0) {
        throw new KalmanError('NON_FINITE_STATE', `step rejected: S became non-finite at sample ${b}`, { field: 'S', sample: b });
      }
      const pivot = choleskyInPlace(S, m);
      if (pivot >= 0) {
        throw new KalmanError(
          'KALMAN_NOT_PD',
          `step rejected: S = H·diag(p)·Hᵀ + R is not positive definite at sample ${b} (pivot ${pivot})`,
          { sample: b, pivot },
        );
      }
      for (let c = 0; c < m; c++) invDiag[c] = 1 / S[c * m + c];
      // w = S⁻¹·e.
      w.set(e);
      choleskySolveInPlace(S, m, w);
      let q2 = 0;
      for (let c = 0; c < m; c++) q2 += e[c] * w[c];
      nis[b] = q2;

      let extra = 0;
      if (rho > 0) {
        const g = s.grad!; // for `loss` this is H itself
        let g2 = 0;
        for (let i = 0; i < n; i++) g2 += g[i] * g[i];
        extra = rho * g2;
      }

      // Pass 2 over θ, per coordinate i with h_i = H[:, i]:
      //   θ_i += p_i·h_iᵀ·w                     (K·e, since K = diag(p)·Hᵀ·S⁻¹)
      //   p_i −= p_i²·‖L⁻¹·h_i‖²               (= p_i·Σ_c K[i,c]·H[c,i]), floored
      //   p_i ← 1/(1/p_i + ρ‖g‖²)               (R-Kalman, skipped for ρ = 0)
      //   accumulate H·diag(p)·Hᵀ with the new p (for the EMA of R)
      if (emaUpdate) hpht.fill(0);
      if (m === 1) {
        const w0 = w[0];
        const inv0 = invDiag[0];
        let h00 = 0;
        for (let i = 0; i < n; i++) {
          const hc = H[i];
          let pi = p[i];
          theta[i] += pi * hc * w0;
          const v = hc * inv0;
          pi -= pi * pi * (v * v);
          if (pi < floor) pi = floor;
          if (extra > 0) pi = 1 / (1 / pi + extra);
          p[i] = pi;
          h00 += hc * pi * hc;
        }
        hpht[0] = h00;
      } else {
        for (let i = 0; i < n; i++) {
          let pi = p[i];
          let t = 0;
          let zz = 0;
          for (let c = 0; c < m; c++) {
            const hc = H[c * n + i];
            hv[c] = hc;
            t += hc * w[c];
            let v = hc;
            const row = c * m;
            for (let d = 0; d < c; d++) v -= S[row + d] * z[d];
            v *= invDiag[c];
            z[c] = v;
            zz += v * v;
          }
          theta[i] += pi * t;
          pi -= pi * pi * zz;
          if (pi < floor) pi = floor;
          if (extra > 0) pi = 1 / (1 / pi + extra);
          p[i] = pi;
          if (emaUpdate) {
            for (let c = 0; c < m; c++) {
              const u = hv[c] * pi;
              const row = c * m;
              for (let d = 0; d <= c; d++) hpht[row + d] += u * hv[d];
            }
          }
        }
      }

      if (emaUpdate) {
        // ε = R·S⁻¹·e = R·w with the prior R; R ← β·R + (1−β)·(ε·εᵀ + H·diag(p)·Hᵀ + rMin·I).
        for (let c = 0; c < m; c++) {
          let acc = 0;
          for (let d = 0; d < m; d++) acc += R[c * m + d] * w[d];
          eps[c] = acc;
        }
        const a = 1 - beta;
        for (let c = 0; c < m; c++) {
          for (let d = 0; d <= c; d++) {
            const v = beta * R[c * m + d] + a * (eps[c] * eps[d] + hpht[c * m + d] + (c === d ? cfg.rMin : 0));
            Rnext[c * m + d] = v;
            Rnext[d * m + c] = v;
          }
        }
        const tmp = R;
        R = Rnext;
        Rnext = tmp;
      }
      }
    this.R = R;
    this.Rnext = Rnext;
    this.B += batch.length;
  }

  /** The step's new state and metrics, once every sample was fed. */
  finish(): StepResult<KalmanState> {
    if (this.done) throw new KalmanError('OPTIMIZER_STATE', 'this step is finished or failed; start another');
    if (this.B === 0) throw new KalmanError('OPTIMIZER_INPUT', 'batch must be a non-empty array of samples', { field: 'batch' });
    this.done = true;
    const { state, theta, theta0, p, R, m, n, B } = this;
    assertFiniteResult('theta', theta);
    assertFiniteResult('p', p);
    assertFiniteResult('R', R);
    let pMin = Infinity;
    let pMax = -Infinity;
    let pSum = 0;
    for (let i = 0; i < n; i++) {
      const v = p[i];
      if (v < pMin) pMin = v;
      if (v > pMax) pMax = v;
      pSum += v;
    }
    const next: KalmanState = {
      ...state,
      step: state.step + 1,
      samples: state.samples + B,
      theta,
      p,
      m,
      R,
    };
    const loss = this.lossCount > 0 ? this.lossSum / this.lossCount : undefined;
    return {
      state: next,
      metrics: {
        ...baseMetrics(next.step, B, loss, theta, theta0),
        kalman: {
          predictiveVariance: this.predictiveVariance,
          residual: this.residual,
          innovationNorm: Float64Array.from(this.innovationNorm),
          nis: Float64Array.from(this.nis),
          pMin,
          pMean: pSum / n,
          pMax,
        },
      },
    };
  }
}
