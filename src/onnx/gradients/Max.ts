/** Max (variadic, broadcasting): y = max xᵢ. VJP: dxᵢ = dy where xᵢ = y, else 0. */
import { selectGrad } from './minmax-common.js';
import type { GradRule } from './types.js';

export const Max: GradRule = { broadcasts: true, grad: selectGrad };
