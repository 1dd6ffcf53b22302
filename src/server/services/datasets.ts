/**
 * Datasets: parsing an uploaded JSONL or CSV file, validating every row against the base model's
 * input signature (per-sample shapes and dtypes, finite values, labels the output can take), storing
 * the bytes content-addressed, and turning stored rows back into batches for the job runner.
 *
 * Row layouts (documented in the OpenAPI description of POST /v1/datasets):
 * - JSONL: one `{"inputs": ..., "label": ...}` per line. `inputs` is the per-sample value (no batch
 *   axis) of a one-input model — a nested number array, or `{data, shape}` with base64 little-endian
 *   float32, or a string for the token-id input of a model with a built-in tokenizer (padded to the
 *   tokenizer's length) — or an object `{<input name>: value}`. Blank lines are skipped but still counted.
 * - CSV: a header line, a `label` column, and the inputs as one column per flattened (row-major)
 *   value named `<input>.<i>` (0-based); for a one-input model the feature columns may instead be
 *   any names, taken in order (e.g. `pixel0..pixel783`).
 * Errors are 422 DATASET_INVALID with `details: {row, field}`: `row` is the 1-based line of the file
 * (the header is line 1 of a CSV), `field` the JSON path or CSV column at fault (null: the whole row).
 */
import { parseTokenizer, type Tokenizer } from '../../data/index.js';
import { DomainError, OutputNotFoundError } from '../../errors.js';
import type { Tensor } from '../../onnx/index.js';
import type { BlobStore } from '../blob-store.js';
import { newId } from '../ids.js';
import type { ModelRecord, Repositories } from '../repositories/index.js';
import type { DatasetFormat, DatasetRecord, DatasetSummary } from '../repositories/datasets.js';
import type { Page } from '../repositories/adapters.js';
import { NotFoundError } from '../errors.js';
import { INTEGER_RANGE, typedValues } from './inputs.js';
import type { ModelService } from './models.js';

/** A row that does not fit the model: 422 DATASET_INVALID naming the row and field. */
export class DatasetInvalidError extends DomainError {
  constructor(message: string, row: number | null, field: string | null, extra: Record<string, unknown> = {}) {
    super('DATASET_INVALID', row === null ? message : `row ${row}${field ? `, field '${field}'` : ''}: ${message}`, { row, field, ...extra });
  }
}

/** One graph input as a dataset sees it: per-sample dims (null: symbolic, fixed by the first row). */
export interface InputSpec {
  name: string;
  dtype: string;
  dims: (number | null)[];
}

/** What the model expects of a dataset. */
export interface DatasetSignature {
  inputs: InputSpec[];
  /** Classification: labels are class ids in [0, classes). Regression: vectors of `size` numbers. */
  task: 'classification' | 'regression';
  classes: number;
  /** The model output the labels are for. */
  output: string;
}

/** One validated row: flat values per input (row-major, dtype per the model) and its label. */
export interface Sample {
  inputs: Record<string, Float32Array | Float64Array>;
  label: number | number[];
}

export interface ParsedDataset {
  format: DatasetFormat;
  samples: Sample[];
  summary: DatasetSummary;
}

const NUMERIC_DTYPES = new Set(['float32', 'float64', 'int64', 'int32', 'int8', 'uint8']);
const INTEGER_DTYPES = new Set(['int64', 'int32', 'int8', 'uint8']);

/**
 * The signature datasets of `model` are checked against. The task is `task` when the upload names it,
 * else the model's (a built-in's manifest says; uploaded models classify). Labels are for `output`
 * (default the model's first; MODEL_OUTPUT_NOT_FOUND when it has none of that name).
 */
