/** Shared by Conv and the pooling rules: attribute reading and the transposed-convolution adjoint. */
import type { GradContext } from './types.js';

export interface WindowAttrs {
  kernel: number[];
  strides: number[];
  pads: number[];
  dilations: number[];
}

/** Kernel, strides, pads, dilations of a windowed op, refusing auto_pad SAME_* (pads known only at run time). */
export function windowAttrs(ctx: GradContext, spatial: number, kernel: number[]): WindowAttrs {
  const autoPad = ctx.attrString('auto_pad', 'NOTSET');
  if (autoPad !== 'NOTSET' && autoPad !== 'VALID') ctx.unsupported(`auto_pad=${autoPad}`);
  const strides = ctx.attrInts('strides') ?? new Array<number>(spatial).fill(1);
  const dilations = ctx.attrInts('dilations') ?? new Array<number>(spatial).fill(1);
  const pads = autoPad === 'VALID' ? new Array<number>(2 * spatial).fill(0) : ctx.attrInts('pads') ?? new Array<number>(2 * spatial).fill(0);
  return { kernel, strides, pads, dilations };
}

/**
 * The adjoint of a strided, padded, dilated correlation from x to y: ConvTranspose of g (shaped like
 * y) by w. Where the spatial dims of x and y are static, output_padding is set so the result is exactly
 * x's size; otherwise it is stride − 1 (so the result covers every input position) and the result is
 * sliced back to x's spatial size at run time.
 */
export function convAdjoint(ctx: GradContext, g: string, w: string, a: WindowAttrs, group: number, x: string, y: string, spatial: number): string {
  const { b } = ctx;
  const xs = ctx.dims(x).slice(2);
  const ys = ctx.dims(y).slice(2);
  const exact = xs.every((d) => d !== null) && ys.every((d) => d !== null)
    ? xs.map((d, i) => d! - ((ys[i]! - 1) * a.strides[i]! - a.pads[i]! - a.pads[i + spatial]! + (a.kernel[i]! - 1) * a.dilations[i]! + 1))
    : null;
  const attrs = { kernel_shape: a.kernel, strides: a.strides, pads: a.pads, dilations: a.dilations, group };
  if (exact && exact.every((p, i) => p >= 0 && p < Math.max(a.strides[i]!, a.dilations[i]!))) {
    return b.op('ConvTranspose', [g, w], { ...attrs, output_padding: exact });
  }
  const full = b.op('ConvTranspose', [g, w], { ...attrs, output_padding: a.strides.map((s) => s - 1) });
  const axes = Array.from({ length: spatial }, (_, i) => i + 2);
  const ends = b.op('Slice', [b.shape(x), b.i64([2]), b.i64([2 + spatial]), b.i64([0])]);
  return b.op('Slice', [full, b.i64(new Array<number>(spatial).fill(0)), ends, b.i64(axes)]);
}
