/**
 * Gelu (opset 20): exact y = x·Φ(x); `tanh` y = ½x(1 + tanh(k(x + 0.044715x³))), k = √(2/π).
 * VJP exact: dx = dy ⊙ (Φ(x) + x·φ(x)), φ(x) = e^{−x²/2}/√(2π); computed as
 * ½dy ⊙ (1 + erf(u) + u·(2/√π)·e^{−u²}), u = x/√2 (two kernels fewer than term by term).
 * VJP tanh:  dx = dy ⊙ (½(1 + t) + ½x(1 − t²)·k·(1 + 3·0.044715x²)).
 */
import type { GradRule } from './types.js';

export const Gelu: GradRule = {
  grad: ({ b, dy, x, attrString, unsupported }) => {
    const approx = attrString('approximate', 'none');
    const v = x(0);
    if (approx === 'none') {
      // As the exporters' erf-GELU (patterns.ts): ½dy ⊙ (1 + erf(u) + u·(2/√π)·e^{−u²}), u = x/√2.
      const u = b.op('Mul', [v, b.f32([Math.SQRT1_2])]);
      const derf = b.op('Exp', [b.op('Sub', [b.f32([Math.log(2 / Math.sqrt(Math.PI))]), b.op('Mul', [u, u])])]);
      const twice = b.op('Sum', [b.op('Erf', [u]), b.op('Mul', [u, derf]), b.f32([1])]);
      return [b.op('Mul', [b.op('Mul', [dy[0]!, b.f32([0.5])]), twice])];
    }
    if (approx !== 'tanh') unsupported(`approximate='${approx}'`);
    const x2 = b.op('Mul', [v, v]);
    const k = Math.sqrt(2 / Math.PI);
    const inner = b.op('Mul', [b.f32([k]), b.op('Add', [v, b.op('Mul', [b.f32([0.044715]), b.op('Mul', [x2, v])])])]);
    const t = b.op('Tanh', [inner]);
    const left = b.op('Mul', [b.f32([0.5]), b.op('Add', [b.f32([1]), t])]);
    const dinner = b.op('Mul', [b.f32([k]), b.op('Add', [b.f32([1]), b.op('Mul', [b.f32([3 * 0.044715]), x2])])]);
    const right = b.op('Mul', [b.op('Mul', [b.f32([0.5]), v]), b.op('Mul', [b.op('Sub', [b.f32([1]), b.op('Mul', [t, t])]), dinner])]);
    return [b.op('Mul', [dy[0]!, b.op('Add', [left, right])])];
  },
};
