/**
 * Jobs across a stop and a restart over one DATA_DIR, and jobs that fail their own validation:
 *  - a job running when the server stops resumes at the next start where it stopped (a `resumed`
 *    event), makes exactly `totalSteps` job steps in all (counted in the observation log by job id)
 *    and leaves the adapter exactly as the same job run without a stop leaves a twin adapter;
 *  - a job paused at a stop stays paused after the restart and finishes after a resume;
 *  - jobs found `validating` (validated again), `queued` (run) or `running` whose validation now
 *    fails (failed with that error) at start-up;
 *  - a SIGKILL of `npm start`'s process mid-job: the restarted process resumes the job to the end;
 *  - a dataset too small for its split fails the job with JOB_INVALID.
 */
import { join } from 'node:path';

import Database from 'better-sqlite3';
import type { InjectOptions } from 'fastify';
import { afterAll, describe, expect, it } from 'vitest';

import { importState } from '../../src/lora/index.js';
import type { Config } from '../../src/server/config.js';
import type { Server } from '../../src/server/server.js';
import { ADMIN_KEY, bearer, cleanupTemp, modelsDir, multipart, pollUntil, startChild, startServer, tempDir, testConfig } from './helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const x = (i: number) => Array.from({ length: 20 }, (_, k) => Math.round(Math.cos(i * 3 + k) * 1000) / 1000);
const jsonl = (rows: number) => Array.from({ length: rows }, (_, i) => JSON.stringify({ inputs: x(i), label: i % 5 })).join('\n');

type Ev = { seq: number; level: string; type: string; data: Record<string, any> };

let server: Server | undefined;
afterAll(async () => {
  await server?.close();
  cleanupTemp();
});

const fixtureConfig = () => testConfig({ ADMIN_API_KEY: ADMIN_KEY, MODELS_DIR: modelsDir({ mlp: 'mlp.opset17' }), RATE_LIMIT_MAX: '0' });

/** (Re)starts `server` over `config`. */
async function restart(config: Config): Promise<void> {
  await server?.close();
  server = await startServer(config);
}

const inject = (opts: InjectOptions) => server!.app.inject(opts);
const online = () => server!.ctx.repos.online;

async function setup(config: Config) {
  await restart(config);
  const user = await inject({ method: 'POST', url: '/v1/users', payload: { name: 'alice' }, headers: bearer(ADMIN_KEY) });
  const alice = bearer(user.json().apiKey.key as string);
  const modelId = ((await inject({ url: '/v1/models', headers: alice })).json().items as { id: string }[])[0]!.id;
  const upload = async (rows: number) => {
    const body = multipart({ modelId }, { bytes: Buffer.from(jsonl(rows)), filename: 'd.jsonl' });
    return (await inject({ method: 'POST', url: '/v1/datasets', payload: body.payload, headers: { ...alice, ...body.headers } })).json().id as string;
  };
  const adapter = async () =>
    (await inject({ method: 'POST', url: '/v1/adapters', headers: alice, payload: { modelId, targets: 'all', rank: 2, optimizer: { type: 'sgd', lr: 0.01 }, seed: 3 } })).json().id as string;
  const createJob = async (payload: Record<string, unknown>) => {
    const res = await inject({ method: 'POST', url: '/v1/jobs', headers: alice, payload });
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as { id: string };
  };
  const job = async (id: string) => (await inject({ url: `/v1/jobs/${id}`, headers: alice })).json();
  const events = async (id: string) => (await inject({ url: `/v1/jobs/${id}/events?limit=1000`, headers: alice })).json().items as Ev[];
  const waitFor = (id: string, ok: (j: any) => boolean, ms = 90_000) => pollUntil(`job ${id}`, () => job(id), ok, ms);
  const final = (j: { status: string }) => ['succeeded', 'failed', 'cancelled'].includes(j.status);
  /** Waits until the job has logged at least `n` steps. */
  const stepsAtLeast = async (adapterId: string, jobId: string, n: number) => {
    for (let i = 0; i < 6000 && (await online().jobStepCount(adapterId, jobId)) < n; i++) await sleep(10);
  };
  return { alice, modelId, upload, adapter, createJob, job, events, waitFor, final, stepsAtLeast };
}

