/**
 * The safetensors format (huggingface/safetensors): an 8-byte little-endian header length, a JSON
 * header `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}` padded with
 * spaces to 8 bytes, then the little-endian tensor bytes. Written and read here so exports need no
 * Python; reading validates every offset, since state files come back from users.
 */
import { InvalidInputError } from '../errors.js';

export type SafeDtype = 'F32' | 'F64' | 'I32' | 'I64' | 'U8';

export interface SafeTensor {
  dtype: SafeDtype;
  shape: number[];
  data: Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;
}

const BYTES: Record<SafeDtype, number> = { F32: 4, F64: 8, I32: 4, I64: 8, U8: 1 };
const CTOR = { F32: Float32Array, F64: Float64Array, I32: Int32Array, I64: BigInt64Array, U8: Uint8Array } as const;

/** Encode tensors (written in name order, so the bytes are deterministic) and string metadata. */
export function encodeSafetensors(tensors: Record<string, SafeTensor>, metadata: Record<string, string> = {}): Uint8Array {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const t = tensors[name]!;
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new RangeError(`tensor '${name}': ${t.data.length} values for shape [${t.shape.join(', ')}]`);
    const len = t.data.byteLength;
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + len] };
    offset += len;
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let pos = 8 + headerBytes.length;
  for (const name of names) {
    const d = tensors[name]!.data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), pos);
    pos += d.byteLength;
  }
  return out;
}

/** Decode and validate a safetensors file. */
export function decodeSafetensors(bytes: Uint8Array): { tensors: Record<string, SafeTensor>; metadata: Record<string, string> } {
  const bad = (msg: string) => new InvalidInputError(`not a valid safetensors file: ${msg}`);
  if (bytes.length < 8) throw bad('shorter than its 8-byte header length');
  const hlen = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (hlen > bytes.length - 8 || hlen > 100_000_000) throw bad(`header length ${hlen} exceeds the file`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + hlen)));
  } catch {
    throw bad('header is not JSON');
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw bad('header is not an object');
  const base = 8 + hlen;
  const dataLen = bytes.length - base;
  const metadata = (header.__metadata__ ?? {}) as Record<string, string>;
  const tensors: Record<string, SafeTensor> = {};
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const e = raw as { dtype?: string; shape?: unknown; data_offsets?: unknown };
    if (!e || !(e.dtype! in BYTES)) throw bad(`tensor '${name}' has unsupported dtype ${String(e?.dtype)}`);
    const dtype = e.dtype as SafeDtype;
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) throw bad(`tensor '${name}' has an invalid shape`);
    const off = e.data_offsets as number[];
    if (!Array.isArray(off) || off.length !== 2 || !(off[0]! >= 0 && off[1]! >= off[0]! && off[1]! <= dataLen)) throw bad(`tensor '${name}' has invalid offsets`);
    const n = (e.shape as number[]).reduce((a, b) => a * b, 1);
    if (off[1]! - off[0]! !== n * BYTES[dtype]) throw bad(`tensor '${name}' has ${off[1]! - off[0]!} bytes for shape [${(e.shape as number[]).join(', ')}]`);
    const copy = bytes.slice(base + off[0]!, base + off[1]!);
    tensors[name] = { dtype, shape: e.shape as number[], data: new CTOR[dtype](copy.buffer, 0, n) };
  }
  return { tensors, metadata };
}
