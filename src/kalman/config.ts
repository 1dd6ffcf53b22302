/**
 * Optimizer configs as data: every hyperparameter of every optimizer with its default, its valid
 * range and a one-line description (src/server turns these tables into API validation and docs),
 * and `validateOptimizerConfig`, which fills defaults over the caller's fields and rejects unknown
 * fields and out-of-range values with a `OPTIMIZER_CONFIG` error naming the field and the range.
 */
import { KalmanError } from './errors.js';
import type { ConfigOf, Need, OptimizerConfig, OptimizerFamily, OptimizerType } from './types.js';

/** A real-valued hyperparameter in [min, max] (an end is open where its *Exclusive flag is set). */
export interface NumberSpec {
  kind: 'number';
  default: number;
  min: number;
  max: number;
  minExclusive: boolean;
  maxExclusive: boolean;
  description: string;
}

/** An integer hyperparameter in [min, max]. */
export interface IntegerSpec {
  kind: 'integer';
  default: number;
  min: number;
  max: number;
  description: string;
}

/** A hyperparameter that takes one of a few strings. */
export interface EnumSpec {
  kind: 'enum';
  default: string;
  values: readonly string[];
  description: string;
}

/** A boolean hyperparameter. */
export interface BooleanSpec {
  kind: 'boolean';
  default: boolean;
  description: string;
}

/** The default, range and description of one hyperparameter. */
export type ParamSpec = NumberSpec | IntegerSpec | EnumSpec | BooleanSpec;

function num(def: number, lo: string, hi: string, description: string): NumberSpec {
  // lo is '[0' or '(0', hi is '1]' or '1)': the interval as written in the docs.
  return {
    kind: 'number',
    default: def,
    min: Number(lo.slice(1)),
    max: Number(hi.slice(0, -1)),
    minExclusive: lo.startsWith('('),
    maxExclusive: hi.endsWith(')'),
    description,
  };
}

function int(def: number, min: number, max: number, description: string): IntegerSpec {
  return { kind: 'integer', default: def, min, max, description };
}

/** Every optimizer type, in documentation order. */
export const OPTIMIZER_TYPES = ['loko', 'r-kalman', 'ring', 'reng', 'kfac', 'sgd', 'adamw', 'adagrad'] as const satisfies readonly OptimizerType[];

/** The family of each optimizer type. */
export const OPTIMIZER_FAMILY: Readonly<Record<OptimizerType, OptimizerFamily>> = {
  loko: 'kalman',
  'r-kalman': 'kalman',
  kfac: 'kfac',
  ring: 'kfac',
  reng: 'kfac',
  sgd: 'first-order',
  adamw: 'first-order',
  adagrad: 'first-order',
};

type Specs<T extends OptimizerType> = { readonly [K in Exclude<keyof ConfigOf<T>, 'type'>]: ParamSpec };

const KALMAN_PARAMS = {
  observation: {
    kind: 'enum',
    // Defaults chosen by bench/online.ts --sweep (README "Online adaptation"): the `loss` observation
    // with a fixed R beat `probs` on the digits streams and costs m = 1 instead of m = classes.
    default: 'loss',
    values: ['probs', 'loss', 'regression'],
    description:
      'observation model: probs (h = softmax, y = one-hot, m = classes), loss (h = per-sample loss, y = 0, H = its gradient, m = 1), regression (h = outputs, y = targets)',
  },
  noise: {
    kind: 'enum',
    default: 'auto',
    values: ['auto', 'ema', 'categorical'],
    description:
      'observation-noise estimator: ema (R ← β·R + (1−β)(ε·εᵀ + H·diag(p)·Hᵀ)), categorical (probs only: R = diag(h) − h·hᵀ + r0·I), auto = categorical for probs, else ema',
  },
  p0Low: num(0.03, '(0', '1e6]', 'lower end of the uniform draw of the initial covariance diagonal p0'),
  p0High: num(0.3, '(0', '1e6]', 'upper end of the uniform draw of p0 (≥ p0Low)'),
  r0: num(0.1, '(0', '1e6]', 'initial observation noise R0 = r0·I; also the ridge of the categorical R'),
  beta: num(1, '[0', '1]', 'EMA factor of the ema noise estimate (1 keeps R = R0)'),
  forgetting: num(1, '(0', '1]', 'forgetting factor λ: p ← p/λ before each sample'),
  processNoise: num(0, '[0', '1e3]', 'additive process noise q: p ← p/λ + q before each sample'),
  pFloor: num(1e-10, '(0', '1]', 'floor of p after each update (keeps the covariance positive)'),
  rMin: num(1e-6, '[0', '1e3]', 'each ema update adds (1−β)·rMin·I, so R stays ⪰ min(r0, rMin)·I'),
} as const satisfies Specs<'loko'>;

