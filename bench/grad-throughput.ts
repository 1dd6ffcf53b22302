/**
 * Per-sample gradient and Jacobian throughput (samples/s) of the training graphs, next to a plain
 * forward pass of the same model in the same run, and next to PyTorch functorch per-sample gradients
 * on the same networks and thread count where /usr/bin/python3 has torch.
 *
 *   npx tsx bench/grad-throughput.ts [--threads 1] [--min-time 1] [--warmup 1] [--repeat 3] [--no-torch]
 *                                    [--malloc tuned|default] [--heap service|default] [--models mlp,digits-mlp]
 *                                    [--out bench/results/grad-throughput.json]
 *
 * Each model is measured in `--repeat` fresh child processes, one after another, and each number is
 * the median over them. On this shared VM the variants that write large outputs (per-sample
 * gradients, Jacobians) vary by tens of percent from process to process, with the heap and memory
 * state, and the whole VM switches between a fast and a ~1.6x slower state; the ratios grad/forward
 * and engine/forward are therefore taken per round of adjacent timing windows (see timeVariants).
 *
 * `--heap service` (default) starts each child with V8's `--initial-heap-size=64`. A process that loads
 * only src/onnx and src/lora has a small old generation next to a young generation grown to 16 MB, and
 * V8 then starts a full mark-compact every ~30 ms while gradient runs allocate their outputs (135 in
 * one digits-mlp child, against 3 with the flag or in a process that has loaded the server): that made
 * the gradient rows 15–20% slower and the forward rows not. The service process (src/server) does not
 * run into it, so the bench measures the graphs the way the service runs them. `--heap default` keeps
 * V8's own sizing.
 *
 * Models: the exporter-made fixtures (opset 17; the transformer at seq 7, as PyTorch's side is timed)
 * and the built-in models in models/ when present. LoRA r = 2 (fixtures: every Linear, as PyTorch's
 * side; built-ins: every target). Rows per model and batch (1 and 32):
 *   forward      the base model, no adapters
 *   grad         per-sample loss gradients of every A and B (softmax cross-entropy), the graph the engine
 *                runs (`layout: 'packed'`: θ as one input, each row the gradient then the model output)
 *   factors      the per-sample factors (x, v, δ, Bᵀδ) instead of full gradients (packed θ)
 *   jacobian     per-sample softmax Jacobians [B, m, ...] (packed θ)
 *   engine       AdapterEngine.gradients: the gradient graph plus what a training step adds in
 *                TypeScript (θ to float32, input and label checks, per-sample views)
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname } from 'node:path';
import { buildTrainingGraph, decodeModel, encodeModel, injectLora, labelFeed, MALLOC_TUNABLES, OnnxRuntime, ortVersion, thetaFeed, type ModelProto, type Tensor } from '../src/onnx/index.js';
import { AdapterEngine } from '../src/lora/index.js';
import { benchFeeds } from './children.js';
import { median, timeInTurns } from './turns.js';
import { floatTensor } from '../src/onnx/proto.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : dflt;
};
const threads = Number(opt('threads', '1'));
const minTime = Number(opt('min-time', '1'));
/** Seconds each variant runs untimed first (per batch size): see `timeVariants`. */
const warmup = Number(opt('warmup', '1'));
const outPath = opt('out', 'bench/results/grad-throughput.json');
const useTorch = !args.includes('--no-torch');
const repeat = Number(opt('repeat', '3'));
const malloc = opt('malloc', 'tuned');
if (malloc !== 'tuned' && malloc !== 'default') throw new Error(`--malloc must be 'tuned' or 'default', got '${malloc}'`);
const heap = opt('heap', 'service');
if (heap !== 'service' && heap !== 'default') throw new Error(`--heap must be 'service' or 'default', got '${heap}'`);
/** V8 flags of the child processes (see `--heap` above). */
const HEAP_FLAGS = heap === 'service' ? ['--initial-heap-size=64'] : [];
/** Internal: measure this one model and print its rows as JSON. */
const child = args.includes('--child') ? opt('child', '') : null;
/** Only these models (comma-separated names), default all. */
const only = args.includes('--models') ? new Set(opt('models', '').split(',')) : null;

/** A model to measure, decoded only when its turn comes (a heap holding every model would slow the
 * garbage collection that each run's output buffers trigger, and so every row). */
interface Subject { name: string; load: () => ModelProto; seq?: number; targets: 'all' | string[] }

