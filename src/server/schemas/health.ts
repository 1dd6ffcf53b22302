/** Liveness and readiness. */
import { z } from 'zod';

export const HealthSchema = z.object({ status: z.literal('ok') });

export const ReadySchema = z.object({
  status: z.enum(['ready', 'not-ready']),
  checks: z.object({
    database: z.object({ ok: z.boolean(), provider: z.string(), error: z.string().optional() }),
    onnxruntime: z.object({ ok: z.boolean(), provider: z.string(), error: z.string().optional() }),
  }),
});
