/**
 * An adapter engine: one base model with one LoRA configuration, and the ONNX Runtime sessions that
 * evaluate it for any θ — plain forward, per-sample loss gradients, per-sample Jacobians and per-sample
 * K-FAC factors. Graphs are built on first use and cached (src/onnx); θ is fed as graph inputs, so
 * one engine serves every adapter of that (model, config), whoever owns it.
 */
import { InvalidInputError, InvalidLabelError, ModelUnsupportedError, OutputNotFoundError } from '../errors.js';
import {
  buildTrainingGraph, encodeModel, injectLora, labelFeed, sliceBatch, thetaFeed, type BuildOptions, type LoraConfig, type ModelProto, type OnnxRuntime,
  type Session, type Tensor, type TrainingGraph,
} from '../onnx/index.js';
import { thetaLayout, type SiteShape, type ThetaLayout } from './adapter.js';

/** The feed buffer pool's bounds: lengths kept (θ's, and the label rows' of a few batch sizes), buffers per length. */
const SPARE_LENGTHS = 8;
const SPARE_PER_LENGTH = 4;

/** What the model's output means. */
export type Task = 'classification' | 'regression';

export interface EngineOptions extends BuildOptions {
  /** Default `classification`: softmax cross-entropy, probability observations, class labels. */
  task?: Task;
  /** The model output to train and predict (its name). Default: the model's first output. */
  output?: string;
  /**
   * Per-sample Jacobians are computed this many floats (B·m·n) at a time at most, in consecutive
   * sub-batches; each sample's H is the same either way. Default 4M (16 MB a run): a 3000-image
   * predict with variance on digits-mlp (m·n = 47 120) in one run took the service to 4.9 GB.
   * trainStep and predict hold one sub-batch's Jacobians at a time (jacobianParts).
   */
  maxJacobianFloats?: number;
}

/** See EngineOptions.maxJacobianFloats. */
const MAX_JACOBIAN_FLOATS = 4 * 1024 * 1024;

/** Consecutive sub-batches' rows as one array (the one part itself when there is one). */
export function concatRows(parts: readonly Float32Array[]): Float32Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Per-sample results of one graph run; arrays are indexed by sample. */
export interface GradientRun {
  /** The model output [B, m] (flattened per sample) before any update. */
  output: Float32Array;
  loss: Float32Array;
  /** Per-sample dℓ/dθ, length n each. */
  grads: Float32Array[];
}
export interface JacobianRun {
  output: Float32Array;
  /** The observation h per sample (probabilities, or the output for regression), length m each. */
  h: Float32Array[];
  /** Per-sample H, m×n row-major. */
  H: Float32Array[];
}
export interface FactorRun {
  output: Float32Array;
  loss: Float32Array;
  /** Per sample, per θ block: inputs a [T, cols] and output gradients g [T, rows]. */
  factors: Record<string, { a: Float32Array; g: Float32Array }>[];
}

/** Labels of a batch: class ids (classification) or flat float targets [B·m] (regression). */
export type Labels = readonly number[] | Float32Array;

/**
 * Index of the first NaN or ±Infinity in `a`, or -1. x·0 is ±0 for finite x and NaN otherwise, so one
 * branch-free pass (four sums, ~3x faster than a Number.isFinite test per value) answers the common
 * case; only an array that has a bad value is searched.
 */
export function firstNonFinite(a: Float32Array | Float64Array): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  const n4 = a.length - (a.length % 4);
  for (let i = 0; i < n4; i += 4) {
    s0 += a[i]! * 0;
    s1 += a[i + 1]! * 0;
    s2 += a[i + 2]! * 0;
    s3 += a[i + 3]! * 0;
  }
  for (let i = n4; i < a.length; i++) s0 += a[i]! * 0;
  if (s0 + s1 + s2 + s3 === 0) return -1;
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i]!)) return i;
  return -1;
}

/**
 * Per-sample loss from a batch's model output [B, m], written into `into` (length B), as the gradient
 * graph's seed defines it: softmax cross-entropy (log Σ exp z − z_y) for classification, the mean
 * squared error over the m outputs for regression.
 */
