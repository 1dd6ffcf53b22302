/** Erf: y = erf(x). VJP: dx = dy ⊙ (2/√π)·exp(−x²). */
import type { GradRule } from './types.js';

export const Erf: GradRule = {
  grad: ({ b, dy, x }) => {
    const e = b.op('Exp', [b.op('Neg', [b.op('Mul', [x(0), x(0)])])]);
    return [b.op('Mul', [dy[0]!, b.op('Mul', [e, b.f32([2 / Math.sqrt(Math.PI)])])])];
  },
};
