import { afterAll, describe, expect, it } from 'vitest';
import { injectLora, listTargets, OnnxRuntime, encodeModel, type ModelProto, type Tensor, probeFeeds } from '../../src/onnx/index.js';
import { mergeAdapters } from '../../src/lora/index.js';
import { DT, f, floatTensor, valueToTensor } from '../../src/onnx/proto.js';
import { FIXTURE_FILES, fixtureModel, golden, randomArray, relErr, seeded, valueInfo } from '../fixtures.js';
import { buildModel } from './gradients/harness.js';

const rt = new OnnxRuntime();
afterAll(() => rt.close());

async function run(model: ModelProto, feeds: Record<string, Tensor>): Promise<Float32Array> {
  const s = await rt.open(encodeModel(model));
  const out = await s.run(feeds);
  await s.release();
  return out[s.outputNames[0]!]!.data as Float32Array;
}

describe('listTargets', () => {
  it('names modules from the exporter scopes, in graph order, with PEFT shapes', () => {
    for (const stem of FIXTURE_FILES) {
      const t = listTargets(fixtureModel(stem));
      expect(t.map((x) => x.module)).toEqual(golden(stem).targets);
    }
    const mlp = listTargets(fixtureModel('mlp.opset17'));
    expect(mlp.map((t) => [t.module, t.in, t.out, t.opType])).toEqual([
      ['fc1', 20, 32, 'Gemm'], ['fc2', 32, 32, 'Gemm'], ['head', 32, 5, 'Gemm'],
    ]);
    const tr = listTargets(fixtureModel('transformer.opset14'));
    expect(tr.find((t) => t.module === 'layers.0.ffn.fc1')).toMatchObject({ in: 32, out: 64, opType: 'MatMul', form: 'right' });
  });

  it('falls back to the weight name, then the node name', () => {
    const model = buildModel({
      opset: 17,
      inputs: [{ name: 'x', shape: ['N', 3] }],
      initializers: [floatTensor('l1.weight', [3, 2], [1, 2, 3, 4, 5, 6]), floatTensor('w_raw', [2, 2], [1, 0, 0, 1])],
      nodes: [
        { op: 'MatMul', inputs: ['x', 'l1.weight'], outputs: ['h'], name: 'MatMul_0' },
        { op: 'MatMul', inputs: ['h', 'w_raw'], outputs: ['y'], name: 'proj' },
      ],
      outputs: ['y'],
    });
    expect(listTargets(model).map((t) => t.module)).toEqual(['l1', 'proj']);
  });
});

