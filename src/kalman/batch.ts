/**
 * Checks at the boundary of src/kalman: the parameter layout, theta0, and every batch before a step
 * touches it (required fields present, lengths right, every number finite), plus the helpers that
 * turn a sample's factors or flat gradient into the batch-mean gradient. A batch that fails here is
 * rejected as a whole, before any arithmetic, so errors name the sample and the field.
 */
import { KalmanError } from './errors.js';
import type { FloatArray, Need, OptimizerFamily, ParamLayout, SampleRecord, StepMetrics } from './types.js';

/** Index of the first NaN/±Infinity in `a`, or -1. */
export function firstNonFinite(a: ArrayLike<number>): number {
  for (let i = 0; i < a.length; i++) {
    const v = a[i];
    if (v - v !== 0) return i; // NaN - NaN and Inf - Inf are NaN; any finite v gives 0
  }
  return -1;
}

function nonFinite(field: string, index: number, value: number): KalmanError {
  return new KalmanError('NON_FINITE_INPUT', `${field}[${index}] is ${String(value)}`, { field, index, value: String(value) });
}

/** Throws NON_FINITE_INPUT naming `field` and the index when `a` holds a NaN or ±Infinity. */
export function assertFinite(field: string, a: ArrayLike<number>): void {
  const i = firstNonFinite(a);
  if (i >= 0) throw nonFinite(field, i, a[i]);
}

/** Whether the blocks cover θ exactly (every entry in exactly one block). */
export function blocksTile(layout: ParamLayout): boolean {
  let total = 0;
  for (const b of layout.blocks) total += b.rows * b.cols;
  return total === layout.n; // blocks were checked to be disjoint and inside [0, n)
}

/**
 * Validates a layout and returns a normalised copy (blocks as plain objects). n must be a positive
 * integer; blocks need unique non-empty names, positive integer rows/cols, and disjoint ranges inside
 * [0, n). The K-FAC family needs blocks that cover θ exactly. Throws OPTIMIZER_LAYOUT.
 */
export function validateLayout(layout: unknown, family: OptimizerFamily): ParamLayout {
  const bad = (msg: string, details?: Record<string, unknown>) => new KalmanError('OPTIMIZER_LAYOUT', `layout: ${msg}`, details);
  if (typeof layout !== 'object' || layout === null) throw bad('must be an object {n, blocks}');
  const { n, blocks } = layout as { n?: unknown; blocks?: unknown };
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) throw bad(`n must be a positive integer, got ${String(n)}`, { field: 'n' });
  if (!Array.isArray(blocks)) throw bad('blocks must be an array', { field: 'blocks' });
  const out: ParamLayout = { n, blocks: [] };
  const names = new Set<string>();
  for (let k = 0; k < blocks.length; k++) {
    const b = blocks[k] as Record<string, unknown>;
    const field = `blocks[${k}]`;
    if (typeof b !== 'object' || b === null) throw bad(`${field} must be an object {name, rows, cols, offset}`, { field });
    const { name, rows, cols, offset } = b;
    if (typeof name !== 'string' || name === '') throw bad(`${field}.name must be a non-empty string`, { field: `${field}.name` });
    if (names.has(name)) throw bad(`${field}.name '${name}' is used twice`, { field: `${field}.name` });
    names.add(name);
    for (const [key, v, min] of [
      ['rows', rows, 1],
      ['cols', cols, 1],
      ['offset', offset, 0],
    ] as const) {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
        throw bad(`${field}.${key} must be an integer ≥ ${min}, got ${String(v)}`, { field: `${field}.${key}` });
      }
    }
    const r = rows as number;
    const c = cols as number;
    const o = offset as number;
    if (o + r * c > n) throw bad(`${field} '${name}' [${r}, ${c}] at offset ${o} ends past n = ${n}`, { field });
    out.blocks.push({ name, rows: r, cols: c, offset: o });
  }
  const sorted = [...out.blocks].sort((x, y) => x.offset - y.offset);
  for (let k = 1; k < sorted.length; k++) {
    const prev = sorted[k - 1]!;
    const cur = sorted[k]!;
    if (prev.offset + prev.rows * prev.cols > cur.offset) {
      throw bad(`blocks '${prev.name}' and '${cur.name}' overlap`, { field: 'blocks' });
    }
  }
  if (family === 'kfac' && !blocksTile(out)) {
    throw bad('K-FAC optimizers need blocks that cover all n entries of θ', { field: 'blocks' });
  }
  return out;
}

