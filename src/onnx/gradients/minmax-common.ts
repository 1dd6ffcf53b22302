/** Shared by Max and Min: the gradient flows to every input equal to the result (ties share it). */
import type { GradContext } from './types.js';

export function selectGrad(ctx: GradContext): (string | null)[] {
  const { b, dy, x, y, needs, node } = ctx;
  return (node.input ?? []).map((_, i) => (needs(i) ? b.op('Where', [b.op('Equal', [x(i), y(0)]), dy[0]!, b.f32([0])]) : null));
}
