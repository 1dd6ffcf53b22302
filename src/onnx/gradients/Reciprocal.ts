/** Reciprocal: y = 1/x. VJP: dx = −dy ⊙ y². */
import type { GradRule } from './types.js';

export const Reciprocal: GradRule = { grad: ({ b, dy, y }) => [b.op('Neg', [b.op('Mul', [dy[0]!, b.op('Mul', [y(0), y(0)])])])] };
