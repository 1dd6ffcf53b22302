/** Mul: y = a ⊙ b. VJP: da = dy ⊙ b, db = dy ⊙ a. */
import type { GradRule } from './types.js';

export const Mul: GradRule = {
  broadcasts: true,
  grad: ({ b, dy, x, needs }) => [
    needs(0) ? b.op('Mul', [dy[0]!, x(1)]) : null,
    needs(1) ? b.op('Mul', [dy[0]!, x(0)]) : null,
  ],
};
