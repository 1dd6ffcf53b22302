/**
 * The finite-difference harness for gradient rules: builds tiny ONNX models in TypeScript (a single op or
 * a few), runs the gradient model that `buildGradientModel` makes, and compares its vector-Jacobian
 * product with central differences of L(x) = Σ w ⊙ y (w fixed and random, L accumulated in float64).
 *
 * Every perturbed point is rounded to float32 before it is fed, so the comparison uses the step that was
 * actually taken, ⟨g, x⁺ − x⁻⟩ against L(x⁺) − L(x⁻), rather than the intended ±εv.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { buildGradientModel } from '../../../src/onnx/gradient-model.js';
import { encodeModel } from '../../../src/onnx/model.js';
import { OnnxRuntime, type Tensor } from '../../../src/onnx/runtime.js';
import { DT, encodeAttrs, floatTensor, int64Tensor, valueToTensor, type AttrInput, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto } from '../../../src/onnx/proto.js';

/** Element types of graph inputs and outputs. `bool` is for outputs only: `Session.run` feeds a
 * Uint8Array as uint8, so a bool graph input cannot be fed (see the Where cases). */
export type ValueDtype = 'float32' | 'int64' | 'int32' | 'bool';

/**
 * How an input's values are drawn: `normal` N(0, 1); `positive` uniform in [0.5, 2]; `away` |x| in
 * [0.2, 1.5] with a random sign (no kinks at 0); `distinct` values on a shuffled grid with spacing 0.05
 * shared by every `distinct` input of the case (no ties anywhere, even across broadcast inputs); or
 * explicit values.
 */
export type Gen = 'normal' | 'positive' | 'away' | 'distinct' | readonly number[];

export interface InputSpec {
  name: string;
  /** Declared dims; strings are symbolic (`N`). */
  shape: readonly (number | string)[];
  /** Dims fed in the check; default: `shape` with symbolic dims taken from `SYMBOLS`. */
  run?: readonly number[];
  dtype?: Exclude<ValueDtype, 'bool'>;
  gen?: Gen;
  /** Differentiate with respect to it (default: every float32 input). */
  wrt?: boolean;
}

export interface NodeSpec {
  op: string;
  inputs: readonly string[];
  outputs: readonly string[];
  attrs?: Record<string, AttrInput | undefined>;
  name?: string;
  domain?: string;
}

export interface GraphSpec {
  opset: number;
  inputs: readonly InputSpec[];
  nodes: readonly NodeSpec[];
  /** Graph outputs (float32 unless typed). */
  outputs: readonly (string | { name: string; dtype: ValueDtype })[];
  initializers?: readonly TensorProto[];
  /** Extra opset imports (custom domains). */
  imports?: readonly { domain: string; version: number }[];
}

/** One finite-difference case: the op under test, a label for its shape/attributes, and the graph. */
export interface GradCase extends GraphSpec {
  op: string;
  label: string;
  /** Relative tolerance (default 1e-2). */
  tol?: number;
  /** Finite-difference step (default 1e-3). */
  eps?: number;
  /** Outputs that get a seed and enter L (default: every float32 graph output). */
  seeded?: readonly string[];
}

/** Values given to symbolic dims in the checks (the shape probes use 2/3 and 5/7, so these differ). */
export const SYMBOLS: Readonly<Record<string, number>> = { N: 4, H: 6, W: 9 };

const ELEM: Record<ValueDtype, number> = { float32: DT.FLOAT, int64: DT.INT64, int32: DT.INT32, bool: DT.BOOL };

function valueInfo(name: string, dtype: ValueDtype, shape?: readonly (number | string)[]): ValueInfoProto {
  const tensorType: NonNullable<NonNullable<ValueInfoProto['type']>['tensorType']> = { elemType: ELEM[dtype] };
  if (shape) tensorType.shape = { dim: shape.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) };
  return { name, type: { tensorType } };
}

