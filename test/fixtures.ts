/**
 * Loading the committed fixtures: the exporter-made ONNX files and their functorch golden values
 * (test/fixtures/make_fixtures.py writes both).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { decodeModel, floatTensor, type ModelProto, type Tensor } from '../src/onnx/index.js';
import type { ValueInfoProto } from '../src/onnx/proto.js';

export const FIXTURE_DIR = fileURLToPath(new URL('./fixtures/', import.meta.url));

/** Every exported fixture file, by stem (`mlp.opset14`, ...). */
export const FIXTURE_FILES = ['mlp', 'cnn', 'cnn_bn', 'transformer'].flatMap((m) => [14, 17].map((o) => `${m}.opset${o}`));

export function fixtureBytes(stem: string): Uint8Array {
  return new Uint8Array(readFileSync(`${FIXTURE_DIR}${stem}.onnx`));
}

export function fixtureModel(stem: string): ModelProto {
  return decodeModel(fixtureBytes(stem));
}

interface RawTensor { shape: number[]; dtype: 'float32' | 'int64'; data: string }

/** Decode one base64 tensor of a golden file. */
export function tensor(t: RawTensor): Tensor {
  const buf = Buffer.from(t.data, 'base64');
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  return { data: t.dtype === 'int64' ? new BigInt64Array(ab) : new Float32Array(ab), dims: t.shape };
}

export interface Golden {
  model: string;
  rank: number;
  alpha: number;
  targets: string[];
  inputs: Record<string, Tensor>;
  labels: Tensor;
  mseTarget: Tensor;
  lora: Record<string, { A: Float32Array; B: Float32Array }>;
  expected: {
    logitsBase: Float32Array;
    logits: Float32Array;
    loss: Float32Array;
    mse: Float32Array;
    grads: Record<string, { A: Float32Array; B: Float32Array }>;
    mseGrads: Record<string, { A: Float32Array; B: Float32Array }>;
    jacProbs: Record<string, { A: Float32Array; B: Float32Array }>;
  };
}

const f32 = (t: RawTensor) => tensor(t).data as Float32Array;
const pairs = (o: Record<string, { A: RawTensor; B: RawTensor }>) =>
  Object.fromEntries(Object.entries(o).map(([k, v]) => [k, { A: f32(v.A), B: f32(v.B) }]));

/** The golden values of a fixture (shared by its opset 14 and 17 exports). */
export function golden(stem: string): Golden {
  const name = stem.split('.')[0]!.replace(/_bn$/, '');
  const raw = JSON.parse(readFileSync(`${FIXTURE_DIR}${name}.golden.json`, 'utf8'));
  return {
    model: raw.model, rank: raw.rank, alpha: raw.alpha, targets: raw.targets,
    inputs: Object.fromEntries(Object.entries(raw.inputs as Record<string, RawTensor>).map(([k, v]) => [k, tensor(v)])),
    labels: tensor(raw.labels), mseTarget: tensor(raw.mse_target),
    lora: pairs(raw.lora),
    expected: {
      logitsBase: f32(raw.expected.logits_base), logits: f32(raw.expected.logits), loss: f32(raw.expected.loss), mse: f32(raw.expected.mse),
      grads: pairs(raw.expected.grads), mseGrads: pairs(raw.expected.mse_grads), jacProbs: pairs(raw.expected.jac_probs),
    },
  };
}

/** max |a − b| / max |b|: the relative error of a whole tensor. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / (den || 1);
}

/** A seeded PRNG for test data (mulberry32). */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomArray(n: number, rand: () => number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() * 2 - 1) * scale;
  return out;
}

/** A graph input or output of element type `elemType` (ONNX's number: 1 float32, 6 int32, 7 int64, 10 float16) and dims (names: symbolic). */
export function valueInfo(name: string, elemType: number, dims: readonly (number | string)[]): ValueInfoProto {
  return { name, type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } } };
}

/**
 * Weights read by more than the adapted product. `tiedTargets`: one [4, 4] weight feeds two MatMuls,
 * both LoRA targets (each has its own A and B). `sharedWithGather`: an embedding table E [6, 4] feeds a
 * Gather (token embedding, not a target) and the classifier Gemm(h, E, transB) (a target), the tied
 * embedding and output layer of a language model.
 */
