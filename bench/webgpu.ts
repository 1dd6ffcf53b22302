/**
 * The adapter engine on onnxruntime's WebGPU execution provider against its CPU provider, on a machine
 * with a GPU and a Vulkan driver (Linux; the provider is built into onnxruntime-node's own binary, so
 * nothing is downloaded). For each model: the engine's forward pass with adapters, per-sample
 * gradients and per-sample Jacobians at the same θ and inputs on both providers (largest difference
 * over the largest CPU value), then samples/s of each at each batch size, the two providers taking
 * turns. Then training: every optimizer's trainSteps on both providers from one state (`--step-models`,
 * `--steps`), compared. Exits with status 1 when no WebGPU adapter is found (the runtime fell back
 * to CPU). `--dry-run` puts both engines on the CPU provider, to check the bench itself without a GPU.
 *
 *   npx tsx bench/webgpu.ts [--models mlp,cnn,transformer,digits-mlp,digits-cnn,mail-transformer]
 *                           [--batches 1,32,256] [--threads 0] [--min-time 0.5] [--out bench/results/webgpu.json]
 *                           [--step-models cnn,transformer,digits-mlp] [--steps 5] [--dry-run]
 *
 * `--threads` is the CPU provider's intra-op threads (0: onnxruntime's choice, every core). Before the
 * models, a one-node graph measures each provider's fixed cost per run, with onnxruntime's WebGPU
 * validation at its default and switched off (`validationMode: 'disabled'`).
 */
import * as ort from 'onnxruntime-node';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname } from 'node:path';
import { buildTrainingGraph, decodeModel, encodeModel, labelFeed, OnnxRuntime, ortVersion, Session, thetaFeed, type ModelProto, type Tensor } from '../src/onnx/index.js';
import { floatTensor } from '../src/onnx/proto.js';
import { AdapterEngine, initTheta, predict, trainStep } from '../src/lora/index.js';
import { concatRows } from '../src/lora/engine.js';
import { initState, type OptimizerConfigInput, type OptimizerState } from '../src/kalman/index.js';
import { relErr } from '../test/fixtures.js';
import { benchFeeds, loadBenchModel } from './children.js';
import { median, timeInTurns } from './turns.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : dflt;
};
const models = opt('models', 'mlp,cnn,transformer,digits-mlp,digits-cnn,mail-transformer').split(',');
const batches = opt('batches', '1,32,256').split(',').map(Number);
const threads = Number(opt('threads', '0'));
const minTime = Number(opt('min-time', '0.5'));
const outPath = opt('out', 'bench/results/webgpu.json');
const stepModels = opt('step-models', 'cnn,transformer,digits-mlp').split(',').filter(Boolean);
const STEPS = Number(opt('steps', '5'));
/** A dry run without a GPU: both engines on the CPU provider (to check the bench itself). */
const dryRun = args.includes('--dry-run');
const ROUNDS = 5;

/** One Add on [32, 10]. */
function oneNode(): Uint8Array {
  const m: ModelProto = {
    irVersion: 8, opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'one', node: [{ opType: 'Add', input: ['x', 'c'], output: ['y'] }], initializer: [floatTensor('c', [1], [0.5])],
      input: [{ name: 'x', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 32 }, { dimValue: 10 }] } } } }],
      output: [{ name: 'y', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 32 }, { dimValue: 10 }] } } } }],
    },
  };
  return encodeModel(m);
}

/** µs per run of the one-node graph: each provider's fixed cost (inputs up, outputs back). */
async function dispatch(): Promise<Record<string, number>> {
  const bytes = oneNode();
  const x = new ort.Tensor('float32', new Float32Array(320).fill(1), [32, 10]);
  const variants: Record<string, ort.InferenceSession.SessionOptions> = {
    cpu: { executionProviders: ['cpu'] },
    webgpu: { executionProviders: ['webgpu'], logSeverityLevel: 3 },
    'webgpu, validation off': { executionProviders: [{ name: 'webgpu', validationMode: 'disabled' } as ort.InferenceSession.ExecutionProviderConfig], logSeverityLevel: 3 },
  };
  const sessions = await Promise.all(Object.values(variants).map((o) => ort.InferenceSession.create(bytes, o)));
  const us = await timeInTurns(sessions.map((s) => () => s.run({ x })), ROUNDS, (minTime / ROUNDS) * 1000, 300);
  for (const s of sessions) await s.release();
  return Object.fromEntries(Object.keys(variants).map((k, i) => [k, median(us[i]!)]));
}

