/**
 * MaxPool: y = max over each window. VJP: dy routed to the argmax of each window, given by the
 * forward node's own Indices output (flat indices into x; recomputed only for a column-major
 * storage_order). Windows that cannot overlap (kernel ≤ stride, no dilation) in floor mode hand dy to
 * MaxUnpool, which writes each value at its index and zeros elsewhere: exactly the VJP, and faster in
 * onnxruntime than a scatter into zeros (with ceil_mode, onnxruntime's MaxUnpool wants an output
 * larger than x). The rest scatter into zeros; overlapping windows can hit one position twice, which
 * needs ScatterElements' `add` reduction (opset 16); before that they are refused.
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
    // The forward node computes the argmax anyway; ask it for its Indices output (row-major ones only)
    // instead of pooling a second time.
    const outs = node.output!;
    const indices = attrInt('storage_order', 0) === 0
      ? (outs[1] ||= b.fresh('maxpool_indices'))
      : b.node('MaxPool', [x(0)], {
        kernel_shape: a.kernel, strides: a.strides, pads: a.pads, dilations: a.dilations,
        ceil_mode: attrInt('ceil_mode', 0), storage_order: 0,
      }, 2, 'maxpool_argmax')[1]!;
    if (!overlap && a.dilations.every((d) => d === 1) && attrInt('ceil_mode', 0) === 0) {
      return [b.op('MaxUnpool', [dy[0]!, indices, b.shape(x(0))], { kernel_shape: a.kernel, strides: a.strides, pads: a.pads })];
    }
    const size = b.op('Reshape', [b.op('Size', [x(0)]), b.i64([1])]);
    const zeros = b.op('ConstantOfShape', [size], { value: { name: '', dataType: DT.FLOAT, dims: [1], floatData: [0] } });
    const flatIdx = b.op('Reshape', [indices, b.i64([-1])]);
    const flatDy = b.op('Reshape', [dy[0]!, b.i64([-1])]);
    const scattered = b.op('ScatterElements', [zeros, flatIdx, flatDy], { axis: 0, reduction: overlap ? 'add' : undefined });
    return [b.op('Reshape', [scattered, b.shape(x(0))])];
  },
};
