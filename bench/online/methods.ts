/**
 * The optimizers the online benchmark compares, and their learning-rate grids. Kalman methods run at
 * the recommended defaults below (RECOMMENDED_KALMAN) with only the observation/noise model named; methods
 * with a learning rate run over a grid and are reported at the grid's winner (the best mean final
 * prequential accuracy over all reported streams of that model: an oracle choice, which favours them).
 */
import type { OptimizerConfigInput } from '../../src/kalman/index.js';

export interface MethodSpec {
  id: string;
  label: string;
  family: 'kalman' | 'kfac' | 'first-order' | 'none';
  /** The config without `lr` (grid methods) or the whole config (Kalman methods); null: no updates. */
  base: OptimizerConfigInput | null;
  /** Learning rates to try; absent for Kalman methods. */
  grid?: readonly number[];
  /** Where the method is too slow to run on every stream: run it on the first `maxStreams` streams only. */
  maxStreams?: number;
  note?: string;
}

/** RING recomputes its Newton–Schulz factor inverses every this many steps in the benchmark (default 1). */
export const RING_INVERSE_EVERY = 20;

/**
 * The LoKO defaults this benchmark recommends (chosen by `--sweep` on streams it never reports; see
 * bench/README-online.md): every Kalman row runs at these, with only the observation/noise model named.
 */
export const RECOMMENDED_KALMAN = { p0Low: 0.03, p0High: 0.3, r0: 0.1, beta: 1, forgetting: 1, processNoise: 0 } as const;
export const RECOMMENDED_RHO = 1e-4;
/** The LoKO defaults in src/kalman when the benchmark was written (for the before/after row). */
export const PREVIOUS_KALMAN = { p0Low: 0.01, p0High: 0.1, r0: 0.01, beta: 0.95, forgetting: 1, processNoise: 0 } as const;

export function methodSpecs(options: { ringStreams: number }): MethodSpec[] {
  return [
    { id: 'loko-loss', label: 'LoKO loss', family: 'kalman', base: { type: 'loko', observation: 'loss', noise: 'ema', ...RECOMMENDED_KALMAN } },
    { id: 'loko-probs-cat', label: 'LoKO probs, categorical R', family: 'kalman', base: { type: 'loko', observation: 'probs', noise: 'categorical', ...RECOMMENDED_KALMAN } },
    { id: 'loko-probs-ema', label: 'LoKO probs, EMA R (β = 1)', family: 'kalman', base: { type: 'loko', observation: 'probs', noise: 'ema', ...RECOMMENDED_KALMAN } },
    {
      id: 'loko-previous',
      label: 'LoKO, previous defaults (probs, cat.)',
      family: 'kalman',
      base: { type: 'loko', observation: 'probs', noise: 'categorical', ...PREVIOUS_KALMAN },
    },
    { id: 'r-kalman', label: 'R-Kalman (loss)', family: 'kalman', base: { type: 'r-kalman', observation: 'loss', noise: 'ema', ...RECOMMENDED_KALMAN, rho: RECOMMENDED_RHO } },
    {
      id: 'ring',
      label: 'RING',
      family: 'kfac',
      base: { type: 'ring', inverseEvery: RING_INVERSE_EVERY },
      grid: [3e-5, 1e-4, 3e-4],
      maxStreams: options.ringStreams,
      note: `inverseEvery = ${RING_INVERSE_EVERY} (the default 1 costs ~50 ms per batch-1 step on digits-mlp: bench/kfac-online.ts); other settings at their defaults`,
    },
    { id: 'adamw', label: 'AdamW', family: 'first-order', base: { type: 'adamw' }, grid: [1e-3, 3e-3, 1e-2] },
    { id: 'sgd', label: 'SGD (momentum 0.9)', family: 'first-order', base: { type: 'sgd' }, grid: [3e-4, 1e-3, 3e-3] },
    { id: 'adagrad', label: 'AdaGrad', family: 'first-order', base: { type: 'adagrad' }, grid: [3e-2, 1e-1, 3e-1] },
    { id: 'frozen', label: 'frozen base model (no updates)', family: 'none', base: null },
  ];
}

export function withLr(base: OptimizerConfigInput, lr: number | undefined): OptimizerConfigInput {
  return lr === undefined ? base : ({ ...base, lr } as OptimizerConfigInput);
}
