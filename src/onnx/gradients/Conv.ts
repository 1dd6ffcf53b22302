/**
 * Conv: y = W ⋆ x (+ bias), strided/padded/dilated/grouped. VJP with respect to x only:
 * dx = ConvTranspose(dy, W) with the same attributes (weights and bias are frozen base weights).
 */
import { toNum } from '../proto.js';
import { convAdjoint, windowAttrs } from './pool-common.js';
import type { GradRule } from './types.js';

export const Conv: GradRule = {
  grad: (ctx) => {
    const { dy, x, needs, rank, attrInt, attrInts, dims, unsupported } = ctx;
    if (needs(1) || needs(2)) unsupported('gradients with respect to conv weights or bias are not supported');
    const spatial = rank(x(0)) - 2;
    const wd = dims(x(1));
    const kernel = attrInts('kernel_shape') ?? wd.slice(2).map((d) => {
      if (d === null) unsupported('kernel shape must be static');
      return toNum(d);
    });
    const a = windowAttrs(ctx, spatial, kernel);
    return [convAdjoint(ctx, dy[0]!, x(1), a, attrInt('group', 1), x(0), ctx.y(0), spatial), null, null];
  },
};
