/**
 * Opening the database: migrate it with our runner (raw driver connection), then connect Prisma
 * Client through a driver adapter (better-sqlite3 or pg), so no Prisma engine binary is ever needed.
 * Prisma generates one client per provider; both are committed under ./generated (`npm run
 * db:generate`) and have the same model API, so the rest of the server is typed against the SQLite one.
 */
import { PrismaBetterSqlite3 } from '@prisma/adapter-better-sqlite3';
import { PrismaPg } from '@prisma/adapter-pg';
import type BetterSqlite3 from 'better-sqlite3';

import { databaseProvider } from '../config.js';
import { PrismaClient as PostgresClient } from './generated/postgres/client.js';
import { PrismaClient as SqliteClient } from './generated/sqlite/client.js';
import { defaultMigrationsDir, migrate, type MigrationReport } from './migrate.js';
import { openSqlConnection, openSqlite, sqlitePath, type Provider } from './sql.js';

/** The Prisma Client the repositories use (the PostgreSQL client has the same API). */
export type Db = SqliteClient;

/** An open database. */
export interface Database {
  readonly provider: Provider;
  readonly prisma: Db;
  /** What migration did at open. */
  readonly migrations: MigrationReport;
  /**
   * SQLite only: a second, raw better-sqlite3 connection to the same file for the few hot paths where
   * Prisma's per-query cost matters (the online observation log). Its busy timeout is 0: a caller
   * retries SQLITE_BUSY asynchronously, never blocking the event loop while a Prisma transaction
   * holds the write lock. Null for PostgreSQL.
   */
  readonly sqlite: BetterSqlite3.Database | null;
  /** Throws when the database does not answer. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface OpenDatabaseOptions {
  /** Default: the repository's prisma/migrations (or prisma/postgres/migrations). */
  migrationsDir?: string;
  log?: (msg: string, data?: Record<string, unknown>) => void;
}

/** Migrates the database at `url` (creating a SQLite file and its folder if needed) and connects. */
export async function openDatabase(url: string, options: OpenDatabaseOptions = {}): Promise<Database> {
  const provider = databaseProvider(url);
  const conn = await openSqlConnection(url, provider);
  let migrations: MigrationReport;
  try {
    migrations = await migrate(conn, options.migrationsDir ?? defaultMigrationsDir(provider), options.log);
  } finally {
    await conn.close();
  }
  const prisma: Db =
    provider === 'sqlite'
      ? new SqliteClient({ adapter: new PrismaBetterSqlite3({ url: sqlitePath(url), timeout: 10_000 }) })
      : (new PostgresClient({ adapter: new PrismaPg({ connectionString: url }) }) as unknown as Db);
  await prisma.$connect();
  if (provider === 'sqlite') {
    // Per connection: every commit reaches the disk before it returns (an acknowledged write survives a crash).
    await prisma.$executeRawUnsafe('PRAGMA synchronous = FULL');
  }
  let sqlite: BetterSqlite3.Database | null = null;
  if (provider === 'sqlite') {
    sqlite = openSqlite(url);
    sqlite.pragma('busy_timeout = 0');
  }
  return {
    provider,
    prisma,
    migrations,
    sqlite,
    async ping() {
      await prisma.$queryRawUnsafe('SELECT 1');
    },
    async close() {
      sqlite?.close();
      await prisma.$disconnect();
    },
  };
}
