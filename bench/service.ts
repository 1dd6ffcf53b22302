/**
 * Service benchmark: observe latency (p50/p99) and throughput on loopback, with 1, 8 and 64 concurrent
 * users, for each built-in model, LoKO. Each user has its own adapter and streams its own samples.
 *
 *   npx tsx bench/service.ts [--users 1,8,64] [--models digits-mlp,digits-cnn,mail-transformer]
 *                            [--seconds 15] [--rate 2] [--threads 1] [--optimizer '{"type":"loko"}'] [--max-hot N]
 *                            [--out bench/results/service.json]
 *
 * The server is `npm start`'s entry point in a child process (fresh DATA_DIR, SQLite, local mode, CPU,
 * ORT_THREADS=--threads, GLIBC_TUNABLES as in the Docker image unless already set); the client is
 * this process (fetch with keep-alive). Two load shapes per (model, users):
 *   closed   every user sends its next observe as soon as the previous one is answered: the
 *            saturation throughput, and the latency under full load (≈ users × service time);
 *   open     every user sends one observe every 1/rate seconds (default 2 Hz: a user labelling two
 *            samples a second), answered or not: the latency a user sees at that offered load.
 * Each adapter takes 3 warm-up observes first (engine creation, graph build, first step), not counted.
 * `--max-hot N` starts the server with MAX_HOT_ADAPTERS=N: with fewer than the users, most observes
 * find their adapter's state out of memory (evicted with a snapshot) and recover it first.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { digitStream, mailStream } from '../src/data/index.js';
import { MALLOC_TUNABLES } from '../src/onnx/index.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : dflt;
};
const USERS = opt('users', '1,8,64').split(',').map(Number);
const MODELS = opt('models', 'digits-mlp,digits-cnn,mail-transformer').split(',');
const SECONDS = Number(opt('seconds', '15'));
const RATE = Number(opt('rate', '2'));
const THREADS = opt('threads', '1');
/** The server's MAX_HOT_ADAPTERS (adapter states in memory); default the server's own (1000). */
const MAX_HOT = opt('max-hot', '');
const OUT = opt('out', 'bench/results/service.json');
/** The adapters' optimizer config (JSON); default: LoKO with every hyperparameter at its default. */
const OPTIMIZER = JSON.parse(opt('optimizer', '{"type":"loko"}')) as { type: string };

/** LoRA targets per model, as bench/online uses them. */
const TARGETS: Record<string, string[]> = { 'digits-mlp': ['fc1', 'fc2', 'head'], 'digits-cnn': ['fc1', 'head'], 'mail-transformer': ['q', 'v', 'classifier'] };

/** The request bodies of one user's stream (inputs as JSON the way a client sends them). */
function bodies(model: string, user: number, n: number): string[] {
  const out: string[] = [];
  if (model === 'mail-transformer') {
    for (const m of mailStream({ seed: user + 1 })) {
      out.push(JSON.stringify({ inputs: { input_ids: [m.text] }, labels: [m.label] }));
      if (out.length >= n) break;
    }
  } else {
    for (const s of digitStream({ user, seed: 1 })) {
      const img = Array.from(s.image, (v) => Math.round(v * 1e4) / 1e4);
      const inputs = model === 'digits-cnn' ? { image: [[chunk(img, 28)]] } : { image: [img] };
      out.push(JSON.stringify({ inputs, labels: [s.label] }));
      if (out.length >= n) break;
    }
  }
  while (out.length < n) out.push(out[out.length % Math.max(1, out.length)]!);
  return out;
}