function subjects(): Subject[] {
  const list: Subject[] = ['mlp', 'cnn', 'transformer'].map((n) => ({
    name: n, load: () => decodeModel(new Uint8Array(readFileSync(`test/fixtures/${n}.opset17.onnx`))), targets: 'all' as const, ...(n === 'transformer' ? { seq: 7 } : {}),
  }));
  if (existsSync('models/manifest.json')) {
    const manifest = JSON.parse(readFileSync('models/manifest.json', 'utf8')) as { models: { name: string; file?: string }[] } | Record<string, unknown>;
    const entries = Array.isArray((manifest as { models?: unknown }).models) ? (manifest as { models: { name: string; file?: string }[] }).models : [];
    for (const e of entries) {
      const file = e.file ?? `models/${e.name}.onnx`;
      const path = file.startsWith('models/') ? file : `models/${file}`;
      if (existsSync(path)) list.push({ name: e.name, load: () => decodeModel(new Uint8Array(readFileSync(path))), targets: 'all', seq: 64 });
    }
  }
  return list;
}

/** Feeds of a given batch: synthetic data (probe values), with batch and other symbolic dims replaced. */
/**
 * Samples/s of each variant, measured in interleaved rounds (each variant runs `minTime / ROUNDS`
 * seconds per round, the variants taking turns): the median round, and every round's value.
 * Each variant first runs `warmup` seconds untimed: a session's first few hundred runs at a new batch
 * size are up to 50% slower here (page faults while the runtime's and V8's memory grows to its
 * steady state), which with a few warm-up calls only had put two of the five rounds, and so the
 * median, in that phase.
 * This VM also switches between a fast and a slow state (everything ~1.6x slower) for seconds at a
 * time. A ratio of two variants is therefore taken per round, from adjacent windows, and its median
 * reported: with 5 rounds of 200 ms, a switch in mid-measurement gave 2.43 as the ratio of the
 * medians where the per-round ratios' median was 3.33 (the same graph's other processes: 3.28–3.41).
 */
const ROUNDS = 15;
async function timeVariants<K extends string>(fns: Record<K, () => Promise<unknown>>, batch: number): Promise<Record<K, number> & { rounds: Record<K, number[]> }> {
  const keys = Object.keys(fns) as K[];
  const us = await timeInTurns(keys.map((k) => fns[k]), ROUNDS, (minTime / ROUNDS) * 1000, warmup * 1000);
  const rounds = Object.fromEntries(keys.map((k, i) => [k, us[i]!.map((u) => (batch * 1e6) / u)])) as unknown as Record<K, number[]>;
  return { ...Object.fromEntries(keys.map((k) => [k, median(rounds[k])])) as Record<K, number>, rounds };
}

interface Row { model: string; batch: number; nodes: { forward: number; grad: number }; forward_sps: number; inference_sps: number; grad_sps: number; factors_sps: number; jac_sps: number; engine_sps: number; m: number; grad_cost_vs_forward: number; engine_cost_vs_forward: number; grad_cost_range?: [number, number]; torch?: { forward_sps: number; grad_sps: number; jac_sps: number } }

/**
 * What onnxruntime-node charges per run and per node, independent of arithmetic: a graph of one Add
 * against a chain of `chain` Adds on a [32, 10] tensor, timed alike. On small models this, not the
 * flops, sets the cost of a gradient graph (tens of nodes) against the forward pass (a handful).
 */
async function dispatchOverhead(rt: OnnxRuntime, chain = 64): Promise<{ perRunUs: number; perNodeUs: number; chain: number }> {
  const graph = (n: number): Uint8Array => {
    const nodes = Array.from({ length: n }, (_, i) => ({ opType: 'Add', input: [i === 0 ? 'x' : `t${i - 1}`, 'c'], output: [i === n - 1 ? 'y' : `t${i}`], name: `add${i}` }));
    const m: ModelProto = {
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'chain',
        node: nodes,
        initializer: [floatTensor('c', [1], [0.5])],
        input: [{ name: 'x', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 32 }, { dimValue: 10 }] } } } }],
        output: [{ name: 'y', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 32 }, { dimValue: 10 }] } } } }],
      },
    };
    return encodeModel(m);
  };
  const one = await rt.session(graph(1));
  const many = await rt.session(graph(chain));
  const x: Tensor = { data: new Float32Array(320).fill(1), dims: [32, 10] };
  const t = await timeVariants({ one: () => one.run({ x }), many: () => many.run({ x }) }, 1);
  const perRunUs = 1e6 / t.one;
  return { perRunUs, perNodeUs: (1e6 / t.many - perRunUs) / (chain - 1), chain };
}

