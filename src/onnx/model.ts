/**
 * Reading, validating, inspecting and writing ONNX models (ModelProto) with the `onnx-proto` codec.
 * Owns the MODEL_FORMAT and MODEL_EXTERNAL_DATA errors: bytes that are not a model are refused here,
 * before anything else sees them, and external data is only ever read from inside the model's folder.
 */
import { createHash } from 'node:crypto';
import { readFileSync, realpathSync, existsSync } from 'node:fs';
import { dirname, isAbsolute, resolve, sep } from 'node:path';
import { ExternalDataError, ModelFormatError } from '../errors.js';
import {
  onnx, toNum, dtypeName, tensorToValue, defaultOpset, getAttr,
  type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto, type GraphProto, type TensorValue,
} from './proto.js';

/** A graph input or output with its dtype and (possibly symbolic) dims. */
export interface ValueSignature {
  name: string;
  dtype: string;
  /** number for a fixed dim, string for a symbolic one (`batch`), null when unknown. */
  shape: (number | string | null)[] | null;
}

/** What a model looks like from the outside. */
export interface ModelInfo {
  irVersion: number;
  producer: string;
  opsets: { domain: string; version: number }[];
  opset: number;
  inputs: ValueSignature[];
  outputs: ValueSignature[];
  initializers: { name: string; dtype: string; dims: number[] }[];
  /** Constant nodes holding a tensor `value` (exporters often keep weights there). */
  constants: { name: string; output: string; dtype: string; dims: number[] }[];
  nodeCount: number;
  opTypes: string[];
}

/** Decode model bytes; anything that is not a usable ModelProto raises MODEL_FORMAT. */
export function decodeModel(bytes: Uint8Array): ModelProto {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('model bytes must be a Uint8Array');
  if (bytes.length === 0) throw new ModelFormatError('model file is empty');
  let model: ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw new ModelFormatError(`not an ONNX model: ${(e as Error).message}`);
  }
  validateModel(model);
  return model;
}

function validateModel(model: ModelProto): void {
  const ir = toNum(model.irVersion ?? 0);
  if (!(ir >= 3 && ir <= 20)) throw new ModelFormatError(`not an ONNX model: ir_version ${ir} is not a known IR version`);
  if (!model.graph) throw new ModelFormatError('not an ONNX model: no graph');
  const opset = defaultOpset(model);
  if (!(opset >= 1 && opset <= 30)) throw new ModelFormatError(`not an ONNX model: default-domain opset ${opset} is not valid`);
  const g = model.graph;
  if (!g.output || g.output.length === 0) throw new ModelFormatError('model graph has no outputs');
  if (!g.node || g.node.length === 0) throw new ModelFormatError('model graph has no nodes');
  // Every node input must be produced before it is consumed (ONNX requires topological order).
  const known = new Set<string>(['']);
  for (const i of g.input ?? []) known.add(i.name ?? '');
  for (const t of g.initializer ?? []) known.add(t.name ?? '');
  for (const n of g.node) {
    if (!n.opType) throw new ModelFormatError(`node '${n.name ?? ''}' has no op_type`);
    for (const i of n.input ?? []) {
      if (!known.has(i)) {
        throw new ModelFormatError(`node '${n.name ?? n.opType}' reads '${i}', which no earlier node, input or initializer defines`, { node: n.name, input: i });
      }
    }
    for (const o of n.output ?? []) known.add(o);
  }
  for (const o of g.output) {
    if (!known.has(o.name ?? '')) throw new ModelFormatError(`graph output '${o.name}' is never produced`);
  }
}

