/**
 * Optimizer state ⇄ named tensors + flat metadata, safetensors-ready (src/lora writes the file).
 * Tensors: `theta` [n], `rng` [4] (int32 bits of the uint32 PRNG words), and per family `p` [n] and
 * `R` [m, m]; `kfac.A.<block>` [cols, cols], `kfac.G.<block>` [rows, rows], `kfac.Ainv.<block>`,
 * `kfac.Ginv.<block>` (shape [d] for a factor kept diagonal, d > maxFactorDim); `velocity`;
 * `exp_avg`, `exp_avg_sq`; `sum` (all float64). Meta: format,
 * type, config and layout (JSON), step, samples, m. The round trip is bit for bit (typed-array
 * copies, JSON numbers print shortest-round-trip) and a deserialized state continues identically.
 */
import { firstNonFinite, validateLayout } from './batch.js';
import { OPTIMIZER_FAMILY, validateOptimizerConfig } from './config.js';
import { KalmanError } from './errors.js';
import type {
  KfacBlockState,
  OptimizerConfig,
  OptimizerState,
  ParamLayout,
  SerializedState,
  SerializedTensor,
} from './types.js';

/** The `meta.format` tag of a serialized optimizer state. */
export const STATE_FORMAT = 'onnx-lora-kalman/optimizer-state@1';

/** [d, d] for a full Kronecker factor, [d] for one kept diagonal (d > maxFactorDim). */
function factorShape(d: number, maxFactorDim: number): number[] {
  return d > maxFactorDim ? [d] : [d, d];
}

function f64(data: Float64Array, shape: number[]): SerializedTensor {
  return { dtype: 'float64', shape, data: data.slice() };
}

/** Serializes any optimizer state to tensors (copies; the state is not shared) and metadata. */
export function serializeState(state: OptimizerState): SerializedState {
  const n = state.layout.n;
  const rng = new Int32Array(4);
  for (let i = 0; i < 4; i++) rng[i] = state.rng[i] | 0;
  const tensors: Record<string, SerializedTensor> = {
    theta: f64(state.theta, [n]),
    rng: { dtype: 'int32', shape: [4], data: rng },
  };
  const meta: SerializedState['meta'] = {
    format: STATE_FORMAT,
    type: state.type,
    config: JSON.stringify(state.config),
    layout: JSON.stringify(state.layout),
    step: state.step,
    samples: state.samples,
  };
  switch (state.type) {
    case 'loko':
    case 'r-kalman':
      tensors['p'] = f64(state.p, [n]);
      tensors['R'] = f64(state.R, [state.m, state.m]);
      meta['m'] = state.m;
      break;
    case 'kfac':
    case 'ring':
    case 'reng':
      state.layout.blocks.forEach((b, k) => {
        const s = state.blocks[k]!;
        const a = factorShape(b.cols, state.config.maxFactorDim);
        const g = factorShape(b.rows, state.config.maxFactorDim);
        tensors[`kfac.A.${b.name}`] = f64(s.A, a);
        tensors[`kfac.G.${b.name}`] = f64(s.G, g);
        tensors[`kfac.Ainv.${b.name}`] = f64(s.Ainv, a);
        tensors[`kfac.Ginv.${b.name}`] = f64(s.Ginv, g);
      });
      break;
    case 'sgd':
      tensors['velocity'] = f64(state.velocity, [n]);
      break;
    case 'adamw':
      tensors['exp_avg'] = f64(state.expAvg, [n]);
      tensors['exp_avg_sq'] = f64(state.expAvgSq, [n]);
      break;
    case 'adagrad':
      tensors['sum'] = f64(state.sum, [n]);
      break;
  }
  return { tensors, meta };
}

function stateError(msg: string, details?: Record<string, unknown>): KalmanError {
  return new KalmanError('OPTIMIZER_STATE', `serialized state: ${msg}`, details);
}

function metaString(meta: SerializedState['meta'], key: string): string {
  const v = meta[key];
  if (typeof v !== 'string') throw stateError(`meta.${key} must be a string`, { field: `meta.${key}` });
  return v;
}

function metaInt(meta: SerializedState['meta'], key: string): number {
  const raw = meta[key];
  const v = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw stateError(`meta.${key} must be a non-negative integer, got ${String(raw)}`, { field: `meta.${key}` });
  }
  return v;
}