export function tiedWeightModel(kind: 'tiedTargets' | 'sharedWithGather'): ModelProto {
  const rand = seeded(11);
  const w = (n: number) => Array.from({ length: n }, () => (rand() - 0.5) * 0.8);
  const graph = kind === 'tiedTargets'
    ? {
      name: 'tied', input: [valueInfo('x', 1, ['batch', 4])], output: [valueInfo('logits', 1, ['batch', 3])],
      initializer: [floatTensor('W', [4, 4], w(16)), floatTensor('H', [4, 3], w(12))],
      node: [
        { opType: 'MatMul', name: '/l1/MatMul', input: ['x', 'W'], output: ['h1'] },
        { opType: 'Tanh', name: '/act/Tanh', input: ['h1'], output: ['t1'] },
        { opType: 'MatMul', name: '/l2/MatMul', input: ['t1', 'W'], output: ['h2'] },
        { opType: 'MatMul', name: '/head/MatMul', input: ['h2', 'H'], output: ['logits'] },
      ],
    }
    : {
      name: 'tied-embedding', input: [valueInfo('ids', 7, ['batch'])], output: [valueInfo('logits', 1, ['batch', 6])],
      initializer: [floatTensor('E', [6, 4], w(24)), floatTensor('P', [4, 4], w(16))],
      node: [
        { opType: 'Gather', name: '/embed/Gather', input: ['E', 'ids'], output: ['e'] },
        { opType: 'MatMul', name: '/proj/MatMul', input: ['e', 'P'], output: ['p'] },
        { opType: 'Tanh', name: '/act/Tanh', input: ['p'], output: ['h'] },
        { opType: 'Gemm', name: '/lm_head/Gemm', input: ['h', 'E'], output: ['logits'], attribute: [{ name: 'transB', type: 2, i: 1 }] },
      ],
    };
  return { irVersion: 9, producerName: 'test', opsetImport: [{ domain: '', version: 17 }], graph };
}

/** Inputs for `tiedWeightModel`. */
export const TIED_INPUTS: Record<'tiedTargets' | 'sharedWithGather', Record<string, Tensor>> = {
  tiedTargets: { x: { data: Float32Array.from([0.3, -1, 0.5, 0.8, 1.2, 0.1, -0.4, 0.6]), dims: [2, 4] } },
  sharedWithGather: { ids: { data: BigInt64Array.from([0n, 3n, 5n]), dims: [3] } },
};

/**
 * The mlp fixture (x [batch, 20] → 5 logits) with three outputs: `hidden` (the second layer's ReLU
 * output, [batch, 32]) first, then `logits`, then `predicted` (ArgMax of the logits, int64 [batch]).
 */
export function multiOutputMlp(stem = 'mlp.opset17'): ModelProto {
  const m = fixtureModel(stem);
  const g = m.graph!;
  const logits = g.output![0]!;
  g.node!.push(
    { opType: 'Identity', name: '/hidden/Identity', input: ['/Relu_output_0'], output: ['hidden'] },
    { opType: 'ArgMax', name: '/predicted/ArgMax', input: [logits.name!], output: ['predicted'], attribute: [{ name: 'axis', type: 2, i: 1 }, { name: 'keepdims', type: 2, i: 0 }] },
  );
  g.output = [valueInfo('hidden', 1, ['batch', 32]), logits, valueInfo('predicted', 7, ['batch'])];
  return m;
}

/** The mlp fixture taking x as float16 (a Cast to float32 first). */
export function float16InputMlp(): ModelProto {
  const m = fixtureModel('mlp.opset17');
  for (const n of m.graph!.node!) n.input = n.input!.map((i) => (i === 'x' ? 'x32' : i));
  m.graph!.node!.unshift({ opType: 'Cast', name: '/in/Cast', input: ['x'], output: ['x32'], attribute: [{ name: 'to', type: 2, i: 1 }] });
  m.graph!.input![0]!.type!.tensorType!.elemType = 10;
  return m;
}
