/**
 * Finite-difference cases for the broadcasting rules (Add, Sub, Mul, Div, Pow, Where, Max, Min, Sum,
 * Expand): 1-D and scalar operands, both operands broadcast, and fan-in of one tensor into both inputs.
 */
import { cb, cf, ci, inp, single, type GradCase, type Gen, type InputSpec } from './harness.js';

/** The same binary op at the shapes every broadcasting rule must handle. */
function binary(op: string, genA?: Gen, genB?: Gen): GradCase[] {
  return [
    single(op, '[N, 3] with 1-D [3]', { inputs: [inp('a', ['N', 3], genA), inp('b', [3], genB)] }),
    single(op, '[2, 1, 4] with [3, 1] (both broadcast)', { inputs: [inp('a', [2, 1, 4], genA), inp('b', [3, 1], genB)] }),
    single(op, 'scalar [] with [2, 3]', { inputs: [inp('a', [], genA), inp('b', [2, 3], genB)] }),
    single(op, 'same shape [2, 3]', { inputs: [inp('a', [2, 3], genA), inp('b', [2, 3], genB)] }),
  ];
}

/**
 * Where with its condition computed from a float input `c` that is not differentiated (c > 0), so the
 * case also runs a non-differentiable op. (A bool graph input cannot be fed: see the note in the report.)
 */
function where(label: string, condShape: readonly (number | string)[], branches: InputSpec[]): GradCase {
  return {
    op: 'Where', label, opset: 13,
    inputs: [inp('c', condShape, 'away', { wrt: false }), ...branches],
    initializers: [cf('zero', [], [0])],
    nodes: [
      { op: 'Greater', inputs: ['c', 'zero'], outputs: ['cond'] },
      { op: 'Where', inputs: ['cond', ...branches.map((i) => i.name)], outputs: ['y'] },
    ],
    outputs: ['y'],
  };
}

export const BROADCAST: GradCase[] = [
  ...binary('Add'),
  single('Add', 'one tensor into both inputs (fan-out) [N, 3]', { inputs: [inp('x', ['N', 3])], node: ['x', 'x'] }),
  single('Add', 'opset 11 [2, 1, 4] with [3, 1] (un-broadcast by attribute ReduceSum)', { opset: 11, inputs: [inp('a', [2, 1, 4]), inp('b', [3, 1])] }),
  ...binary('Sub'),
  ...binary('Mul'),
  single('Mul', 'x ⊙ x (fan-out) [N, 3]', { inputs: [inp('x', ['N', 3])], node: ['x', 'x'] }),
  ...binary('Div', 'normal', 'away'),
  single('Pow', 'constant scalar exponent 2.5, x [N, 3] > 0', { inputs: [inp('x', ['N', 3], 'positive')], init: [cf('e', [], [2.5])] }),
  single('Pow', 'exponent [3] broadcast over x [2, 3]', { inputs: [inp('x', [2, 3], 'positive')], init: [cf('e', [3], [1.5, 2, -0.5])] }),
  single('Pow', 'exponent [4, 1, 1] broadcasts x [2, 3] up', { inputs: [inp('x', [2, 3], 'positive')], init: [cf('e', [4, 1, 1], [0.5, 1, 2, 3])] }),
  single('Pow', 'int64 exponent 3, x of either sign', { inputs: [inp('x', ['N', 3])], init: [ci('e', [3], [])] }),
  where('cond [2, 3] from an input, a [2, 3], b [3]', [2, 3], [inp('a', [2, 3]), inp('b', [3])]),
  single('Where', 'cond [1, 4] constant, a [3, 1], b scalar', {
    inputs: [inp('a', [3, 1]), inp('b', [])],
    init: [cb('c', [true, false, false, true], [1, 4])],
    node: ['c', 'a', 'b'],
  }),
  where('cond [N, 1] from an input, a [N, 4], b [N, 4]', ['N', 1], [inp('a', ['N', 4]), inp('b', ['N', 4])]),
  ...['Max', 'Min'].flatMap((op) => [
    single(op, '[N, 3] with 1-D [3]', { inputs: [inp('a', ['N', 3], 'distinct'), inp('b', [3], 'distinct')] }),
    single(op, 'three inputs [2, 1, 4], [3, 1], [4]', { inputs: [inp('a', [2, 1, 4], 'distinct'), inp('b', [3, 1], 'distinct'), inp('c', [4], 'distinct')] }),
    single(op, 'one tensor into both inputs (every element a tie) [N, 3]', { inputs: [inp('a', ['N', 3])], node: ['a', 'a'] }),
    single(op, 'ties with a constant [2, 3]', { inputs: [inp('a', [2, 3], [0.5, -0.25, 0.75, 0.125, 1.5, -1])], init: [cf('k', [2, 3], [0.5, 0.3, 0.75, -0.2, 1.5, 0])] }),
    single(op, 'with a constant [2, 3]', { inputs: [inp('a', [2, 3], 'distinct')], init: [cf('k', [2, 3], [0.011, -0.3, 0.27, 0.5, -0.06, 0.09])] }),
  ]),
  single('Sum', 'three inputs [N, 3], [3], [1, 3]', { inputs: [inp('a', ['N', 3]), inp('b', [3]), inp('c', [1, 3])] }),
  single('Sum', 'single input [2, 3]', { inputs: [inp('a', [2, 3])] }),
  single('Sum', 'two inputs [2, 1, 4], [3, 1]', { inputs: [inp('a', [2, 1, 4]), inp('b', [3, 1])] }),
  single('Expand', 'x [3, 1] to [2, 3, 4]', { inputs: [inp('x', [3, 1])], init: [ci('s', [2, 3, 4])] }),
  single('Expand', 'x [4] to [3, 4]', { inputs: [inp('x', [4])], init: [ci('s', [3, 4])] }),
  single('Expand', 'x [2, 3] with shape [1, 1] (no change)', { inputs: [inp('x', [2, 3])], init: [ci('s', [1, 1])] }),
  single('Expand', 'x [N, 1] to [1, 5] (bidirectional)', { inputs: [inp('x', ['N', 1])], init: [ci('s', [1, 5])] }),
];
