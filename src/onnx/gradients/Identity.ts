/** Identity: y = x. VJP: dx = dy. */
import type { GradRule } from './types.js';

export const Identity: GradRule = { grad: ({ dy }) => [dy[0]] };
