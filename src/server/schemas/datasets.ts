/** Dataset resources: the upload fields and what the dataset routes return. */
import { z } from 'zod';

import type { DatasetRecord } from '../repositories/datasets.js';
import { Timestamp } from './common.js';

export const DatasetUploadFields = z.object({
  modelId: z.string().min(1).max(100),
  name: z.string().trim().min(1).max(200).optional(),
  format: z.enum(['jsonl', 'csv']).optional(),
  task: z.enum(['classification', 'regression']).optional(),
  output: z.string().min(1).max(1000).optional(),
});

export const DatasetSchema = z.object({
  id: z.string(),
  name: z.string(),
  modelId: z.string(),
  format: z.enum(['jsonl', 'csv']),
  rows: z.number().int(),
  size: z.number().int().describe('bytes of the stored file'),
  sha256: z.string(),
  summary: z
    .object({
      inputs: z.array(z.object({ name: z.string(), dtype: z.string(), shape: z.array(z.number().int()) })),
      label: z.object({ kind: z.enum(['class', 'vector']), output: z.string().describe('the model output the labels were checked against'), classes: z.number().int().optional(), counts: z.array(z.number().int()).optional(), size: z.number().int().optional() }),
      columns: z.array(z.string()).optional(),
    })
    .describe('per-sample input shapes and the label distribution found while validating'),
  createdAt: Timestamp,
});

export const DatasetListQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(100),
  cursor: z.string().max(100).optional(),
  modelId: z.string().max(100).optional(),
});

export const DatasetListSchema = z.object({ items: z.array(DatasetSchema), nextCursor: z.string().nullable() });

export type Dataset = z.infer<typeof DatasetSchema>;

export function presentDataset(d: DatasetRecord): Dataset {
  return {
    id: d.id,
    name: d.name,
    modelId: d.modelId,
    format: d.format,
    rows: d.rows,
    size: d.size,
    sha256: d.sha256,
    summary: d.summary,
    createdAt: d.createdAt.toISOString(),
  };
}
