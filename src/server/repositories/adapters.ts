/** Adapters, always seen through their owner: another user's adapter does not exist for you. */
import type { Db } from '../db/database.js';
import type { Prisma } from '../db/generated/sqlite/client.js';

/** Where an adapter's LoRA matrices go: one site per targeted weight. */
export interface AdapterSite {
  module: string;
  in: number;
  out: number;
}

/** The validated creation request with every default filled in: what a training step needs to rebuild it. */
export interface AdapterConfig {
  /** The targets as requested (names, `{regex}` or 'all'). */
  targets: string[] | { regex: string } | 'all';
  /** The modules they resolved to, with shapes, in graph order. */
  sites: AdapterSite[];
  rank: number;
  alpha: number;
  rslora: boolean;
  /** src/kalman's validated optimizer config (`type` plus every hyperparameter). */
  optimizer: { type: string } & Record<string, unknown>;
  observation: 'probs' | 'loss' | 'regression';
  /** The model output it trains and predicts (adapters stored before migration 4 got the model's first). */
  output: string;
  seed: number;
  /** sha256 of the base model bytes the adapter was made for. */
  modelSha256: string;
}

export type AdapterStatus = 'ready' | 'training' | 'failed';

export interface AdapterRecord {
  id: string;
  ownerId: string;
  modelId: string;
  name: string | null;
  optimizerType: string;
  config: AdapterConfig;
  step: number;
  status: AdapterStatus;
  metrics: Record<string, unknown>;
  createdAt: Date;
  updatedAt: Date;
}

const fields = {
  id: true, ownerId: true, modelId: true, name: true, optimizerType: true, config: true, step: true, status: true, metrics: true, createdAt: true, updatedAt: true,
} as const;

type Row = Prisma.AdapterGetPayload<{ select: typeof fields }>;

function toRecord(r: Row): AdapterRecord {
  return { ...r, config: r.config as unknown as AdapterConfig, metrics: r.metrics as Record<string, unknown> };
}

/** A page of a list, newest last; `nextCursor` continues it. */
export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export class AdapterRepository {
  constructor(private readonly db: Db) {}

  async create(a: { id: string; ownerId: string; modelId: string; name: string | null; config: AdapterConfig }): Promise<AdapterRecord> {
    const row = await this.db.adapter.create({
      data: {
        id: a.id,
        ownerId: a.ownerId,
        modelId: a.modelId,
        name: a.name,
        optimizerType: a.config.optimizer.type,
        config: a.config as unknown as Prisma.InputJsonValue,
        metrics: {},
      },
      select: fields,
    });
    return toRecord(row);
  }

  /** The adapter if it exists and belongs to `ownerId`, else null. */
  async get(id: string, ownerId: string): Promise<AdapterRecord | null> {
    const r = await this.db.adapter.findFirst({ where: { id, ownerId }, select: fields });
    return r && toRecord(r);
  }

  async list(ownerId: string, opts: { limit: number; cursor?: string; modelId?: string }): Promise<Page<AdapterRecord>> {
    const rows = await this.db.adapter.findMany({
      where: { ownerId, ...(opts.modelId && { modelId: opts.modelId }), ...(opts.cursor && { id: { gt: opts.cursor } }) },
      orderBy: { id: 'asc' },
      take: opts.limit + 1,
      select: fields,
    });
    const items = rows.slice(0, opts.limit).map(toRecord);
    return { items, nextCursor: rows.length > opts.limit ? items[items.length - 1]!.id : null };
  }

  /** Deletes the adapter (and, by cascade, its checkpoints, observations and jobs); false when `ownerId` has none such. */
  async delete(id: string, ownerId: string): Promise<boolean> {
    const res = await this.db.adapter.deleteMany({ where: { id, ownerId } });
    return res.count > 0;
  }

  count(): Promise<number> {
    return this.db.adapter.count();
  }
}
