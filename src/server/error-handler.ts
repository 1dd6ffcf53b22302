/**
 * The one place errors become HTTP: anything with a string `code` (our DomainErrors, src/kalman's
 * and src/data's errors, fastify's own FST_* errors) and zod validation failures are answered as
 * `{code, message, details?}` with the status of src/server/errors.ts's table. A 500 tells the
 * client only the request id; the error itself goes to the log.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from 'fastify-type-provider-zod';

import { HTTP_STATUS } from './errors.js';
import type { ErrorBody } from './schemas/common.js';

/** fastify's and its plugins' codes, renamed to ours. */
const FASTIFY_CODES: Readonly<Record<string, string>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_REQ_FILE_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_FILES_LIMIT: 'MULTIPART_INVALID',
  FST_PARTS_LIMIT: 'PAYLOAD_TOO_LARGE',
  FST_FIELDS_LIMIT: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_REQUEST',
  FST_ERR_VALIDATION: 'VALIDATION_ERROR',
  FST_PROTO_VIOLATION: 'BAD_REQUEST',
};

/** Messages of ours for fastify's codes whose own text would mislead ("reach files limit" is no size problem). */
const FASTIFY_MESSAGES: Readonly<Record<string, string>> = {
  FST_FILES_LIMIT: 'an upload takes one file part; this request has more',
};

/** What to answer for an error. */
export interface ErrorResponse {
  status: number;
  body: ErrorBody;
}

/** Maps any thrown value to a status and body (pure, so it has its own tests). */
export function toErrorResponse(err: unknown, requestId: string): ErrorResponse {
  if (hasZodFastifySchemaValidationErrors(err)) {
    const where = (err as { validationContext?: string }).validationContext ?? 'request';
    const issues = err.validation.map((v) => ({
      path: `${where}${v.instancePath.replace(/\//g, '.')}`,
      message: v.message ?? 'invalid',
    }));
    const message = `invalid ${where}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`;
    return { status: 400, body: { code: 'VALIDATION_ERROR', message, details: { issues } } };
  }
  if (typeof err === 'object' && err !== null && !isResponseSerializationError(err) && typeof (err as { code?: unknown }).code === 'string') {
    const e = err as { code: string; message?: string; details?: unknown; statusCode?: unknown };
    const code = FASTIFY_CODES[e.code] ?? e.code;
    let status = HTTP_STATUS[code];
    let bodyCode = code;
    if (status === undefined) {
      // An unlisted code: trust a 4xx the error carries (a plugin's), else it is ours to fix.
      const sc = typeof e.statusCode === 'number' ? e.statusCode : 500;
      status = sc >= 400 && sc < 500 ? sc : 500;
      bodyCode = status === 500 ? 'INTERNAL' : e.code.startsWith('FST_') ? 'BAD_REQUEST' : e.code;
    }
    if (status < 500) {
      const body: ErrorBody = { code: bodyCode, message: FASTIFY_MESSAGES[e.code] ?? e.message ?? bodyCode };
      if (isRecord(e.details)) body.details = e.details;
      return { status, body };
    }
  }
  return { status: 500, body: { code: 'INTERNAL', message: `internal error; the server log has the details under request id ${requestId}` } };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** fastify error handler: answer with toErrorResponse, log 500s in full and client errors briefly. */
export function errorHandler(err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  const { status, body } = toErrorResponse(err, String(req.id));
  if (status >= 500) req.log.error({ err }, `request failed: ${err.message}`);
  else req.log.info({ code: body.code, status }, body.message);
  void reply.status(status).send(body);
}

/** Unknown routes: 404 ROUTE_NOT_FOUND in the same shape. */
export function notFoundHandler(req: FastifyRequest, reply: FastifyReply): void {
  void reply.status(404).send({ code: 'ROUTE_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` } satisfies ErrorBody);
}
