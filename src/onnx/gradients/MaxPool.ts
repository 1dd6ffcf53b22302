/**
 * MaxPool: y = max over each window. VJP: dy routed to the argmax of each window. The argmax comes
 * from a recomputed MaxPool with its Indices output (flat indices into x), scattered into zeros.
 * Overlapping windows can hit one position twice, which needs ScatterElements' `add` reduction
 * (opset 16); before that only non-overlapping pools are supported.
 */
import { DT } from '../proto.js';
import { windowAttrs } from './pool-common.js';
import type { GradRule } from './types.js';

export const MaxPool: GradRule = {
  grad: (ctx) => {
    const { b, dy, x, node, rank, opset, attrInt, attrInts, unsupported } = ctx;
    if ((node.output?.length ?? 1) > 1 && dy[1]) unsupported('the Indices output is not differentiable');
    const spatial = rank(x(0)) - 2;
    const kernel = attrInts('kernel_shape') ?? unsupported('kernel_shape missing');
    const a = windowAttrs(ctx, spatial, kernel);
    const overlap = kernel.some((k, i) => (k - 1) * a.dilations[i]! + 1 > a.strides[i]!);
    if (overlap && opset < 16) unsupported('overlapping windows need opset 16 (ScatterElements reduction)');
    const [, indices] = b.node('MaxPool', [x(0)], {
      kernel_shape: a.kernel, strides: a.strides, pads: a.pads, dilations: a.dilations,
      ceil_mode: attrInt('ceil_mode', 0), storage_order: 0,
    }, 2, 'maxpool_argmax');
    const size = b.op('Reshape', [b.op('Size', [x(0)]), b.i64([1])]);
    const zeros = b.op('ConstantOfShape', [size], { value: { name: '', dataType: DT.FLOAT, dims: [1], floatData: [0] } });
    const flatIdx = b.op('Reshape', [indices!, b.i64([-1])]);
    const flatDy = b.op('Reshape', [dy[0]!, b.i64([-1])]);
    const scattered = b.op('ScatterElements', [zeros, flatIdx, flatDy], { axis: 0, reduction: overlap ? 'add' : undefined });
    return [b.op('Reshape', [scattered, b.shape(x(0))])];
  },
};