const RHO = num(0.01, '[0', '1e6]', 'weight ρ of the gradient regulariser (ρ/2)‖∇ℓ‖² (0 turns it off)');
/** R-Kalman's ρ enters as extra precision ρ‖g‖² per sample: the online benchmark's sweep picked 1e-4. */
const RKALMAN_RHO = num(1e-4, '[0', '1e6]', 'weight ρ of the gradient regulariser: p ← 1/(1/p + ρ‖g‖²) after each update (0 turns it off)');

const KFAC_PARAMS = {
  lr: num(0.01, '(0', '10]', 'step size of the preconditioned update'),
  damping: num(1e-3, '(0', '1e3]', 'Tikhonov damping λ0 of the Kronecker factors (split between them by π)'),
  factorDecay: num(0.95, '[0', '1)', 'EMA decay of the Kronecker factors (the first step takes the batch factors)'),
  inverseEvery: int(1, 1, 1_000_000, 'recompute the Newton–Schulz factor inverses every this many steps'),
  nsMaxIter: int(50, 1, 1000, 'most Newton–Schulz iterations per factor inverse'),
  nsTol: num(1e-6, '(0', '1)', 'Newton–Schulz stopping tolerance on ‖I − M·X‖_F'),
  maxFactorDim: int(
    512,
    1,
    100_000,
    'a Kronecker factor of larger dimension (cols of A, rows of G) is kept as its diagonal and inverted elementwise (Newton–Schulz costs d³ per iteration)',
  ),
} as const satisfies Specs<'kfac'>;

const LR = (def: number) => num(def, '(0', '10]', 'learning rate');

/**
 * Every hyperparameter of every optimizer type: default, valid range, description. Ranges are
 * intervals: `min`/`max` with `minExclusive`/`maxExclusive` (use `formatRange` to print one).
 */
export const OPTIMIZER_PARAMS: { readonly [T in OptimizerType]: Specs<T> } = {
  loko: KALMAN_PARAMS,
  'r-kalman': { ...KALMAN_PARAMS, rho: RKALMAN_RHO },
  kfac: KFAC_PARAMS,
  ring: { ...KFAC_PARAMS, rho: RHO },
  reng: {
    ...KFAC_PARAMS,
    rho: RHO,
    hvpEps: num(1e-3, '(0', '1]', 'finite-difference step ε of the Hessian-vector product along ḡ/‖ḡ‖'),
  },
  sgd: {
    // bench/online's pick for the MLP and mail streams; 1e-2 (with momentum 0.9) diverged on the
    // built-in digits stream (test/lora/stream-stability.test.ts).
    lr: LR(3e-3),
    momentum: num(0.9, '[0', '1)', 'momentum μ'),
    nesterov: { kind: 'boolean', default: false, description: 'Nesterov momentum' },
    weightDecay: num(0, '[0', '1]', 'L2 weight decay added to the gradient'),
  },
  adamw: {
    lr: LR(1e-3),
    beta1: num(0.9, '[0', '1)', 'first-moment decay β1'),
    beta2: num(0.999, '[0', '1)', 'second-moment decay β2'),
    eps: num(1e-8, '(0', '1]', 'ε added to the square root of the second moment'),
    weightDecay: num(0.01, '[0', '1]', 'decoupled weight decay: θ ← θ·(1 − lr·weightDecay)'),
  },
  adagrad: {
    lr: LR(0.01),
    eps: num(1e-10, '(0', '1]', 'ε added to the square root of the accumulator'),
    initialAccumulator: num(0, '[0', '1e6]', 'initial value of the accumulator Σg²'),
    lrDecay: num(0, '[0', '1e3]', 'learning-rate decay: lr/(1 + (t−1)·lrDecay)'),
    weightDecay: num(0, '[0', '1]', 'L2 weight decay added to the gradient'),
  },
};

