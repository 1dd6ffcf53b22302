/**
 * LogSoftmax along `axis`: y = x − log Σ e^x. VJP: dx = dy − e^y ⊙ Σ_axis dy.
 * Before opset 13 the op works on the input coerced to 2-D at `axis` (default 1).
 */
import { normAxis, reduceSum } from '../ops.js';
import type { GradRule } from './types.js';

export const LogSoftmax: GradRule = {
  grad: ({ b, dy, y, opset, attrInt, rank }) => {
    const r = rank(y(0));
    if (opset >= 13) {
      const axis = normAxis(attrInt('axis', -1), r);
      const s = reduceSum(b, opset, dy[0]!, [axis], 1);
      return [b.op('Sub', [dy[0]!, b.op('Mul', [b.op('Exp', [y(0)]), s])])];
    }
    const axis = normAxis(attrInt('axis', 1), r);
    const y2 = b.op('Flatten', [y(0)], { axis });
    const d2 = b.op('Flatten', [dy[0]!], { axis });
    const s = reduceSum(b, opset, d2, [1], 1);
    return [b.op('Reshape', [b.op('Sub', [d2, b.op('Mul', [b.op('Exp', [y2]), s])]), b.shape(y(0))])];
  },
};
