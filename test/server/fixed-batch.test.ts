/**
 * Uploaded models stored before uploads were checked for a fixed batch size: the next start checks
 * them (ModelService.checkFixedBatches), over a real SQLite database and two server starts on it.
 */
import { afterAll, describe, expect, it } from 'vitest';

import { decodeModel, encodeModel } from '../../src/onnx/index.js';
import { int64Tensor } from '../../src/onnx/proto.js';
import type { Server } from '../../src/server/server.js';
import { float16InputMlp } from '../fixtures.js';
import { ADMIN_KEY, bearer, cleanupTemp, fixture, multipart, startServer, testConfig } from './helpers.js';

const admin = bearer(ADMIN_KEY);
afterAll(cleanupTemp);

/** The mlp fixture exported at batch 1; `reshape`: its logits reshaped to [1, -1] (the size built in). */
function batchOne(reshape: boolean): Uint8Array {
  const m = decodeModel(fixture('mlp.opset17'));
  if (reshape) {
    for (const n of m.graph!.node!) n.output = n.output!.map((o) => (o === 'logits' ? 'pre_logits' : o));
    m.graph!.node!.push({ opType: 'Reshape', name: '/flat/Reshape', input: ['pre_logits', 'flat_shape'], output: ['logits'] });
    m.graph!.initializer!.push(int64Tensor('flat_shape', [2], [1, -1]));
  }
  for (const v of [...m.graph!.input!, ...m.graph!.output!]) v.type!.tensorType!.shape!.dim![0] = { dimValue: 1 };
  return encodeModel(m);
}

async function upload(server: Server, name: string, bytes: Uint8Array): Promise<string> {
  const body = multipart({ name }, { bytes, filename: `${name}.onnx` });
  const res = await server.app.inject({ method: 'POST', url: '/v1/models', payload: body.payload, headers: { ...admin, ...body.headers } });
  expect(res.statusCode, res.body).toBe(201);
  return res.json().id as string;
}

describe('the fixed batch size check at upload', () => {
  it('stores a model it cannot check (a float16 input), saying why it kept the fixed size', async () => {
    const server = await startServer(testConfig({ ADMIN_API_KEY: ADMIN_KEY, RATE_LIMIT_MAX: '0' }));
    try {
      const m = float16InputMlp();
      for (const v of [...m.graph!.input!, ...m.graph!.output!]) v.type!.tensorType!.shape!.dim![0] = { dimValue: 1 };
      const id = await upload(server, 'half', encodeModel(m));
      const got = (await server.app.inject({ url: `/v1/models/${id}`, headers: admin })).json();
      expect(got).toMatchObject({ inputs: [{ name: 'x', dtype: 'float16', shape: [1, 20] }], metadata: { batch: { fixed: 1, relaxed: false, reason: "input 'x' has ONNX type 10, which the batch check cannot feed" } } });
    } finally {
      await server.close();
    }
  });
});

describe('models stored before the fixed batch size check', () => {
  it('are checked at the next start: relaxed where they compute each sample on their own, else recorded as kept', async () => {
    const config = testConfig({ ADMIN_API_KEY: ADMIN_KEY, RATE_LIMIT_MAX: '0' });
    let server = await startServer(config);
    const ids: string[] = [];
    try {
      for (const [name, reshape] of [['plain', false], ['reshaped', true]] as const) {
        const id = await upload(server, name, batchOne(reshape));
        ids.push(id);
        // As an older build stored it: the exported signature, no `batch` in its metadata.
        await server.ctx.repos.models.update(id, {
          inputs: [{ name: 'x', dtype: 'float32', shape: [1, 20] }],
          outputs: [{ name: 'logits', dtype: 'float32', shape: [1, 5] }],
          metadata: {},
        });
      }
    } finally {
      await server.close();
    }

    server = await startServer(config);
    try {
      const get = async (id: string) => (await server.app.inject({ url: `/v1/models/${id}`, headers: admin })).json();
      const plain = await get(ids[0]!);
      expect(plain).toMatchObject({ inputs: [{ name: 'x', shape: ['batch', 20] }], outputs: [{ name: 'logits', shape: ['batch', 5] }], metadata: { batch: { fixed: 1, relaxed: true } } });
      const reshaped = await get(ids[1]!);
      expect(reshaped).toMatchObject({ inputs: [{ name: 'x', shape: [1, 20] }], metadata: { batch: { fixed: 1, relaxed: false, reason: expect.stringContaining('built into the graph') } } });

      // The relaxed one trains on a batch of 2.
      const adapter = await server.app.inject({ method: 'POST', url: '/v1/adapters', payload: { modelId: ids[0], targets: 'all', rank: 2, optimizer: { type: 'loko' }, seed: 1 }, headers: admin });
      expect(adapter.statusCode, adapter.body).toBe(201);
      const x = [0, 1].map((s) => Array.from({ length: 20 }, (_, i) => Math.cos(i + s)));
      const observed = await server.app.inject({ method: 'POST', url: `/v1/adapters/${adapter.json().id}/observe`, payload: { inputs: { x }, labels: [0, 3] }, headers: admin });
      expect(observed.statusCode, observed.body).toBe(200);
      const refused = await server.app.inject({ method: 'POST', url: '/v1/adapters', payload: { modelId: ids[1], targets: 'all', rank: 2, optimizer: { type: 'loko' } }, headers: admin });
      expect(refused.json().code).toBe('MODEL_UNSUPPORTED');
    } finally {
      await server.close();
    }
  });
});
