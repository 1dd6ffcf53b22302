/**
 * The start-up migration runner: a fresh database gets every migration, recorded in
 * `_prisma_migrations` as Prisma records them; an old database gets only the new ones; a changed,
 * unknown or failed migration stops the start with its own code.
 */
import { cpSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';

import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';

import { openDatabase } from '../../src/server/db/database.js';
import { defaultMigrationsDir, migrate, readMigrations } from '../../src/server/db/migrate.js';
import { openSqlConnection } from '../../src/server/db/sql.js';
import { cleanupTemp, seedBeforeOutputs, startServer, tempDir, testConfig } from './helpers.js';

afterAll(cleanupTemp);

const ALL = readMigrations(defaultMigrationsDir('sqlite'), 'sqlite').map((m) => m.name);

/** A copy of the repository's migrations, keeping the first `n`. */
function migrationsCopy(n = ALL.length): string {
  const dir = tempDir('migrations-');
  cpSync(defaultMigrationsDir('sqlite'), dir, { recursive: true });
  for (const name of ALL.slice(n)) rmSync(join(dir, name), { recursive: true });
  return dir;
}

function rows(file: string) {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare('SELECT * FROM "_prisma_migrations" ORDER BY "migration_name"').all() as Record<string, unknown>[];
  } finally {
    db.close();
  }
}

