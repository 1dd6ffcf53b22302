/** Sqrt: y = √x. VJP: dx = dy ⊙ 0.5 / y. */
import type { GradRule } from './types.js';

export const Sqrt: GradRule = { grad: ({ b, dy, y }) => [b.op('Div', [b.op('Mul', [dy[0]!, b.f32([0.5])]), y(0)])] };
