/**
 * Dropout in inference (the only mode an ONNX Runtime inference session runs): y = x.
 * VJP: dx = dy. A graph that forces training_mode = true is refused.
 */
import type { GradRule } from './types.js';

export const Dropout: GradRule = {
  grad: ({ dy, hasInput, x, constInts, unsupported }) => {
    if (hasInput(2)) {
      const mode = constInts(x(2));
      if (!mode || mode[0] !== 0) unsupported('training_mode must be a constant false');
    }
    return [dy[0]];
  },
};