describe('migrations', () => {
  it('are at least two, in Prisma folder format', () => {
    expect(ALL.length).toBeGreaterThanOrEqual(2);
    for (const name of ALL) expect(name).toMatch(/^\d{14}_[a-z0-9_]+$/);
  });

  it('build a fresh database and record each migration as Prisma does', async () => {
    const file = join(tempDir(), 'nested', 'fresh.db');
    const db = await openDatabase(`file:${file}`);
    expect(db.migrations).toEqual({ applied: ALL, skipped: [] });
    await db.close();
    const recorded = rows(file);
    expect(recorded.map((r) => r['migration_name'])).toEqual(ALL);
    for (const r of recorded) {
      const sql = readFileSync(join(defaultMigrationsDir('sqlite'), String(r['migration_name']), 'migration.sql'));
      expect(r['checksum']).toBe(createHash('sha256').update(sql).digest('hex'));
      expect(r['id']).toMatch(/^[0-9a-f-]{36}$/);
      expect(r['applied_steps_count']).toBe(1);
      expect(typeof r['finished_at']).toBe('number');
      expect(r['rolled_back_at']).toBeNull();
      expect(r['logs']).toBeNull();
    }
    expect(Object.keys(recorded[0]!).sort()).toEqual(['applied_steps_count', 'checksum', 'finished_at', 'id', 'logs', 'migration_name', 'rolled_back_at', 'started_at']);

    const again = await openDatabase(`file:${file}`);
    expect(again.migrations).toEqual({ applied: [], skipped: ALL });
    await again.close();
    expect(rows(file)).toHaveLength(ALL.length);
  });

  it('upgrade a database made with migration 1 only: the server start applies the rest and keeps the data', async () => {
    const config = testConfig();
    const url = config.databaseUrl;
    const old = await openDatabase(url, { migrationsDir: migrationsCopy(1) });
    expect(old.migrations.applied).toEqual([ALL[0]]);
    await old.prisma.user.create({ data: { id: 'usr_old', name: 'old-user' } });
    await old.close();

    const server = await startServer(config);
    try {
      expect(server.ctx.db.migrations).toEqual({ applied: ALL.slice(1), skipped: [ALL[0]] });
      expect((await server.ctx.repos.users.get('usr_old'))?.name).toBe('old-user');
      // A table of migration 2 works.
      expect(await server.ctx.db.prisma.job.count()).toBe(0);
    } finally {
      await server.close();
    }
  });

  it("name the output of adapters and datasets made before outputs could be chosen: the model's first", async () => {
    const config = testConfig();
    const before = ALL.indexOf('20261128170000_adapter_output');
    expect(before).toBeGreaterThan(0);
    const old = await openDatabase(config.databaseUrl, { migrationsDir: migrationsCopy(before) });
    const { config0, summary } = await seedBeforeOutputs(old.prisma);
    await old.close();

    const server = await startServer(config);
    try {
      expect(server.ctx.db.migrations.applied).toEqual(ALL.slice(before));
      const adapter = await server.ctx.repos.adapters.get('adp_old', 'usr_old');
      expect(adapter!.config).toEqual({ ...config0, output: 'scores' });
      expect((await server.ctx.repos.adapters.get('adp_named', 'usr_old'))!.config.output).toBe('aux');
      expect((await server.ctx.repos.adapters.get('adp_none', 'usr_old'))!.config).toEqual(config0);
      const dataset = await server.ctx.repos.datasets.get('dst_old', 'usr_old');
      expect(dataset!.summary).toEqual({ inputs: [], label: { ...summary.label, output: 'scores' } });
    } finally {
      await server.close();
    }
  });

  it('refuse a migration changed after it was applied (MIGRATION_CHECKSUM), changing nothing', async () => {
    const dir = migrationsCopy();
    const file = join(tempDir(), 'tamper.db');
    await (await openDatabase(`file:${file}`, { migrationsDir: dir })).close();
    const before = rows(file);
    const target = join(dir, ALL[0]!, 'migration.sql');
    writeFileSync(target, readFileSync(target, 'utf8').replace('"name" TEXT NOT NULL', '"name" TEXT'));
    await expect(openDatabase(`file:${file}`, { migrationsDir: dir })).rejects.toMatchObject({
      code: 'MIGRATION_CHECKSUM',
      message: expect.stringContaining(ALL[0]!),
    });
    expect(rows(file)).toEqual(before);
  });

  it('accept the same migration with Windows line ends', async () => {
    const dir = migrationsCopy();
    const file = join(tempDir(), 'crlf.db');
    await (await openDatabase(`file:${file}`, { migrationsDir: dir })).close();
    const target = join(dir, ALL[0]!, 'migration.sql');
    writeFileSync(target, readFileSync(target, 'utf8').replace(/\n/g, '\r\n'));
    const db = await openDatabase(`file:${file}`, { migrationsDir: dir });
    expect(db.migrations.applied).toEqual([]);
    await db.close();
  });

  it('refuse a database migrated by a newer build (MIGRATION_UNKNOWN)', async () => {
    const file = join(tempDir(), 'newer.db');
    await (await openDatabase(`file:${file}`)).close();
    await expect(openDatabase(`file:${file}`, { migrationsDir: migrationsCopy(1) })).rejects.toMatchObject({ code: 'MIGRATION_UNKNOWN' });
  });

  it('roll back a failing migration whole, record it as rolled back, and apply it once fixed', async () => {
    const dir = migrationsCopy();
    const bad = join(dir, '29990101000000_broken');
    mkdirSync(bad);
    writeFileSync(join(bad, 'migration.sql'), 'CREATE TABLE "Extra" ("id" TEXT NOT NULL PRIMARY KEY);\nTHIS IS NOT SQL;\n');
    const file = join(tempDir(), 'broken.db');
    await expect(openDatabase(`file:${file}`, { migrationsDir: dir })).rejects.toMatchObject({ code: 'MIGRATION_ERROR', message: expect.stringContaining('29990101000000_broken') });
    const db = new Database(file, { readonly: true });
    expect(db.prepare(`SELECT name FROM sqlite_master WHERE name = 'Extra'`).all()).toEqual([]);
    db.close();
    const broken = rows(file).find((r) => r['migration_name'] === '29990101000000_broken')!;
    expect(broken['rolled_back_at']).not.toBeNull();
    expect(String(broken['logs'])).toMatch(/syntax error/);

    writeFileSync(join(bad, 'migration.sql'), 'CREATE TABLE "Extra" ("id" TEXT NOT NULL PRIMARY KEY);\n');
    const fixed = await openDatabase(`file:${file}`, { migrationsDir: dir });
    expect(fixed.migrations.applied).toEqual(['29990101000000_broken']);
    await fixed.close();
  });

  it('stop at a migration that started and never finished (MIGRATION_FAILED)', async () => {
    const file = join(tempDir(), 'half.db');
    await (await openDatabase(`file:${file}`)).close();
    const db = new Database(file);
    db.prepare(`UPDATE "_prisma_migrations" SET "finished_at" = NULL WHERE "migration_name" = ?`).run(ALL[1]);
    db.close();
    await expect(openDatabase(`file:${file}`)).rejects.toMatchObject({ code: 'MIGRATION_FAILED' });
  });

  it('refuse a migrations folder of another provider', async () => {
    const conn = await openSqlConnection(`file:${join(tempDir(), 'p.db')}`, 'sqlite');
    try {
      await expect(migrate(conn, defaultMigrationsDir('postgresql'))).rejects.toMatchObject({ code: 'MIGRATION_ERROR', message: expect.stringContaining('postgresql') });
    } finally {
      await conn.close();
    }
  });
});
