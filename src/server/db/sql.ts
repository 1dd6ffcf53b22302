/**
 * A raw SQL connection for the migration runner, one per provider: better-sqlite3 for SQLite, pg for
 * PostgreSQL. Prisma Client cannot run a multi-statement migration script, so migrations go through
 * these, before Prisma Client connects.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

import Database from 'better-sqlite3';
import pg from 'pg';

export type Provider = 'sqlite' | 'postgresql';

/** The few things the migration runner needs from a database connection. */
export interface SqlConnection {
  readonly provider: Provider;
  /** Runs a script of one or more statements, no parameters. */
  exec(sql: string): Promise<void>;
  /** Runs one statement with `?` (SQLite) or `$1` (PostgreSQL) parameters and returns its rows. */
  query<T = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

/** The file path of a SQLite URL (`file:./x.db`, `file:/abs/x.db`, `sqlite:x.db` or a plain path). */
export function sqlitePath(url: string): string {
  const path = url.replace(/^(file|sqlite):(\/\/)?/i, '').replace(/\?.*$/, '');
  if (path === '') throw new RangeError(`database URL '${url}' names no file`);
  return path;
}

/**
 * Opens a SQLite file (creating its folder), in WAL mode with synchronous=FULL: a committed write
 * survives a crash of the process and of the machine.
 */
export function openSqlite(url: string): Database.Database {
  const path = sqlitePath(url);
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path, { timeout: 10_000 });
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  return db;
}

class SqliteConnection implements SqlConnection {
  readonly provider = 'sqlite' as const;
  constructor(private readonly db: Database.Database) {}
  async exec(sql: string): Promise<void> {
    this.db.exec(sql);
  }
  async query<T>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
    const stmt = this.db.prepare(sql);
    if (stmt.reader) return stmt.all(...params) as T[];
    stmt.run(...params);
    return [];
  }
  async close(): Promise<void> {
    this.db.close();
  }
}

class PostgresConnection implements SqlConnection {
  readonly provider = 'postgresql' as const;
  constructor(private readonly client: pg.Client) {}
  async exec(sql: string): Promise<void> {
    await this.client.query(sql);
  }
  async query<T>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
    const res = await this.client.query(sql, params as unknown[]);
    return res.rows as T[];
  }
  async close(): Promise<void> {
    await this.client.end();
  }
}

/** Opens a raw connection for `url` (see config.databaseProvider for how the provider is chosen). */
export async function openSqlConnection(url: string, provider: Provider): Promise<SqlConnection> {
  if (provider === 'sqlite') return new SqliteConnection(openSqlite(url));
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return new PostgresConnection(client);
}
