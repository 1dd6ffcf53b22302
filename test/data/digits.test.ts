import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import {
  DIGIT_PIXELS,
  applyStyle,
  digitSamples,
  digitSplitIndices,
  digitStream,
  loadDigits,
  userStyle,
  type DataError,
  type DigitSample,
} from '../../src/data/index.js';

const take = (it: Iterable<DigitSample>, n: number): DigitSample[] => {
  const out: DigitSample[] = [];
  for (const s of it) {
    out.push(s);
    if (out.length === n) break;
  }
  return out;
};

const tmp = mkdtempSync(join(tmpdir(), 'digits-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('loadDigits and the splits', () => {
  it('reads all 10 000 digits of the mnist package, pixels in [0, 1]', () => {
    const d = loadDigits();
    expect(d.count).toBe(10_000);
    expect(d.images.length).toBe(10_000 * DIGIT_PIXELS);
    let min = Infinity;
    let max = -Infinity;
    for (const v of d.images) {
      if (v < min) min = v;
      if (v > max) max = v;
    }
    expect(min).toBe(0);
    expect(max).toBe(1);
    expect(new Set(d.labels)).toEqual(new Set([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
  });

  it('partitions the digits into disjoint train / heldout / stream splits', () => {
    const train = digitSplitIndices('train');
    const heldout = digitSplitIndices('heldout');
    const stream = digitSplitIndices('stream');
    expect([train.length, heldout.length, stream.length]).toEqual([8006, 997, 997]);
    const all = new Set([...train, ...heldout, ...stream]);
    expect(all.size).toBe(10_000);
    const d = loadDigits();
    for (const k of heldout) expect((d.indexInClass[k] as number) % 10).toBe(8);
    for (const k of stream) expect((d.indexInClass[k] as number) % 10).toBe(9);
  });

  it('digitSamples returns the split in class-then-index order', () => {
    const s = digitSamples('heldout');
    expect(s.count).toBe(997);
    expect(s.images.length).toBe(997 * DIGIT_PIXELS);
    for (let i = 1; i < s.count; i++) expect(s.labels[i]! >= s.labels[i - 1]!).toBe(true);
  });

  it('rejects an unknown split', () => {
    expect(() => digitSplitIndices('test' as 'train')).toThrow(RangeError);
    expect(() => digitSamples(3 as unknown as 'train')).toThrow(TypeError);
  });
});

describe('userStyle and applyStyle', () => {
  it('is fixed per user and covers every kind with users 0..4', () => {
    expect(userStyle(5)).toEqual(userStyle(5));
    expect(new Set([0, 1, 2, 3, 4].map((u) => userStyle(u).kind))).toEqual(
      new Set(['rotation', 'shear', 'thickness', 'inversion', 'mix']),
    );
    expect(userStyle(0)).not.toEqual(userStyle(5)); // same kind, own parameters
  });

  it('inversion maps v to 1 - v', () => {
    const img = digitSamples('heldout').images.slice(0, DIGIT_PIXELS);
    const inv = applyStyle(img, userStyle(3));
    for (let i = 0; i < DIGIT_PIXELS; i++) expect(inv[i]).toBeCloseTo(1 - img[i]!, 6);
  });

  it('rotation and shear move ink but keep most of it; thickness adds or removes ink', () => {
    const img = digitSamples('heldout').images.slice(0, DIGIT_PIXELS);
    const ink = (a: Float32Array): number => a.reduce((s, v) => s + v, 0);
    const base = ink(img);
    for (const user of [0, 1]) {
      const out = applyStyle(img, userStyle(user));
      expect(out).not.toEqual(img);
      expect(ink(out) / base).toBeGreaterThan(0.7);
      expect(ink(out) / base).toBeLessThan(1.3);
      for (const v of out) expect(v >= 0 && v <= 1).toBe(true);
    }
    const thick = userStyle(2);
    const out = applyStyle(img, thick);
    if (thick.thickness > 0) expect(ink(out)).toBeGreaterThan(base * 1.2);
    else expect(ink(out)).toBeLessThan(base * 0.8);
  });

  it('does not modify its input and rejects bad images and users', () => {
    const img = digitSamples('heldout').images.slice(0, DIGIT_PIXELS);
    const copy = img.slice();
    applyStyle(img, userStyle(4));
    expect(img).toEqual(copy);
    expect(() => applyStyle(new Float32Array(10), userStyle(0))).toThrow(RangeError);
    expect(() => applyStyle([0] as unknown as Float32Array, userStyle(0))).toThrow(TypeError);
    expect(() => userStyle(-1)).toThrow(RangeError);
    expect(() => userStyle(1.5)).toThrow(RangeError);
    expect(() => userStyle('1' as unknown as number)).toThrow(TypeError);
  });
});

describe('digitStream', () => {
  it('is deterministic for a (user, seed)', () => {
    const a = take(digitStream({ user: 1, seed: 7 }), 50);
    const b = take(digitStream({ user: 1, seed: 7 }), 50);
    expect(a.map((s) => s.source)).toEqual(b.map((s) => s.source));
    expect(a.map((s) => s.label)).toEqual(b.map((s) => s.label));
    expect(a[0]!.image).toEqual(b[0]!.image);
    expect(a.map((s) => s.position)).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('visits every digit of its split once; the seed changes only the order', () => {
    const a = [...digitStream({ user: 0, seed: 1 })];
    const b = [...digitStream({ user: 0, seed: 2 })];
    expect(a.length).toBe(997);
    expect(new Set(a.map((s) => s.source))).toEqual(new Set(digitSplitIndices('stream')));
    expect(a.map((s) => s.source)).not.toEqual(b.map((s) => s.source));
    expect([...a.map((s) => s.source)].sort()).toEqual([...b.map((s) => s.source)].sort());
  });

  it('never streams a pretraining digit; heldout is a separate split', () => {
    const train = new Set(digitSplitIndices('train'));
    const stream = [...digitStream({ user: 2, seed: 0 })].map((s) => s.source);
    const held = [...digitStream({ user: 2, seed: 0, split: 'heldout' })].map((s) => s.source);
    for (const k of [...stream, ...held]) expect(train.has(k)).toBe(false);
    const streamSet = new Set(stream);
    for (const k of held) expect(streamSet.has(k)).toBe(false);
    expect(new Set(held)).toEqual(new Set(digitSplitIndices('heldout')));
  });

  it('gives different users different images of the same digit', () => {
    const heldIdx = digitSplitIndices('heldout');
    const first = heldIdx[0]!;
    const imageOf = (user: number): Float32Array =>
      [...digitStream({ user, seed: 0, split: 'heldout' })].find((s) => s.source === first)!.image;
    const images = [0, 1, 2, 3, 4, 5].map(imageOf);
    for (let i = 0; i < images.length; i++) {
      for (let j = i + 1; j < images.length; j++) expect(images[i]).not.toEqual(images[j]);
    }
    // and a different order
    const order = (user: number): number[] => take(digitStream({ user, seed: 0 }), 20).map((s) => s.source);
    expect(order(0)).not.toEqual(order(1));
  });

  it('rejects bad options', () => {
    expect(() => digitStream(undefined as unknown as { user: number; seed: number }).next()).toThrow(TypeError);
    expect(() => digitStream({ user: -2, seed: 0 }).next()).toThrow(RangeError);
    expect(() => digitStream({ user: 0, seed: 0.5 }).next()).toThrow(RangeError);
    expect(() => digitStream({ user: 0, seed: 0, split: 'train' as 'stream' }).next()).toThrow(RangeError);
  });
});

describe('DATASET_MISSING', () => {
  it('names the mnist package when it is not installed', () => {
    const missing = join(tmp, 'nowhere');
    try {
      loadDigits({ packageDir: missing });
      expect.unreachable();
    } catch (err) {
      expect((err as DataError).code).toBe('DATASET_MISSING');
      expect((err as DataError).details?.package).toBe('mnist');
      expect((err as Error).message).toContain("'mnist'");
    }
    expect(() => digitStream({ user: 0, seed: 0, packageDir: missing }).next()).toThrow(
      expect.objectContaining({ code: 'DATASET_MISSING' }),
    );
  });

  it('names the package when one of its files is missing', () => {
    const dir = join(tmp, 'mnist-empty');
    mkdirSync(dir);
    writeFileSync(join(dir, 'package.json'), '{"name": "mnist", "version": "0.0.0"}');
    expect(() => loadDigits({ packageDir: dir })).toThrow(
      expect.objectContaining({ code: 'DATASET_MISSING', details: expect.objectContaining({ package: 'mnist' }) }),
    );
  });
});
