/**
 * Jobs across a stop and a restart over one DATA_DIR, and jobs that fail their own validation: a job
 * running when the server stops, or found running at start-up, ends `failed` with JOB_INTERRUPTED and
 * a `failed` event (nothing hangs); a job queued at start-up runs; a dataset too small for its split
 * fails the job with JOB_INVALID.
 */
import type { InjectOptions } from 'fastify';
import { afterAll, describe, expect, it } from 'vitest';

import type { Config } from '../../src/server/config.js';
import type { Server } from '../../src/server/server.js';
import { ADMIN_KEY, bearer, cleanupTemp, modelsDir, multipart, startServer, testConfig } from './helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const x = (i: number) => Array.from({ length: 20 }, (_, k) => Math.round(Math.cos(i * 3 + k) * 1000) / 1000);

let server: Server | undefined;
afterAll(async () => {
  await server?.close();
  cleanupTemp();
});

async function setup(config: Config) {
  server = await startServer(config);
  const inject = (opts: InjectOptions) => server!.app.inject(opts);
  const user = await inject({ method: 'POST', url: '/v1/users', payload: { name: 'alice' }, headers: bearer(ADMIN_KEY) });
  const alice = bearer(user.json().apiKey.key as string);
  const modelId = ((await inject({ url: '/v1/models', headers: alice })).json().items as { id: string }[])[0]!.id;
  const upload = async (rows: number) => {
    const text = Array.from({ length: rows }, (_, i) => JSON.stringify({ inputs: x(i), label: i % 5 })).join('\n');
    const body = multipart({ modelId }, { bytes: Buffer.from(text), filename: 'd.jsonl' });
    return (await inject({ method: 'POST', url: '/v1/datasets', payload: body.payload, headers: { ...alice, ...body.headers } })).json().id as string;
  };
  const adapter = async () =>
    (await inject({ method: 'POST', url: '/v1/adapters', headers: alice, payload: { modelId, targets: 'all', rank: 2, optimizer: { type: 'sgd', lr: 0.01 }, seed: 3 } })).json().id as string;
  return { inject, alice, upload, adapter };
}

describe('jobs and restarts', () => {
  it('marks running jobs failed (JOB_INTERRUPTED) at stop and at start-up, and runs queued ones', async () => {
    const config = testConfig({ ADMIN_API_KEY: ADMIN_KEY, MODELS_DIR: modelsDir({ mlp: 'mlp.opset17' }), RATE_LIMIT_MAX: '0' });
    const { alice, upload, adapter, ...first } = await setup(config);
    let inject = first.inject;
    const datasetId = await upload(40);
    const adapterId = await adapter();
    const job = (await inject({ method: 'POST', url: '/v1/jobs', headers: alice, payload: { adapterId, datasetId, epochs: 1000, batchSize: 4 } })).json();
    for (let i = 0; i < 400 && (await inject({ url: `/v1/jobs/${job.id}`, headers: alice })).json().status !== 'running'; i++) await sleep(25);
    await server!.close();

    // Stopped mid-run: failed with a reason, the final event written.
    server = await startServer(config);
    inject = (opts: InjectOptions) => server!.app.inject(opts);
    const stopped = (await inject({ url: `/v1/jobs/${job.id}`, headers: alice })).json();
    expect(stopped).toMatchObject({ status: 'failed', error: { code: 'JOB_INTERRUPTED' } });
    const evs = (await inject({ url: `/v1/jobs/${job.id}/events?limit=1000`, headers: alice })).json().items as { type: string; level: string }[];
    expect(evs[evs.length - 1]).toMatchObject({ type: 'failed', level: 'error' });

    // A job stored as running (a crash, not a clean stop) and one stored as queued, found at start-up.
    const crashed = (await inject({ method: 'POST', url: '/v1/jobs', headers: alice, payload: { adapterId, datasetId, epochs: 1000, batchSize: 4 } })).json();
    for (let i = 0; i < 400 && (await inject({ url: `/v1/jobs/${crashed.id}`, headers: alice })).json().status !== 'running'; i++) await sleep(25);
    await server.close();
    const reopened = await startServer(config, { localMode: false });
    await reopened.ctx.db.prisma.job.update({ where: { id: crashed.id }, data: { status: 'running' } });
    const { ownerId } = await reopened.ctx.db.prisma.job.findUniqueOrThrow({ where: { id: job.id } });
    const params = { epochs: 1, batchSize: 8, validationSplit: 0.2, checkpointEvery: 0, progressEvery: 10 };
    const queued = await reopened.ctx.db.prisma.job.create({ data: { id: 'job_queuedatstartup0000000', ownerId, adapterId, datasetId, params, progress: {} } });
    await reopened.close();
    server = await startServer(config);
    inject = (opts: InjectOptions) => server!.app.inject(opts);
    expect((await inject({ url: `/v1/jobs/${crashed.id}`, headers: alice })).json()).toMatchObject({ status: 'failed', error: { code: 'JOB_INTERRUPTED' } });
    let q = (await inject({ url: `/v1/jobs/${queued.id}`, headers: alice })).json();
    for (let i = 0; i < 400 && !['succeeded', 'failed'].includes(q.status); i++) {
      await sleep(25);
      q = (await inject({ url: `/v1/jobs/${queued.id}`, headers: alice })).json();
    }
    expect(q.status).toBe('succeeded');
  }, 120_000);

  it('fails a job whose dataset is too small for its validation split (JOB_INVALID, with a failed event)', async () => {
    await server?.close();
    const { inject, alice, upload, adapter } = await setup(testConfig({ ADMIN_API_KEY: ADMIN_KEY, MODELS_DIR: modelsDir({ mlp: 'mlp.opset17' }), RATE_LIMIT_MAX: '0' }));
    const datasetId = await upload(1);
    const job = (await inject({ method: 'POST', url: '/v1/jobs', headers: alice, payload: { adapterId: await adapter(), datasetId, validationSplit: 0.5 } })).json();
    let j = job;
    for (let i = 0; i < 200 && !['failed', 'succeeded'].includes(j.status); i++) {
      await sleep(25);
      j = (await inject({ url: `/v1/jobs/${job.id}`, headers: alice })).json();
    }
    expect(j).toMatchObject({ status: 'failed', error: { code: 'JOB_INVALID' } });
    expect(j.error.message).toMatch(/1 rows/);
    const types = ((await inject({ url: `/v1/jobs/${job.id}/events`, headers: alice })).json().items as { type: string }[]).map((e) => e.type);
    expect(types).toEqual(['queued', 'validating', 'failed']);
  }, 60_000);
});
