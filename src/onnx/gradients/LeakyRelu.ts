/** LeakyRelu: y = x if x > 0 else α·x. VJP: dx = dy where x > 0, else α·dy. */
import type { GradRule } from './types.js';

export const LeakyRelu: GradRule = {
  grad: ({ b, dy, x, attrFloat }) => {
    const alpha = attrFloat('alpha', 0.01);
    return [b.op('Where', [b.op('Greater', [x(0), b.f32([0])]), dy[0]!, b.op('Mul', [dy[0]!, b.f32([alpha])])])];
  },
};
