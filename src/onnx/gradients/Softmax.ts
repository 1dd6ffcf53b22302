/**
 * Softmax along `axis`: y = e^x / Σ e^x. VJP: dx = y ⊙ (dy − Σ_axis(dy ⊙ y)).
 * Before opset 13 the op works on the input coerced to 2-D at `axis` (default 1); we follow that.
 */
import { normAxis, reduceSum } from '../ops.js';
import type { GradRule } from './types.js';

export const Softmax: GradRule = {
  grad: ({ b, dy, y, opset, attrInt, rank }) => {
    const r = rank(y(0));
    if (opset >= 13) {
      const axis = normAxis(attrInt('axis', -1), r);
      const s = reduceSum(b, opset, b.op('Mul', [dy[0]!, y(0)]), [axis], 1);
      return [b.op('Mul', [y(0), b.op('Sub', [dy[0]!, s])])];
    }
    const axis = normAxis(attrInt('axis', 1), r);
    const y2 = b.op('Flatten', [y(0)], { axis });
    const d2 = b.op('Flatten', [dy[0]!], { axis });
    const s = reduceSum(b, opset, b.op('Mul', [d2, y2]), [1], 1);
    return [b.op('Reshape', [b.op('Mul', [y2, b.op('Sub', [d2, s])]), b.shape(y(0))])];
  },
};
