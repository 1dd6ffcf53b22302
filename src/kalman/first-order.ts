/**
 * The first-order baselines, SGD (momentum, Nesterov, L2 decay), AdamW (bias correction, decoupled
 * decay) and AdaGrad, with PyTorch's update rules, in float64 on the batch-mean of the per-sample
 * gradients (each sample's `grad`, or its factors' Σ_t g_t·a_tᵀ where the blocks cover θ).
 */
import { assertFiniteResult, baseMetrics, blocksTile, meanGradient, meanLoss, norm, validateBatch } from './batch.js';
import type { Rng } from './rng.js';
import type {
  AdaGradConfig,
  AdaGradState,
  AdamWConfig,
  AdamWState,
  ParamLayout,
  SampleRecord,
  SgdConfig,
  SgdState,
  StepMetrics,
  StepResult,
} from './types.js';

/** A first-order state. */
export type FirstOrderState = SgdState | AdamWState | AdaGradState;

/** Initial first-order state: zero slots (AdaGrad's accumulator starts at `initialAccumulator`). */
export function initFirstOrder(
  config: SgdConfig | AdamWConfig | AdaGradConfig,
  layout: ParamLayout,
  theta: Float64Array,
  rng: Rng,
): FirstOrderState {
  const base = { layout, step: 0, samples: 0, theta, rng: rng.getState() };
  const n = layout.n;
  switch (config.type) {
    case 'sgd':
      return { ...base, type: 'sgd', config, velocity: new Float64Array(n) };
    case 'adamw':
      return { ...base, type: 'adamw', config, expAvg: new Float64Array(n), expAvgSq: new Float64Array(n) };
    case 'adagrad':
      return { ...base, type: 'adagrad', config, sum: new Float64Array(n).fill(config.initialAccumulator) };
  }
}

/** One first-order step on the batch-mean gradient; never mutates `state`. */
export function stepFirstOrder(state: FirstOrderState, batch: readonly SampleRecord[]): StepResult<FirstOrderState> {
  const layout = state.layout;
  validateBatch(batch, layout, ['grad'], { gradFromFactors: blocksTile(layout) });
  const n = layout.n;
  const g = meanGradient(layout, batch);
  const gradNorm = norm(g);
  const theta = state.theta.slice();
  const t = state.step + 1;
  let next: FirstOrderState;
  switch (state.type) {
    case 'sgd': {
      const { lr, momentum, nesterov, weightDecay } = state.config;
      const v = state.velocity.slice();
      for (let i = 0; i < n; i++) {
        const gi = weightDecay !== 0 ? g[i] + weightDecay * theta[i] : g[i];
        let d = gi;
        if (momentum !== 0) {
          v[i] = momentum * v[i] + gi;
          d = nesterov ? gi + momentum * v[i] : v[i];
        }
        theta[i] -= lr * d;
      }
      assertFiniteResult('velocity', v);
      next = { ...state, velocity: v };
      break;
    }
    case 'adamw': {
      const { lr, beta1, beta2, eps, weightDecay } = state.config;
      const m1 = state.expAvg.slice();
      const m2 = state.expAvgSq.slice();
      const bc1 = 1 - Math.pow(beta1, t);
      const sqrtBc2 = Math.sqrt(1 - Math.pow(beta2, t));
      const stepSize = lr / bc1;
      const decay = 1 - lr * weightDecay;
      for (let i = 0; i < n; i++) {
        const gi = g[i];
        theta[i] *= decay;
        m1[i] = beta1 * m1[i] + (1 - beta1) * gi;
        m2[i] = beta2 * m2[i] + (1 - beta2) * gi * gi;
        theta[i] -= (stepSize * m1[i]) / (Math.sqrt(m2[i]) / sqrtBc2 + eps);
      }
      assertFiniteResult('expAvg', m1);
      assertFiniteResult('expAvgSq', m2);
      next = { ...state, expAvg: m1, expAvgSq: m2 };
      break;
    }
    case 'adagrad': {
      const { lr, eps, lrDecay, weightDecay } = state.config;
      const sum = state.sum.slice();
      const clr = lr / (1 + (t - 1) * lrDecay);
      for (let i = 0; i < n; i++) {
        const gi = weightDecay !== 0 ? g[i] + weightDecay * theta[i] : g[i];
        sum[i] += gi * gi;
        theta[i] -= (clr * gi) / (Math.sqrt(sum[i]) + eps);
      }
      assertFiniteResult('sum', sum);
      next = { ...state, sum };
      break;
    }
  }
  assertFiniteResult('theta', theta);
  next = { ...next, step: t, samples: state.samples + batch.length, theta } as FirstOrderState;
  const loss = meanLoss(batch);
  const metrics: StepMetrics = { ...baseMetrics(t, batch.length, loss, theta, state.theta), gradNorm };
  return { state: next, metrics };
}
