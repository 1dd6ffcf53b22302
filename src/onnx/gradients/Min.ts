/** Min (variadic, broadcasting): y = min xᵢ. VJP: dxᵢ = dy where xᵢ = y, else 0. */
import { selectGrad } from './minmax-common.js';
import type { GradRule } from './types.js';

export const Min: GradRule = { broadcasts: true, grad: selectGrad };
