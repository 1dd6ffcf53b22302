/** Log: y = ln x. VJP: dx = dy / x. */
import type { GradRule } from './types.js';

export const Log: GradRule = { grad: ({ b, dy, x }) => [b.op('Div', [dy[0]!, x(0)])] };
