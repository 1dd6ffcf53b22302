/** Add: y = a + b (broadcasting). VJP: da = dy, db = dy (the engine un-broadcasts). */
import type { GradRule } from './types.js';

export const Add: GradRule = {
  broadcasts: true,
  grad: ({ dy }) => [dy[0], dy[0]],
};
