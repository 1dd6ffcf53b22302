/**
 * `/v1/models`: multipart upload (admin; field `file` plus `name`, optional `description`), list,
 * get (with every LoRA target and its shape), delete (admin; refused while adapters use the model).
 */
import type { MultipartFile } from '@fastify/multipart';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';

import { requireAdmin } from '../auth.js';
import { BadRequestError, PayloadTooLargeError } from '../errors.js';
import { errors, IdParams } from '../schemas/common.js';
import { ModelListSchema, ModelSchema, ModelUploadFields, presentModel } from '../schemas/models.js';
import type { AppContext } from '../app.js';

export const modelRoutes: FastifyPluginAsyncZod<{ ctx: AppContext }> = async (app, { ctx }) => {
  app.post(
    '/models',
    {
      schema: {
        tags: ['models'],
        summary: 'Upload an ONNX base model (admin)',
        description:
          'multipart/form-data with a `file` part (the .onnx bytes, self-contained) and a `name` field (default: the file name without .onnx); optional `description`. ' +
          'The model must decode and open in ONNX Runtime (422 MODEL_FORMAT / MODEL_UNSUPPORTED otherwise); it is stored content-addressed by sha256.',
        consumes: ['multipart/form-data'],
        response: { 201: ModelSchema, ...errors(400, 401, 403, 409, 413, 415, 422) },
      },
    },
    async (req, reply) => {
      requireAdmin(req, 'uploading a model');
      if (!req.isMultipart()) throw new BadRequestError('UNSUPPORTED_MEDIA_TYPE', 'send the model as multipart/form-data with a `file` part');
      const limit = ctx.config.maxUploadBytes;
      const fields: Record<string, string> = {};
      let file: { bytes: Uint8Array; filename: string } | null = null;
      for await (const part of req.parts({ limits: { fileSize: limit, files: 1 } })) {
        if (part.type === 'file') {
          if (part.fieldname !== 'file') {
            part.file.resume();
            throw new BadRequestError('MULTIPART_INVALID', `unexpected file part '${part.fieldname}'; send the model as 'file'`);
          }
          file = { bytes: await readWithin(part, limit), filename: part.filename };
        } else if (typeof part.value === 'string') {
          fields[part.fieldname] = part.value;
        }
      }
      if (!file) throw new BadRequestError('MULTIPART_INVALID', "no 'file' part in the upload");
      const parsed = ModelUploadFields.safeParse({ name: fields['name'] ?? file.filename.replace(/\.onnx$/i, ''), description: fields['description'] });
      if (!parsed.success) {
        const issues = parsed.error.issues.map((i) => ({ path: `body.${i.path.join('.')}`, message: i.message }));
        throw new BadRequestError('VALIDATION_ERROR', `invalid upload fields: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, { issues });
      }
      const model = await ctx.models.upload({ bytes: file.bytes, name: parsed.data.name, description: parsed.data.description ?? null });
      req.log.info({ model: model.id, name: model.name, sha256: model.sha256, size: model.size }, 'model uploaded');
      return reply.status(201).send(presentModel(model));
    },
  );

  app.get('/models', { schema: { tags: ['models'], summary: 'List base models', response: { 200: ModelListSchema, ...errors(401) } } }, async () => ({
    items: (await ctx.models.list()).map(presentModel),
  }));

  app.get(
    '/models/:id',
    { schema: { tags: ['models'], summary: 'A base model with its LoRA targets', params: IdParams, response: { 200: ModelSchema, ...errors(401, 404) } } },
    async (req) => presentModel(await ctx.models.get(req.params.id)),
  );

  app.delete(
    '/models/:id',
    { schema: { tags: ['models'], summary: 'Delete an uploaded model (admin)', params: IdParams, response: { 204: z.null(), ...errors(401, 403, 404, 409) } } },
    async (req, reply) => {
      requireAdmin(req, 'deleting a model');
      await ctx.models.delete(req.params.id);
      return reply.status(204).send(null);
    },
  );
};

/** The whole file part, or PAYLOAD_TOO_LARGE as soon as it passes `limit` (nothing is kept). */
async function readWithin(part: MultipartFile, limit: number): Promise<Uint8Array> {
  try {
    const buf = await part.toBuffer();
    if (part.file.truncated) throw new PayloadTooLargeError(limit, 'model file');
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } catch (err) {
    if ((err as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE') throw new PayloadTooLargeError(limit, 'model file');
    throw err;
  }
}
