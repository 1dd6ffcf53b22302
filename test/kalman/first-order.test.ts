import { describe, expect, it } from 'vitest';
import { createOptimizer, type OptimizerConfigInput } from '../../src/kalman/index.js';

/** Runs `steps` steps on a 2-parameter θ with the given per-step batches of gradients. */
function run(cfg: OptimizerConfigInput, theta0: number[], grads: number[][][]): number[][] {
  const opt = createOptimizer(cfg);
  let state = opt.init({ n: theta0.length, blocks: [] }, theta0, 1);
  const out: number[][] = [];
  for (const batch of grads) {
    state = opt.step(state, batch.map((g) => ({ grad: Float64Array.from(g) }))).state;
    out.push(Array.from(state.theta));
  }
  return out;
}

const close = (a: number[][], b: number[][]) => {
  expect(a.length).toBe(b.length);
  a.forEach((row, k) => row.forEach((v, i) => expect(v).toBeCloseTo(b[k]![i]!, 14)));
};

describe('first-order update rules (PyTorch semantics, checked by hand)', () => {
  it('averages the per-sample gradients of a batch', () => {
    close(run({ type: 'sgd', lr: 0.1, momentum: 0 }, [1, 1], [[[1, 2], [3, -2]]]), [[1 - 0.1 * 2, 1 - 0]]);
  });

  it('SGD: heavy-ball and Nesterov momentum, L2 weight decay added to the gradient', () => {
    const g = [[[0.5, -1]], [[0.25, 2]]];
    // heavy ball: v1 = g1, θ1 = θ0 − lr·v1; v2 = μ·v1 + g2, θ2 = θ1 − lr·v2
    close(run({ type: 'sgd', lr: 0.1, momentum: 0.9 }, [0, 0], g), [
      [-0.05, 0.1],
      [-0.05 - 0.1 * (0.45 + 0.25), 0.1 - 0.1 * (-0.9 + 2)],
    ]);
    // Nesterov: θ ← θ − lr·(g + μ·v)
    close(run({ type: 'sgd', lr: 0.1, momentum: 0.9, nesterov: true }, [0, 0], g), [
      [-0.1 * (0.5 + 0.45), -0.1 * (-1 - 0.9)],
      [-0.095 - 0.1 * (0.25 + 0.9 * 0.7), 0.19 - 0.1 * (2 + 0.9 * 1.1)],
    ]);
    // weight decay: g + wd·θ
    close(run({ type: 'sgd', lr: 0.1, momentum: 0, weightDecay: 0.5 }, [2, -2], [[[0, 0]]]), [[2 - 0.1, -2 + 0.1]]);
  });

  it('AdamW: the bias-corrected first step moves each coordinate by lr·g/(|g| + ε); decay is decoupled', () => {
    const lr = 0.01;
    const out = run({ type: 'adamw', lr, weightDecay: 0.1, eps: 1e-8 }, [1, -3], [[[0.2, -5]], [[0.2, -5]]]);
    expect(out[0]![0]).toBeCloseTo(1 * (1 - lr * 0.1) - (lr * 0.2) / (0.2 + 1e-8), 14);
    expect(out[0]![1]).toBeCloseTo(-3 * (1 - lr * 0.1) + (lr * 5) / (5 + 1e-8), 14);
    // A constant gradient keeps m̂ = g and v̂ = g² after bias correction: the same move again.
    expect(out[1]![0]).toBeCloseTo(out[0]![0]! * (1 - lr * 0.1) - (lr * 0.2) / (0.2 + 1e-8), 14);
  });

  it('AdaGrad: θ ← θ − lr·g/(√Σg² + ε), with lr decay and L2 decay', () => {
    const out = run({ type: 'adagrad', lr: 0.5, lrDecay: 0.5, eps: 1e-10 }, [0, 0], [[[2, -1]], [[2, 3]]]);
    expect(out[0]![0]).toBeCloseTo(-0.5 * (2 / (2 + 1e-10)), 14);
    expect(out[0]![1]).toBeCloseTo(0.5 * (1 / (1 + 1e-10)), 14);
    const clr = 0.5 / (1 + 0.5); // second step
    expect(out[1]![0]).toBeCloseTo(out[0]![0]! - (clr * 2) / (Math.sqrt(8) + 1e-10), 14);
    expect(out[1]![1]).toBeCloseTo(out[0]![1]! - (clr * 3) / (Math.sqrt(10) + 1e-10), 14);
    const wd = run({ type: 'adagrad', lr: 0.5, weightDecay: 0.5, initialAccumulator: 1 }, [2, 0], [[[0, 0]]]);
    expect(wd[0]![0]).toBeCloseTo(2 - (0.5 * 1) / (Math.sqrt(2) + 1e-10), 14);
  });

  it('reports the gradient norm, update norm and mean loss', () => {
    const opt = createOptimizer({ type: 'sgd', lr: 0.1, momentum: 0 });
    const state = opt.init({ n: 2, blocks: [] }, [0, 0], 1);
    const { metrics } = opt.step(state, [
      { grad: Float32Array.of(3, 0), loss: 1 },
      { grad: Float32Array.of(3, 8), loss: 2 },
    ]);
    expect(metrics).toEqual({ step: 1, batchSize: 2, loss: 1.5, gradNorm: 5, updateNorm: 0.5 });
  });
});
