/**
 * The built-in models are differentiable by src/onnx: on each one, the per-sample LoRA gradients from
 * the training graph match central finite differences of the loss computed from the adapted model's
 * plain forward pass (an independent path: no gradient graph involved), and the per-sample softmax
 * Jacobians match finite differences of the probabilities.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { digitStream, loadBuiltinModels, mailStream } from '../../src/data/index.js';
import { decodeModel, OnnxRuntime, type Tensor } from '../../src/onnx/index.js';
import { AdapterEngine, softmaxRows } from '../../src/lora/index.js';
import { seeded } from '../fixtures.js';

const rt = new OnnxRuntime();
afterAll(() => rt.close());
const { models } = loadBuiltinModels();

function batchFor(name: string): { inputs: Record<string, Tensor>; labels: number[] } {
  const m = models.find((x) => x.name === name)!;
  const input = m.entry.inputs[0]!;
  if (m.tokenizer) {
    const mails = [...mailStream({ seed: 3 })].slice(0, 2);
    const enc = m.tokenizer.encodeBatch(mails.map((x) => x.text));
    return { inputs: { [input.name]: { data: enc.ids, dims: enc.dims } }, labels: mails.map((x) => x.label) };
  }
  const s = [...digitStream({ user: 4, seed: 2 })].slice(0, 2);
  const data = new Float32Array(2 * 784);
  s.forEach((x, i) => data.set(x.image, i * 784));
  return { inputs: { [input.name]: { data, dims: input.shape.length === 4 ? [2, 1, 28, 28] : [2, 784] } }, labels: s.map((x) => x.label) };
}

describe.each(['digits-mlp', 'digits-cnn', 'mail-transformer'])('%s', (name) => {
  it('per-sample gradients and Jacobians match finite differences of the forward pass', async () => {
    const model = decodeModel(models.find((x) => x.name === name)!.bytes);
    const engine = await AdapterEngine.create(model, { targets: 'all', rank: 2, alpha: 2 }, rt);
    const rand = seeded(11);
    const theta = Float64Array.from({ length: engine.layout.n }, () => (rand() - 0.5) * 0.2);
    const { inputs, labels } = batchFor(name);
    const grads = await engine.gradients(theta, inputs, labels);
    const jac = await engine.jacobians(theta, inputs);
    const m = engine.m;
    const lossesAndProbs = async (t: Float64Array) => {
      const out = await engine.forward(t, inputs);
      const p = softmaxRows(out, m);
      return { loss: labels.map((y, b) => -Math.log(p[b * m + y]!)), p };
    };
    const eps = 1e-2;
    for (let k = 0; k < 3; k++) {
      const dir = Float64Array.from({ length: theta.length }, () => rand() - 0.5);
      const plus = await lossesAndProbs(theta.map((v, i) => v + eps * dir[i]!));
      const minus = await lossesAndProbs(theta.map((v, i) => v - eps * dir[i]!));
      for (let b = 0; b < labels.length; b++) {
        const fd = (plus.loss[b]! - minus.loss[b]!) / (2 * eps);
        let an = 0;
        for (let i = 0; i < theta.length; i++) an += grads.grads[b]![i]! * dir[i]!;
        expect(Math.abs(an - fd), `loss gradient, sample ${b}, direction ${k}`).toBeLessThan(2e-2 * Math.max(Math.abs(fd), 1e-2));
        for (let c = 0; c < m; c++) {
          const fdp = (plus.p[b * m + c]! - minus.p[b * m + c]!) / (2 * eps);
          let anp = 0;
          const H = jac.H[b]!;
          for (let i = 0; i < theta.length; i++) anp += H[c * theta.length + i]! * dir[i]!;
          expect(Math.abs(anp - fdp), `Jacobian row ${c}, sample ${b}`).toBeLessThan(2e-2 * Math.max(Math.abs(fdp), 1e-2) + 1e-5);
        }
      }
    }
  });
});
