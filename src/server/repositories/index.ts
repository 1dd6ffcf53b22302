/** The repositories: the only code that talks to Prisma. */
import type { Database } from '../db/database.js';
import { AdapterRepository } from './adapters.js';
import { DatasetRepository } from './datasets.js';
import { JobRepository } from './jobs.js';
import { ModelRepository } from './models.js';
import { OnlineRepository } from './online.js';
import { UserRepository } from './users.js';

export type { AdapterConfig, AdapterRecord, AdapterSite, AdapterStatus, Page } from './adapters.js';
export type { ModelRecord, NewModel, StoredSignature, StoredTarget } from './models.js';
export type { ApiKeyRecord, ApiKeyWithUser, UserRecord } from './users.js';
export type { DatasetFormat, DatasetRecord, DatasetSummary } from './datasets.js';
export type { EventLevel, JobEventRecord, JobParams, JobRecord, JobStatus } from './jobs.js';
export type { CheckpointKind, CheckpointRecord, ObservationRow, OnlineAdapterRow } from './online.js';
export { AdapterRepository, DatasetRepository, JobRepository, ModelRepository, OnlineRepository, UserRepository };

export interface Repositories {
  users: UserRepository;
  models: ModelRepository;
  adapters: AdapterRepository;
  online: OnlineRepository;
  datasets: DatasetRepository;
  jobs: JobRepository;
}

export function createRepositories(db: Database): Repositories {
  return {
    users: new UserRepository(db.prisma),
    models: new ModelRepository(db.prisma),
    adapters: new AdapterRepository(db.prisma),
    online: new OnlineRepository(db.prisma, db.sqlite),
    datasets: new DatasetRepository(db.prisma),
    jobs: new JobRepository(db.prisma),
  };
}
