/**
 * Merging adapters into the base weights (DESIGN 3.4 "merged ONNX"): W ← W + s·(B·A) in PEFT's
 * [out, in] meaning, written in whatever layout the model stores the weight (MatMul's [in, out],
 * Gemm with transA/transB, weights on either side), divided by Gemm's alpha. The result has no
 * adapter inputs and runs in any ONNX runtime.
 */
import { InvalidConfigError, InvalidInputError } from '../errors.js';
import { ConstantTable, cloneModel, type ModelProto, type TargetInfo } from '../onnx/index.js';

/** One adapter's matrices: A [r, in], B [out, r], row-major float32. */
export interface AdapterMatrices {
  A: Float32Array;
  B: Float32Array;
}

/** Return a copy of `model` with every site's s·B·A folded into its weight. */
export function mergeAdapters(
  model: ModelProto,
  sites: readonly (TargetInfo & { rank: number; scale: number })[],
  weights: Readonly<Record<string, AdapterMatrices>>,
): ModelProto {
  const m = cloneModel(model);
  const consts = new ConstantTable(m.graph!);
  for (const site of sites) {
    if (site.shared) throw new InvalidConfigError(`weight '${site.weight}' of '${site.module}' is shared by several modules; a merged export cannot adapt tied weights separately`, { module: site.module });
    const w = weights[site.module];
    if (!w) throw new InvalidInputError(`no adapter weights for module '${site.module}'`, { module: site.module });
    const { rank: r, in: nIn, out: nOut } = site;
    if (w.A.length !== r * nIn || w.B.length !== nOut * r) {
      throw new InvalidInputError(`adapter '${site.module}' has A of ${w.A.length} and B of ${w.B.length} values; expected [${r}, ${nIn}] and [${nOut}, ${r}]`, { module: site.module });
    }
    const value = consts.get(site.weight);
    if (!value || !(value.data instanceof Float32Array)) throw new InvalidInputError(`weight '${site.weight}' is not a float32 constant`);
    const W = new Float32Array(value.data);
    // Stored as [out, in] for a left-form weight kept as is, or a right-form weight kept transposed.
    const outIn = (site.form === 'left') !== site.weightTransposed;
    const factor = site.scale / site.gemmAlpha;
    for (let o = 0; o < nOut; o++) {
      for (let i = 0; i < nIn; i++) {
        let acc = 0;
        for (let k = 0; k < r; k++) acc += w.B[o * r + k]! * w.A[k * nIn + i]!;
        const idx = outIn ? o * nIn + i : i * nOut + o;
        W[idx] = W[idx]! + factor * acc;
      }
    }
    consts.setFloat32(site.weight, W);
  }
  return m;
}
