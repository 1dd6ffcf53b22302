/**
 * Choosing the model output an engine trains (EngineOptions.output) on a model with three outputs:
 * the mlp fixture's ReLU activations first, its logits second, an int64 ArgMax third.
 */
import { afterAll, describe, expect, it } from 'vitest';

import { AdapterEngine } from '../../src/lora/index.js';
import { OnnxRuntime, type Tensor } from '../../src/onnx/index.js';
import { fixtureModel, multiOutputMlp, randomArray, seeded } from '../fixtures.js';

const rt = new OnnxRuntime();
afterAll(() => rt.close());

const lora = { targets: 'all' as const, rank: 2, alpha: 4 };
const B = 6;
const rand = seeded(5);
const inputs: Record<string, Tensor> = { x: { data: randomArray(B * 20, rand), dims: [B, 20] } };
const labels = [0, 4, 2, 1, 3, 4];

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

describe('AdapterEngine output', () => {
  it("trains the named output: on a three-output model 'logits' gives the single-output model's outputs, gradients and Jacobians", async () => {
    const single = await AdapterEngine.create(fixtureModel('mlp.opset17'), lora, rt);
    const multi = await AdapterEngine.create(multiOutputMlp(), lora, rt, { output: 'logits' });
    expect(multi.output).toBe('logits');
    expect(multi.m).toBe(5);
    expect(multi.layout.n).toBe(single.layout.n);
    // B ≠ 0, so the adapter changes every output.
    const theta = randomArray(single.layout.n, seeded(9), 0.3);

    const f1 = await single.forward(theta, inputs);
    const f3 = await multi.forward(theta, inputs);
    expect(f3).toHaveLength(B * 5);
    expect(maxAbsDiff(f3, f1)).toBeLessThan(1e-6);

    const g1 = await single.gradients(theta, inputs, labels);
    const g3 = await multi.gradients(theta, inputs, labels);
    expect(maxAbsDiff(g3.loss, g1.loss)).toBeLessThan(1e-6);
    for (let b = 0; b < B; b++) expect(maxAbsDiff(g3.grads[b]!, g1.grads[b]!)).toBeLessThan(1e-6);
    expect(Math.max(...g1.grads[0]!.map(Math.abs))).toBeGreaterThan(1e-3);

    const j1 = await single.jacobians(theta, inputs);
    const j3 = await multi.jacobians(theta, inputs);
    for (let b = 0; b < B; b++) expect(maxAbsDiff(j3.H[b]!, j1.H[b]!)).toBeLessThan(1e-6);
  });

  it("defaults to the model's first output", async () => {
    const engine = await AdapterEngine.create(multiOutputMlp(), lora, rt);
    expect(engine.output).toBe('hidden');
    expect(engine.m).toBe(32);
    const out = await engine.forward(randomArray(engine.layout.n, seeded(3), 0.3), inputs);
    expect(out).toHaveLength(B * 32);
    // ReLU activations: non-negative, some zero, some not.
    expect(Math.min(...out)).toBe(0);
    expect(Math.max(...out)).toBeGreaterThan(0);
  });

  it('refuses an output the model does not have (MODEL_OUTPUT_NOT_FOUND, naming the ones it has) and an integer output (MODEL_UNSUPPORTED)', async () => {
    await expect(AdapterEngine.create(multiOutputMlp(), lora, rt, { output: 'logit' })).rejects.toMatchObject({
      code: 'MODEL_OUTPUT_NOT_FOUND',
      details: { field: 'output', output: 'logit', available: ['hidden', 'logits', 'predicted'] },
    });
    await expect(AdapterEngine.create(multiOutputMlp(), lora, rt, { output: 'predicted' })).rejects.toMatchObject({
      code: 'MODEL_UNSUPPORTED',
      message: expect.stringContaining("output 'predicted' is not float32"),
    });
  });
});
