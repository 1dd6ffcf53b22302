/**
 * ReduceMean over axes: y = Σ_axes x / N. VJP: dx = (dy / N) broadcast back over the axes. N is a
 * constant where the reduced dims are static, else the product of x's reduced dims at run time (from
 * the Shape node the expansion reads too); the division is done on dy, before the expansion.
 */
import { DT } from '../proto.js';
import { expandReduced } from './reduce-common.js';
import type { GradRule } from './types.js';

export const ReduceMean: GradRule = {
  grad: (ctx) => {
    const { b, x, dims } = ctx;
    return [expandReduced(ctx, 18, (dy, axes) => {
      const d = dims(x(0));
      if (axes.every((a) => d[a] !== null)) return b.op('Mul', [dy, b.f32([1 / axes.reduce((p, a) => p * d[a]!, 1)])]);
      // N from x's shape (the Expand below reads the same Shape node): its reduced dims' product.
      const picked = b.op('Gather', [b.shape(x(0)), b.i64(axes)], { axis: 0 });
      const count = axes.length === 1 ? picked : b.op('ReduceProd', [picked], { keepdims: 0 });
      return b.op('Div', [dy, b.op('Cast', [count], { to: DT.FLOAT })]);
    })];
  },
};
