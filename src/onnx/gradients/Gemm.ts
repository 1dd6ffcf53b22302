/**
 * Gemm: Y = α·A'·B' + β·C with A' = transA ? Aᵀ : A, B' = transB ? Bᵀ : B.
 * VJP: dA' = α·dY·B'ᵀ, dB' = α·A'ᵀ·dY (transposed back to A's / B's layout), dC = β·dY un-broadcast.
 */
import { f } from '../proto.js';
import type { GradRule } from './types.js';

export const Gemm: GradRule = {
  grad: ({ b, dy, x, y, needs, attrInt, attrFloat, hasInput, unbroadcast }) => {
    const alpha = f(attrFloat('alpha', 1));
    const beta = attrFloat('beta', 1);
    const tA = attrInt('transA', 0);
    const tB = attrInt('transB', 0);
    const g = dy[0]!;
    const A = x(0);
    const B = x(1);
    const dA = !needs(0) ? null
      : tA === 0 ? b.op('Gemm', [g, B], { alpha, transB: tB === 1 ? 0 : 1 })
        : b.op('Gemm', [B, g], { alpha, transA: tB, transB: 1 });
    const dB = !needs(1) ? null
      : tB === 0 ? b.op('Gemm', [A, g], { alpha, transA: tA === 1 ? 0 : 1 })
        : b.op('Gemm', [g, A], { alpha, transA: 1, transB: tA });
    let dC: string | null = null;
    if (hasInput(2) && needs(2)) {
      const scaled = beta === 1 ? g : b.op('Mul', [g, b.f32([beta])]);
      dC = unbroadcast(scaled, y(0), x(2));
    }
    return [dA, dB, dC];
  },
};
