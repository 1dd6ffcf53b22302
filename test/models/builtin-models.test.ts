/**
 * The built-in models run in onnxruntime-node and reproduce the manifest's numbers: held-out accuracy
 * on the fixed source-domain slice, and the drop on the shifted streams.
 */

import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  DIGIT_PIXELS,
  digitSamples,
  digitStream,
  loadBuiltinModels,
  mailStream,
  sourceMail,
  type BuiltinModel,
  type Tokenizer,
} from '../../src/data/index.js';

/** Within 0.5 points of the manifest. */
const TOLERANCE = 0.005;
const USERS = [0, 1, 2, 3, 4, 5, 6, 7];
/** The ops our gradient engine differentiates or passes through (issue 3). */
const SUPPORTED_OPS = new Set([
  'MatMul', 'Gemm', 'Add', 'Sub', 'Mul', 'Div', 'Relu', 'Erf', 'Softmax', 'LayerNormalization',
  'BatchNormalization', 'Conv', 'MaxPool', 'AveragePool', 'GlobalAveragePool', 'Reshape', 'Transpose',
  'Flatten', 'Gather', 'Concat', 'Slice', 'Unsqueeze', 'Squeeze', 'ReduceMean', 'Shape', 'Constant',
  // not differentiable, only on the padding-mask path of the text model
  'Equal', 'Not', 'Cast',
]);

const { models, problems } = loadBuiltinModels();
const byName = new Map(models.map((m) => [m.name, m]));
const sessions = new Map<string, ort.InferenceSession>();

beforeAll(async () => {
  for (const m of models) sessions.set(m.name, await ort.InferenceSession.create(m.bytes));
});
afterAll(async () => {
  for (const s of sessions.values()) await s.release();
});

function argmax(logits: Float32Array, classes: number): number[] {
  const n = logits.length / classes;
  return Array.from({ length: n }, (_, i) => {
    let best = 0;
    for (let c = 1; c < classes; c++) if (logits[i * classes + c]! > logits[i * classes + best]!) best = c;
    return best;
  });
}

async function digitAccuracy(model: BuiltinModel, images: Float32Array, labels: ArrayLike<number>): Promise<number> {
  const n = labels.length;
  const input = model.entry.inputs[0]!;
  const dims = input.shape.length === 4 ? [n, 1, 28, 28] : [n, DIGIT_PIXELS];
  const out = await sessions.get(model.name)!.run({ [input.name]: new ort.Tensor('float32', images, dims) });
  const pred = argmax(out[model.entry.output.name]!.data as Float32Array, 10);
  return pred.filter((p, i) => p === labels[i]).length / n;
}

async function mailLogits(model: BuiltinModel, texts: string[], padTo?: number): Promise<Float32Array> {
  const tok = model.tokenizer as Tokenizer;
  const parts: Float32Array[] = [];
  for (let s = 0; s < texts.length; s += 128) {
    const { ids, dims } = tok.encodeBatch(texts.slice(s, s + 128), padTo ? { padTo } : {});
    const out = await sessions.get(model.name)!.run({ [model.entry.inputs[0]!.name]: new ort.Tensor('int64', ids, dims) });
    parts.push(out[model.entry.output.name]!.data as Float32Array);
  }
  const all = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let k = 0;
  for (const p of parts) {
    all.set(p, k);
    k += p.length;
  }
  return all;
}

async function mailAccuracy(model: BuiltinModel, texts: string[], labels: number[]): Promise<number> {
  const pred = argmax(await mailLogits(model, texts), 2);
  return pred.filter((p, i) => p === labels[i]).length / labels.length;
}

describe('built-in models', () => {
  it('are all present and verified', () => {
    expect(problems).toEqual([]);
    expect([...byName.keys()]).toEqual(['digits-mlp', 'digits-cnn', 'mail-transformer']);
  });

  it('use only ops the gradient engine supports, with a dynamic batch axis', () => {
    for (const m of models) {
      for (const op of m.entry.opTypes ?? []) expect(SUPPORTED_OPS.has(op), `${m.name}: ${op}`).toBe(true);
      expect(m.entry.inputs[0]!.shape[0]).toBe('batch');
      expect(m.entry.output.shape[0]).toBe('batch');
    }
    expect(byName.get('digits-cnn')!.entry.opTypes).toEqual(expect.arrayContaining(['Conv', 'BatchNormalization', 'MaxPool']));
    expect(byName.get('mail-transformer')!.entry.opTypes).toEqual(
      expect.arrayContaining(['LayerNormalization', 'Softmax', 'Erf', 'MatMul', 'Gather', 'ReduceMean']),
    );
    expect(byName.get('mail-transformer')!.entry.inputs[0]).toEqual({ name: 'input_ids', dtype: 'int64', shape: ['batch', 'seq'] });
  });
});

