/** `/v1/adapters`: create (validated against the model and the optimizer tables), list, get, delete; the caller's own only. */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';

import { principalOf } from '../auth.js';
import { AdapterListQuery, AdapterListSchema, AdapterSchema, CreateAdapterBody, presentAdapter } from '../schemas/adapters.js';
import { errors, IdParams } from '../schemas/common.js';
import type { AppContext } from '../app.js';

export const adapterRoutes: FastifyPluginAsyncZod<{ ctx: AppContext }> = async (app, { ctx }) => {
  app.post(
    '/adapters',
    {
      schema: {
        tags: ['adapters'],
        summary: 'Create a LoRA adapter on a base model',
        body: CreateAdapterBody,
        response: { 201: AdapterSchema, ...errors(400, 401, 404, 422) },
      },
    },
    async (req, reply) => {
      const p = principalOf(req);
      const adapter = await ctx.adapters.create(p.user.id, req.body);
      req.log.info({ adapter: adapter.id, model: adapter.modelId, optimizer: adapter.optimizerType }, 'adapter created');
      return reply.status(201).send(presentAdapter(adapter));
    },
  );

  app.get(
    '/adapters',
    { schema: { tags: ['adapters'], summary: 'List your adapters', querystring: AdapterListQuery, response: { 200: AdapterListSchema, ...errors(400, 401) } } },
    async (req) => {
      const { limit, cursor, modelId } = req.query;
      const page = await ctx.adapters.list(principalOf(req).user.id, { limit, ...(cursor && { cursor }), ...(modelId && { modelId }) });
      return { items: page.items.map(presentAdapter), nextCursor: page.nextCursor };
    },
  );

  app.get(
    '/adapters/:id',
    { schema: { tags: ['adapters'], summary: 'One of your adapters', params: IdParams, response: { 200: AdapterSchema, ...errors(401, 404) } } },
    async (req) => presentAdapter(await ctx.adapters.get(req.params.id, principalOf(req).user.id)),
  );

  app.delete(
    '/adapters/:id',
    { schema: { tags: ['adapters'], summary: 'Delete one of your adapters with its checkpoints, log and jobs', params: IdParams, response: { 204: z.null(), ...errors(401, 404) } } },
    async (req, reply) => {
      const id = req.params.id;
      const owner = principalOf(req).user.id;
      await ctx.adapters.get(id, owner); // ADAPTER_NOT_FOUND before anything of the adapter stops
      // Its jobs stop at a step boundary and its queued updates finish, so nothing writes to it once it is gone.
      await ctx.jobs.retire(id);
      await ctx.online.retire(id);
      try {
        await ctx.adapters.delete(id, owner);
      } finally {
        ctx.online.release(id);
        ctx.jobs.release(id);
      }
      return reply.status(204).send(null);
    },
  );
};
