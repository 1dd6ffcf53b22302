/**
 * The registry of built-in base models: models/manifest.json and the files it names, verified by
 * size and sha256 before anything serves them. A bad file is reported (MODEL_CHECKSUM), never thrown,
 * so that the server can skip it and start with the rest.
 */

import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { DataError, ManifestError, ModelChecksumError } from './errors.js';
import { parseTokenizer, type Tokenizer } from './tokenizer.js';

/** A graph input or output as the manifest lists it; symbolic dims are strings ('batch', 'seq'). */
export interface ManifestTensor {
  name: string;
  dtype: string;
  shape: (number | string)[];
}

/** Accuracy of a model on a fixed slice. */
export interface ManifestMetric {
  accuracy: number | null;
  n: number;
  correct?: number;
  slice?: string;
  [key: string]: unknown;
}

/** One built-in model as described by models/manifest.json (fields beyond these are kept as they are). */
export interface ManifestModel {
  name: string;
  file: string;
  task: string;
  description?: string;
  inputs: ManifestTensor[];
  output: ManifestTensor;
  labels: string[];
  preprocessing: string;
  tokenizer: null | { file: string; sha256: string; size: number; vocabSize?: number; maxLength?: number };
  source: Record<string, unknown>;
  rebuild: string;
  opset?: number;
  opTypes?: string[];
  loraTargets?: string[];
  metrics: {
    heldout: ManifestMetric;
    shifted?: ManifestMetric;
    /** heldout accuracy minus shifted accuracy (fraction, not points). */
    drop?: number | null;
    [key: string]: unknown;
  };
  sha256: string;
  size: number;
  [key: string]: unknown;
}

/** models/manifest.json. */
export interface Manifest {
  version: number;
  models: ManifestModel[];
  [key: string]: unknown;
}

/** A built-in model whose files matched the manifest. */
export interface BuiltinModel {
  name: string;
  /** The manifest entry as written. */
  entry: ManifestModel;
  /** Absolute path of the ONNX file. */
  path: string;
  /** The verified ONNX bytes (read once; hand these to the runtime rather than re-reading `path`). */
  bytes: Uint8Array;
  /** The model's tokenizer, for text models. */
  tokenizer?: Tokenizer;
}

/** What {@link loadBuiltinModels} found. */
export interface BuiltinModels {
  /** Absolute path of the folder that was read. */
  dir: string;
  manifest: Manifest;
  /** Models whose files all matched, in manifest order. */
  models: BuiltinModel[];
  /** One error per model that was skipped: MODEL_CHECKSUM (missing, truncated or altered file), MODEL_MANIFEST or TOKENIZER_FORMAT. */
  problems: DataError[];
}

/** The repository's models/ folder (independent of the working directory). */
export const DEFAULT_MODELS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'models');

/** Reads and shape-checks `<dir>/manifest.json`; MODEL_MANIFEST when it is missing or malformed. */
export function readManifest(dir: string = DEFAULT_MODELS_DIR): Manifest {
  if (typeof dir !== 'string') throw new TypeError(`dir must be a string, got ${typeof dir}`);
  const path = join(resolve(dir), 'manifest.json');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ManifestError(`cannot read the built-in model manifest ${path}: ${(err as Error).message}`, { path });
  }
  let manifest: unknown;
  try {
    manifest = JSON.parse(text);
  } catch (err) {
    throw new ManifestError(`${path} is not JSON: ${(err as Error).message}`, { path });
  }
  const m = manifest as Partial<Manifest> | null;
  if (m === null || typeof m !== 'object' || !Array.isArray(m.models)) {
    throw new ManifestError(`${path} has no 'models' array`, { path });
  }
  return m as Manifest;
}

/** sha256 of bytes, lower-case hex. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Reads the manifest in `dir` (default: the repository's models/) and verifies every model's ONNX
 * file (and tokenizer file) against the manifest's size and sha256. Returns the verified models and,
 * separately, one problem per skipped model; throws only when the manifest itself is unusable
 * (MODEL_MANIFEST).
 */
export function loadBuiltinModels(dir: string = DEFAULT_MODELS_DIR): BuiltinModels {
  const manifest = readManifest(dir);
  const root = resolve(dir);
  const models: BuiltinModel[] = [];
  const problems: DataError[] = [];
  manifest.models.forEach((entry, i) => {
    try {
      models.push(verifyEntry(root, entry, i));
    } catch (err) {
      if (err instanceof DataError) problems.push(err);
      else throw err;
    }
  });
  return { dir: root, manifest, models, problems };
}

function verifyEntry(root: string, entry: ManifestModel, index: number): BuiltinModel {
  const e = entry as Partial<ManifestModel> | null;
  const where = `manifest entry ${index}`;
  if (e === null || typeof e !== 'object') throw new ManifestError(`${where} is not an object`, { index });
  const name = typeof e.name === 'string' && e.name !== '' ? e.name : null;
  if (name === null) throw new ManifestError(`${where} has no name`, { index });
  const bytes = verifiedFile(root, name, e.file, e.sha256, e.size);
  const model: BuiltinModel = { name, entry, path: join(root, e.file as string), bytes };
  if (e.tokenizer !== null && e.tokenizer !== undefined) {
    const t = e.tokenizer;
    const tokBytes = verifiedFile(root, name, t.file, t.sha256, t.size);
    model.tokenizer = parseTokenizer(Buffer.from(tokBytes).toString('utf8'), join(root, t.file));
  }
  return model;
}

/** The bytes of `file` under `root` if its size and sha256 match; MODEL_CHECKSUM otherwise. */
function verifiedFile(root: string, model: string, file: unknown, sha: unknown, size: unknown): Uint8Array {
  // The manifest names plain files next to it, nothing else: no folders, no way out of `root`.
  if (typeof file !== 'string' || file === '' || basename(file) !== file || file === '.' || file === '..') {
    throw new ManifestError(`built-in model '${model}': file must be a plain file name, got ${JSON.stringify(file)}`, {
      model,
      file,
    });
  }
  if (typeof sha !== 'string' || !/^[0-9a-f]{64}$/.test(sha) || typeof size !== 'number' || !Number.isInteger(size)) {
    throw new ManifestError(`built-in model '${model}': ${file} needs a sha256 (64 hex digits) and an integer size`, {
      model,
      file,
    });
  }
  const path = join(root, file);
  let bytes: Uint8Array;
  try {
    if (!statSync(path).isFile()) throw new Error('not a file');
    bytes = readFileSync(path);
  } catch {
    throw new ModelChecksumError({ model, file: path, expectedSha256: sha, actualSha256: null, expectedSize: size, actualSize: null });
  }
  const actual = sha256Hex(bytes);
  if (bytes.length !== size || actual !== sha) {
    throw new ModelChecksumError({
      model,
      file: path,
      expectedSha256: sha,
      actualSha256: actual,
      expectedSize: size,
      actualSize: bytes.length,
    });
  }
  return bytes;
}
