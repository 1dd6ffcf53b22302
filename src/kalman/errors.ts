/**
 * The errors src/kalman throws. kalman imports nothing of ours, so this mirrors the shape of
 * src/errors.ts's DomainError (`code`, `message`, `details`) without importing it; src/server maps
 * these codes to HTTP like any other domain error.
 */

/** Every stable code a kalman function can throw. */
export const KALMAN_ERROR_CODES = [
  /** An optimizer config with an unknown type, an unknown field or a value out of its range. */
  'OPTIMIZER_CONFIG',
  /** A parameter layout (or theta0) that does not fit the optimizer. */
  'OPTIMIZER_LAYOUT',
  /** A batch with a missing field or a wrong length (the caller built the wrong graph). */
  'OPTIMIZER_INPUT',
  /** A state that does not belong to this optimizer, or a serialized state that does not parse. */
  'OPTIMIZER_STATE',
  /** A batch holding NaN or ±Infinity (a label, a target, a Jacobian, a gradient, a factor). */
  'NON_FINITE_INPUT',
  /** The innovation covariance S = H·diag(p)·Hᵀ + R was not positive definite. */
  'KALMAN_NOT_PD',
  /** The step produced a non-finite θ, p, R or optimizer slot; the step was rejected. */
  'NON_FINITE_STATE',
] as const;

/** A stable machine-readable error code of src/kalman. */
export type KalmanErrorCode = (typeof KALMAN_ERROR_CODES)[number];

/**
 * An error from src/kalman: a stable `code`, a message naming the offending field or sample, and
 * structured `details`. A step that throws leaves the caller's state untouched (steps never mutate).
 */
export class KalmanError extends Error {
  readonly code: KalmanErrorCode;
  readonly details?: Record<string, unknown>;
  constructor(code: KalmanErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'KalmanError';
    this.code = code;
    if (details !== undefined) this.details = details;
  }
}
