/** Expand: y = broadcast(x, shape). VJP: dx = dy summed over the broadcast axes (by the engine). */
import type { GradRule } from './types.js';

export const Expand: GradRule = { broadcasts: true, grad: ({ dy }) => [dy[0], null] };
