/**
 * Errors of src/data. The module imports nothing of ours (like src/kalman), so it has its own small
 * class with the same `{code, message, details}` shape as the shared DomainError; src/server maps
 * the codes to HTTP the same way.
 */

/** A data or built-in-model problem with a stable machine-readable `code`. */
export class DataError extends Error {
  readonly code: string;
  readonly details?: Record<string, unknown>;
  constructor(code: string, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    if (details !== undefined) this.details = details;
  }
}

/** An npm data package (or one of its files) is not installed: `DATASET_MISSING`. */
export class DatasetMissingError extends DataError {
  constructor(pkg: string, message: string, details?: Record<string, unknown>) {
    super('DATASET_MISSING', message, { package: pkg, ...details });
  }
}

/**
 * A built-in model file (or its tokenizer) that is missing, truncated or altered: `MODEL_CHECKSUM`.
 * `actualSha256` / `actualSize` are null when the file is missing.
 */
export class ModelChecksumError extends DataError {
  constructor(details: {
    model: string;
    file: string;
    expectedSha256: string;
    actualSha256: string | null;
    expectedSize: number;
    actualSize: number | null;
  }) {
    const what =
      details.actualSha256 === null
        ? 'is missing'
        : details.actualSize !== details.expectedSize
          ? `has ${details.actualSize} bytes, expected ${details.expectedSize}`
          : `has sha256 ${details.actualSha256}, expected ${details.expectedSha256}`;
    super('MODEL_CHECKSUM', `built-in model '${details.model}': file ${details.file} ${what}`, details);
  }
}

/** models/manifest.json (or one of its entries) cannot be read or does not have the expected shape. */
export class ManifestError extends DataError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('MODEL_MANIFEST', message, details);
  }
}

/** A tokenizer file that is not a word-level tokenizer of the shape models/build.py writes. */
export class TokenizerFormatError extends DataError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('TOKENIZER_FORMAT', message, details);
  }
}
