/** Min (variadic, broadcasting): y = min xᵢ. VJP: dxᵢ = dy ⊙ [xᵢ = y] / Σⱼ [xⱼ = y] (ties split dy evenly). */
import { selectGrad } from './minmax-common.js';
import type { GradRule } from './types.js';

export const Min: GradRule = { broadcasts: true, grad: selectGrad };
