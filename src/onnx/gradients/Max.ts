/** Max (variadic, broadcasting): y = max xᵢ. VJP: dxᵢ = dy ⊙ [xᵢ = y] / Σⱼ [xⱼ = y] (ties split dy evenly). */
import { selectGrad } from './minmax-common.js';
import type { GradRule } from './types.js';

export const Max: GradRule = { broadcasts: true, grad: selectGrad };
