/** Erf: y = erf(x). VJP: dx = dy ⊙ (2/√π)·exp(−x²). */
import type { GradRule } from './types.js';

export const Erf: GradRule = {
  grad: ({ b, dy, x }) => {
    // (2/√π)·exp(−x²) as exp(ln(2/√π) − x²): one full-size op fewer than scaling after the Exp.
    const e = b.op('Exp', [b.op('Sub', [b.f32([Math.log(2 / Math.sqrt(Math.PI))]), b.op('Mul', [x(0), x(0)])])]);
    return [b.op('Mul', [dy[0]!, e])];
  },
};
