/**
 * Online adaptation benchmark (DESIGN 7, issue 4 point 3): prequential (test-then-train) accuracy of
 * LoKO (probs with categorical and EMA noise, loss), R-Kalman, RING, AdamW, SGD and AdaGrad on the
 * shifted streams of the built-in models, one sample at a time (batch 1), on the same LoRA graphs.
 *
 *   npx tsx bench/online.ts [--quick] [--users 0,1,2,3,4] [--seeds 1,2] [--models digits-mlp,digits-cnn,mail-transformer]
 *                           [--limit N] [--ring-streams K] [--out bench/results/online.json]
 *   npx tsx bench/online.ts --sweep [--users 5,6,7,8,9] [--seeds 11,12] [--models digits-mlp,digits-cnn] [--stage all]
 *   npx tsx bench/online.ts --charts-from bench/results/online.json   (redraw the charts, reprint the tables)
 *
 * Benchmark mode writes bench/results/online.json (config, per-run curves every 10 samples,
 * summary), bench/results/online-digits.svg and bench/results/online-mail.svg, and prints the table.
 * Sweep mode tunes LoKO's observation model, noise model, p0 range, r0, beta and forgetting factor on
 * streams that the benchmark never reports: the digits 'heldout' split (997 digits disjoint from the
 * 'stream' split the benchmark uses) with users 5-9 and seeds 11, 12 by default. It writes
 * bench/results/online-sweep.json and prints the ranking.
 *
 * A rejected step (KalmanError: non-PD S, non-finite state, NaN loss of a diverged θ) keeps the last
 * good state, scores the sample with that state's prediction and goes on; rejections are counted.
 */
import { execSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname } from 'node:path';
import { OPTIMIZER_DEFAULTS, validateOptimizerConfig, type OptimizerConfigInput } from '../src/kalman/index.js';
import { initTheta } from '../src/lora/index.js';
import { ortVersion } from '../src/onnx/index.js';
import {
  CURVE_EVERY, LORA, MODEL_NAMES, accuracyAt, loadModel, loadStream, modelAvailable, runFrozen, runStream, runningAccuracy, samplesToReach,
  type LoadedModel, type ModelName, type RunResult, type StreamSample, type StreamSplit,
} from './online/core.js';
import { PREVIOUS_KALMAN, RECOMMENDED_KALMAN, RECOMMENDED_RHO, RING_INVERSE_EVERY, methodSpecs, withLr, type MethodSpec } from './online/methods.js';
import { renderChart, type Panel } from './online/svg.js';

// ------------------------------------------------------------------------------------------------
// Arguments

interface Args {
  quick: boolean;
  sweep: boolean;
  users: number[];
  seeds: number[];
  models: ModelName[];
  limit: number;
  ringStreams: number;
  out: string;
  stage: string;
  profile: boolean;
  chartsFrom: string | undefined;
}

function parseArgs(argv: string[]): Args {
  const get = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    if (i < 0) return undefined;
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new Error(`--${name} needs a value`);
    return v;
  };
  const list = (v: string | undefined): number[] | undefined => v?.split(',').map((x) => {
    const n = Number(x);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`not a non-negative integer: '${x}'`);
    return n;
  });
  const known = new Set(['--charts-from', '--quick', '--sweep', '--users', '--seeds', '--models', '--limit', '--ring-streams', '--out', '--stage', '--no-profile']);
  for (const a of argv) if (a.startsWith('--') && !known.has(a)) throw new Error(`unknown option ${a}`);
  const quick = argv.includes('--quick');
  const sweep = argv.includes('--sweep');
  const models = (get('models')?.split(',') ?? (sweep ? ['digits-mlp', 'digits-cnn'] : MODEL_NAMES)) as ModelName[];
  for (const m of models) if (!MODEL_NAMES.includes(m)) throw new Error(`unknown model '${m}' (${MODEL_NAMES.join(', ')})`);
  const users = list(get('users')) ?? (sweep ? [5, 6, 7, 8, 9] : quick ? [0] : [0, 1, 2, 3, 4]);
  const seeds = list(get('seeds')) ?? (sweep ? [11, 12] : quick ? [1] : [1, 2]);
  const limit = Number(get('limit') ?? (quick ? 150 : Infinity));
  return {
    quick,
    sweep,
    users,
    seeds,
    models,
    limit,
    ringStreams: Number(get('ring-streams') ?? (quick ? 1 : 2)),
    out: get('out') ?? (sweep ? 'bench/results/online-sweep.json' : quick ? 'bench/results/online-quick.json' : 'bench/results/online.json'),
    stage: get('stage') ?? 'all',
    profile: !argv.includes('--no-profile'),
    chartsFrom: get('charts-from'),
  };
}

// ------------------------------------------------------------------------------------------------
// Helpers