/** One model's rows (batch 1 and 32), measured in this process. */
async function measure(s: Subject): Promise<Row[]> {
  const rows: Row[] = [];
  {
    const rt = new OnnxRuntime({ intraOpThreads: threads });
    const model = s.load();
    const lora = { targets: s.targets, rank: 2, alpha: 4 } as const;
    const grad = await buildTrainingGraph(model, { lora, mode: 'gradient', layout: 'packed' }, rt);
    const factors = await buildTrainingGraph(model, { lora, mode: 'gradient', emit: 'factors', layout: 'packed' }, rt);
    const jac = await buildTrainingGraph(model, { lora, mode: 'jacobian', layout: 'packed' }, rt);
    const injected = injectLora(model, lora).model;
    const sBase = await rt.session(encodeModel(model));
    const sInj = await rt.session(encodeModel(injected));
    const sGrad = await rt.session(grad.bytes);
    const sFac = await rt.session(factors.bytes);
    const sJac = await rt.session(jac.bytes);
    const engine = await AdapterEngine.create(model, lora, rt);
    for (const batch of [1, 32]) {
      const data = benchFeeds(model, batch, s.seq);
      const adapters: Record<string, Tensor> = {};
      for (const site of grad.sites) {
        adapters[site.aInput] = { data: new Float32Array(site.rank * site.in).map((_, i) => Math.cos(i) * 0.1), dims: [site.rank, site.in] };
        adapters[site.bInput] = { data: new Float32Array(site.out * site.rank).map((_, i) => Math.sin(i) * 0.1), dims: [site.out, site.rank] };
      }
      // The same A and B values as θ, the training graphs' one input (per site, A then B).
      const theta = new Float32Array(grad.n);
      let at = 0;
      for (const site of grad.sites) for (const name of [site.aInput, site.bInput]) {
        theta.set(adapters[name]!.data as Float32Array, at);
        at += adapters[name]!.data.length;
      }
      const labelList = Array.from({ length: batch }, (_, i) => i % grad.m);
      const labels: Tensor = labelFeed(grad, 'softmax-ce', labelList, batch);
      // The forward pass, the gradients and the engine take turns (grad/forward is the goal); the other
      // variants are timed on their own: the Jacobian's outputs are m times larger and, with T tokens
      // per sample, the factors' T/r times, and the memory they churn slowed whichever variant ran next
      // (the forward pass by up to half) when all five took turns.
      // Feeds are built once, outside the timed calls: an object spread of ~30 entries costs V8 ~50 µs.
      const withAdapters = { ...data, ...adapters };
      const withTheta = { ...data, theta: { data: thetaFeed(grad, theta), dims: grad.thetaDims! } };
      const withLabels = { ...withTheta, labels };
      const theta64 = Float64Array.from(theta);
      // A new batch size starts sessions of their own (Session, "shapeSessions"): let them open first.
      await Promise.all([sBase.run(data), sInj.run(withAdapters), sGrad.run(withLabels), sFac.run(withLabels), sJac.run(withTheta), engine.gradients(theta64, data, labelList)]);
      for (const x of [sBase, sInj, sGrad, sFac, sJac]) await x.settled();
      const { forward_sps, grad_sps, engine_sps, rounds } = await timeVariants({
        forward_sps: () => sBase.run(data),
        grad_sps: () => sGrad.run(withLabels),
        engine_sps: () => engine.gradients(theta64, data, labelList),
      }, batch);
      const perRound = (k: 'grad_sps' | 'engine_sps') => median(rounds.forward_sps.map((f, r) => f / rounds[k][r]!));
      const { inference_sps } = await timeVariants({ inference_sps: () => sInj.run(withAdapters) }, batch);
      const { factors_sps } = await timeVariants({ factors_sps: () => sFac.run(withLabels) }, batch);
      const { jac_sps } = await timeVariants({ jac_sps: () => sJac.run(withTheta) }, batch);
      rows.push({ model: s.name, batch, nodes: { forward: model.graph!.node!.length, grad: decodeModel(grad.bytes).graph!.node!.length }, forward_sps, inference_sps, grad_sps, factors_sps, jac_sps, engine_sps, m: grad.m, grad_cost_vs_forward: perRound('grad_sps'), engine_cost_vs_forward: perRound('engine_sps') });
    }
    await rt.close();
  }
  return rows;
}

