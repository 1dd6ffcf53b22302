/**
 * MatMul (numpy semantics, batch dims broadcast): Y = A·B.
 * VJP: dA = dY·Bᵀ, dB = Aᵀ·dY (each summed over broadcast batch dims); 1-D operands are
 * promoted as numpy does and the promoted axis removed again.
 *
 * onnxruntime runs a MatMul whose operand is a Transpose of the last two axes as one kernel
 * (FusedMatMul), but it first merges a Transpose of a Transpose into one, which then runs on its own:
 * attention's Q·Kᵀ, with Q and Kᵀ both made by Transposes of the heads, had dQ = dS·(Kᵀ)ᵀ and
 * dKᵀ = Qᵀ·dS each pay a full transpose of a forward tensor. There the rule computes the transposed
 * products instead, dQ = (Kᵀ·dSᵀ)ᵀ and dKᵀ = (dSᵀ·Q)ᵀ: dSᵀ fuses into the MatMul, and the outer
 * Transpose merges with the Transpose rule's own on the way back to the heads.
 */
import { reduceSum, transposeLast2, unsqueeze } from '../ops.js';
import type { GradRule } from './types.js';

export const MatMul: GradRule = {
  grad: ({ b, dy, x, y, needs, rank, probeDims, opset, unbroadcastDims, producerOp }) => {
    const A = x(0);
    const B = x(1);
    const g = dy[0]!;
    const ra = rank(A);
    const rb = rank(B);
    if (ra >= 2 && rb >= 2) {
      const yp = probeDims(y(0));
      const ap = probeDims(A);
      const bp = probeDims(B);
      const from = (inp: [number[], number[]]): [number[], number[]] => [
        [...yp[0].slice(0, -2), ...inp[0].slice(-2)],
        [...yp[1].slice(0, -2), ...inp[1].slice(-2)],
      ];
      const byTranspose = (t: string) => producerOp(t) === 'Transpose';
      const flip = ra === rb && byTranspose(A) && byTranspose(B) && !byTranspose(g)
        && [ap, bp].every((p) => p.every((d, k) => d.slice(0, -2).every((v, i) => v === yp[k]![i])));
      if (flip) {
        const rg = rank(y(0));
        return [
          needs(0) ? transposeLast2(b, b.op('MatMul', [B, transposeLast2(b, g, rg)]), ra) : null,
          needs(1) ? transposeLast2(b, b.op('MatMul', [transposeLast2(b, g, rg), A]), rb) : null,
        ];
      }
      return [
        needs(0) ? unbroadcastDims(b.op('MatMul', [g, transposeLast2(b, B, rb)]), from(ap), A) : null,
        needs(1) ? unbroadcastDims(b.op('MatMul', [transposeLast2(b, A, ra), g]), from(bp), B) : null,
      ];
    }
    if (ra >= 2 && rb === 1) {
      const gu = unsqueeze(b, opset, g, [-1]);
      const lead = Array.from({ length: ra - 1 }, (_, i) => i);
      return [
        needs(0) ? b.op('Mul', [gu, B]) : null,
        needs(1) ? reduceSum(b, opset, b.op('Mul', [A, gu]), lead, 0) : null,
      ];
    }
    if (ra === 1 && rb >= 2) {
      const gu = unsqueeze(b, opset, g, [-2]);
      const axes = [...Array.from({ length: rb - 2 }, (_, i) => i), rb - 1];
      return [
        needs(0) ? reduceSum(b, opset, b.op('Mul', [B, gu]), axes, 0) : null,
        needs(1) ? b.op('Mul', [unsqueeze(b, opset, A, [-1]), gu]) : null,
      ];
    }
    return [needs(0) ? b.op('Mul', [g, B]) : null, needs(1) ? b.op('Mul', [g, A]) : null];
  },
};
