/**
 * The machinery of the online benchmark (bench/online.ts): the built-in models with the LoRA config
 * every optimizer shares, their shifted streams as ready-made batch-1 inputs, and one prequential
 * (test-then-train) run of one optimizer over one stream.
 *
 * A run feeds the stream one sample at a time to `trainStep`, which predicts before it updates. A
 * step that throws (a KalmanError: non-PD S, non-finite result, or a NaN loss from a diverged θ) is
 * a *rejected step*: the state stays at the last good one, the sample is still scored with that
 * state's prediction (`predict`), and the run goes on with the next sample. Every rejection is
 * recorded (sample index, error code); a run with any rejection is flagged as diverged.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeModel, OnnxRuntime, type LoraConfig, type Tensor } from '../../src/onnx/index.js';
import { AdapterEngine, initTheta, predict, trainStep } from '../../src/lora/index.js';
import { initState, type OptimizerConfigInput, type OptimizerState } from '../../src/kalman/index.js';
import { digitStream, loadTokenizer, mailStream } from '../../src/data/index.js';

export type ModelName = 'digits-mlp' | 'digits-cnn' | 'mail-transformer';
export const MODEL_NAMES: readonly ModelName[] = ['digits-mlp', 'digits-cnn', 'mail-transformer'];

/** The LoRA config of each model (the same for every optimizer), and why. */
export const LORA: Record<ModelName, { lora: LoraConfig; why: string }> = {
  'digits-mlp': {
    lora: { targets: ['fc1', 'fc2', 'head'], rank: 4, alpha: 4 },
    why: 'r = 4, alpha = 4 (scale 1) on all three Linear layers (fc1 784-128, fc2 128-64, head 64-10): n = 4 712',
  },
  'digits-cnn': {
    lora: { targets: ['fc1', 'head'], rank: 4, alpha: 4 },
    why: 'r = 4, alpha = 4 on both Linear layers (fc1 288-64, head 64-10), the only targetable weights (Conv targets are not supported yet): n = 1 704',
  },
  'mail-transformer': {
    lora: { targets: ['q', 'v', 'classifier'], rank: 4, alpha: 4 },
    why: "r = 4, alpha = 4 on the attention q and v projections of both layers (PEFT's usual attention targets) and the classifier head",
  },
};

/** One labelled stream sample with its model inputs (batch axis 1). */
export interface StreamSample {
  inputs: Record<string, Tensor>;
  label: number;
}

/** A model with its engine. */
export interface LoadedModel {
  name: ModelName;
  engine: AdapterEngine;
  /** Module names of the adapted sites. */
  sites: string[];
  n: number;
}

let runtime: OnnxRuntime | undefined;
/** One single-threaded runtime for the whole benchmark (batch 1: intra-op threads only add overhead). */
export function benchRuntime(): OnnxRuntime {
  runtime ??= new OnnxRuntime({ intraOpThreads: 1 });
  return runtime;
}

export function modelFile(name: ModelName): string {
  return join('models', `${name}.onnx`);
}

export function modelAvailable(name: ModelName): boolean {
  return existsSync(modelFile(name));
}

/** Resolve the module names `targets` stands for, from what the model offers (suffix match as PEFT). */
export async function loadModel(name: ModelName, lora: LoraConfig = LORA[name].lora): Promise<LoadedModel> {
  const model = decodeModel(new Uint8Array(readFileSync(modelFile(name))));
  const engine = await AdapterEngine.create(model, lora, benchRuntime(), { task: 'classification' });
  return { name, engine, sites: engine.sites.map((s) => s.module), n: engine.layout.n };
}

/** Which data feeds a stream: the reported 'stream' split, or the disjoint 'heldout' split (sweeps). */
export type StreamSplit = 'stream' | 'heldout';

/** The shifted stream of a model: digits of one user's style (digits models), or the shifted mail. */
export function loadStream(model: LoadedModel, user: number, seed: number, split: StreamSplit = 'stream', limit = Infinity): StreamSample[] {
  const out: StreamSample[] = [];
  const input = model.engine.dataInputs[0]!;
  if (model.name === 'mail-transformer') {
    const tok = loadTokenizer(join('models', 'mail-tokenizer.json'));
    // 'stream' = all 1 646 shifted mails; 'heldout' (sweeps) = its i % 5 == 4 part.
    for (const m of mailStream({ seed, split: split === 'stream' ? 'all' : 'heldout' })) {
      if (out.length >= limit) break;
      const enc = tok.encodeBatch([m.text]);
      out.push({ inputs: { [input]: { data: enc.ids, dims: enc.dims } }, label: m.label });
    }
    return out;
  }
  const dims = model.name === 'digits-cnn' ? [1, 1, 28, 28] : [1, 784];
  for (const s of digitStream({ user, seed, split })) {
    if (out.length >= limit) break;
    out.push({ inputs: { [input]: { data: s.image, dims } }, label: s.label });
  }
  return out;
}

/** A rejected step. */
export interface Rejection {
  /** 0-based sample index. */
  sample: number;
  code: string;
  message: string;
}

