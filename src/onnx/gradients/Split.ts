/** Split along `axis` into outputs yᵢ. VJP: dx = Concat(dyᵢ, or zeros where an output has no gradient). */
import { normAxis } from '../ops.js';
import type { GradRule } from './types.js';

export const Split: GradRule = {
  grad: ({ b, dy, x, y, node, attrInt, rank, zerosLike }) => {
    const axis = normAxis(attrInt('axis', 0), rank(x(0)));
    const parts = (node.output ?? []).map((_, i) => dy[i] ?? zerosLike(y(i)));
    return [b.op('Concat', parts, { axis }), null];
  },
};
