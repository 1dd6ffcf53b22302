/** Div: y = a / b. VJP: da = dy / b, db = −dy ⊙ y / b. */
import type { GradRule } from './types.js';

export const Div: GradRule = {
  broadcasts: true,
  grad: ({ b, dy, x, y, needs }) => [
    needs(0) ? b.op('Div', [dy[0]!, x(1)]) : null,
    needs(1) ? b.op('Neg', [b.op('Div', [b.op('Mul', [dy[0]!, y(0)]), x(1)])]) : null,
  ],
};
