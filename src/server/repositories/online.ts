/**
 * Online state storage: the observation log (one row per accepted update, `seq` = the adapter step it
 * produced), the adapter's committed step, and the checkpoints (state snapshots) that recovery starts
 * from. A commit writes the log row and the new step in one transaction, so the log and the step
 * never disagree. A job's steps carry its id in the log, so its completed steps are counted exactly.
 */
import type BetterSqlite3 from 'better-sqlite3';

import type { Db } from '../db/database.js';
import type { Prisma } from '../db/generated/sqlite/client.js';
import { ConflictError } from '../errors.js';
import type { AdapterConfig } from './adapters.js';
import { isUniqueViolation } from './errors.js';

/** What the online service needs of an adapter row. */
export interface OnlineAdapterRow {
  id: string;
  ownerId: string;
  modelId: string;
  optimizerType: string;
  config: AdapterConfig;
  step: number;
  metrics: Record<string, unknown>;
}

export interface ObservationRow {
  seq: number;
  inputs: unknown;
  labels: unknown;
}

/** One accepted update to log. */
export interface CommitInput {
  id: string;
  adapterId: string;
  seq: number;
  inputs: unknown;
  labels: unknown;
  metrics: Record<string, unknown>;
  /** The job whose step this is (null or absent for an observe); stored with the row, so a job's step count is exact. */
  jobId?: string | null;
}

export type CheckpointKind = 'snapshot' | 'job' | 'manual';

export interface CheckpointRecord {
  id: string;
  adapterId: string;
  jobId: string | null;
  kind: CheckpointKind;
  step: number;
  metrics: Record<string, unknown>;
  noiseR: unknown;
  pSummary: Record<string, unknown>;
  tensorPath: string;
  tensorSha256: string;
  tensorSize: number;
  createdAt: Date;
}

export interface NewCheckpoint {
  id: string;
  adapterId: string;
  jobId: string | null;
  kind: CheckpointKind;
  step: number;
  metrics: Record<string, unknown>;
  noiseR: unknown;
  pSummary: Record<string, unknown>;
  tensorPath: string;
  tensorSha256: string;
  tensorSize: number;
}

const ckFields = {
  id: true, adapterId: true, jobId: true, kind: true, step: true, metrics: true, noiseR: true, pSummary: true, tensorPath: true, tensorSha256: true, tensorSize: true, createdAt: true,
} as const;

type CkRow = Prisma.AdapterCheckpointGetPayload<{ select: typeof ckFields }>;

function toCheckpoint(r: CkRow): CheckpointRecord {
  return { ...r, metrics: r.metrics as Record<string, unknown>, pSummary: r.pSummary as Record<string, unknown> };
}

/** How long a raw commit retries while another connection holds SQLite's write lock. */
const BUSY_RETRY_MS = 10_000;

export class OnlineRepository {
  private readonly rawBatch: ((batch: CommitInput[]) => (Error | null)[]) | null = null;
  private pending: { o: CommitInput; resolve: () => void; reject: (err: unknown) => void }[] = [];
  private flushing = false;

