/**
 * Test helpers for src/server: a temp DATA_DIR with a real SQLite database, a real ONNX Runtime, a
 * models folder of our own (fixtures, so the tests do not depend on the built-in models' state),
 * multipart bodies for app.inject, and a log capture.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';

import { pino, type Logger } from 'pino';

import { loadConfig, type Config } from '../../src/server/config.js';
import { createServer, type Server, type ServerOptions } from '../../src/server/server.js';
import { FIXTURE_DIR } from '../fixtures.js';

const roots: string[] = [];

/** A fresh temp folder, removed by cleanupTemp(). */
export function tempDir(prefix = 'server-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  roots.push(dir);
  return dir;
}

export function cleanupTemp(): void {
  for (const d of roots.splice(0)) rmSync(d, { recursive: true, force: true });
}

export const ADMIN_KEY = 'test-admin-key-0123456789abcdef';

/** Bytes of a committed ONNX fixture. */
export function fixture(name = 'mlp.opset17'): Buffer {
  return readFileSync(join(FIXTURE_DIR, `${name}.onnx`));
}

/** A models folder with a manifest listing fixture copies: `{name: fixtureStem}`; `corrupt` names get altered bytes after hashing. */
export function modelsDir(models: Record<string, string> = {}, corrupt: string[] = []): string {
  const dir = tempDir('models-');
  const entries = Object.entries(models).map(([name, stem]) => {
    const bytes = fixture(stem);
    const file = `${name}.onnx`;
    writeFileSync(join(dir, file), bytes);
    const entry = {
      name,
      file,
      task: 'classification',
      description: `fixture ${stem}`,
      inputs: [],
      output: { name: 'logits', dtype: 'float32', shape: ['batch', 5] },
      labels: ['a', 'b', 'c', 'd', 'e'],
      preprocessing: 'none',
      tokenizer: null,
      source: {},
      rebuild: 'n/a',
      metrics: { heldout: { accuracy: null, n: 0 } },
      sha256: createHash('sha256').update(bytes).digest('hex'),
      size: bytes.length,
    };
    if (corrupt.includes(name)) {
      const bad = Buffer.from(bytes);
      bad[bad.length - 1] = bad[bad.length - 1]! ^ 0xff;
      writeFileSync(join(dir, file), bad);
    }
    return entry;
  });
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ version: 1, models: entries }, null, 2));
  return dir;
}

/** Configuration for a test server: temp DATA_DIR, quiet logs, the given env on top. */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({ DATA_DIR: tempDir('data-'), LOG_LEVEL: 'silent', ORT_EP: 'cpu', ORT_THREADS: '1', MODELS_DIR: modelsDir(), ...env }, []);
}

/** A logger that keeps every line (parsed) in `lines`. */
export function captureLogger(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n')) if (l.trim()) lines.push(JSON.parse(l));
      done();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}

/** A server over `config` (not listening). */
export function startServer(config: Config, options: ServerOptions = {}): Promise<Server> {
  return createServer(config, { log: pino({ level: 'silent' }), ...options });
}

/** A multipart/form-data body for app.inject. */
export function multipart(fields: Record<string, string>, file?: { field?: string; filename?: string; bytes: Uint8Array }): { payload: Buffer; headers: Record<string, string> } {
  const boundary = `----test${Math.random().toString(16).slice(2)}`;
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(fields)) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  }
  if (file) {
    parts.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="${file.field ?? 'file'}"; filename="${file.filename ?? 'model.onnx'}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
      ),
      Buffer.from(file.bytes),
      Buffer.from('\r\n'),
    );
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { payload: Buffer.concat(parts), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

/** Every file under `dir` (relative paths), for "nothing was stored" checks. */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.isDirectory()) walk(join(d, e.name), `${rel}${e.name}/`);
      else out.push(`${rel}${e.name}`);
    }
  };
  walk(dir, '');
  return out.sort();
}

