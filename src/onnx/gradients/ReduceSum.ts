/** ReduceSum over axes: y = Σ_axes x. VJP: dx = dy broadcast back over the reduced axes. */
import { expandReduced } from './reduce-common.js';
import type { GradRule } from './types.js';

export const ReduceSum: GradRule = { grad: (ctx) => [expandReduced(ctx, 13)] };
