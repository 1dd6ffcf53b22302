/**
 * Finite-difference cases for the rules that move data without arithmetic: Reshape, Flatten, Transpose,
 * Squeeze/Unsqueeze (axes input from opset 13, attribute before), Concat, Split (split input from 13,
 * attribute before, num_outputs from 18), Slice (clamped, negative, strided, reversed), Gather
 * (duplicate, negative and scalar indices, axis ≠ 0) and Pad (constant mode).
 */
import { DT, f, valueToTensor } from '../../../src/onnx/proto.js';
import { cf, ci, inp, randn, single, type GradCase } from './harness.js';

const i32 = (name: string, values: number[], dims: number[] = [values.length]) => valueToTensor(name, DT.INT32, dims, Int32Array.from(values));

/** Slice at opset 13 with constant starts/ends (and axes/steps when given). */
function slice(label: string, shape: readonly (number | string)[], starts: number[], ends: number[], axes?: number[], steps?: number[]): GradCase {
  const init = [ci('starts', starts), ci('ends', ends)];
  if (axes) init.push(ci('axes', axes));
  if (steps) {
    if (!axes) throw new Error('steps need axes in these cases');
    init.push(ci('steps', steps));
  }
  return single('Slice', label, { inputs: [inp('x', shape)], init });
}

