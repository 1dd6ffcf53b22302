/** Base models. */
import type { Db } from '../db/database.js';
import type { Prisma } from '../db/generated/sqlite/client.js';
import { ConflictError } from '../errors.js';
import { isForeignKeyViolation, isUniqueViolation } from './errors.js';

/** A graph input or output as stored (src/onnx ValueSignature). */
export interface StoredSignature {
  name: string;
  dtype: string;
  shape: (number | string | null)[] | null;
}

/** A targetable weight as stored (the public part of src/onnx TargetInfo). */
export interface StoredTarget {
  module: string;
  node: string;
  opType: 'MatMul' | 'Gemm';
  weight: string;
  weightDims: number[];
  in: number;
  out: number;
  shared: boolean;
}

export interface ModelRecord {
  id: string;
  name: string;
  description: string | null;
  sha256: string;
  size: number;
  /** Relative to DATA_DIR. */
  path: string;
  builtin: boolean;
  opset: number;
  inputs: StoredSignature[];
  outputs: StoredSignature[];
  targets: StoredTarget[];
  opTypes: string[];
  metadata: Record<string, unknown>;
  createdAt: Date;
  updatedAt: Date;
}

export type NewModel = Omit<ModelRecord, 'createdAt' | 'updatedAt'>;

type Row = Prisma.BaseModelGetPayload<object>;

function toRecord(r: Row): ModelRecord {
  return {
    ...r,
    inputs: r.inputs as unknown as StoredSignature[],
    outputs: r.outputs as unknown as StoredSignature[],
    targets: r.targets as unknown as StoredTarget[],
    opTypes: r.opTypes as unknown as string[],
    metadata: r.metadata as Record<string, unknown>,
  };
}

function toData(m: Partial<NewModel>): Prisma.BaseModelUncheckedUpdateInput {
  const { inputs, outputs, targets, opTypes, metadata, ...rest } = m;
  return {
    ...rest,
    ...(inputs && { inputs: inputs as unknown as Prisma.InputJsonValue }),
    ...(outputs && { outputs: outputs as unknown as Prisma.InputJsonValue }),
    ...(targets && { targets: targets as unknown as Prisma.InputJsonValue }),
    ...(opTypes && { opTypes }),
    ...(metadata && { metadata: metadata as Prisma.InputJsonValue }),
  };
}

export class ModelRepository {
  constructor(private readonly db: Db) {}

  /** Creates a model; NAME_TAKEN or MODEL_EXISTS (409) when the name or the bytes are already registered. */
  async create(m: NewModel): Promise<ModelRecord> {
    try {
      return toRecord(await this.db.baseModel.create({ data: toData(m) as Prisma.BaseModelUncheckedCreateInput }));
    } catch (err) {
      if (isUniqueViolation(err)) throw await this.conflict(m);
      throw err;
    }
  }

  async update(id: string, m: Partial<NewModel>): Promise<ModelRecord> {
    return toRecord(await this.db.baseModel.update({ where: { id }, data: toData(m) }));
  }

  async get(id: string): Promise<ModelRecord | null> {
    const r = await this.db.baseModel.findUnique({ where: { id } });
    return r && toRecord(r);
  }

  async getByName(name: string): Promise<ModelRecord | null> {
    const r = await this.db.baseModel.findUnique({ where: { name } });
    return r && toRecord(r);
  }

  async getBySha(sha256: string): Promise<ModelRecord | null> {
    const r = await this.db.baseModel.findUnique({ where: { sha256 } });
    return r && toRecord(r);
  }

  async list(): Promise<ModelRecord[]> {
    return (await this.db.baseModel.findMany({ orderBy: [{ builtin: 'desc' }, { name: 'asc' }] })).map(toRecord);
  }

  count(): Promise<number> {
    return this.db.baseModel.count();
  }

  /** How many adapters and datasets use a model. */
  async usage(id: string): Promise<{ adapters: number; datasets: number }> {
    const [adapters, datasets] = await Promise.all([this.db.adapter.count({ where: { modelId: id } }), this.db.dataset.count({ where: { modelId: id } })]);
    return { adapters, datasets };
  }

  /** Deletes a model; MODEL_IN_USE (409) while adapters or datasets use it. Returns false when there is none. */
  async delete(id: string): Promise<boolean> {
    try {
      const res = await this.db.baseModel.deleteMany({ where: { id } });
      return res.count > 0;
    } catch (err) {
      if (isForeignKeyViolation(err)) throw new ConflictError('MODEL_IN_USE', `model '${id}' is used by adapters or datasets; delete them first`, { id, ...(await this.usage(id)) });
      throw err;
    }
  }

  private async conflict(m: NewModel): Promise<ConflictError> {
    const bySha = await this.getBySha(m.sha256);
    if (bySha) return new ConflictError('MODEL_EXISTS', `this model is already registered as '${bySha.name}' (${bySha.id})`, { id: bySha.id, name: bySha.name, sha256: m.sha256 });
    return new ConflictError('NAME_TAKEN', `a model named '${m.name}' already exists`, { name: m.name });
  }
}
