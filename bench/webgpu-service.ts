/**
 * The service itself on onnxruntime's WebGPU provider, against the same service on the CPU: two
 * servers (`npm start`'s entry point, each with its own DATA_DIR and SQLite store), `ORT_EP=webgpu`
 * and `ORT_EP=cpu`, get the same requests over HTTP. On the built-in digits-mlp:
 *   - online: a LoKO (probs) and a K-FAC adapter, 6 observes of 4 digits each, then a predict of 8;
 *   - a job: a JSONL dataset of 96 digits, an AdamW adapter, 2 epochs at batch 16, then a predict.
 * It prints the largest relative difference of each answer's numbers between the two servers, and the
 * servers' warning lines and the provider each ended on (`/readyz`): a WebGPU server that fell back to
 * the CPU says so. Exits 1 when it did, or when a difference passes 1e-3.
 *
 *   npx tsx bench/webgpu-service.ts [--out bench/results/webgpu-service.json] [--dry-run]
 *
 * `--dry-run` starts both servers with ORT_EP=cpu, to check the script without a GPU.
 * SERVER_CMD (default `node --import tsx src/server/main.ts`) starts a server, e.g. a bundle.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { relErr } from '../test/fixtures.js';

const args = process.argv.slice(2);
const outPath = args.includes('--out') ? args[args.indexOf('--out') + 1]! : 'bench/results/webgpu-service.json';
const dryRun = args.includes('--dry-run');
const serverCmd = (process.env['SERVER_CMD'] ?? 'node --import tsx src/server/main.ts').split(' ');

interface Server { name: string; port: number; proc: ChildProcess; warnings: string[]; dir: string }

async function start(name: string, port: number, ep: string): Promise<Server> {
  const dir = mkdtempSync(join(tmpdir(), `webgpu-service-${name}-`));
  const proc = spawn(serverCmd[0]!, serverCmd.slice(1), { env: { ...process.env, PORT: String(port), DATA_DIR: dir, ORT_EP: ep, LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const warnings: string[] = [];
  const collect = (b: Buffer) => {
    for (const line of b.toString().split('\n').filter(Boolean)) {
      try {
        const j = JSON.parse(line) as { level?: number; msg?: string };
        if ((j.level ?? 0) >= 40 && !/single-user local mode/.test(j.msg ?? '')) warnings.push(j.msg ?? line);
      } catch {
        if (!/^\s*$/.test(line)) warnings.push(line.slice(0, 300));
      }
    }
  };
  proc.stdout!.on('data', collect);
  proc.stderr!.on('data', collect);
  const t0 = Date.now();
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() - t0 > 60_000) throw new Error(`${name} server did not start: ${warnings.join('; ')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return { name, port, proc, warnings, dir };
}

async function call(s: Server, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<any> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  const res = await fetch(`http://127.0.0.1:${s.port}${path}`, init);
  const json = await res.json();
  if (!res.ok) throw new Error(`${s.name} ${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** A deterministic "digit": 784 values in [0, 1]. */
function digit(i: number): number[] {
  return Array.from({ length: 784 }, (_, k) => Math.max(0, Math.sin(k * 0.05 + i * 1.3) * Math.cos(k * 0.011 * (1 + (i % 7)))));
}

function flat(x: unknown): number[] {
  return Array.isArray(x) ? x.flatMap(flat) : typeof x === 'number' ? [x] : [];
}

function relDiff(a: unknown, b: unknown): number {
  return relErr(flat(a), flat(b));
}

