/** Neg: y = −x. VJP: dx = −dy. */
import type { GradRule } from './types.js';

export const Neg: GradRule = { grad: ({ b, dy }) => [b.op('Neg', [dy[0]!])] };