/**
 * The runtime's fallback on a real GPU: the cnn fixture's gradient graph (its first LoRA site lies
 * before a MaxPool, so the graph reads the MaxPool's Indices) opened on WebGPU without the runtime's
 * placement of that MaxPool on the CPU, so that a run fails there; the Session (as OnnxRuntime builds
 * it for WebGPU) must run it again on the CPU, say so once, stay there, and give the CPU's outputs.
 * `exercised` is false when the bare GPU session did not fail: then the check proved nothing (a
 * digits-cnn graph, whose LoRA sites all lie after its pools and which reads no Indices, was used
 * until a run on an H200 showed this), and the bench exits with status 2 after its table.
 */
async function fallbackCheck(): Promise<{ model: string; indicesNodes: string[]; failedOnGpu: boolean; exercised: boolean; provider: string; lines: string[]; relErr: number }> {
  const cpuRt = new OnnxRuntime({ intraOpThreads: threads });
  const name = 'cnn';
  const { model, seq } = loadBenchModel(name);
  const graph = await buildTrainingGraph(model, { lora: { targets: 'all', rank: 2, alpha: 4 }, mode: 'gradient', layout: 'packed' }, cpuRt);
  const indicesNodes = (decodeModel(graph.bytes).graph?.node ?? []).filter((n) => n.opType === 'MaxPool' && (n.output ?? []).filter(Boolean).length > 1).map((n) => n.name ?? '');
  const feeds: Record<string, Tensor> = { ...benchFeeds(model, 32, seq), labels: labelFeed(graph, 'softmax-ce', Array.from({ length: 32 }, (_, i) => i % graph.m), 32) };
  feeds['theta'] = { data: thetaFeed(graph, new Float32Array(graph.n).map((_, i) => Math.sin(i) * 0.05)), dims: graph.thetaDims! };
  const toOrt = (t: Tensor) => new ort.Tensor(t.data instanceof BigInt64Array ? 'int64' : 'float32', t.data as Float32Array, t.dims as number[]);
  const bare = await ort.InferenceSession.create(graph.bytes, { executionProviders: ['webgpu'], logSeverityLevel: 3 });
  let failedOnGpu = false;
  try {
    await bare.run(Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, toOrt(t)])));
  } catch {
    failedOnGpu = true;
  }
  const lines: string[] = [];
  const opts = { executionProviders: ['webgpu'], logSeverityLevel: 3 } as ort.InferenceSession.SessionOptions;
  const session = new Session(bare, 'webgpu', () => ort.InferenceSession.create(graph.bytes, opts), 1, { open: () => ort.InferenceSession.create(graph.bytes), log: (l) => lines.push(l) });
  const got = await session.run(feeds);
  await session.run(feeds);
  const want = await (await cpuRt.session(graph.bytes)).run(feeds);
  const out = {
    model: name, indicesNodes, failedOnGpu, exercised: failedOnGpu && session.provider === 'cpu' && lines.length === 1,
    provider: session.provider, lines, relErr: relErr(got[graph.packed!]!.data as Float32Array, want[graph.packed!]!.data as Float32Array),
  };
  await session.release();
  await cpuRt.close();
  return out;
}

/** Every optimizer, and LoKO on the softmax probabilities (the Jacobian path, in parts). */
const STEP_CONFIGS: { label: string; config: OptimizerConfigInput }[] = [
  { label: 'loko', config: { type: 'loko' } },
  { label: 'loko probs', config: { type: 'loko', observation: 'probs' } as OptimizerConfigInput },
  { label: 'r-kalman', config: { type: 'r-kalman' } },
  { label: 'kfac', config: { type: 'kfac', lr: 0.01 } as OptimizerConfigInput },
  { label: 'ring', config: { type: 'ring', lr: 0.01 } as OptimizerConfigInput },
  { label: 'reng', config: { type: 'reng', lr: 0.01 } as OptimizerConfigInput },
  { label: 'sgd', config: { type: 'sgd', lr: 0.05 } },
  { label: 'adamw', config: { type: 'adamw', lr: 0.01 } },
  { label: 'adagrad', config: { type: 'adagrad', lr: 0.05 } },
];