/** The interval of a numeric spec as text, e.g. `(0, 1]`; the values of an enum, e.g. `probs | loss`. */
export function formatRange(spec: ParamSpec): string {
  switch (spec.kind) {
    case 'number':
      return `${spec.minExclusive ? '(' : '['}${spec.min}, ${spec.max}${spec.maxExclusive ? ')' : ']'}`;
    case 'integer':
      return `integers in [${spec.min}, ${spec.max}]`;
    case 'enum':
      return spec.values.join(' | ');
    case 'boolean':
      return 'true | false';
  }
}

function resolveNoise<C extends { observation: string; noise: string }>(c: C): C {
  return c.noise === 'auto' ? { ...c, noise: c.observation === 'probs' ? 'categorical' : 'ema' } : c;
}

function defaultsOf<T extends OptimizerType>(type: T): ConfigOf<T> {
  const out: Record<string, unknown> = { type };
  for (const [k, spec] of Object.entries(OPTIMIZER_PARAMS[type] as Record<string, ParamSpec>)) out[k] = spec.default;
  return (OPTIMIZER_FAMILY[type] === 'kalman' ? resolveNoise(out as never) : out) as unknown as ConfigOf<T>;
}

/** The full default config of each optimizer type (`noise: auto` shown resolved). */
export const OPTIMIZER_DEFAULTS: { readonly [T in OptimizerType]: Readonly<ConfigOf<T>> } = {
  loko: defaultsOf('loko'),
  'r-kalman': defaultsOf('r-kalman'),
  kfac: defaultsOf('kfac'),
  ring: defaultsOf('ring'),
  reng: defaultsOf('reng'),
  sgd: defaultsOf('sgd'),
  adamw: defaultsOf('adamw'),
  adagrad: defaultsOf('adagrad'),
};

function configError(field: string, message: string, details: Record<string, unknown> = {}): KalmanError {
  return new KalmanError('OPTIMIZER_CONFIG', `optimizer.${field} ${message}`, { field, ...details });
}

function show(v: unknown): string {
  return typeof v === 'string' ? `'${v}'` : typeof v === 'number' ? String(v) : JSON.stringify(v) ?? String(v);
}

function checkValue(field: string, spec: ParamSpec, v: unknown): void {
  const range = formatRange(spec);
  switch (spec.kind) {
    case 'number':
    case 'integer': {
      const ok =
        typeof v === 'number' &&
        Number.isFinite(v) &&
        (spec.kind === 'number' || Number.isInteger(v)) &&
        (spec.kind === 'number' && spec.minExclusive ? v > spec.min : v >= spec.min) &&
        (spec.kind === 'number' && spec.maxExclusive ? v < spec.max : v <= spec.max);
      if (!ok) {
        const what = spec.kind === 'number' ? `a number in ${range}` : `an integer in [${spec.min}, ${spec.max}]`;
        throw configError(field, `must be ${what}, got ${show(v)}`, { value: v, range, min: spec.min, max: spec.max });
      }
      return;
    }
    case 'enum':
      if (typeof v !== 'string' || !spec.values.includes(v)) {
        throw configError(field, `must be one of ${range}, got ${show(v)}`, { value: v, allowed: spec.values });
      }
      return;
    case 'boolean':
      if (typeof v !== 'boolean') throw configError(field, `must be true or false, got ${show(v)}`, { value: v });
      return;
  }
}