/** Copies theta0 into a new Float64Array after checking its length and finiteness. */
export function validateTheta0(theta0: ArrayLike<number>, n: number): Float64Array {
  if (theta0 === null || typeof theta0 !== 'object' || typeof theta0.length !== 'number') {
    throw new KalmanError('OPTIMIZER_LAYOUT', 'theta0 must be an array of numbers', { field: 'theta0' });
  }
  if (theta0.length !== n) {
    throw new KalmanError('OPTIMIZER_LAYOUT', `theta0 must have length n = ${n}, got ${theta0.length}`, { field: 'theta0' });
  }
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = Number(theta0[i]);
  assertFinite('theta0', out);
  return out;
}

function inputError(field: string, msg: string): KalmanError {
  return new KalmanError('OPTIMIZER_INPUT', `${field} ${msg}`, { field });
}

function isFloatArray(v: unknown): v is FloatArray {
  return v instanceof Float32Array || v instanceof Float64Array;
}

/** Checks that `sample[key]` is a float array of length `len` with finite values. */
function checkArray(s: SampleRecord, i: number, key: 'grad' | 'H' | 'h' | 'y' | 'gradPerturbed', len: number): FloatArray {
  const field = `batch[${i}].${key}`;
  const v = s[key];
  if (v === undefined) throw inputError(field, 'is required by this optimizer');
  if (!isFloatArray(v)) throw inputError(field, 'must be a Float32Array or Float64Array');
  if (v.length !== len) throw inputError(field, `must have length ${len}, got ${v.length}`);
  assertFinite(field, v);
  return v;
}

function checkLoss(s: SampleRecord, i: number, required: boolean): void {
  const field = `batch[${i}].loss`;
  if (s.loss === undefined) {
    if (required) throw inputError(field, 'is required by this optimizer');
    return;
  }
  if (typeof s.loss !== 'number') throw inputError(field, 'must be a number');
  if (!Number.isFinite(s.loss)) {
    throw new KalmanError('NON_FINITE_INPUT', `${field} is ${String(s.loss)}`, { field, value: String(s.loss) });
  }
}

/** Checks one sample's factors for every block of the layout; returns nothing, throws on a problem. */
function checkFactors(s: SampleRecord, i: number, layout: ParamLayout): void {
  const base = `batch[${i}].factors`;
  if (s.factors === undefined || s.factors === null || typeof s.factors !== 'object') {
    throw inputError(base, 'is required by this optimizer (per block {a, g})');
  }
  for (const b of layout.blocks) {
    const f = s.factors[b.name];
    const field = `${base}['${b.name}']`;
    if (f === undefined) throw inputError(field, 'is missing');
    if (!isFloatArray(f.a) || !isFloatArray(f.g)) throw inputError(field, 'must have Float32Array/Float64Array a and g');
    const t = f.a.length / b.cols;
    if (!Number.isInteger(t) || t < 1) throw inputError(`${field}.a`, `must have length T·cols (cols = ${b.cols}), got ${f.a.length}`);
    if (f.g.length !== t * b.rows) throw inputError(`${field}.g`, `must have length T·rows = ${t}·${b.rows}, got ${f.g.length}`);
    assertFinite(`${field}.a`, f.a);
    assertFinite(`${field}.g`, f.g);
    if (f.gFisher !== undefined) {
      if (!isFloatArray(f.gFisher) || f.gFisher.length !== f.g.length) {
        throw inputError(`${field}.gFisher`, `must be a float array of length T·rows = ${f.g.length}`);
      }
      assertFinite(`${field}.gFisher`, f.gFisher);
    }
  }
}

/** What a batch check found out: the observation dimension m (Kalman) or 0. */
export interface BatchInfo {
  m: number;
}

/**
 * Validates a whole batch against what the optimizer needs (see `Need`). `observation` is set for the
 * Kalman family. `gradFromFactors` lets `grad` be replaced by `factors` (first-order on a tiling
 * layout). Throws OPTIMIZER_INPUT (missing field, wrong length, empty batch) or NON_FINITE_INPUT.
 */
