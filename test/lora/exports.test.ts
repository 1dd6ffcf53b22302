import { afterAll, describe, expect, it } from 'vitest';
import { encodeModel, injectLora, OnnxRuntime, sha256, type Tensor } from '../../src/onnx/index.js';
import {
  AdapterEngine, decodeSafetensors, encodeSafetensors, exportInferenceBundle, exportMergedOnnx, exportPeft, exportState,
  importState, initTheta, matricesToTheta, readInferenceBundle, readPeft, thetaLayout, thetaToMatrices, type ExportSubject,
} from '../../src/lora/index.js';
import { deserializeState, initState, serializeState } from '../../src/kalman/index.js';
import { fixtureBytes, fixtureModel, golden, relErr, seeded, TIED_INPUTS, tiedWeightModel } from '../fixtures.js';

const rt = new OnnxRuntime();
afterAll(() => rt.close());

describe('θ layout and initialisation', () => {
  const sites = [{ module: 'a', rank: 2, in: 3, out: 4 }, { module: 'b', rank: 2, in: 4, out: 1 }];
  it('lays out every A then B, row-major, in site order', () => {
    expect(thetaLayout(sites)).toEqual({
      n: 6 + 8 + 8 + 2,
      blocks: [
        { name: 'a.lora_A', module: 'a', matrix: 'A', rows: 2, cols: 3, offset: 0 },
        { name: 'a.lora_B', module: 'a', matrix: 'B', rows: 4, cols: 2, offset: 6 },
        { name: 'b.lora_A', module: 'b', matrix: 'A', rows: 2, cols: 4, offset: 14 },
        { name: 'b.lora_B', module: 'b', matrix: 'B', rows: 1, cols: 2, offset: 22 },
      ],
    });
  });
  it('draws A in ±1/√in (PEFT Kaiming-uniform), B = 0, reproducibly from the seed', () => {
    const t = initTheta(sites, 42);
    expect(Array.from(initTheta(sites, 42))).toEqual(Array.from(t));
    expect(Array.from(initTheta(sites, 43))).not.toEqual(Array.from(t));
    const m = thetaToMatrices(sites, t);
    expect(m.a!.A.every((v) => Math.abs(v) <= 1 / Math.sqrt(3) && v !== 0)).toBe(true);
    expect(m.a!.B.every((v) => v === 0)).toBe(true);
    expect(Array.from(matricesToTheta(sites, m))).toEqual(Array.from(t));
    expect(() => initTheta(sites, -1)).toThrow(RangeError);
  });
});

describe('safetensors', () => {
  it('round-trips tensors and metadata', () => {
    const bytes = encodeSafetensors({ w: { dtype: 'F32', shape: [2, 2], data: Float32Array.of(1, 2, 3, 4) }, c: { dtype: 'I32', shape: [1], data: Int32Array.of(7) } }, { k: 'v' });
    const back = decodeSafetensors(bytes);
    expect(back.metadata).toEqual({ k: 'v' });
    expect(Array.from(back.tensors.w!.data as Float32Array)).toEqual([1, 2, 3, 4]);
    expect(back.tensors.c).toMatchObject({ dtype: 'I32', shape: [1] });
    const hlen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect((8 + hlen) % 8).toBe(0);
  });
  it('refuses truncated or inconsistent files', () => {
    const bytes = encodeSafetensors({ w: { dtype: 'F32', shape: [4], data: new Float32Array(4) } });
    expect(() => decodeSafetensors(bytes.subarray(0, bytes.length - 1))).toThrow(expect.objectContaining({ code: 'INVALID_INPUT' }));
    expect(() => decodeSafetensors(new Uint8Array(4))).toThrow(expect.objectContaining({ code: 'INVALID_INPUT' }));
  });
});

