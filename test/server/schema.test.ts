/**
 * The hand-written migrations match prisma/schema.prisma exactly (checked against the SQLite
 * database they build: columns, types, nullability, defaults, foreign keys with their onDelete,
 * indexes), the PostgreSQL schema and migrations mirror the SQLite ones, and the committed generated
 * clients are current. Prisma's own `migrate diff` needs the schema engine, which cannot be
 * downloaded here, so this is our check instead.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { migrate } from '../../src/server/db/migrate.js';
import { openSqlConnection } from '../../src/server/db/sql.js';
import { cleanupTemp, tempDir } from './helpers.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const read = (p: string) => readFileSync(join(ROOT, p), 'utf8');

interface Field {
  name: string;
  type: string;
  optional: boolean;
  list: boolean;
  attrs: string;
}
interface Model {
  name: string;
  fields: Field[];
  blockAttrs: string[];
}

/** Enough of a Prisma schema parser for our schema (models, enums, attributes on one line). */
function parseSchema(text: string): { models: Model[]; enums: Map<string, string[]> } {
  const models: Model[] = [];
  const enums = new Map<string, string[]>();
  let current: { kind: 'model' | 'enum'; name: string; body: string[] } | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\/\/.*$/, '').trim();
    if (!line) continue;
    const open = /^(model|enum)\s+(\w+)\s*\{$/.exec(line);
    if (open) {
      current = { kind: open[1] as 'model' | 'enum', name: open[2]!, body: [] };
      continue;
    }
    if (line === '}' && current) {
      if (current.kind === 'enum') enums.set(current.name, current.body);
      else {
        const fields: Field[] = [];
        const blockAttrs: string[] = [];
        for (const l of current.body) {
          if (l.startsWith('@@')) blockAttrs.push(l);
          else {
            const m = /^(\w+)\s+(\w+)(\?|\[\])?\s*(.*)$/.exec(l)!;
            fields.push({ name: m[1]!, type: m[2]!, optional: m[3] === '?', list: m[3] === '[]', attrs: m[4] ?? '' });
          }
        }
        models.push({ name: current.name, fields, blockAttrs });
      }
      current = null;
      continue;
    }
    if (current) current.body.push(line);
  }
  return { models, enums };
}

const SQLITE_TYPE: Record<string, string> = { String: 'TEXT', Int: 'INTEGER', Boolean: 'BOOLEAN', DateTime: 'DATETIME', Json: 'JSONB', Float: 'REAL', Bytes: 'BLOB', BigInt: 'BIGINT' };
const ON_DELETE: Record<string, string> = { Cascade: 'CASCADE', Restrict: 'RESTRICT', SetNull: 'SET NULL', NoAction: 'NO ACTION', SetDefault: 'SET DEFAULT' };
const list = (s: string) => s.split(',').map((x) => x.trim()).filter(Boolean);

const schema = parseSchema(read('prisma/schema.prisma'));
const modelNames = new Set(schema.models.map((m) => m.name));

let db: Database.Database;

beforeAll(async () => {
  const file = join(tempDir('schema-'), 'schema.db');
  const conn = await openSqlConnection(`file:${file}`, 'sqlite');
  await migrate(conn);
  await conn.close();
  db = new Database(file, { readonly: true });
});
afterAll(() => {
  db?.close();
  cleanupTemp();
});

