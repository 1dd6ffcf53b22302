/**
 * Training graphs (DESIGN 3.3): the LoRA-injected model extended to return, for a batch of B samples,
 * the model output plus per-sample quantities, never summed over the batch:
 *  - `gradient` mode: a per-sample loss (softmax cross-entropy on logits, or mean-squared error) and
 *    the per-sample loss gradient of every adapter tensor, packed as `grads` [B, n]: each row is one
 *    sample's gradient in θ order (per site, A [r, in] then B [out, r], row-major);
 *  - `jacobian` mode: an m-dimensional observation (softmax probabilities, logits, or the raw output)
 *    and its per-sample Jacobian, packed the same way as `jacobian` [B, m, n].
 * Either mode can instead (or also) return the factors of those gradients per site (x, v = x·Aᵀ,
 * δ = s·∂/∂z, Bᵀδ), which K-FAC uses and which, with one row per sample, are cheaper to write out
 * than full gradients (with T tokens per sample they are about T/r times larger).
 * With `layout: 'packed'` θ is one input, and a gradient graph's rows end with the model output.
 *
 * How per-sample results come out of one backward pass: samples do not interact in the model (the
 * batch axis is never mixed; BatchNormalization runs in inference mode), so the gradient of the summed
 * loss with respect to a site's output (= its LoRA term z, since y = base + z) is, row by row, each
 * sample's own gradient; the per-sample adapter gradient is then a per-sample contraction of that
 * with the site's activations (an outer product when a sample is one row). The Jacobian replicates
 * each sample m times (copy c seeded with the c-th unit vector), so one backward pass yields all m
 * rows, already in [B, m, ...] order.
 */
import { createHash } from 'node:crypto';
import { InvalidConfigError, ModelUnsupportedError, OutputNotFoundError } from '../errors.js';
import { buildGradients } from './autodiff.js';
import { GraphBuilder } from './builder.js';
import { readCachedGraph, writeCachedGraph } from './graph-cache.js';
import { injectLora, loraScale, type InjectedSite, type LoraConfig } from './lora-inject.js';
import { encodeModel, forEachRead, realInputs, sha256 } from './model.js';
import { reduceSum, split, transposeLast2, unsqueeze } from './ops.js';
import { DT, attrFloat, attrInt, attrInts, defaultOpset, f, setAttr, toNum, type GraphProto, type ModelProto, type NodeProto, type ValueInfoProto } from './proto.js';
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
  /**
   * Run LoRA sites on merged weights inside the training graph (see `mergesInTraining`): `auto`
   * (default) where that is cheaper, `always`, or `never`. A speed choice only: the results agree to
   * float rounding.
   */
  mergeWeights?: 'auto' | 'always' | 'never';
  /**
   * How θ goes in and the model output comes out. `separate` (default): every A and B is its own
   * input, and the model output and the loss (or observation) are outputs of their own. `packed`
   * (what the engine runs): θ is one input `theta` [n / r, r] in θ order (each A block transposed, see
   * `thetaFeed`), split inside the graph; softmax-ce labels are one-hot rows (`labelFeed`); in
   * gradient mode with `emit: 'gradients'` each row of `grads` also carries the sample's model output
   * (flattened) after its n gradient values, and that is the graph's only output: the caller takes
   * the loss from the output in closed form. onnxruntime-node charges every input and output of a
   * run a few µs, which on a small model is a large part of the gradient run (README, "Benchmarks").
   */
  layout?: 'separate' | 'packed';
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
  /**
   * Where this site's A and B sit in each row of the packed output (`TrainingGraph.packed`): A as
   * [r, in] from offsetA, B as [out, r] from offsetB, row-major.
   */
  offsetA?: number;
  offsetB?: number;
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
  /** The model's data inputs (in order), then `labels` (gradient mode), then every A and B, or `theta`. */
  inputs: string[];
  /** Data inputs of the base model. */
  dataInputs: string[];
  /**
   * Label input (gradient mode): for softmax-ce int64 [B] class ids, or with `layout: 'packed'`
   * one-hot float32 rows [B, m] (`labelFeed` makes either); for mse float like the output.
   */
  labels?: string;
  /** softmax-ce with `layout: 'packed'`: the labels go in as one-hot float32 rows [B, m]. */
  labelsOneHot?: boolean;
  /** Graph outputs: the model output [B, ...], `loss` [B] or `observation` [B, m] (absent when the
   * packed rows carry the output: `outputOffset`). */
  output?: string;
  loss?: string;
  observation?: string;
  /** Observation size m (jacobian mode) or the output's per-sample size. */
  m: number;
  sites: SiteOutputs[];
  /**
   * The output holding every site's per-sample gradients (`grads`, [B, row]: n gradient values, then
   * the model output with `layout: 'packed'`) or Jacobians (`jacobian`, [B, m, n]), each row laid out
   * in site order, A then B: the order of the engine's θ. Absent when only factors are emitted.
   */
  packed?: string;
  /** Number of gradient values in a packed row: Σ r·in + out·r over the sites (θ's length). */
  n: number;
  /** Length of one packed row: n, or n + m when the row also carries the model output. */
  row: number;
  /** Where the model output (m values) starts in each packed row, when it is there (`layout: 'packed'`). */
  outputOffset?: number;
  /**
   * The one θ input (`layout: 'packed'`), split in θ order into every site's A and B. Each A block
   * goes in transposed, as Aᵀ [in, r]; `thetaFeed` lays θ out so.
   */
  theta?: string;
  /** Its dims: [n / r, r], r values a row (every site has rank r). */
  thetaDims?: [number, number];
}

/**
 * One site's A or B results gathered from a packed output into their own array:
 * [rows, r, in] for A, [rows, out, r] for B, where rows = B (gradient) or B·m (Jacobian).
 */
export function siteResult(graph: Pick<TrainingGraph, 'row'>, packed: Float32Array, site: SiteOutputs, which: 'A' | 'B'): Float32Array {
  const offset = which === 'A' ? site.offsetA : site.offsetB;
  if (offset === undefined) throw new RangeError(`site '${site.module}' has no packed gradients`);
  const size = which === 'A' ? site.rank * site.in : site.out * site.rank;
  const w = graph.row;
  const rows = packed.length / w;
  const out = new Float32Array(rows * size);
  for (let i = 0; i < rows; i++) out.set(packed.subarray(i * w + offset, i * w + offset + size), i * size);
  return out;
}

