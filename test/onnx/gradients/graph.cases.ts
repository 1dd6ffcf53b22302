/**
 * Finite-difference cases for whole (small) graphs, which exercise the engine rather than one rule:
 * fan-out accumulation, ops with no rule that lie off the gradient path (simply run), and
 * not-differentiable ops on the path (Shape feeding Reshape, ArgMax feeding Gather, Floor, Size).
 * They are labelled with the op `graph`.
 */
import { DT, f } from '../../../src/onnx/proto.js';
import { cf, ci, inp, randn, type GradCase } from './harness.js';

const g = (label: string, c: Omit<GradCase, 'op' | 'label'>): GradCase => ({ op: 'graph', label, ...c });

/** GELU as torch exports it before opset 20: g = (x · (erf(x / √2) + 1)) · 0.5, erf output `e`. */
const GELU_CONSTS = [cf('sqrt2', [], [Math.SQRT2]), cf('one', [], [1]), cf('half', [], [0.5])];
const TORCH_GELU = [
  { op: 'Div', inputs: ['x', 'sqrt2'], outputs: ['u'] },
  { op: 'Erf', inputs: ['u'], outputs: ['e'] },
  { op: 'Add', inputs: ['e', 'one'], outputs: ['a'] },
  { op: 'Mul', inputs: ['x', 'a'], outputs: ['m'] },
  { op: 'Mul', inputs: ['m', 'half'], outputs: ['g'] },
];

/** Attention scores from heads [N, T, H, d]: Transpose(q0) · Transpose(k0) (Q [N, H, T, d], Kᵀ [N, H, d, T]). */
const HEADS = [inp('q0', ['N', 3, 2, 2]), inp('k0', ['N', 3, 2, 2])];
const SCORES = [
  { op: 'Transpose', inputs: ['q0'], outputs: ['q'], attrs: { perm: [0, 2, 1, 3] } },
  { op: 'Transpose', inputs: ['k0'], outputs: ['kt'], attrs: { perm: [0, 2, 3, 1] } },
  { op: 'MatMul', inputs: ['q', 'kt'], outputs: ['s'] },
];

/** 17 products of x by weights [3, 1..3], side by side: more pieces and terms than one WebGPU shader binds. */
const WIDE = Array.from({ length: 17 }, (_, k) => ({ name: `w${k}`, width: 1 + (k % 3) }));

