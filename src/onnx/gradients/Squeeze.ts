/** Squeeze size-1 axes. VJP: dx = reshape(dy, shape(x)). */
import type { GradRule } from './types.js';

export const Squeeze: GradRule = { grad: ({ b, dy, x }) => [b.op('Reshape', [dy[0]!, b.shape(x(0))]), null] };
