/**
 * Who is calling: `Authorization: Bearer <key>` resolved to a principal. The configured
 * ADMIN_API_KEY acts as the `admin` system user; user keys are looked up by their public prefix and
 * compared by sha256 in constant time. With no admin key and no user keys at start-up the service
 * runs in single-user local mode: every request is the `local` user, with admin rights, and no key
 * is needed (main.ts announces it).
 */
import type { FastifyRequest } from 'fastify';

import { ForbiddenError, UnauthenticatedError } from './errors.js';
import { apiKeyPrefix, hashApiKey, safeEqual } from './ids.js';
import type { UserRecord, UserRepository } from './repositories/index.js';

/** The caller of a request. */
export interface Principal {
  user: UserRecord;
  isAdmin: boolean;
  mode: 'local' | 'api-key' | 'admin-key';
  /** The key used (null for the admin key and local mode). */
  keyId: string | null;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set on every /v1 route before its handler runs. */
    principal: Principal | null;
  }
}

/** Ids of the system users that own what the admin key and local mode create. */
export const LOCAL_USER = { id: 'usr_local', name: 'local', isAdmin: true } as const;
export const ADMIN_USER = { id: 'usr_admin', name: 'admin', isAdmin: true } as const;

/** How long a resolved key is trusted without asking the database again (a revoke here clears it at once). */
const CACHE_TTL_MS = 30_000;
/** lastUsedAt is written at most this often per key (not on every request). */
const TOUCH_EVERY_MS = 60_000;

export interface AuthOptions {
  adminApiKey?: string | undefined;
  localMode: boolean;
}

export class Authenticator {
  private readonly cache = new Map<string, { principal: Principal; until: number }>();
  private readonly touched = new Map<string, number>();
  private localUser: UserRecord | null = null;
  private adminUser: UserRecord | null = null;

  constructor(
    private readonly users: UserRepository,
    readonly options: AuthOptions,
  ) {}

  get localMode(): boolean {
    return this.options.localMode;
  }

  /** Creates the system users the configuration needs. */
  async init(): Promise<void> {
    if (this.options.localMode) this.localUser = await this.users.ensure({ ...LOCAL_USER });
    if (this.options.adminApiKey) this.adminUser = await this.users.ensure({ ...ADMIN_USER });
  }

  /** Resolves an Authorization header; UNAUTHENTICATED (401) when it names no valid key. */
  async authenticate(header: string | undefined): Promise<Principal> {
    if (this.options.localMode && this.localUser) return { user: this.localUser, isAdmin: true, mode: 'local', keyId: null };
    const token = bearer(header);
    if (token === null) throw new UnauthenticatedError();
    if (this.options.adminApiKey && this.adminUser && safeEqual(token, this.options.adminApiKey)) {
      return { user: this.adminUser, isAdmin: true, mode: 'admin-key', keyId: null };
    }
    const prefix = apiKeyPrefix(token);
    if (prefix === null) throw new UnauthenticatedError();
    const hash = hashApiKey(token);
    const now = Date.now();
    const hit = this.cache.get(hash);
    if (hit && hit.until > now) return hit.principal;
    const key = await this.users.findKeyByPrefix(prefix);
    if (!key || key.revokedAt !== null || !safeEqual(key.hash, hash)) {
      this.cache.delete(hash);
      throw new UnauthenticatedError();
    }
    const principal: Principal = { user: key.user, isAdmin: key.user.isAdmin, mode: 'api-key', keyId: key.id };
    this.cache.set(hash, { principal, until: now + CACHE_TTL_MS });
    if ((this.touched.get(key.id) ?? 0) + TOUCH_EVERY_MS < now) {
      this.touched.set(key.id, now);
      await this.users.touchKey(key.id, new Date(now));
    }
    return principal;
  }

  /** Drops cached keys (after a revoke), so they stop working at once in this process. */
  forgetKeys(): void {
    this.cache.clear();
  }
}

function bearer(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1]! : null;
}

/** The request's principal (set by the /v1 hook). */
export function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) throw new UnauthenticatedError();
  return req.principal;
}

/** The principal, if it has admin rights; FORBIDDEN (403) otherwise. */
export function requireAdmin(req: FastifyRequest, action: string): Principal {
  const p = principalOf(req);
  if (!p.isAdmin) throw new ForbiddenError(`${action} needs an admin key`);
  return p;
}

/** The rate-limit bucket of a request: its key's public prefix (never the secret), else its address. */
export function rateLimitKey(req: FastifyRequest): string {
  const token = bearer(req.headers.authorization);
  if (token !== null) {
    const prefix = apiKeyPrefix(token);
    return prefix ? `key:${prefix}` : `key:${hashApiKey(token).slice(0, 16)}`;
  }
  return `ip:${req.ip}`;
}
