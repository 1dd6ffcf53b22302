/**
 * Finite-difference cases for the windowed rules: Conv (stride, asymmetric pads, dilation, groups, 1-D,
 * strides that skip inputs), MaxPool (non-overlapping, and overlapping from opset 16) and AveragePool
 * (with and without pads, count_include_pad both ways). Non-overlapping MaxPool (MaxUnpool) is checked
 * with floor and ceil modes, pads and a column-major storage_order; tiling AveragePool (Resize) with and
 * without a floor-mode remainder; Conv and AveragePool with dynamic spatial dims (the run-time slice). MaxPool inputs are distinct grid values, so no
 * window has a tie within the finite-difference step.
 */
import type { AttrInput } from '../../../src/onnx/proto.js';
import { cf, inp, randn, single, type GradCase, type InputSpec } from './harness.js';

/** Conv of input `x` with a constant weight [M, C/group, k…] (and bias [M] when asked). */
function conv(label: string, x: readonly (number | string)[], w: number[], attrs: Record<string, AttrInput>, bias = false): GradCase {
  const n = w.reduce((a, b) => a * b, 1);
  const init = [cf('w', w, randn(`${label}/w`, n, 0.5))];
  if (bias) init.push(cf('bias', [w[0]!], randn(`${label}/b`, w[0]!)));
  return single('Conv', label, { inputs: [inp('x', x)], init, attrs });
}

const pool = (op: string, label: string, opset: number, x: InputSpec, attrs: Record<string, AttrInput>): GradCase =>
  single(op, label, { opset, inputs: [x], attrs });

