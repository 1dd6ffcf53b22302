/** `/v1/datasets`: multipart upload (validated against the model's inputs, stored content-addressed), list, get; the caller's own only. */
import type { MultipartFile } from '@fastify/multipart';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';

import { principalOf } from '../auth.js';
import { BadRequestError, PayloadTooLargeError } from '../errors.js';
import { errors, IdParams } from '../schemas/common.js';
import { DatasetListQuery, DatasetListSchema, DatasetSchema, DatasetUploadFields, presentDataset } from '../schemas/datasets.js';
import type { AppContext } from '../app.js';

export const datasetRoutes: FastifyPluginAsyncZod<{ ctx: AppContext }> = async (app, { ctx }) => {
  app.post(
    '/datasets',
    {
      schema: {
        tags: ['datasets'],
        summary: 'Upload a training set (JSONL or CSV) for a base model',
        description:
          'multipart/form-data with a `file` part and a `modelId` field; optional `name` and `format` (`jsonl` | `csv`, default from the file name or content). ' +
          'JSONL: one `{"inputs": ..., "label": ...}` per line; `inputs` is the per-sample value (no batch axis) of a one-input model as a nested number array or ' +
          '`{data: base64 little-endian float32, shape}`, or an object keyed by input name. CSV: a header line with a `label` column and one column per flattened ' +
          '(row-major) input value named `<input>.<i>`; a one-input model may instead use any feature column names, taken in order. Labels: class ids in [0, classes), ' +
          'or with `task=regression` (default: the model\'s task, classification for uploaded models) arrays of one target per model output (a bare number for one output; CSV: `label.<i>` columns). ' +
          'Labels are for the model\'s first output, or for the one named by `output` (MODEL_OUTPUT_NOT_FOUND otherwise); a job trains an adapter on the same output only. ' +
          'Every row is validated against the model: the first bad one answers 422 DATASET_INVALID with `details: {row, field}` (row: 1-based line of the file).',
        consumes: ['multipart/form-data'],
        response: { 201: DatasetSchema, ...errors(400, 401, 404, 413, 415, 422) },
      },
    },
    async (req, reply) => {
      const p = principalOf(req);
      if (!req.isMultipart()) throw new BadRequestError('UNSUPPORTED_MEDIA_TYPE', 'send the dataset as multipart/form-data with a `file` part');
      const limit = ctx.config.maxUploadBytes;
      const fields: Record<string, string> = {};
      let file: { bytes: Uint8Array; filename: string } | null = null;
      for await (const part of req.parts({ limits: { fileSize: limit, files: 1 } })) {
        if (part.type === 'file') {
          if (part.fieldname !== 'file') {
            part.file.resume();
            throw new BadRequestError('MULTIPART_INVALID', `unexpected file part '${part.fieldname}'; send the dataset as 'file'`);
          }
          file = { bytes: await readWithin(part, limit), filename: part.filename };
        } else if (typeof part.value === 'string') {
          fields[part.fieldname] = part.value;
        }
      }
      if (!file) throw new BadRequestError('MULTIPART_INVALID', "no 'file' part in the upload");
      const parsed = DatasetUploadFields.safeParse(fields);
      if (!parsed.success) {
        const issues = parsed.error.issues.map((i) => ({ path: `body.${i.path.join('.')}`, message: i.message }));
        throw new BadRequestError('VALIDATION_ERROR', `invalid upload fields: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, { issues });
      }
      const dataset = await ctx.datasets.upload(p.user.id, { ...parsed.data, bytes: file.bytes, filename: file.filename });
      req.log.info({ dataset: dataset.id, model: dataset.modelId, rows: dataset.rows, format: dataset.format }, 'dataset uploaded');
      return reply.status(201).send(presentDataset(dataset));
    },
  );

  app.get(
    '/datasets',
    { schema: { tags: ['datasets'], summary: 'List your datasets', querystring: DatasetListQuery, response: { 200: DatasetListSchema, ...errors(400, 401) } } },
    async (req) => {
      const { limit, cursor, modelId } = req.query;
      const page = await ctx.datasets.list(principalOf(req).user.id, { limit, ...(cursor && { cursor }), ...(modelId && { modelId }) });
      return { items: page.items.map(presentDataset), nextCursor: page.nextCursor };
    },
  );

  app.get(
    '/datasets/:id',
    { schema: { tags: ['datasets'], summary: 'One of your datasets', params: IdParams, response: { 200: DatasetSchema, ...errors(401, 404) } } },
    async (req) => presentDataset(await ctx.datasets.get(req.params.id, principalOf(req).user.id)),
  );
};

/** The whole file part, or PAYLOAD_TOO_LARGE as soon as it passes `limit` (nothing is kept). */
async function readWithin(part: MultipartFile, limit: number): Promise<Uint8Array> {
  try {
    const buf = await part.toBuffer();
    if (part.file.truncated) throw new PayloadTooLargeError(limit, 'dataset file');
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } catch (err) {
    if ((err as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE') throw new PayloadTooLargeError(limit, 'dataset file');
    throw err;
  }
}