/** A ModelProto for the spec: IR 9, the default domain at `opset`. */
export function buildModel(spec: GraphSpec): ModelProto {
  const nodes: NodeProto[] = spec.nodes.map((n, k) => ({
    opType: n.op,
    domain: n.domain ?? '',
    name: n.name ?? `${n.op.toLowerCase()}_${k}`,
    input: [...n.inputs],
    output: [...n.outputs],
    attribute: encodeAttrs(n.attrs ?? {}),
  }));
  return {
    irVersion: 9,
    producerName: 'gradient-check',
    opsetImport: [{ domain: '', version: spec.opset }, ...(spec.imports ?? [])],
    graph: {
      name: 'g',
      input: spec.inputs.map((i) => valueInfo(i.name, i.dtype ?? 'float32', i.shape)),
      output: spec.outputs.map((o) => (typeof o === 'string' ? valueInfo(o, 'float32') : valueInfo(o.name, o.dtype))),
      node: nodes,
      initializer: [...(spec.initializers ?? [])],
    },
  };
}

/** Deterministic PRNG (mulberry32) seeded from a string. */
export function rng(seedText: string): { uniform(): number; normal(): number } {
  let s = 0x9e3779b9;
  for (let i = 0; i < seedText.length; i++) s = Math.imul(s ^ seedText.charCodeAt(i), 0x85ebca6b) >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  return { uniform, normal };
}

const count = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);

export function runDims(i: InputSpec): number[] {
  if (i.run) return [...i.run];
  return i.shape.map((d) => {
    if (typeof d === 'number') return d;
    const v = SYMBOLS[d];
    if (v === undefined) throw new Error(`no value for symbolic dim '${d}'`);
    return v;
  });
}

/** Feeds for a case's inputs, drawn deterministically from the case label. */
export function makeFeeds(spec: GraphSpec, seedText: string): Record<string, Tensor> {
  const r = rng(seedText);
  const distinctTotal = spec.inputs.filter((i) => i.gen === 'distinct').reduce((a, i) => a + count(runDims(i)), 0);
  const grid = Array.from({ length: distinctTotal }, (_, k) => (k - distinctTotal / 2) * 0.05 + 0.013);
  for (let k = grid.length - 1; k > 0; k--) {
    const j = Math.floor(r.uniform() * (k + 1));
    [grid[k], grid[j]] = [grid[j]!, grid[k]!];
  }
  let next = 0;
  const feeds: Record<string, Tensor> = {};
  for (const i of spec.inputs) {
    const dims = runDims(i);
    const n = count(dims);
    const dtype = i.dtype ?? 'float32';
    const gen = i.gen ?? 'normal';
    const draw = (k: number): number => {
      if (typeof gen !== 'string') {
        const v = gen[k];
        if (v === undefined) throw new Error(`input '${i.name}' needs ${n} values, got ${gen.length}`);
        return v;
      }
      switch (gen) {
        case 'normal': return r.normal();
        case 'positive': return 0.5 + 1.5 * r.uniform();
        case 'away': return (r.uniform() < 0.5 ? -1 : 1) * (0.2 + 1.3 * r.uniform());
        case 'distinct': return grid[next++]!;
      }
    };
    const values = Array.from({ length: n }, (_, k) => draw(k));
    if (dtype === 'float32') feeds[i.name] = { data: Float32Array.from(values), dims };
    else if (dtype === 'int64') feeds[i.name] = { data: BigInt64Array.from(values.map((v) => BigInt(Math.round(v)))), dims };
    else feeds[i.name] = { data: Int32Array.from(values.map(Math.round)), dims };
  }
  return feeds;
}

export function wrtOf(spec: GraphSpec): string[] {
  return spec.inputs.filter((i) => i.wrt ?? (i.dtype ?? 'float32') === 'float32').map((i) => i.name);
}

function outputNames(spec: GraphSpec): string[] {
  return spec.outputs.filter((o) => typeof o === 'string' || o.dtype === 'float32').map((o) => (typeof o === 'string' ? o : o.name));
}

export interface CheckReport {
  /** Largest relative error seen over all checks, before the float32 rounding allowance. */
  worst: number;
  checks: number;
}