/**
 * Graphs built in this process, shared while anything (an engine) holds them: a graph holds a copy
 * of its model's weights, so a strong cache would keep every graph ever built after the engines that
 * used them were dropped (MAX_ENGINES). Builds in flight are shared too.
 */
const building = new Map<string, Promise<TrainingGraph>>();
const built = new Map<string, WeakRef<TrainingGraph>>();
const collected = new FinalizationRegistry<string>((key) => {
  if (built.get(key)?.deref() === undefined) built.delete(key);
});

/** Options for caching built graphs. */
export interface BuildOptions {
  /** A folder for built graphs (`<key>.onnx` + `<key>.json`, graph-cache.ts); memory only when absent. */
  cacheDir?: string;
  /** Bound of that folder, bytes (default GRAPH_CACHE_MAX_BYTES): least recently used entries go first. */
  cacheMaxBytes?: number;
}

function normalise(spec: TrainingGraphSpec): Required<Omit<TrainingGraphSpec, 'output'>> & { output?: string } {
  if (spec.mode !== 'gradient' && spec.mode !== 'jacobian') throw new InvalidConfigError(`mode must be 'gradient' or 'jacobian', got '${String(spec.mode)}'`);
  const loss = spec.loss ?? 'softmax-ce';
  const observation = spec.observation ?? 'probs';
  const emit = spec.emit ?? 'gradients';
  if (!['softmax-ce', 'mse'].includes(loss)) throw new InvalidConfigError(`loss must be 'softmax-ce' or 'mse', got '${loss}'`);
  if (!['probs', 'logits', 'output'].includes(observation)) throw new InvalidConfigError(`observation must be 'probs', 'logits' or 'output', got '${observation}'`);
  if (!['gradients', 'factors', 'both'].includes(emit)) throw new InvalidConfigError(`emit must be 'gradients', 'factors' or 'both', got '${emit}'`);
  const mergeWeights = spec.mergeWeights ?? 'auto';
  if (!['auto', 'always', 'never'].includes(mergeWeights)) throw new InvalidConfigError(`mergeWeights must be 'auto', 'always' or 'never', got '${String(mergeWeights)}'`);
  const layout = spec.layout ?? 'separate';
  if (layout !== 'separate' && layout !== 'packed') throw new InvalidConfigError(`layout must be 'separate' or 'packed', got '${String(layout)}'`);
  return {
    lora: { targets: spec.lora.targets, rank: spec.lora.rank, alpha: spec.lora.alpha ?? spec.lora.rank, rslora: spec.lora.rslora ?? false },
    mode: spec.mode, loss, observation, emit, mergeWeights, layout, ...(spec.output ? { output: spec.output } : {}),
  };
}

/** Forget the graphs built in this process (the disk cache stays). */
export function clearTrainingGraphCache(): void {
  building.clear();
  built.clear();
}

/** The cache key of a (model, spec) pair. */
export function trainingGraphKey(modelBytes: Uint8Array, spec: TrainingGraphSpec): string {
  const n = normalise(spec);
  return createHash('sha256').update(sha256(modelBytes)).update(JSON.stringify(n))
    .update('v26').digest('hex').slice(0, 32);
}

/** Build (or fetch from cache) the training graph of a model. Deterministic for (model, spec). */
export function buildTrainingGraph(model: ModelProto, spec: TrainingGraphSpec, runtime: OnnxRuntime, options: BuildOptions = {}): Promise<TrainingGraph> {
  const bytes = encodeModel(model);
  const key = trainingGraphKey(bytes, spec);
  const hit = built.get(key)?.deref();
  if (hit) return Promise.resolve(hit);
  let p = building.get(key);
  if (!p) {
    p = loadOrBuild(model, normalise(spec), key, runtime, options).then((g) => {
      built.set(key, new WeakRef(g));
      collected.register(g, key);
      return g;
    });
    building.set(key, p);
    const done = () => {
      if (building.get(key) === p) building.delete(key);
    };
    p.then(done, done);
  }
  return p;
}

async function loadOrBuild(model: ModelProto, spec: ReturnType<typeof normalise>, key: string, runtime: OnnxRuntime, options: BuildOptions): Promise<TrainingGraph> {
  if (!options.cacheDir) return build(model, spec, key, runtime);
  const hit = readCachedGraph<Omit<TrainingGraph, 'bytes'>>(options.cacheDir, key);
  if (hit) return { ...hit.meta, bytes: hit.bytes };
  const graph = await build(model, spec, key, runtime);
  const { bytes, ...meta } = graph;
  try {
    writeCachedGraph(options.cacheDir, key, meta, bytes, options.cacheMaxBytes);
  } catch {
    /* the cache is an optimisation: a full or read-only disk costs a rebuild next time, not this build */
  }
  return graph;
}

/**
 * How a site's canonical activation x_c [..., in] maps to samples: `lead` when its leading axis is the
 * batch (rows [N, T..., in]), `flat` when the batch was folded into it (rows [N·T, in], batch-major).
 * T is the number of rows (tokens) per sample, when the same in both probes.
 */
function siteLayout(site: InjectedSite, dims: [number[], number[]], batch: [number, number]): { lead: boolean; tokens: number | null } {
  const [p0, p1] = dims;
  const [b0, b1] = batch;
  const rows0 = p0.slice(0, -1).reduce((a, c) => a * c, 1);
  const rows1 = p1.slice(0, -1).reduce((a, c) => a * c, 1);
  const d0 = p0[0] ?? 0;
  const d1 = p1[0] ?? 0;
  if (p0.length < 2 || d0 % b0 !== 0 || d1 % b1 !== 0 || d0 / b0 !== d1 / b1 || rows0 % b0 !== 0 || rows1 % b1 !== 0) {
    throw new ModelUnsupportedError(
      `cannot find the batch axis at LoRA site '${site.module}': its activation has shape [${p0.join(', ')}] for batch ${b0} and [${p1.join(', ')}] for batch ${b1}; per-sample gradients need the batch on the leading axis`,
      { module: site.module },
    );
  }
  const t0 = rows0 / b0;
  const t1 = rows1 / b1;
  return { lead: d0 === b0 && d1 === b1, tokens: t0 === t1 ? t0 : null };
}

