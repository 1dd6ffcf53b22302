/**
 * Shared by ReduceSum and ReduceMean: the reduced axes (attribute or constant input, depending on the
 * opset) and the broadcast of dy back over them.
 */
import { normAxis, unsqueeze } from '../ops.js';
import type { GradContext } from './types.js';

/**
 * Gradient of a sum over the node's axes: dy expanded back to x's shape. `scale`, when given, is
 * applied to dy before the expansion (on the reduced tensor, not the full one); it receives the
 * reduced axes.
 */
export function expandReduced(ctx: GradContext, axesAsInputFrom: number, scale?: (dy: string, axes: number[]) => string): string {
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
    if (opset >= axesAsInputFrom && attrInt('noop_with_empty_axes', 0) === 1) return scale ? scale(dy[0]!, []) : dy[0]!;
    axes = Array.from({ length: r }, (_, i) => i);
  }
  const norm = [...new Set(axes.map((a) => normAxis(a, r)))].sort((p, q) => p - q);
  const g = scale ? scale(dy[0]!, norm) : dy[0]!;
  const keep = attrInt('keepdims', 1) === 1 ? g : unsqueeze(b, opset, g, norm);
  return b.op('Expand', [keep, b.shape(x(0))]);
}
