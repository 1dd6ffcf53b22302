/** The repositories: the only code that talks to Prisma. */
import type { Database } from '../db/database.js';
import { AdapterRepository } from './adapters.js';
import { ModelRepository } from './models.js';
import { UserRepository } from './users.js';

export type { AdapterConfig, AdapterRecord, AdapterSite, AdapterStatus, Page } from './adapters.js';
export type { ModelRecord, NewModel, StoredSignature, StoredTarget } from './models.js';
export type { ApiKeyRecord, ApiKeyWithUser, UserRecord } from './users.js';
export { AdapterRepository, ModelRepository, UserRepository };

export interface Repositories {
  users: UserRepository;
  models: ModelRepository;
  adapters: AdapterRepository;
}

export function createRepositories(db: Database): Repositories {
  return { users: new UserRepository(db.prisma), models: new ModelRepository(db.prisma), adapters: new AdapterRepository(db.prisma) };
}
