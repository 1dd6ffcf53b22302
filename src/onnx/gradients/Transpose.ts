/** Transpose by perm (default: reversed axes). VJP: dx = transpose(dy, perm⁻¹). */
import type { GradRule } from './types.js';

export const Transpose: GradRule = {
  grad: ({ b, dy, x, attrInts, rank }) => {
    const r = rank(x(0));
    const perm = attrInts('perm') ?? Array.from({ length: r }, (_, i) => r - 1 - i);
    const inv = new Array<number>(r);
    perm.forEach((p, i) => (inv[p] = i));
    return [b.op('Transpose', [dy[0]!], { perm: inv })];
  },
};
