/**
 * The downloads in the browser's runtime: onnxruntime-web, in its WebAssembly build (the one a browser
 * runs; Node loads the same .wasm), opens the inference bundle and the merged ONNX of an adapter on
 * the exporter-made fixtures and gives the adapted forward pass of onnxruntime-node. The bundle is fed
 * exactly as inputs.json lists it: the data inputs, then every adapter tensor of adapter.safetensors.
 */
import * as ortWeb from 'onnxruntime-web';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { AdapterEngine, exportInferenceBundle, exportMergedOnnx, readInferenceBundle, type ExportSubject } from '../../src/lora/index.js';
import { OnnxRuntime, sha256, type Tensor } from '../../src/onnx/index.js';
import { fixtureBytes, fixtureModel, golden, relErr, seeded } from '../fixtures.js';

const rt = new OnnxRuntime();
afterAll(() => rt.close());
beforeAll(() => {
  // One WebAssembly thread: no worker threads in the test process.
  ortWeb.env.wasm.numThreads = 1;
});

function webTensor(t: Tensor): ortWeb.Tensor {
  const dims = [...t.dims];
  if (t.data instanceof BigInt64Array) return new ortWeb.Tensor('int64', t.data, dims);
  if (t.data instanceof Float32Array) return new ortWeb.Tensor('float32', t.data, dims);
  throw new Error(`unexpected input type ${t.data.constructor.name}`);
}

async function runWeb(model: Uint8Array, feeds: Record<string, ortWeb.Tensor>): Promise<{ inputs: readonly string[]; output: Float32Array }> {
  const session = await ortWeb.InferenceSession.create(model, { executionProviders: ['wasm'] });
  try {
    const out = await session.run(feeds);
    return { inputs: session.inputNames, output: out[session.outputNames[0]!]!.data as Float32Array };
  } finally {
    await session.release();
  }
}

describe.each(['mlp.opset17', 'cnn_bn.opset14', 'transformer.opset17'])('an adapter on %s in onnxruntime-web (wasm)', (stem) => {
  const g = golden(stem);
  const model = fixtureModel(stem);
  const lora = { targets: g.targets, rank: g.rank, alpha: g.alpha };
  let engine: AdapterEngine;
  let subject: ExportSubject;
  let want: Float32Array;

  beforeAll(async () => {
    engine = await AdapterEngine.create(model, lora, rt);
    // Random A and B (B ≠ 0, so the adapter changes the output).
    const rand = seeded(21);
    const theta = Float64Array.from({ length: engine.layout.n }, () => (rand() - 0.5) * 0.5);
    subject = { modelName: stem, modelSha256: sha256(fixtureBytes(stem)), lora, sites: engine.sites, theta, optimizer: 'loko', step: 3 };
    want = await engine.forward(theta, g.inputs);
    const base = await engine.forward(new Float64Array(engine.layout.n), g.inputs);
    expect(relErr(want, base)).toBeGreaterThan(1e-2);
  });

  it('inference bundle: data inputs plus the adapter tensors give the adapted forward pass', async () => {
    const bundle = readInferenceBundle(exportInferenceBundle(model, subject));
    const listing = bundle.inputs as { data: string[]; adapter: { name: string; shape: number[] }[] };
    const feeds: Record<string, ortWeb.Tensor> = {};
    for (const name of listing.data) feeds[name] = webTensor(g.inputs[name]!);
    for (const { name, shape } of listing.adapter) {
      const t = bundle.tensors[name]!;
      expect(t.shape).toEqual(shape);
      feeds[name] = new ortWeb.Tensor('float32', t.data as Float32Array, shape);
    }
    const { inputs, output } = await runWeb(bundle.model, feeds);
    expect([...inputs].sort()).toEqual(Object.keys(feeds).sort());
    expect(relErr(output, want)).toBeLessThan(1e-5);
  });

  it('merged ONNX: no adapter inputs, the adapted forward pass', async () => {
    const feeds: Record<string, ortWeb.Tensor> = {};
    for (const [name, t] of Object.entries(g.inputs)) feeds[name] = webTensor(t);
    const { inputs, output } = await runWeb(exportMergedOnnx(model, subject), feeds);
    expect([...inputs]).toEqual(Object.keys(g.inputs));
    expect(relErr(output, want)).toBeLessThan(1e-5);
  });
});