interface StepRow { model: string; optimizer: string; steps: number; theta: number; loss: number; variance: number | null; predict: number }

/**
 * Training on the GPU: `STEPS` trainSteps at batch 32 from the same state on a WebGPU engine and on a
 * CPU engine, for every optimizer; the largest relative difference of the final θ, of the per-sample
 * losses over all steps, of the Kalman predictive variances, and of `predict` after the last step.
 */
async function stepCheck(name: string, gpu: OnnxRuntime, cpu: OnnxRuntime): Promise<StepRow[]> {
  const { model, seq } = loadBenchModel(name);
  const lora = { targets: 'all', rank: 2, alpha: 4 } as const;
  const eg = await AdapterEngine.create(model, lora, gpu);
  const ec = await AdapterEngine.create(model, lora, cpu);
  const inputs = benchFeeds(model, 32, seq);
  const labels = Array.from({ length: 32 }, (_, i) => (i * 3) % ec.m);
  const rows: StepRow[] = [];
  for (const { label, config } of STEP_CONFIGS) {
    let sg: OptimizerState = initState(config, ec.layout, initTheta(ec.sites, 11), 11);
    let sc: OptimizerState = sg;
    const lg: number[] = [], lc: number[] = [], vg: number[] = [], vc: number[] = [];
    for (let k = 0; k < STEPS; k++) {
      const og = await trainStep(eg, sg, { inputs, labels });
      const oc = await trainStep(ec, sc, { inputs, labels });
      sg = og.state;
      sc = oc.state;
      lg.push(...og.loss);
      lc.push(...oc.loss);
      for (const v of og.predictiveVariance ?? []) vg.push(...v);
      for (const v of oc.predictiveVariance ?? []) vc.push(...v);
    }
    const pg = await predict(eg, sg, inputs);
    const pc = await predict(ec, sc, inputs);
    for (const v of pg.variance ?? []) vg.push(...v);
    for (const v of pc.variance ?? []) vc.push(...v);
    rows.push({
      model: name, optimizer: label, steps: STEPS,
      theta: relErr(sg.theta, sc.theta), loss: relErr(Float64Array.from(lg), Float64Array.from(lc)),
      variance: vc.length > 0 ? relErr(Float64Array.from(vg), Float64Array.from(vc)) : null,
      predict: relErr(pg.output, pc.output),
    });
    console.log(JSON.stringify(rows.at(-1)));
  }
  return rows;
}

interface Row {
  model: string; batch: number; n: number;
  diff: { forward: number; grads: number; loss: number; jacobian: number };
  sps: { cpu: { forward: number; grad: number; jacobian: number }; webgpu: { forward: number; grad: number; jacobian: number } };
}