describe.each(['digits-mlp', 'digits-cnn'])('%s', (name) => {
  const model = byName.get(name)!;
  const minimum = name === 'digits-mlp' ? 0.95 : 0.97;

  it(`reproduces the manifest's held-out accuracy (>= ${minimum * 100}%)`, async () => {
    const held = digitSamples('heldout');
    const acc = await digitAccuracy(model, held.images, held.labels);
    expect(held.count).toBe(model.entry.metrics.heldout.n);
    expect(Math.abs(acc - model.entry.metrics.heldout.accuracy!)).toBeLessThanOrEqual(TOLERANCE);
    expect(acc).toBeGreaterThanOrEqual(minimum);
  });

  it("drops on the users' styles by the manifest's margin", async () => {
    const held = digitSamples('heldout');
    const base = await digitAccuracy(model, held.images, held.labels);
    const perUser: number[] = [];
    for (const user of USERS) {
      const samples = [...digitStream({ user, seed: 0, split: 'heldout' })];
      const images = new Float32Array(samples.length * DIGIT_PIXELS);
      samples.forEach((s, i) => images.set(s.image, i * DIGIT_PIXELS));
      perUser.push(await digitAccuracy(model, images, samples.map((s) => s.label)));
    }
    const shifted = perUser.reduce((a, b) => a + b, 0) / perUser.length;
    const m = model.entry.metrics;
    expect(Math.abs(shifted - m.shifted!.accuracy!)).toBeLessThanOrEqual(TOLERANCE);
    expect(Math.abs(base - shifted - m.drop!)).toBeLessThanOrEqual(TOLERANCE);
    // a real shift: at least 10 points on average, and every user's style costs something
    expect(base - shifted).toBeGreaterThanOrEqual(0.1);
    for (const acc of perUser) expect(acc).toBeLessThan(base);
  });
});

describe('mail-transformer', () => {
  const model = byName.get('mail-transformer')!;

  it("reproduces the manifest's held-out accuracy (>= 95%)", async () => {
    const held = sourceMail('heldout');
    const acc = await mailAccuracy(model, held.map((m) => m.text), held.map((m) => m.label));
    expect(held.length).toBe(model.entry.metrics.heldout.n);
    expect(Math.abs(acc - model.entry.metrics.heldout.accuracy!)).toBeLessThanOrEqual(TOLERANCE);
    expect(acc).toBeGreaterThanOrEqual(0.95);
  });

  it("drops on the shifted mail stream by the manifest's margin", async () => {
    const held = sourceMail('heldout');
    const base = await mailAccuracy(model, held.map((m) => m.text), held.map((m) => m.label));
    const stream = [...mailStream({ seed: 0 })];
    const shifted = await mailAccuracy(model, stream.map((m) => m.text), stream.map((m) => m.label));
    const m = model.entry.metrics;
    expect(Math.abs(shifted - m.shifted!.accuracy!)).toBeLessThanOrEqual(TOLERANCE);
    expect(Math.abs(base - shifted - m.drop!)).toBeLessThanOrEqual(TOLERANCE);
    expect(base - shifted).toBeGreaterThanOrEqual(0.03);
  });

  it('gives the same output whatever the padding', async () => {
    const texts = sourceMail('heldout').slice(0, 16).map((m) => m.text);
    const longest = await mailLogits(model, texts);
    const full = await mailLogits(model, texts, 128);
    const alone = await mailLogits(model, texts.slice(3, 4));
    for (let i = 0; i < longest.length; i++) expect(full[i]).toBeCloseTo(longest[i]!, 4);
    expect(alone[0]).toBeCloseTo(longest[6]!, 4);
    expect(alone[1]).toBeCloseTo(longest[7]!, 4);
  });
});