export function validateBatch(
  batch: readonly SampleRecord[],
  layout: ParamLayout,
  needs: readonly Need[],
  opts: { observation?: 'probs' | 'loss' | 'regression'; stateM?: number; gradFromFactors?: boolean; categorical?: boolean; offset?: number } = {},
): BatchInfo {
  if (!Array.isArray(batch) || batch.length === 0) throw inputError('batch', 'must be a non-empty array of samples');
  const n = layout.n;
  let m = 0;
  if (opts.observation === 'loss') m = 1;
  for (let i = 0; i < batch.length; i++) {
    const s = batch[i];
    const at = i + (opts.offset ?? 0);
    if (typeof s !== 'object' || s === null) throw inputError(`batch[${at}]`, 'must be an object');
    checkLoss(s, at, needs.includes('loss'));
    if (needs.includes('jacobian')) {
      const hv = s.h;
      if (!isFloatArray(hv) || hv.length < 1) throw inputError(`batch[${at}].h`, 'is required by this optimizer (a non-empty float array)');
      if (m === 0) m = hv.length;
      if (hv.length !== m) throw inputError(`batch[${at}].h`, `must have length m = ${m} like the rest of the batch, got ${hv.length}`);
      if (opts.stateM !== undefined && opts.stateM > 0 && m !== opts.stateM) {
        throw inputError(`batch[${at}].h`, `must have length m = ${opts.stateM} (fixed by the first step), got ${m}`);
      }
      checkArray(s, at, 'h', m);
      checkArray(s, at, 'y', m);
      checkArray(s, at, 'H', m * n);
      if (opts.categorical) {
        for (let c = 0; c < m; c++) {
          const v = hv[c];
          if (v < 0 || v > 1) throw inputError(`batch[${at}].h`, `must hold probabilities for categorical noise, got h[${c}] = ${v}`);
        }
      }
    }
    if (needs.includes('grad')) {
      if (s.grad === undefined && opts.gradFromFactors && s.factors !== undefined) checkFactors(s, at, layout);
      else checkArray(s, at, 'grad', n);
    } else if (s.grad !== undefined) {
      checkArray(s, at, 'grad', n);
    }
    if (needs.includes('factors')) checkFactors(s, at, layout);
    if (needs.includes('hvp')) checkArray(s, at, 'gradPerturbed', n);
  }
  return { m };
}

/** Adds `scale`·(the sample's gradient of θ from its factors, Σ_t g_t·a_tᵀ per block) into `out`. */
export function addFactorGradient(layout: ParamLayout, s: SampleRecord, scale: number, out: Float64Array): void {
  for (const b of layout.blocks) {
    const f = s.factors![b.name]!;
    const { rows, cols, offset } = b;
    const t = f.a.length / cols;
    for (let k = 0; k < t; k++) {
      for (let r = 0; r < rows; r++) {
        const gr = f.g[k * rows + r] * scale;
        if (gr === 0) continue;
        const o = offset + r * cols;
        const ao = k * cols;
        for (let c = 0; c < cols; c++) out[o + c] += gr * f.a[ao + c];
      }
    }
  }
}

/** The batch-mean gradient ḡ (float64): each sample's `grad`, or its factors when it has no `grad`. */
export function meanGradient(layout: ParamLayout, batch: readonly SampleRecord[]): Float64Array {
  const n = layout.n;
  const out = new Float64Array(n);
  const inv = 1 / batch.length;
  for (const s of batch) {
    if (s.grad !== undefined) {
      const g = s.grad;
      for (let i = 0; i < n; i++) out[i] += g[i] * inv;
    } else {
      addFactorGradient(layout, s, inv, out);
    }
  }
  return out;
}

/** The mean of the samples' `loss` fields, or undefined when none has one. */
export function meanLoss(batch: readonly SampleRecord[]): number | undefined {
  let sum = 0;
  let count = 0;
  for (const s of batch) {
    if (typeof s.loss === 'number') {
      sum += s.loss;
      count++;
    }
  }
  return count > 0 ? sum / count : undefined;
}

/** ‖a − b‖₂ in float64. */
export function distance(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    s += d * d;
  }
  return Math.sqrt(s);
}

/** The metrics every optimizer's step reports: the new step count, the batch size, the mean loss
 * where the samples gave one, and ‖θ_new − θ_old‖₂. */
export function baseMetrics(step: number, batchSize: number, loss: number | undefined, theta: Float64Array, before: Float64Array): StepMetrics {
  return { step, batchSize, ...(loss === undefined ? {} : { loss }), updateNorm: distance(theta, before) };
}

/** ‖a‖₂ in float64. */
export function norm(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s);
}

/** Throws NON_FINITE_STATE naming `field` when `a` holds a NaN or ±Infinity. */
export function assertFiniteResult(field: string, a: ArrayLike<number>, details: Record<string, unknown> = {}): void {
  const i = firstNonFinite(a);
  if (i >= 0) {
    throw new KalmanError('NON_FINITE_STATE', `step rejected: ${field}[${i}] became ${String(a[i])}`, { field, index: i, ...details });
  }
}
