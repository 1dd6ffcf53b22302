import { describe, expect, it } from 'vitest';

import { DomainError, ModelFormatError, TargetNotFoundError } from '../../src/errors.js';
import { KalmanError } from '../../src/kalman/index.js';
import { toErrorResponse } from '../../src/server/error-handler.js';
import { ForbiddenError, NotFoundError, PayloadTooLargeError, UnauthenticatedError } from '../../src/server/errors.js';

describe('toErrorResponse', () => {
  it.each([
    [new UnauthenticatedError(), 401, 'UNAUTHENTICATED'],
    [new ForbiddenError('no'), 403, 'FORBIDDEN'],
    [new NotFoundError('adapter', 'adp_x'), 404, 'ADAPTER_NOT_FOUND'],
    [new DomainError('MODEL_IN_USE', 'busy'), 409, 'MODEL_IN_USE'],
    [new PayloadTooLargeError(10), 413, 'PAYLOAD_TOO_LARGE'],
    [new ModelFormatError('not onnx'), 422, 'MODEL_FORMAT'],
    [new TargetNotFoundError('nope', { target: 'x' }), 422, 'LORA_TARGET_NOT_FOUND'],
    [new KalmanError('OPTIMIZER_CONFIG', 'optimizer.lr must be ...', { field: 'lr' }), 400, 'OPTIMIZER_CONFIG'],
    [new KalmanError('KALMAN_NOT_PD', 'S not PD'), 422, 'KALMAN_NOT_PD'],
  ])('maps %s to its status and code', (err, status, code) => {
    const r = toErrorResponse(err, 'req-1');
    expect(r.status).toBe(status);
    expect(r.body.code).toBe(code);
    expect(r.body.message).toBe((err as Error).message);
  });

  it('passes details of client errors through', () => {
    const r = toErrorResponse(new TargetNotFoundError('nope', { target: 'x', available: ['a'] }), 'r');
    expect(r.body.details).toEqual({ target: 'x', available: ['a'] });
  });

  it('hides everything of a 500 but the request id', () => {
    for (const err of [new Error('db password is hunter2'), new DomainError('ORT_RUNTIME', 'secret path /x', { path: '/x' }), 'a string', null]) {
      const r = toErrorResponse(err, 'req-42');
      expect(r.status).toBe(500);
      expect(r.body.code).toBe('INTERNAL');
      expect(r.body.details).toBeUndefined();
      expect(r.body.message).toContain('req-42');
      expect(JSON.stringify(r.body)).not.toMatch(/hunter2|secret/);
    }
  });

  it('answers a second file part with 400 MULTIPART_INVALID, not as a size problem', () => {
    const files = Object.assign(new Error('reach files limit'), { code: 'FST_FILES_LIMIT', statusCode: 413 });
    expect(toErrorResponse(files, 'r1')).toEqual({ status: 400, body: { code: 'MULTIPART_INVALID', message: 'an upload takes one file part; this request has more' } });
  });

  it("renames fastify's codes and keeps a plugin's 4xx", () => {
    const tooLarge = Object.assign(new Error('Request body is too large'), { code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 });
    expect(toErrorResponse(tooLarge, 'r')).toMatchObject({ status: 413, body: { code: 'PAYLOAD_TOO_LARGE' } });
    const badJson = Object.assign(new Error('Unexpected token'), { code: 'FST_ERR_CTP_INVALID_JSON_BODY', statusCode: 400 });
    expect(toErrorResponse(badJson, 'r')).toMatchObject({ status: 400, body: { code: 'INVALID_JSON' } });
    const other = Object.assign(new Error('odd'), { code: 'FST_SOMETHING', statusCode: 406 });
    expect(toErrorResponse(other, 'r')).toMatchObject({ status: 406, body: { code: 'BAD_REQUEST' } });
    const unknown = Object.assign(new Error('odd'), { code: 'SOME_LIB_FAILURE' });
    expect(toErrorResponse(unknown, 'r')).toMatchObject({ status: 500, body: { code: 'INTERNAL' } });
  });
});
