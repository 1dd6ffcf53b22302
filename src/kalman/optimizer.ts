/**
 * The one interface over every optimizer: `createOptimizer(config)` validates the config once and
 * returns an `Optimizer` whose `needs` tell the caller which per-sample quantities to compute, and
 * whose `init`/`step`/`serialize`/`deserialize` work on immutable states. The same operations exist
 * as free functions on states (a state carries its own config), which is what `Optimizer` wraps.
 */
import { validateLayout, validateTheta0 } from './batch.js';
import { needsOf, OPTIMIZER_FAMILY, validateOptimizerConfig } from './config.js';
import { KalmanError } from './errors.js';
import { initFirstOrder, stepFirstOrder } from './first-order.js';
import { initKfac, kfacHvpPoint, stepKfac } from './kfac.js';
import { initKalman, kalmanPredictiveVariance, stepKalman } from './loko.js';
import { createRng } from './rng.js';
import { deserializeState, serializeState } from './serialize.js';
import type {
  FloatArray,
  HvpPoint,
  Need,
  OptimizerConfig,
  OptimizerConfigInput,
  OptimizerFamily,
  OptimizerState,
  OptimizerType,
  ParamLayout,
  SampleRecord,
  SerializedState,
  StepResult,
} from './types.js';

/**
 * A fresh state for `config` (validated here if it is not already): θ = theta0 (copied to float64),
 * the PRNG seeded with `seed` (a non-negative safe integer), and the optimizer's slots (LoKO's p₀ is
 * drawn from that PRNG). Throws OPTIMIZER_CONFIG, OPTIMIZER_LAYOUT or NON_FINITE_INPUT.
 */
export function initState(
  config: OptimizerConfig | OptimizerConfigInput,
  layout: ParamLayout,
  theta0: ArrayLike<number>,
  seed: number,
): OptimizerState {
  const cfg = validateOptimizerConfig(config);
  const lay = validateLayout(layout, OPTIMIZER_FAMILY[cfg.type]);
  const theta = validateTheta0(theta0, lay.n);
  const rng = createRng(seed);
  switch (cfg.type) {
    case 'loko':
    case 'r-kalman':
      return initKalman(cfg, lay, theta, rng);
    case 'kfac':
    case 'ring':
    case 'reng':
      return initKfac(cfg, lay, theta, rng);
    case 'sgd':
    case 'adamw':
    case 'adagrad':
      return initFirstOrder(cfg, lay, theta, rng);
  }
}

/**
 * One optimizer step on a batch of per-sample records (what `needsOf(state.config)` lists). Returns
 * a new state and metrics; `state` is never mutated, so a rejected step leaves it as it was.
 * Kalman methods run B sequential per-sample updates with the batch's H (all taken at the starting
 * θ); K-FAC methods and first-order methods take one step on the batch mean.
 * Throws OPTIMIZER_INPUT, NON_FINITE_INPUT, KALMAN_NOT_PD or NON_FINITE_STATE.
 */
export function stepState(state: OptimizerState, batch: readonly SampleRecord[]): StepResult {
  switch (state.type) {
    case 'loko':
    case 'r-kalman':
      return stepKalman(state, batch);
    case 'kfac':
    case 'ring':
    case 'reng':
      return stepKfac(state, batch);
    case 'sgd':
    case 'adamw':
    case 'adagrad':
      return stepFirstOrder(state, batch);
  }
}

/**
 * The Kalman predictive variance diag(H·diag(p)·Hᵀ + R) (length m) for a prediction-only call, with
 * p after forgetting (the prior of the next observation). H is m×n row-major (the loss gradient for
 * the `loss` observation); `h` is required for `categorical` noise. Throws OPTIMIZER_STATE for a
 * non-Kalman state.
 */
export function predictiveVariance(state: OptimizerState, H: FloatArray, h?: FloatArray): Float64Array {
  if (state.type !== 'loko' && state.type !== 'r-kalman') {
    throw new KalmanError('OPTIMIZER_STATE', `predictive variance needs a Kalman optimizer (loko, r-kalman), not ${state.type}`, {
      type: state.type,
    });
  }
  return kalmanPredictiveVariance(state, H, h);
}

/**
 * For RENG: the perturbed θ + ε·v (v = ḡ/‖ḡ‖ from this batch's factors) at which the caller computes
 * each sample's `gradPerturbed` before calling `step` with the same batch. Throws OPTIMIZER_STATE for
 * other optimizers.
 */
export function hvpPoint(state: OptimizerState, batch: readonly SampleRecord[]): HvpPoint {
  if (state.type !== 'reng') {
    throw new KalmanError('OPTIMIZER_STATE', `hvpPoint is only for reng, not ${state.type}`, { type: state.type });
  }
  return kfacHvpPoint(state, batch);
}

