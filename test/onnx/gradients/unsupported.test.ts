/**
 * ONNX_UNSUPPORTED_OP: an op with no rule on the gradient path, and a rule that refuses a form it cannot
 * differentiate, each name the op type, the node and the opset. (Ops with no rule off the path, and
 * not-differentiable ops on it, are finite-difference checked in graph.cases.ts.)
 */
import { afterAll, describe, expect, it } from 'vitest';
import { DomainError } from '../../../src/errors.js';
import { buildGradientModel } from '../../../src/onnx/gradient-model.js';
import { f } from '../../../src/onnx/proto.js';
import { OnnxRuntime } from '../../../src/onnx/runtime.js';
import { buildModel, cb, cf, ci, inp, wrtOf, type GraphSpec } from './harness.js';

const rt = new OnnxRuntime({ intraOpThreads: 1 });
afterAll(() => rt.close());

async function refusal(spec: GraphSpec, wrt = wrtOf(spec)): Promise<DomainError> {
  const err = await buildGradientModel(buildModel(spec), { wrt }, rt).then(
    () => { throw new Error('expected buildGradientModel to throw'); },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DomainError);
  return err as DomainError;
}

function expectNames(err: DomainError, opType: string, node: string, opset: number): void {
  expect(err.code).toBe('ONNX_UNSUPPORTED_OP');
  expect(err.message).toContain(opType);
  expect(err.message).toContain(`'${node}'`);
  expect(err.message).toContain(`opset ${opset}`);
  expect(err.details).toEqual({ opType, node, opset });
}

describe('an op with no rule on the gradient path', () => {
  it('Sin (opset 13)', async () => {
    const err = await refusal({
      opset: 13, inputs: [inp('x', ['N', 3])],
      nodes: [{ op: 'Relu', inputs: ['x'], outputs: ['r'] }, { op: 'Sin', inputs: ['r'], outputs: ['y'], name: 'sin_on_path' }],
      outputs: ['y'],
    });
    expectNames(err, 'Sin', 'sin_on_path', 13);
  });

  it('CumSum (opset 14), behind a rule that has one', async () => {
    const err = await refusal({
      opset: 14, inputs: [inp('x', [2, 4])], initializers: [ci('axis', [1], [])],
      nodes: [{ op: 'CumSum', inputs: ['x', 'axis'], outputs: ['c'], name: 'running_total' }, { op: 'Tanh', inputs: ['c'], outputs: ['y'] }],
      outputs: ['y'],
    });
    expectNames(err, 'CumSum', 'running_total', 14);
  });

  it('TopK (opset 11), through its values output', async () => {
    const err = await refusal({
      opset: 11, inputs: [inp('x', [2, 5])], initializers: [ci('k', [2])],
      nodes: [{ op: 'TopK', inputs: ['x', 'k'], outputs: ['vals', 'idx'], name: 'top2' }],
      outputs: ['vals'],
    });
    expectNames(err, 'TopK', 'top2', 11);
  });

  it('an unnamed node is named by its op type and first output', async () => {
    const err = await refusal({
      opset: 20, inputs: [inp('x', [3])],
      nodes: [{ op: 'Cos', inputs: ['x'], outputs: ['cosine'], name: '' }],
      outputs: ['cosine'],
    });
    expectNames(err, 'Cos', 'Cos(cosine)', 20);
  });

  it('an op of another domain (com.microsoft Gelu) on the path', async () => {
    const err = await refusal({
      opset: 13, imports: [{ domain: 'com.microsoft', version: 1 }], inputs: [inp('x', [2, 3])],
      nodes: [{ op: 'Gelu', domain: 'com.microsoft', inputs: ['x'], outputs: ['y'], name: 'ms_gelu' }],
      outputs: ['y'],
    });
    expect(err.code).toBe('ONNX_UNSUPPORTED_OP');
    expect(err.message).toContain('Gelu');
    expect(err.message).toContain("'ms_gelu'");
  });
});

