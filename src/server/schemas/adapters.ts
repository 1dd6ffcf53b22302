/** Adapter resources: the creation request and what the adapter routes return. */
import { z } from 'zod';

import { OPTIMIZER_TYPES } from '../../kalman/index.js';
import type { AdapterRecord } from '../repositories/index.js';
import { parameterCount } from '../services/adapters.js';
import { Timestamp } from './common.js';

const Observation = z.enum(['probs', 'loss', 'regression']);

export const TargetsSchema = z
  .union([z.array(z.string().min(1)).min(1), z.object({ regex: z.string().min(1) }).strict(), z.literal('all')])
  .describe('module names (PEFT suffix match), {regex} over module names (full match), or "all"; see GET /v1/models/:id targets');

export const CreateAdapterBody = z.object({
  modelId: z.string().min(1),
  name: z.string().trim().min(1).max(200).optional(),
  targets: TargetsSchema,
  // Values (positive integer, positive alpha) are checked by the service, which answers with
  // LORA_INVALID_RANK / INVALID_CONFIG rather than a generic VALIDATION_ERROR.
  rank: z.number().describe('LoRA rank r, a positive integer'),
  alpha: z.number().optional().describe('scaling numerator; s = alpha/r (alpha/√r with rslora); default r'),
  rslora: z.boolean().optional(),
  optimizer: z
    .object({ type: z.string().describe(`one of ${OPTIMIZER_TYPES.join(', ')}`) })
    .catchall(z.unknown())
    .describe('{type, ...hyperparameters}; omitted hyperparameters take their defaults'),
  observation: Observation.optional().describe('observation model: probs (default), loss or regression'),
  output: z.string().min(1).max(1000).optional().describe("the model output to train and predict, by name (GET /v1/models/:id outputs); default the model's first"),
  seed: z.number().int().min(0).max(2 ** 31 - 1).optional().describe('seed of the initial A and p0; default random (and stored)'),
});

export type CreateAdapterRequest = z.infer<typeof CreateAdapterBody>;

export const AdapterSchema = z.object({
  id: z.string(),
  name: z.string().nullable(),
  modelId: z.string(),
  targets: TargetsSchema,
  modules: z.array(z.object({ module: z.string(), in: z.number().int(), out: z.number().int() })),
  rank: z.number().int(),
  alpha: z.number(),
  rslora: z.boolean(),
  optimizer: z.object({ type: z.string() }).catchall(z.unknown()),
  observation: Observation,
  output: z.string(),
  seed: z.number().int(),
  parameterCount: z.number().int(),
  step: z.number().int(),
  status: z.enum(['ready', 'training', 'failed']),
  metrics: z.record(z.string(), z.unknown()),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});

export const AdapterListQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(100),
  cursor: z.string().max(100).optional(),
  modelId: z.string().max(100).optional(),
});

export const AdapterListSchema = z.object({ items: z.array(AdapterSchema), nextCursor: z.string().nullable() });

export type Adapter = z.infer<typeof AdapterSchema>;

export function presentAdapter(a: AdapterRecord): Adapter {
  const c = a.config;
  return {
    id: a.id,
    name: a.name,
    modelId: a.modelId,
    targets: c.targets,
    modules: c.sites,
    rank: c.rank,
    alpha: c.alpha,
    rslora: c.rslora,
    optimizer: c.optimizer,
    observation: c.observation,
    output: c.output,
    seed: c.seed,
    parameterCount: parameterCount(c),
    step: a.step,
    status: a.status,
    metrics: a.metrics,
    createdAt: a.createdAt.toISOString(),
    updatedAt: a.updatedAt.toISOString(),
  };
}