export function outputLoss<T extends Float32Array | Float64Array>(task: Task, output: Float32Array, labels: Labels, m: number, into: T): T {
  for (let b = 0; b < into.length; b++) {
    const o = b * m;
    let l = 0;
    if (task === 'classification') {
      let max = -Infinity;
      for (let c = 0; c < m; c++) max = Math.max(max, output[o + c]!);
      let sum = 0;
      for (let c = 0; c < m; c++) sum += Math.exp(output[o + c]! - max);
      l = Math.log(sum) + max - output[o + labels[b]!]!;
    } else {
      for (let c = 0; c < m; c++) l += (output[o + c]! - labels[o + c]!) ** 2;
      l /= m;
    }
    into[b] = l;
  }
  return into;
}

export class AdapterEngine {
  readonly layout: ThetaLayout;
  /** Per-sample output size: number of classes, or regression outputs. */
  readonly m: number;
  /** The name of the model output this engine trains and predicts (EngineOptions.output). */
  readonly output: string;
  private readonly graphs = new Map<string, Promise<{ graph: TrainingGraph; session: Session }>>();
  /** What forward fetches: only the chosen output where the model has more than one. */
  private readonly fetchOutput: readonly string[] | undefined;
  /** Set by detach. */
  private detached = false;
  /** Spare float32 feed buffers by length (see run). */
  private readonly spare = new Map<number, Float32Array[]>();

  private constructor(
    readonly model: ModelProto,
    readonly lora: LoraConfig,
    readonly sites: SiteShape[],
    readonly dataInputs: string[],
    readonly task: Task,
    private readonly runtime: OnnxRuntime,
    private readonly options: EngineOptions,
    private readonly forwardSession: Session,
    m: number,
    output: string,
  ) {
    this.layout = thetaLayout(sites);
    this.m = m;
    this.output = output;
    this.fetchOutput = forwardSession.outputNames.length > 1 ? [output] : undefined;
  }

  /** Validate the LoRA config against the model and open the forward session. */
  static async create(model: ModelProto, lora: LoraConfig, runtime: OnnxRuntime, options: EngineOptions = {}): Promise<AdapterEngine> {
    const task = options.task ?? 'classification';
    if (task !== 'classification' && task !== 'regression') throw new RangeError(`task must be 'classification' or 'regression', got '${String(task)}'`);
    const outputs = (model.graph?.output ?? []).map((o) => o.name!);
    const output = options.output ?? outputs[0];
    if (output === undefined) throw new ModelUnsupportedError('the model has no outputs');
    if (!outputs.includes(output)) throw new OutputNotFoundError(output, outputs);
    const { model: injected, sites } = injectLora(model, lora);
    const session = await runtime.session(encodeModel(injected));
    const shapes = sites.map((s) => ({ module: s.module, rank: s.rank, in: s.in, out: s.out }));
    const engine = new AdapterEngine(model, lora, shapes, session.inputNames.filter((n) => !sites.some((s) => s.aInput === n || s.bInput === n)), task, runtime, options, session, 0, output);
    const g = await engine.graph('gradient');
    (engine as { m: number }).m = g.graph.m;
    return engine;
  }

  /**
   * Drop this engine's sessions from the runtime's cache (OnnxRuntime.forget), for a cache of engines
   * that evicts it: the engine stays usable by whoever holds it, and its sessions are freed with it
   * once nothing does. Graphs it builds after this are not cached in the runtime either.
   */
  async detach(): Promise<void> {
    this.detached = true;
    this.runtime.forget(this.forwardSession);
    for (const g of await Promise.allSettled([...this.graphs.values()])) if (g.status === 'fulfilled') this.runtime.forget(g.value.session);
  }

