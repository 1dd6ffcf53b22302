/**
 * Request JSON → model feeds and labels, checked against the model's input signature (names, dtypes,
 * ranks, fixed dims) before anything runs. Used by the online routes and by jobs/datasets.
 *
 * An input value is one of
 *  - nested number arrays with a leading batch axis (`[[0.1, 0.2, ...], ...]`);
 *  - `{data: "<base64 little-endian float32>", shape: [B, ...]}` (float inputs only);
 *  - a string or an array of strings, for an int64 input of a model with a built-in tokenizer.
 * `inputs` is `{name: value}`, or the bare value when the model has exactly one input.
 * Errors are INVALID_INPUT / INVALID_LABEL (400) and name the input (or label) and the problem.
 */
import { endianness } from 'node:os';
import { InvalidInputError, InvalidLabelError } from '../../errors.js';
import type { Tokenizer } from '../../data/index.js';
import { firstNonFinite } from '../../lora/index.js';
import type { Tensor } from '../../onnx/index.js';
import type { StoredSignature } from '../repositories/index.js';

/** What parsing needs to know about a model. */
export interface InputModel {
  inputs: readonly StoredSignature[];
  /** The model's built-in tokenizer (text models), if any. */
  tokenizer?: Tokenizer | null;
}

/** Parsed feeds and the batch size they agree on. */
export interface ParsedInputs {
  feeds: Record<string, Tensor>;
  batch: number;
}

/** What label parsing needs: the task and the per-sample output size. */
export interface LabelTarget {
  task: 'classification' | 'regression';
  m: number;
}

const FLOAT_TYPES = new Set(['float32', 'float', 'float64', 'double', 'float16']);
/** The values each integer input type holds (int64: the integers a JSON number carries exactly). */
export const INTEGER_RANGE: Readonly<Record<string, readonly [number, number]>> = {
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER], int32: [-(2 ** 31), 2 ** 31 - 1], int8: [-128, 127], uint8: [0, 255],
};

/**
 * `values` (already checked to fit) as the typed array of an input's element type: float32 (also
 * `float`), float64 (`double`), int64, int32, int8 or uint8. Used by JSON inputs and by datasets.
 */
export function typedValues(dtype: string, values: ArrayLike<number>): Tensor['data'] {
  switch (dtype) {
    case 'int64':
      return BigInt64Array.from(values, (x) => BigInt(x));
    case 'int32':
      return Int32Array.from(values);
    case 'int8':
      return Int8Array.from(values);
    case 'uint8':
      return Uint8Array.from(values);
    case 'float64':
    case 'double':
      return Float64Array.from(values);
    default:
      return Float32Array.from(values);
  }
}

const LITTLE_ENDIAN = endianness() === 'LE';

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isBinary(v: unknown): v is { data: unknown; shape: unknown } {
  return isPlainObject(v) && 'data' in v && 'shape' in v;
}

/** Turns `json` into feeds for `model`; INVALID_INPUT naming the input and the problem. */
export function parseInputs(model: InputModel, json: unknown): ParsedInputs {
  const sigs = model.inputs;
  if (sigs.length === 0) throw new InvalidInputError('the model declares no inputs');
  let byName: Record<string, unknown>;
  if (sigs.length === 1 && (Array.isArray(json) || typeof json === 'string' || isBinary(json))) byName = { [sigs[0]!.name]: json };
  else if (isPlainObject(json)) byName = json;
  else {
    throw new InvalidInputError(`inputs must be an object {${sigs.map((s) => s.name).join(', ')}}${sigs.length === 1 ? ', or the bare value of the only input' : ''}`, { field: 'inputs' });
  }
  for (const name of Object.keys(byName)) {
    if (!sigs.some((s) => s.name === name)) throw new InvalidInputError(`unknown input '${name}' (the model takes ${sigs.map((s) => s.name).join(', ')})`, { input: name });
  }
  const feeds: Record<string, Tensor> = {};
  let batch = -1;
  for (const sig of sigs) {
    const value = byName[sig.name];
    if (value === undefined) throw new InvalidInputError(`missing input '${sig.name}'`, { input: sig.name });
    const t = parseOne(sig, value, model.tokenizer ?? null);
    const b = t.dims[0]!;
    if (batch >= 0 && b !== batch) throw new InvalidInputError(`inputs disagree on the batch size (${batch} vs ${b} for '${sig.name}')`, { input: sig.name });
    batch = b;
    feeds[sig.name] = t;
  }
  return { feeds, batch };
}

function parseOne(sig: StoredSignature, value: unknown, tokenizer: Tokenizer | null): Tensor {
  const name = sig.name;
  const dtype = sig.dtype.toLowerCase();
  if (typeof value === 'string' || (Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'string'))) {
    if (!tokenizer) throw new InvalidInputError(`input '${name}' got text, but this model has no built-in tokenizer; send token ids`, { input: name });
    if (dtype !== 'int64') throw new InvalidInputError(`input '${name}' is ${sig.dtype}; text only feeds an int64 token-id input`, { input: name });
    const texts = typeof value === 'string' ? [value] : (value as string[]);
    const enc = tokenizer.encodeBatch(texts);
    const t: Tensor = { data: enc.ids, dims: enc.dims };
    checkShape(sig, t.dims);
    return t;
  }
  if (isBinary(value)) return parseBinary(sig, value);
  if (!Array.isArray(value)) throw new InvalidInputError(`input '${name}' must be nested number arrays with a leading batch axis, {data, shape} or text`, { input: name });
  const dims = shapeOf(name, value);
  checkShape(sig, dims);
  const flat: number[] = [];
  flatten(name, value, flat);
  return { data: toTyped(name, dtype, flat), dims };
}

