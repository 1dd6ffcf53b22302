/**
 * The PostgreSQL flavour against a real server: a throw-away cluster on loopback, started here with
 * Debian's postgresql binaries (initdb/pg_ctl) and stopped afterwards. Skipped where they are not
 * installed (`apt-get install postgresql` brings them).
 */
import { execFileSync } from 'node:child_process';
import { chownSync, cpSync, existsSync, readdirSync, rmSync } from 'node:fs';
import { createServer as netServer } from 'node:net';
import { join } from 'node:path';

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openDatabase } from '../../src/server/db/database.js';
import { defaultMigrationsDir, readMigrations } from '../../src/server/db/migrate.js';
import { ADMIN_KEY, bearer, cleanupTemp, fixture, multipart, seedBeforeOutputs, startServer, tempDir, testConfig } from './helpers.js';

function findBin(name: string): string | null {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  for (const v of readdirSync(root).sort().reverse()) {
    const p = join(root, v, 'bin', name);
    if (existsSync(p)) return p;
  }
  return null;
}

const initdb = findBin('initdb');
const pgCtl = findBin('pg_ctl');
const isRoot = process.getuid?.() === 0;
let pgUid: number | null = null;
try {
  pgUid = isRoot ? Number(execFileSync('id', ['-u', 'postgres']).toString().trim()) : null;
} catch {
  pgUid = null;
}
const available = initdb !== null && pgCtl !== null && (!isRoot || pgUid !== null);

/** Runs a postgres binary, as the postgres user when we are root (postgres refuses to run as root). */
function asPostgres(bin: string, args: string[]): void {
  if (isRoot) execFileSync('runuser', ['-u', 'postgres', '--', bin, ...args], { stdio: 'pipe' });
  else execFileSync(bin, args, { stdio: 'pipe' });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = netServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

let dir = '';
let baseUrl = '';
let started = false;

describe.skipIf(!available)('PostgreSQL', () => {
  beforeAll(async () => {
    dir = tempDir('pg-');
    if (isRoot) chownSync(dir, pgUid!, pgUid!);
    const data = join(dir, 'data');
    asPostgres(initdb!, ['-D', data, '-A', 'trust', '-U', 'app', '--no-sync', '-E', 'UTF8']);
    const port = await freePort();
    asPostgres(pgCtl!, ['-D', data, '-w', '-l', join(dir, 'log'), '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start']);
    started = true;
    baseUrl = `postgresql://app@127.0.0.1:${port}`;
  }, 60_000);

  afterAll(() => {
    if (started) asPostgres(pgCtl!, ['-D', join(dir, 'data'), '-m', 'immediate', 'stop']);
    cleanupTemp();
  });

  async function freshDatabase(name: string): Promise<string> {
    const admin = new pg.Client({ connectionString: `${baseUrl}/postgres` });
    await admin.connect();
    await admin.query(`CREATE DATABASE "${name}"`);
    await admin.end();
    return `${baseUrl}/${name}`;
  }

  it('migrates a fresh database (recorded as Prisma does) and skips applied migrations', async () => {
    const url = await freshDatabase('migrations');
    const all = readMigrations(defaultMigrationsDir('postgresql'), 'postgresql');
    const db = await openDatabase(url);
    expect(db.provider).toBe('postgresql');
    expect(db.migrations.applied).toEqual(all.map((m) => m.name));
    await db.close();
    const again = await openDatabase(url);
    expect(again.migrations).toEqual({ applied: [], skipped: all.map((m) => m.name) });
    await again.close();

    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const rows = (await c.query('SELECT migration_name, checksum, applied_steps_count, finished_at FROM _prisma_migrations ORDER BY migration_name')).rows;
    await c.end();
    expect(rows.map((r) => [r.migration_name, r.checksum, r.applied_steps_count])).toEqual(all.map((m) => [m.name, m.checksum, 1]));
    expect(rows.every((r) => r.finished_at instanceof Date)).toBe(true);
  });

  it("names the output of adapters and datasets made before outputs could be chosen: the model's first", async () => {
    const url = await freshDatabase('outputs');
    const all = readMigrations(defaultMigrationsDir('postgresql'), 'postgresql').map((m) => m.name);
    const before = all.indexOf('20261128170000_adapter_output');
    expect(before).toBeGreaterThan(0);
    const oldDir = tempDir('pg-migrations-');
    cpSync(defaultMigrationsDir('postgresql'), oldDir, { recursive: true });
    for (const name of all.slice(before)) rmSync(join(oldDir, name), { recursive: true });
    const old = await openDatabase(url, { migrationsDir: oldDir });
    const { config0, summary } = await seedBeforeOutputs(old.prisma);
    await old.close();

    const db = await openDatabase(url);
    try {
      expect(db.migrations.applied).toEqual(all.slice(before));
      expect((await db.prisma.adapter.findUnique({ where: { id: 'adp_old' } }))!.config).toEqual({ ...config0, output: 'scores' });
      expect(((await db.prisma.adapter.findUnique({ where: { id: 'adp_named' } }))!.config as { output: string }).output).toBe('aux');
      expect((await db.prisma.adapter.findUnique({ where: { id: 'adp_none' } }))!.config).toEqual(config0);
      expect((await db.prisma.dataset.findUnique({ where: { id: 'dst_old' } }))!.summary).toEqual({ inputs: [], label: { ...summary.label, output: 'scores' } });
    } finally {
      await db.close();
    }
  });

  it('serves the API on PostgreSQL: users, upload, adapters, ownership, deletion rules', async () => {
    const url = await freshDatabase('service');
    const server = await startServer(testConfig({ DATABASE_URL: url, ADMIN_API_KEY: ADMIN_KEY }));
    try {
      const admin = bearer(ADMIN_KEY);
      const inject = server.app.inject.bind(server.app);
      const ready = (await inject({ url: '/readyz' })).json();
      expect(ready.checks.database).toEqual({ ok: true, provider: 'postgresql' });
      const alice = bearer((await inject({ method: 'POST', url: '/v1/users', payload: { name: 'alice' }, headers: admin })).json().apiKey.key);
      const bob = bearer((await inject({ method: 'POST', url: '/v1/users', payload: { name: 'bob' }, headers: admin })).json().apiKey.key);

      const body = multipart({ name: 'mlp' }, { bytes: fixture() });
      const up = await inject({ method: 'POST', url: '/v1/models', payload: body.payload, headers: { ...admin, ...body.headers } });
      expect(up.statusCode).toBe(201);
      const modelId = up.json().id;
      expect(up.json().targets).toHaveLength(3);

      const created = await inject({ method: 'POST', url: '/v1/adapters', payload: { modelId, targets: ['fc1'], rank: 2, optimizer: { type: 'r-kalman' } }, headers: alice });
      expect(created.statusCode).toBe(201);
      const id = created.json().id;
      expect((await inject({ url: `/v1/adapters/${id}`, headers: alice })).json()).toMatchObject({ id, status: 'ready', optimizer: { type: 'r-kalman', rho: 1e-4 } });
      expect((await inject({ url: `/v1/adapters/${id}`, headers: bob })).statusCode).toBe(404);
      expect((await inject({ method: 'DELETE', url: `/v1/models/${modelId}`, headers: admin })).json().code).toBe('MODEL_IN_USE');
      expect((await inject({ method: 'DELETE', url: `/v1/adapters/${id}`, headers: alice })).statusCode).toBe(204);
      expect((await inject({ method: 'DELETE', url: `/v1/models/${modelId}`, headers: admin })).statusCode).toBe(204);
    } finally {
      await server.close();
    }
  });
});
