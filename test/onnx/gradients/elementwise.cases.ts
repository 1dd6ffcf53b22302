/** Finite-difference cases for the element-wise unary rules (and Cast, Identity, Dropout, Clip, Gelu). */
import { DT, f } from '../../../src/onnx/proto.js';
import { cb, cf, inp, single, type GradCase, type Gen } from './harness.js';

const unary = (op: string, gen?: Gen, attrs: Record<string, ReturnType<typeof f> | number | string> = {}, opset = 13): GradCase[] => [
  single(op, '[N, 5] symbolic batch', { opset, inputs: [inp('x', ['N', 5], gen)], attrs }),
  single(op, '[2, 3, 4]', { opset, inputs: [inp('x', [2, 3, 4], gen)], attrs }),
];

export const ELEMENTWISE: GradCase[] = [
  ...unary('Neg'),
  single('Neg', 'scalar []', { inputs: [inp('x', [])] }),
  ...unary('Relu', 'away'),
  ...unary('LeakyRelu', 'away', { alpha: f(0.2) }),
  single('LeakyRelu', 'default alpha [3, 4]', { inputs: [inp('x', [3, 4], 'away')] }),
  ...unary('Sigmoid'),
  ...unary('Tanh'),
  ...unary('Erf'),
  ...unary('Exp'),
  ...unary('Log', 'positive'),
  ...unary('Sqrt', 'positive'),
  ...unary('Reciprocal', 'away'),
  ...unary('Identity'),
  single('Identity', 'scalar []', { inputs: [inp('x', [])] }),
  single('Cast', 'float32 -> float32 [N, 3]', { inputs: [inp('x', ['N', 3])], attrs: { to: DT.FLOAT } }),
  {
    op: 'Cast', label: 'float32 -> float32 [2, 3, 4] (after Relu)', opset: 13,
    inputs: [inp('x', [2, 3, 4], 'away')],
    nodes: [
      { op: 'Relu', inputs: ['x'], outputs: ['r'] },
      { op: 'Cast', inputs: ['r'], outputs: ['y'], attrs: { to: DT.FLOAT } },
    ],
    outputs: ['y'],
  },
  single('Dropout', 'data only [N, 4]', { inputs: [inp('x', ['N', 4])] }),
  single('Dropout', 'ratio and training_mode = false, mask output [2, 3, 4]', {
    inputs: [inp('x', [2, 3, 4])],
    init: [cf('ratio', [], [0.3]), cb('train', [false], [])],
    outs: ['y', 'mask'],
    outputs: ['y', { name: 'mask', dtype: 'bool' }],
  }),
  single('Dropout', 'opset 12', { opset: 12, inputs: [inp('x', [3, 4])] }),
  ...unary('Gelu', undefined, {}, 20),
  single('Gelu', 'approximate=none [N, 5]', { opset: 20, inputs: [inp('x', ['N', 5])], attrs: { approximate: 'none' } }),
  single('Gelu', 'approximate=tanh [N, 5]', { opset: 20, inputs: [inp('x', ['N', 5])], attrs: { approximate: 'tanh' } }),
  single('Gelu', 'approximate=tanh [2, 3, 4]', { opset: 20, inputs: [inp('x', [2, 3, 4], [...Array(24).keys()].map((k) => (k - 12) / 4))], attrs: { approximate: 'tanh' } }),
  // Clip inputs come from a grid offset by 0.013 from multiples of 0.05, so none sits on a bound.
  single('Clip', 'min and max [N, 6]', { inputs: [inp('x', ['N', 6], 'distinct')], init: [cf('lo', [], [-0.3]), cf('hi', [], [0.4])] }),
  single('Clip', 'min only [2, 3, 4]', { inputs: [inp('x', [2, 3, 4], 'distinct')], init: [cf('lo', [], [-0.2])] }),
  single('Clip', 'max only [4, 5]', { inputs: [inp('x', [4, 5], 'distinct')], init: [cf('hi', [], [0.1])], node: ['x', '', 'hi'] }),
  single('Clip', 'no bounds [3, 4]', { inputs: [inp('x', [3, 4])] }),
  single('Clip', 'opset 10 min/max attributes [4, 5]', { opset: 10, inputs: [inp('x', [4, 5], 'distinct')], attrs: { min: f(-0.25), max: f(0.3) } }),
];