function parseBinary(sig: StoredSignature, value: { data: unknown; shape: unknown }): Tensor {
  const name = sig.name;
  if (!FLOAT_TYPES.has(sig.dtype.toLowerCase())) throw new InvalidInputError(`input '${name}' is ${sig.dtype}; base64 data is float32 only`, { input: name });
  if (typeof value.data !== 'string') throw new InvalidInputError(`input '${name}'.data must be a base64 string`, { input: name });
  const shape = value.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && (d as number) >= 0)) {
    throw new InvalidInputError(`input '${name}'.shape must be an array of non-negative integers`, { input: name });
  }
  const dims = shape as number[];
  checkShape(sig, dims);
  const bytes = Buffer.from(value.data, 'base64');
  const count = dims.reduce((a, b) => a * b, 1);
  if (bytes.length !== count * 4) {
    throw new InvalidInputError(`input '${name}': shape [${dims.join(', ')}] needs ${count * 4} bytes of float32, got ${bytes.length}`, { input: name, expected: count * 4, got: bytes.length });
  }
  // One copy into an aligned buffer (the decoded bytes may sit at any offset of Node's pool); the bytes
  // are little-endian, so a big-endian host reads them value by value.
  const f32 = new Float32Array(count);
  if (LITTLE_ENDIAN) new Uint8Array(f32.buffer).set(bytes);
  else for (let i = 0; i < count; i++) f32[i] = bytes.readFloatLE(i * 4);
  const bad = firstNonFinite(f32);
  if (bad >= 0) throw new InvalidInputError(`input '${name}' has a non-finite value at flat index ${bad}`, { input: name, index: bad });
  const data = sig.dtype.toLowerCase() === 'float64' || sig.dtype.toLowerCase() === 'double' ? Float64Array.from(f32) : f32;
  return { data, dims };
}

/** The shape of a rectangular nested array; INVALID_INPUT on ragged ones. */
function shapeOf(name: string, value: unknown[]): number[] {
  const dims: number[] = [];
  let cur: unknown = value;
  while (Array.isArray(cur)) {
    dims.push(cur.length);
    if (cur.length === 0) break;
    cur = cur[0];
  }
  const check = (v: unknown, depth: number, path: string): void => {
    if (depth === dims.length) {
      if (Array.isArray(v)) throw new InvalidInputError(`input '${name}' is ragged at ${path}: deeper than [${dims.join(', ')}]`, { input: name, path });
      return;
    }
    if (!Array.isArray(v) || v.length !== dims[depth]) {
      throw new InvalidInputError(`input '${name}' is ragged at ${path}: expected ${dims[depth]} entries like the first row`, { input: name, path });
    }
    v.forEach((x, i) => check(x, depth + 1, `${path}[${i}]`));
  };
  check(value, 0, name);
  return dims;
}

function flatten(name: string, v: unknown, out: number[]): void {
  if (Array.isArray(v)) for (const x of v) flatten(name, x, out);
  else if (typeof v === 'number' && Number.isFinite(v)) out.push(v);
  else if (typeof v === 'boolean') out.push(v ? 1 : 0);
  else throw new InvalidInputError(`input '${name}' has a non-number value (${JSON.stringify(v)}) at flat index ${out.length}`, { input: name, index: out.length });
}

/** Rank and fixed dims against the signature; the leading axis is the batch. */
function checkShape(sig: StoredSignature, dims: readonly number[]): void {
  const name = sig.name;
  if (dims.length === 0 || dims[0]! < 1) throw new InvalidInputError(`input '${name}' needs a leading batch axis of at least 1`, { input: name, shape: dims });
  if (!sig.shape) return;
  const want = sig.shape;
  const show = (s: readonly unknown[]) => `[${s.map((d) => (d === null ? '?' : String(d))).join(', ')}]`;
  if (dims.length !== want.length) {
    throw new InvalidInputError(`input '${name}' has shape ${show(dims)} (rank ${dims.length}); the model wants ${show(want)} (rank ${want.length}) with the batch first`, {
      input: name, shape: dims, expected: want,
    });
  }
  for (let i = 1; i < want.length; i++) {
    const w = want[i];
    if (typeof w === 'number' && w > 0 && dims[i] !== w) {
      throw new InvalidInputError(`input '${name}' has shape ${show(dims)}; axis ${i} must be ${w} (the model wants ${show(want)})`, { input: name, shape: dims, expected: want, axis: i });
    }
  }
  if (typeof want[0] === 'number' && want[0] > 0 && dims[0] !== want[0]) {
    throw new InvalidInputError(`input '${name}' has batch ${dims[0]}; the model's batch axis is fixed at ${want[0]}`, { input: name, shape: dims, expected: want, axis: 0 });
  }
}