  private graph(kind: 'gradient' | 'factors' | 'jacobian'): Promise<{ graph: TrainingGraph; session: Session }> {
    let p = this.graphs.get(kind);
    if (!p) {
      const cls = this.task === 'classification';
      p = (async () => {
        const graph = await buildTrainingGraph(this.model, {
          lora: this.lora,
          mode: kind === 'jacobian' ? 'jacobian' : 'gradient',
          loss: cls ? 'softmax-ce' : 'mse',
          observation: cls ? 'probs' : 'output',
          emit: kind === 'factors' ? 'factors' : 'gradients',
          layout: 'packed',
          output: this.output,
        }, this.runtime, this.options);
        this.checkPacking(graph, kind !== 'factors');
        const session = await this.runtime.session(graph.bytes, graph.key);
        if (this.detached) this.runtime.forget(session);
        return { graph, session };
      })();
      this.graphs.set(kind, p);
      p.catch(() => this.graphs.delete(kind));
    }
    return p;
  }

  /**
   * The graph's θ input is split, and its packed rows are laid out, in the order of θ: θ goes in as
   * one vector, and the rows are handed out as per-sample gradients.
   */
  private checkPacking(graph: TrainingGraph, rows: boolean): void {
    const blocks = this.layout.blocks;
    const ok = graph.theta !== undefined && graph.thetaDims![0] * graph.thetaDims![1] === this.layout.n
      && graph.sites.length * 2 === blocks.length && graph.sites.every((s, k) =>
      s.module === blocks[2 * k]!.module && s.aInput === blocks[2 * k]!.name && s.bInput === blocks[2 * k + 1]!.name)
      && (!rows || (graph.packed !== undefined && graph.n === this.layout.n && graph.sites.every((s, k) =>
        s.offsetA === blocks[2 * k]!.offset && s.offsetB === blocks[2 * k + 1]!.offset)));
    if (!ok) throw new Error(`training graph ${graph.key}: its θ input or packed gradients do not follow the θ layout`);
  }

  /** Check a batch's inputs and labels; returns B. */
  validate(inputs: Readonly<Record<string, Tensor>>, labels?: Labels): number {
    let batch = -1;
    for (const name of this.dataInputs) {
      const t = inputs[name];
      if (!t) throw new InvalidInputError(`missing input '${name}'`, { input: name });
      const b = t.dims[0];
      if (b === undefined || b < 1) throw new InvalidInputError(`input '${name}' needs a leading batch axis`, { input: name });
      // A symbolic axis (a sequence length) can come in empty; no graph computes anything useful from it.
      const empty = t.dims.findIndex((d) => !(d >= 1));
      if (empty >= 0) {
        throw new InvalidInputError(`input '${name}' has shape [${t.dims.join(', ')}]; axis ${empty} is empty (every axis needs at least 1 entry)`, { input: name, shape: [...t.dims], axis: empty });
      }
      if (batch >= 0 && b !== batch) throw new InvalidInputError(`inputs disagree on the batch size (${batch} vs ${b} for '${name}')`, { input: name });
      batch = b;
      if (t.data instanceof Float32Array || t.data instanceof Float64Array) {
        const i = firstNonFinite(t.data);
        if (i >= 0) throw new InvalidInputError(`input '${name}' has a non-finite value at flat index ${i}`, { input: name, index: i });
      }
    }
    for (const name of Object.keys(inputs)) {
      if (!this.dataInputs.includes(name)) throw new InvalidInputError(`unknown input '${name}' (the model takes ${this.dataInputs.join(', ')})`, { input: name });
    }
    if (labels) {
      if (this.task === 'classification') {
        if (labels.length !== batch) throw new InvalidLabelError(`${labels.length} labels for a batch of ${batch}`, { field: 'labels' });
        for (let i = 0; i < labels.length; i++) {
          const y = labels[i]!;
          if (!Number.isInteger(y) || y < 0 || y >= this.m) {
            throw new InvalidLabelError(`label ${i} is ${y}; expected an integer class in [0, ${this.m})`, { field: 'labels', index: i });
          }
        }
      } else {
        if (labels.length !== batch * this.m) throw new InvalidLabelError(`${labels.length} targets for a batch of ${batch} × ${this.m} outputs`, { field: 'labels' });
        for (let i = 0; i < labels.length; i++) {
          if (!Number.isFinite(labels[i]!)) throw new InvalidLabelError(`target ${i} is not finite`, { field: 'labels', index: i });
        }
      }
    }
    return batch;
  }