export const GRAPH: GradCase[] = [
  g('MLP: MatMul, Add, Tanh, MatMul, Softmax, weights differentiated too', {
    opset: 13,
    inputs: [inp('x', ['N', 4]), inp('w1', [4, 5]), inp('w2', [5, 3])],
    initializers: [cf('b1', [5], randn('mlp/b1', 5))],
    nodes: [
      { op: 'MatMul', inputs: ['x', 'w1'], outputs: ['h0'] },
      { op: 'Add', inputs: ['h0', 'b1'], outputs: ['h1'] },
      { op: 'Tanh', inputs: ['h1'], outputs: ['h'] },
      { op: 'MatMul', inputs: ['h', 'w2'], outputs: ['z'] },
      { op: 'Softmax', inputs: ['z'], outputs: ['y'], attrs: { axis: -1 } },
    ],
    outputs: ['y'],
  }),
  g('self-attention with residual and LayerNorm: x fans out into five uses', {
    opset: 17,
    inputs: [inp('x', ['N', 3, 4])],
    initializers: [
      cf('wq', [4, 4], randn('att/wq', 16, 0.5)), cf('wk', [4, 4], randn('att/wk', 16, 0.5)),
      cf('scale', [4], [1, 1.1, 0.9, 1.2]), cf('bias', [4], [0, 0.1, -0.1, 0.2]), cf('half', [], [0.5]),
    ],
    nodes: [
      { op: 'MatMul', inputs: ['x', 'wq'], outputs: ['q'] },
      { op: 'MatMul', inputs: ['x', 'wk'], outputs: ['k'] },
      { op: 'Transpose', inputs: ['k'], outputs: ['kt'], attrs: { perm: [0, 2, 1] } },
      { op: 'MatMul', inputs: ['q', 'kt'], outputs: ['s0'] },
      { op: 'Mul', inputs: ['s0', 'half'], outputs: ['s'] },
      { op: 'Softmax', inputs: ['s'], outputs: ['p'], attrs: { axis: -1 } },
      { op: 'MatMul', inputs: ['p', 'x'], outputs: ['o'] },
      { op: 'Add', inputs: ['o', 'x'], outputs: ['r'] },
      { op: 'LayerNormalization', inputs: ['r', 'scale', 'bias'], outputs: ['y'], attrs: { axis: -1 } },
    ],
    outputs: ['y'],
  }),
  // Q·Kᵀ with both operands made by Transposes of the heads: the MatMul rule takes Kᵀ's gradient as a
  // transposed product (MatMul.ts); the same for a left operand; then once with the incoming gradient
  // itself made by a Transpose, where it must not.
  g('attention scores from transposed heads: Transpose(q) · Transpose(k) [N, 2, 3, 3]', {
    opset: 13,
    inputs: HEADS,
    nodes: [
      ...SCORES,
      { op: 'Softmax', inputs: ['s'], outputs: ['y'], attrs: { axis: -1 } },
    ],
    outputs: ['y'],
  }),
  g('an operand made by a Transpose that puts its last axis second to last, on the left: Transpose(a0) · b', {
    opset: 13,
    inputs: [inp('a0', ['N', 3, 2, 2]), inp('b', ['N', 2, 3, 4])],
    nodes: [
      { op: 'Transpose', inputs: ['a0'], outputs: ['a'], attrs: { perm: [0, 2, 3, 1] } },
      { op: 'MatMul', inputs: ['a', 'b'], outputs: ['s'] },
      { op: 'Tanh', inputs: ['s'], outputs: ['y'] },
    ],
    outputs: ['y'],
  }),
  g('transposed heads whose product is transposed again before the output', {
    opset: 13,
    inputs: HEADS,
    nodes: [
      ...SCORES,
      { op: 'Transpose', inputs: ['s'], outputs: ['st'], attrs: { perm: [0, 3, 1, 2] } },
      { op: 'Tanh', inputs: ['st'], outputs: ['y'] },
    ],
    outputs: ['y'],
  }),
  // Softmax read only by MatMul(p, V): its row sums come from dO·O, not dP·P (Softmax.ts).
  g('multi-head attention scores [N, 2, 3, 3] → Softmax → ·V [N, 2, 3, 2], V and the scores both wrt', {
    opset: 13,
    inputs: [inp('s', ['N', 2, 3, 3]), inp('v', ['N', 2, 3, 2])],
    nodes: [
      { op: 'Softmax', inputs: ['s'], outputs: ['p'], attrs: { axis: -1 } },
      { op: 'MatMul', inputs: ['p', 'v'], outputs: ['o'] },
      { op: 'Tanh', inputs: ['o'], outputs: ['y'] },
    ],
    outputs: ['y'],
  }),
  // The exporters' erf-GELU, differentiated as one unit (gradients/patterns.ts), in torch's form and
  // with Mul by 1/√2 and commuted operands; and once with an inner tensor also read elsewhere, where
  // the pattern must not be taken.
  g('erf-GELU as torch exports it: (x · (erf(x / √2) + 1)) · 0.5', {
    opset: 17, inputs: [inp('x', ['N', 5])], initializers: GELU_CONSTS,
    nodes: [...TORCH_GELU, { op: 'Tanh', inputs: ['g'], outputs: ['y'] }],
    outputs: ['y'],
  }),
  g('erf-GELU with Mul by 1/√2 and commuted operands, [N, 2, 3]', {
    opset: 13,
    inputs: [inp('x', ['N', 2, 3])],
    initializers: [cf('rsqrt2', [], [Math.SQRT1_2]), cf('one', [], [1]), cf('half', [], [0.5])],
    nodes: [
      { op: 'Mul', inputs: ['rsqrt2', 'x'], outputs: ['u'] },
      { op: 'Erf', inputs: ['u'], outputs: ['e'] },
      { op: 'Add', inputs: ['one', 'e'], outputs: ['a'] },
      { op: 'Mul', inputs: ['a', 'x'], outputs: ['m'] },
      { op: 'Mul', inputs: ['half', 'm'], outputs: ['y'] },
    ],
    outputs: ['y'],
  }),
  g('erf-GELU whose erf is also read elsewhere (no pattern)', {
    opset: 17, inputs: [inp('x', ['N', 4])], initializers: GELU_CONSTS,
    nodes: [...TORCH_GELU, { op: 'Add', inputs: ['g', 'e'], outputs: ['y'] }],
    outputs: ['y'],
  }),
  g('LoRA site: y = x·W + s·(x·Aᵀ)·Bᵀ, gradients for A and B only', {
    opset: 14,
    inputs: [inp('x', ['N', 6], 'normal', { wrt: false }), inp('a', [2, 6]), inp('b', [5, 2])],
    initializers: [cf('w', [6, 5], randn('lora/w', 30)), cf('s', [], [2])],
    nodes: [
      { op: 'MatMul', inputs: ['x', 'w'], outputs: ['base'] },
      { op: 'Gemm', inputs: ['x', 'a'], outputs: ['u'], attrs: { transB: 1 } },
      { op: 'Gemm', inputs: ['u', 'b'], outputs: ['d0'], attrs: { transB: 1 } },
      { op: 'Mul', inputs: ['d0', 's'], outputs: ['d'] },
      { op: 'Add', inputs: ['base', 'd'], outputs: ['y'] },
    ],
    outputs: ['y'],
  }),
  g('two outputs sharing a subgraph, both seeded', {
    opset: 13,
    inputs: [inp('x', [2, 3])],
    nodes: [
      { op: 'Sigmoid', inputs: ['x'], outputs: ['h'] },
      { op: 'Mul', inputs: ['h', 'x'], outputs: ['y'] },
      { op: 'Exp', inputs: ['h'], outputs: ['z'] },
    ],
    outputs: ['y', 'z'],
  }),
  g('Sin off the path: on a branch from an input that is not differentiated', {
    opset: 13,
    inputs: [inp('x', ['N', 3]), inp('c', [3], 'normal', { wrt: false })],
    nodes: [
      { op: 'Sin', inputs: ['c'], outputs: ['s'] },
      { op: 'Mul', inputs: ['x', 's'], outputs: ['y'] },
    ],
    outputs: ['y'],
  }),
  g('Sin off the path: a second output that does not depend on the differentiated input', {
    opset: 13,
    inputs: [inp('x', ['N', 3]), inp('c', [2, 2], 'normal', { wrt: false })],
    nodes: [
      { op: 'Tanh', inputs: ['x'], outputs: ['y'] },
      { op: 'Sin', inputs: ['c'], outputs: ['z'] },
    ],
    outputs: ['y', 'z'],
  }),
  g('Sin off the path: an output of x that is not requested', {
    opset: 13,
    inputs: [inp('x', ['N', 3])],
    nodes: [
      { op: 'Tanh', inputs: ['x'], outputs: ['y'] },
      { op: 'Sin', inputs: ['x'], outputs: ['z'] },
    ],
    outputs: ['y', 'z'],
    seeded: ['y'],
  }),
  g('TopK and CumSum off the path, feeding it from a constant side', {
    opset: 14,
    inputs: [inp('x', ['N', 3]), inp('c', [3, 5], 'distinct', { wrt: false })],
    initializers: [ci('k', [2]), ci('ax', [0], [])],
    nodes: [
      { op: 'TopK', inputs: ['c', 'k'], outputs: ['vals', 'idx'], attrs: { axis: -1 } },
      { op: 'CumSum', inputs: ['vals', 'ax'], outputs: ['cs'] },
      { op: 'MatMul', inputs: ['x', 'cs'], outputs: ['y'] },
    ],
    outputs: ['y'],
  }),
  g('Shape → Slice → Concat feeding Reshape\'s shape input', {
    opset: 13,
    inputs: [inp('x', ['N', 3, 4])],
    initializers: [ci('zero', [0]), ci('one', [1]), ci('minus1', [-1])],
    nodes: [
      { op: 'Tanh', inputs: ['x'], outputs: ['t'] },
      { op: 'Shape', inputs: ['x'], outputs: ['shp'] },
      { op: 'Slice', inputs: ['shp', 'zero', 'one'], outputs: ['n'] },
      { op: 'Concat', inputs: ['n', 'minus1'], outputs: ['target'], attrs: { axis: 0 } },
      { op: 'Reshape', inputs: ['t', 'target'], outputs: ['y'] },
    ],
    outputs: ['y'],
  }),
  g('ArgMax feeding Gather\'s indices', {
    opset: 13,
    inputs: [inp('x', [4, 3], 'distinct')],
    nodes: [
      { op: 'ArgMax', inputs: ['x'], outputs: ['am'], attrs: { axis: 0, keepdims: 0 } },
      { op: 'Gather', inputs: ['x', 'am'], outputs: ['y'], attrs: { axis: 0 } },
    ],
    outputs: ['y'],
  }),
  g('Floor, Size and ConstantOfShape on the path (zero derivative almost everywhere)', {
    opset: 13,
    inputs: [inp('x', ['N', 3], 'distinct')],
    initializers: [],
    nodes: [
      { op: 'Floor', inputs: ['x'], outputs: ['fl'] },
      { op: 'Mul', inputs: ['x', 'fl'], outputs: ['m'] },
      { op: 'Size', inputs: ['x'], outputs: ['sz'] },
      { op: 'Cast', inputs: ['sz'], outputs: ['szf'], attrs: { to: DT.FLOAT } },
      { op: 'Div', inputs: ['m', 'szf'], outputs: ['d'] },
      { op: 'Shape', inputs: ['x'], outputs: ['shp'] },
      { op: 'ConstantOfShape', inputs: ['shp'], outputs: ['ones'], attrs: { value: cf('', [1], [1]) } },
      { op: 'Add', inputs: ['d', 'ones'], outputs: ['y'] },
    ],
    outputs: ['y'],
  }),
  g('x fans out into 17 MatMuls whose Concat is the output: dy split into 17 pieces, 17 terms summed (trees of Split and Sum)', {
    opset: 13,
    inputs: [inp('x', ['N', 3])],
    initializers: WIDE.map((w) => cf(w.name, [3, w.width], randn(`wide/${w.name}`, 3 * w.width, 0.5))),
    nodes: [
      ...WIDE.map((w) => ({ op: 'MatMul', inputs: ['x', w.name], outputs: [`p_${w.name}`] })),
      { op: 'Concat', inputs: WIDE.map((w) => `p_${w.name}`), outputs: ['y'], attrs: { axis: 1 } },
    ],
    outputs: ['y'],
  }),
  g('a node whose domain is spelled "ai.onnx" (the default domain)', {
    opset: 13,
    inputs: [inp('x', [2, 3])],
    nodes: [{ op: 'Tanh', domain: 'ai.onnx', inputs: ['x'], outputs: ['y'] }],
    outputs: ['y'],
  }),
  g('Cast to int64 and back (not differentiable) next to a differentiable path', {
    opset: 13,
    inputs: [inp('x', [2, 3], 'distinct')],
    initializers: [cf('ten', [], [10])],
    nodes: [
      { op: 'Mul', inputs: ['x', 'ten'], outputs: ['x10'] },
      { op: 'Cast', inputs: ['x10'], outputs: ['xi'], attrs: { to: DT.INT64 } },
      { op: 'Cast', inputs: ['xi'], outputs: ['xf'], attrs: { to: DT.FLOAT } },
      { op: 'LeakyRelu', inputs: ['x'], outputs: ['l'], attrs: { alpha: f(0.1) } },
      { op: 'Add', inputs: ['xf', 'l'], outputs: ['y'] },
    ],
    outputs: ['y'],
  }),
];