/** Rows per batch a site's cost is weighed at: a nominal batch of 32 samples. */
const NOMINAL_BATCH = 32;

/**
 * Whether the training graph should run a site on its merged weight W' = W + s·ΔW instead of the
 * injected branch x·W + s·(x·Aᵀ)·Bᵀ. Merging costs a weight-sized Gemm per run; it saves, per row of
 * activations, the branch's second product and the sum in the forward pass, and the same again in
 * the backward pass (δ·W'ᵀ instead of δ·Wᵀ + s·(δ·B)·A). So it pays when a batch has more activation
 * values at the site than the weight has entries (a transformer's tokens), not for a wide first
 * layer fed one row per sample.
 */
export function mergesInTraining(site: Pick<InjectedSite, 'in' | 'out'>, tokens: number | null): boolean {
  const rows = NOMINAL_BATCH * (tokens ?? 64);
  return rows * (site.in + site.out) >= site.in * site.out;
}

/**
 * Rewrite one injected site of the training graph to run on its merged weight: the base node reads
 * W' = W + (s/α)·ΔW (one Gemm of A and B onto W, in W's stored layout; α is a Gemm node's own alpha)
 * and writes the site's output again, and the branch's product, scale and sum go. v = x·Aᵀ stays: the
 * per-sample gradient of B needs it. The same function of x, A and B; only the rounding differs. The
 * inference graph (injectLora) keeps the branch, so that B = 0 reproduces the base model exactly.
 */
function mergeSite(g: GraphProto, site: InjectedSite, b: GraphBuilder): void {
  const nodes = g.node!;
  const baseIdx = nodes.findIndex((n) => n.output?.[0] === site.baseOutput);
  const sum = nodes.find((n) => (n.output ?? []).includes(site.output));
  if (baseIdx < 0 || !sum) throw new Error(`internal: LoRA site '${site.module}' not found in the injected graph`);
  // Drop the sum and whatever only it used, except the base output and v.
  const keep = new Set([site.baseOutput, site.v]);
  const consumers = (t: string) => nodes.filter((n) => (n.input ?? []).includes(t)).length;
  const drop = new Set([sum]);
  const queue = [...(sum.input ?? [])];
  while (queue.length) {
    const t = queue.pop()!;
    if (keep.has(t)) continue;
    const p = nodes.find((n) => !drop.has(n) && (n.output ?? []).includes(t));
    if (!p) continue;
    const usedElsewhere = nodes.some((n) => !drop.has(n) && n !== p && (n.input ?? []).includes(t));
    if (usedElsewhere || (p.output ?? []).some((o) => o !== t && consumers(o) > 0)) continue;
    drop.add(p);
    queue.push(...(p.input ?? []));
  }
  const outIn = (site.form === 'left') !== site.weightTransposed;
  const alpha = f(site.scale / site.gemmAlpha);
  const merged = outIn
    ? b.op('Gemm', [site.bInput, site.aInput, site.weight], { alpha }, `${site.module}/merged_weight`)
    : b.op('Gemm', [site.aInput, site.bInput, site.weight], { transA: 1, transB: 1, alpha }, `${site.module}/merged_weight`);
  const base = nodes[baseIdx]!;
  base.input![site.weightInput] = merged;
  base.output![0] = site.output;
  const rebuilt = nodes.filter((n) => !drop.has(n));
  rebuilt.splice(rebuilt.indexOf(base), 0, ...b.nodes.splice(0));
  g.node = rebuilt;
}

/**
 * Whether the LoRA scale s can leave the seed of a packed gradient graph for its per-sample products,
 * and if so, move it into each one-row site's v = x·Aᵀ (its Gemm's alpha). The backward pass then
 * carries δ = ∂ℓ/∂z, and the products take s where it costs no kernel: dv = s·δ·B (a Gemm's alpha, or
 * a Mul that onnxruntime folds into the MatMul), a token site's δᵀ·v likewise, a one-row site's δ ⊗ v
 * through v. That needs every one-row site merged (nothing but its products reads v) with v a Gemm;
 * otherwise the seed keeps s. One Mul fewer a run: the MLP fixture's gradient run ~2% faster.
 */
function lateScale(g: GraphProto, sites: readonly InjectedSite[], layouts: readonly { tokens: number | null }[], merged: ReadonlySet<InjectedSite>, s: number): boolean {
  const nodes = g.node ?? [];
  const vGemms: NodeProto[] = [];
  for (const [k, site] of sites.entries()) {
    if (layouts[k]!.tokens !== 1) continue;
    const n = nodes.find((m) => m.output?.[0] === site.v);
    if (!merged.has(site) || !n || n.opType !== 'Gemm' || n.domain || nodes.some((m) => (m.input ?? []).includes(site.v))) return false;
    vGemms.push(n);
  }
  for (const n of vGemms) setAttr(n, 'alpha', f(attrFloat(n, 'alpha', 1) * s));
  return true;
}

/**
 * Drop nodes none of whose outputs is used (onnxruntime runs them anyway: a node costs microseconds
 * whatever its size) and initializers nothing reads, e.g. the batch size a gradient graph never needs
 * or a merged site's scale constant.
 */
function pruneUnused(g: GraphProto): void {
  const outputs = new Set((g.output ?? []).map((o) => o.name!));
  let nodes = g.node ?? [];
  for (;;) {
    // Names a node's subgraphs (If, Loop, Scan) read from the enclosing scope count as used too.
    const used = new Set<string>(outputs);
    for (const n of nodes) readsOf(n, used);
    const kept = nodes.filter((n) => (n.output ?? []).some((o) => o && used.has(o)));
    if (kept.length === nodes.length) break;
    nodes = kept;
  }
  g.node = nodes;
  pruneInitializers(g);
}

/**
 * Feed θ as one input `theta` [n / r, r] (r values a row), split by rows in the graph into every
 * site's blocks, per site A then B: one input a run instead of two per site. A B block [out, r] comes
 * out of the Split as it is. An A block goes in transposed, as Aᵀ [in, r] rows (`thetaFeed`), so
 * that it too needs no node: a Gemm reading A flips its trans flag and reads Aᵀ, a Transpose of A
 * is Aᵀ itself; only another reader (the left form's MatMul(A, x)) gets A back from one Transpose.
 * Returns the input's name and dims, and the blocks' names in θ order.
 */
