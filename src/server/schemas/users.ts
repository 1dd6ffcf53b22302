/** User and API-key resources. */
import { z } from 'zod';

import type { ApiKeyRecord, UserRecord } from '../repositories/index.js';
import { Timestamp } from './common.js';

export const CreateUserBody = z.object({
  name: z.string().trim().min(1).max(100).regex(/^[\w.@\-]+$/, 'letters, digits, _ . @ - only'),
  isAdmin: z.boolean().default(false),
  keyName: z.string().max(100).optional().describe('a label for the first key'),
});

export const CreateKeyBody = z.object({ name: z.string().max(100).optional() });

export const UserSchema = z.object({ id: z.string(), name: z.string(), isAdmin: z.boolean(), createdAt: Timestamp });

export const ApiKeySchema = z.object({
  id: z.string(),
  name: z.string().nullable(),
  prefix: z.string().describe('the public start of the key, for telling keys apart'),
  createdAt: Timestamp,
  lastUsedAt: Timestamp.nullable(),
  revokedAt: Timestamp.nullable(),
});

/** A key as created: the only time the secret is shown. */
export const NewApiKeySchema = ApiKeySchema.extend({ key: z.string().describe('the API key; shown once, store it now') });

export const CreatedUserSchema = z.object({ user: UserSchema, apiKey: NewApiKeySchema });

export const UserListSchema = z.object({ items: z.array(UserSchema) });

export const KeyParams = z.object({ id: z.string().min(1).max(100), keyId: z.string().min(1).max(100) });

export const MeSchema = z.object({
  user: UserSchema,
  isAdmin: z.boolean(),
  mode: z.enum(['local', 'api-key', 'admin-key']).describe('how this request was authenticated'),
});

export function presentUser(u: UserRecord): z.infer<typeof UserSchema> {
  return { id: u.id, name: u.name, isAdmin: u.isAdmin, createdAt: u.createdAt.toISOString() };
}

export function presentKey(k: ApiKeyRecord): z.infer<typeof ApiKeySchema> {
  return {
    id: k.id,
    name: k.name,
    prefix: k.prefix,
    createdAt: k.createdAt.toISOString(),
    lastUsedAt: k.lastUsedAt?.toISOString() ?? null,
    revokedAt: k.revokedAt?.toISOString() ?? null,
  };
}
