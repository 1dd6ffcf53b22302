/**
 * MatMul (numpy semantics, batch dims broadcast): Y = A·B.
 * VJP: dA = dY·Bᵀ, dB = Aᵀ·dY (each summed over broadcast batch dims); 1-D operands are
 * promoted as numpy does and the promoted axis removed again.
 *
 * onnxruntime runs a MatMul whose operand is a Transpose of the last two axes as one kernel
 * (FusedMatMul), but it first merges a Transpose of a Transpose into one, which then runs on its own.
 * Attention's Kᵀ is a Transpose of the heads [B, T, H, d] to [B, H, d, T]: dKᵀ = Qᵀ·dS transposed Q
 * (itself a Transpose of the heads) on its own, and the Transpose rule's way back to the heads then
 * moved single floats (the last axis moves). For an operand made by a Transpose that puts its input's
 * last axis second to last, the rule computes the transposed product instead, dKᵀ = (dSᵀ·Q)ᵀ: dSᵀ
 * fuses into the MatMul, Q is read as it is, and the outer Transpose merges with the way back into
 * one that moves whole rows of d floats. On Q's side (a Transpose that keeps the last axis) the plain
 * dQ = dS·(Kᵀ)ᵀ already moves rows, and the flipped form would not: flipping both sides, as a first
 * version did, made mail-transformer's gradient run ~3% slower (heads of d = 16 floats). Where a
 * row is short (d ≤ SHORT_ROW, static) moving single floats costs about what moving rows does, and
 * the flip saves the Transpose that dQ = dS·(Kᵀ)ᵀ needs: the transformer fixture (d = 8) ran 5%
 * faster with it.
 */
import { reduceSum, transposeLast2, unsqueeze } from '../ops.js';
import { attrInts } from '../proto.js';
import type { GradRule } from './types.js';

/** Rows of at most this many floats (32 bytes) are cheap to move one float at a time (see below). */
const SHORT_ROW = 8;

export const MatMul: GradRule = {
  grad: ({ b, dy, x, y, needs, rank, probeDims, opset, unbroadcastDims, producer }) => {
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
      const byTranspose = (t: string) => producer(t)?.opType === 'Transpose' && !producer(t)!.domain;
      // Made by a Transpose whose perm puts its input's last axis second to last (so that the flipped
      // product's Transpose, merged with the Transpose rule's inverse, keeps the last axis in place).
      const rowsBack = (t: string, r: number) => byTranspose(t) && (attrInts(producer(t)!, 'perm') ?? Array.from({ length: r }, (_, i) => r - 1 - i))[r - 2] === r - 1;
      const plain = !byTranspose(g) && [ap, bp].every((p) => p.every((d, k) => d.slice(0, -2).every((v, i) => v === yp[k]![i])));
      // Q's side too where its rows are short (d ≤ SHORT_ROW floats, static): moving rows of so few
      // floats costs about what moving single floats does, and the flip saves Kᵀ's own Transpose.
      const shortRows = ap[0][ra - 1] === ap[1][ra - 1] && ap[0][ra - 1]! <= SHORT_ROW;
      const flipA = plain && ra === rb && (rowsBack(A, ra) || (shortRows && byTranspose(A) && byTranspose(B)));
      const flipB = plain && ra === rb && rowsBack(B, rb);
      if (flipA || flipB) {
        const rg = rank(y(0));
        return [
          !needs(0) ? null : flipA ? transposeLast2(b, b.op('MatMul', [B, transposeLast2(b, g, rg)]), ra) : b.op('MatMul', [g, transposeLast2(b, B, rb)]),
          !needs(1) ? null : flipB ? transposeLast2(b, b.op('MatMul', [transposeLast2(b, g, rg), A]), rb) : b.op('MatMul', [transposeLast2(b, A, ra), g]),
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
