/**
 * Memory of a Kalman step that observes the model outputs (LoKO, `probs`): its H is a Jacobian of
 * m·n floats a sample (digits-mlp with LoRA r = 4 on both Linears: m = 10, n = 4 712, 184 KB), so a
 * batch's Jacobians grow with the batch. Two ways, each in a fresh process per batch size:
 *   whole   the batch's Jacobians at once (AdapterEngine.jacobians), then one stepState over them
 *           (how trainStep did it before KalmanStepper);
 *   parts   trainStep: one sub-batch of Jacobians at a time (AdapterEngine.jacobianParts, at most
 *           EngineOptions.maxJacobianFloats, 16 MB), each fed to a KalmanStepper before the next.
 * Both give the same state (test/lora/train-step.test.ts checks it bit for bit). Reported: the peak
 * resident memory (VmHWM) the step adds over the process after a warm-up step, and the step's time.
 *
 *   npx tsx bench/kalman-memory.ts [--batches 256,1024,2048] [--out bench/results/kalman-memory.json]
 */
import { readFileSync, writeFileSync } from 'node:fs';

import { stepState, initState, type SampleRecord } from '../src/kalman/index.js';
import { AdapterEngine, initTheta, trainStep } from '../src/lora/index.js';
import { OnnxRuntime } from '../src/onnx/index.js';
import { benchFeeds, loadBenchModel, runChild } from './children.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1]! : dflt);

interface Row { mode: string; batch: number; m: number; n: number; jacobianMB: number; peakAddedMB: number; stepMs: number }

const hwmMB = () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;

async function child(spec: string): Promise<void> {
  const [mode, b] = spec.split(':') as ['whole' | 'parts', string];
  const batch = Number(b);
  const { model } = loadBenchModel('digits-mlp');
  const rt = new OnnxRuntime({ intraOpThreads: 1 });
  const engine = await AdapterEngine.create(model, { targets: 'all', rank: 4, alpha: 4 }, rt);
  const labels = (k: number) => Array.from({ length: k }, (_, i) => i % engine.m);
  let state = initState({ type: 'loko', observation: 'probs' }, engine.layout, initTheta(engine.sites, 1), 1);
  state = (await trainStep(engine, state, { inputs: benchFeeds(model, 8, undefined), labels: labels(8) })).state;
  const inputs = benchFeeds(model, batch, undefined);
  const before = hwmMB();
  const t0 = performance.now();
  if (mode === 'parts') {
    await trainStep(engine, state, { inputs, labels: labels(batch) });
  } else {
    const j = await engine.jacobians(state.theta, inputs);
    const records: SampleRecord[] = j.H.map((H, k) => {
      const y = new Float32Array(engine.m);
      y[k % engine.m] = 1;
      return { H, h: j.h[k], y };
    });
    stepState(state, records);
  }
  const stepMs = performance.now() - t0;
  const row: Row = { mode, batch, m: engine.m, n: engine.layout.n, jacobianMB: (batch * engine.m * engine.layout.n * 4) / 2 ** 20, peakAddedMB: hwmMB() - before, stepMs };
  console.log(JSON.stringify(row));
  await rt.close();
}

async function main(): Promise<void> {
  if (args.includes('--child')) return child(opt('child', ''));
  const batches = opt('batches', '256,1024,2048').split(',').map(Number);
  const rows: Row[] = [];
  console.log('| batch | Jacobians of the batch | whole: peak added | parts: peak added | whole: step | parts: step |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const batch of batches) {
    const [whole, parts] = (['whole', 'parts'] as const).map((mode) => runChild<Row>(`${mode}:${batch}`));
    rows.push(whole!, parts!);
    console.log(`| ${batch} | ${whole!.jacobianMB.toFixed(0)} MB | ${whole!.peakAddedMB.toFixed(0)} MB | ${parts!.peakAddedMB.toFixed(0)} MB | ${(whole!.stepMs / 1000).toFixed(2)} s | ${(parts!.stepMs / 1000).toFixed(2)} s |`);
  }
  writeFileSync(opt('out', 'bench/results/kalman-memory.json'), JSON.stringify({ date: new Date().toISOString(), model: 'digits-mlp', lora: { targets: 'all', rank: 4 }, optimizer: { type: 'loko', observation: 'probs' }, rows }, null, 2) + '\n');
}

await main();
