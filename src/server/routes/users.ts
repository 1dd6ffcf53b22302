/**
 * `/v1/users` (admin): create a user with a first API key (shown once), list users, mint and revoke
 * keys. `/v1/me`: who the caller is. In single-user local mode there are no keys to manage: set
 * ADMIN_API_KEY to run with users.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';

import { principalOf, requireAdmin } from '../auth.js';
import { ForbiddenError, NotFoundError } from '../errors.js';
import { generateApiKey, newId } from '../ids.js';
import { errors, IdParams } from '../schemas/common.js';
import { ApiKeySchema, CreateKeyBody, CreatedUserSchema, CreateUserBody, KeyParams, MeSchema, NewApiKeySchema, presentKey, presentUser, UserListSchema } from '../schemas/users.js';
import type { AppContext } from '../app.js';

export const userRoutes: FastifyPluginAsyncZod<{ ctx: AppContext }> = async (app, { ctx }) => {
  const manage = (req: Parameters<typeof principalOf>[0], action: string) => {
    if (ctx.auth.localMode) {
      throw new ForbiddenError(`${action} is not available in single-user local mode; restart with ADMIN_API_KEY set to manage users`);
    }
    return requireAdmin(req, action);
  };

  async function mintKey(userId: string, name: string | undefined) {
    const { key, prefix, hash } = generateApiKey();
    const record = await ctx.repos.users.createKey({ id: newId('key'), userId, name: name ?? null, prefix, hash });
    return { ...presentKey(record), key };
  }

  app.post(
    '/users',
    { schema: { tags: ['users'], summary: 'Create a user and its first API key (admin)', body: CreateUserBody, response: { 201: CreatedUserSchema, ...errors(400, 401, 403, 409) } } },
    async (req, reply) => {
      manage(req, 'creating users');
      const user = await ctx.repos.users.create({ id: newId('usr'), name: req.body.name, isAdmin: req.body.isAdmin });
      const apiKey = await mintKey(user.id, req.body.keyName);
      req.log.info({ user: user.id, name: user.name, key: apiKey.prefix }, 'user created');
      return reply.status(201).send({ user: presentUser(user), apiKey });
    },
  );

  app.get('/users', { schema: { tags: ['users'], summary: 'List users (admin)', response: { 200: UserListSchema, ...errors(401, 403) } } }, async (req) => {
    manage(req, 'listing users');
    return { items: (await ctx.repos.users.list()).map(presentUser) };
  });

  app.post(
    '/users/:id/keys',
    { schema: { tags: ['users'], summary: 'Create another API key for a user (admin)', params: IdParams, body: CreateKeyBody, response: { 201: NewApiKeySchema, ...errors(400, 401, 403, 404) } } },
    async (req, reply) => {
      manage(req, 'creating keys');
      if (!(await ctx.repos.users.get(req.params.id))) throw new NotFoundError('user', req.params.id);
      return reply.status(201).send(await mintKey(req.params.id, req.body.name));
    },
  );

  app.delete(
    '/users/:id/keys/:keyId',
    { schema: { tags: ['users'], summary: 'Revoke an API key (admin)', params: KeyParams, response: { 200: ApiKeySchema, ...errors(401, 403, 404) } } },
    async (req) => {
      manage(req, 'revoking keys');
      const key = await ctx.repos.users.revokeKey(req.params.keyId, req.params.id);
      if (!key) throw new NotFoundError('key', req.params.keyId);
      ctx.auth.forgetKeys();
      return presentKey(key);
    },
  );

  app.get('/me', { schema: { tags: ['users'], summary: 'Who this key belongs to', response: { 200: MeSchema, ...errors(401) } } }, async (req) => {
    const p = principalOf(req);
    return { user: presentUser(p.user), isAdmin: p.isAdmin, mode: p.mode };
  });
};
