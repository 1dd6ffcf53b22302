/** Flatten to 2-D at `axis`. VJP: dx = reshape(dy, shape(x)) (reshape-back.ts). */
import { reshapeBack } from './reshape-back.js';
import type { GradRule } from './types.js';

export const Flatten: GradRule = { grad: (ctx) => [reshapeBack(ctx)] };
