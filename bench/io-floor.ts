/**
 * How much of #2's budget (per-sample gradients at batch 32 in at most 3x the forward pass) a run's
 * inputs and output take before any kernel runs. Three graphs per model, timed in turns with the base
 * model's forward pass in one process (15 rounds of ~67 ms after 1 s of warm-up each):
 *   forward    the base model;
 *   floor      the gradient graph's inputs (data, one-hot labels, θ) and its one output `grads`
 *              [B, n + m], made from the data by four small nodes (Flatten, Slice, Cast, Expand):
 *              what onnxruntime-node charges for the run's inputs and outputs, plus those nodes;
 *   grad       the engine's gradient graph (`layout: 'packed'`).
 * `left for kernels` is 3·forward − floor: the time the gradient graph's own kernels may take within
 * the goal; `kernels` is the number onnxruntime runs (its optimized graph, `optimizedModelFilePath`).
 *
 *   npx tsx bench/io-floor.ts [--models mlp,transformer,digits-mlp] [--repeat 2]
 *
 * Each model runs in `--repeat` fresh processes with bench/grad-throughput's heap and malloc settings.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as ort from 'onnxruntime-node';

import { buildTrainingGraph, decodeModel, encodeModel, int64Tensor, labelFeed, OnnxRuntime, realInputs, thetaFeed, type ModelProto } from '../src/onnx/index.js';
import { benchFeeds, childTable, loadBenchModel } from './children.js';
import { median, ratioToFirst, timeInTurns } from './turns.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1]! : dflt);
const B = 32;

/** A graph with `grad`'s inputs whose one output has `grad`'s output shape [B, row], from four small nodes. */
function floorGraph(grad: ModelProto, row: number): ModelProto {
  const g = grad.graph!;
  const first = realInputs(grad)[0]!.name!;
  const out = g.output![0]!;
  return {
    irVersion: grad.irVersion,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'io-floor',
      input: realInputs(grad),
      output: [out],
      initializer: [int64Tensor('floor/starts', [1], [0]), int64Tensor('floor/ends', [1], [1]), int64Tensor('floor/axes', [1], [1]), int64Tensor('floor/shape', [2], [1, row])],
      node: [
        { opType: 'Flatten', name: 'floor/Flatten', input: [first], output: ['floor/flat'], attribute: [{ name: 'axis', type: 2, i: 1 }] },
        { opType: 'Slice', name: 'floor/Slice', input: ['floor/flat', 'floor/starts', 'floor/ends', 'floor/axes'], output: ['floor/col'] },
        { opType: 'Cast', name: 'floor/Cast', input: ['floor/col'], output: ['floor/colf'], attribute: [{ name: 'to', type: 2, i: 1 }] },
        { opType: 'Expand', name: 'floor/Expand', input: ['floor/colf', 'floor/shape'], output: [out.name!] },
      ],
    },
  };
}

/** Nodes onnxruntime runs for a graph: those of its optimized graph (level all, CPU, one thread). */
async function kernels(bytes: Uint8Array): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'io-floor-'));
  try {
    const file = join(dir, 'optimized.onnx');
    const s = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, graphOptimizationLevel: 'all', optimizedModelFilePath: file });
    await s.release();
    return decodeModel(new Uint8Array(readFileSync(file))).graph!.node!.length;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function child(name: string): Promise<void> {
  const { model, seq } = loadBenchModel(name);
  const rt = new OnnxRuntime({ intraOpThreads: 1 });
  const graph = await buildTrainingGraph(model, { lora: { targets: 'all', rank: 2, alpha: 4 }, mode: 'gradient', layout: 'packed' }, rt);
  const gradModel = decodeModel(graph.bytes);
  const floorBytes = encodeModel(floorGraph(gradModel, graph.row));
  const data = benchFeeds(model, B, seq);
  const ids = Array.from({ length: B }, (_, i) => i % graph.m);
  const theta = new Float32Array(graph.n).map((_, i) => Math.cos(i) * 0.1);
  const gradFeeds = { ...data, labels: labelFeed(graph, 'softmax-ce', ids, B), [graph.theta!]: { data: thetaFeed(graph, theta), dims: graph.thetaDims! } };
  const forward = await rt.open(encodeModel(model));
  const floor = await rt.open(floorBytes);
  const grad = await rt.open(graph.bytes);
  const got = await floor.run(gradFeeds);
  const dims = Object.values(got)[0]!.dims;
  if (dims[0] !== B || dims[1] !== graph.row) throw new Error(`the floor graph wrote [${dims.join(', ')}], not [${B}, ${graph.row}]`);
  const us = await timeInTurns([() => forward.run(data), () => floor.run(gradFeeds), () => grad.run(gradFeeds)]);
  process.stdout.write(JSON.stringify({
    us: us.map(median),
    ratio: [1, 2].map((k) => ratioToFirst(us, k)),
    left: median(us[0]!.map((f, r) => 3 * f - us[1]![r]!)),
    row: graph.row,
    kernels: { forward: await kernels(encodeModel(model)), grad: await kernels(graph.bytes) },
  }));
  for (const s of [forward, floor, grad]) await s.release();
  await rt.close();
}

if (args.includes('--child')) {
  await child(opt('child', ''));
} else {
  const models = opt('models', 'mlp,transformer,digits-mlp').split(',');
  type Row = { us: number[]; ratio: number[]; left: number; row: number; kernels: { forward: number; grad: number } };
  childTable<Row>(['model', 'process', 'floats out a sample', 'forward µs', 'floor µs (x fwd)', 'grad µs (x fwd)', 'left for kernels µs', 'kernels fwd → grad'], models, Number(opt('repeat', '2')), (name, k, r) => [
    name, k + 1, r.row, r.us[0]!.toFixed(1), `${r.us[1]!.toFixed(1)} (${r.ratio[0]!.toFixed(2)}x)`, `${r.us[2]!.toFixed(1)} (${r.ratio[1]!.toFixed(2)}x)`, r.left.toFixed(1), `${r.kernels.forward} → ${r.kernels.grad}`,
  ]);
}