describe('non-float32 tensors on the path', () => {
  it('a float64 detour (Cast to double) is refused, naming the tensor', async () => {
    const err = await refusal({
      opset: 13, inputs: [inp('x', [2, 3])],
      nodes: [
        { op: 'Cast', inputs: ['x'], outputs: ['d'], attrs: { to: 11 }, name: 'to_double' },
        { op: 'Exp', inputs: ['d'], outputs: ['e'], name: 'exp' },
        { op: 'Cast', inputs: ['e'], outputs: ['y'], attrs: { to: 1 }, name: 'to_float' },
      ],
      outputs: ['y'],
    });
    expect(err.code).toBe('ONNX_UNSUPPORTED_OP');
    expect(err.message).toMatch(/float64.*only float32/);
  });
});

describe('a rule refuses a form it cannot differentiate', () => {
  it('Conv with respect to its weight', async () => {
    const err = await refusal({
      opset: 13, inputs: [inp('x', [1, 1, 4, 4]), inp('w', [1, 1, 2, 2])],
      nodes: [{ op: 'Conv', inputs: ['x', 'w'], outputs: ['y'], name: 'conv1' }], outputs: ['y'],
    });
    expectNames(err, 'Conv', 'conv1', 13);
  });

  it('Conv with auto_pad SAME_UPPER', async () => {
    const err = await refusal({
      opset: 13, inputs: [inp('x', [1, 1, 4, 4])], initializers: [cf('w', [1, 1, 3, 3], new Array<number>(9).fill(0.1))],
      nodes: [{ op: 'Conv', inputs: ['x', 'w'], outputs: ['y'], name: 'same', attrs: { auto_pad: 'SAME_UPPER' } }], outputs: ['y'],
    });
    expectNames(err, 'Conv', 'same', 13);
    expect(err.message).toContain('SAME_UPPER');
  });

  it('MaxPool with overlapping windows before opset 16', async () => {
    const err = await refusal({
      opset: 13, inputs: [inp('x', [1, 1, 5, 5])],
      nodes: [{ op: 'MaxPool', inputs: ['x'], outputs: ['y'], name: 'pool', attrs: { kernel_shape: [3, 3], strides: [1, 1] } }], outputs: ['y'],
    });
    expectNames(err, 'MaxPool', 'pool', 13);
  });

  it('AveragePool with ceil_mode = 1', async () => {
    const err = await refusal({
      opset: 13, inputs: [inp('x', [1, 1, 5, 5])],
      nodes: [{ op: 'AveragePool', inputs: ['x'], outputs: ['y'], name: 'avg', attrs: { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1 } }],
      outputs: ['y'],
    });
    expectNames(err, 'AveragePool', 'avg', 13);
  });

  it('Pow with respect to its exponent', async () => {
    const err = await refusal({
      opset: 13, inputs: [inp('x', [3], 'positive'), inp('e', [3])],
      nodes: [{ op: 'Pow', inputs: ['x', 'e'], outputs: ['y'], name: 'pow' }], outputs: ['y'],
    });
    expectNames(err, 'Pow', 'pow', 13);
  });

  it('Pad in reflect mode', async () => {
    const err = await refusal({
      opset: 13, inputs: [inp('x', [2, 3])], initializers: [ci('pads', [0, 1, 0, 1])],
      nodes: [{ op: 'Pad', inputs: ['x', 'pads'], outputs: ['y'], name: 'reflect', attrs: { mode: 'reflect' } }], outputs: ['y'],
    });
    expectNames(err, 'Pad', 'reflect', 13);
  });

  it('Dropout with training_mode = true', async () => {
    const err = await refusal({
      opset: 13, inputs: [inp('x', [2, 3])], initializers: [cf('ratio', [], [0.5]), cb('train', [true], [])],
      nodes: [{ op: 'Dropout', inputs: ['x', 'ratio', 'train'], outputs: ['y'], name: 'drop' }], outputs: ['y'],
    });
    expectNames(err, 'Dropout', 'drop', 13);
  });

  it('LayerNormalization with respect to its scale', async () => {
    const err = await refusal({
      opset: 17, inputs: [inp('x', [2, 4]), inp('scale', [4])],
      nodes: [{ op: 'LayerNormalization', inputs: ['x', 'scale'], outputs: ['y'], name: 'ln', attrs: { epsilon: f(1e-5) } }], outputs: ['y'],
    });
    expectNames(err, 'LayerNormalization', 'ln', 17);
  });
});
