/** Exp: y = eˣ. VJP: dx = dy ⊙ y. */
import type { GradRule } from './types.js';

export const Exp: GradRule = { grad: ({ b, dy, y }) => [b.op('Mul', [dy[0]!, y(0)])] };
