/**
 * The server's own domain errors and the one table that maps every stable error code (ours, src/errors.ts's,
 * src/kalman's, src/data's) to an HTTP status. src/server/error-handler.ts is its only reader.
 */
import { DomainError } from '../errors.js';

/** No key, or a key we do not know: 401 UNAUTHENTICATED. */
export class UnauthenticatedError extends DomainError {
  constructor(message = 'missing or invalid API key: send Authorization: Bearer <key>') {
    super('UNAUTHENTICATED', message);
  }
}

/** A known key without the right: 403 FORBIDDEN. */
export class ForbiddenError extends DomainError {
  constructor(message: string) {
    super('FORBIDDEN', message);
  }
}

/** A resource that does not exist or that the caller may not see (never tell which): 404. */
export class NotFoundError extends DomainError {
  constructor(kind: 'model' | 'adapter' | 'dataset' | 'job' | 'user' | 'key' | 'checkpoint', id: string) {
    super(`${kind.toUpperCase()}_NOT_FOUND`, `${kind} '${id}' not found`, { id });
  }
}

/** A request that conflicts with what is stored (a taken name, a model in use): 409. */
export class ConflictError extends DomainError {
  constructor(code: string, message: string, details?: Record<string, unknown>) {
    super(code, message, details);
  }
}

/** A body or upload over its configured limit: 413 PAYLOAD_TOO_LARGE. */
export class PayloadTooLargeError extends DomainError {
  constructor(limit: number, what = 'upload') {
    super('PAYLOAD_TOO_LARGE', `${what} exceeds the limit of ${limit} bytes`, { limit });
  }
}

/** A request that is well-formed JSON but wrong in a way the schema cannot say: 400. */
export class BadRequestError extends DomainError {
  constructor(code: string, message: string, details?: Record<string, unknown>) {
    super(code, message, details);
  }
}

/** The stored migrations and the database disagree (refused at start-up). */
export class MigrationError extends DomainError {
  constructor(code: 'MIGRATION_CHECKSUM' | 'MIGRATION_FAILED' | 'MIGRATION_UNKNOWN' | 'MIGRATION_ERROR', message: string, details?: Record<string, unknown>) {
    super(code, message, details);
  }
}

/** HTTP status of every code a handler may see. Codes not listed: the error's own 4xx `statusCode`, else 500. */
export const HTTP_STATUS: Readonly<Record<string, number>> = {
  // 400: the request itself is wrong
  VALIDATION_ERROR: 400,
  BAD_REQUEST: 400,
  INVALID_JSON: 400,
  INVALID_CONFIG: 400,
  INVALID_INPUT: 400,
  INVALID_LABEL: 400,
  LORA_INVALID_RANK: 400,
  OPTIMIZER_CONFIG: 400,
  OPTIMIZER_UNKNOWN_TYPE: 400,
  OPTIMIZER_INPUT: 400,
  NON_FINITE_INPUT: 400,
  MULTIPART_INVALID: 400,
  // 401 / 403
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  // 404
  NOT_FOUND: 404,
  ROUTE_NOT_FOUND: 404,
  MODEL_NOT_FOUND: 404,
  ADAPTER_NOT_FOUND: 404,
  DATASET_NOT_FOUND: 404,
  JOB_NOT_FOUND: 404,
  USER_NOT_FOUND: 404,
  KEY_NOT_FOUND: 404,
  CHECKPOINT_NOT_FOUND: 404,
  // 409
  CONFLICT: 409,
  STATE_CONFLICT: 409,
  NAME_TAKEN: 409,
  MODEL_EXISTS: 409,
  MODEL_IN_USE: 409,
  MODEL_BUILTIN: 409,
  // 413 / 415 / 429
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RATE_LIMITED: 429,
  // 422: a model, dataset or sample we cannot handle
  MODEL_FORMAT: 422,
  MODEL_EXTERNAL_DATA: 422,
  MODEL_UNSUPPORTED: 422,
  ONNX_UNSUPPORTED_OP: 422,
  LORA_TARGET_NOT_FOUND: 422,
  MODEL_OUTPUT_NOT_FOUND: 422,
  TOKENIZER_FORMAT: 422,
  KALMAN_NOT_PD: 422,
  NON_FINITE_STATE: 422,
  DATASET_INVALID: 422,
  DATASET_MODEL_MISMATCH: 422,
  DATASET_TASK_MISMATCH: 422,
  DATASET_OUTPUT_MISMATCH: 422,
  // 500: ours to fix; the client sees no details
  ORT_RUNTIME: 500,
  OPTIMIZER_LAYOUT: 500,
  OPTIMIZER_STATE: 500,
  MODEL_CHECKSUM: 500,
  MODEL_MANIFEST: 500,
  DATASET_MISSING: 500,
  INTERNAL: 500,
};
