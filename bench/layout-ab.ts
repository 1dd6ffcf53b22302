/**
 * The two training-graph layouts side by side: per-sample gradients at batch 32 with every A and B
 * as its own input and the output and loss as outputs of their own (`layout: 'separate'`), and with θ
 * as one input and the output in each gradient row (`layout: 'packed'`, what the engine runs). Both
 * graphs and the base model's forward pass take turns in one process (15 rounds of ~67 ms after 1 s
 * of warm-up each), so the pair is compared at the same moment of this VM's fast/slow state.
 *
 *   npx tsx bench/layout-ab.ts [--models mlp,digits-mlp,transformer] [--repeat 2]
 *
 * Each model runs in `--repeat` fresh processes with the heap and malloc settings of
 * bench/grad-throughput (`--initial-heap-size=64`, `GLIBC_TUNABLES`). Prints µs per run (median round)
 * and the median per-round ratio to the forward pass.
 */
import { buildTrainingGraph, decodeModel, encodeModel, labelFeed, OnnxRuntime, thetaFeed, type Tensor } from '../src/onnx/index.js';
import { benchFeeds, childTable, loadBenchModel } from './children.js';
import { median, ratioToFirst, timeInTurns } from './turns.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1]! : dflt);
const B = 32;

async function child(name: string): Promise<void> {
  const { model, seq } = loadBenchModel(name);
  const rt = new OnnxRuntime({ intraOpThreads: 1 });
  const lora = { targets: 'all' as const, rank: 2, alpha: 4 };
  const data = benchFeeds(model, B, seq);
  const sep = await buildTrainingGraph(model, { lora, mode: 'gradient', layout: 'separate' }, rt);
  const pk = await buildTrainingGraph(model, { lora, mode: 'gradient', layout: 'packed' }, rt);
  const theta = new Float32Array(pk.n).map((_, i) => Math.cos(i) * 0.1);
  const ids = Array.from({ length: B }, (_, i) => i % pk.m);
  const labels: Tensor = labelFeed(sep, 'softmax-ce', ids, B);
  const sepFeeds: Record<string, Tensor> = { ...data, labels };
  let at = 0;
  for (const s of sep.sites) {
    sepFeeds[s.aInput] = { data: theta.subarray(at, at + s.rank * s.in), dims: [s.rank, s.in] };
    at += s.rank * s.in;
    sepFeeds[s.bInput] = { data: theta.subarray(at, at + s.out * s.rank), dims: [s.out, s.rank] };
    at += s.out * s.rank;
  }
  const pkFeeds: Record<string, Tensor> = { ...data, labels: labelFeed(pk, 'softmax-ce', ids, B), theta: { data: thetaFeed(pk, theta), dims: pk.thetaDims! } };
  const sFwd = await rt.session(encodeModel(model));
  const sSep = await rt.session(sep.bytes);
  const sPk = await rt.session(pk.bytes);
  const us = await timeInTurns([() => sFwd.run(data), () => sSep.run(sepFeeds), () => sPk.run(pkFeeds)]);
  const ratio = (k: number) => ratioToFirst(us, k);
  const nodes = (bytes: Uint8Array) => decodeModel(bytes).graph!.node!.length;
  process.stdout.write(JSON.stringify({
    forwardUs: median(us[0]!), separateUs: median(us[1]!), packedUs: median(us[2]!), separate: ratio(1), packed: ratio(2),
    nodes: { separate: nodes(sep.bytes), packed: nodes(pk.bytes) },
  }));
  await rt.close();
}

if (args.includes('--child')) {
  await child(opt('child', ''));
} else {
  const models = opt('models', 'mlp,digits-mlp,transformer').split(',');
  type Row = { forwardUs: number; separateUs: number; packedUs: number; separate: number; packed: number; nodes: { separate: number; packed: number } };
  childTable<Row>(['model', 'process', 'forward µs', 'separate µs (x fwd)', 'packed µs (x fwd)', 'nodes separate → packed'], models, Number(opt('repeat', '2')), (name, k, r) => [
    name, k + 1, r.forwardUs.toFixed(1), `${r.separateUs.toFixed(1)} (${r.separate.toFixed(2)}x)`, `${r.packedUs.toFixed(1)} (${r.packed.toFixed(2)}x)`, `${r.nodes.separate} → ${r.nodes.packed}`,
  ]);
}
