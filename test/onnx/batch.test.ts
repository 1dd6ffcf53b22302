/**
 * Fixed-batch models (src/onnx/batch.ts): the exporter fixtures with their batch axis fixed are made
 * symbolic and then train like the originals; graphs that build the size in, or mix samples, are not.
 */
import { afterAll, describe, expect, it } from 'vitest';

import { AdapterEngine } from '../../src/lora/index.js';
import { fixedBatchSize, int64Tensor, OnnxRuntime, relaxBatch, relaxFixedBatch, type ModelProto, type NodeProto, type Tensor, type TensorProto } from '../../src/onnx/index.js';
import type { ValueInfoProto } from '../../src/onnx/proto.js';
import { FIXTURE_FILES, fixtureModel, float16InputMlp, randomArray, seeded, valueInfo } from '../fixtures.js';

const rt = new OnnxRuntime();
afterAll(() => rt.close());

/** The model with every input's and output's leading dim fixed at k, as an export without dynamic_axes has it. */
function fixed(model: ModelProto, k: number): ModelProto {
  for (const v of [...model.graph!.input!, ...model.graph!.output!]) v.type!.tensorType!.shape!.dim![0] = { dimValue: k };
  return model;
}

/** The mlp fixture (logits [batch, 5]) with nodes after its logits that make the new output `out`. */
function mlpWithTail(nodes: NodeProto[], out: ValueInfoProto, inits: TensorProto[] = []): ModelProto {
  const m = fixtureModel('mlp.opset17');
  m.graph!.node!.push(...nodes);
  m.graph!.initializer!.push(...inits);
  m.graph!.output = [out];
  return m;
}

describe('fixed-batch models', () => {
  it('finds the fixed size, and none on a dynamic model', () => {
    expect(fixedBatchSize(fixtureModel('mlp.opset17'))).toBeNull();
    expect(fixedBatchSize(fixed(fixtureModel('mlp.opset17'), 1))).toBe(1);
    expect(fixedBatchSize(fixed(fixtureModel('cnn.opset14'), 4))).toBe(4);
  });

  it.each(FIXTURE_FILES)('relaxes %s exported at batch 1: a symbolic batch axis, and the same outputs', async (stem) => {
    const res = await relaxFixedBatch(fixed(fixtureModel(stem), 1), 1, rt);
    expect('model' in res, 'reason' in res ? res.reason : '').toBe(true);
    const m = (res as { model: ModelProto }).model;
    for (const v of [...m.graph!.input!.filter((i) => !m.graph!.initializer!.some((t) => t.name === i.name)), ...m.graph!.output!]) {
      expect(v.type!.tensorType!.shape!.dim![0]).toEqual({ dimParam: 'batch' });
    }
  });

  it('trains a relaxed model exactly as the dynamic export: same per-sample gradients at batch 6', async () => {
    const res = await relaxFixedBatch(fixed(fixtureModel('mlp.opset17'), 1), 1, rt);
    const lora = { targets: 'all' as const, rank: 2, alpha: 4 };
    const a = await AdapterEngine.create((res as { model: ModelProto }).model, lora, rt);
    const b = await AdapterEngine.create(fixtureModel('mlp.opset17'), lora, rt);
    const theta = randomArray(a.layout.n, seeded(2), 0.3);
    const inputs: Record<string, Tensor> = { x: { data: randomArray(6 * 20, seeded(4)), dims: [6, 20] } };
    const ga = await a.gradients(theta, inputs, [0, 1, 2, 3, 4, 0]);
    const gb = await b.gradients(theta, inputs, [0, 1, 2, 3, 4, 0]);
    for (let s = 0; s < 6; s++) expect(Array.from(ga.grads[s]!)).toEqual(Array.from(gb.grads[s]!));
  });

  it('relaxes a model fixed at batch 2 (checked on 4 samples against two runs of 2)', async () => {
    const res = await relaxFixedBatch(fixed(fixtureModel('mlp.opset17'), 2), 2, rt);
    expect('model' in res).toBe(true);
  });

  it('keeps a model that builds the batch size into a Reshape, saying why', async () => {
    // logits [1, 5] → Reshape to [1, -1]: on 2 samples it makes one row of 10.
    const m = fixed(mlpWithTail([{ opType: 'Reshape', name: '/flat/Reshape', input: ['logits', 'shape'], output: ['flat'] }], valueInfo('flat', 1, [1, 5]), [int64Tensor('shape', [2], [1, -1])]), 1);
    const res = await relaxFixedBatch(m, 1, rt);
    expect(res).toEqual({ reason: "on 2 samples its output 'flat' has 1 rows: the batch size is built into the graph" });
    // x → Reshape to [1, 20] first: on 2 samples onnxruntime refuses to run it.
    const first = fixtureModel('mlp.opset17');
    const gemm = first.graph!.node!.find((n) => n.opType === 'Gemm')!;
    gemm.input![0] = 'x1';
    first.graph!.node!.unshift({ opType: 'Reshape', name: '/in/Reshape', input: ['x', 'shape'], output: ['x1'] });
    first.graph!.initializer!.push(int64Tensor('shape', [2], [1, 20]));
    const res2 = await relaxFixedBatch(fixed(first, 1), 1, rt);
    expect('reason' in res2 && res2.reason).toMatch(/^with a symbolic batch axis it does not run on 2 samples: /);
  });

  it('keeps a model that mixes samples (its logits minus their mean over the batch)', async () => {
    const m = fixed(mlpWithTail([
      { opType: 'ReduceMean', name: '/center/ReduceMean', input: ['logits'], output: ['mean'], attribute: [{ name: 'axes', type: 7, ints: [0] }, { name: 'keepdims', type: 2, i: 1 }] },
      { opType: 'Sub', name: '/center/Sub', input: ['logits', 'mean'], output: ['centered'] },
    ], valueInfo('centered', 1, [1, 5])), 1);
    const res = await relaxFixedBatch(m, 1, rt);
    expect(res).toEqual({ reason: "on 2 samples its output 'centered' differs from running them 1 at a time: the samples are not computed independently" });
  });

  it('keeps, without throwing, a model whose input it cannot feed (a float16 x)', async () => {
    expect(await relaxFixedBatch(fixed(float16InputMlp(), 1), 1, rt)).toEqual({ reason: "input 'x' has ONNX type 10, which the batch check cannot feed" });
  });

  it('refuses to relax when an output does not lead with the fixed size (relaxBatch: MODEL_UNSUPPORTED)', async () => {
    const m = fixed(fixtureModel('mlp.opset17'), 1);
    m.graph!.output![0]!.type!.tensorType!.shape!.dim![0] = { dimValue: 3 };
    expect(() => relaxBatch(m, 1)).toThrow(expect.objectContaining({ code: 'MODEL_UNSUPPORTED' }));
    expect(await relaxFixedBatch(m, 1, rt)).toEqual({ reason: "output 'logits' does not lead with the fixed batch size 1 of the first input (its leading dim: 3)" });
  });
});
