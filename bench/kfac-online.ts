/**
 * K-FAC / RING at batch 1 (the service's observe): ms per step and Newton–Schulz iterations per step
 * on a digits-mlp user stream, with prequential accuracy per 100 samples.
 *
 *   npx tsx bench/kfac-online.ts [--samples 300] [--optimizer '{"type":"kfac"}']
 *
 * The factor inverses are warm-started from the previous step's by a Woodbury correction for the
 * step's new vectors (src/kalman/kfac.ts `emaWarmStart`); run this on the commit before it
 * (c0369d9) for the plain warm start.
 */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';

import { digitStream } from '../src/data/index.js';
import { initState, type OptimizerConfigInput } from '../src/kalman/index.js';
import { AdapterEngine, initTheta, trainStep } from '../src/lora/index.js';
import { decodeModel, OnnxRuntime } from '../src/onnx/index.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : dflt;
};
const N = Number(opt('samples', '300'));
const cfg = JSON.parse(opt('optimizer', '{"type":"kfac"}')) as OptimizerConfigInput;

const rt = new OnnxRuntime({ intraOpThreads: 1 });
const engine = await AdapterEngine.create(decodeModel(new Uint8Array(readFileSync('models/digits-mlp.onnx'))), { targets: ['fc1', 'fc2', 'head'], rank: 4, alpha: 4 }, rt);
let state = initState(cfg, engine.layout, initTheta(engine.sites, 1), 1);
const ms: number[] = [];
const iters: number[] = [];
let correct = 0;
let i = 0;
for (const s of digitStream({ user: 0, seed: 1 })) {
  const t0 = performance.now();
  const out = await trainStep(engine, state, { inputs: { image: { data: s.image, dims: [1, 784] } }, labels: [s.label] });
  ms.push(performance.now() - t0);
  iters.push(out.metrics.kfac?.nsIterations ?? 0);
  state = out.state;
  if (out.predicted![0] === s.label) correct++;
  if (++i % 100 === 0) {
    console.log(`samples ${i - 99}-${i}: prequential accuracy ${(correct / 100).toFixed(2)}`);
    correct = 0;
  }
  if (i >= N) break;
}
const q = (a: number[], p: number) => a.slice().sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(p * a.length))]!;
console.log(`${JSON.stringify(cfg)} on digits-mlp, batch 1, ${cpus()[0]?.model ?? 'cpu'}: ms/step p50 ${q(ms, 0.5).toFixed(1)}, p90 ${q(ms, 0.9).toFixed(1)}; Newton–Schulz iterations/step p50 ${q(iters.slice(1), 0.5)} (all factors)`);
await rt.close();
