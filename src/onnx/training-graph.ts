/**
 * Training graphs (DESIGN 3.3): the LoRA-injected model extended to return, for a batch of B samples,
 * the model output plus per-sample quantities, never summed over the batch:
 *  - `gradient` mode: a per-sample loss (softmax cross-entropy on logits, or mean-squared error) and
 *    each adapter's per-sample loss gradient, `grad:<module>.lora_A` [B, r, in] and `.lora_B` [B, out, r];
 *  - `jacobian` mode: an m-dimensional observation (softmax probabilities, logits, or the raw output)
 *    and its per-sample Jacobian `jac:<module>.lora_A` [B, m, r, in] / `.lora_B` [B, m, out, r].
 * Either mode can instead (or also) return the factors of those gradients per site (x, v = x·Aᵀ,
 * δ = s·∂/∂z, Bᵀδ), which K-FAC uses and which are cheaper to write out than full gradients.
 *
 * How per-sample results come out of one backward pass: samples do not interact in the model (the
 * batch axis is never mixed; BatchNormalization runs in inference mode), so the gradient of the summed
 * loss with respect to a site's LoRA output z is, row by row, each sample's own gradient; the per-sample
 * adapter gradient is then a per-sample contraction of that with the site's activations. The Jacobian
 * replicates the batch m times (replica c seeded with the c-th unit vector), so one backward pass
 * yields all m rows.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidConfigError, ModelUnsupportedError } from '../errors.js';
import { buildGradients } from './autodiff.js';
import { GraphBuilder } from './builder.js';
import { injectLora, type InjectedSite, type LoraConfig } from './lora-inject.js';
import { encodeModel, realInputs, sha256 } from './model.js';
import { reduceSum, transposeLast2 } from './ops.js';
import { DT, defaultOpset, type ModelProto, type ValueInfoProto } from './proto.js';
import type { OnnxRuntime } from './runtime.js';
import { probeShapes, type ShapeInfo } from './shapes.js';

export type LossKind = 'softmax-ce' | 'mse';
export type ObservationKind = 'probs' | 'logits' | 'output';
export type EmitKind = 'gradients' | 'factors' | 'both';

export interface TrainingGraphSpec {
  lora: LoraConfig;
  mode: 'gradient' | 'jacobian';
  /** Gradient mode: the per-sample loss. Default `softmax-ce`. */
  loss?: LossKind;
  /** Jacobian mode: the observation h. Default `probs`. */
  observation?: ObservationKind;
  /** Per-sample gradients, their factors, or both. Default `gradients`. */
  emit?: EmitKind;
  /** The model output to use. Default: the first. */
  output?: string;
}

/** Names of one site's graph inputs and per-sample outputs. */
export interface SiteOutputs {
  module: string;
  rank: number;
  in: number;
  out: number;
  scale: number;
  aInput: string;
  bInput: string;
  /** Per-sample gradient/Jacobian of A and B (gradient: [B, r, in]/[B, out, r]; jacobian: [B, m, ...]). */
  gradA?: string;
  gradB?: string;
  /** Factors: x [B, T, in], v [B, T, r], delta = s·∂ℓ/∂z [B, (m,) T, out], dv = delta·B [B, (m,) T, r]. */
  x?: string;
  v?: string;
  delta?: string;
  dv?: string;
}

export interface TrainingGraph {
  key: string;
  bytes: Uint8Array;
  mode: 'gradient' | 'jacobian';
  /** The model's data inputs (in order), then `labels` (gradient mode), then every A and B. */
  inputs: string[];
  /** Data inputs of the base model. */
  dataInputs: string[];
  /** Label input (gradient mode): int64 [B] class ids for softmax-ce, float like the output for mse. */
  labels?: string;
  /** Graph outputs: the model output [B, ...], `loss` [B] or `observation` [B, m]. */
  output: string;
  loss?: string;
  observation?: string;
  /** Observation size m (jacobian mode) or the output's per-sample size. */
  m: number;
  sites: SiteOutputs[];
}

const memoryCache = new Map<string, Promise<TrainingGraph>>();

/** Options for caching built graphs. */
export interface BuildOptions {
  /** A folder for built graphs (`<key>.onnx` + `<key>.json`); memory only when absent. */
  cacheDir?: string;
}

