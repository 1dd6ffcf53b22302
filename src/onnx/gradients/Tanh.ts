/** Tanh: y = tanh(x). VJP: dx = dy ⊙ (1 − y²). */
import type { GradRule } from './types.js';

export const Tanh: GradRule = {
  grad: ({ b, dy, y }) => [b.op('Mul', [dy[0]!, b.op('Sub', [b.f32([1]), b.op('Mul', [y(0), y(0)])])])],
};
