/** `/healthz` (the process answers), `/readyz` (database and ONNX Runtime work), `/metrics` (Prometheus text). */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';

import { HealthSchema, ReadySchema } from '../schemas/health.js';
import { probeRuntime } from '../services/runtime-probe.js';
import type { AppContext } from '../app.js';

export const healthRoutes: FastifyPluginAsyncZod<{ ctx: AppContext }> = async (app, { ctx }) => {
  const noLimit = { rateLimit: false } as const;

  app.get('/healthz', { config: noLimit, schema: { tags: ['health'], summary: 'Liveness', response: { 200: HealthSchema } } }, async () => ({ status: 'ok' as const }));

  app.get(
    '/readyz',
    { config: noLimit, schema: { tags: ['health'], summary: 'Readiness: database and ONNX Runtime', response: { 200: ReadySchema, 503: ReadySchema } } },
    async (req, reply) => {
      const [database, onnxruntime] = await Promise.all([
        check(() => ctx.db.ping()),
        check(() => probeRuntime(ctx.runtime)),
      ]);
      const ok = database.ok && onnxruntime.ok;
      if (!ok) req.log.warn({ database, onnxruntime }, 'not ready');
      return reply.status(ok ? 200 : 503).send({
        status: ok ? 'ready' : 'not-ready',
        checks: { database: { ...database, provider: ctx.db.provider }, onnxruntime: { ...onnxruntime, provider: ctx.runtime.provider } },
      });
    },
  );

  app.get('/metrics', { config: noLimit, schema: { tags: ['health'], summary: 'Prometheus metrics', hide: false } }, async (_req, reply) => {
    const text = await ctx.metrics.registry.metrics();
    return reply.type(ctx.metrics.registry.contentType).send(text);
  });
};

async function check(fn: () => Promise<void>): Promise<{ ok: boolean; error?: string }> {
  try {
    await fn();
    return { ok: true };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}
