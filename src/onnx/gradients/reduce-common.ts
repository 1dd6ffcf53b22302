/**
 * Shared by ReduceSum and ReduceMean: the reduced axes (attribute or constant input, depending on the
 * opset) and the broadcast of dy back over them.
 */
import { normAxis, unsqueeze } from '../ops.js';
import type { GradContext } from './types.js';

/** Gradient of a sum over the node's axes, before any scaling: dy expanded back to x's shape. */
export function expandReduced(ctx: GradContext, axesAsInputFrom: number): string {
  const { b, dy, x, opset, attrInt, attrInts, hasInput, constInts, rank, unsupported } = ctx;
  const r = rank(x(0));
  let axes: number[] | undefined;
  if (opset >= axesAsInputFrom) {
    if (hasInput(1)) {
      axes = constInts(x(1));
      if (!axes) unsupported('axes must be a constant');
    }
  } else {
    axes = attrInts('axes');
  }
  if (!axes || axes.length === 0) {
    if (opset >= axesAsInputFrom && attrInt('noop_with_empty_axes', 0) === 1) return dy[0]!;
    axes = Array.from({ length: r }, (_, i) => i);
  }
  const norm = [...new Set(axes.map((a) => normAxis(a, r)))].sort((p, q) => p - q);
  const keep = attrInt('keepdims', 1) === 1 ? dy[0]! : unsqueeze(b, opset, dy[0]!, norm);
  return b.op('Expand', [keep, b.shape(x(0))]);
}
