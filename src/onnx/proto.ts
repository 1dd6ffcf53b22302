/**
 * The ONNX protobuf schema (from the maintained `onnx-proto` package) and small helpers around it:
 * int64 values, tensor <-> typed array conversion, attribute encoding and decoding.
 * Nothing here knows about LoRA or gradients.
 */
import onnxProto from 'onnx-proto';

export const onnx = onnxProto.onnx;
export type ModelProto = onnxProto.onnx.IModelProto;
export type GraphProto = onnxProto.onnx.IGraphProto;
export type NodeProto = onnxProto.onnx.INodeProto;
export type TensorProto = onnxProto.onnx.ITensorProto;
export type AttributeProto = onnxProto.onnx.IAttributeProto;
export type ValueInfoProto = onnxProto.onnx.IValueInfoProto;

/** TensorProto.DataType values we use by name. */
export const DT = {
  FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT16: 5, INT32: 6, INT64: 7, STRING: 8, BOOL: 9,
  FLOAT16: 10, DOUBLE: 11, UINT32: 12, UINT64: 13, BFLOAT16: 16,
} as const;

const DT_NAMES: Record<number, string> = {
  1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64', 8: 'string',
  9: 'bool', 10: 'float16', 11: 'float64', 12: 'uint32', 13: 'uint64', 16: 'bfloat16',
};

/** Human (and onnxruntime-js) name of an ONNX data type, e.g. 1 -> 'float32'. */
export function dtypeName(dt: number | null | undefined): string {
  return DT_NAMES[dt ?? 0] ?? `dtype(${dt})`;
}

/** int64 fields decode as Long objects (protobufjs); turn them into numbers. */
export function toNum(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (v && typeof v === 'object' && 'toNumber' in v) return (v as { toNumber(): number }).toNumber();
  if (typeof v === 'string') return Number(v);
  return Number(v);
}

export type NumericArray = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Int8Array;

/** A decoded tensor: data as a typed array plus its dims. */
export interface TensorValue {
  dtype: number;
  dims: number[];
  data: NumericArray;
}

function copyBytes(raw: Uint8Array): ArrayBuffer {
  const buf = new ArrayBuffer(raw.byteLength);
  new Uint8Array(buf).set(raw);
  return buf;
}

/** Decode a TensorProto held in memory (raw_data or the typed fields). External data must be inlined first. */
export function tensorToValue(t: TensorProto): TensorValue {
  const dims = (t.dims ?? []).map(toNum);
  const dtype = t.dataType ?? 0;
  const count = dims.reduce((a, b) => a * b, 1);
  const raw = t.rawData && t.rawData.length > 0 ? t.rawData : null;
  switch (dtype) {
    case DT.FLOAT:
      return { dtype, dims, data: raw ? new Float32Array(copyBytes(raw)) : Float32Array.from(t.floatData ?? []) };
    case DT.DOUBLE:
      return { dtype, dims, data: raw ? new Float64Array(copyBytes(raw)) : Float64Array.from(t.doubleData ?? []) };
    case DT.INT32:
      return { dtype, dims, data: raw ? new Int32Array(copyBytes(raw)) : Int32Array.from(t.int32Data ?? []) };
    case DT.INT64: {
      if (raw) return { dtype, dims, data: new BigInt64Array(copyBytes(raw)) };
      const src = t.int64Data ?? [];
      const out = new BigInt64Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = BigInt(String(src[i]));
      return { dtype, dims, data: out };
    }
    case DT.BOOL:
    case DT.UINT8:
      return { dtype, dims, data: raw ? new Uint8Array(copyBytes(raw)) : Uint8Array.from(t.int32Data ?? []) };
    case DT.INT8:
      return { dtype, dims, data: raw ? new Int8Array(copyBytes(raw)) : Int8Array.from(t.int32Data ?? []) };
    default:
      throw new TypeError(`tensor '${t.name ?? ''}' has unsupported dtype ${dtypeName(dtype)} (${count} elements)`);
  }
}

