/**
 * Clip: y = min(max(x, lo), hi) (bounds as inputs from opset 11, attributes before).
 * VJP: dx = dy where lo ≤ x ≤ hi, else 0 (the bounds are not differentiated).
 */
import type { GradRule } from './types.js';

export const Clip: GradRule = {
  grad: ({ b, dy, x, opset, hasInput, attrFloat, needs, unsupported }) => {
    if (needs(1) || needs(2)) unsupported('the clip bounds must not depend on the adapter');
    let mask: string | null = null;
    const lo = opset >= 11 ? (hasInput(1) ? x(1) : null) : b.f32([attrFloat('min', -3.4028234663852886e38)]);
    const hi = opset >= 11 ? (hasInput(2) ? x(2) : null) : b.f32([attrFloat('max', 3.4028234663852886e38)]);
    if (lo) mask = b.op('Not', [b.op('Less', [x(0), lo])]);
    if (hi) {
      const m = b.op('Not', [b.op('Greater', [x(0), hi])]);
      mask = mask ? b.op('And', [mask, m]) : m;
    }
    return [mask ? b.op('Where', [mask, dy[0]!, b.f32([0])]) : dy[0], null, null];
  },
};
