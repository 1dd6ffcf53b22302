/** Where: y = cond ? a : b (broadcasting). VJP: da = cond ? dy : 0, db = cond ? 0 : dy. */
import type { GradRule } from './types.js';

export const Where: GradRule = {
  broadcasts: true,
  grad: ({ b, dy, x, needs }) => [
    null,
    needs(1) ? b.op('Where', [x(0), dy[0]!, b.f32([0])]) : null,
    needs(2) ? b.op('Where', [x(0), b.f32([0]), dy[0]!]) : null,
  ],
};
