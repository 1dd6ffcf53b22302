/**
 * RING and RENG with their defaults, one sample a step on a real shifted stream (digits-mlp, LoRA
 * r = 4 on its three Linear layers as in bench/online): every step is accepted and θ stays bounded.
 *
 * RENG used to precondition ḡ + ρ·H·ḡ with K-FAC's fixed damping λ₀. At LoRA's start (B = 0) the
 * A matrices' output-gradient factors are zero, so their damped inverses scale by ~1/λ₀, while H·ḡ
 * has A components (the A–B cross terms): on this stream θ blew up within 4 samples (the first
 * finite-but-huge steps, then every later step rejected). DESIGN 4 gives RENG "the same
 * preconditioner" as RING, whose damping λ₀ + ρ‖ḡ‖² grows with the gradient.
 */
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';

import { digitStream } from '../../src/data/index.js';
import { initState, type OptimizerConfigInput, type OptimizerState } from '../../src/kalman/index.js';
import { AdapterEngine, initTheta, trainStep } from '../../src/lora/index.js';
import { decodeModel, OnnxRuntime } from '../../src/onnx/index.js';

const rt = new OnnxRuntime();
afterAll(() => rt.close());

const SAMPLES = 40;

describe('GRNG frequentist variants on a real stream', () => {
  it.each([
    ['reng', 0],
    ['reng', 3],
    ['ring', 0],
  ] as const)('%s, user %i: 40 samples one at a time, every step accepted, θ bounded, damping λ₀ + ρ‖ḡ‖²', async (type, user) => {
    const engine = await AdapterEngine.create(decodeModel(new Uint8Array(readFileSync('models/digits-mlp.onnx'))), { targets: ['fc1', 'fc2', 'head'], rank: 4, alpha: 4 }, rt);
    const input = engine.dataInputs[0]!;
    let state: OptimizerState = initState({ type } as OptimizerConfigInput, engine.layout, initTheta(engine.sites, 1), 1);
    const cfg = state.config as { damping: number; rho: number };
    let k = 0;
    let maxAbs = 0;
    const damping: [number, number][] = [];
    for (const s of digitStream({ user, seed: 1, split: 'stream' })) {
      if (k++ >= SAMPLES) break;
      const out = await trainStep(engine, state, { inputs: { [input]: { data: s.image, dims: [1, 784] } }, labels: [s.label] });
      state = out.state;
      const gn = out.metrics.gradNorm!;
      damping.push([out.metrics.kfac!.damping, cfg.damping + cfg.rho * gn * gn]);
      for (const v of state.theta) maxAbs = Math.max(maxAbs, Math.abs(v));
    }
    expect(state.step).toBe(SAMPLES);
    // initTheta's A entries are below 0.1; the diverging RENG passed 50 by its third sample.
    expect(maxAbs).toBeLessThan(5);
    for (const [got, want] of damping) expect(got).toBeCloseTo(want, 12);
  });
});
