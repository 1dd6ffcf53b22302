/** Job resources: the creation request, jobs, events and checkpoints as the job routes return them. */
import { z } from 'zod';

import type { JobEventRecord, JobRecord } from '../repositories/index.js';
import { Timestamp } from './common.js';

const JobStatusSchema = z.enum(['queued', 'validating', 'running', 'paused', 'succeeded', 'failed', 'cancelled']);

export const CreateJobBody = z.object({
  adapterId: z.string().min(1).max(100),
  datasetId: z.string().min(1).max(100),
  epochs: z.number().int().min(1).max(1000).default(1),
  batchSize: z.number().int().min(1).max(4096).default(16),
  validationSplit: z.number().min(0).max(0.9).default(0.2).describe('share of the rows held out and evaluated after each epoch (0: none)'),
  checkpointEvery: z.number().int().min(0).default(0).describe('a checkpoint every this many steps (0: only at the end; there is always one at the end)'),
  progressEvery: z.number().int().min(1).default(10).describe('a progress event every this many steps'),
});

export const IdempotencyHeaders = z.object({
  'idempotency-key': z.string().min(1).max(200).optional().describe('the same key from the same user returns the first job (200) instead of creating another'),
});

export const JobSchema = z.object({
  id: z.string(),
  adapterId: z.string(),
  datasetId: z.string(),
  status: JobStatusSchema,
  params: z.object({ epochs: z.number().int(), batchSize: z.number().int(), validationSplit: z.number(), checkpointEvery: z.number().int(), progressEvery: z.number().int() }),
  progress: z.record(z.string(), z.unknown()).describe('{epoch, step, totalSteps, fraction, adapterStep, trainLoss, trainAccuracy, validation}'),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  idempotencyKey: z.string().nullable(),
  createdAt: Timestamp,
  updatedAt: Timestamp,
  startedAt: Timestamp.nullable(),
  finishedAt: Timestamp.nullable(),
});

export const JobListQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(100),
  cursor: z.string().max(100).optional(),
  adapterId: z.string().max(100).optional(),
  status: JobStatusSchema.optional(),
});

export const JobListSchema = z.object({ items: z.array(JobSchema), nextCursor: z.string().nullable() });

export const JobEventSchema = z.object({
  seq: z.number().int(),
  level: z.enum(['debug', 'info', 'warn', 'error']),
  type: z.string().describe('queued, validating, started, progress, validation, epoch, checkpoint, paused, resumed, finished, failed, cancelled'),
  data: z.record(z.string(), z.unknown()),
  createdAt: Timestamp,
});

export const JobEventsQuery = z.object({
  after: z.coerce.number().int().min(0).default(0).describe('events with seq greater than this'),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

export const JobEventPageSchema = z.object({
  items: z.array(JobEventSchema),
  nextAfter: z.number().int().nullable().describe('pass as `after` for the next page; null when this page is the last so far'),
});

export const CheckpointSchema = z.object({
  id: z.string(),
  step: z.number().int().describe("the adapter's step"),
  kind: z.string(),
  metrics: z.record(z.string(), z.unknown()),
  createdAt: Timestamp,
});

export const CheckpointListSchema = z.object({ items: z.array(CheckpointSchema) });

export type Job = z.infer<typeof JobSchema>;
export type JobEvent = z.infer<typeof JobEventSchema>;

export function presentJob(j: JobRecord): Job {
  return {
    id: j.id,
    adapterId: j.adapterId,
    datasetId: j.datasetId,
    status: j.status,
    params: j.params,
    progress: j.progress,
    error: j.errorCode ? { code: j.errorCode, message: j.errorMessage ?? j.errorCode } : null,
    idempotencyKey: j.idempotencyKey,
    createdAt: j.createdAt.toISOString(),
    updatedAt: j.updatedAt.toISOString(),
    startedAt: j.startedAt?.toISOString() ?? null,
    finishedAt: j.finishedAt?.toISOString() ?? null,
  };
}

export function presentEvent(e: JobEventRecord): JobEvent {
  return { seq: e.seq, level: e.level, type: e.type, data: e.data, createdAt: e.createdAt.toISOString() };
}