export function datasetSignature(model: ModelRecord, task?: 'classification' | 'regression', output?: string): DatasetSignature {
  const inputs = model.inputs.map((s) => ({
    name: s.name,
    dtype: s.dtype,
    dims: (s.shape ?? []).slice(1).map((d) => (typeof d === 'number' && d > 0 ? d : null)),
  }));
  const names = model.outputs.map((o) => o.name);
  const name = output ?? names[0] ?? '';
  const info = model.outputs.find((o) => o.name === name);
  if (!info) throw new OutputNotFoundError(name, names);
  // A sample's output size: every dim after the batch (a regression target is the flattened output,
  // as the engine trains it); with a symbolic one, the last dim where it is fixed.
  const out = info.shape ?? [];
  const per = out.slice(1);
  const last = out[out.length - 1];
  const classes = per.every((d) => typeof d === 'number' && d > 0)
    ? per.reduce<number>((a, d) => a * (d as number), 1)
    : typeof last === 'number' && last > 0 ? last : 1;
  return { inputs, task: task ?? (/regression/i.test(String(model.metadata['task'] ?? '')) ? 'regression' : 'classification'), classes, output: name };
}

/** JSON.parse that lets NaN/±Infinity through as markers, so the row's field can be named. */
const NONFINITE = '\u0000nonfinite:';
function parseJsonRow(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch (err) {
    const patched = line.replace(/(?<=[:,[]\s*)(-?Infinity|NaN)(?=\s*[,\]}])/g, '"\\u0000nonfinite:$1"');
    if (patched === line) throw err;
    return JSON.parse(patched);
  }
}

class RowChecker {
  /** Fixed per-sample shape per input, set by the first row for symbolic dims. */
  private readonly shapes = new Map<string, number[]>();
  readonly counts: number[];

  constructor(
    private readonly sig: DatasetSignature,
    private readonly tokenizer: Tokenizer | null = null,
  ) {
    this.counts = new Array<number>(sig.task === 'classification' ? sig.classes : 0).fill(0);
    for (const s of sig.inputs) {
      if (s.dims.every((d) => d !== null)) this.shapes.set(s.name, s.dims as number[]);
      if (!NUMERIC_DTYPES.has(s.dtype)) throw new DatasetInvalidError(`model input '${s.name}' has dtype ${s.dtype}, which datasets cannot hold`, null, null);
    }
  }

  shapeOf(name: string): number[] | undefined {
    return this.shapes.get(name);
  }

