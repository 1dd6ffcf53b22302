/** Jobs, their events and the checkpoints they made; jobs are always seen through their owner. */
import type { Db } from '../db/database.js';
import type { Prisma } from '../db/generated/sqlite/client.js';
import type { Page } from './adapters.js';

export type JobStatus = 'queued' | 'validating' | 'running' | 'paused' | 'succeeded' | 'failed' | 'cancelled';
export type EventLevel = 'debug' | 'info' | 'warn' | 'error';

export interface JobParams {
  epochs: number;
  batchSize: number;
  validationSplit: number;
  checkpointEvery: number;
  progressEvery: number;
}

export interface JobRecord {
  id: string;
  ownerId: string;
  adapterId: string;
  datasetId: string;
  status: JobStatus;
  params: JobParams;
  idempotencyKey: string | null;
  progress: Record<string, unknown>;
  errorCode: string | null;
  errorMessage: string | null;
  startedAt: Date | null;
  finishedAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface JobEventRecord {
  seq: number;
  level: EventLevel;
  type: string;
  data: Record<string, unknown>;
  createdAt: Date;
}

const jobFields = {
  id: true, ownerId: true, adapterId: true, datasetId: true, status: true, params: true, idempotencyKey: true, progress: true,
  errorCode: true, errorMessage: true, startedAt: true, finishedAt: true, createdAt: true, updatedAt: true,
} as const;

type JobRow = Prisma.JobGetPayload<{ select: typeof jobFields }>;

function toJob(r: JobRow): JobRecord {
  return { ...r, params: r.params as unknown as JobParams, progress: r.progress as Record<string, unknown> };
}

export class JobRepository {
  constructor(private readonly db: Db) {}

  async create(j: { id: string; ownerId: string; adapterId: string; datasetId: string; params: JobParams; idempotencyKey: string | null }): Promise<JobRecord> {
    const row = await this.db.job.create({
      data: { ...j, params: j.params as unknown as Prisma.InputJsonValue, progress: {} },
      select: jobFields,
    });
    return toJob(row);
  }

  async get(id: string, ownerId: string): Promise<JobRecord | null> {
    const r = await this.db.job.findFirst({ where: { id, ownerId }, select: jobFields });
    return r && toJob(r);
  }

  /** Any owner's job (the runner's view). */
  async byId(id: string): Promise<JobRecord | null> {
    const r = await this.db.job.findUnique({ where: { id }, select: jobFields });
    return r && toJob(r);
  }

  async byIdempotencyKey(ownerId: string, key: string): Promise<JobRecord | null> {
    const r = await this.db.job.findFirst({ where: { ownerId, idempotencyKey: key }, select: jobFields });
    return r && toJob(r);
  }

  async list(ownerId: string, opts: { limit: number; cursor?: string; adapterId?: string; status?: JobStatus }): Promise<Page<JobRecord>> {
    const rows = await this.db.job.findMany({
      where: { ownerId, ...(opts.adapterId && { adapterId: opts.adapterId }), ...(opts.status && { status: opts.status }), ...(opts.cursor && { id: { gt: opts.cursor } }) },
      orderBy: { id: 'asc' },
      take: opts.limit + 1,
      select: jobFields,
    });
    const items = rows.slice(0, opts.limit).map(toJob);
    return { items, nextCursor: rows.length > opts.limit ? items[items.length - 1]!.id : null };
  }

  /** Jobs in any of `statuses`, oldest first (start-up recovery). */
  async withStatus(statuses: JobStatus[]): Promise<JobRecord[]> {
    const rows = await this.db.job.findMany({ where: { status: { in: statuses } }, orderBy: { id: 'asc' }, select: jobFields });
    return rows.map(toJob);
  }

  /**
   * Moves a job to `to` only if it is in one of `from` (compare-and-set, so a cancel and the runner
   * never overwrite each other); true when it moved.
   */
  async transition(
    id: string,
    from: JobStatus[],
    to: JobStatus,
    extra: { progress?: Record<string, unknown>; errorCode?: string | null; errorMessage?: string | null; startedAt?: Date; finishedAt?: Date } = {},
  ): Promise<boolean> {
    const { progress, ...rest } = extra;
    const res = await this.db.job.updateMany({
      where: { id, status: { in: from } },
      data: { status: to, ...rest, ...(progress && { progress: progress as Prisma.InputJsonValue }) },
    });
    return res.count > 0;
  }

  async setProgress(id: string, progress: Record<string, unknown>): Promise<void> {
    await this.db.job.update({ where: { id }, data: { progress: progress as Prisma.InputJsonValue } });
  }

  async appendEvent(jobId: string, e: { id: string; seq: number; level: EventLevel; type: string; data: Record<string, unknown> }): Promise<JobEventRecord> {
    const row = await this.db.jobEvent.create({ data: { ...e, jobId, data: e.data as Prisma.InputJsonValue } });
    return { seq: row.seq, level: row.level, type: row.type, data: row.data as Record<string, unknown>, createdAt: row.createdAt };
  }

  async lastSeq(jobId: string): Promise<number> {
    const r = await this.db.jobEvent.findFirst({ where: { jobId }, orderBy: { seq: 'desc' }, select: { seq: true } });
    return r?.seq ?? 0;
  }

  /** Events with seq > `after`, in order; only those of `types` when given. */
  async events(jobId: string, after: number, limit: number, types?: readonly string[]): Promise<JobEventRecord[]> {
    const rows = await this.db.jobEvent.findMany({ where: { jobId, seq: { gt: after }, ...(types && { type: { in: [...types] } }) }, orderBy: { seq: 'asc' }, take: limit });
    return rows.map((r) => ({ seq: r.seq, level: r.level, type: r.type, data: r.data as Record<string, unknown>, createdAt: r.createdAt }));
  }

  /** Adds the job's metrics to a checkpoint row the online service wrote. */
  async mergeCheckpointMetrics(id: string, metrics: Record<string, unknown>): Promise<void> {
    const row = await this.db.adapterCheckpoint.findUnique({ where: { id }, select: { metrics: true } });
    if (!row) return;
    await this.db.adapterCheckpoint.update({ where: { id }, data: { metrics: { ...(row.metrics as Record<string, unknown>), ...metrics } as Prisma.InputJsonValue } });
  }
}
