/**
 * Why bench/grad-throughput starts its children with V8's `--initial-heap-size=64` (`--heap service`):
 * the digits-mlp gradient graph (the engine's) against the forward pass, timed the bench's way, in
 * fresh processes that differ only in what they have loaded and in that flag. Prints, per process, the
 * per-round ratio grad/forward and how many full (mark-compact) and young-generation collections V8
 * ran while timing.
 *
 *   npx tsx bench/heap-check.ts [--repeat 2] [--model digits-mlp]
 *
 * Processes: `lora` loads src/onnx and src/lora only (as a bench child does); `lora+flag` the same with
 * the flag; `server` has also imported src/server (as the service process has), with V8's defaults.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { buildTrainingGraph, decodeModel, encodeModel, labelFeed, MALLOC_TUNABLES, OnnxRuntime, probeFeeds, thetaFeed, type Tensor } from '../src/onnx/index.js';
import '../src/lora/index.js';
import { median, ratioToFirst, timeInTurns } from './turns.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1]! : dflt);
const model = opt('model', 'digits-mlp');

async function child(server: boolean): Promise<void> {
  if (server) await import('../src/server/index.js');
  const rt = new OnnxRuntime({ intraOpThreads: 1 });
  const base = decodeModel(new Uint8Array(readFileSync(`models/${model}.onnx`)));
  const graph = await buildTrainingGraph(base, { lora: { targets: 'all', rank: 2, alpha: 4 }, mode: 'gradient', layout: 'packed' }, rt);
  const sFwd = await rt.session(encodeModel(base));
  const sGrad = await rt.session(graph.bytes);
  const B = 32;
  const data: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(probeFeeds(base, 0))) {
    const dims = t.dims.map((d, i) => (i === 0 ? B : d));
    data[name] = { data: Float32Array.from({ length: dims.reduce((a, c) => a * c, 1) }, (_, i) => Math.sin(i * 0.37) * 0.5 + 0.5), dims };
  }
  const ids = Array.from({ length: B }, (_, i) => i % graph.m);
  const feeds = { ...data, labels: labelFeed(graph, 'softmax-ce', ids, B), theta: { data: thetaFeed(graph, new Float32Array(graph.n).map((_, i) => Math.cos(i) * 0.1)), dims: graph.thetaDims! } };
  const fns = [() => sFwd.run(data), () => sGrad.run(feeds)];
  for (const f of fns) for (const t = performance.now(); performance.now() - t < 1000;) await f();
  const gcs = { major: 0, minor: 0 };
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) gcs.major++;
      else if (kind === constants.NODE_PERFORMANCE_GC_MINOR) gcs.minor++;
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  const us = await timeInTurns(fns, 15, 67, 0);
  await new Promise((r) => setTimeout(r, 50));
  obs.disconnect();
  process.stdout.write(JSON.stringify({ forwardUs: median(us[0]!), gradUs: median(us[1]!), ratio: ratioToFirst(us, 1), ...gcs }));
  await rt.close();
}

if (args.includes('--child')) {
  await child(opt('child', '') === 'server');
} else {
  const repeat = Number(opt('repeat', '2'));
  const kinds: [string, string[], string][] = [['lora', [], 'lora'], ['lora+flag', ['--initial-heap-size=64'], 'lora'], ['server', [], 'server']];
  console.log(`${model}, batch 32, the engine's gradient graph against the forward pass; GC counts while timing (15 rounds of 2 × 67 ms)`);
  for (let k = 0; k < repeat; k++) {
    for (const [label, flags, what] of kinds) {
      const out = execFileSync(process.execPath, [...flags, ...process.execArgv, process.argv[1]!, '--child', what, '--model', model], {
        encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, GLIBC_TUNABLES: MALLOC_TUNABLES },
      });
      const r = JSON.parse(out) as { forwardUs: number; gradUs: number; ratio: number; major: number; minor: number };
      console.log(`${label.padEnd(10)} grad/forward ${r.ratio.toFixed(2)}x  forward ${r.forwardUs.toFixed(1)} µs  grad ${r.gradUs.toFixed(1)} µs  full GCs ${r.major}  young GCs ${r.minor}`);
    }
  }
}
