/**
 * Relu: y = max(x, 0). VJP: dx = dy where x > 0, else 0, as dy·float(y > 0). y > 0 exactly where
 * x > 0; reading y leaves x to the Relu alone, so onnxruntime fuses the Gemm or Conv that makes x with
 * it. Greater, Cast and Mul take ~2/3 of the time of a Greater and a Where ([32, 784]: 9.3 against
 * 12.7 µs; [32, 20]: 1.0 against 1.6 µs), the Where being the slow kernel.
 */
import { DT } from '../proto.js';
import type { GradRule } from './types.js';

export const Relu: GradRule = {
  grad: ({ b, dy, y }) => [b.op('Mul', [dy[0]!, b.op('Cast', [b.op('Greater', [y(0), b.f32([0])])], { to: DT.FLOAT })])],
};
