/** Users and their API keys. */
import type { Db } from '../db/database.js';
import { ConflictError } from '../errors.js';
import { isUniqueViolation } from './errors.js';

export interface UserRecord {
  id: string;
  name: string;
  isAdmin: boolean;
  createdAt: Date;
  updatedAt: Date;
}

export interface ApiKeyRecord {
  id: string;
  userId: string;
  name: string | null;
  prefix: string;
  hash: string;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
  createdAt: Date;
}

/** A key with its user, as authentication needs it. */
export interface ApiKeyWithUser extends ApiKeyRecord {
  user: UserRecord;
}

const keyFields = { id: true, userId: true, name: true, prefix: true, hash: true, lastUsedAt: true, revokedAt: true, createdAt: true } as const;

export class UserRepository {
  constructor(private readonly db: Db) {}

  /** Creates a user; NAME_TAKEN (409) when the name exists. */
  async create(data: { id: string; name: string; isAdmin: boolean }): Promise<UserRecord> {
    try {
      return await this.db.user.create({ data });
    } catch (err) {
      if (isUniqueViolation(err)) throw new ConflictError('NAME_TAKEN', `a user named '${data.name}' already exists`, { name: data.name });
      throw err;
    }
  }

  /** Creates the user if it is missing (the local and admin system users). */
  async ensure(data: { id: string; name: string; isAdmin: boolean }): Promise<UserRecord> {
    return this.db.user.upsert({ where: { id: data.id }, create: data, update: {} });
  }

  get(id: string): Promise<UserRecord | null> {
    return this.db.user.findUnique({ where: { id } });
  }

  list(): Promise<UserRecord[]> {
    return this.db.user.findMany({ orderBy: { id: 'asc' } });
  }

  /** Number of keys that can still authenticate. */
  activeKeyCount(): Promise<number> {
    return this.db.apiKey.count({ where: { revokedAt: null } });
  }

  createKey(data: { id: string; userId: string; name: string | null; prefix: string; hash: string }): Promise<ApiKeyRecord> {
    return this.db.apiKey.create({ data, select: keyFields });
  }

  findKeyByPrefix(prefix: string): Promise<ApiKeyWithUser | null> {
    return this.db.apiKey.findUnique({ where: { prefix }, select: { ...keyFields, user: true } });
  }

  listKeys(userId: string): Promise<ApiKeyRecord[]> {
    return this.db.apiKey.findMany({ where: { userId }, orderBy: { id: 'asc' }, select: keyFields });
  }

  async touchKey(id: string, at: Date): Promise<void> {
    await this.db.apiKey.updateMany({ where: { id }, data: { lastUsedAt: at } });
  }

  /** Revokes a key of `userId` (again: no change); null when the user has no such key. */
  async revokeKey(id: string, userId: string): Promise<ApiKeyRecord | null> {
    const key = await this.db.apiKey.findFirst({ where: { id, userId }, select: keyFields });
    if (!key || key.revokedAt !== null) return key;
    return this.db.apiKey.update({ where: { id }, data: { revokedAt: new Date() }, select: keyFields });
  }
}