function toTyped(name: string, dtype: string, flat: number[]): Tensor['data'] {
  switch (dtype) {
    case 'float32':
    case 'float':
    case 'float64':
    case 'double':
      return typedValues(dtype, flat);
    case 'int64':
    case 'int32':
    case 'int8':
    case 'uint8': {
      const [lo, hi] = INTEGER_RANGE[dtype]!;
      for (let i = 0; i < flat.length; i++) {
        const v = flat[i]!;
        if (!Number.isInteger(v)) throw new InvalidInputError(`input '${name}' is ${dtype}; value ${v} at flat index ${i} is not an integer`, { input: name, index: i });
        // Int32Array.from would wrap 2³¹ to −2³¹, and BigInt of an unsafe double is not the integer sent.
        if (v < lo || v > hi) throw new InvalidInputError(`input '${name}' is ${dtype}; value ${v} at flat index ${i} is outside [${lo}, ${hi}]`, { input: name, index: i });
      }
      return typedValues(dtype, flat);
    }
    case 'bool':
      return Uint8Array.from(flat, (x) => (x ? 1 : 0));
    default:
      throw new InvalidInputError(`input '${name}' has dtype ${dtype}, which JSON inputs cannot feed`, { input: name, dtype });
  }
}

/**
 * Labels for a batch of `batch`: classification takes integer class ids in [0, m) (a bare number
 * for a batch of one); regression takes float targets, `[B][m]` nested or flat `B·m` (a bare number
 * when B·m = 1). INVALID_LABEL names the label and the problem (JSON has no NaN: null or a string
 * where a number belongs is refused the same way).
 */
export function parseLabels(target: LabelTarget, json: unknown, batch: number): number[] | Float32Array {
  if (json === undefined) throw new InvalidLabelError('labels are required', { field: 'labels' });
  if (target.task === 'classification') {
    const arr = Array.isArray(json) ? json : [json];
    if (arr.length !== batch) throw new InvalidLabelError(`${arr.length} labels for a batch of ${batch}`, { field: 'labels', expected: batch, got: arr.length });
    return arr.map((y, i) => {
      if (typeof y !== 'number' || !Number.isInteger(y) || y < 0 || y >= target.m) {
        throw new InvalidLabelError(`label ${i} is ${JSON.stringify(y)}; expected an integer class in [0, ${target.m})`, { field: 'labels', index: i });
      }
      return y;
    });
  }
  const flat: unknown[] = Array.isArray(json) ? (json as unknown[]).flat(Infinity) : [json];
  if (flat.length !== batch * target.m) {
    throw new InvalidLabelError(`${flat.length} targets for a batch of ${batch} × ${target.m} outputs`, { field: 'labels', expected: batch * target.m, got: flat.length });
  }
  const out = new Float32Array(flat.length);
  flat.forEach((y, i) => {
    if (typeof y !== 'number' || !Number.isFinite(y)) throw new InvalidLabelError(`target ${i} is ${JSON.stringify(y)}; expected a finite number`, { field: 'labels', index: i });
    out[i] = y;
  });
  return out;
}

/** A tensor as JSON-safe data (for the observation log): exact bytes as base64. */
export interface EncodedTensor {
  dtype: 'float32' | 'float64' | 'int32' | 'int64' | 'int8' | 'uint8' | 'bool';
  dims: number[];
  data: string;
}

/** Feeds → JSON-safe, byte-exact form (the inverse of {@link decodeFeeds}). */
export function encodeFeeds(feeds: Readonly<Record<string, Tensor>>): Record<string, EncodedTensor> {
  const out: Record<string, EncodedTensor> = {};
  for (const [k, t] of Object.entries(feeds)) {
    const d = t.data;
    const dtype: EncodedTensor['dtype'] =
      d instanceof Float32Array ? 'float32' : d instanceof Float64Array ? 'float64' : d instanceof Int32Array ? 'int32' : d instanceof BigInt64Array ? 'int64'
        : d instanceof Int8Array ? 'int8' : t.type === 'bool' ? 'bool' : 'uint8';
    out[k] = { dtype, dims: [...t.dims], data: Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString('base64') };
  }
  return out;
}

/** The feeds {@link encodeFeeds} wrote. */
export function decodeFeeds(json: Record<string, EncodedTensor>): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [k, e] of Object.entries(json)) {
    const buf = Buffer.from(e.data, 'base64');
    const bytes = new Uint8Array(buf.length);
    bytes.set(buf);
    const ab = bytes.buffer;
    const data =
      e.dtype === 'float32' ? new Float32Array(ab) : e.dtype === 'float64' ? new Float64Array(ab) : e.dtype === 'int32' ? new Int32Array(ab) : e.dtype === 'int64' ? new BigInt64Array(ab)
        : e.dtype === 'int8' ? new Int8Array(ab) : new Uint8Array(ab);
    out[k] = e.dtype === 'bool' ? { data, dims: e.dims, type: 'bool' } : { data, dims: e.dims };
  }
  return out;
}
