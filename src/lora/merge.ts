/**
 * Merging adapters into the base weights (DESIGN 3.4 "merged ONNX"): W ← W + s·(B·A) in PEFT's
 * [out, in] meaning, written in whatever layout the model stores the weight (MatMul's [in, out],
 * Gemm with transA/transB, weights on either side), divided by Gemm's alpha. The result has no
 * adapter inputs and runs in any ONNX runtime.
 *
 * A weight that something besides the adapted product reads (another target with its own adapter,
 * a Gather of a tied embedding table, a graph output) is not changed in place: the target gets its
 * own merged copy as a new initializer, and every other reader keeps the base weight.
 */
import { InvalidInputError } from '../errors.js';
import { ConstantTable, cloneModel, DT, forEachRead, type GraphProto, type ModelProto, type TargetInfo } from '../onnx/index.js';

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
  const g = m.graph!;
  const consts = new ConstantTable(g);
  const readers = readCounts(g);
  const nodes = g.node ?? [];
  const byName = new Map(nodes.map((n, index) => [n.name || `${n.opType}_${index}`, n]));
  const taken = new Set([...(g.initializer ?? []).map((t) => t.name!), ...nodes.flatMap((n) => n.output ?? [])]);
  for (const site of sites) {
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
    if ((readers.get(site.weight) ?? 0) <= 1) {
      consts.setFloat32(site.weight, W);
      continue;
    }
    const node = byName.get(site.node);
    if (!node || node.input?.[site.weightInput] !== site.weight) throw new InvalidInputError(`target node '${site.node}' of '${site.module}' does not read '${site.weight}'`, { module: site.module });
    let name = `${site.weight}/merged/${site.module}`;
    for (let k = 2; taken.has(name); k++) name = `${site.weight}/merged/${site.module}#${k}`;
    taken.add(name);
    (g.initializer ??= []).push({ name, dims: [...site.weightDims], dataType: DT.FLOAT, rawData: new Uint8Array(W.buffer, W.byteOffset, W.byteLength) });
    node.input![site.weightInput] = name;
  }
  return m;
}

/** How many times each name is read: node inputs (subgraphs included) and graph outputs. */
function readCounts(g: GraphProto): Map<string, number> {
  const count = new Map<string, number>();
  const add = (name: string) => count.set(name, (count.get(name) ?? 0) + 1);
  for (const n of g.node ?? []) forEachRead(n, (name) => name && add(name));
  for (const o of g.output ?? []) add(o.name!);
  return count;
}
