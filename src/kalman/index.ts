/** The public surface of src/kalman: optimizers as pure math on typed arrays (imports nothing of ours). */
export { KALMAN_ERROR_CODES, KalmanError, type KalmanErrorCode } from './errors.js';
export {
  formatRange,
  needsOf,
  OPTIMIZER_DEFAULTS,
  OPTIMIZER_FAMILY,
  OPTIMIZER_PARAMS,
  OPTIMIZER_TYPES,
  validateOptimizerConfig,
  type BooleanSpec,
  type EnumSpec,
  type IntegerSpec,
  type NumberSpec,
  type ParamSpec,
} from './config.js';
export {
  createOptimizer,
  hvpPoint,
  initState,
  predictiveVariance,
  reconfigure,
  stepState,
  type Optimizer,
} from './optimizer.js';
export { KalmanStepper } from './loko.js';
export { deserializeState, serializeState, STATE_FORMAT } from './serialize.js';
export {
  cholesky,
  choleskySolve,
  newtonSchulzInverse, woodburyWarmStart, matmulInto,
  type NewtonSchulzOptions,
  type NewtonSchulzResult,
} from './linalg.js';
export { createRng, Rng } from './rng.js';
export type * from './types.js';