function normalise(spec: TrainingGraphSpec): Required<Omit<TrainingGraphSpec, 'output'>> & { output?: string } {
  if (spec.mode !== 'gradient' && spec.mode !== 'jacobian') throw new InvalidConfigError(`mode must be 'gradient' or 'jacobian', got '${String(spec.mode)}'`);
  const loss = spec.loss ?? 'softmax-ce';
  const observation = spec.observation ?? 'probs';
  const emit = spec.emit ?? 'gradients';
  if (!['softmax-ce', 'mse'].includes(loss)) throw new InvalidConfigError(`loss must be 'softmax-ce' or 'mse', got '${loss}'`);
  if (!['probs', 'logits', 'output'].includes(observation)) throw new InvalidConfigError(`observation must be 'probs', 'logits' or 'output', got '${observation}'`);
  if (!['gradients', 'factors', 'both'].includes(emit)) throw new InvalidConfigError(`emit must be 'gradients', 'factors' or 'both', got '${emit}'`);
  return {
    lora: { targets: spec.lora.targets, rank: spec.lora.rank, alpha: spec.lora.alpha ?? spec.lora.rank, rslora: spec.lora.rslora ?? false },
    mode: spec.mode, loss, observation, emit, ...(spec.output ? { output: spec.output } : {}),
  };
}

/** The cache key of a (model, spec) pair. */
export function trainingGraphKey(modelBytes: Uint8Array, spec: TrainingGraphSpec): string {
  const n = normalise(spec);
  return createHash('sha256').update(sha256(modelBytes)).update(JSON.stringify(n)).update('v1').digest('hex').slice(0, 32);
}

/** Build (or fetch from cache) the training graph of a model. Deterministic for (model, spec). */
export function buildTrainingGraph(model: ModelProto, spec: TrainingGraphSpec, runtime: OnnxRuntime, options: BuildOptions = {}): Promise<TrainingGraph> {
  const bytes = encodeModel(model);
  const key = trainingGraphKey(bytes, spec);
  let p = memoryCache.get(key);
  if (!p) {
    p = loadOrBuild(model, normalise(spec), key, runtime, options);
    memoryCache.set(key, p);
    p.catch(() => memoryCache.delete(key));
  }
  return p;
}

async function loadOrBuild(model: ModelProto, spec: ReturnType<typeof normalise>, key: string, runtime: OnnxRuntime, options: BuildOptions): Promise<TrainingGraph> {
  if (options.cacheDir) {
    const onnxPath = join(options.cacheDir, `${key}.onnx`);
    const metaPath = join(options.cacheDir, `${key}.json`);
    if (existsSync(onnxPath) && existsSync(metaPath)) {
      try {
        const meta = JSON.parse(readFileSync(metaPath, 'utf8')) as Omit<TrainingGraph, 'bytes'>;
        return { ...meta, bytes: new Uint8Array(readFileSync(onnxPath)) };
      } catch {
        /* a damaged cache entry is rebuilt below */
      }
    }
    const built = await build(model, spec, key, runtime);
    mkdirSync(options.cacheDir, { recursive: true });
    const { bytes, ...meta } = built;
    writeFileSync(`${onnxPath}.tmp`, bytes);
    renameSync(`${onnxPath}.tmp`, onnxPath);
    writeFileSync(`${metaPath}.tmp`, JSON.stringify(meta));
    renameSync(`${metaPath}.tmp`, metaPath);
    return built;
  }
  return build(model, spec, key, runtime);
}

function perSampleLayout(site: InjectedSite, shapes: ShapeInfo, xName: string): void {
  const s = shapes.tensors.get(xName);
  if (!s) throw new ModelUnsupportedError(`no shape known at LoRA site '${site.module}'`);
  const [p0, p1] = s.probe;
  const [b0, b1] = shapes.batch;
  const d0 = p0[0];
  const d1 = p1[0];
  if (d0 === undefined || d1 === undefined || d0 % b0 !== 0 || d1 % b1 !== 0 || d0 / b0 !== d1 / b1) {
    throw new ModelUnsupportedError(
      `cannot find the batch axis at LoRA site '${site.module}': its activation has shape [${p0.join(', ')}] for batch ${b0} and [${p1.join(', ')}] for batch ${b1}; per-sample gradients need the batch on the leading axis`,
      { module: site.module },
    );
  }
}

