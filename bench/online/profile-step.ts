/**
 * Where a Kalman step's time goes: the graph run (engine.jacobians / engine.gradients) against the
 * optimizer step (stepState) alone, per model. `npx tsx bench/online/profile-step.ts [model] [samples]`
 */
import { initTheta } from '../../src/lora/index.js';
import { initState, stepState, type OptimizerConfigInput, type OptimizerState, type SampleRecord } from '../../src/kalman/index.js';
import { loadModel, loadStream, type ModelName } from './core.js';

const name = (process.argv[2] ?? 'digits-mlp') as ModelName;
const N = Number(process.argv[3] ?? 200);
const model = await loadModel(name);
const e = model.engine;
const stream = loadStream(model, 0, 1, 'stream', N);
const med = (a: number[]) => a.slice().sort((x, y) => x - y)[a.length >> 1]!;
const configs: OptimizerConfigInput[] = [
  { type: 'loko', observation: 'probs', noise: 'categorical' },
  { type: 'loko', observation: 'probs', noise: 'ema' },
  { type: 'loko', observation: 'loss', noise: 'ema' },
  { type: 'adamw', lr: 1e-3 },
];
console.log(`${name}: n = ${model.n}, m = ${e.m}`);
for (const cfg of configs) {
  let state: OptimizerState = initState(cfg, e.layout, initTheta(e.sites, 1), 1);
  const tg: number[] = [];
  const ts: number[] = [];
  for (const s of stream) {
    const t0 = performance.now();
    const rec: SampleRecord = {};
    if (cfg.type === 'loko' && cfg.observation === 'probs') {
      const j = await e.jacobians(state.theta, s.inputs);
      const y = new Float32Array(e.m);
      y[s.label] = 1;
      Object.assign(rec, { H: j.H[0], h: j.h[0], y });
    } else {
      const g = await e.gradients(state.theta, s.inputs, [s.label]);
      Object.assign(rec, { grad: g.grads[0], loss: g.loss[0] });
    }
    const t1 = performance.now();
    state = stepState(state, [rec]).state;
    const t2 = performance.now();
    tg.push(t1 - t0);
    ts.push(t2 - t1);
  }
  console.log(`  ${JSON.stringify(cfg).padEnd(64)} graph ${med(tg).toFixed(3)} ms  optimizer step ${med(ts).toFixed(3)} ms (medians over ${N})`);
}
