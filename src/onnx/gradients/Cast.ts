/** Cast: y = cast(x). VJP: dx = cast(dy) back to x's (float) type. */
import type { GradRule } from './types.js';

export const Cast: GradRule = {
  grad: ({ b, dy, x, dtype }) => [b.op('Cast', [dy[0]!], { to: dtype(x(0)) })],
};
