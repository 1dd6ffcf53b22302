/**
 * Softmax along `axis`: y = e^x / Σ e^x. VJP: dx = y ⊙ (dy − Σ_axis(dy ⊙ y)).
 * Before opset 13 the op works on the input coerced to 2-D at `axis` (default 1); we follow that.
 * Attention: when y's only reader is O = y·V (softmax over the last axis), dy = dO·Vᵀ and so
 * Σ_j dy_ij·y_ij = Σ_k dO_ik·O_ik (the identity FlashAttention's backward uses): the row sums come
 * from [.., T, d] tensors instead of the [.., T, T] scores, one full-size product fewer.
 */
import { normAxis, reduceSum } from '../ops.js';
import type { GradRule } from './types.js';

export const Softmax: GradRule = {
  grad: ({ b, dy, y, opset, attrInt, rank, consumers, isOutput, gradOf }) => {
    const r = rank(y(0));
    if (opset >= 13) {
      const axis = normAxis(attrInt('axis', -1), r);
      const readers = consumers(y(0));
      const attn = readers.length === 1 && readers[0]!.opType === 'MatMul' && !readers[0]!.domain && readers[0]!.input?.[0] === y(0)
        && readers[0]!.input?.[1] !== y(0) && axis === r - 1 && r >= 2 && !isOutput(y(0)) ? readers[0]!.output![0]! : null;
      const dO = attn && rank(attn) === r ? gradOf(attn) : null;
      const s = dO
        ? reduceSum(b, opset, b.op('Mul', [dO, attn!]), [axis], 1)
        : reduceSum(b, opset, b.op('Mul', [dy[0]!, y(0)]), [axis], 1);
      return [b.op('Mul', [y(0), b.op('Sub', [dy[0]!, s])])];
    }
    const axis = normAxis(attrInt('axis', 1), r);
    const y2 = b.op('Flatten', [y(0)], { axis });
    const d2 = b.op('Flatten', [dy[0]!], { axis });
    const s = reduceSum(b, opset, b.op('Mul', [d2, y2]), [1], 1);
    return [b.op('Reshape', [b.op('Mul', [y2, b.op('Sub', [d2, s])]), b.shape(y(0))])];
  },
};