  /** Flat values of one input from a JSON value, checked against the spec. */
  input(spec: InputSpec, v: unknown, row: number, field: string): Float32Array | Float64Array {
    if (typeof v === 'string') {
      if (!this.tokenizer) throw new DatasetInvalidError('got text, but this model has no built-in tokenizer; send token ids', row, field);
      if (!INTEGER_DTYPES.has(spec.dtype)) throw new DatasetInvalidError(`input '${spec.name}' is ${spec.dtype}; text only feeds a token-id input`, row, field);
      // Every row padded to the tokenizer's length, so that rows batch together.
      const enc = this.tokenizer.encodeBatch([v], { padTo: this.tokenizer.maxLength });
      const ids = Float64Array.from(enc.ids, Number);
      this.checkShape(spec, [ids.length], ids.length, row, field);
      return ids;
    }
    let flat: number[];
    let shape: number[];
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      if (typeof o['data'] !== 'string' || !Array.isArray(o['shape']) || !o['shape'].every((d) => Number.isInteger(d) && (d as number) >= 0)) {
        throw new DatasetInvalidError('expected a nested number array or {data: base64 float32, shape: int[]}', row, field);
      }
      const buf = Buffer.from(o['data'], 'base64');
      shape = o['shape'] as number[];
      const n = shape.reduce((a, b) => a * b, 1);
      if (buf.length !== 4 * n) throw new DatasetInvalidError(`base64 data holds ${buf.length} bytes; shape [${shape.join(', ')}] needs ${4 * n} (float32)`, row, field);
      const f = new Float32Array(n);
      for (let i = 0; i < n; i++) f[i] = buf.readFloatLE(4 * i);
      flat = Array.from(f);
    } else if (Array.isArray(v)) {
      flat = [];
      shape = nestedShape(v, row, field);
      flattenInto(v, flat, row, field, []);
    } else if (typeof v === 'number' && spec.dims.length === 0) {
      flat = [v];
      shape = [];
    } else {
      throw new DatasetInvalidError(`expected a number array, got ${v === null ? 'null' : typeof v}`, row, field);
    }
    for (let i = 0; i < flat.length; i++) {
      const x = flat[i]!;
      if (!Number.isFinite(x)) throw new DatasetInvalidError(`value ${i} is not a finite number (${String(x)})`, row, field, { index: i });
      if (INTEGER_DTYPES.has(spec.dtype)) {
        if (!Number.isInteger(x)) throw new DatasetInvalidError(`value ${i} must be an integer (${spec.dtype}), got ${x}`, row, field, { index: i });
        const [lo, hi] = INTEGER_RANGE[spec.dtype]!;
        if (x < lo || x > hi) throw new DatasetInvalidError(`value ${i} is outside ${spec.dtype}'s [${lo}, ${hi}], got ${x}`, row, field, { index: i });
      }
    }
    this.checkShape(spec, shape, flat.length, row, field);
    return spec.dtype === 'float64' || INTEGER_DTYPES.has(spec.dtype) ? Float64Array.from(flat) : Float32Array.from(flat);
  }

  private checkShape(spec: InputSpec, shape: number[], n: number, row: number, field: string): void {
    const known = this.shapes.get(spec.name);
    if (known) {
      const want = known.reduce((a, b) => a * b, 1);
      const sameShape = shape.length === known.length && shape.every((d, i) => d === known[i]);
      // A flat vector of the right length is accepted for any per-sample shape (row-major).
      if (!sameShape && !(shape.length === 1 && n === want)) {
        throw new DatasetInvalidError(`expected ${want} values (per-sample shape [${known.join(', ')}]), got ${n} (shape [${shape.join(', ')}])`, row, field, {
          expected: known,
          got: shape,
        });
      }
      return;
    }
    if (shape.length !== spec.dims.length || spec.dims.some((d, i) => d !== null && d !== shape[i])) {
      throw new DatasetInvalidError(`per-sample shape [${shape.join(', ')}] does not fit the model's [${spec.dims.map((d) => d ?? '?').join(', ')}]`, row, field);
    }
    // Symbolic dims are fixed by the first row so that rows batch together.
    this.shapes.set(spec.name, shape);
  }

  label(v: unknown, row: number, field: string): number | number[] {
    if (v === undefined) throw new DatasetInvalidError('missing label', row, field);
    const num = (x: unknown, f: string): number => {
      if (typeof x === 'string' && x.startsWith(NONFINITE)) throw new DatasetInvalidError(`not a finite number (${x.slice(NONFINITE.length)})`, row, f);
      if (typeof x !== 'number') throw new DatasetInvalidError(`expected a number, got ${x === null ? 'null' : typeof x}`, row, f);
      if (!Number.isFinite(x)) throw new DatasetInvalidError(`not a finite number (${x})`, row, f);
      return x;
    };
    if (this.sig.task === 'classification') {
      if (Array.isArray(v)) {
        throw new DatasetInvalidError(`a class label must be one integer in [0, ${this.sig.classes}), got an array; for regression targets upload the dataset with task=regression`, row, field, { classes: this.sig.classes });
      }
      const y = num(v, field);
      if (!Number.isInteger(y) || y < 0 || y >= this.sig.classes) {
        throw new DatasetInvalidError(`a class label must be an integer in [0, ${this.sig.classes}), got ${y}`, row, field, { classes: this.sig.classes });
      }
      this.counts[y]!++;
      return y;
    }
    const ys = Array.isArray(v) ? v.map((x, i) => num(x, `${field}[${i}]`)) : [num(v, field)];
    if (ys.length !== this.sig.classes) throw new DatasetInvalidError(`a regression label needs ${this.sig.classes} values, got ${ys.length}`, row, field);
    return ys;
  }
}

function nestedShape(v: unknown, row: number, field: string): number[] {
  const shape: number[] = [];
  let cur: unknown = v;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0];
  }
  if (shape.includes(0) && shape.length > 1) throw new DatasetInvalidError('empty nested array', row, field);
  return shape;
}

function flattenInto(v: unknown[], out: number[], row: number, field: string, at: number[]): void {
  const depth = at.length;
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (Array.isArray(x)) flattenInto(x, out, row, field, [...at, i]);
    else if (typeof x === 'number') out.push(x);
    else if (typeof x === 'string' && x.startsWith(NONFINITE)) out.push(Number(x.slice(NONFINITE.length)));
    else throw new DatasetInvalidError(`element [${[...at, i].join('][')}] is ${x === null ? 'null' : typeof x}, not a number`, row, field);
  }
  // Ragged arrays: siblings must have the same length as the first (checked by total count below).
  if (depth === 0) {
    const shape = nestedShape(v, row, field);
    const n = shape.reduce((a, b) => a * b, 1);
    if (out.length !== n) throw new DatasetInvalidError(`ragged nested array: shape [${shape.join(', ')}] needs ${n} values, found ${out.length}`, row, field);
  }
}