async function build(model: ModelProto, spec: ReturnType<typeof normalise>, key: string, runtime: OnnxRuntime): Promise<TrainingGraph> {
  const opset = defaultOpset(model);
  if (opset < 11) throw new ModelUnsupportedError(`opset ${opset} is older than the supported range (11 to 20)`);
  const { model: m, sites } = injectLora(model, spec.lora);
  const g = m.graph!;
  const dataInputs = realInputs(model).map((i) => i.name!);
  const first = realInputs(model)[0]!;
  const outName = spec.output ?? g.output![0]!.name!;
  const outInfo = (g.output ?? []).find((o) => o.name === outName);
  if (!outInfo) throw new InvalidConfigError(`'${outName}' is not an output of the model`, { output: outName });

  // Probe the injected model once for per-sample sizes and the batch layout at each site.
  const base = await probeShapes(m, runtime);
  const outShape = base.tensors.get(outName)!;
  const outFeature = outShape.probe[0].slice(1).reduce((a, c) => a * c, 1);
  if (outShape.probe[0][0] !== base.batch[0] || outShape.probe[1][0] !== base.batch[1]) {
    throw new ModelUnsupportedError(`output '${outName}' does not have the batch on its leading axis`);
  }
  for (const site of sites) perSampleLayout(site, base, site.x);

  const b = new GraphBuilder(g, 'train');
  const mDim = outFeature;
  const batchDim = first.type?.tensorType?.shape?.dim?.[0] ?? { dimParam: 'batch' };
  const floatOut = (name: string, dims: ValueInfoProto['type'] = { tensorType: { elemType: DT.FLOAT } }): ValueInfoProto => ({ name, type: dims });
  const outputs: ValueInfoProto[] = [];
  const inputs = [...dataInputs];
  let labels: string | undefined;
  let lossName: string | undefined;
  let obsName: string | undefined;
  let seeds: { output: string; seed: string }[];
  let nRows: string; // per-sample rows of the forward pass (B, or m·B when replicated)
  const bTensor = b.op('Slice', [b.shape(first.name!), b.i64([0]), b.i64([1]), b.i64([0])], {}, 'batch');

  if (spec.mode === 'gradient') {
    nRows = bTensor;
    labels = 'labels';
    b.reserve(labels);
    if (spec.loss === 'softmax-ce') {
      if (outShape.probe[0].length !== 2) throw new ModelUnsupportedError(`softmax-ce needs [batch, classes] logits; '${outName}' has rank ${outShape.probe[0].length}`);
      g.input!.push({ name: labels, type: { tensorType: { elemType: DT.INT64, shape: { dim: [batchDim] } } } });
      const onehot = b.op('OneHot', [labels, b.i64([mDim]), b.f32([0, 1])], { axis: -1 });
      const ls = b.op('LogSoftmax', [outName], { axis: opset >= 13 ? -1 : 1 });
      lossName = b.op('Neg', [reduceSum(b, opset, b.op('Mul', [onehot, ls]), [1], 0)], {}, 'loss');
    } else {
      g.input!.push({ name: labels, type: outInfo.type ?? { tensorType: { elemType: DT.FLOAT } } });
      const diff = b.op('Sub', [outName, labels]);
      const sq = b.op('Flatten', [b.op('Mul', [diff, diff])], { axis: 1 });
      lossName = b.op('Div', [reduceSum(b, opset, sq, [1], 0), b.f32([mDim])], {}, 'loss');
    }
    inputs.push(labels);
    const seed = b.op('ConstantOfShape', [b.shape(lossName)], { value: { name: '', dataType: DT.FLOAT, dims: [1], floatData: [1] } }, 'seed');
    seeds = [{ output: lossName, seed }];
    b.nodeNamed('Identity', [outName], ['output']);
    b.nodeNamed('Identity', [lossName], ['loss']);
    outputs.push(floatOut('output', outInfo.type ?? undefined), floatOut('loss'));
  } else {
    // Replicate every data input m times along the batch axis (replica-major), so one backward pass
    // seeded with the m unit vectors gives all m Jacobian rows.
    for (const name of dataInputs) {
      const rank = base.tensors.get(name)!.probe[0].length;
      const tiled = b.fresh(`${name}/tiled`);
      for (const n of g.node ?? []) n.input = (n.input ?? []).map((i) => (i === name ? tiled : i));
      for (const site of sites) if (site.x === name) site.x = tiled;
      g.node!.unshift({ opType: 'Tile', input: [name, b.i64([mDim, ...new Array<number>(rank - 1).fill(1)])], output: [tiled], name: b.fresh('tile_node') });
    }
    nRows = b.op('Mul', [bTensor, b.i64([mDim])], {}, 'rows');
    const flat = b.op('Flatten', [outName], { axis: 1 });
    const obs = spec.observation === 'probs' ? b.op('Softmax', [flat], { axis: opset >= 13 ? -1 : 1 }, 'probs') : b.op('Identity', [flat], {}, 'obs');
    const eye = new Array<number>(mDim * mDim).fill(0);
    for (let c = 0; c < mDim; c++) eye[c * mDim + c] = 1;
    const eyeT = b.f32(eye, [mDim, 1, mDim]);
    const seedShape = b.op('Concat', [b.i64([mDim]), bTensor, b.i64([mDim])], { axis: 0 });
    const seed = b.op('Reshape', [b.op('Expand', [eyeT, seedShape]), b.i64([-1, mDim])], {}, 'seed');
    seeds = [{ output: obs, seed }];
    const firstRows = (t: string) => b.op('Slice', [t, b.i64([0]), bTensor, b.i64([0])]);
    b.nodeNamed('Identity', [firstRows(outName)], ['output']);
    b.nodeNamed('Identity', [firstRows(obs)], ['observation']);
    obsName = 'observation';
    outputs.push(floatOut('output', outInfo.type ?? undefined), floatOut('observation'));
  }

  // The forward part is complete: learn every tensor's shape, then build the backward pass.
  g.node = [...(g.node ?? []), ...b.nodes.splice(0)];
  g.initializer = [...(g.initializer ?? []), ...b.initializers.splice(0)];
  g.output = [];
  const savedOutputs = outputs.map((o) => o.name!);
  for (const o of savedOutputs) g.output.push({ name: o });
  const shapes = await probeShapes(m, runtime);
  const grads = buildGradients({ graph: g, opset, shapes, wrt: sites.map((s) => s.z), seeds, builder: b });

  const siteOutputs: SiteOutputs[] = [];
  for (const site of sites) {
    const dz = grads.get(site.z);
    const so: SiteOutputs = { module: site.module, rank: site.rank, in: site.in, out: site.out, scale: site.scale, aInput: site.aInput, bInput: site.bInput };
    siteOutputs.push(so);
    const rank = shapes.tensors.get(site.x)!.probe[0].length;
    const canon = (t: string) => (site.form === 'left' ? transposeLast2(b, t, rank) : t);
    const rows3 = (t: string, width: number) => b.op('Reshape', [t, b.op('Concat', [nRows, b.i64([-1, width])], { axis: 0 })]);
    const x3 = rows3(canon(site.x), site.in);
    const v3 = rows3(canon(site.v), site.rank);
    // A site that does not reach the loss (dz null) has zero gradients; keep the outputs' shapes.
    const d3 = dz
      ? b.op('Mul', [rows3(canon(dz), site.out), b.f32([site.scale])], {}, `${site.module}/delta`)
      : b.op('Mul', [b.op('MatMul', [v3, b.op('Transpose', [site.bInput], { perm: [1, 0] })]), b.f32([0])]);
    const dv3 = b.op('MatMul', [d3, site.bInput], {}, `${site.module}/dv`);
    const perSample = (t: string, tail: number) => {
      if (spec.mode === 'gradient') return t;
      // [m·B, ...] replica-major → [B, m, ...]
      const split = b.op('Reshape', [t, b.op('Concat', [b.i64([mDim, -1]), b.op('Slice', [b.shape(t), b.i64([1]), b.i64([1 + tail]), b.i64([0])])], { axis: 0 })]);
      const perm = [1, 0, ...Array.from({ length: tail }, (_, i) => i + 2)];
      return b.op('Transpose', [split], { perm });
    };
    if (spec.emit !== 'factors') {
      const gB = b.op('MatMul', [b.op('Transpose', [d3], { perm: [0, 2, 1] }), v3]);
      const gA = b.op('MatMul', [b.op('Transpose', [dv3], { perm: [0, 2, 1] }), x3]);
      const prefix = spec.mode === 'gradient' ? 'grad' : 'jac';
      so.gradA = `${prefix}:${site.module}.lora_A`;
      so.gradB = `${prefix}:${site.module}.lora_B`;
      b.nodeNamed('Identity', [perSample(gA, 2)], [so.gradA]);
      b.nodeNamed('Identity', [perSample(gB, 2)], [so.gradB]);
      g.output.push({ name: so.gradA }, { name: so.gradB });
    }
    if (spec.emit !== 'gradients') {
      so.x = `factor:${site.module}.x`;
      so.v = `factor:${site.module}.v`;
      so.delta = `factor:${site.module}.delta`;
      so.dv = `factor:${site.module}.dv`;
      const firstRows = (t: string) => (spec.mode === 'gradient' ? t : b.op('Slice', [t, b.i64([0]), bTensor, b.i64([0])]));
      b.nodeNamed('Identity', [firstRows(x3)], [so.x]);
      b.nodeNamed('Identity', [firstRows(v3)], [so.v]);
      b.nodeNamed('Identity', [perSample(d3, 2)], [so.delta]);
      b.nodeNamed('Identity', [perSample(dv3, 2)], [so.dv]);
      g.output.push({ name: so.x }, { name: so.v }, { name: so.delta }, { name: so.dv });
    }
  }
  b.flushInto(g);
  for (const o of g.output) if (!o.type) o.type = { tensorType: { elemType: DT.FLOAT } };
  const allInputs = [...inputs, ...sites.flatMap((s) => [s.aInput, s.bInput])];
  return {
    key, bytes: encodeModel(m), mode: spec.mode, inputs: allInputs, dataInputs,
    ...(labels ? { labels } : {}), output: 'output',
    ...(lossName ? { loss: 'loss' } : {}), ...(obsName ? { observation: obsName } : {}),
    m: mDim, sites: siteOutputs,
  };
}
