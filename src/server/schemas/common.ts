/** Schemas shared by every resource: the error body, id parameters, list paging. */
import { z } from 'zod';

/** The body of every error response. */
export const ErrorSchema = z
  .object({
    code: z.string().describe('stable machine-readable code, e.g. MODEL_FORMAT'),
    message: z.string(),
    details: z.record(z.string(), z.unknown()).optional(),
  })
  .describe('Error');

export type ErrorBody = z.infer<typeof ErrorSchema>;

export const IdParams = z.object({ id: z.string().min(1).max(100) });

/** Error responses a route may give, for the OpenAPI document. */
export function errors(...statuses: (400 | 401 | 403 | 404 | 409 | 413 | 415 | 422 | 429 | 500 | 503)[]): Record<number, typeof ErrorSchema> {
  return Object.fromEntries([...statuses, 500].map((s) => [s, ErrorSchema]));
}

/** A timestamp as sent: ISO 8601. */
export const Timestamp = z.string().describe('ISO 8601 timestamp');
