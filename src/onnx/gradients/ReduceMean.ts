/** ReduceMean over axes: y = Σ_axes x / N. VJP: dx = (dy broadcast back over the axes) / N, N = |x| / |y|. */
import { DT } from '../proto.js';
import { expandReduced } from './reduce-common.js';
import type { GradRule } from './types.js';

export const ReduceMean: GradRule = {
  grad: (ctx) => {
    const { b, x, y } = ctx;
    const expanded = expandReduced(ctx, 18);
    const n = b.op('Div', [b.op('Cast', [b.op('Size', [x(0)])], { to: DT.FLOAT }), b.op('Cast', [b.op('Size', [y(0)])], { to: DT.FLOAT })]);
    return [b.op('Div', [expanded, n])];
  },
};