describe('exports of an adapter on the transformer fixture', async () => {
  const stem = 'transformer.opset17';
  const g = golden(stem);
  const model = fixtureModel(stem);
  const lora = { targets: g.targets, rank: g.rank, alpha: g.alpha };
  const { sites } = injectLora(model, lora);
  const shapes = sites.map((s) => ({ module: s.module, rank: s.rank, in: s.in, out: s.out }));
  const theta = matricesToTheta(shapes, g.lora);
  const subject: ExportSubject = { modelName: 'transformer', modelSha256: sha256(fixtureBytes(stem)), lora, sites: shapes, theta, optimizer: 'loko', step: 12 };

  it('PEFT zip: adapter_config.json fields, safetensors naming, shapes and metadata', () => {
    const { config, tensors, metadata } = readPeft(exportPeft(subject));
    expect(config).toMatchObject({ peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: g.targets, use_rslora: false, base_model_name_or_path: 'transformer' });
    expect(metadata).toMatchObject({ base_model_sha256: subject.modelSha256, optimizer: 'loko', step: '12', format: 'pt' });
    expect(Object.keys(tensors).sort()).toEqual(g.targets.flatMap((t) => [`base_model.model.${t}.lora_A.weight`, `base_model.model.${t}.lora_B.weight`]).sort());
    const q = tensors['base_model.model.layers.0.attn.q.lora_A.weight']!;
    expect(q).toMatchObject({ dtype: 'F32', shape: [2, 32] });
    expect(Array.from(q.data as Float32Array)).toEqual(Array.from(g.lora['layers.0.attn.q']!.A));
    expect(tensors['base_model.model.classifier.lora_B.weight']!.shape).toEqual([3, 2]);
    expect(Buffer.from(exportPeft(subject)).equals(Buffer.from(exportPeft(subject)))).toBe(true);
  });

  it('merged ONNX runs with no adapter inputs and matches the adapted forward pass', async () => {
    const merged = exportMergedOnnx(model, subject);
    const s = await rt.open(merged);
    expect(s.inputNames).toEqual(['ids']);
    const out = await s.run(g.inputs);
    const engine = await AdapterEngine.create(model, lora, rt);
    const fwd = await engine.forward(theta, g.inputs);
    expect(relErr(out.logits!.data as Float32Array, fwd)).toBeLessThan(1e-4);
    expect(relErr(fwd, g.expected.logits)).toBeLessThan(1e-4);
    await s.release();
  });

  it('inference bundle: a graph with adapter inputs and the tensors that feed it', async () => {
    const bundle = readInferenceBundle(exportInferenceBundle(model, subject));
    const s = await rt.open(bundle.model);
    expect(s.inputNames).toEqual(['ids', ...sites.flatMap((x) => [x.aInput, x.bInput])]);
    expect(bundle.inputs).toMatchObject({ data: ['ids'], outputs: ['logits'] });
    const feeds: Record<string, Tensor> = { ...g.inputs };
    for (const [name, t] of Object.entries(bundle.tensors)) feeds[name] = { data: t.data as Float32Array, dims: t.shape };
    const out = await s.run(feeds);
    expect(relErr(out.logits!.data as Float32Array, g.expected.logits)).toBeLessThan(1e-4);
    // Another adapter is just other tensors: B = 0 gives the base model.
    for (const site of sites) feeds[site.bInput] = { data: new Float32Array(site.out * site.rank), dims: [site.out, site.rank] };
    const base = await s.run(feeds);
    expect(relErr(base.logits!.data as Float32Array, g.expected.logitsBase)).toBeLessThan(1e-4);
    await s.release();
  });

  it('state safetensors round-trip bit for bit', () => {
    const state = initState({ type: 'loko' }, { n: theta.length, blocks: thetaLayout(shapes).blocks }, theta, 5);
    const bytes = exportState(serializeState(state), { model_sha256: subject.modelSha256 });
    const back = importState(bytes);
    expect(back.meta.model_sha256).toBe(subject.modelSha256);
    const restored = deserializeState(back);
    expect(Buffer.from(exportState(serializeState(restored), { model_sha256: subject.modelSha256 })).equals(Buffer.from(bytes))).toBe(true);
    expect(Array.from(restored.theta)).toEqual(Array.from(state.theta));
  });
});

describe('merged ONNX on every fixture matches the injected graph', () => {
  it.each(['mlp.opset14', 'cnn.opset17', 'cnn_bn.opset14'])('%s', async (stem) => {
    const g = golden(stem);
    const model = fixtureModel(stem);
    const lora = { targets: 'all' as const, rank: 3, alpha: 2 };
    const engine = await AdapterEngine.create(model, lora, rt);
    const rand = seeded(3);
    const theta = Float64Array.from({ length: engine.layout.n }, () => (rand() - 0.5) * 0.4);
    const merged = await rt.open(exportMergedOnnx(model, { modelName: stem, modelSha256: '', lora, sites: engine.sites, theta, optimizer: 'sgd', step: 0 }));
    const out = await merged.run(g.inputs);
    expect(relErr(out.logits!.data as Float32Array, await engine.forward(theta, g.inputs))).toBeLessThan(1e-5);
    await merged.release();
    expect(encodeModel(model).length).toBeGreaterThan(0);
  });
});

describe('merged ONNX where a weight is read by more than the adapted product', () => {
  it.each([
    ['two targets share one weight (each its own adapter)', 'tiedTargets'],
    ['a target shares its weight with a Gather that is not one (tied embedding and head)', 'sharedWithGather'],
  ] as const)('%s: the target gets its own merged copy, the other readers keep the base weight', async (_what, kind) => {
    const model = tiedWeightModel(kind);
    const inputs = TIED_INPUTS[kind];
    const lora = { targets: 'all' as const, rank: 2, alpha: 4 };
    const engine = await AdapterEngine.create(model, lora, rt);
    const rand = seeded(5);
    const theta = Float64Array.from({ length: engine.layout.n }, () => (rand() - 0.5) * 0.6);
    const subject = { modelName: kind, modelSha256: '', lora, sites: engine.sites, theta, optimizer: 'sgd', step: 0 };
    const merged = await rt.open(exportMergedOnnx(model, subject));
    const out = await merged.run(inputs);
    const want = await engine.forward(theta, inputs);
    const base = await engine.forward(new Float64Array(engine.layout.n), inputs);
    expect(relErr(want, base)).toBeGreaterThan(1e-2);
    expect(relErr(out.logits!.data as Float32Array, want)).toBeLessThan(1e-5);
    await merged.release();
  });
});