/** Encode a typed array as a TensorProto with raw_data (little-endian, as ONNX requires). */
export function valueToTensor(name: string, dtype: number, dims: readonly number[], data: NumericArray): TensorProto {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
  return { name, dataType: dtype, dims: [...dims], rawData: bytes };
}

export function floatTensor(name: string, dims: readonly number[], values: ArrayLike<number>): TensorProto {
  return valueToTensor(name, DT.FLOAT, dims, Float32Array.from(values));
}

export function int64Tensor(name: string, dims: readonly number[], values: ArrayLike<number>): TensorProto {
  const arr = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) arr[i] = BigInt(values[i]!);
  return valueToTensor(name, DT.INT64, dims, arr);
}

/** Marks a number attribute as FLOAT (plain numbers encode as INT, arrays as INTS). */
export class FloatAttr {
  constructor(readonly value: number) {}
}
export class FloatsAttr {
  constructor(readonly value: number[]) {}
}
export const f = (v: number): FloatAttr => new FloatAttr(v);

export type AttrInput = number | number[] | string | FloatAttr | FloatsAttr | TensorProto;

/** Build AttributeProtos from a plain record (numbers are INT, use f() for FLOAT). */
export function encodeAttrs(attrs: Record<string, AttrInput | undefined>): AttributeProto[] {
  const out: AttributeProto[] = [];
  for (const [name, v] of Object.entries(attrs)) {
    if (v === undefined) continue;
    if (v instanceof FloatAttr) out.push({ name, type: 1, f: v.value });
    else if (v instanceof FloatsAttr) out.push({ name, type: 6, floats: v.value });
    else if (typeof v === 'number') out.push({ name, type: 2, i: v });
    else if (typeof v === 'string') out.push({ name, type: 3, s: new TextEncoder().encode(v) });
    else if (Array.isArray(v)) out.push({ name, type: 7, ints: v });
    else out.push({ name, type: 4, t: v });
  }
  return out;
}

/** Set (or replace) one attribute of a node (numbers are INT, use f() for FLOAT). */
export function setAttr(node: NodeProto, name: string, value: AttrInput): void {
  node.attribute = [...(node.attribute ?? []).filter((a) => a.name !== name), ...encodeAttrs({ [name]: value })];
}

export type AttrValue = number | number[] | string | TensorProto | AttributeProto;

/** Read one attribute of a node as a plain value (INT/FLOAT -> number, INTS/FLOATS -> number[], STRING -> string). */
export function getAttr(node: NodeProto, name: string): AttrValue | undefined {
  const a = (node.attribute ?? []).find((x) => x.name === name);
  if (!a) return undefined;
  switch (a.type) {
    case 1: return a.f ?? 0;
    case 2: return toNum(a.i ?? 0);
    case 3: return new TextDecoder().decode(a.s ?? new Uint8Array());
    case 4: return a.t ?? undefined;
    case 6: return [...(a.floats ?? [])];
    case 7: return (a.ints ?? []).map(toNum);
    default: return a;
  }
}

export function attrInt(node: NodeProto, name: string, dflt: number): number {
  const v = getAttr(node, name);
  return typeof v === 'number' ? v : dflt;
}
export function attrFloat(node: NodeProto, name: string, dflt: number): number {
  const v = getAttr(node, name);
  return typeof v === 'number' ? v : dflt;
}
export function attrInts(node: NodeProto, name: string): number[] | undefined {
  const v = getAttr(node, name);
  return Array.isArray(v) ? v : undefined;
}
export function attrString(node: NodeProto, name: string, dflt: string): string {
  const v = getAttr(node, name);
  return typeof v === 'string' ? v : dflt;
}

/** Opset of the default (ai.onnx) domain. */
export function defaultOpset(model: ModelProto): number {
  const imp = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  return imp ? toNum(imp.version) : 0;
}
