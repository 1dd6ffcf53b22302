/**
 * Our own `prisma migrate deploy`: applies the hand-written migrations in Prisma's folder format
 * (`<dir>/<timestamp>_<name>/migration.sql` + `migration_lock.toml`) that the database has not seen,
 * in name order, each in its own transaction, and records them in `_prisma_migrations` with Prisma's
 * columns and checksums (sha256 of migration.sql), so that `prisma migrate deploy` / `status` agree
 * with us wherever Prisma's schema engine exists. Prisma's CLI needs that native engine, which an
 * offline machine cannot download; this needs nothing but the driver.
 *
 * Refuses to start (MIGRATION_*) when an applied migration's file changed, when a migration failed
 * half-way before, or when the database has migrations this build does not know (a newer build ran).
 */
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { MigrationError } from '../errors.js';
import type { Provider, SqlConnection } from './sql.js';

const PRISMA_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'prisma');

/** The repository's migrations folder for a provider (Prisma keeps one history per provider). */
export function defaultMigrationsDir(provider: Provider): string {
  return provider === 'sqlite' ? join(PRISMA_ROOT, 'migrations') : join(PRISMA_ROOT, 'postgres', 'migrations');
}

/** One migration folder. */
export interface MigrationFile {
  /** The folder name, `<timestamp>_<name>`: Prisma's `migration_name`. */
  name: string;
  sql: string;
  /** sha256 of migration.sql, lower-case hex, as Prisma computes it. */
  checksum: string;
}

/** What a run did. */
export interface MigrationReport {
  /** Applied by this run, in order. */
  applied: string[];
  /** Found already applied. */
  skipped: string[];
}

/** The migration that `prisma migrate` keeps, with the same columns and types per provider. */
const TABLE_DDL: Record<Provider, string> = {
  sqlite: `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    TEXT PRIMARY KEY NOT NULL,
    "checksum"              TEXT NOT NULL,
    "finished_at"           DATETIME,
    "migration_name"        TEXT NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        DATETIME,
    "started_at"            DATETIME NOT NULL DEFAULT current_timestamp,
    "applied_steps_count"   INTEGER UNSIGNED NOT NULL DEFAULT 0
)`,
  postgresql: `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)`,
};

/** Prisma's advisory lock key for migrations (PostgreSQL): two starting processes never migrate at once. */
const PG_LOCK_KEY = 72707369;

/** sha256 hex of a migration script. */
export function migrationChecksum(sql: string): string {
  return createHash('sha256').update(sql, 'utf8').digest('hex');
}

/** Reads `dir`'s migrations in name order; checks migration_lock.toml names `provider`. */
export function readMigrations(dir: string, provider: Provider): MigrationFile[] {
  if (!existsSync(dir)) throw new MigrationError('MIGRATION_ERROR', `migrations folder ${dir} does not exist`, { dir });
  const lock = join(dir, 'migration_lock.toml');
  if (existsSync(lock)) {
    const m = /provider\s*=\s*"([^"]+)"/.exec(readFileSync(lock, 'utf8'));
    if (m && m[1] !== provider) {
      throw new MigrationError('MIGRATION_ERROR', `${lock} is for provider '${m[1]}', but the database is ${provider}`, { dir, provider: m[1] });
    }
  }
  return readdirSync(dir)
    .filter((name) => statSync(join(dir, name)).isDirectory() && existsSync(join(dir, name, 'migration.sql')))
    .sort()
    .map((name) => {
      const sql = readFileSync(join(dir, name, 'migration.sql'), 'utf8');
      return { name, sql, checksum: migrationChecksum(sql) };
    });
}

interface Row {
  id: string;
  checksum: string;
  migration_name: string;
  finished_at: unknown;
  rolled_back_at: unknown;
}

/**
 * Brings the database up to date with the migrations in `dir`. Safe to run at every start: applied
 * migrations are checked (checksum) and skipped, new ones applied in order.
 */
