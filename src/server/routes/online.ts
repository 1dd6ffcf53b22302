/**
 * Online adaptation routes under /v1/adapters/:id: predict, observe (prequential, durable before the
 * answer), the NDJSON stream (observe/predict messages answered in order; an error answers its line
 * and the stream goes on), state, and downloads. Another user's adapter is ADAPTER_NOT_FOUND.
 */
import { createInterface } from 'node:readline';
import { PassThrough, type Readable } from 'node:stream';

import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';

import { principalOf } from '../auth.js';
import { toErrorResponse } from '../error-handler.js';
import { BadRequestError } from '../errors.js';
import { errors, IdParams } from '../schemas/common.js';
import { DownloadQuery, ObserveBody, ObserveResponse, PredictBody, PredictResponse, StateResponse } from '../schemas/online.js';
import type { AppContext } from '../app.js';

const NDJSON = 'application/x-ndjson';

export const onlineRoutes: FastifyPluginAsyncZod<{ ctx: AppContext }> = async (app, { ctx }) => {
  // The stream's body is read line by line as it arrives, never buffered whole.
  app.addContentTypeParser(NDJSON, (_req, payload, done) => done(null, payload));

  app.post(
    '/adapters/:id/predict',
    {
      schema: {
        tags: ['online'],
        summary: 'Predict a batch with the adapter (and the Kalman predictive variance)',
        params: IdParams,
        body: PredictBody,
        response: { 200: PredictResponse, ...errors(400, 401, 404, 422) },
      },
    },
    async (req) => ctx.online.predict(req.params.id, principalOf(req).user.id, req.body.inputs),
  );

  app.post(
    '/adapters/:id/observe',
    {
      schema: {
        tags: ['online'],
        summary: 'Prequential update: the prediction before the update, then a durable update',
        params: IdParams,
        body: ObserveBody,
        response: { 200: ObserveResponse, ...errors(400, 401, 404, 409, 422) },
      },
    },
    async (req) => ctx.online.observe(req.params.id, principalOf(req).user.id, req.body.inputs, req.body.labels),
  );

  app.post(
    '/adapters/:id/stream',
    {
      schema: {
        tags: ['online'],
        summary: 'A long-lived stream: NDJSON lines {op: "observe"|"predict", inputs, labels?, id?} in, one answer line each, in order',
        description: `Send Content-Type: ${NDJSON}. Each answer is the observe or predict response (with the message's id echoed), or {error: {code, message}}.`,
        params: IdParams,
        response: { ...errors(400, 401, 404, 415) },
      },
    },
    async (req, reply) => {
      const owner = principalOf(req).user.id;
      const id = req.params.id;
      const body = req.body as Readable | undefined;
      if (!body || typeof (body as { pipe?: unknown }).pipe !== 'function') {
        throw new BadRequestError('UNSUPPORTED_MEDIA_TYPE', `send the stream as Content-Type: ${NDJSON}`);
      }
      // Unknown or foreign adapters answer 404 before the stream starts.
      await ctx.online.state(id, owner);
      const out = new PassThrough();
      const answer = async (line: string): Promise<unknown> => {
        let msg: unknown;
        try {
          msg = JSON.parse(line);
        } catch {
          return { error: { code: 'INVALID_JSON', message: 'this line is not JSON' } };
        }
        const m = (typeof msg === 'object' && msg !== null ? msg : {}) as { op?: unknown; inputs?: unknown; labels?: unknown; id?: unknown };
        const echo = m.id !== undefined ? { id: m.id } : {};
        try {
          if (m.op === 'observe') return { ...echo, op: 'observe', ...(await ctx.online.observe(id, owner, m.inputs, m.labels)) };
          if (m.op === 'predict') return { ...echo, op: 'predict', ...(await ctx.online.predict(id, owner, m.inputs)) };
          return { ...echo, error: { code: 'VALIDATION_ERROR', message: `op must be 'observe' or 'predict', got ${JSON.stringify(m.op)}` } };
        } catch (err) {
          const res = toErrorResponse(err, String(req.id));
          if (res.status >= 500) req.log.error({ err }, `stream message failed: ${(err as Error).message}`);
          return { ...echo, error: { code: res.body.code, message: res.body.message } };
        }
      };
      void (async () => {
        try {
          const lines = createInterface({ input: body, crlfDelay: Infinity });
          for await (const line of lines) {
            if (line.trim() === '') continue;
            const res = await answer(line);
            if (!out.write(`${JSON.stringify(res)}\n`)) await new Promise((r) => out.once('drain', r));
          }
        } catch (err) {
          req.log.warn({ err }, 'stream input ended abnormally');
        } finally {
          out.end();
        }
      })();
      // Not JSON: the response schema (errors only) does not apply to the stream.
      return reply.header('content-type', NDJSON).send(out as never);
    },
  );

  app.get(
    '/adapters/:id/state',
    {
      schema: {
        tags: ['online'],
        summary: 'Step, noise covariance R, summary of p and recent prequential metrics',
        params: IdParams,
        response: { 200: StateResponse, ...errors(401, 404) },
      },
    },
    async (req) => ctx.online.state(req.params.id, principalOf(req).user.id),
  );

  app.get(
    '/adapters/:id/download',
    {
      schema: {
        tags: ['online'],
        summary: 'The adapter as PEFT zip, merged ONNX, optimizer state (safetensors) or inference bundle, now or at a checkpoint step',
        params: IdParams,
        querystring: DownloadQuery,
        response: { ...errors(400, 401, 404) },
      },
    },
    async (req, reply) => {
      const { format, step } = req.query;
      const d = await ctx.online.download(req.params.id, principalOf(req).user.id, format, step);
      return reply
        .header('content-type', d.contentType)
        .header('content-disposition', `attachment; filename="${d.filename}"`)
        .header('x-adapter-step', String(d.step))
        .send(Buffer.from(d.bytes.buffer, d.bytes.byteOffset, d.bytes.byteLength) as never);
    },
  );
};