async function main(): Promise<void> {
  if (child !== null) {
    const s = subjects().find((x) => x.name === child);
    if (!s) throw new Error(`unknown model '${child}'`);
    process.stdout.write(JSON.stringify(await measure(s)));
    return;
  }
  const rows: Row[] = [];
  for (const s of subjects().filter((x) => !only || only.has(x.name))) {
    const runs: Row[][] = [];
    for (let k = 0; k < repeat; k++) {
      const out = execFileSync(process.execPath, [...HEAP_FLAGS, ...process.execArgv, process.argv[1]!, '--child', s.name, '--threads', String(threads), '--min-time', String(minTime), '--warmup', String(warmup)], {
        encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24,
        env: malloc === 'tuned' ? { ...process.env, GLIBC_TUNABLES: MALLOC_TUNABLES } : process.env,
      });
      runs.push(JSON.parse(out) as Row[]);
    }
    for (let i = 0; i < runs[0]!.length; i++) {
      const of = runs.map((r) => r[i]!);
      const ratios = of.map((r) => r.grad_cost_vs_forward);
      const med = (key: 'forward_sps' | 'inference_sps' | 'grad_sps' | 'factors_sps' | 'jac_sps' | 'engine_sps') => median(of.map((r) => r[key]));
      rows.push({
        ...of[0]!, forward_sps: med('forward_sps'), inference_sps: med('inference_sps'), grad_sps: med('grad_sps'), factors_sps: med('factors_sps'), jac_sps: med('jac_sps'), engine_sps: med('engine_sps'),
        grad_cost_vs_forward: median(ratios), engine_cost_vs_forward: median(of.map((r) => r.engine_cost_vs_forward)), grad_cost_range: [Math.min(...ratios), Math.max(...ratios)],
      });
      process.stderr.write(`${s.name} b${of[0]!.batch}: grad/forward ${ratios.map((x) => x.toFixed(2)).join(', ')}\n`);
    }
  }
  const rt = new OnnxRuntime({ intraOpThreads: threads });
  const overhead = await dispatchOverhead(rt);
  let torchInfo: { torch: string; threads: number; results: { model: string; batch: number; forward_sps: number; grad_sps: number; jac_sps: number }[] } | null = null;
  if (useTorch && existsSync('/usr/bin/python3')) {
    try {
      const out = execFileSync('/usr/bin/python3', ['bench/torch_per_sample.py', '--threads', String(threads), '--min-time', String(minTime)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      torchInfo = JSON.parse(out);
      for (const r of torchInfo!.results) {
        const row = rows.find((x) => x.model === r.model && x.batch === r.batch);
        if (row) row.torch = { forward_sps: r.forward_sps, grad_sps: r.grad_sps, jac_sps: r.jac_sps };
      }
    } catch (e) {
      process.stderr.write(`PyTorch reference skipped: ${(e as Error).message.split('\n')[0]}\n`);
    }
  }
  const fmt = (v: number | undefined) => (v === undefined ? '-' : v >= 100 ? v.toFixed(0) : v.toFixed(1));
  const header = ['model', 'batch', 'forward', 'fwd+lora', 'grad', 'factors', 'jacobian', 'engine', 'grad cost/fwd', 'engine cost/fwd', 'torch grad', 'grad vs torch', 'torch jac', 'jac vs torch'];
  const lines = rows.map((r) => [
    r.model, String(r.batch), fmt(r.forward_sps), fmt(r.inference_sps), fmt(r.grad_sps), fmt(r.factors_sps), fmt(r.jac_sps), fmt(r.engine_sps),
    `${r.grad_cost_vs_forward.toFixed(2)}x${r.grad_cost_range ? ` (${r.grad_cost_range[0].toFixed(2)}–${r.grad_cost_range[1].toFixed(2)})` : ''}`, `${r.engine_cost_vs_forward.toFixed(2)}x`, fmt(r.torch?.grad_sps), r.torch ? `${(r.grad_sps / r.torch.grad_sps).toFixed(2)}x` : '-',
    fmt(r.torch?.jac_sps), r.torch ? `${(r.jac_sps / r.torch.jac_sps).toFixed(2)}x` : '-',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const pr = (cells: string[]) => console.log(`| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`);
  console.log(`samples/s (median of ${repeat} processes per model), ORT ${ortVersion} CPU, ${threads} intra-op thread(s), ${cpus()[0]?.model ?? 'cpu'}${torchInfo ? `, torch ${torchInfo.torch} with ${torchInfo.threads} thread(s)` : ''}`);
  pr(header);
  pr(widths.map((w) => '-'.repeat(w)));
  lines.forEach(pr);
  mkdirSync(dirname(outPath), { recursive: true });
  console.log(`onnxruntime-node dispatch: ${overhead.perRunUs.toFixed(1)} µs per run (a 1-node graph), ${overhead.perNodeUs.toFixed(2)} µs per extra node (a chain of ${overhead.chain} Adds on [32, 10]); nodes per graph (forward → grad): ${rows.filter((r) => r.batch === 32).map((r) => `${r.model} ${r.nodes.forward} → ${r.nodes.grad}`).join(', ')}`);
  writeFileSync(outPath, JSON.stringify({ date: new Date().toISOString(), ort: ortVersion, threads, repeat, malloc: malloc === 'tuned' ? MALLOC_TUNABLES : 'glibc defaults', heap: HEAP_FLAGS.join(' ') || 'V8 defaults', warmup, cpu: cpus()[0]?.model, torch: torchInfo?.torch ?? null, dispatch: overhead, rows }, null, 2));
  console.log(`wrote ${outPath}`);
  await rt.close();
}

await main();