/**
 * Run the finite-difference check on one case and assert it passes: 3 random directions over all wrt
 * inputs jointly, and for each wrt input its largest-gradient coordinate plus 2 random ones.
 */
export async function checkCase(c: GradCase, rt: OnnxRuntime): Promise<CheckReport> {
  const model = buildModel(c);
  const wrt = wrtOf(c);
  const outs = c.seeded ? [...c.seeded] : outputNames(c);
  const tol = c.tol ?? 1e-2;
  const eps = c.eps ?? 1e-3;
  const r = rng(`${c.op}/${c.label}/directions`);
  const feeds = makeFeeds(c, `${c.op}/${c.label}`);

  const gradBytes = await buildGradientModel(model, { wrt, outputs: outs }, rt);
  const fwd = await rt.open(encodeModel(model));
  const grad = await rt.open(gradBytes);
  try {
    const y0 = await fwd.run(feeds);
    const w = outs.map((o) => Float64Array.from(y0[o]!.data as Float32Array, () => Math.fround(r.normal())));
    const seeds: Record<string, Tensor> = {};
    outs.forEach((o, k) => (seeds[`${o}@grad`] = { data: Float32Array.from(w[k]!), dims: y0[o]!.dims }));
    const res = await grad.run({ ...feeds, ...seeds });

    // The gradient model must reproduce the forward outputs (to rounding: ORT may fuse differently).
    for (const o of outs) {
      const a = res[o]!.data as Float32Array;
      const b = y0[o]!.data as Float32Array;
      expect(a.length).toBe(b.length);
      const off = b.findIndex((v, i) => !(Math.abs(a[i]! - v) <= 1e-5 * (1 + Math.abs(v))));
      expect(off, `gradient model's ${o}[${off}] = ${a[off]} differs from the forward ${b[off]}`).toBe(-1);
    }

    const g = new Map<string, Float32Array>();
    for (const x of wrt) {
      const t = res[`${x}@grad`]!;
      expect(t.dims, `${x}@grad dims`).toEqual(feeds[x]!.dims);
      const data = t.data as Float32Array;
      expect(data.every(Number.isFinite), `${x}@grad is finite`).toBe(true);
      g.set(x, data);
    }
    const gNorm = Math.sqrt([...g.values()].reduce((a, d) => a + d.reduce((p, q) => p + q * q, 0), 0));
    expect(gNorm, 'gradient is not identically zero').toBeGreaterThan(0);

    const loss = (ys: Record<string, Tensor>) => {
      let s = 0;
      outs.forEach((o, k) => {
        const d = ys[o]!.data as Float32Array;
        const wk = w[k]!;
        for (let i = 0; i < d.length; i++) s += wk[i]! * d[i]!;
      });
      return s;
    };
    // Rounding noise of L in float32 outputs, an absolute allowance added to every comparison.
    let absSum = 0;
    outs.forEach((o, k) => {
      const d = y0[o]!.data as Float32Array;
      for (let i = 0; i < d.length; i++) absSum += Math.abs(w[k]![i]! * d[i]!);
    });
    const noise = 2e-6 * absSum;

    let worst = 0;
    let checks = 0;
    const compare = async (dir: Map<string, Float64Array>, what: string) => {
      const plus: Record<string, Tensor> = { ...feeds };
      const minus: Record<string, Tensor> = { ...feeds };
      let analytic = 0;
      for (const [x, v] of dir) {
        const base = feeds[x]!.data as Float32Array;
        const p = Float32Array.from(base, (b, i) => b + eps * v[i]!);
        const m = Float32Array.from(base, (b, i) => b - eps * v[i]!);
        plus[x] = { data: p, dims: feeds[x]!.dims };
        minus[x] = { data: m, dims: feeds[x]!.dims };
        const gx = g.get(x)!;
        for (let i = 0; i < p.length; i++) analytic += gx[i]! * (p[i]! - m[i]!);
      }
      const numeric = loss(await fwd.run(plus)) - loss(await fwd.run(minus));
      const scale = Math.max(Math.abs(analytic), Math.abs(numeric), 2 * eps * 0.05 * gNorm, 1e-12);
      const err = Math.max(0, Math.abs(analytic - numeric) - noise) / scale;
      worst = Math.max(worst, Math.abs(analytic - numeric) / scale);
      checks++;
      expect(err, `${what}: analytic ${analytic.toExponential(4)} vs numeric ${numeric.toExponential(4)} (rel err ${err.toExponential(2)})`).toBeLessThanOrEqual(tol);
    };

    for (let d = 0; d < 3; d++) {
      const dir = new Map(wrt.map((x) => [x, Float64Array.from(feeds[x]!.data as Float32Array, () => r.normal())]));
      await compare(dir, `direction ${d}`);
    }
    for (const x of wrt) {
      const gx = g.get(x)!;
      const n = gx.length;
      let big = 0;
      for (let i = 1; i < n; i++) if (Math.abs(gx[i]!) > Math.abs(gx[big]!)) big = i;
      const coords = [...new Set([big, Math.floor(r.uniform() * n), Math.floor(r.uniform() * n)])];
      for (const i of coords) {
        const e = new Float64Array(n);
        e[i] = 1;
        await compare(new Map([[x, e]]), `${x}[${i}]`);
      }
    }
    return { worst, checks };
  } finally {
    await fwd.release();
    await grad.release();
  }
}

