/**
 * ReduceMean over axes: y = Σ_axes x / N. VJP: dx = (dy / N) broadcast back over the axes. N is a
 * constant where the reduced dims are static, else |x| / |y| at run time; the division is done on dy,
 * before the expansion.
 */
import { DT } from '../proto.js';
import { expandReduced } from './reduce-common.js';
import type { GradRule } from './types.js';

export const ReduceMean: GradRule = {
  grad: (ctx) => {
    const { b, x, y, dims } = ctx;
    return [expandReduced(ctx, 18, (dy, axes) => {
      const d = dims(x(0));
      if (axes.every((a) => d[a] !== null)) return b.op('Mul', [dy, b.f32([1 / axes.reduce((p, a) => p * d[a]!, 1)])]);
      const n = b.op('Div', [b.op('Cast', [b.op('Size', [x(0)])], { to: DT.FLOAT }), b.op('Cast', [b.op('Size', [y(0)])], { to: DT.FLOAT })]);
      return b.op('Div', [dy, n]);
    })];
  },
};
