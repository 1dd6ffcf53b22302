/** Concat along `axis`. VJP: dxᵢ = the slice of dy that xᵢ occupies along the axis. */
import { normAxis } from '../ops.js';
import type { GradRule } from './types.js';

export const Concat: GradRule = {
  grad: ({ b, dy, x, node, needs, attrInt, rank }) => {
    const n = node.input?.length ?? 0;
    const axis = normAxis(attrInt('axis', 0), rank(x(0)));
    const out: (string | null)[] = [];
    let start = b.i64([0]);
    for (let i = 0; i < n; i++) {
      const len = b.shapeSlice(x(i), axis, axis + 1);
      const end = b.op('Add', [start, len]);
      out.push(needs(i) ? b.op('Slice', [dy[0]!, start, end, b.i64([axis])]) : null);
      start = end;
    }
    return out;
  },
};