/** Splits text into lines, keeping 1-based line numbers; a trailing newline adds no line. */
function lines(text: string): string[] {
  const ls = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  if (ls.length > 0 && ls[ls.length - 1] === '') ls.pop();
  return ls;
}

function parseJsonl(text: string, sig: DatasetSignature, tokenizer: Tokenizer | null): ParsedDataset {
  const check = new RowChecker(sig, tokenizer);
  const samples: Sample[] = [];
  const ls = lines(text);
  for (let i = 0; i < ls.length; i++) {
    const row = i + 1;
    const line = ls[i]!;
    if (line.trim() === '') continue;
    let obj: unknown;
    try {
      obj = parseJsonRow(line);
    } catch (err) {
      throw new DatasetInvalidError(`not valid JSON (${(err as Error).message})`, row, null);
    }
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new DatasetInvalidError('a row must be an object {"inputs": ..., "label": ...}', row, null);
    const o = obj as Record<string, unknown>;
    if (!('inputs' in o)) throw new DatasetInvalidError('missing inputs', row, 'inputs');
    const inputs: Sample['inputs'] = {};
    const raw = o['inputs'];
    const single = sig.inputs.length === 1 && (Array.isArray(raw) || typeof raw === 'string' || isTensorObject(raw));
    if (single) {
      inputs[sig.inputs[0]!.name] = check.input(sig.inputs[0]!, raw, row, 'inputs');
    } else {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new DatasetInvalidError(`expected an object keyed by input name (${sig.inputs.map((s) => s.name).join(', ')})`, row, 'inputs');
      const r = raw as Record<string, unknown>;
      for (const spec of sig.inputs) {
        if (!(spec.name in r)) throw new DatasetInvalidError('missing input', row, `inputs.${spec.name}`);
        inputs[spec.name] = check.input(spec, r[spec.name], row, `inputs.${spec.name}`);
      }
      const extra = Object.keys(r).find((k) => !sig.inputs.some((s) => s.name === k));
      if (extra !== undefined) throw new DatasetInvalidError(`the model has no input '${extra}'`, row, `inputs.${extra}`);
    }
    samples.push({ inputs, label: check.label(o['label'], row, 'label') });
  }
  return { format: 'jsonl', samples, summary: summarise(sig, check, samples) };
}

function isTensorObject(v: unknown): boolean {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && typeof (v as Record<string, unknown>)['data'] === 'string' && 'shape' in (v as object);
}

/** One CSV line into cells: comma-separated, double quotes around a cell, "" for a quote inside one. */
function csvCells(line: string): string[] {
  const cells: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      cells.push(cur);
      cur = '';
    } else cur += c;
  }
  cells.push(cur);
  return cells.map((s) => s.trim());
}