function tensor(s: SerializedState, name: string, dtype: 'float64' | 'int32', shape: number[]): SerializedTensor['data'] {
  const t = s.tensors[name];
  if (t === undefined) throw stateError(`tensor '${name}' is missing`, { field: name });
  const size = shape.reduce((a, b) => a * b, 1);
  if (t.dtype !== dtype || t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]) || t.data.length !== size) {
    throw stateError(`tensor '${name}' must be ${dtype} [${shape.join(', ')}], got ${t.dtype} [${t.shape.join(', ')}] with ${t.data.length} values`, {
      field: name,
    });
  }
  const ok = dtype === 'float64' ? t.data instanceof Float64Array : t.data instanceof Int32Array;
  if (!ok) throw stateError(`tensor '${name}' data must be a ${dtype === 'float64' ? 'Float64Array' : 'Int32Array'}`, { field: name });
  return t.data.slice();
}

function f64Tensor(s: SerializedState, name: string, shape: number[]): Float64Array {
  const data = tensor(s, name, 'float64', shape) as Float64Array;
  const bad = firstNonFinite(data);
  if (bad >= 0) throw stateError(`tensor '${name}' holds ${String(data[bad])} at ${bad}`, { field: name, index: bad });
  return data;
}

function parseJson(meta: SerializedState['meta'], key: string): unknown {
  try {
    return JSON.parse(metaString(meta, key));
  } catch (err) {
    if (err instanceof KalmanError) throw err;
    throw stateError(`meta.${key} is not valid JSON`, { field: `meta.${key}` });
  }
}

/**
 * Rebuilds a state from `serializeState`'s output (meta values may also be the strings a
 * safetensors `__metadata__` round trip leaves). The config is re-validated. Throws OPTIMIZER_STATE
 * for a wrong format, a missing or misshapen tensor, or a config whose type disagrees with meta.type.
 */
export function deserializeState(s: SerializedState): OptimizerState {
  if (typeof s !== 'object' || s === null || typeof s.tensors !== 'object' || typeof s.meta !== 'object') {
    throw stateError('must be {tensors, meta}');
  }
  const { meta } = s;
  if (meta['format'] !== STATE_FORMAT) throw stateError(`meta.format must be '${STATE_FORMAT}', got ${String(meta['format'])}`, { field: 'meta.format' });
  const type = metaString(meta, 'type');
  let config: OptimizerConfig;
  try {
    config = validateOptimizerConfig(parseJson(meta, 'config'));
  } catch (err) {
    if (err instanceof KalmanError && err.code === 'OPTIMIZER_CONFIG') throw stateError(`meta.config: ${err.message}`, { field: 'meta.config' });
    throw err;
  }
  if (config.type !== type) throw stateError(`meta.type '${type}' disagrees with config type '${config.type}'`, { field: 'meta.type' });
  let layout: ParamLayout;
  try {
    layout = validateLayout(parseJson(meta, 'layout'), OPTIMIZER_FAMILY[config.type]);
  } catch (err) {
    if (err instanceof KalmanError && err.code === 'OPTIMIZER_LAYOUT') throw stateError(`meta.layout: ${err.message}`, { field: 'meta.layout' });
    throw err;
  }
  const n = layout.n;
  const rngBits = tensor(s, 'rng', 'int32', [4]);
  const rng = new Uint32Array(4);
  for (let i = 0; i < 4; i++) rng[i] = rngBits[i] >>> 0;
  if ((rng[0] | rng[1] | rng[2] | rng[3]) === 0) throw stateError('rng state must not be all zero', { field: 'rng' });
  const base = {
    layout,
    step: metaInt(meta, 'step'),
    samples: metaInt(meta, 'samples'),
    theta: f64Tensor(s, 'theta', [n]),
    rng,
  };
  switch (config.type) {
    case 'loko':
    case 'r-kalman': {
      const m = metaInt(meta, 'm');
      return { ...base, type: config.type, config, p: f64Tensor(s, 'p', [n]), m, R: f64Tensor(s, 'R', [m, m]) };
    }
    case 'kfac':
    case 'ring':
    case 'reng': {
      const blocks: KfacBlockState[] = layout.blocks.map((b) => {
        const a = factorShape(b.cols, config.maxFactorDim);
        const g = factorShape(b.rows, config.maxFactorDim);
        return {
          A: f64Tensor(s, `kfac.A.${b.name}`, a),
          G: f64Tensor(s, `kfac.G.${b.name}`, g),
          Ainv: f64Tensor(s, `kfac.Ainv.${b.name}`, a),
          Ginv: f64Tensor(s, `kfac.Ginv.${b.name}`, g),
        };
      });
      return { ...base, type: config.type, config, blocks };
    }
    case 'sgd':
      return { ...base, type: 'sgd', config, velocity: f64Tensor(s, 'velocity', [n]) };
    case 'adamw':
      return { ...base, type: 'adamw', config, expAvg: f64Tensor(s, 'exp_avg', [n]), expAvgSq: f64Tensor(s, 'exp_avg_sq', [n]) };
    case 'adagrad':
      return { ...base, type: 'adagrad', config, sum: f64Tensor(s, 'sum', [n]) };
  }
}
