/**
 * Models exported with a fixed batch size (torch.onnx.export without `dynamic_axes`): every input and
 * output leads with the same number, usually 1. Per-sample training needs a batch axis of any size.
 * Where the graph computes each sample on its own anyway (most MLPs, CNNs and encoders: the size is
 * only written in the declared shapes), the leading dims can be made symbolic. Whether that is so is
 * not guessed from the ops but tested: the relaxed model is run on 2k samples and must give, sample by
 * sample, what the original gives on each k of them. A graph that bakes the size into a constant (a
 * Reshape to [1, -1]) or mixes samples fails that test, and the model stays as it is.
 */
import { ModelUnsupportedError } from '../errors.js';
import { cloneModel, encodeModel, realInputs } from './model.js';
import { DT, toNum, type ModelProto, type ValueInfoProto } from './proto.js';
import type { OnnxRuntime, Tensor } from './runtime.js';

/** The symbolic name the relaxed leading dims get. */
export const BATCH_DIM = 'batch';

function leadingDim(v: ValueInfoProto): number | string | null {
  const d = v.type?.tensorType?.shape?.dim?.[0];
  if (!d) return null;
  if (d.dimValue !== undefined && d.dimValue !== null && toNum(d.dimValue) > 0) return toNum(d.dimValue);
  return d.dimParam || null;
}

/** The fixed leading dim of the model's first input (its batch axis), or null when it is not a fixed number. */
export function fixedBatchSize(model: ModelProto): number | null {
  const first = realInputs(model)[0];
  const d = first ? leadingDim(first) : null;
  return typeof d === 'number' ? d : null;
}

/**
 * A copy of `model` whose inputs and outputs lead with the symbolic `batch` instead of `size`, without
 * the graph's value_info (shape hints of intermediate tensors, which would still say `size`). Throws
 * MODEL_UNSUPPORTED when an input or output does not lead with `size`.
 */
export function relaxBatch(model: ModelProto, size: number): ModelProto {
  const m = cloneModel(model);
  const g = m.graph!;
  for (const [kind, list] of [['input', realInputs(m)], ['output', g.output ?? []]] as const) {
    for (const v of list) {
      const d = leadingDim(v);
      if (d !== size) {
        throw new ModelUnsupportedError(`${kind} '${v.name}' does not lead with the fixed batch size ${size} of the first input (its leading dim: ${d ?? 'none'})`, { [kind]: v.name });
      }
      v.type!.tensorType!.shape!.dim![0] = { dimParam: BATCH_DIM };
    }
  }
  g.valueInfo = [];
  return m;
}

/** Feeds for `batch` samples: each sample's values differ (floats by position, integers 0 or 1 by sample). */
function sampleFeeds(model: ModelProto, batch: number): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  realInputs(model).forEach((inp, k) => {
    const tt = inp.type!.tensorType!;
    const dims = (tt.shape?.dim ?? []).map((d, axis) => (axis === 0 ? batch : d.dimValue !== undefined && d.dimValue !== null && toNum(d.dimValue) > 0 ? toNum(d.dimValue) : 5));
    const n = dims.reduce((a, b) => a * b, 1);
    const per = n / batch;
    const sampleOf = (i: number) => Math.floor(i / per);
    let s = (k + 1) * 2654435761;
    const next = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
    switch (tt.elemType) {
      case DT.FLOAT: feeds[inp.name!] = { data: Float32Array.from({ length: n }, () => next() - 0.5), dims }; break;
      case DT.DOUBLE: feeds[inp.name!] = { data: Float64Array.from({ length: n }, () => next() - 0.5), dims }; break;
      case DT.INT64: feeds[inp.name!] = { data: BigInt64Array.from({ length: n }, (_, i) => BigInt(sampleOf(i) % 2)), dims }; break;
      case DT.INT32: feeds[inp.name!] = { data: Int32Array.from({ length: n }, (_, i) => sampleOf(i) % 2), dims }; break;
      case DT.BOOL: feeds[inp.name!] = { data: new Uint8Array(n).fill(1), dims, type: 'bool' }; break;
      case DT.UINT8: feeds[inp.name!] = { data: Uint8Array.from({ length: n }, (_, i) => sampleOf(i) % 2), dims }; break;
      default: throw new ModelUnsupportedError(`input '${inp.name}' has ONNX type ${tt.elemType}, which the batch check cannot feed`);
    }
  });
  return feeds;
}