/** The adapter's downloaded state: every tensor's values and the counters (not the adapter id). */
async function stateOf(adapterId: string, headers: Record<string, string>) {
  const res = await inject({ url: `/v1/adapters/${adapterId}/download?format=state`, headers });
  expect(res.statusCode).toBe(200);
  const { tensors, meta } = importState(new Uint8Array(res.rawPayload));
  return {
    tensors: Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, { shape: t.shape, data: Array.from(t.data) }])),
    step: meta['step'],
    samples: meta['samples'],
    type: meta['type'],
  };
}

// 40 rows, validation split 0.2: 32 training rows, 8 batches of 4 per epoch.
const PARAMS = { epochs: 30, batchSize: 4, checkpointEvery: 25, progressEvery: 5 };
const TOTAL = 30 * 8;

describe('jobs and restarts', () => {
  it('resumes a job stopped mid-run where it stopped: succeeded, exactly totalSteps job steps, the state of an uninterrupted run', async () => {
    const config = fixtureConfig();
    const t = await setup(config);
    const datasetId = await t.upload(40);
    const interrupted = await t.adapter();
    const twin = await t.adapter();
    const job = await t.createJob({ adapterId: interrupted, datasetId, ...PARAMS });
    await t.stepsAtLeast(interrupted, job.id, 20);
    await restart(config); // a graceful stop mid-run, then a start on the same DATA_DIR

    const done = await t.waitFor(job.id, t.final);
    expect(done).toMatchObject({ status: 'succeeded', error: null, progress: { step: TOTAL, totalSteps: TOTAL, fraction: 1 } });
    const evs = await t.events(job.id);
    const resumed = evs.filter((e) => e.type === 'resumed');
    expect(resumed).toHaveLength(1);
    expect(resumed[0]).toMatchObject({ level: 'info', data: { reason: 'restart' } });
    expect(resumed[0]!.data['completedSteps']).toBeGreaterThanOrEqual(20);
    expect(resumed[0]!.data['completedSteps']).toBeLessThan(TOTAL);
    // Exactly the job's steps, each once: one observation per step, seq 1..totalSteps.
    expect(await online().jobStepCount(interrupted, job.id)).toBe(TOTAL);
    const log = await online().observations(interrupted, 0);
    expect(log.map((o) => o.seq)).toEqual(Array.from({ length: TOTAL }, (_, i) => i + 1));
    // The baseline is not evaluated again; every epoch is reported once; one start, one end.
    const types = evs.map((e) => e.type);
    expect(evs.filter((e) => e.type === 'validation' && e.data['epoch'] === 0)).toHaveLength(1);
    expect(evs.filter((e) => e.type === 'epoch').map((e) => e.data['epoch'])).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(types.filter((ty) => ty === 'started' || ty === 'finished')).toEqual(['started', 'finished']);
    const base0 = evs.find((e) => e.type === 'validation')!.data;
    expect(evs.at(-1)).toMatchObject({ type: 'finished', data: { step: TOTAL, baseline: { n: 8, accuracy: base0['accuracy'], loss: base0['loss'] } } });
    const checkpoints = evs.filter((e) => e.type === 'checkpoint');
    expect(checkpoints.filter((e) => e.data['final'])).toHaveLength(1);

    // The same job without a stop, on a twin adapter (same seed, config and dataset).
    const plain = await t.createJob({ adapterId: twin, datasetId, ...PARAMS });
    expect(await t.waitFor(plain.id, t.final)).toMatchObject({ status: 'succeeded', progress: { step: TOTAL } });
    expect(await online().jobStepCount(twin, plain.id)).toBe(TOTAL);
    const twinLog = await online().observations(twin, 0);
    expect(log.map((o) => [o.inputs, o.labels])).toEqual(twinLog.map((o) => [o.inputs, o.labels]));
    const [a, b] = [await stateOf(interrupted, t.alice), await stateOf(twin, t.alice)];
    expect(a.step).toBe(String(TOTAL));
    expect(a).toEqual(b);
    const lastEpoch = (evs: Ev[]) => evs.filter((e) => e.type === 'validation').at(-1)!.data;
    expect(lastEpoch(evs)).toEqual(lastEpoch(await t.events(plain.id)));
  }, 180_000);

  it('keeps a job paused at a stop paused after the restart, and finishes it after a resume', async () => {
    const config = fixtureConfig();
    const t = await setup(config);
    const datasetId = await t.upload(40);
    const adapterId = await t.adapter();
    const job = await t.createJob({ adapterId, datasetId, ...PARAMS });
    await t.stepsAtLeast(adapterId, job.id, 5);
    expect((await inject({ method: 'POST', url: `/v1/jobs/${job.id}/pause`, headers: t.alice })).statusCode).toBe(200);
    await restart(config);

    // Resumed into `paused`: it waits at the gate and makes no step.
    for (let i = 0; i < 400 && !(await t.events(job.id)).some((e) => e.type === 'resumed' && e.data['reason'] === 'restart'); i++) await sleep(25);
    expect((await t.job(job.id)).status).toBe('paused');
    const before = await online().jobStepCount(adapterId, job.id);
    expect(before).toBeGreaterThanOrEqual(5);
    expect(before).toBeLessThan(TOTAL);
    await sleep(300);
    expect(await online().jobStepCount(adapterId, job.id)).toBe(before);
    expect((await t.job(job.id)).status).toBe('paused');

    expect((await inject({ method: 'POST', url: `/v1/jobs/${job.id}/resume`, headers: t.alice })).json().status).toBe('running');
    expect(await t.waitFor(job.id, t.final)).toMatchObject({ status: 'succeeded', progress: { step: TOTAL } });
    expect(await online().jobStepCount(adapterId, job.id)).toBe(TOTAL);
    expect(await online().observationCount(adapterId)).toBe(TOTAL);
  }, 180_000);

  it('at start-up validates a job found validating again, runs a queued one, and fails a running one whose validation now fails', async () => {
    const config = fixtureConfig();
    const t = await setup(config);
    const datasetId = await t.upload(40);
    const tiny = await t.upload(1);
    const adapterId = await t.adapter();
    const other = await t.adapter();
    const { ownerId } = await server!.ctx.db.prisma.adapter.findUniqueOrThrow({ where: { id: adapterId } });
    const params = { epochs: 2, batchSize: 8, validationSplit: 0.2, checkpointEvery: 0, progressEvery: 10 };
    // Stored as a crash left them (created after this server's recovery ran, so the next start finds them).
    const make = (id: string, adapter: string, dataset: string, status: 'queued' | 'validating' | 'running', p = params) =>
      server!.ctx.db.prisma.job.create({ data: { id, ownerId, adapterId: adapter, datasetId: dataset, status, params: p, progress: {} } });
    await make('job_validatingatstartup00000', adapterId, datasetId, 'validating');
    await make('job_queuedatstartup000000000', adapterId, datasetId, 'queued');
    await make('job_runningbadatstartup00000', other, tiny, 'running', { ...params, validationSplit: 0.5 });
    // Running, but the crash came before its `started` event was written.
    const third = await t.adapter();
    await make('job_runningnostartevent00000', third, datasetId, 'running');
    await restart(config);

    const validating = await t.waitFor('job_validatingatstartup00000', t.final);
    expect(validating).toMatchObject({ status: 'succeeded', progress: { step: 8, totalSteps: 8 } });
    expect((await t.events(validating.id)).map((e) => e.type).slice(0, 3)).toEqual(['resumed', 'started', 'validation']);
    expect((await t.events(validating.id))[0]!.data).toEqual({ completedSteps: 0, reason: 'restart' });
    expect(await online().jobStepCount(adapterId, validating.id)).toBe(8);
    expect(await t.waitFor('job_queuedatstartup000000000', t.final)).toMatchObject({ status: 'succeeded' });
    expect(await online().jobStepCount(adapterId, 'job_queuedatstartup000000000')).toBe(8);
    const bad = await t.waitFor('job_runningbadatstartup00000', t.final);
    expect(bad).toMatchObject({ status: 'failed', error: { code: 'JOB_INVALID' } });
    expect((await t.events(bad.id)).map((e) => e.type)).toEqual(['resumed', 'failed']);
    const noStart = await t.waitFor('job_runningnostartevent00000', t.final);
    expect(noStart).toMatchObject({ status: 'succeeded', progress: { step: 8, totalSteps: 8 } });
    const noStartTypes = (await t.events(noStart.id)).map((e) => e.type);
    expect(noStartTypes.slice(0, 3)).toEqual(['resumed', 'started', 'validation']);
    expect(noStartTypes.filter((ty) => ty === 'started')).toHaveLength(1);
  }, 120_000);

  it('resumes a job after a SIGKILL of the server process mid-run: succeeded with exactly totalSteps job steps', async () => {
    const dataDir = tempDir('jobs-kill-');
    const env = { DATA_DIR: dataDir, MODELS_DIR: modelsDir({ mlp: 'mlp.opset17' }) };
    const api = async (base: string, path: string, init?: RequestInit) => (await fetch(`${base}${path}`, init)).json() as Promise<any>;
    const post = (base: string, path: string, body: unknown) => api(base, path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const first = startChild(env);
    let jobId: string;
    try {
      const base = await first.address();
      const modelId = (await api(base, '/v1/models')).items[0].id as string;
      const form = new FormData();
      form.set('modelId', modelId);
      form.set('file', new Blob([jsonl(40)]), 'd.jsonl');
      const datasetId = (await api(base, '/v1/datasets', { method: 'POST', body: form })).id as string;
      const adapter = await post(base, '/v1/adapters', { modelId, targets: 'all', rank: 2, optimizer: { type: 'sgd', lr: 0.01 }, seed: 3 });
      jobId = (await post(base, '/v1/jobs', { adapterId: adapter.id, datasetId, ...PARAMS })).id;
      for (let i = 0; i < 2400 && !(((await api(base, `/v1/jobs/${jobId}`)).progress.step ?? 0) >= 20); i++) await sleep(25);
      first.child.kill('SIGKILL');
      await first.exited;
    } finally {
      first.child.kill('SIGKILL');
    }
    const second = startChild(env);
    try {
      const base = await second.address();
      let j: any;
      for (let i = 0; i < 3600 && !['succeeded', 'failed', 'cancelled'].includes((j = await api(base, `/v1/jobs/${jobId}`)).status); i++) await sleep(25);
      expect(j, second.output()).toMatchObject({ status: 'succeeded', progress: { step: TOTAL } });
      const resumed = ((await api(base, `/v1/jobs/${jobId}/events?limit=1000`)).items as Ev[]).filter((e) => e.type === 'resumed');
      expect(resumed).toHaveLength(1);
      expect(resumed[0]!.data['completedSteps']).toBeGreaterThanOrEqual(20);
    } finally {
      second.child.kill('SIGKILL');
      await second.exited;
    }
    const db = new Database(join(dataDir, 'service.db'), { readonly: true });
    try {
      const rows = db.prepare('SELECT "seq" FROM "Observation" WHERE "jobId" = ? ORDER BY "seq"').all(jobId) as { seq: number }[];
      expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: TOTAL }, (_, i) => i + 1));
    } finally {
      db.close();
    }
  }, 180_000);

  it('fails a job whose dataset is too small for its validation split (JOB_INVALID, with a failed event)', async () => {
    const t = await setup(fixtureConfig());
    const datasetId = await t.upload(1);
    const job = await t.createJob({ adapterId: await t.adapter(), datasetId, validationSplit: 0.5 });
    const j = await t.waitFor(job.id, t.final, 10_000);
    expect(j).toMatchObject({ status: 'failed', error: { code: 'JOB_INVALID' } });
    expect(j.error.message).toMatch(/1 rows/);
    expect((await t.events(job.id)).map((e) => e.type)).toEqual(['queued', 'validating', 'failed']);
  }, 60_000);
});