describe('injection', () => {
  it.each(FIXTURE_FILES)('%s: with B = 0 the injected graph reproduces the base output exactly', async (stem) => {
    const g = golden(stem);
    const base = fixtureModel(stem);
    const { model, sites } = injectLora(base, { targets: 'all', rank: 3, alpha: 6 });
    const rand = seeded(1);
    const feeds: Record<string, Tensor> = { ...g.inputs };
    for (const s of sites) {
      feeds[s.aInput] = { data: randomArray(s.rank * s.in, rand), dims: [s.rank, s.in] };
      feeds[s.bInput] = { data: new Float32Array(s.out * s.rank), dims: [s.out, s.rank] };
    }
    const want = await run(base, g.inputs);
    const got = await run(model, feeds);
    expect(Array.from(got)).toEqual(Array.from(want));
    expect(relErr(want, g.expected.logitsBase)).toBeLessThan(1e-5);
  });

  it.each(FIXTURE_FILES)('%s: with random A and B it equals the model merged in TypeScript, and the golden LoRA logits', async (stem) => {
    const g = golden(stem);
    const base = fixtureModel(stem);
    const { model, sites } = injectLora(base, { targets: g.targets, rank: g.rank, alpha: g.alpha });
    const feeds: Record<string, Tensor> = { ...g.inputs };
    for (const s of sites) {
      feeds[s.aInput] = { data: g.lora[s.module]!.A, dims: [s.rank, s.in] };
      feeds[s.bInput] = { data: g.lora[s.module]!.B, dims: [s.out, s.rank] };
    }
    const injected = await run(model, feeds);
    const merged = await run(mergeAdapters(base, sites, g.lora), g.inputs);
    expect(relErr(injected, merged)).toBeLessThan(1e-5);
    expect(relErr(injected, g.expected.logits)).toBeLessThan(1e-5);
  });

  // Every weight layout: MatMul with the weight on either side, Gemm with each transA/transB and
  // alpha ≠ 1, weights as initializers or Constant nodes. Reference: y = base + s·(x·Aᵀ)·Bᵀ in plain TS.
  const layouts = [
    { name: 'MatMul x·W (initializer)', op: 'MatMul', weightSide: 1, tA: 0, tB: 0, constant: false },
    { name: 'MatMul x·W (Constant node)', op: 'MatMul', weightSide: 1, tA: 0, tB: 0, constant: true },
    { name: 'MatMul W·x', op: 'MatMul', weightSide: 0, tA: 0, tB: 0, constant: false },
    ...[0, 1].flatMap((tA) => [0, 1].flatMap((tB) => [1, 0].map((side) => ({ name: `Gemm transA=${tA} transB=${tB} weight=${side === 1 ? 'B' : 'A'}`, op: 'Gemm', weightSide: side, tA, tB, constant: side === 0 })))),
  ];
  it.each(layouts)('$name: injected = reference = merged', async (L) => {
    const nIn = 5, nOut = 4, rows = 3, r = 2, alpha = 3, gemmAlpha = 0.5;
    const rand = seeded(7);
    const Wpeft = randomArray(nOut * nIn, rand); // [out, in]
    // The stored weight in the layout this op expects.
    const right = L.weightSide === 1;
    const storedOutIn = L.op === 'MatMul' ? !right : right ? L.tB === 1 : L.tA === 0;
    const stored = new Float32Array(nOut * nIn);
    for (let o = 0; o < nOut; o++) for (let i = 0; i < nIn; i++) stored[storedOutIn ? o * nIn + i : i * nOut + o] = Wpeft[o * nIn + i]!;
    const wDims = storedOutIn ? [nOut, nIn] : [nIn, nOut];
    // The activation: right form multiplies x [rows, in]; left form multiplies x [in, rows].
    const xRows = randomArray(rows * nIn, rand);
    const dataTransposed = right ? L.op === 'Gemm' && L.tA === 1 : !(L.op === 'Gemm' && L.tB === 1);
    const xData = new Float32Array(rows * nIn);
    for (let q = 0; q < rows; q++) for (let i = 0; i < nIn; i++) xData[dataTransposed ? i * rows + q : q * nIn + i] = xRows[q * nIn + i]!;
    const xDims = dataTransposed ? [nIn, rows] : [rows, nIn];
    const inputs = L.weightSide === 1 ? ['x', 'W'] : ['W', 'x'];
    const nodes = [];
    if (L.constant) nodes.push({ op: 'Constant', inputs: [], outputs: ['W'], attrs: { value: floatTensor('W', wDims, stored) } });
    const attrs = L.op === 'Gemm' ? { transA: L.tA, transB: L.tB, alpha: f(gemmAlpha) } : {};
    nodes.push({ op: L.op, inputs, outputs: ['y'], name: '/lin/Op', attrs });
    const model = buildModel({
      opset: 17, inputs: [{ name: 'x', shape: xDims }], nodes, outputs: ['y'],
      initializers: L.constant ? [] : [floatTensor('W', wDims, stored)],
    });
    const [t] = listTargets(model);
    expect(t).toMatchObject({ module: 'lin', in: nIn, out: nOut, weightHolder: L.constant ? 'constant' : 'initializer' });
    const { model: injected, sites } = injectLora(model, { targets: ['lin'], rank: r, alpha });
    const A = randomArray(r * nIn, rand);
    const B = randomArray(nOut * r, rand);
    const got = await run(injected, { x: { data: xData, dims: xDims }, 'lin.lora_A': { data: A, dims: [r, nIn] }, 'lin.lora_B': { data: B, dims: [nOut, r] } });
    // Reference in the PEFT meaning: per activation row q, y_q = k·W x_q + s·B·A·x_q (k = Gemm alpha).
    const k = L.op === 'Gemm' ? gemmAlpha : 1;
    const s = alpha / r;
    const ref = new Float32Array(rows * nOut);
    for (let q = 0; q < rows; q++) for (let o = 0; o < nOut; o++) {
      let acc = 0;
      for (let i = 0; i < nIn; i++) {
        let ba = 0;
        for (let j = 0; j < r; j++) ba += B[o * r + j]! * A[j * nIn + i]!;
        acc += (k * Wpeft[o * nIn + i]! + s * ba) * xRows[q * nIn + i]!;
      }
      ref[right ? q * nOut + o : o * rows + q] = acc;
    }
    expect(relErr(got, ref)).toBeLessThan(1e-5);
    const merged = await run(mergeAdapters(model, sites, { lin: { A, B } }), { x: { data: xData, dims: xDims } });
    expect(relErr(merged, ref)).toBeLessThan(1e-5);
  });
});