/** The same requests to one server; returns every answer's numbers by name. */
async function scenario(s: Server): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  const models = await call(s, 'GET', '/v1/models');
  const model = models.items.find((m: { name: string }) => m.name === 'digits-mlp').id;
  for (const optimizer of [{ type: 'loko', observation: 'probs' }, { type: 'kfac' }]) {
    const a = await call(s, 'POST', '/v1/adapters', { modelId: model, targets: 'all', rank: 4, alpha: 4, optimizer, seed: 1 });
    for (let k = 0; k < 6; k++) {
      const idx = [0, 1, 2, 3].map((j) => k * 4 + j);
      const r = await call(s, 'POST', `/v1/adapters/${a.id}/observe`, { inputs: idx.map(digit), labels: idx.map((i) => (i * 3) % 10) });
      out[`${optimizer.type} observe ${k} prediction`] = r.prediction;
      out[`${optimizer.type} observe ${k} loss`] = r.loss;
      if (r.variance) out[`${optimizer.type} observe ${k} variance`] = r.variance;
    }
    const p = await call(s, 'POST', `/v1/adapters/${a.id}/predict`, { inputs: Array.from({ length: 8 }, (_, i) => digit(100 + i)) });
    out[`${optimizer.type} predict outputs`] = p.outputs;
    if (p.variance) out[`${optimizer.type} predict variance`] = p.variance;
  }
  const rows = Array.from({ length: 96 }, (_, i) => JSON.stringify({ inputs: digit(200 + i), label: (i * 7) % 10 })).join('\n');
  const form = new FormData();
  form.append('modelId', model);
  form.append('file', new Blob([rows]), 'train.jsonl');
  const ds = await call(s, 'POST', '/v1/datasets', form);
  const a = await call(s, 'POST', '/v1/adapters', { modelId: model, targets: 'all', rank: 4, alpha: 4, optimizer: { type: 'adamw', lr: 3e-3 }, seed: 1 });
  const job = await call(s, 'POST', '/v1/jobs', { adapterId: a.id, datasetId: ds.id, epochs: 2, batchSize: 16, validationSplit: 0, checkpointEvery: 100 }, { 'Idempotency-Key': 'webgpu-service-1' });
  const t0 = Date.now();
  let status = '';
  for (;;) {
    const j = await call(s, 'GET', `/v1/jobs/${job.id}`);
    status = j.status;
    if (['succeeded', 'failed', 'cancelled'].includes(status)) break;
    if (Date.now() - t0 > 120_000) throw new Error(`${s.name}: job still ${status} after 120 s`);
    await new Promise((r) => setTimeout(r, 200));
  }
  if (status !== 'succeeded') throw new Error(`${s.name}: job ${status}`);
  const p = await call(s, 'POST', `/v1/adapters/${a.id}/predict`, { inputs: Array.from({ length: 8 }, (_, i) => digit(100 + i)) });
  out['job (adamw, 2 epochs of 96 at batch 16) predict outputs'] = p.outputs;
  return out;
}

async function main(): Promise<void> {
  const gpu = await start('webgpu', 3931, dryRun ? 'cpu' : 'webgpu');
  const cpu = await start('cpu', 3932, 'cpu');
  let failed = false;
  try {
    const t0 = performance.now();
    const g = await scenario(gpu);
    const tg = performance.now() - t0;
    const t1 = performance.now();
    const c = await scenario(cpu);
    const tc = performance.now() - t1;
    const diffs = Object.fromEntries(Object.keys(c).map((k) => [k, relDiff(g[k], c[k])]));
    // The provider each server's runtime ended on (readyz), after every request above.
    const providers = { webgpu: (await call(gpu, 'GET', '/readyz')).checks.onnxruntime.provider, cpu: (await call(cpu, 'GET', '/readyz')).checks.onnxruntime.provider };
    const worst = Math.max(...Object.values(diffs));
    const fellBack = gpu.warnings.filter((w) => /fall(ing)? back|falling back|runs on the CPU|unavailable/i.test(w));
    console.log('| answer | max rel. diff, webgpu vs cpu |');
    console.log('| --- | --- |');
    for (const [k, v] of Object.entries(diffs)) console.log(`| ${k} | ${v.toExponential(1)} |`);
    console.log(`scenario wall time: webgpu ${(tg / 1000).toFixed(1)} s, cpu ${(tc / 1000).toFixed(1)} s`);
    console.log(`providers after the scenario (readyz): webgpu server ${providers.webgpu}, cpu server ${providers.cpu}`);
    console.log(`webgpu server warnings: ${gpu.warnings.length === 0 ? 'none' : gpu.warnings.join(' | ')}`);
    console.log(`cpu server warnings: ${cpu.warnings.length === 0 ? 'none' : cpu.warnings.join(' | ')}`);
    failed = worst > 1e-3 || (!dryRun && (fellBack.length > 0 || providers.webgpu !== 'webgpu'));
    mkdirSync(dirname(outPath), { recursive: true });
    writeFileSync(outPath, JSON.stringify({ date: new Date().toISOString(), dryRun, worst, providers, diffs, seconds: { webgpu: tg / 1000, cpu: tc / 1000 }, warnings: { webgpu: gpu.warnings, cpu: cpu.warnings } }, null, 2));
    console.log(`worst ${worst.toExponential(1)}; wrote ${outPath}`);
  } finally {
    for (const s of [gpu, cpu]) {
      s.proc.kill('SIGTERM');
      await new Promise((r) => s.proc.once('exit', r));
      rmSync(s.dir, { recursive: true, force: true });
    }
  }
  if (failed) process.exit(1);
}

await main();