/** Register one vitest test per case, grouped by op, sharing one runtime per file. */
export function defineCases(cases: readonly GradCase[]): void {
  const rt = new OnnxRuntime({ intraOpThreads: 1 });
  afterAll(() => rt.close());
  const ops = [...new Set(cases.map((c) => c.op))];
  for (const op of ops) {
    describe(op, () => {
      for (const c of cases.filter((k) => k.op === op)) {
        it(`${c.label} (opset ${c.opset})`, async () => {
          await checkCase(c, rt);
        });
      }
    });
  }
}

/** A float32 graph input (`gen` defaults to N(0, 1)). */
export function inp(name: string, shape: readonly (number | string)[], gen?: Gen, extra: Partial<InputSpec> = {}): InputSpec {
  return { name, shape, ...(gen === undefined ? {} : { gen }), ...extra };
}

/** A float32 initializer. */
export const cf = (name: string, dims: readonly number[], values: readonly number[]): TensorProto => floatTensor(name, dims, values);
/** An int64 initializer (1-D unless dims say otherwise). */
export const ci = (name: string, values: readonly number[], dims: readonly number[] = [values.length]): TensorProto => int64Tensor(name, dims, values);
/** A bool initializer. */
export const cb = (name: string, values: readonly boolean[], dims: readonly number[] = [values.length]): TensorProto =>
  valueToTensor(name, DT.BOOL, dims, Uint8Array.from(values.map((v) => (v ? 1 : 0))));

/** Deterministic N(0, σ²) values for a weight initializer. */
export function randn(seed: string, n: number, scale = 1): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => scale * r.normal());
}

export interface SingleOpts {
  opset?: number;
  inputs: readonly InputSpec[];
  init?: readonly TensorProto[];
  /** Node inputs; default: the graph inputs, then the initializers, in order. */
  node?: readonly string[];
  attrs?: Record<string, AttrInput | undefined>;
  /** Node outputs (default `['y']`). */
  outs?: readonly string[];
  /** Graph outputs (default: the node outputs). */
  outputs?: GraphSpec['outputs'];
  tol?: number;
  eps?: number;
}

/** A case made of one node of `op` (opset 13 unless given). */
export function single(op: string, label: string, o: SingleOpts): GradCase {
  const init = o.init ?? [];
  const outs = o.outs ?? ['y'];
  return {
    op, label, opset: o.opset ?? 13,
    inputs: o.inputs,
    initializers: init,
    nodes: [{ op, inputs: o.node ?? [...o.inputs.map((i) => i.name), ...init.map((t) => t.name!)], outputs: outs, attrs: o.attrs ?? {} }],
    outputs: o.outputs ?? outs,
    ...(o.tol === undefined ? {} : { tol: o.tol }),
    ...(o.eps === undefined ? {} : { eps: o.eps }),
  };
}
