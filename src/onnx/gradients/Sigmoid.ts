/** Sigmoid: y = 1/(1+e^−x). VJP: dx = dy ⊙ y ⊙ (1 − y). */
import type { GradRule } from './types.js';

export const Sigmoid: GradRule = {
  grad: ({ b, dy, y }) => [b.op('Mul', [dy[0]!, b.op('Mul', [y(0), b.op('Sub', [b.f32([1]), y(0)])])])],
};