  /**
   * Run a session on θ, the data inputs and the labels, if any: θ as the A and B inputs (one float32
   * copy of θ, none when it is float32, viewed per block) or, for a training graph, as its one θ input
   * (thetaFeed, checkPacking). Feeds are built by assignment into one object: an object spread of the
   * same ~30 entries costs V8 ~50 µs a call on Node 20 (the transformer fixture's gradient step at
   * batch 1 went 390 → 306 µs without it). The float32 feed buffers come from a small pool and go back
   * to it when the run is over (onnxruntime reads its inputs during the run only, so concurrent runs
   * never share one): a fresh off-heap Float32Array costs Node 20 ~3 µs here, whatever its size.
   */
  private async run(session: Session, theta: Float64Array | Float32Array, inputs: Readonly<Record<string, Tensor>>, graph?: TrainingGraph, labels?: { labels: Labels; batch: number }, fetches?: readonly string[]): Promise<Record<string, Tensor>> {
    const n = this.layout.n;
    if (theta.length !== n) throw new InvalidInputError(`θ has ${theta.length} values; the adapter has ${n}`);
    const taken: Float32Array[] = [];
    const take = (len: number) => {
      const a = this.spare.get(len)?.pop() ?? new Float32Array(len);
      taken.push(a);
      return a;
    };
    const feeds: Record<string, Tensor> = {};
    for (const name of this.dataInputs) feeds[name] = inputs[name]!;
    if (graph && labels) {
      const floats = graph.labelsOneHot || this.task === 'regression';
      feeds.labels = labelFeed(graph, this.task === 'classification' ? 'softmax-ce' : 'mse', labels.labels, labels.batch, floats ? take(labels.batch * graph.m) : undefined);
    }
    if (graph) {
      feeds[graph.theta!] = { data: thetaFeed(graph, theta, take(n)), dims: graph.thetaDims! };
    } else {
      let f32: Float32Array;
      if (theta instanceof Float32Array) f32 = theta;
      else (f32 = take(n)).set(theta);
      for (const b of this.layout.blocks) feeds[b.name] = { data: f32.subarray(b.offset, b.offset + b.rows * b.cols), dims: [b.rows, b.cols] };
    }
    try {
      return await session.run(feeds, fetches);
    } finally {
      for (const a of taken) {
        const list = this.spare.get(a.length) ?? (this.spare.size < SPARE_LENGTHS ? this.spare.set(a.length, []).get(a.length)! : undefined);
        if (list && list.length < SPARE_PER_LENGTH) list.push(a);
      }
    }
  }

  /** Base + adapter output (EngineOptions.output) for θ: [B, m] flattened. */
  async forward(theta: Float64Array | Float32Array, inputs: Readonly<Record<string, Tensor>>): Promise<Float32Array> {
    this.validate(inputs);
    const out = await this.run(this.forwardSession, theta, inputs, undefined, undefined, this.fetchOutput);
    return out[this.output]!.data as Float32Array;
  }

  /** Per-sample loss gradients at θ. */
  async gradients(theta: Float64Array | Float32Array, inputs: Readonly<Record<string, Tensor>>, labels: Labels): Promise<GradientRun> {
    const batch = this.validate(inputs, labels);
    const { graph, session } = await this.graph('gradient');
    const out = await this.run(session, theta, inputs, graph, { labels, batch });
    const n = this.layout.n;
    const m = graph.m;
    const w = graph.row;
    // One [B, n + m] buffer: each row is a sample's gradient in θ order, then its model output.
    const all = out[graph.packed!]!.data as Float32Array;
    const grads = Array.from({ length: batch }, (_, b) => all.subarray(b * w, b * w + n));
    // The output and the loss share one allocation (see run).
    const both = new Float32Array(batch * (m + 1));
    const output = both.subarray(0, batch * m);
    for (let b = 0; b < batch; b++) output.set(all.subarray(b * w + graph.outputOffset!, b * w + graph.outputOffset! + m), b * m);
    return { output, loss: outputLoss(this.task, output, labels, m, both.subarray(batch * m)), grads };
  }

