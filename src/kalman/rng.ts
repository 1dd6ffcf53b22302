/**
 * The seeded deterministic PRNG of src/kalman: xoshiro128** (Blackman & Vigna) seeded through
 * splitmix32. Its whole state is four uint32 words, so it serializes exactly and a deserialized
 * optimizer continues the same stream. Not for cryptography.
 */
import { KalmanError } from './errors.js';

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** One splitmix32 round: advances `seed` by the golden-ratio increment and returns a mixed word. */
function splitmix32(seed: number): [next: number, out: number] {
  const next = (seed + 0x9e3779b9) | 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  z ^= z >>> 16;
  return [next, z >>> 0];
}

/** xoshiro128**: a small, fast, seeded generator with a 128-bit state (period 2^128 − 1). */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** Builds a generator from a raw state (four uint32 words, not all zero). Use `createRng` to seed. */
  constructor(state: ArrayLike<number>) {
    if (state.length !== 4) {
      throw new KalmanError('OPTIMIZER_STATE', `rng state must have 4 words, got ${state.length}`);
    }
    this.s0 = state[0] >>> 0;
    this.s1 = state[1] >>> 0;
    this.s2 = state[2] >>> 0;
    this.s3 = state[3] >>> 0;
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) {
      throw new KalmanError('OPTIMIZER_STATE', 'rng state must not be all zero');
    }
  }

  /** The next uint32 of the stream. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    this.s0 >>>= 0;
    this.s1 >>>= 0;
    this.s2 >>>= 0;
    this.s3 >>>= 0;
    return result;
  }

  /** A float64 uniform in [0, 1) with 53 random bits (two draws). */
  uniform(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** A copy of the four state words (uint32). */
  getState(): Uint32Array {
    return Uint32Array.of(this.s0, this.s1, this.s2, this.s3);
  }
}

/**
 * A generator seeded from a non-negative safe integer; the same seed always gives the same stream.
 * Both 32-bit halves of the seed matter, so seeds 1 and 2^32 + 1 differ.
 */
export function createRng(seed: number): Rng {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new KalmanError('OPTIMIZER_CONFIG', `seed must be a non-negative safe integer, got ${String(seed)}`, {
      field: 'seed',
      value: seed,
    });
  }
  const lo = seed >>> 0;
  const hi = Math.floor(seed / 4294967296) >>> 0;
  const words = new Uint32Array(4);
  let a = lo;
  let b = hi ^ 0x6a09e667;
  for (let i = 0; i < 4; i++) {
    let outA: number;
    let outB: number;
    [a, outA] = splitmix32(a);
    [b, outB] = splitmix32(b);
    words[i] = (outA ^ rotl(outB, 13)) >>> 0;
  }
  if ((words[0] | words[1] | words[2] | words[3]) === 0) words[0] = 1;
  return new Rng(words);
}
