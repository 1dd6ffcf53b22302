/**
 * The domain error hierarchy shared by src/onnx, src/lora and src/server.
 * Every error a caller can act on carries a stable `code`; src/server maps codes to HTTP once.
 * (src/kalman stays free of our imports and throws its own errors with the same `code` shape.)
 */

/** Base class: a stable machine-readable `code`, a human message, optional structured details. */
export class DomainError extends Error {
  readonly code: string;
  readonly details?: Record<string, unknown>;
  constructor(code: string, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    if (details !== undefined) this.details = details;
  }
}

/** Bytes that are not an ONNX model, or a model whose structure is broken. */
export class ModelFormatError extends DomainError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('MODEL_FORMAT', message, details);
  }
}

/** An external-data reference that is missing or escapes the model's own folder. */
export class ExternalDataError extends DomainError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('MODEL_EXTERNAL_DATA', message, details);
  }
}

/** An op on the gradient path that we cannot differentiate. */
export class UnsupportedOpError extends DomainError {
  constructor(opType: string, nodeName: string, opset: number, reason?: string) {
    super(
      'ONNX_UNSUPPORTED_OP',
      `cannot differentiate ${opType} (node '${nodeName}', opset ${opset})${reason ? `: ${reason}` : ''}`,
      { opType, node: nodeName, opset },
    );
  }
}

/** A model we can read but not handle (no batch axis, unsupported dtype, ...). */
export class ModelUnsupportedError extends DomainError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('MODEL_UNSUPPORTED', message, details);
  }
}

/** LoRA target names or regex that match no targetable weight. */
export class TargetNotFoundError extends DomainError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('LORA_TARGET_NOT_FOUND', message, details);
  }
}

/** An output name the model does not have. */
export class OutputNotFoundError extends DomainError {
  constructor(output: string, available: readonly string[]) {
    super('MODEL_OUTPUT_NOT_FOUND', `'${output}' is not an output of the model (its outputs: ${available.map((o) => `'${o}'`).join(', ')})`, { field: 'output', output, available: [...available] });
  }
}

/** A LoRA rank that is not a positive integer. */
export class InvalidRankError extends DomainError {
  constructor(rank: unknown) {
    super('LORA_INVALID_RANK', `LoRA rank must be a positive integer, got ${String(rank)}`, { rank });
  }
}

/** Any other invalid LoRA / graph configuration value. */
export class InvalidConfigError extends DomainError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('INVALID_CONFIG', message, details);
  }
}

/** Inputs fed to a session that do not match the graph (names, dtypes, shapes, non-finite values). */
export class InvalidInputError extends DomainError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('INVALID_INPUT', message, details);
  }
}

/** ONNX Runtime failed to create a session or to run. */
export class RuntimeFailureError extends DomainError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('ORT_RUNTIME', message, details);
  }
}

/** A label that is not a valid class id or a non-finite target. */
export class InvalidLabelError extends DomainError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('INVALID_LABEL', message, details);
  }
}
