/**
 * Finite-difference cases for reductions and normalisations: ReduceSum (axes input from opset 13,
 * attribute before), ReduceMean (attribute through 17, input from 18), Softmax/LogSoftmax (per-axis from
 * opset 13, coerced to 2-D before), LayerNormalization, BatchNormalization, GlobalAveragePool.
 */
import { f } from '../../../src/onnx/proto.js';
import { cf, ci, inp, randn, single, type GradCase } from './harness.js';

const softmaxes = ['Softmax', 'LogSoftmax'].flatMap((op) => [
  single(op, 'axis -1 [N, 5]', { inputs: [inp('x', ['N', 5])], attrs: { axis: -1 } }),
  single(op, 'axis 1 [2, 3, 4]', { inputs: [inp('x', [2, 3, 4])], attrs: { axis: 1 } }),
  single(op, 'default axis [2, 3, 4]', { inputs: [inp('x', [2, 3, 4])] }),
  single(op, 'axis 0 [3, 4]', { inputs: [inp('x', [3, 4])], attrs: { axis: 0 } }),
  single(op, 'opset 11 default axis 1 [2, 3, 4] (coerced to [2, 12])', { opset: 11, inputs: [inp('x', [2, 3, 4])] }),
  single(op, 'opset 11 axis 2 [2, 3, 4]', { opset: 11, inputs: [inp('x', [2, 3, 4])], attrs: { axis: 2 } }),
  single(op, 'opset 11 axis 0 [N, 3]', { opset: 11, inputs: [inp('x', ['N', 3])], attrs: { axis: 0 } }),
]);

/** LayerNormalization (opset 17 unless given) with scale and bias initializers of the normalised shape. */
function layerNorm(label: string, shape: readonly (number | string)[], axis: number, normShape: number[], bias = true, epsilon?: number, opset = 17): GradCase {
  const n = normShape.reduce((a, b) => a * b, 1);
  const init = [cf('scale', normShape, randn(`${label}/scale`, n, 0.5).map((v) => 1 + v))];
  if (bias) init.push(cf('bias', normShape, randn(`${label}/bias`, n)));
  return single('LayerNormalization', label, {
    opset, inputs: [inp('x', shape)], init,
    attrs: { axis, ...(epsilon === undefined ? {} : { epsilon: f(epsilon) }) },
  });
}

/** BatchNormalization in inference mode, C = 3 channels. */
function batchNorm(label: string, opset: number, shape: readonly (number | string)[], epsilon?: number): GradCase {
  return single('BatchNormalization', label, {
    opset, inputs: [inp('x', shape)],
    init: [cf('scale', [3], [1.5, -0.7, 0.9]), cf('bias', [3], [0.1, 0.2, -0.3]), cf('mean', [3], [0.2, -0.1, 0.4]), cf('var', [3], [0.8, 1.7, 0.3])],
    attrs: epsilon === undefined ? {} : { epsilon: f(epsilon) },
  });
}

