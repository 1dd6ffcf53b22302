/** GlobalAveragePool: y[n,c] = mean over spatial positions. VJP: dx = dy broadcast over them / (H·W…). */
import { DT } from '../proto.js';
import type { GradRule } from './types.js';

export const GlobalAveragePool: GradRule = {
  grad: ({ b, dy, x, y }) => {
    const n = b.op('Div', [b.op('Cast', [b.op('Size', [x(0)])], { to: DT.FLOAT }), b.op('Cast', [b.op('Size', [y(0)])], { to: DT.FLOAT })]);
    return [b.op('Div', [b.op('Expand', [dy[0]!, b.shape(x(0))]), n])];
  },
};
