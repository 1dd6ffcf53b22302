/** Base-model resources: what `GET /v1/models[/:id]` returns. Upload is multipart (see routes/models.ts). */
import { z } from 'zod';

import type { ModelRecord } from '../repositories/index.js';
import { Timestamp } from './common.js';

export const SignatureSchema = z.object({
  name: z.string(),
  dtype: z.string(),
  shape: z.array(z.union([z.number(), z.string(), z.null()])).nullable().describe('number: fixed, string: symbolic (batch), null: unknown'),
});

export const TargetSchema = z.object({
  module: z.string().describe('PEFT module name; use it in an adapter`s targets'),
  op: z.enum(['MatMul', 'Gemm']),
  in: z.number().int(),
  out: z.number().int(),
  weight: z.string().describe('the weight tensor the adapter adds to'),
  weightShape: z.array(z.number().int()),
  shared: z.boolean().describe('the same weight feeds another target too'),
});

export const ModelSchema = z.object({
  id: z.string(),
  name: z.string(),
  description: z.string().nullable(),
  builtin: z.boolean(),
  sha256: z.string(),
  size: z.number().int(),
  opset: z.number().int(),
  inputs: z.array(SignatureSchema),
  outputs: z.array(SignatureSchema),
  opTypes: z.array(z.string()),
  metadata: z.record(z.string(), z.unknown()),
  targets: z.array(TargetSchema),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});

export const ModelListSchema = z.object({ items: z.array(ModelSchema) });

export const ModelUploadFields = z.object({
  name: z.string().trim().min(1).max(200).regex(/^[\w.\- ]+$/, 'letters, digits, space, _ . - only').describe('unique model name'),
  description: z.string().max(2000).optional(),
});

export type Model = z.infer<typeof ModelSchema>;

export function presentModel(m: ModelRecord): Model {
  return {
    id: m.id,
    name: m.name,
    description: m.description,
    builtin: m.builtin,
    sha256: m.sha256,
    size: m.size,
    opset: m.opset,
    inputs: m.inputs,
    outputs: m.outputs,
    opTypes: m.opTypes,
    metadata: m.metadata,
    targets: m.targets.map((t) => ({ module: t.module, op: t.opType, in: t.in, out: t.out, weight: t.weight, weightShape: t.weightDims, shared: t.shared })),
    createdAt: m.createdAt.toISOString(),
    updatedAt: m.updatedAt.toISOString(),
  };
}
