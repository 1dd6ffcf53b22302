/**
 * Gelu (opset 20): exact y = x·Φ(x); `tanh` y = ½x(1 + tanh(k(x + 0.044715x³))), k = √(2/π).
 * VJP exact: dx = dy ⊙ (Φ(x) + x·φ(x)), φ(x) = e^{−x²/2}/√(2π).
 * VJP tanh:  dx = dy ⊙ (½(1 + t) + ½x(1 − t²)·k·(1 + 3·0.044715x²)).
 */
import type { GradRule } from './types.js';

export const Gelu: GradRule = {
  grad: ({ b, dy, x, attrString, unsupported }) => {
    const approx = attrString('approximate', 'none');
    const v = x(0);
    const x2 = b.op('Mul', [v, v]);
    if (approx === 'none') {
      const cdf = b.op('Mul', [b.f32([0.5]), b.op('Add', [b.f32([1]), b.op('Erf', [b.op('Mul', [v, b.f32([Math.SQRT1_2])])])])]);
      const pdf = b.op('Mul', [b.op('Exp', [b.op('Mul', [x2, b.f32([-0.5])])]), b.f32([1 / Math.sqrt(2 * Math.PI)])]);
      return [b.op('Mul', [dy[0]!, b.op('Add', [cdf, b.op('Mul', [v, pdf])])])];
    }
    if (approx !== 'tanh') unsupported(`approximate='${approx}'`);
    const k = Math.sqrt(2 / Math.PI);
    const inner = b.op('Mul', [b.f32([k]), b.op('Add', [v, b.op('Mul', [b.f32([0.044715]), b.op('Mul', [x2, v])])])]);
    const t = b.op('Tanh', [inner]);
    const left = b.op('Mul', [b.f32([0.5]), b.op('Add', [b.f32([1]), t])]);
    const dinner = b.op('Mul', [b.f32([k]), b.op('Add', [b.f32([1]), b.op('Mul', [b.f32([3 * 0.044715]), x2])])]);
    const right = b.op('Mul', [b.op('Mul', [b.f32([0.5]), v]), b.op('Mul', [b.op('Sub', [b.f32([1]), b.op('Mul', [t, t])]), dinner])]);
    return [b.op('Mul', [dy[0]!, b.op('Add', [left, right])])];
  },
};