async function main(): Promise<void> {
  const logs: string[] = [];
  const gpu = new OnnxRuntime({ executionProvider: dryRun ? 'cpu' : 'webgpu', ...(dryRun ? { intraOpThreads: threads } : {}), log: (l) => logs.push(l) });
  const cpu = new OnnxRuntime({ intraOpThreads: threads });
  await gpu.session(oneNode());
  if (gpu.provider !== 'webgpu' && !dryRun) {
    console.error(`no WebGPU adapter: ${logs.join('; ')}`);
    process.exit(1);
  }
  const overhead = dryRun ? {} : await dispatch();
  console.log(`fixed cost per run (µs, a one-node graph): ${Object.entries(overhead).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}`);
  const fallback = dryRun ? { exercised: true, dryRun } : await fallbackCheck();
  console.log(`fallback check: ${JSON.stringify(fallback)}`);
  const steps: StepRow[] = [];
  for (const name of stepModels) steps.push(...(await stepCheck(name, gpu, cpu)));
  const movedToCpu = logs.filter((l) => /runs on the CPU/.test(l));
  const rows: Row[] = [];
  for (const name of models) {
    const { model, seq } = loadBenchModel(name);
    const lora = { targets: 'all', rank: 2, alpha: 4 } as const;
    const eg = await AdapterEngine.create(model, lora, gpu);
    const ec = await AdapterEngine.create(model, lora, cpu);
    const n = ec.layout.n;
    const theta = Float64Array.from({ length: n }, (_, i) => Math.sin(i * 0.7) * 0.1);
    for (const batch of batches) {
      const inputs = benchFeeds(model, batch, seq);
      const labels = Array.from({ length: batch }, (_, i) => i % ec.m);
      const [fc, fg, gc, gg, jc, jg] = [
        await ec.forward(theta, inputs), await eg.forward(theta, inputs),
        await ec.gradients(theta, inputs, labels), await eg.gradients(theta, inputs, labels),
        await ec.jacobians(theta, inputs), await eg.jacobians(theta, inputs),
      ];
      const diff = { forward: relErr(fg, fc), grads: relErr(concatRows(gg.grads), concatRows(gc.grads)), loss: relErr(gg.loss, gc.loss), jacobian: relErr(concatRows(jg.H), concatRows(jc.H)) };
      const us = await timeInTurns([
        () => ec.forward(theta, inputs), () => eg.forward(theta, inputs),
        () => ec.gradients(theta, inputs, labels), () => eg.gradients(theta, inputs, labels),
        () => ec.jacobians(theta, inputs), () => eg.jacobians(theta, inputs),
      ], ROUNDS, (minTime / ROUNDS) * 1000, 300);
      const sps = us.map((u) => (batch * 1e6) / median(u));
      const row: Row = { model: name, batch, n, diff, sps: { cpu: { forward: sps[0]!, grad: sps[2]!, jacobian: sps[4]! }, webgpu: { forward: sps[1]!, grad: sps[3]!, jacobian: sps[5]! } } };
      rows.push(row);
      console.log(JSON.stringify(row));
    }
  }
  const fmt = (v: number) => (v >= 100 ? v.toFixed(0) : v.toFixed(1));
  const ratio = (g: number, c: number) => `${(g / c).toFixed(2)}x`;
  console.log(`\nsamples/s, ORT ${ortVersion}, CPU provider with ${threads || 'all'} thread(s) on ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}; webgpu/cpu > 1 means the GPU is faster`);
  console.log('| model | batch | max rel. diff (fwd, grads, jac) | cpu fwd | webgpu fwd | cpu grad | webgpu grad | grad webgpu/cpu | cpu jac | webgpu jac | jac webgpu/cpu |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows) {
    console.log(`| ${r.model} | ${r.batch} | ${[r.diff.forward, r.diff.grads, r.diff.jacobian].map((d) => d.toExponential(1)).join(', ')} | ${fmt(r.sps.cpu.forward)} | ${fmt(r.sps.webgpu.forward)} | ${fmt(r.sps.cpu.grad)} | ${fmt(r.sps.webgpu.grad)} | ${ratio(r.sps.webgpu.grad, r.sps.cpu.grad)} | ${fmt(r.sps.cpu.jacobian)} | ${fmt(r.sps.webgpu.jacobian)} | ${ratio(r.sps.webgpu.jacobian, r.sps.cpu.jacobian)} |`);
  }
  if (steps.length > 0) {
    console.log(`\ntraining: ${STEPS} trainSteps at batch 32 from one state on each provider; max rel. diff of the final θ, the losses, the Kalman variances (steps and predict) and predict's output`);
    console.log('| model | optimizer | θ | losses | variances | predict |');
    console.log('| --- | --- | --- | --- | --- | --- |');
    for (const r of steps) console.log(`| ${r.model} | ${r.optimizer} | ${[r.theta, r.loss].map((d) => d.toExponential(1)).join(' | ')} | ${r.variance === null ? '–' : r.variance.toExponential(1)} | ${r.predict.toExponential(1)} |`);
    console.log(`models the WebGPU runtime moved to the CPU during the steps: ${movedToCpu.length === 0 ? 'none' : movedToCpu.join('; ')}`);
  }
  mkdirSync(dirname(outPath), { recursive: true });
  writeFileSync(outPath, JSON.stringify({ date: new Date().toISOString(), ort: ortVersion, cpu: cpus()[0]?.model, cores: cpus().length, threads, overhead, fallback, rows, steps, movedToCpu }, null, 2));
  console.log(`wrote ${outPath}`);
  await gpu.close();
  await cpu.close();
  if (!fallback.exercised) {
    console.error(`the fallback check did not exercise the fallback: ${JSON.stringify(fallback)}`);
    process.exitCode = 2;
  }
}

await main();
