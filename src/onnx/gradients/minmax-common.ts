/**
 * Shared by Max and Min: the gradient goes to the inputs equal to the result, split evenly among ties,
 * dxᵢ = dy ⊙ [xᵢ = y] / Σⱼ [xⱼ = y]. So Max(x, x) has gradient dy (not 2·dy), and a tie with a
 * constant gets dy/2, the mean of the two one-sided derivatives (what a central difference measures).
 */
import { sum } from '../ops.js';
import type { GradContext } from './types.js';

export function selectGrad(ctx: GradContext): (string | null)[] {
  const { b, dy, x, y, needs, node, dtype } = ctx;
  const n = node.input?.length ?? 0;
  const hits = Array.from({ length: n }, (_, i) => b.op('Cast', [b.op('Equal', [x(i), y(0)])], { to: dtype(y(0)) }));
  const share = n === 1 ? dy[0]! : b.op('Div', [dy[0]!, sum(b, hits)]);
  return hits.map((h, i) => (needs(i) ? b.op('Mul', [share, h]) : null));
}