function splitTheta(g: GraphProto, sites: readonly InjectedSite[], opset: number): { name: string; dims: [number, number]; parts: readonly string[] } {
  const r = sites[0]!.rank;
  if (sites.some((s) => s.rank !== r)) throw new Error('splitTheta: every site must have the same rank');
  const b = new GraphBuilder(g, 'theta');
  const theta = 'theta';
  b.reserve(theta);
  const names = sites.flatMap((s) => [s.aInput, s.bInput]);
  const rows = sites.flatMap((s) => [s.in, s.out]);
  const parts = names.map((name, k) => (k % 2 === 0 ? b.fresh(`${name}_T`) : name));
  for (const p of parts) b.reserve(p);
  split(b, opset, theta, rows, 0, parts);
  const nodes = g.node ?? [];
  const alias = new Map<string, string>();
  const dropped = new Set<NodeProto>();
  sites.forEach((s, k) => {
    const at = parts[2 * k]!;
    let needA = false;
    for (const n of nodes) {
      const subgraphs = (n.attribute ?? []).some((a) => a.g || (a.graphs ?? []).length > 0);
      (n.input ?? []).forEach((inp, i) => {
        if (inp !== s.aInput) return;
        if (n.opType === 'Gemm' && !n.domain && i < 2) {
          n.input![i] = at;
          const name = i === 0 ? 'transA' : 'transB';
          setAttr(n, name, attrInt(n, name, 0) === 1 ? 0 : 1);
        } else if (n.opType === 'Transpose' && !n.domain && !subgraphs && isSwap2(n)) {
          alias.set(n.output![0]!, at);
          dropped.add(n);
        } else {
          needA = true;
        }
      });
    }
    if (needA) b.nodeNamed('Transpose', [at], [s.aInput], { perm: [1, 0] });
  });
  const kept = nodes.filter((n) => !dropped.has(n));
  for (const n of kept) n.input = (n.input ?? []).map((i) => alias.get(i) ?? i);
  g.node = [...b.nodes.splice(0), ...kept];
  g.initializer = [...(g.initializer ?? []), ...b.initializers.splice(0)];
  const drop = new Set(names);
  const dims: [number, number] = [rows.reduce((a, c) => a + c, 0), r];
  g.input = [...(g.input ?? []).filter((i) => !drop.has(i.name!)), {
    name: theta, type: { tensorType: { elemType: DT.FLOAT, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
  }];
  return { name: theta, dims, parts };
}

/**
 * Packed layout: sites whose v = x·Aᵀ is a MatMul of the same x by their Aᵀ block (attention's q, k
 * and v) compute it as one MatMul by [Aᵀ_1 | Aᵀ_2 | ...], split by site: one product of x instead of
 * one per site.
 */
function shareV(g: GraphProto, sites: readonly InjectedSite[], opset: number, thetaParts: ReadonlySet<string>): void {
  const nodes = g.node ?? [];
  const groups = new Map<string, { node: NodeProto; rank: number }[]>();
  for (const site of sites) {
    const n = nodes.find((m) => m.opType === 'MatMul' && !m.domain && m.output?.[0] === site.v);
    if (!n || !thetaParts.has(n.input![1]!)) continue;
    const list = groups.get(n.input![0]!) ?? groups.set(n.input![0]!, []).get(n.input![0]!)!;
    list.push({ node: n, rank: site.rank });
  }
  const b = new GraphBuilder(g, 'lora/shared');
  for (const [x, group] of groups) {
    if (group.length < 2) continue;
    const at = b.op('Concat', group.map((e) => e.node.input![1]!), { axis: 1 });
    const all = b.op('MatMul', [x, at], {}, 'v');
    const sizes = group.map((e) => e.rank);
    const outs = group.map((e) => e.node.output![0]!);
    split(b, opset, all, sizes, -1, outs);
    const at0 = Math.min(...group.map((e) => nodes.indexOf(e.node)));
    const drop = new Set(group.map((e) => e.node));
    const kept = nodes.filter((n) => !drop.has(n));
    kept.splice(at0, 0, ...b.nodes.splice(0));
    nodes.splice(0, nodes.length, ...kept);
  }
  g.node = nodes;
  g.initializer = [...(g.initializer ?? []), ...b.initializers.splice(0)];
}

/** A 2-D Transpose (perm [1, 0], or no perm on a rank-2 input: A is [r, in]). */
function isSwap2(n: NodeProto): boolean {
  const perm = attrInts(n, 'perm');
  return !perm || (perm.length === 2 && perm[0] === 1 && perm[1] === 0);
}

/**
 * The `theta` feed of a packed graph from θ (θ order: per site A [r, in], then B [out, r],
 * row-major): B blocks as they are, each A block transposed to [in, r] (see splitTheta), as float32,
 * written into `into` when given (its length n).
 */
export function thetaFeed(graph: Pick<TrainingGraph, 'sites'>, theta: ArrayLike<number> & { subarray(a: number, b: number): ArrayLike<number> }, into?: Float32Array): Float32Array {
  const n = graph.sites.reduce((a, s) => a + s.rank * (s.in + s.out), 0);
  if (theta.length !== n) throw new RangeError(`θ has ${theta.length} values; the graph takes ${n}`);
  if (into && into.length !== n) throw new RangeError(`the θ feed buffer has ${into.length} values; the graph takes ${n}`);
  into ??= new Float32Array(n);
  let o = 0;
  for (const s of graph.sites) {
    const r = s.rank;
    const w = s.in;
    for (let i = 0; i < r; i++) for (let j = 0; j < w; j++) into[o + j * r + i] = theta[o + i * w + j]!;
    o += r * w;
    into.set(theta.subarray(o, o + s.out * r), o);
    o += s.out * r;
  }
  return into;
}

/**
 * The label feed of a gradient graph: for softmax-ce class ids as int64 [B], or one-hot float32 rows
 * [B, m] when the graph takes them (`labelsOneHot`); for mse the targets as float32 [B, m]. The ids
 * must already be checked (integers in [0, m)). Float rows go into `into` when given (length B·m).
 */
export function labelFeed(graph: Pick<TrainingGraph, 'm' | 'labelsOneHot'>, loss: LossKind, labels: ArrayLike<number>, batch: number, into?: Float32Array): { data: Float32Array | BigInt64Array; dims: number[] } {
  const m = graph.m;
  if (into && into.length !== batch * m) throw new RangeError(`the label feed buffer has ${into.length} values; the batch takes ${batch * m}`);
  if (loss === 'mse') {
    if (!into) return { data: Float32Array.from(labels), dims: [batch, m] };
    for (let i = 0; i < batch * m; i++) into[i] = labels[i]!;
    return { data: into, dims: [batch, m] };
  }
  if (!graph.labelsOneHot) return { data: BigInt64Array.from(labels as number[], (y) => BigInt(y)), dims: [batch] };
  const rows = into ? into.fill(0) : new Float32Array(batch * m);
  for (let i = 0; i < batch; i++) rows[i * m + labels[i]!] = 1;
  return { data: rows, dims: [batch, m] };
}

/** Drop initializers that no node (or subgraph) reads and that are not graph inputs or outputs. */
function pruneInitializers(g: GraphProto): void {
  const read = new Set<string>([...(g.input ?? []), ...(g.output ?? [])].map((i) => i.name!));
  for (const n of g.node ?? []) readsOf(n, read);
  g.initializer = (g.initializer ?? []).filter((t) => read.has(t.name!));
}

/** Every tensor a node reads, its subgraphs' reads from the enclosing scope included. */
function readsOf(n: NodeProto, into: Set<string>): void {
  forEachRead(n, (name) => into.add(name));
}

const swapLast2 = (d: number[]) => [...d.slice(0, -2), d[d.length - 1]!, d[d.length - 2]!];

/**
 * Per-sample outer products u[n] ⊗ w[n] of [N, a] and [N, b] as [N, a, b], from [N, a, 1] and
 * [N, 1, b]: a broadcast Mul where the rows are long (b ≥ 8a; onnxruntime then writes b contiguous
 * products per (n, i)), else a batched MatMul (faster than Einsum, and than the Mul on short rows).
 * At N = 32, in one process: [2] ⊗ [784] 52.4 → 48.1 µs a run and [2] ⊗ [32] 22.5 → 18.6 µs with the
 * Mul; [128] ⊗ [2] 28.8 µs as a MatMul against 60.8 µs as a Mul; [10] ⊗ [64] the same either way.
 */
function outerProduct(b: GraphBuilder, opset: number, u: string, uWidth: number, w: string, wWidth: number): string {
  return b.op(wWidth >= 8 * uWidth ? 'Mul' : 'MatMul', [unsqueeze(b, opset, u, [2]), unsqueeze(b, opset, w, [1])]);
}

/** Most floats per sample that one gathered run of outer products may hold (OuterProducts). */
const GATHER_MAX_RUN = 1024;

/**
 * Per-sample outer products of one-row sites, for a run of tensors that sit next to each other in θ
 * order, in five kernels: the left factors [N, ·] side by side, transposed to [L, N], gathered row by
 * row into [n, N] (each row a copy of N contiguous floats); the same for the right factors; one Mul;
 * one Transpose to [N, n]. Per tensor (the alternative) it is two Unsqueezes, a batched MatMul of N
 * tiny products and a Reshape, then a Concat of them all: on the MLP fixture (n = 306, 6 tensors) the
 * gradient run went 93 → 70 µs at batch 32. It writes the products four times instead of twice, which
 * costs more than the kernels it saves on long rows: all of digits-mlp's 2356 floats gathered were 4%
 * slower than per tensor, while its fc1.A (1568) per tensor and the other five (788) gathered were 8%
 * faster. Hence runs of at most GATHER_MAX_RUN floats, and of two tensors or more.
 * A row-wise Gather on [N, L] copies one float at a time instead, and was slower than the per-tensor
 * products.
 */
class OuterProducts {
  private readonly left = new Map<string, number>();
  private readonly right = new Map<string, number>();
  private leftWidth = 0;
  private rightWidth = 0;
  private readonly li: number[] = [];
  private readonly ri: number[] = [];

  /** Queue the per-sample products u[i]·w[j] (row-major [uWidth, wWidth]); returns their count. */
  add(u: string, uWidth: number, w: string, wWidth: number): number {
    const uo = this.slot(this.left, u, uWidth, 'leftWidth');
    const wo = this.slot(this.right, w, wWidth, 'rightWidth');
    for (let i = 0; i < uWidth; i++) for (let j = 0; j < wWidth; j++) {
      this.li.push(uo + i);
      this.ri.push(wo + j);
    }
    return uWidth * wWidth;
  }

  private slot(map: Map<string, number>, name: string, width: number, total: 'leftWidth' | 'rightWidth'): number {
    let o = map.get(name);
    if (o === undefined) {
      o = this[total];
      map.set(name, o);
      this[total] += width;
    }
    return o;
  }

  /** The queued products as [N, n] (named `output` when given). */
  emit(b: GraphBuilder, output?: string): string {
    const side = (map: Map<string, number>, idx: number[]) => {
      const parts = [...map.keys()];
      const all = parts.length === 1 ? parts[0]! : b.op('Concat', parts, { axis: 1 });
      return b.op('Gather', [b.op('Transpose', [all], { perm: [1, 0] }), b.i64(idx)], { axis: 0 });
    };
    const prod = b.op('Mul', [side(this.left, this.li), side(this.right, this.ri)]);
    if (!output) return b.op('Transpose', [prod], { perm: [1, 0] });
    b.nodeNamed('Transpose', [prod], [output], { perm: [1, 0] });
    return output;
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
  if (!outInfo) throw new OutputNotFoundError(outName, (g.output ?? []).map((o) => o.name!));

  // The batch is the first input's leading axis; exporters fix it when told no dynamic axes.
  const firstDims = (first.type?.tensorType?.shape?.dim ?? []).map((d) => (d.dimParam ? d.dimParam : d.dimValue !== undefined && d.dimValue !== null ? toNum(d.dimValue) : '?'));
  if (typeof firstDims[0] === 'number' && firstDims[0] > 0) {
    const io = [first.name!, outName].map((n) => `'${n}': {0: 'batch'}`).join(', ');
    throw new ModelUnsupportedError(
      `the model's batch size is fixed: input '${first.name}' is [${firstDims.join(', ')}]; per-sample training needs a dynamic batch axis, so export the model with one (torch.onnx.export(..., dynamic_axes={${io}}))`,
      { input: first.name, shape: firstDims },
    );
  }
  // Probe the injected model once for per-sample sizes and the batch layout at each site.
  const base = await probeShapes(m, runtime);
  const outShape = base.tensors.get(outName)!;
  if (outShape.dtype !== DT.FLOAT) throw new ModelUnsupportedError(`output '${outName}' is not float32 (ONNX type ${outShape.dtype}): training needs a float32 output such as logits`, { output: outName });
  const mDim = outShape.probe[0].slice(1).reduce((a, c) => a * c, 1);
  if (outShape.probe[0][0] !== base.batch[0] || outShape.probe[1][0] !== base.batch[1]) {
    throw new ModelUnsupportedError(`output '${outName}' does not have the batch on its leading axis`);
  }
  const layouts = sites.map((site) => {
    const d = base.tensors.get(site.data)!.probe;
    return siteLayout(site, site.dataTransposed ? [swapLast2(d[0]), swapLast2(d[1])] : d, base.batch);
  });

  const b = new GraphBuilder(g, 'train');
  const mergedSites = new Set<InjectedSite>();
  sites.forEach((site, k) => {
    if (spec.mergeWeights === 'always' || (spec.mergeWeights === 'auto' && mergesInTraining(site, layouts[k]!.tokens))) {
      mergeSite(g, site, b);
      mergedSites.add(site);
    }
  });
  const merged = mergedSites.size > 0;
  g.initializer = [...(g.initializer ?? []), ...b.initializers.splice(0)];
  if (merged) pruneInitializers(g);
  const batchDim = first.type?.tensorType?.shape?.dim?.[0] ?? { dimParam: 'batch' };
  const outputs: ValueInfoProto[] = [];
  const inputs = [...dataInputs];
  let labels: string | undefined;
  let lossName: string | undefined;
  let obsName: string | undefined;
  let seeds: { output: string; seed: string }[];
  const bTensor = b.op('Slice', [b.shape(first.name!), b.i64([0]), b.i64([1]), b.i64([0])], {}, 'batch');
  const jac = spec.mode === 'jacobian';
  const rowOutput = spec.layout === 'packed' && !jac && spec.emit === 'gradients';
  const s = loraScale(spec.lora);
  const late = rowOutput && s !== 1 && lateScale(g, sites, layouts, mergedSites, s);
  // Rows of the forward pass: B, or B·m sample-major (row b·m + c is sample b seeded with class c).
  const nRows = jac ? b.op('Mul', [bTensor, b.i64([mDim])], {}, 'rows') : bTensor;
  const replica0 = (t: string) => (jac ? b.op('Slice', [t, b.i64([0]), b.i64([Number.MAX_SAFE_INTEGER]), b.i64([0]), b.i64([mDim])]) : t);

  if (!jac) {
    labels = 'labels';
    b.reserve(labels);
    // The seed is the closed-form gradient of the summed loss at the output (softmax − one-hot, or
    // 2(out − y)/D) times the LoRA scale s, shared by every site: the backward pass then yields
    // δ = s·∂ℓ/∂z directly and the loss head itself is never differentiated. Where the scale can go
    // into the products instead (`late`, see lateScale) the seed and every δ leave it out.
    // With the output in the packed rows there is no loss in the graph (the caller's, from the output).
    const seedScale = late ? 1 : s;
    const scaled = (t: string, by: number) => (by === 1 ? t : b.op('Mul', [t, b.f32([by])], {}, 'seed'));
    let seed: string;
    if (spec.loss === 'softmax-ce') {
      if (outShape.probe[0].length !== 2) throw new ModelUnsupportedError(`softmax-ce needs [batch, classes] logits; '${outName}' has rank ${outShape.probe[0].length}`);
      // Packed: the caller feeds the one-hot rows itself (labelFeed), one kernel fewer a run.
      const onehot = spec.layout === 'packed' ? labels : b.op('OneHot', [labels, b.i64([mDim]), b.f32([0, 1])], { axis: -1 });
      g.input!.push(spec.layout === 'packed'
        ? { name: labels, type: { tensorType: { elemType: DT.FLOAT, shape: { dim: [batchDim, { dimValue: mDim }] } } } }
        : { name: labels, type: { tensorType: { elemType: DT.INT64, shape: { dim: [batchDim] } } } });
      const axis = opset >= 13 ? -1 : 1;
      if (rowOutput) {
        seed = scaled(b.op('Sub', [b.op('Softmax', [outName], { axis }), onehot]), seedScale);
      } else {
        const ls = b.op('LogSoftmax', [outName], { axis });
        lossName = b.op('Neg', [reduceSum(b, opset, b.op('Mul', [onehot, ls]), [1], 0)], {}, 'loss');
        seed = scaled(b.op('Sub', [b.op('Exp', [ls]), onehot]), seedScale);
      }
    } else {
      g.input!.push({ name: labels, type: outInfo.type ?? { tensorType: { elemType: DT.FLOAT } } });
      const diff = b.op('Sub', [outName, labels]);
      if (!rowOutput) {
        const sq = b.op('Flatten', [b.op('Mul', [diff, diff])], { axis: 1 });
        lossName = b.op('Div', [reduceSum(b, opset, sq, [1], 0), b.f32([mDim])], {}, 'loss');
      }
      seed = scaled(diff, (2 * seedScale) / mDim);
    }
    inputs.push(labels);
    seeds = [{ output: outName, seed }];
    if (!rowOutput) {
      b.nodeNamed('Identity', [outName], ['output']);
      b.nodeNamed('Identity', [lossName!], ['loss']);
      outputs.push({ name: 'output', type: outInfo.type ?? null }, { name: 'loss' });
    }
  } else {
    // Replicate every data input m times, sample-major, so one backward pass seeded with the m unit
    // vectors gives all m Jacobian rows, already in [B, m, ...] order.
    for (const name of dataInputs) {
      const rank = base.tensors.get(name)!.probe[0].length;
      const rep = b.fresh(`${name}/replicated`);
      for (const n of g.node ?? []) n.input = (n.input ?? []).map((i) => (i === name ? rep : i));
      for (const site of sites) if (site.data === name) site.data = rep;
      const expanded = b.op('Expand', [unsqueeze(b, opset, name, [1]), b.i64([1, mDim, ...new Array<number>(rank - 1).fill(1)])]);
      const shape = b.op('Concat', [b.i64([-1]), b.shapeSlice(name, 1)], { axis: 0 });
      b.nodeNamed('Reshape', [expanded, shape], [rep]);
      g.node!.unshift(...b.nodes.splice(0));
    }
    const flat = b.op('Flatten', [outName], { axis: 1 });
    const obs = spec.observation === 'probs' ? b.op('Softmax', [flat], { axis: opset >= 13 ? -1 : 1 }, 'probs') : b.op('Identity', [flat], {}, 'obs');
    const eye = new Array<number>(mDim * mDim).fill(0);
    for (let c = 0; c < mDim; c++) eye[c * mDim + c] = loraScale(spec.lora);
    const seed = b.op('Tile', [b.f32(eye, [mDim, mDim]), b.op('Concat', [bTensor, b.i64([1])], { axis: 0 })], {}, 'seed');
    seeds = [{ output: obs, seed }];
    b.nodeNamed('Identity', [replica0(outName)], ['output']);
    b.nodeNamed('Identity', [replica0(obs)], ['observation']);
    obsName = 'observation';
    outputs.push({ name: 'output', type: outInfo.type ?? null }, { name: 'observation' });
  }

  // The forward part is complete: learn every tensor's shape, then build the backward pass.
  g.node = [...(g.node ?? []), ...b.nodes.splice(0)];
  g.initializer = [...(g.initializer ?? []), ...b.initializers.splice(0)];
  g.output = outputs;
  const shapes = await probeShapes(m, runtime);
  // The gradient at a site's output is the gradient at its LoRA term (y = base + z).
  const grads = buildGradients({ graph: g, opset, shapes, wrt: sites.map((s) => s.output), seeds, builder: b });

  const siteOutputs: SiteOutputs[] = [];
  // The packed row's pieces in θ order: a tensor already [N, size] (or [N, m, size]), or an outer
  // product u ⊗ w of a one-row site, built after the loop (gathered in runs, see OuterProducts).
  type Piece = { tensor: string; size: number } | { u: string; uWidth: number; w: string; wWidth: number; size: number };
  const pieces: Piece[] = [];
  // Sites with many rows per sample, by the x they read: their A gradients dvᵀ·x (filled in below).
  const tokenA = new Map<string, { piece: number; x: string; data: string; dv: string; rank: number; in: number }[]>();
  const packed = { n: 0 };
  const flat = (t: string, size: number) => b.op('Reshape', [t, b.i64(jac ? [-1, mDim, size] : [-1, size])]);
  // A gradients of token sites: one batched MatMul per x. Sites that read the same x (attention's q,
  // k and v) share it: [dv_1 | dv_2 | ...]ᵀ·x gives every site's rows at once, then a Split by site.
  // One product of N small GEMMs instead of one per site. Emitted as soon as the sites after them
  // read another x: onnxruntime runs the nodes in this order, and mail-transformer's gradient run
  // was 4–6% slower with every site's A product at the end.
  const emitA = (key: string) => {
    const group = tokenA.get(key)!;
    tokenA.delete(key);
    const x = group[0]!.x;
    const rows = b.op('Transpose', [group.length === 1 ? group[0]!.dv : b.op('Concat', group.map((e) => e.dv), { axis: -1 })], { perm: [0, 2, 1] });
    const sizes = group.map((e) => e.rank * e.in);
    const all = flat(b.op('MatMul', [rows, x]), sizes.reduce((a, c) => a + c, 0));
    if (group.length === 1) {
      pieces[group[0]!.piece] = { tensor: all, size: sizes[0]! };
      return;
    }
    const parts = group.map(() => b.fresh('gA'));
    split(b, opset, all, sizes, -1, parts);
    group.forEach((e, i) => (pieces[e.piece] = { tensor: parts[i]!, size: sizes[i]! }));
  };
  sites.forEach((site, k) => {
    const { lead, tokens } = layouts[k]!;
    const so: SiteOutputs = { module: site.module, rank: site.rank, in: site.in, out: site.out, scale: site.scale, aInput: site.aInput, bInput: site.bInput };
    siteOutputs.push(so);
    const rank = shapes.tensors.get(site.data)!.probe[0].length;
    const left = site.form === 'left';
    const canon = (t: string, transposed: boolean) => (transposed ? transposeLast2(b, t, rank) : t);
    // Per-sample rows: [N, width] when a sample is one row (T = 1), else [N, T, width].
    const one = tokens === 1;
    const rows = (t: string, width: number, transposed: boolean) => {
      const c = canon(t, transposed);
      if (one && lead && rank === 2) return c;
      if (!one && lead && rank === 3) return c; // already [N, T, width]
      if (one) return b.op('Reshape', [c, lead ? b.i64([0, width]) : b.op('Concat', [nRows, b.i64([width])], { axis: 0 })]);
      return b.op('Reshape', [c, lead ? b.i64([0, -1, width]) : b.op('Concat', [nRows, b.i64([-1, width])], { axis: 0 })]);
    };
    const dy = grads.get(site.output);
    const x = rows(site.data, site.in, site.dataTransposed);
    const v = rows(site.v, site.rank, left);
    // δ = s·∂ℓ/∂z (the seed carries s; with `late` ∂ℓ/∂z); a site that does not reach the output has δ = 0.
    const d = dy
      ? rows(dy, site.out, left)
      : b.op('Mul', [b.op('MatMul', [v, b.op('Transpose', [site.bInput], { perm: [1, 0] })]), b.f32([0])]);
    // s·Bᵀδ where the seed left s out (lateScale): a Gemm's alpha, or a Mul folded into the MatMul.
    const late1 = (t: string) => (late ? b.op('Mul', [t, b.f32([s])]) : t);
    const dv = late && one
      ? b.op('Gemm', [d, site.bInput], { alpha: f(s) }, `${site.module}/dv`)
      : late1(b.op('MatMul', [d, site.bInput], {}, `${site.module}/dv`));
    if (spec.emit !== 'factors') {
      so.offsetA = packed.n;
      packed.n += site.rank * site.in;
      so.offsetB = packed.n;
      packed.n += site.out * site.rank;
      if (one && !jac) {
        // One row per sample: each per-sample gradient is an outer product (A: Bᵀδ ⊗ x, B: δ ⊗ v).
        pieces.push({ u: dv, uWidth: site.rank, w: x, wWidth: site.in, size: site.rank * site.in });
        pieces.push({ u: d, uWidth: site.out, w: v, wWidth: site.rank, size: site.out * site.rank });
      } else {
        let gA: string;
        let gB: string;
        if (one) {
          gB = outerProduct(b, opset, d, site.out, v, site.rank);
          gA = outerProduct(b, opset, dv, site.rank, x, site.in);
        } else {
          // With many tokens, vᵀ·δ and a transpose of the small result: MLAS runs [r, T]·[T, out] (r
          // rows, many columns) two to three times faster than δᵀ·v's [out, T]·[T, r] (r columns waste
          // its kernels). With few, the extra node costs more than it saves.
          gB = (tokens ?? 64) * site.out >= 2048
            ? b.op('Transpose', [late1(b.op('MatMul', [b.op('Transpose', [v], { perm: [0, 2, 1] }), d]))], { perm: [0, 2, 1] })
            : late1(b.op('MatMul', [b.op('Transpose', [d], { perm: [0, 2, 1] }), v]));
          // A's gradient waits for the other sites that read the same x (below).
          gA = '';
          (tokenA.get(x) ?? tokenA.set(x, []).get(x)!).push({ piece: pieces.length, x, data: site.data, dv, rank: site.rank, in: site.in });
        }
        // Each sample's (or, for the Jacobian, each sample-and-class row's) gradient as one flat row.
        pieces.push({ tensor: gA && flat(gA, site.rank * site.in), size: site.rank * site.in });
        pieces.push({ tensor: flat(gB, site.out * site.rank), size: site.out * site.rank });
        for (const [key, group] of [...tokenA]) if (group[0]!.data !== sites[k + 1]?.data) emitA(key);
      }
    }
    if (spec.emit !== 'gradients') {
      so.x = `factor:${site.module}.x`;
      so.v = `factor:${site.module}.v`;
      so.delta = `factor:${site.module}.delta`;
      so.dv = `factor:${site.module}.dv`;
      // Factors are always [B, T, width] (and [B, m, T, width] for the Jacobian's δ and Bᵀδ).
      const as3 = (t: string, width: number) => (one ? b.op('Reshape', [t, b.i64([0, 1, width])]) : t);
      const perSample = (t: string) => (jac ? b.op('Reshape', [t, b.op('Concat', [b.i64([-1, mDim]), b.shapeSlice(t, 1)], { axis: 0 })]) : t);
      b.nodeNamed('Identity', [replica0(as3(x, site.in))], [so.x]);
      b.nodeNamed('Identity', [replica0(as3(v, site.rank))], [so.v]);
      b.nodeNamed('Identity', [perSample(as3(d, site.out))], [so.delta]);
      b.nodeNamed('Identity', [perSample(as3(dv, site.rank))], [so.dv]);
      g.output!.push({ name: so.x }, { name: so.v }, { name: so.delta }, { name: so.dv });
    }
  });
  for (const key of [...tokenA.keys()]) emitA(key);
  let packedName: string | undefined;
  if (pieces.length > 0) {
    // One output for every site, [B, n] (Jacobian: [B, m, n]): a copy in the graph instead of one
    // output per tensor (each costs onnxruntime-node a buffer and a few µs) and a per-sample
    // regrouping in the caller. Outer products next to each other in θ order are gathered in runs
    // of two or more tensors and at most GATHER_MAX_RUN floats; a lone one is a batched MatMul.
    packedName = jac ? 'jacobian' : 'grads';
    const runs: Piece[][] = [];
    for (const p of pieces) {
      const last = runs[runs.length - 1];
      const open = last && !('tensor' in last[0]!) && !('tensor' in p) && last.reduce((a, q) => a + q.size, 0) + p.size <= GATHER_MAX_RUN;
      if (open) last.push(p);
      else runs.push([p]);
    }
    const whole = runs.length === 1 && !rowOutput ? packedName : undefined;
    const parts = runs.flatMap((run) => {
      const first = run[0]!;
      if ('tensor' in first) return [first.tensor];
      if (run.length === 1) return [flat(outerProduct(b, opset, first.u, first.uWidth, first.w, first.wWidth), first.size)];
      const o = new OuterProducts();
      for (const p of run as Extract<Piece, { u: string }>[]) o.add(p.u, p.uWidth, p.w, p.wWidth);
      return [o.emit(b, whole)];
    });
    if (rowOutput) parts.push(outShape.probe[0].length === 2 ? outName : b.op('Flatten', [outName], { axis: 1 }));
    if (!whole) b.nodeNamed('Concat', parts, [packedName], { axis: -1 });
    g.output!.push({ name: packedName });
  }
  b.flushInto(g);
  pruneUnused(g);
  for (const o of g.output!) if (!o.type) o.type = { tensorType: { elemType: DT.FLOAT } };
  const theta = spec.layout === 'packed' ? splitTheta(g, sites, opset) : undefined;
  if (theta) shareV(g, sites, opset, new Set(theta.parts));
  const allInputs = [...inputs, ...(theta ? [theta.name] : sites.flatMap((s) => [s.aInput, s.bInput]))];
  return {
    key, bytes: encodeModel(m), mode: spec.mode, inputs: allInputs, dataInputs,
    ...(labels ? { labels } : {}), ...(labels && spec.loss === 'softmax-ce' && spec.layout === 'packed' ? { labelsOneHot: true } : {}),
    ...(rowOutput ? { outputOffset: packed.n } : { output: 'output' }),
    ...(lossName ? { loss: 'loss' } : {}), ...(obsName ? { observation: obsName } : {}),
    m: mDim, sites: siteOutputs, n: packed.n, row: rowOutput ? packed.n + mDim : packed.n,
    ...(packedName ? { packed: packedName } : {}), ...(theta ? { theta: theta.name, thetaDims: theta.dims } : {}),
  };
}