export const REDUCE: GradCase[] = [
  single('ReduceSum', 'axes [1] keepdims=1 [N, 3, 4]', { inputs: [inp('x', ['N', 3, 4])], init: [ci('axes', [1])], attrs: { keepdims: 1 } }),
  single('ReduceSum', 'axes [-1, 0] keepdims=0 [2, 3, 4]', { inputs: [inp('x', [2, 3, 4])], init: [ci('axes', [-1, 0])], attrs: { keepdims: 0 } }),
  single('ReduceSum', 'no axes (all) keepdims=0 [2, 3]', { inputs: [inp('x', [2, 3])], attrs: { keepdims: 0 } }),
  single('ReduceSum', 'no axes, noop_with_empty_axes=1 [2, 3]', { inputs: [inp('x', [2, 3])], attrs: { noop_with_empty_axes: 1 } }),
  single('ReduceSum', 'opset 11 axes attribute [1] keepdims=0 [N, 3, 4]', { opset: 11, inputs: [inp('x', ['N', 3, 4])], attrs: { axes: [1], keepdims: 0 } }),
  single('ReduceSum', 'opset 11 no axes keepdims=1 [2, 3]', { opset: 11, inputs: [inp('x', [2, 3])] }),
  single('ReduceSum', 'empty axes input (all) keepdims=1 [2, 3]', { inputs: [inp('x', [2, 3])], init: [ci('axes', [])] }),
  single('ReduceMean', 'opset 11 axes attribute [1] keepdims=0 [2, 3, 4]', { opset: 11, inputs: [inp('x', [2, 3, 4])], attrs: { axes: [1], keepdims: 0 } }),
  single('ReduceMean', 'opset 17 axes attribute [0, 2] keepdims=1 [2, 3, 4]', { opset: 17, inputs: [inp('x', [2, 3, 4])], attrs: { axes: [0, 2] } }),
  single('ReduceMean', 'opset 17 axes attribute [-1] keepdims=0 [N, 5]', { opset: 17, inputs: [inp('x', ['N', 5])], attrs: { axes: [-1], keepdims: 0 } }),
  single('ReduceMean', 'opset 17 over a dynamic axis [1] keepdims=0 [2, H, 4]', { opset: 17, inputs: [inp('x', [2, 'H', 4])], attrs: { axes: [1], keepdims: 0 } }),
  single('ReduceMean', 'opset 18 over the dynamic batch axis [0, 2] [N, 3, 2]', { opset: 18, inputs: [inp('x', ['N', 3, 2])], init: [ci('axes', [0, 2])] }),
  single('ReduceMean', 'opset 13 no axes keepdims=0 [2, 3]', { inputs: [inp('x', [2, 3])], attrs: { keepdims: 0 } }),
  single('ReduceMean', 'opset 18 axes input [1] keepdims=0 [N, 3, 4]', { opset: 18, inputs: [inp('x', ['N', 3, 4])], init: [ci('axes', [1])], attrs: { keepdims: 0 } }),
  single('ReduceMean', 'opset 18 axes input [-2, -1] keepdims=1 [2, 3, 4]', { opset: 18, inputs: [inp('x', [2, 3, 4])], init: [ci('axes', [-2, -1])] }),
  single('ReduceMean', 'opset 18 no axes (all) keepdims=1 [2, 3]', { opset: 18, inputs: [inp('x', [2, 3])] }),
  ...softmaxes,
  layerNorm('axis -1 [N, 3, 6]', ['N', 3, 6], -1, [6]),
  layerNorm('axis -2 [2, 3, 4], scale/bias [3, 4]', [2, 3, 4], -2, [3, 4]),
  layerNorm('axis 1 [N, 5] no bias, epsilon 1e-3', ['N', 5], 1, [5], false, 1e-3),
  layerNorm('axis 0 [3, 4] (everything)', [3, 4], 0, [3, 4]),
  // From opset 18 the rule's ReduceMean takes its axes as an input.
  layerNorm('opset 18 axis -2 [2, 3, 4], scale/bias [3, 4]', [2, 3, 4], -2, [3, 4], true, undefined, 18),
  batchNorm('[N, 3, 4, 4]', 13, ['N', 3, 4, 4]),
  batchNorm('opset 15 [2, 3, 5] epsilon 1e-3', 15, [2, 3, 5], 1e-3),
  batchNorm('opset 15 [N, 3] (no spatial axes)', 15, ['N', 3]),
  single('GlobalAveragePool', '[N, 3, 4, 5]', { inputs: [inp('x', ['N', 3, 4, 5])] }),
  single('GlobalAveragePool', '1-D spatial [2, 2, 6]', { inputs: [inp('x', [2, 2, 6])] }),
  single('GlobalAveragePool', '3-D spatial [2, 3, 2, 2, 3]', { inputs: [inp('x', [2, 3, 2, 2, 3])] }),
];
