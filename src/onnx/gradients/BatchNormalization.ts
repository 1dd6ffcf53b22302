/**
 * BatchNormalization in inference mode: y = (x − mean)/√(var + ε) ⊙ scale + bias, per channel (axis 1).
 * VJP (x only): dx = dy ⊙ scale/√(var + ε), broadcast over the spatial axes. Training mode is refused.
 */
import type { GradRule } from './types.js';

export const BatchNormalization: GradRule = {
  grad: ({ b, dy, x, needs, attrInt, attrFloat, rank, node, unsupported }) => {
    if (attrInt('training_mode', 0) !== 0) unsupported('training_mode = 1 (batch statistics) is not supported');
    if ((node.output?.length ?? 1) > 1 && (node.output ?? []).slice(1).some((o) => o)) unsupported('running-statistics outputs are not supported');
    for (let i = 1; i < 5; i++) if (needs(i)) unsupported('scale, bias, mean and var must not depend on the adapter');
    const eps = attrFloat('epsilon', 1e-5);
    const factor = b.op('Div', [x(1), b.op('Sqrt', [b.op('Add', [x(4), b.f32([eps])])])]);
    const shaped = b.op('Reshape', [factor, b.i64([-1, ...new Array<number>(Math.max(rank(x(0)) - 2, 0)).fill(1)])]);
    return [b.op('Mul', [dy[0]!, shaped]), null, null, null, null];
  },
};
