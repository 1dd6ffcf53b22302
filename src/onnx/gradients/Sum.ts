/** Sum (variadic, broadcasting): y = Σ xᵢ. VJP: dxᵢ = dy (the engine un-broadcasts). */
import type { GradRule } from './types.js';

export const Sum: GradRule = { broadcasts: true, grad: ({ dy, node }) => (node.input ?? []).map(() => dy[0]) };
