/**
 * Pad in `constant` mode with non-negative pads: y = x surrounded by a constant.
 * VJP: dx = the slice of dy where x sits, dy[begin : begin + shape(x)]. Other modes are refused.
 */
import { normAxis } from '../ops.js';
import type { GradRule } from './types.js';

export const Pad: GradRule = {
  grad: ({ b, dy, x, opset, attrString, attrInts, hasInput, constInts, rank, needs, unsupported }) => {
    if (needs(1) || needs(2)) unsupported('pads and the constant value must not depend on the adapter');
    const mode = attrString('mode', 'constant');
    if (mode !== 'constant') unsupported(`mode=${mode}`);
    const r = rank(x(0));
    const pads = (opset >= 11 ? (hasInput(1) ? constInts(x(1)) : undefined) : attrInts('pads')) ?? unsupported('pads must be a constant');
    let axes = Array.from({ length: r }, (_, i) => i);
    if (opset >= 18 && hasInput(3)) axes = (constInts(x(3)) ?? unsupported('axes must be a constant')).map((a) => normAxis(a, r));
    const begin = pads.slice(0, axes.length);
    if (pads.some((p) => p < 0)) unsupported('negative pads (cropping)');
    const xShape = b.op('Gather', [b.shape(x(0)), b.i64(axes)], { axis: 0 });
    const starts = b.i64(begin);
    return [b.op('Slice', [dy[0]!, starts, b.op('Add', [starts, xShape]), b.i64(axes)]), null, null, null];
  },
};
