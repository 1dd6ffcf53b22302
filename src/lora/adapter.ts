/**
 * Adapters as data: the per-site shapes, PEFT-style initialisation (A Kaiming-uniform, B = 0), and
 * the flat parameter vector θ the optimizers work on — every site's A then B, row-major, in site
 * order — with the block layout K-FAC needs.
 */
import { InvalidInputError } from '../errors.js';
import type { AdapterMatrices } from './merge.js';

/** The shape of one adapted module. */
export interface SiteShape {
  module: string;
  rank: number;
  in: number;
  out: number;
}

/** One row-major block of θ: `<module>.lora_A` [r, in] or `<module>.lora_B` [out, r]. */
export interface ThetaBlock {
  name: string;
  module: string;
  matrix: 'A' | 'B';
  rows: number;
  cols: number;
  offset: number;
}

/** θ's layout: its size and blocks. */
export interface ThetaLayout {
  n: number;
  blocks: ThetaBlock[];
}

export function thetaLayout(sites: readonly SiteShape[]): ThetaLayout {
  const blocks: ThetaBlock[] = [];
  let offset = 0;
  for (const s of sites) {
    blocks.push({ name: `${s.module}.lora_A`, module: s.module, matrix: 'A', rows: s.rank, cols: s.in, offset });
    offset += s.rank * s.in;
    blocks.push({ name: `${s.module}.lora_B`, module: s.module, matrix: 'B', rows: s.out, cols: s.rank, offset });
    offset += s.out * s.rank;
  }
  return { n: offset, blocks };
}

/** A small seeded generator (mulberry32) so initialisation is reproducible from the adapter's seed. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * PEFT's default initialisation: A ~ Kaiming-uniform with a = √5, i.e. U(−1/√in, 1/√in); B = 0, so
 * the adapted model starts exactly at the base model.
 */
export function initTheta(sites: readonly SiteShape[], seed: number): Float64Array {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new RangeError(`seed must be an integer in [0, 2^32), got ${seed}`);
  const layout = thetaLayout(sites);
  const theta = new Float64Array(layout.n);
  const rand = mulberry32(seed);
  for (const b of layout.blocks) {
    if (b.matrix !== 'A') continue;
    const bound = 1 / Math.sqrt(b.cols);
    for (let i = 0; i < b.rows * b.cols; i++) theta[b.offset + i] = Math.fround((rand() * 2 - 1) * bound);
  }
  return theta;
}

/** Split θ into per-module float32 matrices (graph inputs, exports). */
export function thetaToMatrices(sites: readonly SiteShape[], theta: Float64Array | Float32Array): Record<string, AdapterMatrices> {
  const layout = thetaLayout(sites);
  if (theta.length !== layout.n) throw new InvalidInputError(`θ has ${theta.length} values; the adapter has ${layout.n}`);
  const out: Record<string, AdapterMatrices> = {};
  for (const b of layout.blocks) {
    const m = (out[b.module] ??= { A: new Float32Array(0), B: new Float32Array(0) });
    m[b.matrix] = new Float32Array(theta.subarray(b.offset, b.offset + b.rows * b.cols));
  }
  return out;
}

/** Join per-module matrices back into θ (float64). */
export function matricesToTheta(sites: readonly SiteShape[], mats: Readonly<Record<string, AdapterMatrices>>): Float64Array {
  const layout = thetaLayout(sites);
  const theta = new Float64Array(layout.n);
  for (const b of layout.blocks) {
    const m = mats[b.module]?.[b.matrix];
    if (!m || m.length !== b.rows * b.cols) throw new InvalidInputError(`missing or mis-shaped ${b.name}: expected [${b.rows}, ${b.cols}]`, { tensor: b.name });
    theta.set(m, b.offset);
  }
  return theta;
}