export async function migrate(
  conn: SqlConnection,
  dir: string = defaultMigrationsDir(conn.provider),
  log: (msg: string, data?: Record<string, unknown>) => void = () => {},
): Promise<MigrationReport> {
  const files = readMigrations(dir, conn.provider);
  const pg = conn.provider === 'postgresql';
  if (pg) await conn.query(`SELECT pg_advisory_lock(${PG_LOCK_KEY})`);
  try {
    await conn.exec(TABLE_DDL[conn.provider]);
    const rows = await conn.query<Row>(
      `SELECT "id", "checksum", "migration_name", "finished_at", "rolled_back_at" FROM "_prisma_migrations" ORDER BY "started_at", "migration_name"`,
    );
    const live = rows.filter((r) => r.rolled_back_at === null);
    const failed = live.find((r) => r.finished_at === null);
    if (failed) {
      throw new MigrationError(
        'MIGRATION_FAILED',
        `migration ${failed.migration_name} started but never finished; repair the database and mark it (prisma migrate resolve), then restart`,
        { migration: failed.migration_name },
      );
    }
    const known = new Map(files.map((f) => [f.name, f]));
    const applied = new Map(live.map((r) => [r.migration_name, r]));
    for (const r of live) {
      const f = known.get(r.migration_name);
      if (!f) {
        throw new MigrationError(
          'MIGRATION_UNKNOWN',
          `the database has migration ${r.migration_name}, which this build does not have (was it migrated by a newer version?)`,
          { migration: r.migration_name, dir },
        );
      }
      if (!sameChecksum(r.checksum, f.sql)) {
        throw new MigrationError(
          'MIGRATION_CHECKSUM',
          `migration ${f.name} was changed after it was applied (checksum ${r.checksum} in the database, ${f.checksum} on disk); restore the file and add a new migration instead`,
          { migration: f.name, applied: r.checksum, onDisk: f.checksum },
        );
      }
    }
    const report: MigrationReport = { applied: [], skipped: [] };
    for (const f of files) {
      if (applied.has(f.name)) {
        report.skipped.push(f.name);
        continue;
      }
      await applyOne(conn, f);
      report.applied.push(f.name);
      log(`applied migration ${f.name}`, { migration: f.name });
    }
    return report;
  } finally {
    if (pg) await conn.query(`SELECT pg_advisory_unlock(${PG_LOCK_KEY})`);
  }
}

/** Exact bytes, or the same script with CRLF line ends (a Windows checkout of the same commit). */
function sameChecksum(stored: string, sql: string): boolean {
  return stored === migrationChecksum(sql) || stored === migrationChecksum(sql.replace(/\r\n/g, '\n')) || stored === migrationChecksum(sql.replace(/\r?\n/g, '\r\n'));
}

async function applyOne(conn: SqlConnection, f: MigrationFile): Promise<void> {
  const pg = conn.provider === 'postgresql';
  const now = (): unknown => (pg ? new Date() : Date.now());
  const p = (i: number) => (pg ? `$${i}` : '?');
  const id = randomUUID();
  await conn.exec(pg ? 'BEGIN' : 'BEGIN IMMEDIATE');
  try {
    // The row goes in with the schema change, in one transaction: both happen or neither.
    await conn.query(
      `INSERT INTO "_prisma_migrations" ("id", "checksum", "migration_name", "started_at", "applied_steps_count") VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, 0)`,
      [id, f.checksum, f.name, now()],
    );
    await conn.exec(f.sql);
    await conn.query(`UPDATE "_prisma_migrations" SET "finished_at" = ${p(1)}, "applied_steps_count" = 1 WHERE "id" = ${p(2)}`, [now(), id]);
    await conn.exec('COMMIT');
  } catch (err) {
    await conn.exec('ROLLBACK').catch(() => {});
    // Nothing of it stayed: record it as rolled back (Prisma applies such a migration again next time).
    const message = (err as Error).message;
    await conn
      .query(
        `INSERT INTO "_prisma_migrations" ("id", "checksum", "migration_name", "started_at", "rolled_back_at", "logs", "applied_steps_count") VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)}, ${p(6)}, 0)`,
        [id, f.checksum, f.name, now(), now(), message],
      )
      .catch(() => {});
    throw new MigrationError('MIGRATION_ERROR', `migration ${f.name} failed and was rolled back: ${message}`, { migration: f.name });
  }
}