/** Authorization header for a key. */
export function bearer(key: string): Record<string, string> {
  return { authorization: `Bearer ${key}` };
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * `npm start`'s entry point as a child process (local mode unless `env` sets keys) on a free port:
 * `address()` resolves once it logs its listening address; `output()` is everything it printed.
 */
export function startChild(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server/main.ts', '--port', '0'], {
    cwd: ROOT,
    env: { ...process.env, ORT_EP: 'cpu', ORT_THREADS: '1', LOG_LEVEL: 'info', RATE_LIMIT_MAX: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += String(d)));
  child.stderr.on('data', (d) => (out += String(d)));
  const exited = new Promise<void>((res) => child.on('exit', () => res()));
  const address = async (): Promise<string> => {
    for (let i = 0; i < 1200; i++) {
      const m = /"address":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(out);
      if (m) return m[1]!;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`server did not start:\n${out}`);
  };
  return { child, exited, address, output: () => out };
}

/** Polls `get` every 25 ms until `ok` holds of its result, and returns it; fails after `ms` naming `what`. */
export async function pollUntil<T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, ms: number): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > until) throw new Error(`${what} never got there: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Enough of a Prisma client (SQLite's or PostgreSQL's) to write rows. */
interface RowWriter {
  user: { create(args: { data: never }): Promise<unknown> };
  baseModel: { create(args: { data: never }): Promise<unknown> };
  adapter: { create(args: { data: never }): Promise<unknown> };
  dataset: { create(args: { data: never }): Promise<unknown> };
}

/**
 * Rows as the code before migration 20261128170000_adapter_output wrote them, for the migration
 * tests: model mdl_old (outputs `scores`, then `aux`) of user usr_old, adapter adp_old and dataset
 * dst_old without an output, adapter adp_named with output `aux`; adapter adp_none on model mdl_none,
 * which has no outputs.
 */
export async function seedBeforeOutputs(p: RowWriter) {
  const w = <T>(data: T) => ({ data: data as never });
  await p.user.create(w({ id: 'usr_old', name: 'old-user' }));
  const signature = (name: string) => ({ name, dtype: 'float32', shape: ['batch', 5] });
  await p.baseModel.create(w({ id: 'mdl_old', name: 'old-model', sha256: 'a'.repeat(64), size: 1, path: 'blobs/x', opset: 17, inputs: [], outputs: [signature('scores'), signature('aux')], targets: [], opTypes: [], metadata: {} }));
  const config0 = { targets: 'all', sites: [], rank: 2, alpha: 2, rslora: false, optimizer: { type: 'adamw' }, observation: 'probs', seed: 1, modelSha256: 'a'.repeat(64) };
  await p.adapter.create(w({ id: 'adp_old', ownerId: 'usr_old', modelId: 'mdl_old', optimizerType: 'adamw', config: config0, metrics: {} }));
  await p.adapter.create(w({ id: 'adp_named', ownerId: 'usr_old', modelId: 'mdl_old', optimizerType: 'adamw', config: { ...config0, output: 'aux' }, metrics: {} }));
  const summary = { inputs: [], label: { kind: 'class', classes: 5, counts: [1, 0, 0, 0, 0] } };
  await p.dataset.create(w({ id: 'dst_old', ownerId: 'usr_old', modelId: 'mdl_old', name: 'd', format: 'jsonl', rows: 1, size: 1, sha256: 'b'.repeat(64), path: 'blobs/y', summary }));
  // A model row without outputs (none can be uploaded): its adapter is left as it is, and the migration does not fail.
  await p.baseModel.create(w({ id: 'mdl_none', name: 'no-outputs', sha256: 'c'.repeat(64), size: 1, path: 'blobs/z', opset: 17, inputs: [], outputs: [], targets: [], opTypes: [], metadata: {} }));
  await p.adapter.create(w({ id: 'adp_none', ownerId: 'usr_old', modelId: 'mdl_none', optimizerType: 'adamw', config: config0, metrics: {} }));
  return { config0, summary };
}
