/**
 * LayerNormalization (opset 17) over axes [axis, rank): x̂ = (x − μ)·σ⁻¹, y = x̂ ⊙ scale + bias.
 * VJP (x only): g = dy ⊙ scale, dx = σ⁻¹ ⊙ (g − mean(g) − x̂ ⊙ mean(g ⊙ x̂)).
 * μ and σ⁻¹ are not recomputed: the forward node is asked for its optional Mean and InvStdDev outputs
 * (it computes them anyway), so the backward pass costs ten nodes instead of two dozen.
 * Gradients for scale/bias (frozen weights) and for the Mean/InvStdDev outputs are refused.
 */
import { normAxis, reduceMean } from '../ops.js';
import type { GradRule } from './types.js';

export const LayerNormalization: GradRule = {
  grad: ({ b, node, dy, x, needs, attrInt, rank, opset, unsupported }) => {
    if (needs(1) || needs(2)) unsupported('scale and bias must not depend on the adapter');
    if (dy[1] || dy[2]) unsupported('the Mean and InvStdDev outputs must not be used on the gradient path');
    const r = rank(x(0));
    const axis = normAxis(attrInt('axis', -1), r);
    const axes = Array.from({ length: r - axis }, (_, i) => axis + i);
    const outs = node.output!;
    if (!outs[1]) outs[1] = b.fresh('ln_mean');
    if (!outs[2]) outs[2] = b.fresh('ln_inv_std');
    const [mu, rstd] = [outs[1], outs[2]];
    const mean = (t: string) => reduceMean(b, opset, t, axes, 1);
    const xhat = b.op('Mul', [b.op('Sub', [x(0), mu]), rstd]);
    const g = b.op('Mul', [dy[0]!, x(1)]);
    const inner = b.op('Sub', [b.op('Sub', [g, mean(g)]), b.op('Mul', [xhat, mean(b.op('Mul', [g, xhat]))])]);
    return [b.op('Mul', [rstd, inner]), null, null];
  },
};
