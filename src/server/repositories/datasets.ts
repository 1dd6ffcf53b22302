/** Datasets, always seen through their owner: another user's dataset does not exist for you. */
import type { Db } from '../db/database.js';
import type { Prisma } from '../db/generated/sqlite/client.js';
import type { Page } from './adapters.js';

export type DatasetFormat = 'jsonl' | 'csv';

/** What validation found: per-sample input shapes, the label kind and counts. */
export interface DatasetSummary {
  inputs: { name: string; dtype: string; shape: number[] }[];
  /** `output`: the model output the labels were checked against (and can train). */
  label: { kind: 'class' | 'vector'; output: string; classes?: number; counts?: number[]; size?: number };
  /** CSV: the header's columns, in order. */
  columns?: string[];
}

export interface DatasetRecord {
  id: string;
  ownerId: string;
  modelId: string;
  name: string;
  format: DatasetFormat;
  rows: number;
  size: number;
  sha256: string;
  /** Relative to DATA_DIR. */
  path: string;
  summary: DatasetSummary;
  createdAt: Date;
  updatedAt: Date;
}

type Row = Prisma.DatasetGetPayload<object>;

function toRecord(r: Row): DatasetRecord {
  return { ...r, summary: r.summary as unknown as DatasetSummary };
}

export class DatasetRepository {
  constructor(private readonly db: Db) {}

  async create(d: Omit<DatasetRecord, 'createdAt' | 'updatedAt'>): Promise<DatasetRecord> {
    const row = await this.db.dataset.create({ data: { ...d, summary: d.summary as unknown as Prisma.InputJsonValue } });
    return toRecord(row);
  }

  /** The dataset if it exists and belongs to `ownerId`, else null. */
  async get(id: string, ownerId: string): Promise<DatasetRecord | null> {
    const r = await this.db.dataset.findFirst({ where: { id, ownerId } });
    return r && toRecord(r);
  }

  async list(ownerId: string, opts: { limit: number; cursor?: string; modelId?: string }): Promise<Page<DatasetRecord>> {
    const rows = await this.db.dataset.findMany({
      where: { ownerId, ...(opts.modelId && { modelId: opts.modelId }), ...(opts.cursor && { id: { gt: opts.cursor } }) },
      orderBy: { id: 'asc' },
      take: opts.limit + 1,
    });
    const items = rows.slice(0, opts.limit).map(toRecord);
    return { items, nextCursor: rows.length > opts.limit ? items[items.length - 1]!.id : null };
  }
}
