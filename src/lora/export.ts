/**
 * Adapter exports (DESIGN 3.4):
 *  - PEFT: a zip of adapter_config.json and adapter_model.safetensors with
 *    `base_model.model.<module>.lora_A.weight` [r, in] / `.lora_B.weight` [out, r] and metadata
 *    (base model sha256, optimizer, step) in `__metadata__`;
 *  - merged ONNX: the base model with s·B·A folded into each weight, no adapter inputs;
 *  - inference bundle: the injected graph with A and B as graph inputs plus this adapter's tensors,
 *    so onnxruntime-web runs base + adapter and swaps adapters by feeding other tensors;
 *  - Kalman/optimizer state: θ, p, R and counters as safetensors, resumable elsewhere.
 */
import { strToU8, unzipSync, zipSync } from 'fflate';
import { InvalidInputError } from '../errors.js';
import { encodeModel, injectLora, selectTargets, type LoraConfig, type ModelProto } from '../onnx/index.js';
import { thetaToMatrices, type SiteShape } from './adapter.js';
import { mergeAdapters } from './merge.js';
import { decodeSafetensors, encodeSafetensors, type SafeTensor } from './safetensors.js';

/** What the exports need to know about an adapter. */
export interface ExportSubject {
  /** Base model name (PEFT's base_model_name_or_path) and its sha256. */
  modelName: string;
  modelSha256: string;
  lora: LoraConfig;
  sites: readonly SiteShape[];
  theta: Float64Array | Float32Array;
  optimizer: string;
  step: number;
  /** The model output the adapter was trained on (AdapterEngine.output), listed in the inference bundle. */
  output?: string;
}

/** PEFT's adapter_config.json for this adapter. */
export function peftConfig(s: ExportSubject): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    task_type: null,
    base_model_name_or_path: s.modelName,
    r: s.lora.rank,
    lora_alpha: s.lora.alpha ?? s.lora.rank,
    use_rslora: s.lora.rslora ?? false,
    target_modules: s.sites.map((x) => x.module),
    lora_dropout: 0,
    bias: 'none',
    fan_in_fan_out: false,
    init_lora_weights: true,
    inference_mode: true,
    modules_to_save: null,
  };
}

/** The PEFT zip: adapter_config.json + adapter_model.safetensors. */
export function exportPeft(s: ExportSubject): Uint8Array {
  const mats = thetaToMatrices(s.sites, s.theta);
  const tensors: Record<string, SafeTensor> = {};
  for (const site of s.sites) {
    tensors[`base_model.model.${site.module}.lora_A.weight`] = { dtype: 'F32', shape: [site.rank, site.in], data: mats[site.module]!.A };
    tensors[`base_model.model.${site.module}.lora_B.weight`] = { dtype: 'F32', shape: [site.out, site.rank], data: mats[site.module]!.B };
  }
  const st = encodeSafetensors(tensors, { format: 'pt', base_model_sha256: s.modelSha256, optimizer: s.optimizer, step: String(s.step) });
  return zipSync({
    'adapter_config.json': strToU8(JSON.stringify(peftConfig(s), null, 2)),
    'adapter_model.safetensors': st,
  }, { level: 6, mtime: new Date('2020-01-01T00:00:00Z') });
}

/** Read a PEFT zip back (used by tests and imports): config, tensors and metadata. */
export function readPeft(zip: Uint8Array): { config: Record<string, unknown>; tensors: Record<string, SafeTensor>; metadata: Record<string, string> } {
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(zip);
  } catch (e) {
    throw new InvalidInputError(`not a zip file: ${(e as Error).message}`);
  }
  const cfg = files['adapter_config.json'];
  const st = files['adapter_model.safetensors'];
  if (!cfg || !st) throw new InvalidInputError('a PEFT zip needs adapter_config.json and adapter_model.safetensors');
  return { config: JSON.parse(new TextDecoder().decode(cfg)), ...decodeSafetensors(st) };
}

/** The base model with every adapter merged into its weights. */
export function exportMergedOnnx(model: ModelProto, s: ExportSubject): Uint8Array {
  const targets = selectTargets(model, s.lora);
  const scale = (s.lora.alpha ?? s.lora.rank) / (s.lora.rslora ? Math.sqrt(s.lora.rank) : s.lora.rank);
  const sites = targets.map((t) => ({ ...t, rank: s.lora.rank, scale }));
  return encodeModel(mergeAdapters(model, sites, thetaToMatrices(s.sites, s.theta)));
}

