/** Flatten to 2-D at `axis`. VJP: dx = reshape(dy, shape(x)). */
import type { GradRule } from './types.js';

export const Flatten: GradRule = { grad: ({ b, dy, x }) => [b.op('Reshape', [dy[0]!, b.shape(x(0))])] };