function parseCsv(text: string, sig: DatasetSignature): ParsedDataset {
  const check = new RowChecker(sig);
  const ls = lines(text);
  if (ls.length === 0) throw new DatasetInvalidError('empty file: a CSV needs a header line', 1, null);
  const header = csvCells(ls[0]!);
  // The label: one `label` column, or for regression targets `label.0 .. label.<m-1>`.
  const labelCol = header.indexOf('label');
  const labelCols = labelCol >= 0 ? [labelCol] : sig.task === 'regression' ? Array.from({ length: sig.classes }, (_, i) => header.indexOf(`label.${i}`)) : [-1];
  // Column indices of each input's flat values.
  const layout = new Map<string, number[]>();
  for (const spec of sig.inputs) {
    const shape = check.shapeOf(spec.name);
    if (!shape) throw new DatasetInvalidError(`input '${spec.name}' has a symbolic per-sample shape; CSV needs fixed shapes, use JSONL`, 1, spec.name);
    const n = shape.reduce((a, b) => a * b, 1);
    const named = Array.from({ length: n }, (_, i) => header.indexOf(`${spec.name}.${i}`));
    if (named.some((k) => k >= 0) || sig.inputs.length > 1) {
      const missing = named.findIndex((k) => k < 0);
      if (missing >= 0) throw new DatasetInvalidError(`missing column (expected ${spec.name}.0 .. ${spec.name}.${n - 1})`, 1, `${spec.name}.${missing}`);
      layout.set(spec.name, named);
    } else {
      const cols = header.map((_, k) => k).filter((k) => !labelCols.includes(k));
      if (cols.length !== n) {
        throw new DatasetInvalidError(`expected ${n} feature columns besides 'label' (or columns ${spec.name}.0 .. ${spec.name}.${n - 1}), the header has ${cols.length}`, 1, cols.length < n ? `${spec.name}.${cols.length}` : header[cols[n]!]!, {
          expected: n,
          got: cols.length,
        });
      }
      layout.set(spec.name, cols);
    }
  }
  if (labelCols.some((k) => k < 0)) {
    throw new DatasetInvalidError(sig.task === 'regression' && sig.classes > 1 ? `missing column 'label' (or label.0 .. label.${sig.classes - 1})` : "missing column 'label'", 1, 'label');
  }
  const samples: Sample[] = [];
  for (let i = 1; i < ls.length; i++) {
    const row = i + 1;
    if (ls[i]!.trim() === '') continue;
    const cells = csvCells(ls[i]!);
    if (cells.length !== header.length) {
      throw new DatasetInvalidError(`has ${cells.length} cells, the header ${header.length}`, row, cells.length < header.length ? header[cells.length]! : null);
    }
    const inputs: Sample['inputs'] = {};
    for (const spec of sig.inputs) {
      const cols = layout.get(spec.name)!;
      const values = cols.map((k) => {
        const cell = cells[k]!;
        const x = cell === '' ? NaN : Number(cell);
        if (!Number.isFinite(x)) throw new DatasetInvalidError(`not a finite number ('${cell}')`, row, header[k]!);
        return x;
      });
      inputs[spec.name] = check.input(spec, values, row, spec.name);
    }
    const labelOf = (k: number): unknown => {
      const cell = cells[k]!;
      const y = cell === '' ? undefined : Number(cell);
      return y !== undefined && !Number.isFinite(y) ? `${NONFINITE}${cell}` : y;
    };
    const label = labelCols.length === 1 ? labelOf(labelCols[0]!) : labelCols.map(labelOf);
    samples.push({ inputs, label: check.label(label, row, 'label') });
  }
  return { format: 'csv', samples, summary: { ...summarise(sig, check, samples), columns: header } };
}

function summarise(sig: DatasetSignature, check: RowChecker, samples: Sample[]): DatasetSummary {
  if (samples.length === 0) throw new DatasetInvalidError('the file has no rows', null, null);
  return {
    inputs: sig.inputs.map((s) => ({ name: s.name, dtype: s.dtype, shape: check.shapeOf(s.name) ?? [] })),
    label: sig.task === 'classification' ? { kind: 'class', output: sig.output, classes: sig.classes, counts: check.counts } : { kind: 'vector', output: sig.output, size: sig.classes },
  };
}

/** Which format a file is: by its name, else by its first non-blank character. */
export function detectFormat(filename: string, text: string): DatasetFormat {
  if (/\.(jsonl|ndjson)$/i.test(filename)) return 'jsonl';
  if (/\.csv$/i.test(filename)) return 'csv';
  return text.trimStart().startsWith('{') ? 'jsonl' : 'csv';
}

/** Parses and validates a dataset file against a model signature (DATASET_INVALID on the first bad row). */
export function parseDataset(bytes: Uint8Array, format: DatasetFormat, sig: DatasetSignature, tokenizer: Tokenizer | null = null): ParsedDataset {
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  return format === 'jsonl' ? parseJsonl(text, sig, tokenizer) : parseCsv(text, sig);
}