/**
 * The state with new hyperparameters (e.g. a changed learning rate): same type required, slots kept.
 * Throws OPTIMIZER_CONFIG for an invalid config, OPTIMIZER_STATE for a different type or a change
 * the slots cannot follow (a Kalman observation model after data was seen, K-FAC's maxFactorDim).
 */
export function reconfigure(state: OptimizerState, config: OptimizerConfig | OptimizerConfigInput): OptimizerState {
  const cfg = validateOptimizerConfig(config);
  if (cfg.type !== state.type) {
    throw new KalmanError('OPTIMIZER_STATE', `cannot reconfigure a ${state.type} state as ${cfg.type}`, { type: state.type });
  }
  if ((cfg.type === 'loko' || cfg.type === 'r-kalman') && cfg.observation !== (state.config as { observation: string }).observation && (state as { m: number }).m > 0) {
    throw new KalmanError('OPTIMIZER_STATE', 'cannot change the observation model of a Kalman state that has already seen data', {
      field: 'observation',
    });
  }
  if ('maxFactorDim' in cfg && cfg.maxFactorDim !== (state.config as { maxFactorDim: number }).maxFactorDim) {
    throw new KalmanError('OPTIMIZER_STATE', 'cannot change maxFactorDim of a K-FAC state (it fixes the factor shapes)', {
      field: 'maxFactorDim',
    });
  }
  return { ...state, config: cfg } as OptimizerState;
}

/** An optimizer with a validated config; what src/lora's training step calls. */
export interface Optimizer {
  readonly type: OptimizerType;
  readonly family: OptimizerFamily;
  /** The validated config with every default filled in. */
  readonly config: Readonly<OptimizerConfig>;
  /** The per-sample quantities `step` needs (see `Need`); build the graph accordingly. */
  readonly needs: readonly Need[];
  /** A fresh state (see `initState`). */
  init(layout: ParamLayout, theta0: ArrayLike<number>, seed: number): OptimizerState;
  /** One step (see `stepState`); the state must have been made with this config (else OPTIMIZER_STATE). */
  step(state: OptimizerState, batch: readonly SampleRecord[]): StepResult;
  /** Tensors + metadata (see `serializeState`). */
  serialize(state: OptimizerState): SerializedState;
  /** Back from `serialize` (see `deserializeState`); the state must be of this type and config. */
  deserialize(serialized: SerializedState): OptimizerState;
  /** Kalman only: diag(H·diag(p)·Hᵀ + R) (see `predictiveVariance`). */
  predictiveVariance(state: OptimizerState, H: FloatArray, h?: FloatArray): Float64Array;
  /** RENG only: where to take the perturbed gradients (see `hvpPoint`). */
  hvpPoint(state: OptimizerState, batch: readonly SampleRecord[]): HvpPoint;
}

/**
 * Validates `config` (`{type, ...hyperparameters}`; defaults fill the rest, see OPTIMIZER_PARAMS)
 * and returns the optimizer. Throws KalmanError OPTIMIZER_CONFIG naming the bad field and its range.
 */
export function createOptimizer(config: OptimizerConfigInput | OptimizerConfig): Optimizer {
  const cfg = validateOptimizerConfig(config);
  const key = JSON.stringify(cfg);
  const check = (state: OptimizerState): void => {
    if (state === null || typeof state !== 'object' || state.type !== cfg.type) {
      throw new KalmanError('OPTIMIZER_STATE', `state is not a ${cfg.type} state`, { type: (state as { type?: unknown })?.type });
    }
    if (JSON.stringify(state.config) !== key) {
      throw new KalmanError('OPTIMIZER_STATE', `state was made with a different ${cfg.type} config; use reconfigure(state, config) to change hyperparameters`, {
        type: cfg.type,
      });
    }
  };
  return Object.freeze({
    type: cfg.type,
    family: OPTIMIZER_FAMILY[cfg.type],
    config: cfg,
    needs: Object.freeze(needsOf(cfg)),
    init: (layout: ParamLayout, theta0: ArrayLike<number>, seed: number) => initState(cfg, layout, theta0, seed),
    step: (state: OptimizerState, batch: readonly SampleRecord[]) => {
      check(state);
      return stepState(state, batch);
    },
    serialize: (state: OptimizerState) => {
      check(state);
      return serializeState(state);
    },
    deserialize: (serialized: SerializedState) => {
      const state = deserializeState(serialized);
      check(state);
      return state;
    },
    predictiveVariance: (state: OptimizerState, H: FloatArray, h?: FloatArray) => {
      check(state);
      return predictiveVariance(state, H, h);
    },
    hvpPoint: (state: OptimizerState, batch: readonly SampleRecord[]) => {
      check(state);
      return hvpPoint(state, batch);
    },
  });
}
