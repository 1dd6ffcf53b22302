/**
 * Gather(data, indices) along `axis`. VJP with respect to data: dy summed into the gathered rows
 * (duplicates add up); indices are not differentiable.
 */
import { DT } from '../proto.js';
import { normAxis, scatterAddAlongAxis } from '../ops.js';
import type { GradRule } from './types.js';

export const Gather: GradRule = {
  grad: ({ b, dy, x, attrInt, rank, dtype }) => {
    const r = rank(x(0));
    const axis = normAxis(attrInt('axis', 0), r);
    const idx = dtype(x(1)) === DT.INT64 ? x(1) : b.op('Cast', [x(1)], { to: DT.INT64 });
    const flat = b.op('Reshape', [idx, b.i64([-1])]);
    return [scatterAddAlongAxis(b, dy[0]!, flat, axis, b.shape(x(0)), r), null];
  },
};