export const SHAPE: GradCase[] = [
  single('Reshape', '[N, 6] to [-1, 2, 3]', { inputs: [inp('x', ['N', 6])], init: [ci('s', [-1, 2, 3])] }),
  single('Reshape', '[2, 3, 4] to [0, 12] (0 copies)', { inputs: [inp('x', [2, 3, 4])], init: [ci('s', [0, 12])] }),
  single('Reshape', '[2, 3, 4] to [4, 6] opset 14', { opset: 14, inputs: [inp('x', [2, 3, 4])], init: [ci('s', [4, 6])], attrs: { allowzero: 0 } }),
  // The way back to x's shape: a constant with 0 (copied) and -1, or x's Shape where two dims are unknown.
  single('Reshape', '[N, 6] to [-1, 3] (back: [-1, 6])', { inputs: [inp('x', ['N', 6])], init: [ci('s', [-1, 3])] }),
  single('Reshape', '[N, H, 8] to [0, 0, 2, 4] (back: [0, 0, 8])', { inputs: [inp('x', ['N', 'H', 8])], init: [ci('s', [0, 0, 2, 4])] }),
  single('Reshape', '[N, H, 4] to [-1, 4] (back: Shape of x)', { inputs: [inp('x', ['N', 'H', 4])], init: [ci('s', [-1, 4])] }),
  single('Flatten', 'default axis 1 [N, 3, 4]', { inputs: [inp('x', ['N', 3, 4])] }),
  single('Flatten', 'axis 2 [N, H, 2, 3]', { inputs: [inp('x', ['N', 'H', 2, 3])], attrs: { axis: 2 } }),
  single('Flatten', 'axis 0 [2, 3]', { inputs: [inp('x', [2, 3])], attrs: { axis: 0 } }),
  single('Flatten', 'axis -1 [2, 3, 4]', { inputs: [inp('x', [2, 3, 4])], attrs: { axis: -1 } }),
  single('Transpose', 'default perm (reverse) [N, 3]', { inputs: [inp('x', ['N', 3])] }),
  single('Transpose', 'perm [2, 0, 1] [2, 3, 4]', { inputs: [inp('x', [2, 3, 4])], attrs: { perm: [2, 0, 1] } }),
  single('Transpose', 'perm [0, 2, 3, 1] [N, 2, 3, 5]', { inputs: [inp('x', ['N', 2, 3, 5])], attrs: { perm: [0, 2, 3, 1] } }),
  single('Transpose', 'default perm [2, 3, 4]', { inputs: [inp('x', [2, 3, 4])] }),
  single('Squeeze', 'axes input [1] [N, 1, 3]', { inputs: [inp('x', ['N', 1, 3])], init: [ci('axes', [1])] }),
  single('Squeeze', 'no axes [1, 3, 1]', { inputs: [inp('x', [1, 3, 1])] }),
  single('Squeeze', 'axes input [-1] [2, 3, 1]', { inputs: [inp('x', [2, 3, 1])], init: [ci('axes', [-1])] }),
  single('Squeeze', 'opset 11 axes attribute [0] [1, 4]', { opset: 11, inputs: [inp('x', [1, 4])], attrs: { axes: [0] } }),
  single('Unsqueeze', 'axes input [0, -1] [N, 3]', { inputs: [inp('x', ['N', 3])], init: [ci('axes', [0, -1])] }),
  single('Unsqueeze', 'axes input [1] [2, 3]', { inputs: [inp('x', [2, 3])], init: [ci('axes', [1])] }),
  single('Unsqueeze', 'opset 11 axes attribute [1, 3] [2, 3]', { opset: 11, inputs: [inp('x', [2, 3])], attrs: { axes: [1, 3] } }),
  single('Concat', 'axis 1 [N, 2] and [N, 3]', { inputs: [inp('a', ['N', 2]), inp('b', ['N', 3])], attrs: { axis: 1 } }),
  single('Concat', 'axis -1 of three, one constant', {
    inputs: [inp('a', [2, 3, 1]), inp('b', [2, 3, 2])], init: [cf('k', [2, 3, 2], randn('concat/k', 12))], attrs: { axis: -1 },
  }),
  single('Concat', 'axis 0 [2, 3] and [1, 3]', { inputs: [inp('a', [2, 3]), inp('b', [1, 3])], attrs: { axis: 0 } }),
  single('Concat', 'one tensor twice (fan-out) axis 0', { inputs: [inp('a', [2, 3])], node: ['a', 'a'], attrs: { axis: 0 } }),
  single('Split', 'split input [2, 1] axis 1 [N, 3]', {
    inputs: [inp('x', ['N', 3])], init: [ci('split', [2, 1])], attrs: { axis: 1 }, outs: ['y0', 'y1'],
  }),
  single('Split', 'equal halves axis 0 [4, 3], only the first output used', {
    inputs: [inp('x', [4, 3])], outs: ['y0', 'y1'], outputs: ['y0'],
  }),
  single('Split', 'opset 11 split attribute [1, 3] axis -1 [2, 4]', {
    opset: 11, inputs: [inp('x', [2, 4])], attrs: { axis: -1, split: [1, 3] }, outs: ['y0', 'y1'],
  }),
  single('Split', 'opset 18 num_outputs=3 axis 1 [2, 6], middle output unused', {
    opset: 18, inputs: [inp('x', [2, 6])], attrs: { axis: 1, num_outputs: 3 }, outs: ['y0', 'y1', 'y2'], outputs: ['y0', 'y2'],
  }),
  slice('end clamped: [1, 100) on axis 1 [N, 5]', ['N', 5], [1], [100], [1]),
  slice('negative starts/ends [-3, -1) on axis -1 [2, 6]', [2, 6], [-3], [-1], [-1]),
  slice('step 2 on axis 1 [2, 7]', [2, 7], [0], [7], [1], [2]),
  slice('reversed: step -1 from -1 to -100 on axis 0 [5, 3]', [5, 3], [-1], [-100], [0], [-1]),
  slice('two axes, steps [-2, 2] [2, 6, 5]', [2, 6, 5], [4, 0], [0, 5], [1, 2], [-2, 2]),
  slice('axes omitted [4, 3]', [4, 3], [1, 0], [3, 2]),
  slice('start clamped below: [-100, 2) on axis 0 [N, 3]', ['N', 3], [-100], [2], [0]),
  single('Slice', 'int32 starts/ends/axes/steps [3, 8]', {
    inputs: [inp('x', [3, 8])], init: [i32('s', [1]), i32('e', [8]), i32('a', [1]), i32('st', [3])],
  }),
  single('Gather', 'axis 0, duplicate and negative indices [0, 2, -1, 0] of [4, 3]', { inputs: [inp('x', [4, 3])], init: [ci('i', [0, 2, -1, 0])] }),
  single('Gather', 'axis 1, 2-D indices [[1, 1], [-2, 0]] of [2, 5, 3]', {
    inputs: [inp('x', [2, 5, 3])], init: [ci('i', [1, 1, -2, 0], [2, 2])], attrs: { axis: 1 },
  }),
  single('Gather', 'scalar index 2 of [5, 3]', { inputs: [inp('x', [5, 3])], init: [ci('i', [2], [])] }),
  single('Gather', 'axis -1, int32 indices [3, 0, 3] of [N, 2, 4]', { inputs: [inp('x', ['N', 2, 4])], init: [i32('i', [3, 0, 3])], attrs: { axis: -1 } }),
  single('Gather', 'embedding: [6, 4] table, int64 index input [N, 3]', {
    inputs: [inp('x', [6, 4]), inp('i', ['N', 3], [0, 5, 2, 2, 1, 0, 3, 3, 3, -1, 4, 0], { dtype: 'int64' })],
  }),
  single('Pad', 'constant pads [0, 1, 2, 0] of [N, 3]', { inputs: [inp('x', ['N', 3])], init: [ci('pads', [0, 1, 2, 0])], attrs: { mode: 'constant' } }),
  single('Pad', 'constant value 0.5, pads on every axis of [2, 3, 4]', {
    inputs: [inp('x', [2, 3, 4])], init: [ci('pads', [1, 0, 2, 0, 1, 1]), cf('v', [], [0.5])],
  }),
  single('Pad', 'opset 18 axes input [-1], pads [2, 1] of [2, 3]', {
    opset: 18, inputs: [inp('x', [2, 3])], init: [ci('pads', [2, 1]), cf('v', [], [0]), ci('axes', [-1])],
  }),
  single('Pad', 'opset 10 pads and value attributes [2, 3]', { opset: 10, inputs: [inp('x', [2, 3])], attrs: { pads: [0, 2, 1, 0], value: f(0.25) } }),
  single('Gather', 'opset 11 axis 1 indices [2, 0, 2] of [N, 3]', { opset: 11, inputs: [inp('x', ['N', 3])], init: [ci('i', [2, 0, 2])], attrs: { axis: 1 } }),
  slice('opset 11 steps [-2] on axis 1 [2, 7]', [2, 7], [6], [-100], [1], [-2]),
  single('Pad', 'opset 11 pads [1, 1, 1, 1] of [2, 2]', { opset: 11, inputs: [inp('x', [2, 2])], init: [ci('pads', [1, 1, 1, 1])] }),
];