function chunk(a: number[], k: number): number[][] {
  const rows: number[][] = [];
  for (let i = 0; i < a.length; i += k) rows.push(a.slice(i, i + k));
  return rows;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** The server at LOG_LEVEL=warn (no per-request log lines), ready when /healthz answers. */
async function startServer(dataDir: string): Promise<{ base: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server/main.ts', '--port', String(port)], {
    env: { ...process.env, GLIBC_TUNABLES: process.env.GLIBC_TUNABLES ?? MALLOC_TUNABLES, DATA_DIR: dataDir, ORT_EP: 'cpu', ORT_THREADS: THREADS, LOG_LEVEL: 'warn', RATE_LIMIT_MAX: '0', ...(MAX_HOT ? { MAX_HOT_ADAPTERS: MAX_HOT } : {}) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += String(d)));
  child.stderr.on('data', (d) => (out += String(d)));
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (i > 2400) {
      child.kill('SIGKILL');
      throw new Error(`server did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    base,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function post(url: string, body: string): Promise<{ status: number; json: any }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  return { status: res.status, json: await res.json() };
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

interface Row {
  model: string;
  users: number;
  load: 'closed' | 'open';
  ratePerUser: number | null;
  requests: number;
  errors: number;
  seconds: number;
  throughput: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

async function run(base: string, model: string, modelId: string, users: number, load: 'closed' | 'open'): Promise<Row> {
  const adapters: string[] = [];
  for (let u = 0; u < users; u++) {
    const { status, json } = await post(`${base}/v1/adapters`, JSON.stringify({ modelId, targets: TARGETS[model], rank: 4, alpha: 4, optimizer: OPTIMIZER, seed: u + 1 }));
    if (status !== 201) throw new Error(`create adapter: ${status} ${JSON.stringify(json)}`);
    adapters.push(json.id);
  }
  const perUser = load === 'closed' ? Math.max(50, Math.ceil(4000 / users)) : Math.ceil(SECONDS * RATE) + 3;
  const streams = adapters.map((_, u) => bodies(model, u % 20, perUser + 3));
  // Warm-up: engines, graphs, hot states.
  await Promise.all(adapters.map(async (id, u) => {
    for (let k = 0; k < 3; k++) {
      const r = await post(`${base}/v1/adapters/${id}/observe`, streams[u]![k]!);
      if (r.status !== 200) throw new Error(`warm-up observe: ${r.status} ${JSON.stringify(r.json)}`);
    }
  }));
  const lat: number[] = [];
  let errors = 0;
  const t0 = performance.now();
  const deadline = t0 + SECONDS * 1000;
  const one = async (id: string, body: string) => {
    const t = performance.now();
    const r = await post(`${base}/v1/adapters/${id}/observe`, body);
    lat.push(performance.now() - t);
    if (r.status !== 200) errors++;
  };
  if (load === 'closed') {
    await Promise.all(adapters.map(async (id, u) => {
      for (let k = 3; k < streams[u]!.length && performance.now() < deadline; k++) await one(id, streams[u]![k]!);
    }));
  } else {
    const period = 1000 / RATE;
    await Promise.all(adapters.map(async (id, u) => {
      // Users start spread over one period, then send on their own clock.
      const start = t0 + (u / users) * period;
      const inflight: Promise<void>[] = [];
      for (let k = 3; k < streams[u]!.length; k++) {
        const at = start + (k - 3) * period;
        if (at > deadline) break;
        const wait = at - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        inflight.push(one(id, streams[u]![k]!));
      }
      await Promise.all(inflight);
    }));
  }
  const seconds = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  const r2 = (x: number) => Math.round(x * 100) / 100;
  return {
    model, users, load, ratePerUser: load === 'open' ? RATE : null, requests: lat.length, errors, seconds: r2(seconds),
    throughput: r2(lat.length / seconds), p50: r2(quantile(lat, 0.5)), p90: r2(quantile(lat, 0.9)), p99: r2(quantile(lat, 0.99)), max: r2(lat[lat.length - 1] ?? NaN),
  };
}

const rows: Row[] = [];
for (const model of MODELS) {
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-service-'));
  const server = await startServer(dataDir);
  try {
    const models = (await (await fetch(`${server.base}/v1/models`)).json()) as { items: { id: string; name: string }[] };
    const m = models.items.find((x) => x.name === model);
    if (!m) {
      console.error(`${model}: not registered, skipped`);
      continue;
    }
    for (const users of USERS) {
      for (const load of ['closed', 'open'] as const) {
        try {
          const row = await run(server.base, model, m.id, users, load);
          rows.push(row);
          console.error(JSON.stringify(row));
        } catch (err) {
          console.error(`${model}, ${users} users, ${load}: ${(err as Error).message}`);
        }
      }
    }
  } finally {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const result = {
  benchmark: 'service observe latency and throughput (loopback, LoKO)',
  command: `npx tsx bench/service.ts ${args.join(' ')}`.trim(),
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version },
  settings: { optimizer: OPTIMIZER, seconds: SECONDS, openRatePerUser: RATE, ortThreads: THREADS, maxHotAdapters: MAX_HOT || 'default (1000)', rank: 4, alpha: 4, targets: TARGETS, database: 'SQLite (WAL, synchronous=FULL)' },
  rows,
};
mkdirSync(dirname(OUT), { recursive: true });
writeFileSync(OUT, `${JSON.stringify(result, null, 2)}\n`);

const pad = (s: string | number, n: number) => String(s).padStart(n);
console.log(`\n| model | users | load | requests | errors | throughput (obs/s) | p50 ms | p90 ms | p99 ms |`);
console.log(`|---|---:|---|---:|---:|---:|---:|---:|---:|`);
for (const r of rows) {
  console.log(`| ${r.model} | ${pad(r.users, 2)} | ${r.load === 'open' ? `open ${r.ratePerUser}/s/user` : 'closed'} | ${r.requests} | ${r.errors} | ${r.throughput} | ${r.p50} | ${r.p90} | ${r.p99} |`);
}
console.log(`\nwritten to ${OUT}`);