const fmt = (v: number | null | undefined, d = 3): string => (v === null || v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(d));
const mean = (a: readonly number[]): number => (a.length === 0 ? NaN : a.reduce((x, y) => x + y, 0) / a.length);
const median = (a: readonly number[]): number => {
  if (a.length === 0) return NaN;
  const s = a.slice().sort((x, y) => x - y);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const round = (v: number, d = 4): number => (Number.isFinite(v) ? Number(v.toFixed(d)) : v);

function machine(): Record<string, unknown> {
  let commit = 'unknown';
  try {
    commit = execSync('git rev-parse --short HEAD', { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    /* not a git checkout */
  }
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: round(totalmem() / 2 ** 30, 1),
    node: process.version,
    onnxruntimeNode: ortVersion,
    intraOpThreads: 1,
    commit,
    loadAverageAtStart: loadavg().map((v) => round(v, 2)),
  };
}

interface Stream {
  user: number;
  seed: number;
  samples: StreamSample[];
}

function streamsOf(model: LoadedModel, args: Args, split: StreamSplit): Stream[] {
  const out: Stream[] = [];
  // The mail stream has no users: one stream per seed.
  const users = model.name === 'mail-transformer' ? [0] : args.users;
  for (const seed of args.seeds) for (const user of users) out.push({ user, seed, samples: loadStream(model, user, seed, split, args.limit) });
  return out;
}

/** Samples needed for a (mean) running-accuracy curve to reach and keep `target` (see samplesToReach). */
function samplesToReachCurve(acc: Float64Array, target: number, from = 50): number | null {
  let t: number | null = null;
  for (let i = acc.length - 1; i >= from - 1; i--) {
    if (acc[i]! >= target - 1e-12) t = i + 1;
    else break;
  }
  return t;
}

function meanRunningCurve(runs: readonly RunResult[]): Float64Array {
  const len = Math.min(...runs.map((r) => r.correct.length));
  const out = new Float64Array(len);
  for (const r of runs) {
    const acc = runningAccuracy(r.correct);
    for (let i = 0; i < len; i++) out[i]! += acc[i]! / runs.length;
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// Profile: where a step's time goes (graph runs vs optimizer), per model

async function profile(model: LoadedModel, stream: readonly StreamSample[], count: number): Promise<Record<string, number>> {
  const e = model.engine;
  const theta = initTheta(e.sites, 1);
  // A non-zero B, so every Jacobian block is non-trivial.
  for (let i = 0; i < theta.length; i++) if (theta[i] === 0) theta[i] = 0.01 * Math.sin(i);
  const out: Record<string, number> = {};
  const kinds: [string, (s: StreamSample) => Promise<unknown>][] = [
    ['forward', (s) => e.forward(theta, s.inputs)],
    ['gradients', (s) => e.gradients(theta, s.inputs, [s.label])],
    ['jacobians', (s) => e.jacobians(theta, s.inputs)],
    ['factors', (s) => e.factors(theta, s.inputs, [s.label])],
  ];
  for (const [name, fn] of kinds) {
    await fn(stream[0]!); // build the graph and warm up
    const times: number[] = [];
    for (let i = 0; i < Math.min(count, stream.length); i++) {
      const t0 = performance.now();
      await fn(stream[i]!);
      times.push(performance.now() - t0);
    }
    out[`${name}MsMedian`] = round(median(times), 3);
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// Benchmark

interface RunRecord {
  model: ModelName;
  user: number | null;
  seed: number;
  method: string;
  lr: number | null;
  config: Record<string, unknown>;
  samples: number;
  final: number;
  acc100: number;
  acc300: number;
  acc1000: number;
  meanLoss: number;
  msPerStepMean: number;
  msPerStepMedian: number;
  rejectedSteps: number;
  firstRejection: { sample: number; code: string; message: string } | null;
  curve: number[];
  wallSeconds: number;
}

interface MethodSummary {
  method: string;
  label: string;
  family: string;
  grid: number[] | null;
  gridMeanFinal: Record<string, number> | null;
  lr: number | null;
  streams: number;
  acc100: number;
  acc300: number;
  acc1000: number;
  final: number;
  /** First sample count from which the mean running-accuracy curve stays ≥ the best AdamW's mean final. */
  samplesToAdamWFinal: number | null;
  /** Per stream: first sample count from which the running accuracy stays ≥ that stream's best-AdamW final. */
  samplesToAdamWFinalPerStream: (number | null)[];
  samplesToAdamWFinalMedian: number | null;
  reachedStreams: number;
  msPerStep: number;
  msPerStepMedian: number;
  rejectedSteps: number;
  divergedRuns: number;
  note?: string;
}

interface ModelResult {
  model: ModelName;
  lora: unknown;
  loraWhy: string;
  sites: string[];
  n: number;
  streamLength: number;
  streams: { user: number | null; seed: number; length: number }[];
  profile?: Record<string, number>;
  methods: MethodSummary[];
  meanCurves: Record<string, { x: number[]; y: number[] }>;
  wallSeconds: number;
}

async function benchModel(name: ModelName, args: Args, specs: MethodSpec[], runs: RunRecord[]): Promise<ModelResult> {
  const t0 = performance.now();
  const model = await loadModel(name);
  const streams = streamsOf(model, args, 'stream');
  const isMail = name === 'mail-transformer';
  const streamLength = streams[0]!.samples.length;
  console.log(`\n## ${name}: n = ${model.n} (${model.sites.join(', ')}), ${streams.length} stream(s) of ${streamLength} samples`);
  const prof = args.profile ? await profile(model, streams[0]!.samples, args.quick ? 30 : 150) : undefined;
  if (prof) console.log(`   graph cost per sample (median ms): ${Object.entries(prof).map(([k, v]) => `${k.replace('MsMedian', '')} ${v}`).join(', ')}`);
  // results[method][lr][streamIndex]
  const results = new Map<string, Map<number | null, (RunResult | undefined)[]>>();
  for (const spec of specs) {
    const byLr = new Map<number | null, (RunResult | undefined)[]>();
    results.set(spec.id, byLr);
    const lrs: (number | null)[] = spec.grid ? [...spec.grid] : [null];
    const nStreams = Math.min(streams.length, spec.maxStreams ?? Infinity);
    for (const lr of lrs) {
      const arr: (RunResult | undefined)[] = new Array(streams.length).fill(undefined);
      byLr.set(lr, arr);
      for (let k = 0; k < nStreams; k++) {
        const st = streams[k]!;
        const cfg = spec.base === null ? null : withLr(spec.base, lr ?? undefined);
        const w0 = performance.now();
        const r = cfg === null ? await runFrozen(model, st.samples, st.seed) : await runStream(model, cfg, st.samples, st.seed);
        const wall = (performance.now() - w0) / 1000;
        arr[k] = r;
        runs.push({
          model: name,
          user: isMail ? null : st.user,
          seed: st.seed,
          method: spec.id,
          lr,
          config: cfg === null ? { type: 'none' } : (validateOptimizerConfig(cfg) as unknown as Record<string, unknown>),
          samples: st.samples.length,
          final: round(r.final),
          acc100: round(accuracyAt(r.correct, 100)),
          acc300: round(accuracyAt(r.correct, 300)),
          acc1000: round(accuracyAt(r.correct, 1000)),
          meanLoss: round(r.meanLoss),
          msPerStepMean: round(r.msMean, 3),
          msPerStepMedian: round(r.msMedian, 3),
          rejectedSteps: r.rejections.length,
          firstRejection: r.rejections[0] ?? null,
          curve: r.curve.map((v) => round(v)),
          wallSeconds: round(wall, 2),
        });
        const rej = r.rejections.length ? `  REJECTED ${r.rejections.length} steps (first at sample ${r.rejections[0]!.sample}: ${r.rejections[0]!.code})` : '';
        console.log(`   ${spec.id.padEnd(15)} lr ${lr === null ? '  —   ' : lr.toExponential(0).padEnd(6)} ${isMail ? '' : `user ${st.user} `}seed ${st.seed}: final ${fmt(r.final)}  ${fmt(r.msMedian, 2)} ms/step  (${wall.toFixed(1)} s)${rej}`);
      }
    }
  }

  // Winners of the grids, by mean final accuracy over the streams they ran on.
  const chosen = new Map<string, { lr: number | null; runs: RunResult[]; idx: number[]; grid: Record<string, number> | null }>();
  for (const spec of specs) {
    const byLr = results.get(spec.id)!;
    let best: { lr: number | null; score: number } = { lr: null, score: -Infinity };
    const grid: Record<string, number> = {};
    for (const [lr, arr] of byLr) {
      const finals = arr.filter((r): r is RunResult => r !== undefined).map((r) => r.final);
      const s = mean(finals);
      if (lr !== null) grid[String(lr)] = round(s);
      if (s > best.score || best.score === -Infinity) best = { lr, score: s };
    }
    const arr = byLr.get(best.lr)!;
    const idx = arr.map((r, i) => (r ? i : -1)).filter((i) => i >= 0);
    chosen.set(spec.id, { lr: best.lr, runs: idx.map((i) => arr[i]!), idx, grid: spec.grid ? grid : null });
  }
  const adam = chosen.get('adamw')!;
  const adamFinalPerStream = new Map<number, number>(adam.idx.map((i, j) => [i, adam.runs[j]!.final]));
  const adamMeanCurve = meanRunningCurve(adam.runs);
  const adamMeanFinal = adamMeanCurve[adamMeanCurve.length - 1]!;

  const methods: MethodSummary[] = [];
  const meanCurves: Record<string, { x: number[]; y: number[] }> = {};
  for (const spec of specs) {
    const c = chosen.get(spec.id)!;
    const perStream = c.idx.map((i, j) => {
      const target = adamFinalPerStream.get(i);
      return target === undefined ? null : samplesToReach(c.runs[j]!.correct, target);
    });
    const reached = perStream.filter((v): v is number => v !== null);
    const mc = meanRunningCurve(c.runs);
    const x: number[] = [];
    const y: number[] = [];
    for (let t = CURVE_EVERY; t <= mc.length; t += CURVE_EVERY) {
      x.push(t);
      y.push(round(mc[t - 1]!));
    }
    if (x.at(-1) !== mc.length) {
      x.push(mc.length);
      y.push(round(mc[mc.length - 1]!));
    }
    meanCurves[spec.id] = { x, y };
    methods.push({
      method: spec.id,
      label: spec.label,
      family: spec.family,
      grid: spec.grid ? [...spec.grid] : null,
      gridMeanFinal: c.grid,
      lr: c.lr,
      streams: c.runs.length,
      acc100: round(mean(c.runs.map((r) => accuracyAt(r.correct, 100)))),
      acc300: round(mean(c.runs.map((r) => accuracyAt(r.correct, 300)))),
      acc1000: round(mean(c.runs.map((r) => accuracyAt(r.correct, 1000)))),
      final: round(mean(c.runs.map((r) => r.final))),
      samplesToAdamWFinal: c.runs.length === streams.length ? samplesToReachCurve(mc, adamMeanFinal) : null,
      samplesToAdamWFinalPerStream: perStream,
      samplesToAdamWFinalMedian: reached.length === perStream.length ? median(reached) : null,
      reachedStreams: reached.length,
      msPerStep: round(mean(c.runs.map((r) => r.msMean)), 3),
      msPerStepMedian: round(mean(c.runs.map((r) => r.msMedian)), 3),
      rejectedSteps: c.runs.reduce((a, r) => a + r.rejections.length, 0),
      divergedRuns: c.runs.filter((r) => r.rejections.length > 0).length,
      ...(spec.note || c.runs.length < streams.length
        ? { note: [spec.note, c.runs.length < streams.length ? `run on the first ${c.runs.length} of ${streams.length} streams only (cost)` : undefined].filter(Boolean).join('; ') }
        : {}),
    });
  }
  return {
    model: name,
    lora: LORA[name].lora,
    loraWhy: LORA[name].why,
    sites: model.sites,
    n: model.n,
    streamLength,
    streams: streams.map((s) => ({ user: isMail ? null : s.user, seed: s.seed, length: s.samples.length })),
    ...(prof ? { profile: prof } : {}),
    methods,
    meanCurves,
    wallSeconds: round((performance.now() - t0) / 1000, 1),
  };
}

function table(r: Omit<ModelResult, 'meanCurves'>): string {
  const lines: string[] = [];
  const users = [...new Set(r.streams.map((s) => s.user))];
  const seeds = [...new Set(r.streams.map((s) => s.seed))];
  lines.push(
    `**${r.model}** — ${r.streams.length} stream(s) of ${r.streamLength} samples` +
      (r.model === 'mail-transformer' ? ` (seeds ${seeds.join(', ')})` : ` (users ${users.join(', ')} × seeds ${seeds.join(', ')})`) +
      `; LoRA ${r.loraWhy}.`,
  );
  lines.push('');
  lines.push('| method | lr grid → winner | acc@100 | acc@300 | acc@1000 | final | samples to AdamW final (mean curve) | per stream: median (reached) | ms/step | rejected steps |');
  lines.push('|---|---|---|---|---|---|---|---|---|---|');
  const adamSamples = r.methods.find((m) => m.method === 'adamw')?.samplesToAdamWFinal;
  for (const m of r.methods) {
    const grid = m.grid ? `${m.grid.map((v) => v.toExponential(0)).join(', ')} → **${m.lr!.toExponential(0)}**` : m.method === 'frozen' ? '—' : m.method === 'loko-previous' ? 'previous defaults' : 'recommended defaults';
    const star = m.streams < r.streams.length ? ` (${m.streams} streams)` : '';
    const mc = m.samplesToAdamWFinal === null ? (m.streams < r.streams.length ? 'n/a' : 'never') : String(m.samplesToAdamWFinal);
    const ps = `${m.samplesToAdamWFinalMedian === null ? '—' : m.samplesToAdamWFinalMedian} (${m.reachedStreams}/${m.streams})`;
    const rej = m.rejectedSteps ? `${m.rejectedSteps} in ${m.divergedRuns} run(s)` : '0';
    lines.push(`| ${m.label}${star} | ${grid} | ${fmt(m.acc100)} | ${fmt(m.acc300)} | ${fmt(m.acc1000)} | ${fmt(m.final)} | ${mc} | ${ps} | ${fmt(m.msPerStep, 2)} | ${rej} |`);
  }
  if (adamSamples !== undefined) lines.push('');
  return lines.join('\n');
}

const METHOD_COLORS: Record<string, string> = {
  'loko-loss': '#d62728',
  'loko-probs-cat': '#ff7f0e',
  'loko-probs-ema': '#9467bd',
  'loko-previous': '#8c564b',
  'r-kalman': '#e377c2',
  ring: '#bcbd22',
  adamw: '#1f77b4',
  sgd: '#2ca02c',
  adagrad: '#17becf',
  frozen: '#7f7f7f',
};
/** Curves are drawn from this many samples on (the running accuracy of the first few is noise). */
const CHART_FROM = 30;

type ChartInput = Pick<ModelResult, 'model' | 'streams' | 'methods' | 'meanCurves'>;

function chart(results: ChartInput[], title: string): string {
  const panels: Panel[] = results.map((r) => {
    const adam = r.methods.find((m) => m.method === 'adamw');
    return {
      title: r.model,
      subtitle: `mean running accuracy over ${r.streams.length} streams, from sample ${CHART_FROM}; lr methods at their grid winner`,
      series: r.methods
        .filter((m) => m.streams === r.streams.length)
        .map((m) => {
          const c = r.meanCurves[m.method]!;
          const keep = c.x.map((x, i) => (x >= CHART_FROM ? i : -1)).filter((i) => i >= 0);
          return {
            label: m.lr === null ? m.label : `${m.label} (lr ${m.lr.toExponential(0)})`,
            x: keep.map((i) => c.x[i]!),
            y: keep.map((i) => c.y[i]!),
            dashed: m.family !== 'kalman',
            ...(METHOD_COLORS[m.method] ? { color: METHOD_COLORS[m.method]! } : {}),
          };
        }),
      ...(adam ? { reference: { y: adam.final, label: `best AdamW final ${adam.final.toFixed(3)}` } } : {}),
    };
  });
  return renderChart(panels, title);
}

function writeCharts(results: ChartInput[], base: string): string[] {
  const digits = results.filter((r) => r.model !== 'mail-transformer');
  const mail = results.filter((r) => r.model === 'mail-transformer');
  const written: string[] = [];
  if (digits.length) {
    writeFileSync(`${base}-digits.svg`, chart(digits, 'Online adaptation on per-user styled digits (prequential, batch 1)'));
    written.push(`${base}-digits.svg`);
  }
  if (mail.length) {
    writeFileSync(`${base}-mail.svg`, chart(mail, 'Online adaptation on the shifted mail stream (prequential, batch 1)'));
    written.push(`${base}-mail.svg`);
  }
  return written;
}

/** `--charts-from FILE`: redraw the charts (and print the tables) of a finished run from its JSON. */
function chartsFrom(file: string): void {
  const j = JSON.parse(readFileSync(file, 'utf8')) as { summary: Omit<ModelResult, 'meanCurves'>[]; meanCurves: Record<string, ModelResult['meanCurves']> };
  const results = j.summary.map((r) => ({ ...r, meanCurves: j.meanCurves[r.model]! }));
  for (const r of results) console.log(table(r) + '\n');
  console.log(`wrote ${writeCharts(results, file.replace(/\.json$/, '')).join(', ')}`);
}

async function bench(args: Args): Promise<void> {
  const started = new Date();
  const tAll = performance.now();
  const specs = methodSpecs({ ringStreams: args.ringStreams });
  const runs: RunRecord[] = [];
  const results: ModelResult[] = [];
  const skipped: Record<string, string> = {};
  const mach = machine();
  for (const name of args.models) {
    if (!modelAvailable(name)) {
      skipped[name] = `models/${name}.onnx is missing`;
      console.log(`\n## ${name}: skipped (models/${name}.onnx is missing)`);
      continue;
    }
    results.push(await benchModel(name, args, specs, runs));
  }
  const wall = (performance.now() - tAll) / 1000;
  const usedTypes = [...new Set(specs.flatMap((s) => (s.base ? [s.base.type] : [])))];
  const out = {
    benchmark: 'online',
    command: `npx tsx bench/online.ts ${process.argv.slice(2).join(' ')}`.trim(),
    started: started.toISOString(),
    wallSeconds: round(wall, 1),
    machine: { ...mach, loadAverageAtEnd: loadavg().map((v) => round(v, 2)), note: 'shared 2-core machine: other work ran at the same time, so times are noisy' },
    config: {
      protocol: 'prequential (test-then-train), batch 1: each sample is predicted with the current adapter, then used for one update',
      users: args.users,
      seeds: args.seeds,
      limit: Number.isFinite(args.limit) ? args.limit : null,
      split: "digits: the 'stream' split (997 digits never used in pretraining) in each user's style (src/data userStyle); mail: all 1 646 shifted mails (hard-ham-1 + spam-2)",
      seedUse: 'the seed fixes the stream order, the LoRA A init (initTheta) and the optimizer PRNG (LoKO p0 draw)',
      lora: Object.fromEntries(args.models.map((m) => [m, { ...LORA[m].lora, why: LORA[m].why }])),
      methods: specs.map((s) => ({ id: s.id, label: s.label, base: s.base, grid: s.grid ?? null, maxStreams: s.maxStreams ?? null, note: s.note ?? null })),
      srcDefaultsAtRunTime: Object.fromEntries(usedTypes.map((t) => [t, OPTIMIZER_DEFAULTS[t]])),
      kalmanRecommended: { ...RECOMMENDED_KALMAN, rKalmanRho: RECOMMENDED_RHO, source: 'bench/results/online-sweep.json (--sweep)' },
      kalmanPrevious: PREVIOUS_KALMAN,
      ringInverseEvery: RING_INVERSE_EVERY,
      gridWinner: 'the lr with the best mean final prequential accuracy over all reported streams of the model (an oracle choice on the test streams)',
      samplesToTarget:
        'target = the best AdamW run final running accuracy; samples = first t >= 50 from which the running accuracy stays >= target to the end of the stream (mean curve: over the mean of the streams; per stream: against that stream AdamW final)',
      rejectedSteps: 'a step that throws (KalmanError) keeps the last good state; the sample is scored with that state and the run goes on',
      msPerStep: 'mean wall ms of one trainStep (graph run + optimizer step, amortised RING inversions included), first step excluded, averaged over streams; msPerStepMedian: the same with the median',
    },
    skipped,
    summary: results.map(({ meanCurves: _m, ...r }) => r),
    meanCurves: Object.fromEntries(results.map((r) => [r.model, r.meanCurves])),
    runs,
  };
  mkdirSync(dirname(args.out), { recursive: true });
  writeFileSync(args.out, JSON.stringify(out, null, 1) + '\n');
  const written = [args.out, ...writeCharts(results, args.out.replace(/\.json$/, ''))];
  console.log('\n');
  for (const r of results) console.log(table(r) + '\n');
  for (const [m, why] of Object.entries(skipped)) console.log(`**${m}**: skipped (${why}).\n`);
  console.log(`wall ${wall.toFixed(0)} s (${results.map((r) => `${r.model} ${r.wallSeconds.toFixed(0)} s`).join(', ')}); wrote ${written.join(', ')}`);
}

// ------------------------------------------------------------------------------------------------
// Sweep: LoKO defaults, tuned on streams the benchmark never reports

interface SweepEntry {
  id: string;
  stage: string;
  config: OptimizerConfigInput;
  final: number;
  acc100: number;
  acc300: number;
  /** Mean running accuracy over the whole stream (area under the prequential curve / length). */
  auc: number;
  finals: number[];
  rejectedSteps: number;
  msPerStep: number;
}

const P0_GRID: [number, number][] = [[0.001, 0.01], [0.003, 0.03], [0.01, 0.1], [0.03, 0.3]];
const BETA_GRID = [0.9, 0.95, 0.99, 0.999, 1];
/** A challenger must beat the incumbent's mean final accuracy by more than this to replace it. */
const TIE_TOLERANCE = 0.003;

async function sweepStreams(name: ModelName, args: Args): Promise<{ model: LoadedModel; streams: Stream[] }> {
  const model = await loadModel(name);
  return { model, streams: streamsOf(model, args, 'heldout') };
}

function makeEvaluator(name: ModelName, model: LoadedModel, streams: Stream[], entries: SweepEntry[]) {
  const seen = new Map<string, SweepEntry>();
  return async (stage: string, config: OptimizerConfigInput): Promise<SweepEntry> => {
    const key = JSON.stringify(validateOptimizerConfig(config));
    const hit = seen.get(key);
    if (hit) return hit;
    const rs: RunResult[] = [];
    for (const st of streams) rs.push(await runStream(model, config, st.samples, st.seed));
    const e: SweepEntry = {
      id: JSON.stringify(config),
      stage,
      config,
      final: round(mean(rs.map((r) => r.final))),
      acc100: round(mean(rs.map((r) => accuracyAt(r.correct, 100)))),
      acc300: round(mean(rs.map((r) => accuracyAt(r.correct, 300)))),
      auc: round(mean(rs.map((r) => mean(Array.from(runningAccuracy(r.correct)))))),
      finals: rs.map((r) => round(r.final, 3)),
      rejectedSteps: rs.reduce((a, r) => a + r.rejections.length, 0),
      msPerStep: round(mean(rs.map((r) => r.msMean)), 3),
    };
    seen.set(key, e);
    entries.push(e);
    console.log(`   [${name} ${stage}] final ${fmt(e.final)} auc ${fmt(e.auc)} @100 ${fmt(e.acc100)} @300 ${fmt(e.acc300)} rej ${e.rejectedSteps}  ${e.id}`);
    return e;
  };
}

/** The best of `list` by mean final accuracy, unless it beats `incumbent` by no more than TIE_TOLERANCE. */
function pick(incumbent: SweepEntry, list: readonly SweepEntry[]): SweepEntry {
  const top = list.reduce((a, b) => (b.final > a.final ? b : a), incumbent);
  return top.final > incumbent.final + TIE_TOLERANCE ? top : incumbent;
}

async function sweep(args: Args): Promise<void> {
  const tAll = performance.now();
  const mach = machine();
  const all: Record<string, SweepEntry[]> = {};
  const [tuneOn, ...confirmOn] = args.models.filter((m) => modelAvailable(m) && m !== 'mail-transformer');
  if (!tuneOn) throw new Error('the sweep needs a digits model');
  const { model, streams } = await sweepStreams(tuneOn, args);
  console.log(`\n## sweep on ${tuneOn}: ${streams.length} streams of ${streams[0]!.samples.length} samples (split 'heldout', users ${args.users.join(',')}, seeds ${args.seeds.join(',')})`);
  const entries: SweepEntry[] = [];
  all[tuneOn] = entries;
  const evaluate = makeEvaluator(tuneOn, model, streams, entries);
  const want = (s: string) => args.stage === 'all' || args.stage.split(',').includes(s);

  // Reference: the frozen base model and the first-order baselines on the same sweep streams.
  const refs: SweepEntry[] = [];
  if (want('ref')) {
    refs.push(await evaluate('ref', { type: 'sgd', lr: 1e-12 }));
    for (const lr of [1e-3, 3e-3, 1e-2]) refs.push(await evaluate('ref', { type: 'adamw', lr }));
    for (const lr of [3e-2, 1e-1]) refs.push(await evaluate('ref', { type: 'adagrad', lr }));
  }
  // Stage 1: observation × noise × p0 range × r0. The incumbent of each family is its config at the
  // documented defaults of the time (p0 in [0.01, 0.1], r0 = 0.01, beta = 0.95).
  const families: { key: string; base: OptimizerConfigInput; r0s: number[]; ema: boolean }[] = [
    { key: 'probs/categorical', base: { type: 'loko', observation: 'probs', noise: 'categorical' }, r0s: [1e-3, 1e-2, 1e-1], ema: false },
    { key: 'probs/ema', base: { type: 'loko', observation: 'probs', noise: 'ema' }, r0s: [1e-3, 1e-2, 1e-1, 1], ema: true },
    { key: 'loss/ema', base: { type: 'loko', observation: 'loss', noise: 'ema' }, r0s: [1e-2, 1e-1, 1, 10], ema: true },
  ];
  const bestOf: Record<string, SweepEntry> = {};
  for (const f of families) {
    const incumbent = await evaluate(`default ${f.key}`, { ...f.base, p0Low: 0.01, p0High: 0.1, r0: 0.01 } as OptimizerConfigInput);
    const list: SweepEntry[] = [];
    if (want('p0r0')) {
      for (const [lo, hi] of P0_GRID) for (const r0 of f.r0s) list.push(await evaluate(`p0r0 ${f.key}`, { ...f.base, p0Low: lo, p0High: hi, r0 } as OptimizerConfigInput));
    }
    bestOf[f.key] = pick(incumbent, list);
  }
  // Stage 2: beta (EMA noise only; 1 keeps R = r0), then r0 again at that beta.
  if (want('beta')) {
    for (const f of families.filter((x) => x.ema)) {
      const b = bestOf[f.key]!;
      const list: SweepEntry[] = [];
      for (const beta of BETA_GRID) list.push(await evaluate(`beta ${f.key}`, { ...b.config, beta } as OptimizerConfigInput));
      const withBeta = pick(b, list);
      const list2: SweepEntry[] = [];
      for (const r0 of f.r0s) list2.push(await evaluate(`r0@beta ${f.key}`, { ...withBeta.config, r0 } as OptimizerConfigInput));
      bestOf[f.key] = pick(withBeta, list2);
    }
  }
  // Stage 3: forgetting factor.
  if (want('forgetting')) {
    for (const key of Object.keys(bestOf)) {
      const b = bestOf[key]!;
      const list: SweepEntry[] = [];
      for (const forgetting of [0.9999, 0.9995, 0.999]) list.push(await evaluate(`forgetting ${key}`, { ...b.config, forgetting } as OptimizerConfigInput));
      bestOf[key] = pick(b, list);
    }
  }
  // The overall winner across observation/noise models (strictly by mean final accuracy).
  const overall = Object.values(bestOf).reduce((a, b) => (b.final > a.final ? b : a));
  // Stage 4: R-Kalman's rho on top of each family's best.
  const rho: Record<string, SweepEntry[]> = {};
  if (want('rho')) {
    for (const key of Object.keys(bestOf)) {
      rho[key] = [];
      for (const r of [1e-4, 1e-3, 1e-2]) rho[key].push(await evaluate(`rho ${key}`, { ...bestOf[key]!.config, type: 'r-kalman', rho: r } as OptimizerConfigInput));
    }
  }
  const adamRefs = refs.filter((r) => (r.config as { type: string }).type === 'adamw');
  const adaRefs = refs.filter((r) => (r.config as { type: string }).type === 'adagrad');
  const bestEntry = (l: SweepEntry[]) => l.reduce((a, b) => (b.final > a.final ? b : a));
  console.log(`\n   best per family on ${tuneOn}:`);
  for (const [k, v] of Object.entries(bestOf)) console.log(`     ${k.padEnd(18)} final ${fmt(v.final)} auc ${fmt(v.auc)}  ${v.id}`);
  if (adamRefs.length) console.log(`     ${'AdamW (best lr)'.padEnd(18)} final ${fmt(bestEntry(adamRefs).final)} auc ${fmt(bestEntry(adamRefs).auc)}  ${bestEntry(adamRefs).id}`);
  if (adaRefs.length) console.log(`     ${'AdaGrad (best lr)'.padEnd(18)} final ${fmt(bestEntry(adaRefs).final)} auc ${fmt(bestEntry(adaRefs).auc)}  ${bestEntry(adaRefs).id}`);

  // Confirmation on the other digits models' sweep streams: the tuned configs against the defaults of
  // the time and the first-order references, without re-tuning.
  const confirmation: Record<string, SweepEntry[]> = {};
  for (const name of confirmOn) {
    const c = await sweepStreams(name, args);
    const list: SweepEntry[] = [];
    all[name] = list;
    confirmation[name] = list;
    const ev = makeEvaluator(name, c.model, c.streams, list);
    console.log(`\n## confirmation on ${name}: ${c.streams.length} streams (split 'heldout')`);
    for (const f of families) await ev(`default ${f.key}`, { ...f.base, p0Low: 0.01, p0High: 0.1, r0: 0.01 } as OptimizerConfigInput);
    for (const [k, v] of Object.entries(bestOf)) await ev(`tuned ${k}`, v.config);
    for (const lr of [1e-3, 3e-3, 1e-2]) await ev('ref', { type: 'adamw', lr });
    for (const lr of [3e-2, 1e-1]) await ev('ref', { type: 'adagrad', lr });
  }
  const wall = (performance.now() - tAll) / 1000;
  const out = {
    benchmark: 'online-sweep',
    command: `npx tsx bench/online.ts ${process.argv.slice(2).join(' ')}`.trim(),
    wallSeconds: round(wall, 1),
    machine: { ...mach, loadAverageAtEnd: loadavg().map((v) => round(v, 2)) },
    config: {
      split: "digits 'heldout' split (997 digits, disjoint from the 'stream' split the benchmark reports), users and seeds distinct from the reported ones",
      users: args.users,
      seeds: args.seeds,
      limit: Number.isFinite(args.limit) ? args.limit : null,
      tunedOn: tuneOn,
      confirmedOn: confirmOn,
      criterion: `mean final prequential accuracy over the sweep streams; a challenger replaces the incumbent only if it is better by more than ${TIE_TOLERANCE} (auc = mean running accuracy over the stream, also reported)`,
      stages: 'ref (frozen base, AdamW, AdaGrad) → p0 range × r0 per observation/noise family → beta then r0 again (EMA families) → forgetting → R-Kalman rho on each family best',
      p0Grid: P0_GRID,
      betaGrid: BETA_GRID,
      defaultsAtTheTime: OPTIMIZER_DEFAULTS.loko,
    },
    recommendation: {
      overall,
      bestPerFamily: bestOf,
      rKalmanRho: rho,
      ...(adamRefs.length ? { bestAdamW: bestEntry(adamRefs) } : {}),
      ...(adaRefs.length ? { bestAdaGrad: bestEntry(adaRefs) } : {}),
      ...(refs.length ? { frozenBase: refs[0] } : {}),
    },
    confirmation,
    entries: all,
  };
  mkdirSync(dirname(args.out), { recursive: true });
  writeFileSync(args.out, JSON.stringify(out, null, 1) + '\n');
  console.log(`\nwall ${wall.toFixed(0)} s; wrote ${args.out}`);
}

const args = parseArgs(process.argv.slice(2));
if (args.chartsFrom) chartsFrom(args.chartsFrom);
else if (args.sweep) await sweep(args);
else await bench(args);