describe('SQLite migrations against prisma/schema.prisma', () => {
  it('create exactly the models as tables', () => {
    const tables = (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != '_prisma_migrations'`).all() as { name: string }[]).map((t) => t.name);
    expect(tables.sort()).toEqual([...modelNames].sort());
  });

  for (const model of schema.models) {
    describe(model.name, () => {
      const scalar = model.fields.filter((f) => !modelNames.has(f.type));

      it('has every scalar field as a column of the right type, nullability and default', () => {
        const cols = db.prepare(`PRAGMA table_info("${model.name}")`).all() as { name: string; type: string; notnull: number; dflt_value: string | null; pk: number }[];
        expect(cols.map((c) => c.name)).toEqual(scalar.map((f) => f.name));
        for (const f of scalar) {
          const c = cols.find((x) => x.name === f.name)!;
          const type = schema.enums.has(f.type) ? 'TEXT' : SQLITE_TYPE[f.type];
          expect(c.type, `${model.name}.${f.name} type`).toBe(type);
          expect(c.notnull === 1 || c.pk === 1, `${model.name}.${f.name} NOT NULL`).toBe(!f.optional);
          expect(c.pk === 1, `${model.name}.${f.name} primary key`).toBe(f.attrs.includes('@id'));
          const def = /@default\(([^)]*\)?)\)/.exec(f.attrs)?.[1];
          const expected = def === undefined ? null : def === 'now()' ? 'CURRENT_TIMESTAMP' : schema.enums.has(f.type) ? `'${def}'` : def;
          expect(c.dflt_value, `${model.name}.${f.name} default`).toBe(expected);
        }
      });

      it('has each relation as a foreign key with its onDelete, and an index on it', () => {
        const fks = db.prepare(`PRAGMA foreign_key_list("${model.name}")`).all() as { table: string; from: string; to: string; on_delete: string; on_update: string }[];
        const relations = model.fields.filter((f) => f.attrs.includes('@relation('));
        expect(fks).toHaveLength(relations.length);
        const indexes = (db.prepare(`PRAGMA index_list("${model.name}")`).all() as { name: string }[]).map(
          (i) => (db.prepare(`PRAGMA index_info("${i.name}")`).all() as { name: string }[]).map((c) => c.name),
        );
        for (const r of relations) {
          const from = list(/fields:\s*\[([^\]]*)\]/.exec(r.attrs)![1]!)[0]!;
          const onDelete = /onDelete:\s*(\w+)/.exec(r.attrs)?.[1];
          expect(onDelete, `${model.name}.${r.name} has an explicit onDelete`).toBeDefined();
          const fk = fks.find((k) => k.from === from);
          expect(fk, `${model.name}.${from} foreign key`).toMatchObject({ table: r.type, to: 'id', on_delete: ON_DELETE[onDelete!], on_update: 'CASCADE' });
          expect(indexes.some((cols) => cols[0] === from), `an index leads with ${model.name}.${from}`).toBe(true);
        }
      });

      it('has the unique and plain indexes the schema declares, named as Prisma names them', () => {
        const expected: { name: string; unique: boolean; cols: string[] }[] = [];
        for (const f of scalar) if (/@unique\b/.test(f.attrs)) expected.push({ name: `${model.name}_${f.name}_key`, unique: true, cols: [f.name] });
        for (const a of model.blockAttrs) {
          const m = /^@@(unique|index)\(\[([^\]]*)\]\)$/.exec(a)!;
          const cols = list(m[2]!);
          expected.push({ name: `${model.name}_${cols.join('_')}_${m[1] === 'unique' ? 'key' : 'idx'}`, unique: m[1] === 'unique', cols });
        }
        const actual = (db.prepare(`PRAGMA index_list("${model.name}")`).all() as { name: string; unique: number; origin: string }[])
          .filter((i) => i.origin === 'c')
          .map((i) => ({ name: i.name, unique: i.unique === 1, cols: (db.prepare(`PRAGMA index_info("${i.name}")`).all() as { name: string }[]).map((c) => c.name) }));
        const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);
        expect(actual.sort(byName)).toEqual(expected.sort(byName));
      });
    });
  }
});

describe('the PostgreSQL flavour', () => {
  const modelsPart = (text: string) => text.slice(text.indexOf('// --- models'));

  it('has the same models as the SQLite schema', () => {
    expect(modelsPart(read('prisma/postgres/schema.prisma'))).toBe(modelsPart(read('prisma/schema.prisma')));
    expect(read('prisma/postgres/schema.prisma')).toMatch(/provider\s*=\s*"postgresql"/);
    expect(read('prisma/postgres/migrations/migration_lock.toml')).toMatch(/provider = "postgresql"/);
    expect(read('prisma/migrations/migration_lock.toml')).toMatch(/provider = "sqlite"/);
  });

  /** Tables with their columns (name, NOT NULL), index names, and foreign keys (name → ON DELETE) of a migration history. */
  function summarise(dir: string) {
    const tables = new Map<string, string[]>();
    const indexes: string[] = [];
    const fks: string[] = [];
    for (const name of readdirSync(join(ROOT, dir)).filter((n) => /^\d+_/.test(n)).sort()) {
      const sql = read(`${dir}/${name}/migration.sql`);
      for (const m of sql.matchAll(/CREATE TABLE "(\w+)" \(([\s\S]*?)\n\);/g)) {
        const cols = [...m[2]!.matchAll(/^\s+"(\w+)" ("?\w+"?(?:\(\d+\))?)([^,\n]*)/gm)].map((c) => `${c[1]} ${c[3]!.includes('NOT NULL') ? 'NOT NULL' : 'NULL'}`);
        tables.set(m[1]!, cols);
      }
      for (const m of sql.matchAll(/CREATE (UNIQUE )?INDEX "(\w+)"/g)) indexes.push(`${m[1] ?? ''}${m[2]}`);
      for (const m of sql.matchAll(/CONSTRAINT "(\w+_fkey)" FOREIGN KEY[^;\n]*ON DELETE (CASCADE|RESTRICT|SET NULL)/g)) fks.push(`${m[1]} ${m[2]}`);
    }
    return { tables: Object.fromEntries([...tables].sort()), indexes: indexes.sort(), fks: fks.sort() };
  }

  it('has migrations that mirror the SQLite ones (folders, tables, columns, indexes, foreign keys)', () => {
    const folders = (dir: string) => readdirSync(join(ROOT, dir)).filter((n) => /^\d+_/.test(n)).sort();
    expect(folders('prisma/postgres/migrations')).toEqual(folders('prisma/migrations'));
    const pg = summarise('prisma/postgres/migrations');
    const lite = summarise('prisma/migrations');
    expect(pg).toEqual(lite);
    expect(Object.keys(pg.tables).sort()).toEqual([...modelNames].sort());
    expect(pg.fks.length).toBeGreaterThan(5);
  });

  it('declares every enum of the schema as a type', () => {
    const sql = folders().map((n) => read(`prisma/postgres/migrations/${n}/migration.sql`)).join('\n');
    for (const [name, values] of schema.enums) {
      expect(sql).toContain(`CREATE TYPE "${name}" AS ENUM (${values.map((v) => `'${v}'`).join(', ')});`);
    }
    function folders() {
      return readdirSync(join(ROOT, 'prisma/postgres/migrations')).filter((n) => /^\d+_/.test(n)).sort();
    }
  });
});

describe('the committed Prisma clients', () => {
  it.each([
    ['sqlite', 'prisma/schema.prisma'],
    ['postgres', 'prisma/postgres/schema.prisma'],
  ])('%s was generated from the current schema (else: npm run db:generate)', (flavour, schemaFile) => {
    const cls = read(`src/server/db/generated/${flavour}/internal/class.ts`);
    const m = /"inlineSchema": ("(?:[^"\\]|\\.)*")/.exec(cls);
    expect(m).not.toBeNull();
    expect(JSON.parse(m![1]!)).toBe(read(schemaFile));
  });
});
