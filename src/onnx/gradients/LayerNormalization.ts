/**
 * LayerNormalization (opset 17) over axes [axis, rank): x̂ = (x − μ)·σ⁻¹, y = x̂ ⊙ scale + bias.
 * VJP (x only): g = dy ⊙ scale, dx = σ⁻¹ ⊙ (g − mean(g) − x̂ ⊙ mean(g ⊙ x̂)), statistics recomputed.
 * Gradients for scale/bias (frozen weights) and for the Mean/InvStdDev outputs are refused.
 */
import { DT } from '../proto.js';
import { normAxis, reduceSum } from '../ops.js';
import type { GradRule } from './types.js';

export const LayerNormalization: GradRule = {
  grad: ({ b, dy, x, needs, attrInt, attrFloat, rank, opset, unsupported }) => {
    if (needs(1) || needs(2)) unsupported('scale and bias must not depend on the adapter');
    if (dy[1] || dy[2]) unsupported('the Mean and InvStdDev outputs must not be used on the gradient path');
    const r = rank(x(0));
    const axis = normAxis(attrInt('axis', -1), r);
    const eps = attrFloat('epsilon', 1e-5);
    const axes = Array.from({ length: r - axis }, (_, i) => axis + i);
    const xs = x(0);
    const count = b.op('Cast', [b.op('ReduceProd', [b.op('Gather', [b.shape(xs), b.i64(axes)], { axis: 0 })], { keepdims: 1 })], { to: DT.FLOAT });
    const mean = (t: string) => b.op('Div', [reduceSum(b, opset, t, axes, 1), count]);
    const xc = b.op('Sub', [xs, mean(xs)]);
    const rstd = b.op('Reciprocal', [b.op('Sqrt', [b.op('Add', [mean(b.op('Mul', [xc, xc])), b.f32([eps])])])]);
    const xhat = b.op('Mul', [xc, rstd]);
    const g = b.op('Mul', [dy[0]!, x(1)]);
    const inner = b.op('Sub', [b.op('Sub', [g, mean(g)]), b.op('Mul', [xhat, mean(b.op('Mul', [g, xhat]))])]);
    return [b.op('Mul', [rstd, inner]), null, null];
  },
};