/** Encode a model to bytes. */
export function encodeModel(model: ModelProto): Uint8Array {
  const buf = onnx.ModelProto.encode(onnx.ModelProto.fromObject(model as Record<string, unknown>)).finish();
  // protobufjs hands out a Node Buffer; callers get a plain Uint8Array.
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Deep copy through the codec (cheap for our model sizes, and it normalises the object). */
/** Calls `fn` for every tensor name node `n` reads, once per read, its subgraphs' reads included. */
export function forEachRead(n: NodeProto, fn: (name: string) => void): void {
  for (const i of n.input ?? []) fn(i);
  for (const a of n.attribute ?? []) for (const sg of [a.g, ...(a.graphs ?? [])]) for (const m of sg?.node ?? []) forEachRead(m, fn);
}

export function cloneModel(model: ModelProto): ModelProto {
  return onnx.ModelProto.decode(encodeModel(model));
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function tensorHasExternalData(t: TensorProto): boolean {
  return t.dataLocation === 1 || (t.externalData?.length ?? 0) > 0;
}

function forEachTensor(g: GraphProto, fn: (t: TensorProto) => void): void {
  for (const t of g.initializer ?? []) fn(t);
  for (const n of g.node ?? []) {
    for (const a of n.attribute ?? []) {
      if (a.t) fn(a.t);
      for (const t of a.tensors ?? []) fn(t);
      if (a.g) forEachTensor(a.g, fn);
      for (const sg of a.graphs ?? []) forEachTensor(sg, fn);
    }
  }
}

/**
 * Load a model from a file. Tensors stored as external data are read (only from inside the model's own
 * folder: absolute paths, `..` escapes and symlinks leading out are refused) and inlined, so the result
 * is self-contained.
 */
export function loadModelFile(path: string): { model: ModelProto; bytes: Uint8Array } {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(readFileSync(path));
  } catch (e) {
    throw new ModelFormatError(`cannot read model file '${path}': ${(e as Error).message}`);
  }
  const model = decodeModel(bytes);
  const folder = realpathSync(dirname(resolve(path)));
  let inlined = false;
  forEachTensor(model.graph!, (t) => {
    if (!tensorHasExternalData(t)) return;
    inlineExternal(t, folder);
    inlined = true;
  });
  return { model, bytes: inlined ? encodeModel(model) : bytes };
}

/** Decode bytes that must be self-contained (an upload): any external-data reference is refused. */
export function loadModelBytes(bytes: Uint8Array): ModelProto {
  const model = decodeModel(bytes);
  forEachTensor(model.graph!, (t) => {
    if (tensorHasExternalData(t)) {
      throw new ExternalDataError(`tensor '${t.name}' refers to external data, which an uploaded model cannot carry; upload a self-contained model`, { tensor: t.name });
    }
  });
  return model;
}

function inlineExternal(t: TensorProto, folder: string): void {
  const kv = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  const location = kv.get('location');
  if (!location) throw new ExternalDataError(`tensor '${t.name}' has external data without a location`, { tensor: t.name });
  if (isAbsolute(location) || location.includes('\0')) {
    throw new ExternalDataError(`tensor '${t.name}': external data location '${location}' must be relative to the model's folder`, { tensor: t.name, location });
  }
  const target = resolve(folder, location);
  if (!target.startsWith(folder + sep)) {
    throw new ExternalDataError(`tensor '${t.name}': external data location '${location}' points outside the model's folder`, { tensor: t.name, location });
  }
  if (!existsSync(target)) throw new ExternalDataError(`tensor '${t.name}': external data file '${location}' does not exist`, { tensor: t.name, location });
  const real = realpathSync(target);
  if (!real.startsWith(folder + sep)) {
    throw new ExternalDataError(`tensor '${t.name}': external data location '${location}' links outside the model's folder`, { tensor: t.name, location });
  }
  const file = readFileSync(real);
  const offset = Number(kv.get('offset') ?? 0);
  const length = kv.has('length') ? Number(kv.get('length')) : file.length - offset;
  if (!(offset >= 0 && length >= 0 && offset + length <= file.length)) {
    throw new ExternalDataError(`tensor '${t.name}': external data range [${offset}, ${offset + length}) exceeds '${location}' (${file.length} bytes)`, { tensor: t.name, location });
  }
  t.rawData = new Uint8Array(file.subarray(offset, offset + length));
  t.externalData = [];
  t.dataLocation = 0;
}

function signature(v: ValueInfoProto): ValueSignature {
  const tt = v.type?.tensorType;
  const dims = tt?.shape?.dim;
  return {
    name: v.name ?? '',
    dtype: dtypeName(tt?.elemType),
    shape: dims
      ? dims.map((d) => (d.dimParam ? d.dimParam : d.dimValue !== undefined && d.dimValue !== null && toNum(d.dimValue) > 0 ? toNum(d.dimValue) : null))
      : null,
  };
}

/** Graph inputs that are real inputs (not initializers listed as inputs, as IR < 4 exporters do). */
export function realInputs(model: ModelProto): ValueInfoProto[] {
  const inits = new Set((model.graph?.initializer ?? []).map((t) => t.name));
  return (model.graph?.input ?? []).filter((i) => !inits.has(i.name));
}

/** Inputs/outputs (with symbolic dims), opsets, initializers and weights held in Constant nodes. */
export function inspectModel(model: ModelProto): ModelInfo {
  const g = model.graph!;
  const constants: ModelInfo['constants'] = [];
  const ops = new Set<string>();
  for (const n of g.node ?? []) {
    ops.add(n.domain ? `${n.domain}.${n.opType}` : n.opType!);
    if (n.opType === 'Constant') {
      const v = getAttr(n, 'value');
      if (v && typeof v === 'object' && 'dims' in v) {
        const t = v as TensorProto;
        constants.push({ name: n.name ?? '', output: n.output![0]!, dtype: dtypeName(t.dataType), dims: (t.dims ?? []).map(toNum) });
      }
    }
  }
  return {
    irVersion: toNum(model.irVersion ?? 0),
    producer: [model.producerName, model.producerVersion].filter(Boolean).join(' '),
    opsets: (model.opsetImport ?? []).map((o) => ({ domain: o.domain || 'ai.onnx', version: toNum(o.version) })),
    opset: defaultOpset(model),
    inputs: realInputs(model).map(signature),
    outputs: (g.output ?? []).map(signature),
    initializers: (g.initializer ?? []).map((t) => ({ name: t.name ?? '', dtype: dtypeName(t.dataType), dims: (t.dims ?? []).map(toNum) })),
    constants,
    nodeCount: g.node?.length ?? 0,
    opTypes: [...ops].sort(),
  };
}

/**
 * Where constant tensors live: initializers and Constant-node outputs, by tensor name.
 * `set` replaces the tensor's data in place (used by merging).
 */
export class ConstantTable {
  private readonly map = new Map<string, { tensor: TensorProto; holder: 'initializer' | 'constant'; node?: string }>();
  constructor(graph: GraphProto) {
    for (const t of graph.initializer ?? []) this.map.set(t.name ?? '', { tensor: t, holder: 'initializer' });
    for (const n of graph.node ?? []) {
      if (n.opType !== 'Constant') continue;
      const v = getAttr(n, 'value');
      if (v && typeof v === 'object' && 'dims' in v) this.map.set(n.output![0]!, { tensor: v as TensorProto, holder: 'constant', node: n.name ?? '' });
    }
  }
  has(name: string): boolean {
    return this.map.has(name);
  }
  get(name: string): TensorValue | undefined {
    const e = this.map.get(name);
    return e ? tensorToValue(e.tensor) : undefined;
  }
  dims(name: string): number[] | undefined {
    const e = this.map.get(name);
    return e ? (e.tensor.dims ?? []).map(toNum) : undefined;
  }
  holder(name: string): 'initializer' | 'constant' | undefined {
    return this.map.get(name)?.holder;
  }
  dtype(name: string): number | undefined {
    return this.map.get(name)?.tensor.dataType ?? undefined;
  }
  /** Replace a float32 constant's values (same dims). */
  setFloat32(name: string, data: Float32Array): void {
    const e = this.map.get(name);
    if (!e) throw new RangeError(`no constant named '${name}'`);
    const t = e.tensor;
    t.rawData = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
    t.floatData = [];
  }
}
