/**
 * Shape knowledge for graph rewriting, by probing: the model is run twice by ONNX Runtime with every
 * intermediate tensor exposed as an output, once with each symbolic dim set to one value and once to
 * another. A dim equal in both runs is static; one that changed is dynamic. This gives every tensor's
 * rank and dtype (which gradient rules need) without a shape-inference engine of our own, and tells
 * which axis carries the batch.
 */
import { ModelUnsupportedError } from '../errors.js';
import { cloneModel, encodeModel, realInputs } from './model.js';
import { DT, toNum, type ModelProto } from './proto.js';
import type { OnnxRuntime, Tensor } from './runtime.js';

/** Per tensor: dtype (ONNX enum) and its dims in the two probe runs. */
export interface TensorShape {
  dtype: number;
  probe: [number[], number[]];
}

export interface ShapeInfo {
  tensors: Map<string, TensorShape>;
  /** The batch size used by each probe run (the value given to the first input's axis 0). */
  batch: [number, number];
}

/** Probe values: batch (the first input's axis 0) gets 2 then 3, other symbolic dims 5 then 7. */
const BATCH: [number, number] = [2, 3];
const OTHER: [number, number] = [5, 7];

function syntheticInput(dtype: number, dims: number[], seed: number): Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  switch (dtype) {
    case DT.FLOAT: {
      const d = new Float32Array(n);
      let s = seed * 2654435761 + 1;
      for (let i = 0; i < n; i++) {
        s = (s * 1103515245 + 12345) % 2147483648;
        d[i] = (s / 2147483648) * 0.5 + 0.25;
      }
      return { data: d, dims };
    }
    case DT.DOUBLE: return { data: new Float64Array(n).fill(0.5), dims };
    case DT.INT64: return { data: new BigInt64Array(n).fill(1n), dims };
    case DT.INT32: return { data: new Int32Array(n).fill(1), dims };
    case DT.BOOL: return { data: new Uint8Array(n).fill(1), dims, type: 'bool' };
    case DT.UINT8: return { data: new Uint8Array(n).fill(1), dims };
    default: throw new ModelUnsupportedError(`input dtype ${dtype} is not supported for probing`);
  }
}

const DT_OF: Record<string, number> = { float32: DT.FLOAT, float64: DT.DOUBLE, int64: DT.INT64, int32: DT.INT32, bool: DT.BOOL, uint8: DT.UINT8, int8: DT.INT8 };

/** Build the synthetic feeds a probe run uses (exported for callers who want sample inputs). */
export function probeFeeds(model: ModelProto, run: 0 | 1): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  const params = new Map<string, number>();
  realInputs(model).forEach((inp, k) => {
    const tt = inp.type?.tensorType;
    if (!tt) throw new ModelUnsupportedError(`input '${inp.name}' is not a tensor`);
    const dims = (tt.shape?.dim ?? []).map((d, axis) => {
      const v = d.dimValue !== undefined && d.dimValue !== null ? toNum(d.dimValue) : 0;
      if (v > 0) return v;
      const key = d.dimParam || `${inp.name}:${axis}`;
      if (!params.has(key)) params.set(key, k === 0 && axis === 0 ? BATCH[run] : OTHER[run]);
      return params.get(key)!;
    });
    feeds[inp.name!] = syntheticInput(tt.elemType ?? 0, dims, k + 1);
  });
  return feeds;
}

/** Run both probes and record every tensor's dtype and dims. */
export async function probeShapes(model: ModelProto, runtime: OnnxRuntime): Promise<ShapeInfo> {
  const probeModel = cloneModel(model);
  const g = probeModel.graph!;
  const outNames = new Set((g.output ?? []).map((o) => o.name));
  for (const n of g.node ?? []) {
    for (const o of n.output ?? []) {
      if (o && !outNames.has(o)) {
        g.output!.push({ name: o });
        outNames.add(o);
      }
    }
  }
  const session = await runtime.open(encodeModel(probeModel));
  const tensors = new Map<string, TensorShape>();
  for (const run of [0, 1] as const) {
    const feeds = probeFeeds(model, run);
    let res: Record<string, Tensor>;
    try {
      res = await session.run(feeds);
    } catch (e) {
      throw new ModelUnsupportedError(`cannot run the model on synthetic inputs to learn its shapes: ${(e as Error).message}`);
    }
    for (const [name, t] of [...Object.entries(feeds), ...Object.entries(res)]) {
      const prev = tensors.get(name);
      if (prev) prev.probe[run] = [...t.dims];
      else tensors.set(name, { dtype: dtypeOfArray(t), probe: [[...t.dims], [...t.dims]] });
    }
  }
  for (const t of g.initializer ?? []) {
    const dims = (t.dims ?? []).map(toNum);
    tensors.set(t.name!, { dtype: t.dataType ?? 0, probe: [dims, dims] });
  }
  await session.release().catch(() => undefined);
  return { tensors, batch: BATCH };
}

function dtypeOfArray(t: Tensor): number {
  const d = t.data;
  if (t.type === 'bool') return DT.BOOL;
  if (d instanceof Float32Array) return DT.FLOAT;
  if (d instanceof Float64Array) return DT.DOUBLE;
  if (d instanceof BigInt64Array) return DT.INT64;
  if (d instanceof Int32Array) return DT.INT32;
  if (d instanceof Uint8Array) return DT.UINT8;
  if (d instanceof Int8Array) return DT.INT8;
  return DT_OF['float32']!;
}

/** Static view of one tensor: rank and dims (null where the dim changed between probes). */
export function staticDims(s: TensorShape): (number | null)[] {
  const [a, b] = s.probe;
  return a.map((d, i) => (d === b[i] ? d : null));
}
