/**
 * AveragePool: y = Σ_window x / divisor. VJP: dx = ConvTranspose(dy / divisor) with a ones kernel,
 * per channel. The divisor is the window size, or (count_include_pad = 0 with pads) the number of
 * real input positions in each window, computed by convolving ones. ceil_mode = 1 is refused.
 * Windows that tile x (kernel = stride, no pads or dilation, static spatial dims) take a shorter way:
 * each dy value spread over its window by a nearest-neighbour Resize, zero-padded at the end where the
 * floor mode left rows or columns out.
 */
import { DT } from '../proto.js';
import { convAdjoint, windowAttrs } from './pool-common.js';
import type { GradRule } from './types.js';

export const AveragePool: GradRule = {
  grad: (ctx) => {
    const { b, dy, x, rank, attrInt, attrInts, unsupported } = ctx;
    if (attrInt('ceil_mode', 0) !== 0) unsupported('ceil_mode = 1');
    const spatial = rank(x(0)) - 2;
    const kernel = attrInts('kernel_shape') ?? unsupported('kernel_shape missing');
    const a = windowAttrs(ctx, spatial, kernel);
    const ksize = kernel.reduce((p, q) => p * q, 1);
    const xs = ctx.dims(x(0)).slice(2);
    if (kernel.every((k, i) => k === a.strides[i] && a.dilations[i] === 1) && a.pads.every((p) => p === 0) && xs.every((d) => d !== null)) {
      const spread = b.op('Resize', [b.op('Mul', [dy[0]!, b.f32([1 / ksize])]), '', b.f32([1, 1, ...kernel])], {
        mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor',
      });
      const rest = xs.map((d, i) => d! % kernel[i]!);
      if (rest.every((r) => r === 0)) return [spread];
      return [b.op('Pad', [spread, b.i64([0, 0, ...rest.map(() => 0), 0, 0, ...rest])])];
    }
    const kdims = [1, 1, ...kernel];
    const ones = b.f32(new Array<number>(ksize).fill(1), kdims);
    const spatialShape = (t: string) => b.op('Slice', [b.shape(t), b.i64([2]), b.i64([2 + spatial]), b.i64([0])]);
    const dyr = b.op('Reshape', [dy[0]!, b.op('Concat', [b.i64([-1, 1]), spatialShape(dy[0]!)], { axis: 0 })]);
    let scaled: string;
    if (attrInt('count_include_pad', 0) === 1 || a.pads.every((p) => p === 0)) {
      scaled = b.op('Mul', [dyr, b.f32([1 / ksize])]);
    } else {
      const onesShape = b.op('Concat', [b.i64([1, 1]), spatialShape(x(0))], { axis: 0 });
      const plane = b.op('ConstantOfShape', [onesShape], { value: { name: '', dataType: DT.FLOAT, dims: [1], floatData: [1] } });
      const counts = b.op('Conv', [plane, ones], { kernel_shape: kernel, strides: a.strides, pads: a.pads, dilations: a.dilations });
      scaled = b.op('Div', [dyr, counts]);
    }
    const dx = convAdjoint(ctx, scaled, ones, a, 1, x(0), ctx.y(0), spatial);
    return [b.op('Reshape', [dx, b.shape(x(0))])];
  },
};
