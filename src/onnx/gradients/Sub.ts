/** Sub: y = a − b. VJP: da = dy, db = −dy. */
import type { GradRule } from './types.js';

export const Sub: GradRule = {
  broadcasts: true,
  grad: ({ b, dy, needs }) => [dy[0], needs(1) ? b.op('Neg', [dy[0]!]) : null],
};