/** Rows as model feeds with a leading batch axis, each in its input's own element type. */
export function toFeeds(samples: readonly Sample[], summary: DatasetSummary): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  for (const s of summary.inputs) {
    const per = s.shape.reduce((a, b) => a * b, 1);
    const dims = [samples.length, ...s.shape];
    // float32 rows straight into the batch; others side by side in float64 (exact for every checked value), then in their own type.
    const flat = s.dtype === 'float32' ? new Float32Array(samples.length * per) : new Float64Array(samples.length * per);
    samples.forEach((r, b) => flat.set(r.inputs[s.name]!, b * per));
    feeds[s.name] = { data: flat instanceof Float32Array ? flat : typedValues(s.dtype, flat), dims };
  }
  return feeds;
}

export interface UploadDatasetInput {
  bytes: Uint8Array;
  filename: string;
  modelId: string;
  name?: string | undefined;
  format?: DatasetFormat | undefined;
  /** How labels are read: class ids or target vectors. Default: the model's task. */
  task?: 'classification' | 'regression' | undefined;
  /** The model output the labels are for. Default: the model's first. */
  output?: string | undefined;
}

/** Parsed-rows cache key: the same file for the same model, read with the same task and output. */
function cacheKey(sha256: string, modelId: string, summary: DatasetSummary): string {
  return JSON.stringify([sha256, modelId, summary.label.kind, summary.label.output]);
}

export class DatasetService {
  /** Parsed rows by blob sha256 and model: jobs re-read the same file often. */
  private readonly cache = new Map<string, ParsedDataset>();

  constructor(
    private readonly repos: Repositories,
    private readonly blobs: BlobStore,
    private readonly models: ModelService,
  ) {}

  /** Validates and stores a dataset of `ownerId`: MODEL_NOT_FOUND, DATASET_INVALID; nothing is stored on failure. */
  async upload(ownerId: string, input: UploadDatasetInput): Promise<DatasetRecord> {
    const model = await this.models.get(input.modelId);
    const text = new TextDecoder().decode(input.bytes.subarray(0, 4096));
    const format = input.format ?? detectFormat(input.filename, text);
    const parsed = parseDataset(input.bytes, format, datasetSignature(model, input.task, input.output), await this.tokenizer(model));
    const blob = await this.blobs.put(input.bytes);
    this.cache.set(cacheKey(blob.sha256, model.id, parsed.summary), parsed);
    const name = input.name ?? (input.filename.replace(/\.(jsonl|ndjson|csv)$/i, '') || 'dataset');
    return this.repos.datasets.create({
      id: newId('dst'),
      ownerId,
      modelId: model.id,
      name,
      format,
      rows: parsed.samples.length,
      size: blob.size,
      sha256: blob.sha256,
      path: blob.path,
      summary: parsed.summary,
    });
  }

  /** The dataset of `ownerId`, else DATASET_NOT_FOUND (also for another user's dataset). */
  async get(id: string, ownerId: string): Promise<DatasetRecord> {
    const d = await this.repos.datasets.get(id, ownerId);
    if (!d) throw new NotFoundError('dataset', id);
    return d;
  }

  list(ownerId: string, opts: { limit: number; cursor?: string; modelId?: string }): Promise<Page<DatasetRecord>> {
    return this.repos.datasets.list(ownerId, opts);
  }

  /** The model's built-in tokenizer (text models: string inputs in JSONL rows), else null. */
  private async tokenizer(model: ModelRecord): Promise<Tokenizer | null> {
    const meta = model.metadata['tokenizer'] as { path?: string } | null | undefined;
    return meta?.path ? parseTokenizer(new TextDecoder().decode(await this.blobs.read(meta.path)), model.name) : null;
  }

  /** The stored rows, parsed again (and checked again: the model may have been replaced). */
  async load(d: DatasetRecord): Promise<ParsedDataset> {
    const key = cacheKey(d.sha256, d.modelId, d.summary);
    const hit = this.cache.get(key);
    if (hit) return hit;
    const model = await this.models.get(d.modelId);
    // Read as it was uploaded: the stored summary says whether its labels are classes or vectors.
    const task = d.summary.label.kind === 'vector' ? 'regression' : 'classification';
    const parsed = parseDataset(await this.blobs.read(d.path), d.format, datasetSignature(model, task, d.summary.label.output), await this.tokenizer(model));
    if (this.cache.size > 8) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, parsed);
    return parsed;
  }
}