/** The result of one prequential run. */
export interface RunResult {
  /** 1 where the prediction (made before the update) was right, per sample. */
  correct: Uint8Array;
  /** Running prequential accuracy after 10, 20, ... samples (and after the last one). */
  curve: number[];
  /** Sample counts of `curve`'s points. */
  curveAt: number[];
  final: number;
  rejections: Rejection[];
  /** Wall-clock ms of each trainStep (prediction + graph + optimizer), excluding the first. */
  msMean: number;
  msMedian: number;
  /** Mean per-sample cross-entropy of the prediction before the update (accepted steps only). */
  meanLoss: number;
}

export const CURVE_EVERY = 10;

function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

/** Running accuracy at sample count t (1-based) from a prefix-sum. */
export function runningAccuracy(correct: Uint8Array): Float64Array {
  const acc = new Float64Array(correct.length);
  let c = 0;
  for (let i = 0; i < correct.length; i++) {
    c += correct[i]!;
    acc[i] = c / (i + 1);
  }
  return acc;
}

/** One prequential run of `config` over `stream`; θ and the optimizer are seeded with `seed`. */
export async function runStream(model: LoadedModel, config: OptimizerConfigInput, stream: readonly StreamSample[], seed: number): Promise<RunResult> {
  const engine = model.engine;
  let state: OptimizerState = initState(config, engine.layout, initTheta(engine.sites, seed), seed);
  const correct = new Uint8Array(stream.length);
  const rejections: Rejection[] = [];
  const times: number[] = [];
  let lossSum = 0;
  let lossN = 0;
  for (let i = 0; i < stream.length; i++) {
    const s = stream[i]!;
    const t0 = performance.now();
    let predicted: number;
    try {
      const out = await trainStep(engine, state, { inputs: s.inputs, labels: [s.label] });
      state = out.state;
      predicted = out.predicted![0]!;
      const l = out.loss[0]!;
      if (Number.isFinite(l)) {
        lossSum += l;
        lossN++;
      }
    } catch (err) {
      const e = err as { code?: string; message?: string };
      rejections.push({ sample: i, code: e.code ?? (err as Error).name ?? 'Error', message: String(e.message ?? err).slice(0, 200) });
      // Keep predicting with the last good state.
      const p = await predict(engine, state, s.inputs, { variance: false });
      predicted = p.probs ? argmax(p.probs) : -1;
    }
    if (i > 0) times.push(performance.now() - t0);
    correct[i] = predicted === s.label ? 1 : 0;
  }
  return finish(correct, rejections, times, lossN > 0 ? lossSum / lossN : NaN);
}

/** The frozen base model on the same stream (B = 0: the adapter is a no-op), for reference. */
export async function runFrozen(model: LoadedModel, stream: readonly StreamSample[], seed: number): Promise<RunResult> {
  const engine = model.engine;
  const theta = initTheta(engine.sites, seed);
  const correct = new Uint8Array(stream.length);
  const times: number[] = [];
  for (let i = 0; i < stream.length; i++) {
    const s = stream[i]!;
    const t0 = performance.now();
    const out = await engine.forward(theta, s.inputs);
    if (i > 0) times.push(performance.now() - t0);
    correct[i] = argmax(out) === s.label ? 1 : 0;
  }
  return finish(correct, [], times, NaN);
}

function finish(correct: Uint8Array, rejections: Rejection[], times: number[], meanLoss: number): RunResult {
  const acc = runningAccuracy(correct);
  const curve: number[] = [];
  const curveAt: number[] = [];
  for (let t = CURVE_EVERY; t <= correct.length; t += CURVE_EVERY) {
    curveAt.push(t);
    curve.push(acc[t - 1]!);
  }
  if (curveAt.at(-1) !== correct.length && correct.length > 0) {
    curveAt.push(correct.length);
    curve.push(acc[correct.length - 1]!);
  }
  const sorted = times.slice().sort((a, b) => a - b);
  return {
    correct,
    curve,
    curveAt,
    final: acc[correct.length - 1] ?? NaN,
    rejections,
    msMean: times.reduce((a, b) => a + b, 0) / Math.max(1, times.length),
    msMedian: sorted[sorted.length >> 1] ?? NaN,
    meanLoss,
  };
}

/**
 * Samples needed to reach `target` running accuracy: the first t ≥ `from` with running accuracy ≥
 * target at t and at every later sample (so one lucky early stretch does not count); null if never.
 */
export function samplesToReach(correct: Uint8Array, target: number, from = 50): number | null {
  const acc = runningAccuracy(correct);
  let t: number | null = null;
  for (let i = acc.length - 1; i >= from - 1; i--) {
    if (acc[i]! >= target - 1e-12) t = i + 1;
    else break;
  }
  return t;
}

/** Running accuracy at sample count t (1-based), or NaN past the end. */
export function accuracyAt(correct: Uint8Array, t: number): number {
  if (t > correct.length || t < 1) return NaN;
  let c = 0;
  for (let i = 0; i < t; i++) c += correct[i]!;
  return c / t;
}
