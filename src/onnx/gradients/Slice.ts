/**
 * Slice(data, starts, ends, axes?, steps?) (opset ≥ 10). VJP: dy scattered back to the sliced
 * positions, axis by axis; the positions come from slicing Range(0, dim) with the same parameters, so
 * negative, clamped and strided slices all map exactly.
 */
import { DT } from '../proto.js';
import { normAxis, scatterAddAlongAxis } from '../ops.js';
import type { GradRule } from './types.js';

export const Slice: GradRule = {
  grad: ({ b, dy, x, opset, hasInput, constInts, rank, probeDims, dtype, unsupported }) => {
    if (opset < 10) unsupported('Slice before opset 10 (attributes form)');
    const i64 = (t: string) => (dtype(t) === DT.INT64 ? t : b.op('Cast', [t], { to: DT.INT64 }));
    const r = rank(x(0));
    const count = probeDims(x(1))[0][0] ?? 0;
    let axes: number[];
    if (hasInput(3)) {
      const c = constInts(x(3)) ?? unsupported('axes must be a constant');
      axes = c.map((a) => normAxis(a, r));
    } else {
      axes = Array.from({ length: count }, (_, i) => i);
    }
    const xShape = b.shape(x(0));
    let cur = dy[0]!;
    const done = new Array<boolean>(r).fill(false);
    axes.forEach((axis, k) => {
      const idx = b.i64([k]);
      const dim = b.op('Gather', [xShape, b.i64([axis], [])], { axis: 0 });
      const range = b.op('Range', [b.i64([0], []), dim, b.i64([1], [])]);
      const step = hasInput(4) ? b.op('Gather', [i64(x(4)), idx], { axis: 0 }) : b.i64([1]);
      const positions = b.op('Slice', [range, b.op('Gather', [i64(x(1)), idx], { axis: 0 }), b.op('Gather', [i64(x(2)), idx], { axis: 0 }), b.i64([0]), step]);
      done[axis] = true;
      const mask = b.op('Cast', [b.i64(done.map((d) => (d ? 1 : 0)))], { to: 9 });
      const target = b.op('Where', [mask, xShape, b.shape(dy[0]!)]);
      cur = scatterAddAlongAxis(b, cur, positions, axis, target, r);
    });
    return [cur, null, null, null, null];
  },
};
