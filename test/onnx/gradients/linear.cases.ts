/** Finite-difference cases for MatMul (batch broadcasting, 1-D operands) and Gemm (every transA/transB). */
import { f } from '../../../src/onnx/proto.js';
import { inp, single, type GradCase } from './harness.js';

const matmul = (label: string, a: readonly (number | string)[], b: readonly (number | string)[]): GradCase =>
  single('MatMul', label, { inputs: [inp('a', a), inp('b', b)] });

/** Gemm with A' = [M, K] = [3, 4], B' = [K, N] = [4, 5] laid out as transA/transB say. */
function gemm(tA: 0 | 1, tB: 0 | 1, alpha: number, beta: number, cShape: readonly (number | string)[] | null, m: number | string = 3): GradCase {
  const A = tA ? [4, m] : [m, 4];
  const B = tB ? [5, 4] : [4, 5];
  const inputs = [inp('a', A), inp('b', B), ...(cShape ? [inp('c', cShape)] : [])];
  const label = `transA=${tA} transB=${tB} alpha=${alpha} beta=${beta} A [${A.join(', ')}] B [${B.join(', ')}] C ${cShape ? `[${cShape.join(', ')}]` : 'absent'}`;
  return single('Gemm', label, { inputs, attrs: { transA: tA, transB: tB, alpha: f(alpha), beta: f(beta) } });
}

export const LINEAR: GradCase[] = [
  matmul('[N, 4] · [4, 5]', ['N', 4], [4, 5]),
  matmul('[N, 3, 4] · [4, 5] (2-D B broadcast over the batch)', ['N', 3, 4], [4, 5]),
  matmul('[2, 1, 3, 4] · [3, 4, 2] (batch dims broadcast both ways)', [2, 1, 3, 4], [3, 4, 2]),
  matmul('[3, 4] · [2, 4, 5] (2-D A broadcast)', [3, 4], [2, 4, 5]),
  matmul('1-D A [3] · [3, 4]', [3], [3, 4]),
  matmul('1-D A [3] · batched [2, 3, 5]', [3], [2, 3, 5]),
  matmul('[2, 3, 4] · 1-D B [4]', [2, 3, 4], [4]),
  matmul('1-D · 1-D [4] · [4] (scalar result)', [4], [4]),
  single('MatMul', 'opset 11 1-D A [3] · [2, 3, 5]', { opset: 11, inputs: [inp('a', [3]), inp('b', [2, 3, 5])] }),
  single('MatMul', 'opset 11 [2, 3, 4] · 1-D B [4]', { opset: 11, inputs: [inp('a', [2, 3, 4]), inp('b', [4])] }),
  single('MatMul', 'opset 11 [N, 3, 4] · [4, 5]', { opset: 11, inputs: [inp('a', ['N', 3, 4]), inp('b', [4, 5])] }),
  gemm(0, 0, 0.7, 1.3, [5], 'N'),
  gemm(1, 0, 1, 0.5, [3, 5]),
  gemm(0, 1, 2, 1, [3, 1]),
  gemm(1, 1, 0.5, 2, []),
  gemm(0, 0, 1, 1, null, 'N'),
  gemm(1, 1, 1.5, 0.25, [1, 5]),
];
