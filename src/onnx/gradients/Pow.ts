/**
 * Pow: y = x^e with a constant (not differentiated) exponent e. VJP: dx = dy ⊙ e·x^(e−1).
 * A gradient with respect to the exponent is refused.
 */
import { DT } from '../proto.js';
import type { GradRule } from './types.js';

export const Pow: GradRule = {
  broadcasts: true,
  grad: ({ b, dy, x, needs, dtype, unsupported }) => {
    if (needs(1)) unsupported('the exponent must not depend on the adapter (only a constant exponent is supported)');
    const e = dtype(x(1)) === DT.FLOAT ? x(1) : b.op('Cast', [x(1)], { to: DT.FLOAT });
    const pw = b.op('Pow', [x(0), b.op('Sub', [e, b.f32([1])])]);
    return [b.op('Mul', [dy[0]!, b.op('Mul', [e, pw])]), null];
  },
};