  /** Per-sample Jacobians of the observation at θ (in sub-batches of at most `maxJacobianFloats`). */
  async jacobians(theta: Float64Array | Float32Array, inputs: Readonly<Record<string, Tensor>>): Promise<JacobianRun> {
    const parts: JacobianRun[] = [];
    for await (const part of this.jacobianParts(theta, inputs)) parts.push(part.run);
    if (parts.length === 1) return parts[0]!;
    return { output: concatRows(parts.map((p) => p.output)), h: parts.flatMap((p) => p.h), H: parts.flatMap((p) => p.H) };
  }

  /**
   * The same Jacobians one sub-batch at a time (samples [b0, b0 + run.h.length)), each computed when
   * the previous one is taken: a caller that is done with a part before asking for the next holds
   * at most `maxJacobianFloats` of them (trainStep and predict with a Kalman optimizer). The inputs
   * are checked before the first part.
   */
  async *jacobianParts(theta: Float64Array | Float32Array, inputs: Readonly<Record<string, Tensor>>): AsyncGenerator<{ b0: number; run: JacobianRun }> {
    const batch = this.validate(inputs);
    const { graph, session } = await this.graph('jacobian');
    const per = graph.m * this.layout.n;
    const step = Math.max(1, Math.floor((this.options.maxJacobianFloats ?? MAX_JACOBIAN_FLOATS) / per));
    const run = async (part: Readonly<Record<string, Tensor>>, size: number): Promise<JacobianRun> => {
      const out = await this.run(session, theta, part, graph);
      const n = this.layout.n;
      const m = graph.m;
      // [B, m, n] in θ order: each sample's H is a contiguous m×n view.
      const all = out[graph.packed!]!.data as Float32Array;
      const obs = out.observation!.data as Float32Array;
      const H: Float32Array[] = [];
      const h: Float32Array[] = [];
      for (let b = 0; b < size; b++) {
        H.push(all.subarray(b * m * n, (b + 1) * m * n));
        h.push(obs.slice(b * m, (b + 1) * m));
      }
      return { output: out.output!.data as Float32Array, h, H };
    };
    if (batch <= step) {
      yield { b0: 0, run: await run(inputs, batch) };
      return;
    }
    for (let b0 = 0; b0 < batch; b0 += step) {
      const b1 = Math.min(batch, b0 + step);
      yield { b0, run: await run(sliceBatch(inputs, b0, b1), b1 - b0) };
    }
  }

  /** Per-sample K-FAC factors at θ. */
  async factors(theta: Float64Array | Float32Array, inputs: Readonly<Record<string, Tensor>>, labels: Labels): Promise<FactorRun> {
    const batch = this.validate(inputs, labels);
    const { graph, session } = await this.graph('factors');
    const out = await this.run(session, theta, inputs, graph, { labels, batch });
    const factors = Array.from({ length: batch }, () => ({}) as Record<string, { a: Float32Array; g: Float32Array }>);
    graph.sites.forEach((site, k) => {
      const x = out[site.x!]!;
      const T = x.dims[1]!;
      const per = (t: Tensor, width: number, b: number) => (t.data as Float32Array).slice(b * T * width, (b + 1) * T * width);
      for (let b = 0; b < batch; b++) {
        factors[b]![this.layout.blocks[2 * k]!.name] = { a: per(x, site.in, b), g: per(out[site.dv!]!, site.rank, b) };
        factors[b]![this.layout.blocks[2 * k + 1]!.name] = { a: per(out[site.v!]!, site.rank, b), g: per(out[site.delta!]!, site.out, b) };
      }
    });
    return { output: out.output!.data as Float32Array, loss: out.loss!.data as Float32Array, factors };
  }
}
