/**
 * What a session's shape history costs, and what one session per set of input shapes (`Session`,
 * `RuntimeOptions.shapeSessions`) gives back. onnxruntime plans its memory from the first input shapes
 * a session runs and allocates tensor by tensor for any others, on every run. Three sessions of the
 * same gradient graph (the engine's, `layout: 'packed'`) run batch 32, taking turns with the base
 * model's forward pass in one process (15 rounds of ~67 ms after 1 s of warm-up each):
 *   fresh        one onnxruntime session that has only ever run batch 32;
 *   after b1     one onnxruntime session that ran batch 1 first (`shapeSessions: 1`: ORT's behaviour);
 *   per shape    the default `Session` (`shapeSessions: 4`) that ran batch 1 first: batch 32 starts a
 *                session of its own.
 *
 *   npx tsx bench/shape-sessions.ts [--models transformer,digits-mlp,mail-transformer] [--repeat 2]
 *
 * Each model runs in `--repeat` fresh processes with bench/grad-throughput's heap and malloc settings.
 * Prints µs per run (median round) and the median per-round ratio to the forward pass.
 */
import { buildTrainingGraph, encodeModel, labelFeed, OnnxRuntime, thetaFeed, type Session } from '../src/onnx/index.js';
import { benchFeeds, childTable, loadBenchModel } from './children.js';
import { median, ratioToFirst, timeInTurns } from './turns.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1]! : dflt);

async function child(name: string): Promise<void> {
  const { model, seq } = loadBenchModel(name);
  const one = new OnnxRuntime({ intraOpThreads: 1, shapeSessions: 1 });
  const perShape = new OnnxRuntime({ intraOpThreads: 1 });
  const graph = await buildTrainingGraph(model, { lora: { targets: 'all', rank: 2, alpha: 4 }, mode: 'gradient', layout: 'packed' }, one);
  const feeds = (batch: number) => {
    const data = benchFeeds(model, batch, seq);
    const ids = Array.from({ length: batch }, (_, i) => i % graph.m);
    const theta = new Float32Array(graph.n).map((_, i) => Math.cos(i) * 0.1);
    return { data, grad: { ...data, labels: labelFeed(graph, 'softmax-ce', ids, batch), theta: { data: thetaFeed(graph, theta), dims: graph.thetaDims! } } };
  };
  const b1 = feeds(1);
  const b32 = feeds(32);
  const forward = await one.open(encodeModel(model));
  const fresh = await one.open(graph.bytes);
  const after = await one.open(graph.bytes);
  const own = await perShape.open(graph.bytes);
  for (const s of [after, own]) for (let i = 0; i < 200; i++) await s.run(b1.grad);
  await own.run(b32.grad);
  await own.settled();
  const us = await timeInTurns([() => forward.run(b32.data), () => fresh.run(b32.grad), () => after.run(b32.grad), () => own.run(b32.grad)]);
  process.stdout.write(JSON.stringify({ us: us.map(median), ratio: [1, 2, 3].map((k) => ratioToFirst(us, k)), sessions: own.sessions }));
  for (const s of [forward, fresh, after, own] as Session[]) await s.release();
}

if (args.includes('--child')) {
  await child(opt('child', ''));
} else {
  const models = opt('models', 'transformer,digits-mlp,mail-transformer').split(',');
  childTable<{ us: number[]; ratio: number[]; sessions: number }>(['model', 'process', 'forward µs', 'fresh µs (x fwd)', 'after b1 µs (x fwd)', 'per shape µs (x fwd)'], models, Number(opt('repeat', '2')), (name, k, r) => {
    if (r.sessions !== 2) throw new Error(`per-shape session: ${r.sessions} onnxruntime sessions, expected 2`);
    const cell = (i: number) => `${r.us[i]!.toFixed(1)} (${r.ratio[i - 1]!.toFixed(2)}x)`;
    return [name, k + 1, r.us[0]!.toFixed(1), cell(1), cell(2), cell(3)];
  });
}
