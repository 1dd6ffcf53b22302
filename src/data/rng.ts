/**
 * A small seeded PRNG (xoshiro128**, seeded through splitmix32) so that every split, order and
 * per-user style in src/data is a pure function of integer seeds, on every platform.
 */

/** Deterministic random source. Not cryptographic. */
export interface Rng {
  /** Next uniform uint32. */
  nextUint32(): number;
  /** Next uniform float64 in [0, 1) (32 random bits). */
  next(): number;
  /** Uniform float64 in [lo, hi). */
  uniform(lo: number, hi: number): number;
  /** Uniform integer in [0, n), unbiased; n a positive integer <= 2^32. */
  int(n: number): number;
  /** Shuffles `items` in place (Fisher–Yates) and returns it. */
  shuffle<T>(items: T[]): T[];
}

/** Checks that `seed` is a safe integer: TypeError for a non-number, RangeError for a bad value. */
export function checkSeed(seed: unknown, name = 'seed'): number {
  if (typeof seed !== 'number') throw new TypeError(`${name} must be a number, got ${typeof seed}`);
  if (!Number.isSafeInteger(seed)) throw new RangeError(`${name} must be a safe integer, got ${seed}`);
  return seed;
}

/** murmur3's 32-bit finaliser: a bijective avalanche on uint32. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Hashes a list of safe integers (seed, stream ids, user ids, ...) to one uint32. */
export function hashSeeds(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    const lo = p >>> 0; // low 32 bits (two's complement for negatives)
    const hi = Math.floor(p / 0x1_0000_0000) >>> 0;
    h = fmix32((h ^ lo) + 0x7f4a7c15);
    h = fmix32((h ^ hi) + 0x6a09e667);
  }
  return h;
}

/** A PRNG whose sequence is fixed by the integer seed(s); `createRng(s, a)` and `createRng(s, b)` are independent streams. */
export function createRng(seed: number, ...streams: number[]): Rng {
  checkSeed(seed);
  streams.forEach((s, i) => checkSeed(s, `stream[${i}]`));
  let x = hashSeeds(seed, ...streams);
  const splitmix32 = (): number => {
    x = (x + 0x9e3779b9) >>> 0;
    return fmix32(x);
  };
  let s0 = splitmix32();
  let s1 = splitmix32();
  let s2 = splitmix32();
  let s3 = splitmix32();
  if ((s0 | s1 | s2 | s3) === 0) s0 = 1; // the all-zero state is a fixed point

  const nextUint32 = (): number => {
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = rotl(s3, 11);
    return result;
  };
  const next = (): number => nextUint32() / 0x1_0000_0000;
  const int = (n: number): number => {
    if (!Number.isInteger(n) || n < 1 || n > 0x1_0000_0000) {
      throw new RangeError(`int(n) needs an integer n in [1, 2^32], got ${n}`);
    }
    // Rejection sampling: accept only below the largest multiple of n.
    const limit = 0x1_0000_0000 - (0x1_0000_0000 % n);
    for (;;) {
      const v = nextUint32();
      if (v < limit) return v % n;
    }
  };
  return {
    nextUint32,
    next,
    uniform: (lo, hi) => lo + (hi - lo) * next(),
    int,
    shuffle<T>(items: T[]): T[] {
      for (let i = items.length - 1; i > 0; i--) {
        const j = int(i + 1);
        const tmp = items[i] as T;
        items[i] = items[j] as T;
        items[j] = tmp;
      }
      return items;
    },
  };
}

function rotl(v: number, k: number): number {
  return ((v << k) | (v >>> (32 - k))) >>> 0;
}
