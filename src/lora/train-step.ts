/**
 * The training step that joins graphs and optimizers: given an adapter's optimizer state and a batch,
 * run the graph the optimizer needs (gradients, Jacobians or factors, at the batch's starting θ),
 * apply the optimizer, and return the new state with prequential metrics — the prediction made
 * before the update, the loss, and for Kalman optimizers the predictive variance
 * diag(H·diag(p)·Hᵀ + R). A rejected batch (bad input, bad label, a non-PD or non-finite step)
 * throws and leaves the given state as it was (states are immutable).
 */
import {
  hvpPoint, KalmanError, KalmanStepper, needsOf, predictiveVariance, stepState, type OptimizerState, type SampleRecord, type StepMetrics,
} from '../kalman/index.js';
import type { Tensor } from '../onnx/index.js';
import { concatRows, outputLoss, type AdapterEngine, type Labels } from './engine.js';

export interface Batch {
  /** Model inputs with a leading batch axis. */
  inputs: Readonly<Record<string, Tensor>>;
  /** Class ids (classification) or flat targets [B·m] (regression). */
  labels: Labels;
}

export interface StepOutcome {
  state: OptimizerState;
  /** Model outputs before the update, [B, m] flattened. */
  output: Float32Array;
  /** Classification: softmax of the output and the predicted class, before the update. */
  probs?: Float32Array;
  predicted?: number[];
  /** Per-sample loss before the update (cross-entropy or mean-squared error). */
  loss: Float64Array;
  /** Kalman optimizers: diag(H·diag(p)·Hᵀ + R) per sample, before its update. */
  predictiveVariance?: Float64Array[];
  metrics: StepMetrics;
}

/** Row-wise softmax of [B, m]. */
export function softmaxRows(x: Float32Array, m: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length / m; r++) {
    let mx = -Infinity;
    for (let c = 0; c < m; c++) mx = Math.max(mx, x[r * m + c]!);
    let sum = 0;
    for (let c = 0; c < m; c++) sum += Math.exp(x[r * m + c]! - mx);
    for (let c = 0; c < m; c++) out[r * m + c] = Math.exp(x[r * m + c]! - mx) / sum;
  }
  return out;
}

function argmaxRows(p: Float32Array, m: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < p.length / m; r++) {
    let best = 0;
    for (let c = 1; c < m; c++) if (p[r * m + c]! > p[r * m + best]!) best = c;
    out.push(best);
  }
  return out;
}

function divergedState(what: string, details: Record<string, unknown>): KalmanError {
  return new KalmanError(
    'NON_FINITE_STATE',
    `step rejected: ${what} at the adapter's current parameters although the batch is finite; the adapter has diverged (restore a checkpoint, or lower the learning rate / initial covariance)`,
    { ...details, cause: 'state' },
  );
}

/** An optimizer step's errors on non-finite numbers: the batch was checked finite, so the adapter diverged. */
function optimizerStep<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof KalmanError && err.code === 'NON_FINITE_INPUT') throw divergedState(err.message, err.details ?? {});
    throw err;
  }
}

/** The inputs and labels were checked finite, so a non-finite model output comes from the adapter's θ. */
function checkOutput(out: Float32Array, offset: number): void {
  const bad = out.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw divergedState(`the model output [${offset + bad}] is ${String(out[bad])}`, { field: 'output', index: offset + bad });
}

/**
 * One optimizer step on a batch. A Kalman optimizer that observes the outputs (its `H` is a Jacobian,
 * m×n floats a sample) takes the Jacobians one sub-batch at a time (AdapterEngine.jacobianParts) and
 * feeds each to the step before the next is computed (KalmanStepper): memory holds one sub-batch's
 * Jacobians (EngineOptions.maxJacobianFloats), not the batch's, with the same result.
 */
