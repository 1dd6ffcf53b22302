/**
 * Opset-aware emitters for the few ops whose signature changed across opsets 11..20
 * (axes as attribute or input), shared by the engine and the gradient rules.
 */
import type { GraphBuilder } from './builder.js';

/** ReduceSum over `axes` (axes as an input from opset 13, an attribute before). */
export function reduceSum(b: GraphBuilder, opset: number, x: string, axes: number[], keepdims: 0 | 1, hint = 'reduce_sum'): string {
  return opset >= 13
    ? b.op('ReduceSum', [x, b.i64(axes)], { keepdims }, hint)
    : b.op('ReduceSum', [x], { axes, keepdims }, hint);
}

/** ReduceMean over `axes` (an attribute before opset 18, an input from 18). */
export function reduceMean(b: GraphBuilder, opset: number, x: string, axes: number[], keepdims: 0 | 1, hint = 'reduce_mean'): string {
  return opset >= 18
    ? b.op('ReduceMean', [x, b.i64(axes)], { keepdims }, hint)
    : b.op('ReduceMean', [x], { axes, keepdims }, hint);
}

/** Unsqueeze at `axes` (an input from opset 13). */
export function unsqueeze(b: GraphBuilder, opset: number, x: string, axes: number[]): string {
  return opset >= 13 ? b.op('Unsqueeze', [x, b.i64(axes)]) : b.op('Unsqueeze', [x], { axes });
}

/** Squeeze `axes` (an input from opset 13). */
export function squeeze(b: GraphBuilder, opset: number, x: string, axes: number[]): string {
  return opset >= 13 ? b.op('Squeeze', [x, b.i64(axes)]) : b.op('Squeeze', [x], { axes });
}

/**
 * The most tensors (inputs and outputs together) a node we emit with a variable count of them (Split,
 * Sum) may have. onnxruntime's WebGPU provider binds each as a storage buffer of one shader, and WebGPU's
 * default limit is 16 per shader stage: a Split into 16 pieces failed there ("Too many storage buffers
 * in shader. Current: 17, Max is 16"). Its Concat splits long input lists itself.
 */
export const MAX_NODE_TENSORS = 16;

/**
 * Split `x` along `axis` into pieces of `sizes` (an input from opset 13) written to `outputs`. More
 * pieces than one Split may have (`MAX_NODE_TENSORS`) become a tree: the first Split gives the leading
 * pieces as they are and the rest in a few runs of neighbours, each split again.
 */
export function split(b: GraphBuilder, opset: number, x: string, sizes: readonly number[], axis: number, outputs: readonly string[]): void {
  const most = MAX_NODE_TENSORS - 1;
  const emit = (from: string, sz: readonly number[], outs: readonly string[]) => {
    if (opset >= 13) b.nodeNamed('Split', [from, b.i64([...sz])], outs, { axis });
    else b.nodeNamed('Split', [from], outs, { axis, split: [...sz] });
  };
  const n = sizes.length;
  if (n <= most) {
    emit(x, sizes, outputs);
    return;
  }
  // k runs and (most − k) single pieces fill the first Split: (n − most + k) pieces in k runs of at most
  // `most` each needs k ≥ (n − most) / (most − 1). Past most² pieces the runs are split the same way.
  const k = Math.min(most, Math.ceil((n - most) / (most - 1)));
  const singles = most - k;
  const rest = n - singles;
  const firstSizes = sizes.slice(0, singles);
  const firstOuts = outputs.slice(0, singles);
  const runs: { from: number; to: number; name: string }[] = [];
  for (let j = 0; j < k; j++) {
    const from = singles + Math.floor((rest * j) / k);
    const to = singles + Math.floor((rest * (j + 1)) / k);
    const name = to - from === 1 ? outputs[from]! : b.fresh('split_run');
    runs.push({ from, to, name });
    firstSizes.push(sizes.slice(from, to).reduce((a, c) => a + c, 0));
  }
  emit(x, firstSizes, [...firstOuts, ...runs.map((r) => r.name)]);
  for (const r of runs) if (r.to - r.from > 1) split(b, opset, r.name, sizes.slice(r.from, r.to), axis, outputs.slice(r.from, r.to));
}

/** The sum of `terms` (at least one), as one Sum node or a tree of them (see `MAX_NODE_TENSORS`). */
export function sum(b: GraphBuilder, terms: readonly string[], hint = 'sum'): string {
  if (terms.length === 1) return terms[0]!;
  const most = MAX_NODE_TENSORS - 1;
  if (terms.length <= most) return b.op('Sum', [...terms], {}, hint);
  const parts: string[] = [];
  for (let i = 0; i < terms.length; i += most) parts.push(sum(b, terms.slice(i, i + most), hint));
  return sum(b, parts, hint);
}

/** Normalise a possibly negative axis for a tensor of rank `rank`. */
export function normAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new RangeError(`axis ${axis} out of range for rank ${rank}`);
  return a;
}

/** Swap the last two axes of a tensor of rank `rank` (>= 2). */
export function transposeLast2(b: GraphBuilder, x: string, rank: number): string {
  const perm = Array.from({ length: rank }, (_, i) => i);
  perm[rank - 1] = rank - 2;
  perm[rank - 2] = rank - 1;
  return b.op('Transpose', [x], { perm });
}

/** Scalar int64 product of a 1-D shape tensor's entries, as a 1-element 1-D tensor. */
export function prodOf(b: GraphBuilder, shape1d: string): string {
  return b.op('ReduceProd', [shape1d], { keepdims: 1 });
}

/**
 * The adjoint of gathering along `axis`: given dy shaped target[:axis] + [K] + target[axis+1:] and the
 * K gathered positions (1-D int64, negative allowed), return the tensor of shape `targetShape` (a 1-D
 * int64 tensor) holding the sum of dy at each gathered position. Uses a one-hot contraction (MatMul),
 * which needs no ScatterND reduction (opset 16) and sums duplicates correctly.
 */
export function scatterAddAlongAxis(b: GraphBuilder, dy: string, positions: string, axis: number, targetShape: string, rank: number): string {
  const shapeSlice = (s: number, e: number) => b.op('Slice', [targetShape, b.i64([s]), b.i64([e]), b.i64([0])]);
  const p = axis === 0 ? b.i64([1]) : prodOf(b, shapeSlice(0, axis));
  const q = axis === rank - 1 ? b.i64([1]) : prodOf(b, shapeSlice(axis + 1, rank));
  const n = shapeSlice(axis, axis + 1);
  const dy3 = b.op('Reshape', [dy, b.op('Concat', [p, b.i64([-1]), q], { axis: 0 })]);
  const oneHot = b.op('OneHot', [positions, n, b.f32([0, 1])], { axis: -1 });
  const ohT = b.op('Transpose', [oneHot], { perm: [1, 0] });
  const out = b.op('MatMul', [ohT, dy3]);
  return b.op('Reshape', [out, targetShape]);
}
