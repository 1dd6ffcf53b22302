/**
 * Shared by Reshape and Flatten: dy (shaped like y) reshaped back to x's shape. Where the probes pin
 * x's shape down, the target is a constant: a static dim as it is, a dynamic dim that dy has on the
 * same axis as 0 (Reshape copies it), and at most one other dynamic dim as -1. Otherwise, or where a
 * dim is 0, it is x's Shape at run time: a node less each, and the Reshape no longer waits for x.
 */
import type { GradContext } from './types.js';

export function reshapeBack(ctx: Pick<GradContext, 'b' | 'dy' | 'x' | 'y' | 'probeDims'>): string {
  const { b, dy, x, y, probeDims } = ctx;
  const [x0, x1] = probeDims(x(0));
  const [y0, y1] = probeDims(y(0));
  const target: number[] = [];
  let unknown = 0;
  for (let i = 0; i < x0.length; i++) {
    if (x0[i] === x1[i]) target.push(x0[i]!);
    else if (y0[i] === x0[i] && y1[i] === x1[i]) target.push(0);
    else {
      target.push(-1);
      unknown++;
    }
  }
  const constant = unknown <= 1 && !x0.includes(0) && !x1.includes(0);
  return b.op('Reshape', [dy[0]!, constant ? b.i64(target) : b.shape(x(0))]);
}