export async function trainStep(engine: AdapterEngine, state: OptimizerState, batch: Batch): Promise<StepOutcome> {
  const needs = needsOf(state.config);
  const B = engine.validate(batch.inputs, batch.labels);
  const m = engine.m;
  const records: SampleRecord[] = Array.from({ length: B }, () => ({}));
  let output: Float32Array | undefined;
  let lossValues: Float32Array | undefined;
  let variance: Float64Array[] | undefined;
  const target = (b: number): Float32Array => {
    const y = new Float32Array(m);
    if (engine.task === 'classification') y[batch.labels[b] as number] = 1;
    else for (let c = 0; c < m; c++) y[c] = batch.labels[b * m + c] as number;
    return y;
  };
  // Only the Kalman optimizers observing the outputs need Jacobians (needsOf); they take them in parts below.
  const streamed = needs.includes('jacobian') && (state.type === 'loko' || state.type === 'r-kalman');
  if (needs.includes('grad') || needs.includes('loss')) {
    const g = await engine.gradients(state.theta, batch.inputs, batch.labels);
    output ??= g.output;
    lossValues = g.loss;
    for (let b = 0; b < B; b++) {
      records[b]!.grad = g.grads[b];
      records[b]!.loss = g.loss[b];
    }
  }
  if (needs.includes('factors')) {
    const f = await engine.factors(state.theta, batch.inputs, batch.labels);
    output ??= f.output;
    lossValues ??= f.loss;
    for (let b = 0; b < B; b++) {
      records[b]!.factors = f.factors[b];
      records[b]!.loss = f.loss[b];
    }
  }
  // The inputs and labels were checked finite above, so a non-finite output, loss, gradient or
  // Jacobian comes from the adapter's θ (a diverged state), not from the caller's batch.
  if (!streamed) checkOutput(output!, 0);
  if (needs.includes('hvp')) {
    const point = optimizerStep(() => hvpPoint(state, records));
    const g = await engine.gradients(point.theta, batch.inputs, batch.labels);
    for (let b = 0; b < B; b++) records[b]!.gradPerturbed = g.grads[b];
  }
  let stepped: ReturnType<typeof stepState>;
  if (streamed) {
    output = new Float32Array(B * m);
    const stepper = new KalmanStepper(state);
    for await (const { b0, run } of engine.jacobianParts(state.theta, batch.inputs)) {
      checkOutput(run.output, b0 * m);
      output.set(run.output, b0 * m);
      const part = records.slice(b0, b0 + run.h.length);
      part.forEach((r, k) => {
        r.H = run.H[k];
        r.h = run.h[k];
        r.y = target(b0 + k);
      });
      optimizerStep(() => stepper.feed(part));
      for (const r of part) delete r.H; // done with: let the part's Jacobians go before the next
    }
    stepped = optimizerStep(() => stepper.finish());
  } else {
    stepped = optimizerStep(() => stepState(state, records));
  }
  const out = output!;
  const { state: next, metrics } = stepped;
  if (metrics.kalman) variance = metrics.kalman.predictiveVariance;
  const probs = engine.task === 'classification' ? softmaxRows(out, m) : undefined;
  const loss = lossValues ? Float64Array.from(lossValues) : outputLoss(engine.task, out, batch.labels, m, new Float64Array(out.length / m));
  return {
    state: next, output: out, loss, metrics,
    ...(probs ? { probs, predicted: argmaxRows(probs, m) } : {}),
    ...(variance ? { predictiveVariance: variance } : {}),
  };
}

export interface Prediction {
  output: Float32Array;
  probs?: Float32Array;
  predicted?: number[];
  /** Kalman optimizers with a `probs` or `regression` observation: diag(H·diag(p)·Hᵀ + R) per sample. */
  variance?: Float64Array[];
}

/** Outputs for a batch at the state's θ, with the Kalman predictive variance where it applies. */
export async function predict(engine: AdapterEngine, state: OptimizerState, inputs: Readonly<Record<string, Tensor>>, options: { variance?: boolean } = {}): Promise<Prediction> {
  const kalman = state.type === 'loko' || state.type === 'r-kalman';
  const obs = kalman ? (state.config as { observation: string }).observation : null;
  const m = engine.m;
  let output: Float32Array;
  let variance: Float64Array[] | undefined;
  if (kalman && obs !== 'loss' && options.variance !== false) {
    // One sub-batch of Jacobians at a time: each gives its samples' variances and goes.
    const out: Float32Array[] = [];
    variance = [];
    for await (const { run } of engine.jacobianParts(state.theta, inputs)) {
      out.push(run.output);
      for (let k = 0; k < run.H.length; k++) variance.push(predictiveVariance(state, run.H[k]!, run.h[k]));
    }
    output = concatRows(out);
  } else {
    output = await engine.forward(state.theta, inputs);
  }
  const probs = engine.task === 'classification' ? softmaxRows(output, m) : undefined;
  return { output, ...(probs ? { probs, predicted: argmaxRows(probs, m) } : {}), ...(variance ? { variance } : {}) };
}
