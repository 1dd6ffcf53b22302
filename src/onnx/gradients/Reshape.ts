/** Reshape: y = reshape(x, shape). VJP: dx = reshape(dy, shape(x)) (reshape-back.ts). */
import { reshapeBack } from './reshape-back.js';
import type { GradRule } from './types.js';

export const Reshape: GradRule = { grad: (ctx) => [reshapeBack(ctx), null] };
