/**
 * The word-level tokenizer of the built-in text model, read from the JSON that models/build.py
 * writes (models/mail-tokenizer.json), giving exactly the ids the training script gave.
 *
 * Rules (mirrored by models/build.py `words` / `Tokenizer.encode`):
 *   normalise  lower-case A-Z only (every other character is left as it is);
 *   words      maximal runs of [a-z0-9]; '$' and '!' are one-character words; every other
 *              character (whitespace, punctuation, anything non-ASCII) separates words;
 *   ids        [CLS], then the id of each of the first maxLength - 1 words ([UNK] if not in the vocab);
 *   padding    right, with [PAD]; the model masks [PAD], so padding never changes its output.
 */

import { readFileSync } from 'node:fs';

import { TokenizerFormatError } from './errors.js';

/** The JSON shape of a tokenizer file. */
export interface TokenizerSpec {
  type: 'word-level';
  version: 1;
  maxLength: number;
  padId: number;
  unkId: number;
  clsId: number;
  /** Token strings; index = id. */
  vocab: string[];
}

/** Int64 ids ready for an onnxruntime tensor of shape `dims`. */
export interface EncodedBatch {
  ids: BigInt64Array;
  dims: [number, number];
}

/** Options of {@link Tokenizer.encodeBatch}. */
export interface EncodeBatchOptions {
  /** 'longest' (default): pad to the longest row; a number: pad every row to exactly that many ids (<= maxLength). */
  padTo?: 'longest' | number;
}

const ZERO = 0x30;
const NINE = 0x39;
const UPPER_A = 0x41;
const UPPER_Z = 0x5a;
const LOWER_A = 0x61;
const LOWER_Z = 0x7a;
const DOLLAR = 0x24;
const BANG = 0x21;

/** The words of `text` (normalised and split as in the file header). */
export function words(text: string): string[] {
  if (typeof text !== 'string') throw new TypeError(`text must be a string, got ${typeof text}`);
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c >= UPPER_A && c <= UPPER_Z) c += 32;
    if ((c >= LOWER_A && c <= LOWER_Z) || (c >= ZERO && c <= NINE)) {
      cur += String.fromCharCode(c);
      continue;
    }
    if (cur !== '') {
      out.push(cur);
      cur = '';
    }
    if (c === DOLLAR) out.push('$');
    else if (c === BANG) out.push('!');
  }
  if (cur !== '') out.push(cur);
  return out;
}

/** A word-level tokenizer (see the file header). */
export class Tokenizer {
  /** Longest id sequence, [CLS] included. */
  readonly maxLength: number;
  readonly padId: number;
  readonly unkId: number;
  readonly clsId: number;
  readonly vocabSize: number;
  private readonly ids: Map<string, number>;
  private readonly vocab: readonly string[];

  /** Validates `spec`; TOKENIZER_FORMAT when it is not a word-level tokenizer of our shape. */
  constructor(spec: TokenizerSpec) {
    checkSpec(spec);
    this.maxLength = spec.maxLength;
    this.padId = spec.padId;
    this.unkId = spec.unkId;
    this.clsId = spec.clsId;
    this.vocabSize = spec.vocab.length;
    this.vocab = spec.vocab.slice();
    this.ids = new Map(spec.vocab.map((w, i) => [w, i]));
  }

  /** [CLS] + the ids of the first maxLength - 1 words, unpadded (int32). */
  encode(text: string): Int32Array {
    const ws = words(text);
    const n = Math.min(ws.length, this.maxLength - 1);
    const out = new Int32Array(n + 1);
    out[0] = this.clsId;
    for (let i = 0; i < n; i++) out[i + 1] = this.ids.get(ws[i] as string) ?? this.unkId;
    return out;
  }

  /** Encodes and right-pads a batch into int64 [n, t] for the model's `input_ids`. */
  encodeBatch(texts: readonly string[], options: EncodeBatchOptions = {}): EncodedBatch {
    if (!Array.isArray(texts)) throw new TypeError('texts must be an array of strings');
    const rows = texts.map((t) => this.encode(t));
    const { padTo = 'longest' } = options;
    let t: number;
    if (padTo === 'longest') {
      t = rows.reduce((m, r) => Math.max(m, r.length), 1);
    } else if (typeof padTo === 'number') {
      if (!Number.isInteger(padTo) || padTo < 1 || padTo > this.maxLength) {
        throw new RangeError(`padTo must be an integer in [1, ${this.maxLength}], got ${padTo}`);
      }
      t = padTo;
    } else {
      throw new TypeError(`padTo must be 'longest' or a number, got ${String(padTo)}`);
    }
    const ids = new BigInt64Array(rows.length * t).fill(BigInt(this.padId));
    rows.forEach((r, i) => {
      for (let j = 0; j < Math.min(r.length, t); j++) ids[i * t + j] = BigInt(r[j] as number);
    });
    return { ids, dims: [rows.length, t] };
  }

  /** The token string of an id (for debugging and tests). */
  token(id: number): string | undefined {
    return this.vocab[id];
  }
}

/** Reads a tokenizer file written by models/build.py. */
export function loadTokenizer(path: string): Tokenizer {
  if (typeof path !== 'string') throw new TypeError(`path must be a string, got ${typeof path}`);
  return parseTokenizer(readFileSync(path, 'utf8'), path);
}

/** Parses tokenizer JSON text (`source` only names it in errors). */
export function parseTokenizer(json: string, source = 'tokenizer'): Tokenizer {
  let spec: unknown;
  try {
    spec = JSON.parse(json);
  } catch (err) {
    throw new TokenizerFormatError(`${source} is not JSON: ${String(err)}`, { source });
  }
  return new Tokenizer(spec as TokenizerSpec);
}

function checkSpec(spec: unknown): asserts spec is TokenizerSpec {
  const s = spec as Partial<TokenizerSpec> | null;
  const fail = (why: string): never => {
    throw new TokenizerFormatError(`not a word-level tokenizer: ${why}`);
  };
  if (s === null || typeof s !== 'object') fail('expected an object');
  const t = s as Partial<TokenizerSpec>;
  if (t.type !== 'word-level') fail(`type is ${JSON.stringify(t.type)}, expected "word-level"`);
  if (t.version !== 1) fail(`version is ${JSON.stringify(t.version)}, expected 1`);
  if (!Array.isArray(t.vocab) || t.vocab.some((w) => typeof w !== 'string')) fail('vocab must be an array of strings');
  const n = (t.vocab as string[]).length;
  for (const k of ['padId', 'unkId', 'clsId'] as const) {
    const v = t[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= n) fail(`${k} must be an id below ${n}`);
  }
  if (typeof t.maxLength !== 'number' || !Number.isInteger(t.maxLength) || t.maxLength < 2) fail('maxLength must be an integer >= 2');
}