/**
 * The inference bundle for onnxruntime-web (or any runtime): a zip of `model.onnx`, the injected graph
 * with every A and B as a plain graph input (so one downloaded graph serves any adapter of this
 * configuration), `adapter.safetensors` holding this adapter's tensors under exactly those input
 * names, and `inputs.json` listing data and adapter inputs with shapes, the graph's outputs, and the
 * one the adapter was trained on (`trainedOutput`, when known).
 */
export function exportInferenceBundle(model: ModelProto, s: ExportSubject): Uint8Array {
  const { model: injected, sites } = injectLora(model, s.lora);
  const mats = thetaToMatrices(s.sites, s.theta);
  const tensors: Record<string, SafeTensor> = {};
  for (const site of sites) {
    const m = mats[site.module];
    if (!m) throw new InvalidInputError(`no adapter weights for '${site.module}'`);
    tensors[site.aInput] = { dtype: 'F32', shape: [site.rank, site.in], data: m.A };
    tensors[site.bInput] = { dtype: 'F32', shape: [site.out, site.rank], data: m.B };
  }
  const adapterInputs = new Set(Object.keys(tensors));
  const inputs = {
    data: (injected.graph!.input ?? []).filter((i) => !adapterInputs.has(i.name!)).map((i) => i.name),
    adapter: sites.flatMap((x) => [{ name: x.aInput, shape: [x.rank, x.in] }, { name: x.bInput, shape: [x.out, x.rank] }]),
    outputs: (injected.graph!.output ?? []).map((o) => o.name),
    ...(s.output !== undefined && { trainedOutput: s.output }),
  };
  return zipSync({
    'model.onnx': encodeModel(injected),
    'adapter.safetensors': encodeSafetensors(tensors, { base_model_sha256: s.modelSha256, optimizer: s.optimizer, step: String(s.step) }),
    'inputs.json': strToU8(JSON.stringify(inputs, null, 2)),
  }, { level: 6, mtime: new Date('2020-01-01T00:00:00Z') });
}

/** Read an inference bundle back: the graph bytes, the adapter tensors (by input name) and the listing. */
export function readInferenceBundle(zip: Uint8Array): { model: Uint8Array; tensors: Record<string, SafeTensor>; inputs: Record<string, unknown> } {
  const files = unzipSync(zip);
  const model = files['model.onnx'];
  const st = files['adapter.safetensors'];
  const listing = files['inputs.json'];
  if (!model || !st || !listing) throw new InvalidInputError('an inference bundle needs model.onnx, adapter.safetensors and inputs.json');
  return { model, tensors: decodeSafetensors(st).tensors, inputs: JSON.parse(new TextDecoder().decode(listing)) };
}

/** An optimizer state (src/kalman's serialized form) as safetensors, with adapter metadata. */
export function exportState(serialized: { tensors: Record<string, { dtype: 'float64' | 'float32' | 'int32'; shape: number[]; data: Float64Array | Float32Array | Int32Array }>; meta: Record<string, string | number | boolean> }, extra: Record<string, string> = {}): Uint8Array {
  const map = { float64: 'F64', float32: 'F32', int32: 'I32' } as const;
  const tensors: Record<string, SafeTensor> = {};
  for (const [k, t] of Object.entries(serialized.tensors)) tensors[k] = { dtype: map[t.dtype], shape: t.shape, data: t.data };
  const meta: Record<string, string> = { ...extra };
  for (const [k, v] of Object.entries(serialized.meta)) meta[k] = typeof v === 'string' ? v : JSON.stringify(v);
  return encodeSafetensors(tensors, meta);
}

/** Read a state file back into src/kalman's serialized form. */
export function importState(bytes: Uint8Array): { tensors: Record<string, { dtype: 'float64' | 'float32' | 'int32'; shape: number[]; data: Float64Array | Float32Array | Int32Array }>; meta: Record<string, string> } {
  const { tensors, metadata } = decodeSafetensors(bytes);
  const back = { F64: 'float64', F32: 'float32', I32: 'int32' } as const;
  const out: Record<string, { dtype: 'float64' | 'float32' | 'int32'; shape: number[]; data: Float64Array | Float32Array | Int32Array }> = {};
  for (const [k, t] of Object.entries(tensors)) {
    const dt = back[t.dtype as keyof typeof back];
    if (!dt) throw new InvalidInputError(`state tensor '${k}' has unsupported dtype ${t.dtype}`);
    out[k] = { dtype: dt, shape: t.shape, data: t.data as Float64Array | Float32Array | Int32Array };
  }
  return { tensors: out, meta: metadata };
}