  /**
   * `sqlite`: the raw connection of a SQLite database (db/database.ts). Commits then go through
   * prepared statements with group commit: every commit requested in the same event-loop turn shares
   * one IMMEDIATE transaction and so one fsync (each in its own savepoint, so one conflict fails
   * only itself). On this kind of disk an fsync costs ~4 ms, most of an observe. PostgreSQL (null)
   * uses a Prisma transaction per commit.
   */
  constructor(
    private readonly db: Db,
    sqlite: BetterSqlite3.Database | null = null,
  ) {
    if (sqlite) {
      const step = sqlite.prepare('UPDATE "Adapter" SET "step" = ?, "metrics" = ?, "updatedAt" = ? WHERE "id" = ? AND "step" = ?');
      const insert = sqlite.prepare('INSERT INTO "Observation" ("id", "adapterId", "seq", "inputs", "labels", "createdAt", "jobId") VALUES (?, ?, ?, ?, ?, ?, ?)');
      const one = sqlite.transaction((o: CommitInput, now: string) => {
        if (step.run(o.seq, JSON.stringify(o.metrics), now, o.adapterId, o.seq - 1).changes !== 1) throw conflict(o.adapterId, o.seq);
        insert.run(o.id, o.adapterId, o.seq, JSON.stringify(o.inputs), JSON.stringify(o.labels), now, o.jobId ?? null);
      });
      const all = sqlite.transaction((batch: CommitInput[]) => {
        // Prisma's SQLite text form of DateTime.
        const now = new Date().toISOString().replace('Z', '+00:00');
        return batch.map((o) => {
          try {
            one(o, now);
            return null;
          } catch (err) {
            const code = (err as { code?: unknown }).code;
            if (code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE') return conflict(o.adapterId, o.seq);
            if (err instanceof ConflictError) return err;
            throw err;
          }
        });
      });
      this.rawBatch = (batch) => all.immediate(batch);
    }
  }

  /** The adapter, whoever owns it (callers check ownership), else null. */
  async adapter(id: string): Promise<OnlineAdapterRow | null> {
    const r = await this.db.adapter.findUnique({
      where: { id },
      select: { id: true, ownerId: true, modelId: true, optimizerType: true, config: true, step: true, metrics: true },
    });
    return r && { ...r, config: r.config as unknown as AdapterConfig, metrics: r.metrics as Record<string, unknown> };
  }

  /**
   * Appends observation `seq` and moves the adapter to step `seq` in one transaction, durable (fsynced)
   * when this resolves. STATE_CONFLICT (409) when `seq` is taken or the adapter is not at `seq - 1`
   * (another writer got there first); then nothing is written.
   */
  async commit(o: CommitInput): Promise<void> {
    if (this.rawBatch) {
      return new Promise<void>((resolve, reject) => {
        this.pending.push({ o, resolve, reject });
        if (!this.flushing) {
          this.flushing = true;
          setImmediate(() => void this.flush(this.rawBatch!));
        }
      });
    }
    try {
      await this.db.$transaction(async (tx) => {
        const updated = await tx.adapter.updateMany({ where: { id: o.adapterId, step: o.seq - 1 }, data: { step: o.seq, metrics: o.metrics as Prisma.InputJsonValue } });
        if (updated.count !== 1) throw conflict(o.adapterId, o.seq);
        await tx.observation.create({
          data: { id: o.id, adapterId: o.adapterId, seq: o.seq, inputs: o.inputs as Prisma.InputJsonValue, labels: o.labels as Prisma.InputJsonValue, jobId: o.jobId ?? null },
          select: { id: true },
        });
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw conflict(o.adapterId, o.seq);
      throw err;
    }
  }

  /** Commits everything pending in one transaction; retries while another connection holds the write lock. */
  private async flush(run: (batch: CommitInput[]) => (Error | null)[]): Promise<void> {
    let until = Date.now() + BUSY_RETRY_MS;
    let wait = 1;
    while (this.pending.length > 0) {
      const batch = this.pending;
      this.pending = [];
      let busy = false;
      try {
        const results = run(batch.map((p) => p.o));
        batch.forEach((p, i) => (results[i] ? p.reject(results[i]) : p.resolve()));
        until = Date.now() + BUSY_RETRY_MS;
        wait = 1;
      } catch (err) {
        busy = (err as { code?: unknown }).code === 'SQLITE_BUSY' && Date.now() < until;
        if (busy) this.pending = batch.concat(this.pending);
        else batch.forEach((p) => p.reject(err));
      }
      if (busy) {
        // Another connection (Prisma's) holds the write lock across an await: let it finish.
        await new Promise((r) => setTimeout(r, wait));
        wait = Math.min(wait * 2, 50);
      } else if (this.pending.length > 0) {
        await new Promise((r) => setImmediate(r));
      }
    }
    this.flushing = false;
  }

  /**
   * Adapters whose committed step is past their latest checkpoint (their state after the last
   * snapshot exists only as logged observations): the ones a crash left to be recovered.
   */
  async adaptersBehindSnapshot(): Promise<{ id: string; step: number; checkpointStep: number }[]> {
    const rows = await this.db.adapter.findMany({
      where: { step: { gt: 0 } },
      select: { id: true, step: true, checkpoints: { orderBy: { step: 'desc' }, take: 1, select: { step: true } } },
      orderBy: { updatedAt: 'desc' },
    });
    return rows
      .map((r) => ({ id: r.id, step: r.step, checkpointStep: r.checkpoints[0]?.step ?? 0 }))
      .filter((r) => r.step > r.checkpointStep);
  }

  /** Logged observations with `seq > after`, in order. */
  async observations(adapterId: string, after: number): Promise<ObservationRow[]> {
    return this.db.observation.findMany({ where: { adapterId, seq: { gt: after } }, orderBy: { seq: 'asc' }, select: { seq: true, inputs: true, labels: true } });
  }

  observationCount(adapterId: string): Promise<number> {
    return this.db.observation.count({ where: { adapterId } });
  }

  /**
   * How many logged steps of `adapterId` job `jobId` made: its completed steps, exact, since each is
   * written in the same transaction as the adapter's step.
   */
  jobStepCount(adapterId: string, jobId: string): Promise<number> {
    return this.db.observation.count({ where: { adapterId, jobId } });
  }

  /** Stores a checkpoint; one of the same (adapter, kind, step) is kept as it is and returned. */
  async saveCheckpoint(c: NewCheckpoint): Promise<CheckpointRecord> {
    const data = { ...c, metrics: c.metrics as Prisma.InputJsonValue, noiseR: c.noiseR as Prisma.InputJsonValue, pSummary: c.pSummary as Prisma.InputJsonValue };
    const r = await this.db.adapterCheckpoint.upsert({
      where: { adapterId_kind_step: { adapterId: c.adapterId, kind: c.kind, step: c.step } },
      create: data,
      update: {},
      select: ckFields,
    });
    return toCheckpoint(r);
  }

  /** The checkpoint with the highest step ≤ `maxStep` (any kind), else null. */
  async latestCheckpoint(adapterId: string, maxStep: number): Promise<CheckpointRecord | null> {
    const r = await this.db.adapterCheckpoint.findFirst({ where: { adapterId, step: { lte: maxStep } }, orderBy: [{ step: 'desc' }, { createdAt: 'desc' }], select: ckFields });
    return r && toCheckpoint(r);
  }

  /** A checkpoint at exactly `step` (any kind), else null. */
  async checkpointAt(adapterId: string, step: number): Promise<CheckpointRecord | null> {
    const r = await this.db.adapterCheckpoint.findFirst({ where: { adapterId, step }, orderBy: { createdAt: 'desc' }, select: ckFields });
    return r && toCheckpoint(r);
  }

  async listCheckpoints(adapterId: string, opts: { jobId?: string } = {}): Promise<CheckpointRecord[]> {
    const rows = await this.db.adapterCheckpoint.findMany({ where: { adapterId, ...(opts.jobId && { jobId: opts.jobId }) }, orderBy: [{ step: 'asc' }, { createdAt: 'asc' }], select: ckFields });
    return rows.map(toCheckpoint);
  }
}

function conflict(adapterId: string, seq: number): ConflictError {
  return new ConflictError('STATE_CONFLICT', `adapter '${adapterId}' was updated by another writer (step ${seq} is taken); retry`, { adapterId, step: seq });
}