/** Samples [b0, b1) of every input (all share the leading batch axis): views, no copies. */
export function sliceBatch(inputs: Readonly<Record<string, Tensor>>, b0: number, b1: number): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(inputs)) {
    const per = t.data.length / t.dims[0]!;
    out[name] = { ...t, data: t.data.subarray(b0 * per, b1 * per), dims: [b1 - b0, ...t.dims.slice(1)] };
  }
  return out;
}

/**
 * The model with a symbolic batch axis in place of its fixed one, when it computes every sample as the
 * original does (see the top of this file); else the reason it does not. `size` is the fixed batch
 * size (fixedBatchSize). The check runs the relaxed model once on 2·size samples and the original on
 * each half, in sessions of their own that are released afterwards.
 */
export async function relaxFixedBatch(model: ModelProto, size: number, runtime: OnnxRuntime): Promise<{ model: ModelProto } | { reason: string }> {
  let relaxed: ModelProto;
  try {
    relaxed = relaxBatch(model, size);
  } catch (err) {
    if (err instanceof ModelUnsupportedError) return { reason: err.message };
    throw err;
  }
  let feeds: Record<string, Tensor>;
  try {
    feeds = sampleFeeds(model, 2 * size);
  } catch (err) {
    if (err instanceof ModelUnsupportedError) return { reason: err.message };
    throw err;
  }
  const firstLine = (e: unknown) => (e as Error).message.split('\n')[0];
  const original = await runtime.open(encodeModel(model), { quiet: true }).catch((e: unknown) => e as Error);
  const open = await runtime.open(encodeModel(relaxed), { quiet: true }).catch((e: unknown) => e as Error);
  try {
    if (original instanceof Error) return { reason: `onnxruntime cannot open it: ${firstLine(original)}` };
    if (open instanceof Error) return { reason: `with a symbolic batch axis onnxruntime cannot open it: ${firstLine(open)}` };
    let halves: Record<string, Tensor>[];
    try {
      halves = [await original.run(sliceBatch(feeds, 0, size)), await original.run(sliceBatch(feeds, size, 2 * size))];
    } catch (e) {
      return { reason: `the check cannot run it on synthetic inputs: ${firstLine(e)}` };
    }
    let together: Record<string, Tensor>;
    try {
      together = await open.run(feeds);
    } catch (e) {
      return { reason: `with a symbolic batch axis it does not run on ${2 * size} samples: ${firstLine(e)}` };
    }
    for (const [name, t] of Object.entries(together)) {
      if (t.dims[0] !== 2 * size) return { reason: `on ${2 * size} samples its output '${name}' has ${t.dims[0] ?? 'no'} rows: the batch size is built into the graph` };
      const per = t.data.length / (2 * size);
      for (let h = 0; h < 2; h++) {
        const ref = halves[h]![name]!.data;
        let scale = 1;
        for (let i = 0; i < ref.length; i++) {
          const v = Math.abs(Number(ref[i]));
          if (v > scale && v !== Infinity) scale = v;
        }
        for (let i = 0; i < ref.length; i++) {
          const got = Number(t.data[h * size * per + i]);
          const want = Number(ref[i]);
          if (got === want || (Number.isNaN(got) && Number.isNaN(want))) continue;
          if (!(Math.abs(got - want) <= 1e-4 * scale)) {
            return { reason: `on ${2 * size} samples its output '${name}' differs from running them ${size} at a time: the samples are not computed independently` };
          }
        }
      }
    }
    return { model: relaxed };
  } finally {
    if (!(original instanceof Error)) await original.release().catch(() => undefined);
    if (!(open instanceof Error)) await open.release().catch(() => undefined);
  }
}