export const CONV: GradCase[] = [
  conv('3x3 pads 1 [N, 2, 5, 5]', ['N', 2, 5, 5], [3, 2, 3, 3], { pads: [1, 1, 1, 1] }),
  conv('stride 2, asymmetric pads [0, 1, 1, 2], bias [2, 2, 6, 5]', [2, 2, 6, 5], [3, 2, 3, 3], { strides: [2, 2], pads: [0, 1, 1, 2] }, true),
  conv('dilations 2 [2, 2, 7, 6]', [2, 2, 7, 6], [2, 2, 2, 3], { dilations: [2, 2] }),
  conv('group 2, stride 2, pads 1 [2, 4, 5, 5]', [2, 4, 5, 5], [6, 2, 3, 3], { group: 2, strides: [2, 2], pads: [1, 1, 1, 1] }),
  conv('depthwise group 3 [N, 3, 4, 4]', ['N', 3, 4, 4], [3, 1, 2, 2], { group: 3 }, true),
  conv('1-D stride 3, dilation 2, pads 1 [2, 3, 11]', [2, 3, 11], [2, 3, 3], { strides: [3], dilations: [2], pads: [1, 1] }),
  conv('stride 3 > kernel 2 skips inputs [1, 1, 7, 7]', [1, 1, 7, 7], [2, 1, 2, 2], { strides: [3, 3], kernel_shape: [2, 2] }),
  conv('stride 2 pads 1, dynamic spatial dims [2, 2, H, W]', [2, 2, 'H', 'W'], [3, 2, 3, 3], { strides: [2, 2], pads: [1, 1, 1, 1] }),
  pool('MaxPool', 'kernel 2 stride 2 [N, 2, 4, 4]', 13, inp('x', ['N', 2, 4, 4], 'distinct'), { kernel_shape: [2, 2], strides: [2, 2] }),
  pool('MaxPool', 'kernel 2 stride 3 (gaps) [2, 1, 7, 7]', 13, inp('x', [2, 1, 7, 7], 'distinct'), { kernel_shape: [2, 2], strides: [3, 3] }),
  pool('MaxPool', '1-D kernel 3 stride 3 [2, 3, 9]', 13, inp('x', [2, 3, 9], 'distinct'), { kernel_shape: [3], strides: [3] }),
  pool('MaxPool', 'kernel 2 stride 2 floor mode, odd size [2, 2, 5, 5]', 13, inp('x', [2, 2, 5, 5], 'distinct'), { kernel_shape: [2, 2], strides: [2, 2] }),
  pool('MaxPool', 'kernel 2 stride 2 ceil_mode=1 [2, 1, 5, 5]', 13, inp('x', [2, 1, 5, 5], 'distinct'), { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1 }),
  pool('MaxPool', 'kernel 2 stride 2 pads [1, 0, 0, 1] [N, 2, 5, 5]', 13, inp('x', ['N', 2, 5, 5], 'distinct'), { kernel_shape: [2, 2], strides: [2, 2], pads: [1, 0, 0, 1] }),
  pool('MaxPool', 'kernel 2 stride 2 storage_order=1 [2, 2, 4, 6]', 13, inp('x', [2, 2, 4, 6], 'distinct'), { kernel_shape: [2, 2], strides: [2, 2], storage_order: 1 }),
  pool('MaxPool', 'overlapping kernel 3 stride 1 pads 1 [2, 2, 5, 5]', 16, inp('x', [2, 2, 5, 5], 'distinct'), { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }),
  pool('MaxPool', 'overlapping kernel 3 stride 2 [N, 2, 7, 6]', 16, inp('x', ['N', 2, 7, 6], 'distinct'), { kernel_shape: [3, 3], strides: [2, 2] }),
  pool('MaxPool', 'overlapping kernel 2 dilation 2 [1, 1, 6, 6]', 16, inp('x', [1, 1, 6, 6], 'distinct'), { kernel_shape: [2, 2], dilations: [2, 2] }),
  pool('MaxPool', 'overlapping kernel 3 stride 2 ceil_mode=1 [1, 2, 6, 6]', 16, inp('x', [1, 2, 6, 6], 'distinct'), { kernel_shape: [3, 3], strides: [2, 2], ceil_mode: 1 }),
  single('MaxPool', 'kernel 2 stride 2 with an unused Indices output', {
    inputs: [inp('x', [2, 2, 4, 4], 'distinct')], attrs: { kernel_shape: [2, 2], strides: [2, 2] }, outs: ['y', 'idx'], outputs: ['y'],
  }),
  pool('AveragePool', 'kernel 2 stride 2 no pads [N, 2, 4, 4]', 13, inp('x', ['N', 2, 4, 4]), { kernel_shape: [2, 2], strides: [2, 2] }),
  pool('AveragePool', 'kernel 2 stride 2 floor mode, odd sizes [2, 2, 5, 7]', 13, inp('x', [2, 2, 5, 7]), { kernel_shape: [2, 2], strides: [2, 2] }),
  pool('AveragePool', '1-D kernel 3 stride 3 [N, 2, 10]', 13, inp('x', ['N', 2, 10]), { kernel_shape: [3], strides: [3] }),
  pool('AveragePool', 'kernel 2 stride 2, dynamic spatial dims [2, 1, H, W]', 13, inp('x', [2, 1, 'H', 'W']), { kernel_shape: [2, 2], strides: [2, 2] }),
  pool('AveragePool', 'kernel 3 pads 1 count_include_pad=0 [2, 2, 5, 5]', 13, inp('x', [2, 2, 5, 5]), { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }),
  pool('AveragePool', 'kernel 3 stride 2 pads 1 count_include_pad=1 [2, 1, 6, 5]', 13, inp('x', [2, 1, 6, 5]), {
    kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], count_include_pad: 1,
  }),
  pool('AveragePool', 'kernel [2, 3] strides [1, 2] asymmetric pads [1, 0, 0, 1] [N, 2, 4, 5]', 13, inp('x', ['N', 2, 4, 5]), {
    kernel_shape: [2, 3], strides: [1, 2], pads: [1, 0, 0, 1],
  }),
  pool('AveragePool', '1-D kernel 3 stride 2 pads 1 [2, 3, 8]', 13, inp('x', [2, 3, 8]), { kernel_shape: [3], strides: [2], pads: [1, 1] }),
  pool('AveragePool', 'opset 19 dilations 2 pads 1 [1, 2, 6, 6]', 19, inp('x', [1, 2, 6, 6]), { kernel_shape: [2, 2], dilations: [2, 2], pads: [1, 1, 1, 1] }),
];
