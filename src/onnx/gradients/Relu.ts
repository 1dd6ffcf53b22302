/** Relu: y = max(x, 0). VJP: dx = dy where x > 0, else 0. */
import type { GradRule } from './types.js';

export const Relu: GradRule = {
  grad: ({ b, dy, x }) => [b.op('Where', [b.op('Greater', [x(0), b.f32([0])]), dy[0]!, b.f32([0])])],
};