describe('configuration errors', () => {
  const model = fixtureModel('mlp.opset17');
  it('a target name that matches nothing', () => {
    expect(() => injectLora(model, { targets: ['nope'], rank: 2 })).toThrow(expect.objectContaining({ code: 'LORA_TARGET_NOT_FOUND', details: expect.objectContaining({ available: ['fc1', 'fc2', 'head'] }) }));
    expect(() => injectLora(model, { targets: { regex: 'enc\\..*' }, rank: 2 })).toThrow(expect.objectContaining({ code: 'LORA_TARGET_NOT_FOUND' }));
  });
  it('a model with no float32 weight: `all` finds nothing, and the error says which weight types it has', () => {
    const fp16: ModelProto = {
      irVersion: 9, opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'fp16', input: [valueInfo('x', DT.FLOAT16, ['N', 4])], output: [valueInfo('y', DT.FLOAT16, ['N', 3])],
        initializer: [valueToTensor('W', DT.FLOAT16, [4, 3], new Uint8Array(24))],
        node: [{ opType: 'MatMul', name: 'mm', input: ['x', 'W'], output: ['y'] }],
      },
    };
    expect(listTargets(fp16)).toEqual([]);
    expect(() => injectLora(fp16, { targets: 'all', rank: 2 })).toThrow(expect.objectContaining({
      code: 'LORA_TARGET_NOT_FOUND', message: expect.stringContaining('float16'), details: { available: [], weightTypes: ['float16'] },
    }));
    const none = buildModel({ opset: 17, inputs: [{ name: 'x', shape: ['N', 4] }], nodes: [{ op: 'Relu', inputs: ['x'], outputs: ['y'] }], outputs: ['y'] });
    expect(() => injectLora(none, { targets: 'all', rank: 2 })).toThrow(expect.objectContaining({ code: 'LORA_TARGET_NOT_FOUND', details: { available: [] } }));
  });
  it('bytes or a model without a graph instead of a decoded model', () => {
    expect(() => injectLora(new Uint8Array(8) as unknown as typeof model, { targets: 'all', rank: 2 })).toThrow(expect.objectContaining({ code: 'MODEL_FORMAT', message: expect.stringContaining('decodeModel') }));
    expect(() => listTargets({ irVersion: 8 })).toThrow(expect.objectContaining({ code: 'MODEL_FORMAT' }));
  });
  it.each([0, -1, 1.5, Number.NaN])('rank %s', (rank) => {
    expect(() => injectLora(model, { targets: ['fc1'], rank })).toThrow(expect.objectContaining({ code: 'LORA_INVALID_RANK' }));
  });
  it('a bad regex, an empty target list, a bad alpha', () => {
    expect(() => injectLora(model, { targets: { regex: '(' }, rank: 2 })).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG' }));
    expect(() => injectLora(model, { targets: [], rank: 2 })).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG' }));
    expect(() => injectLora(model, { targets: ['fc1'], rank: 2, alpha: -1 })).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG' }));
  });
  it('suffix and regex matching select like PEFT', () => {
    const tr = fixtureModel('transformer.opset17');
    expect(injectLora(tr, { targets: ['q', 'v'], rank: 1 }).sites.map((s) => s.module)).toEqual(['layers.0.attn.q', 'layers.0.attn.v', 'layers.1.attn.q', 'layers.1.attn.v']);
    expect(injectLora(tr, { targets: { regex: 'layers\\.1\\.ffn\\..*' }, rank: 1 }).sites.map((s) => s.module)).toEqual(['layers.1.ffn.fc1', 'layers.1.ffn.fc2']);
  });
  it('probe feeds exist for every input of an injected model', () => {
    const { model: m } = injectLora(model, { targets: 'all', rank: 2 });
    expect(Object.keys(probeFeeds(m, 0))).toEqual(['x', 'fc1.lora_A', 'fc1.lora_B', 'fc2.lora_A', 'fc2.lora_B', 'head.lora_A', 'head.lora_B']);
  });
});