/**
 * Validates a caller's optimizer config (`{type, ...hyperparameters}`, e.g. parsed JSON) and returns
 * it with every default filled in (`noise: auto` resolved). Throws KalmanError `OPTIMIZER_CONFIG`
 * naming the field (`details.field`) and its allowed range for an unknown type, an unknown field,
 * a value of the wrong kind or out of range, `p0Low > p0High`, or `categorical` noise without `probs`.
 */
export function validateOptimizerConfig(input: unknown): OptimizerConfig {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new KalmanError('OPTIMIZER_CONFIG', `optimizer config must be an object {type, ...hyperparameters}, got ${show(input)}`, {
      field: '',
    });
  }
  const obj = input as Record<string, unknown>;
  const type = obj['type'];
  if (typeof type !== 'string' || !(OPTIMIZER_TYPES as readonly string[]).includes(type)) {
    throw configError('type', `must be one of ${OPTIMIZER_TYPES.join(' | ')}, got ${show(type)}`, {
      value: type,
      allowed: OPTIMIZER_TYPES,
    });
  }
  const specs = OPTIMIZER_PARAMS[type as OptimizerType] as Record<string, ParamSpec>;
  for (const key of Object.keys(obj)) {
    if (key !== 'type' && !Object.hasOwn(specs, key)) {
      throw configError(key, `is not a hyperparameter of ${type}; allowed: ${Object.keys(specs).join(', ')}`, {
        allowed: Object.keys(specs),
      });
    }
  }
  const out: Record<string, unknown> = { type };
  // Categorical noise is R from the class probabilities, so asking for it without naming an
  // observation means the `probs` observation (the default observation, `loss`, has no classes).
  const implied: Record<string, unknown> = OPTIMIZER_FAMILY[type as OptimizerType] === 'kalman' && obj['noise'] === 'categorical' && obj['observation'] === undefined ? { observation: 'probs' } : {};
  for (const [key, spec] of Object.entries(specs)) {
    const v = obj[key] === undefined ? (implied[key] ?? spec.default) : obj[key];
    checkValue(key, spec, v);
    out[key] = v;
  }
  if (OPTIMIZER_FAMILY[type as OptimizerType] === 'kalman') {
    if ((out['p0Low'] as number) > (out['p0High'] as number)) {
      throw configError('p0High', `must be ≥ p0Low (${String(out['p0Low'])}), got ${String(out['p0High'])}`, {
        value: out['p0High'],
        min: out['p0Low'],
      });
    }
    if (out['noise'] === 'categorical' && out['observation'] !== 'probs') {
      throw configError('noise', `categorical needs observation 'probs', got observation '${String(out['observation'])}'`, {
        value: 'categorical',
        observation: out['observation'],
      });
    }
    return resolveNoise(out as never) as OptimizerConfig;
  }
  return out as unknown as OptimizerConfig;
}

/**
 * The per-sample quantities `step` needs for this config (see `Need`). Kalman: `jacobian` (probs,
 * regression) or `loss` + `grad` (loss observation), plus `grad` for R-Kalman with ρ > 0;
 * K-FAC/RING: `factors`; RENG: `factors` and, with ρ > 0, `hvp`; first-order: `grad`.
 */
export function needsOf(config: OptimizerConfig): Need[] {
  switch (config.type) {
    case 'loko':
    case 'r-kalman': {
      const needs: Need[] = config.observation === 'loss' ? ['loss', 'grad'] : ['jacobian'];
      if (config.type === 'r-kalman' && config.rho > 0 && !needs.includes('grad')) needs.push('grad');
      return needs;
    }
    case 'kfac':
    case 'ring':
      return ['factors'];
    case 'reng':
      return config.rho > 0 ? ['factors', 'hvp'] : ['factors'];
    case 'sgd':
    case 'adamw':
    case 'adagrad':
      return ['grad'];
  }
}
