/** Shared test helpers for test/kalman: seeded data, state byte snapshots, error assertions. */
import { expect } from 'vitest';
import {
  createRng,
  KalmanError,
  OPTIMIZER_TYPES,
  serializeState,
  type OptimizerConfigInput,
  type OptimizerState,
  type ParamLayout,
  type Rng,
  type SampleRecord,
} from '../../src/kalman/index.js';

/** A seeded source of test data (uses the module's own PRNG; the data only needs to be fixed). */
export class TestRandom {
  private readonly rng: Rng;
  constructor(seed: number) {
    this.rng = createRng(seed);
  }
  uniform(lo = 0, hi = 1): number {
    return lo + (hi - lo) * this.rng.uniform();
  }
  normal(): number {
    const u = 1 - this.rng.uniform();
    const v = this.rng.uniform();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  f32(len: number, scale = 1): Float32Array {
    const a = new Float32Array(len);
    for (let i = 0; i < len; i++) a[i] = this.normal() * scale;
    return a;
  }
  f64(len: number, scale = 1): Float64Array {
    const a = new Float64Array(len);
    for (let i = 0; i < len; i++) a[i] = this.normal() * scale;
    return a;
  }
  /** A probability vector of length m. */
  probs(m: number): Float32Array {
    const z = this.f64(m);
    let s = 0;
    for (let i = 0; i < m; i++) s += (z[i] = Math.exp(z[i]));
    const out = new Float32Array(m);
    for (let i = 0; i < m; i++) out[i] = z[i] / s;
    return out;
  }
}

/** Every tensor's raw bytes and the meta of a state, for bit-for-bit comparisons. */
export function snapshot(state: OptimizerState): Record<string, string> {
  const s = serializeState(state);
  const out: Record<string, string> = { meta: JSON.stringify(s.meta) };
  for (const [name, t] of Object.entries(s.tensors)) {
    out[name] = `${t.dtype}[${t.shape.join(',')}]:` + Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('hex');
  }
  return out;
}

/** Raw bytes of every typed array a state holds, read directly (not through serialize). */
export function rawBytes(state: OptimizerState): string {
  const parts: string[] = [];
  const visit = (v: unknown, path: string): void => {
    if (ArrayBuffer.isView(v)) {
      parts.push(`${path}=${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}`);
    } else if (Array.isArray(v)) {
      v.forEach((x, i) => visit(x, `${path}[${i}]`));
    } else if (v !== null && typeof v === 'object') {
      for (const k of Object.keys(v).sort()) visit((v as Record<string, unknown>)[k], `${path}.${k}`);
    } else {
      parts.push(`${path}=${String(v)}`);
    }
  };
  visit(state, 'state');
  return parts.join('\n');
}

/** Runs `fn`, expecting a KalmanError with `code`; returns it for further checks. */
export function expectKalmanError(fn: () => unknown, code: string): KalmanError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected a KalmanError ${code}`).toBeInstanceOf(KalmanError);
  expect((caught as KalmanError).code).toBe(code);
  return caught as KalmanError;
}

/** max_i |a_i − b_i| / max(1, |b_i|). */
export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let e = 0;
  for (let i = 0; i < a.length; i++) e = Math.max(e, Math.abs(a[i]! - b[i]!) / Math.max(1, Math.abs(b[i]!)));
  return e;
}

/** Two LoRA-like blocks: fc1.lora_A [4, 6] and fc1.lora_B [5, 4]. */
export const LAYOUT: ParamLayout = {
  n: 4 * 6 + 5 * 4,
  blocks: [
    { name: 'fc1.lora_A', rows: 4, cols: 6, offset: 0 },
    { name: 'fc1.lora_B', rows: 5, cols: 4, offset: 24 },
  ],
};

/** A batch with every field any optimizer may need (m = 3 classes, T = 2 tokens). */
export function fullBatch(rnd: TestRandom, size: number, m = 3): SampleRecord[] {
  return Array.from({ length: size }, () => {
    const y = new Float32Array(m);
    y[Math.floor(rnd.uniform(0, m))] = 1;
    const factors: NonNullable<SampleRecord['factors']> = {};
    for (const b of LAYOUT.blocks) factors[b.name] = { a: rnd.f32(2 * b.cols), g: rnd.f32(2 * b.rows, 0.1) };
    return {
      loss: rnd.uniform(0.1, 2),
      grad: rnd.f32(LAYOUT.n, 0.1),
      H: rnd.f32(m * LAYOUT.n, 0.3),
      h: rnd.probs(m),
      y,
      factors,
      gradPerturbed: rnd.f32(LAYOUT.n, 0.1),
    };
  });
}

/** One config per type, plus the other Kalman observation and noise models. */
export const CONFIGS: OptimizerConfigInput[] = [
  ...OPTIMIZER_TYPES.map((type) => ({ type }) as OptimizerConfigInput),
  { type: 'loko', observation: 'loss', forgetting: 0.99, processNoise: 1e-4 },
  { type: 'loko', observation: 'regression', beta: 0.9 },
  { type: 'r-kalman', observation: 'loss', rho: 0.1 },
  { type: 'ring', rho: 0.5, inverseEvery: 2 },
  { type: 'kfac', maxFactorDim: 4 }, // fc1.lora_A's A (6) and fc1.lora_B's G (5) kept diagonal
  { type: 'sgd', nesterov: true, weightDecay: 0.01 },
];

