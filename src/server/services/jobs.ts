/**
 * Fine-tuning jobs: creation (with an idempotency key), the state machine, the event log (numbered
 * per job, with live subscribers for SSE) and the in-process runner.
 *
 * State machine: queued → validating → running ⇄ paused → succeeded | failed | cancelled; cancel is
 * allowed from every non-final state. Every transition is a compare-and-set on the stored status, so
 * a cancel and the runner never overwrite each other; illegal requests answer 409 STATE_CONFLICT.
 *
 * The runner: one job at a time per adapter (jobs of different adapters run side by side). It
 * validates (the dataset's model is the adapter's, enough rows for the split), splits the rows into
 * training and validation sets and shuffles each epoch deterministically from the adapter's seed,
 * evaluates the validation set before training and after each epoch, and trains through the online
 * service's `train` (the adapter's one-writer queue and its durable log, so a job's steps are
 * ordinary adapter steps). Cancel, pause and resume take effect between steps. Checkpoints every
 * `checkpointEvery` steps and at the end, through the online service, with the job's metrics added.
 *
 * Restarts: nothing of a job is lost. A graceful stop ends running jobs at their next step boundary
 * and leaves their status as it is; jobs found `validating`, `running` or `paused` at start-up (after
 * a stop or a crash) resume where they stopped, with a `resumed` event ({completedSteps, reason:
 * 'restart'}). Every job step is logged with the job's id in the same transaction as the adapter's
 * step (repositories/online.ts), so the count of a job's logged steps is exactly the number of
 * batches it completed; the batch schedule is deterministic (the split from the adapter's seed, each
 * epoch's shuffle from the seed and the epoch), so the resumed run skips that many batches of the same
 * schedule and makes exactly the remaining ones: the adapter ends as if the job had never stopped
 * (unless other clients' observes interleaved, as they may in any run). The baseline (epoch 0)
 * validation is taken from the stored events rather than re-run; an epoch whose batches were all done
 * before the stop gets its `validation`/`epoch` events only if they were not written yet. A `paused`
 * job resumes into `paused` (waiting for a resume), a `validating` one validates again (and fails as
 * usual if its dataset or adapter went away). Queued jobs are queued again. (Jobs that earlier
 * versions marked `failed` with JOB_INTERRUPTED stay failed.)
 * TODO(#5): DESIGN 6 runs jobs through a Postgres-backed queue library for scale-out; this queue is in-process.
 */
import { EventEmitter } from 'node:events';

import { createRng, hashSeeds } from '../../data/index.js';
import type { Labels } from '../../lora/index.js';
import type { Tensor } from '../../onnx/index.js';
import { ConflictError, NotFoundError } from '../errors.js';
import { newId } from '../ids.js';
import type { Logger } from '../logger.js';
import type { Repositories } from '../repositories/index.js';
import type { Page } from '../repositories/adapters.js';
import type { DatasetRecord } from '../repositories/datasets.js';
import type { EventLevel, JobEventRecord, JobParams, JobRecord, JobRepository, JobStatus } from '../repositories/jobs.js';
import type { AdapterService } from './adapters.js';
import { toFeeds, type DatasetService, type Sample } from './datasets.js';
import { taskOf } from './engines.js';
import { DomainError } from '../../errors.js';

/** A checkpoint as the trainer reports it. */
export interface TrainerCheckpoint {
  id: string;
  kind: string;
  step: number;
  metrics: Record<string, unknown>;
  createdAt: Date;
}

/** What the runner needs of the online service (services/online.ts OnlineService satisfies it). */
export interface JobTrainer {
  /** One durable optimizer step through the adapter's writer queue, logged with `jobId`; `step` is the adapter's new step. */
  train(adapterId: string, batch: { inputs: Readonly<Record<string, Tensor>>; labels: Labels }, opts: { jobId?: string }): Promise<{ step: number; loss: number[]; predicted?: number[] }>;
  /** How many steps job `jobId` has logged on the adapter (exact: each is logged with its step). */
  completedSteps(adapterId: string, jobId: string): Promise<number>;
  /** Predictions at the adapter's current state. */
  predictFeeds(adapterId: string, feeds: Readonly<Record<string, Tensor>>): Promise<{ step: number; outputs: number[][]; probs?: number[][]; predicted?: number[] }>;
  /** A durable checkpoint of the state after every queued update. */
  checkpoint(adapterId: string, opts: { kind?: 'job'; jobId?: string | null }): Promise<TrainerCheckpoint>;
  listCheckpoints(adapterId: string, opts: { jobId?: string }): Promise<TrainerCheckpoint[]>;
}

export const FINAL_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'cancelled'];
/** Event types that end a job's event stream. */
export const FINAL_EVENTS: readonly string[] = ['finished', 'failed', 'cancelled'];

export interface CreateJobInput {
  adapterId: string;
  datasetId: string;
  epochs: number;
  batchSize: number;
  validationSplit: number;
  checkpointEvery: number;
  progressEvery: number;
}

/** A job that cannot do what was asked in its current state: 409 STATE_CONFLICT. */
function stateConflict(job: JobRecord, action: string): ConflictError {
  return new ConflictError('STATE_CONFLICT', `cannot ${action} a job that is ${job.status}`, { id: job.id, status: job.status, action });
}

/** A job's run failed for a reason of its own (stored on the job, never an HTTP answer). */
class JobError extends DomainError {}

interface Control {
  adapterId: string;
  paused: boolean;
  cancelled: boolean;
  /** The server is stopping: the job stops at its next step boundary and keeps its status (resumed at the next start). */
  interrupted: boolean;
  wake: () => void;
}

export interface JobServiceOptions {
  /** Validation predictions per batch (default 64). */
  evalBatch?: number;
}

export class JobService {
  private readonly jobs: JobRepository;
  private readonly controls = new Map<string, Control>();
  private readonly chains = new Map<string, Promise<void>>();
  private readonly eventChains = new Map<string, Promise<number>>();
  /** Jobs whose final event is written: nothing follows it (a step in flight at a cancel stays silent). */
  private readonly ended = new Set<string>();
  private readonly emitter = new EventEmitter();
  private readonly active = new Set<Promise<void>>();
  private stopping = false;
  /** Adapters being deleted: their jobs stop and do not start (see retire). */
  private readonly retired = new Set<string>();
  private readonly evalBatch: number;

  constructor(
    private readonly repos: Repositories,
    private readonly datasets: DatasetService,
    private readonly adapters: AdapterService,
    private readonly trainer: () => JobTrainer,
    private readonly log: Logger,
    options: JobServiceOptions = {},
  ) {
    this.jobs = repos.jobs;
    this.emitter.setMaxListeners(0);
    this.evalBatch = options.evalBatch ?? 64;
  }

  /**
   * Creates a job of `ownerId` and queues it. With an idempotency key already used by this owner the
   * first job is returned (`created: false`) whatever the body says. ADAPTER_NOT_FOUND /
   * DATASET_NOT_FOUND for ids the owner cannot see; DATASET_MODEL_MISMATCH when they differ in model,
   * DATASET_TASK_MISMATCH in the kind of labels, DATASET_OUTPUT_MISMATCH in the model output.
   */
  async create(ownerId: string, input: CreateJobInput, idempotencyKey?: string): Promise<{ job: JobRecord; created: boolean }> {
    if (idempotencyKey !== undefined) {
      const existing = await this.jobs.byIdempotencyKey(ownerId, idempotencyKey);
      if (existing) return { job: existing, created: false };
    }
    const adapter = await this.adapters.get(input.adapterId, ownerId);
    const dataset = await this.datasets.get(input.datasetId, ownerId);
    if (dataset.modelId !== adapter.modelId) {
      throw new DomainError('DATASET_MODEL_MISMATCH', `dataset '${dataset.id}' is for model '${dataset.modelId}', adapter '${adapter.id}' for '${adapter.modelId}'`, {
        field: 'datasetId',
        datasetModelId: dataset.modelId,
        adapterModelId: adapter.modelId,
      });
    }
    // A regression adapter trains on target vectors, a classifier on class ids: the dataset's labels must match.
    const vectors = taskOf(adapter.config) === 'regression';
    if (vectors !== (dataset.summary.label.kind === 'vector')) {
      throw new DomainError(
        'DATASET_TASK_MISMATCH',
        `adapter '${adapter.id}' trains for ${vectors ? 'regression (target vectors)' : 'classification (class ids)'}, but dataset '${dataset.id}' holds ${vectors ? 'class ids' : 'target vectors'}; upload the dataset with task=${vectors ? 'regression' : 'classification'}`,
        { field: 'datasetId', adapterTask: vectors ? 'regression' : 'classification', datasetLabels: dataset.summary.label.kind },
      );
    }
    // The labels were checked against one model output (its classes or size); the adapter trains one.
    if (dataset.summary.label.output !== adapter.config.output) {
      throw new DomainError(
        'DATASET_OUTPUT_MISMATCH',
        `dataset '${dataset.id}' holds labels for the model output '${dataset.summary.label.output}', adapter '${adapter.id}' trains '${adapter.config.output}'; upload the dataset with output=${adapter.config.output}`,
        { field: 'datasetId', datasetOutput: dataset.summary.label.output, adapterOutput: adapter.config.output },
      );
    }
    const { adapterId, datasetId, ...params } = input;
    let job: JobRecord;
    try {
      job = await this.jobs.create({ id: newId('job'), ownerId, adapterId, datasetId, params, idempotencyKey: idempotencyKey ?? null });
    } catch (err) {
      // Two concurrent creates with one key: the unique index lets one through; the other returns it.
      const existing = idempotencyKey !== undefined ? await this.jobs.byIdempotencyKey(ownerId, idempotencyKey) : null;
      if (existing) return { job: existing, created: false };
      throw err;
    }
    await this.event(job.id, 'info', 'queued', { params, adapterId, datasetId });
    this.enqueue(job);
    return { job, created: true };
  }

  async get(id: string, ownerId: string): Promise<JobRecord> {
    const j = await this.jobs.get(id, ownerId);
    if (!j) throw new NotFoundError('job', id);
    return j;
  }

  list(ownerId: string, opts: { limit: number; cursor?: string; adapterId?: string; status?: JobStatus }): Promise<Page<JobRecord>> {
    return this.jobs.list(ownerId, opts);
  }

  /** Events of a job the caller owns with seq > `after`. */
  async events(id: string, ownerId: string, after: number, limit: number): Promise<JobEventRecord[]> {
    await this.get(id, ownerId);
    return this.jobs.events(id, after, limit);
  }

  /** Events with seq > `after`, no ownership check (the SSE route has done it). */
  eventsAfter(id: string, after: number, limit: number): Promise<JobEventRecord[]> {
    return this.jobs.events(id, after, limit);
  }

  /** Calls `fn` with every event appended to the job from now on; returns the unsubscribe function. */
  subscribe(jobId: string, fn: (e: JobEventRecord) => void): () => void {
    this.emitter.on(jobId, fn);
    return () => this.emitter.off(jobId, fn);
  }

  async checkpoints(id: string, ownerId: string): Promise<TrainerCheckpoint[]> {
    const job = await this.get(id, ownerId);
    return this.trainer().listCheckpoints(job.adapterId, { jobId: job.id });
  }

  /** queued | validating | running | paused → cancelled. */
  async cancel(id: string, ownerId: string): Promise<JobRecord> {
    const job = await this.get(id, ownerId);
    const ok = await this.jobs.transition(id, ['queued', 'validating', 'running', 'paused'], 'cancelled', { finishedAt: new Date() });
    if (!ok) throw stateConflict((await this.jobs.byId(id)) ?? job, 'cancel');
    const c = this.controls.get(id);
    if (c) {
      c.cancelled = true;
      c.wake();
    }
    await this.event(id, 'info', 'cancelled', { from: job.status });
    return (await this.jobs.byId(id))!;
  }

  /** running → paused (the runner stops before its next step). */
  async pause(id: string, ownerId: string): Promise<JobRecord> {
    const job = await this.get(id, ownerId);
    if (!(await this.jobs.transition(id, ['running'], 'paused'))) throw stateConflict((await this.jobs.byId(id)) ?? job, 'pause');
    const c = this.controls.get(id);
    if (c) c.paused = true;
    await this.event(id, 'info', 'paused', { progress: job.progress });
    return (await this.jobs.byId(id))!;
  }

  /** paused → running. */
  async resume(id: string, ownerId: string): Promise<JobRecord> {
    const job = await this.get(id, ownerId);
    if (!(await this.jobs.transition(id, ['paused'], 'running'))) throw stateConflict((await this.jobs.byId(id)) ?? job, 'resume');
    const c = this.controls.get(id);
    if (c) {
      c.paused = false;
      c.wake();
    }
    await this.event(id, 'info', 'resumed', {});
    return (await this.jobs.byId(id))!;
  }

  /** Start-up: jobs stopped while validating, running or paused resume where they were; queued ones are queued again. */
  async recover(): Promise<{ resumed: number; requeued: number }> {
    const interrupted = await this.jobs.withStatus(['validating', 'running', 'paused']);
    for (const j of interrupted) this.enqueue(j, true);
    const queued = await this.jobs.withStatus(['queued']);
    for (const j of queued) this.enqueue(j);
    if (interrupted.length || queued.length) this.log.info({ resumed: interrupted.length, requeued: queued.length }, 'jobs recovered at start-up');
    return { resumed: interrupted.length, requeued: queued.length };
  }

  /** Stops the runner: running jobs end at their next step boundary and keep their status, to resume at the next start. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const c of this.controls.values()) {
      c.interrupted = true;
      c.wake();
    }
    await Promise.allSettled([...this.active]);
    await Promise.allSettled([...this.eventChains.values()]);
  }

  /**
   * An adapter is about to be deleted with its jobs: its running job stops at its next step boundary
   * (the step in flight finishes) and its queued ones never start, without writing anything more (their
   * rows go with the adapter). Resolves when none of its jobs runs. `release` ends it.
   */
  async retire(adapterId: string): Promise<void> {
    this.retired.add(adapterId);
    for (const c of this.controls.values()) {
      if (c.adapterId !== adapterId) continue;
      c.cancelled = true;
      c.wake();
    }
    await this.chains.get(adapterId);
  }

  /** The deletion `retire` announced is over. If it failed, the adapter's unfinished jobs resume at the next start. */
  release(adapterId: string): void {
    this.retired.delete(adapterId);
  }

  /** Appends an event (seq numbered per job, in call order) and tells subscribers. */
  private event(jobId: string, level: EventLevel, type: string, data: Record<string, unknown>): Promise<number> {
    const prev = this.eventChains.get(jobId) ?? this.jobs.lastSeq(jobId);
    const next = prev
      .catch(() => this.jobs.lastSeq(jobId))
      .then(async (seq) => {
        if (this.ended.has(jobId)) return seq;
        if (FINAL_EVENTS.includes(type)) this.ended.add(jobId);
        const e = await this.jobs.appendEvent(jobId, { id: newId('evt'), seq: seq + 1, level, type, data });
        this.emitter.emit(jobId, e);
        return e.seq;
      });
    this.eventChains.set(jobId, next);
    return next;
  }

  /** Runs the job after the adapter's earlier jobs; `resume`: a job stopped by a restart, picked up where it was. */
  private enqueue(job: JobRecord, resume = false): void {
    if (this.stopping) return;
    const prev = this.chains.get(job.adapterId) ?? Promise.resolve();
    const run = prev.then(() => (this.retired.has(job.adapterId) ? undefined : this.run(job.id, job.adapterId, resume)));
    const tail = run.catch((err: unknown) => this.log.error({ err, job: job.id }, 'job runner crashed'));
    this.chains.set(job.adapterId, tail);
    this.active.add(tail);
    void tail.finally(() => {
      this.active.delete(tail);
      if (this.chains.get(job.adapterId) === tail) this.chains.delete(job.adapterId);
    });
  }

  private async fail(id: string, from: JobStatus[], code: string, message: string): Promise<boolean> {
    const ok = await this.jobs.transition(id, from, 'failed', { errorCode: code, errorMessage: message, finishedAt: new Date() });
    if (ok) await this.event(id, 'error', 'failed', { code, message });
    return ok;
  }

  /** Waits while paused; false when the job must stop (cancelled, interrupted). */
  private async gate(c: Control): Promise<boolean> {
    while (c.paused && !c.cancelled && !c.interrupted) {
      await new Promise<void>((resolve) => (c.wake = resolve));
    }
    return !c.cancelled && !c.interrupted;
  }

  private async run(jobId: string, adapterId: string, resume: boolean): Promise<void> {
    if (this.stopping) return;
    const c: Control = { adapterId, paused: false, cancelled: false, interrupted: false, wake: () => {} };
    let from: JobStatus = 'queued';
    if (resume) {
      // Registered before the status is read, so a pause, resume or cancel from now on reaches it.
      this.controls.set(jobId, c);
      const job = await this.jobs.byId(jobId);
      if (!job || !['validating', 'running', 'paused'].includes(job.status)) {
        this.controls.delete(jobId); // cancelled (or gone) before it resumed
        return;
      }
      from = job.status;
      c.paused = job.status === 'paused';
    } else {
      if (!(await this.jobs.transition(jobId, ['queued'], 'validating'))) return; // cancelled while queued
      this.controls.set(jobId, c);
    }
    if (this.stopping) c.interrupted = true; // stop() came while the status was read or moved
    if (this.retired.has(adapterId)) c.cancelled = true; // retire() came meanwhile
    try {
      let done = 0;
      if (resume) {
        done = await this.trainer().completedSteps(adapterId, jobId);
        await this.event(jobId, 'info', 'resumed', { completedSteps: done, reason: 'restart' });
      } else {
        await this.event(jobId, 'info', 'validating', {});
      }
      // A resumed job validates again: the same plan (split and shuffles are deterministic), or the
      // error that its dataset or adapter went away.
      const plan = await this.validate(jobId);
      const started = {
        trainRows: plan.train.length,
        validationRows: plan.validation.length,
        totalSteps: plan.totalSteps,
        epochs: plan.params.epochs,
        batchSize: plan.params.batchSize,
      };
      if (from === 'queued' || from === 'validating') {
        const progress = { epoch: 0, step: 0, totalSteps: plan.totalSteps, fraction: 0 };
        if (!(await this.jobs.transition(jobId, ['validating'], 'running', { startedAt: new Date(), progress }))) return;
        await this.event(jobId, 'info', 'started', started);
      } else if ((await this.storedEvents(jobId, ['started'])).length === 0) {
        // A crash between the move to `running` and its `started` event: write it now.
        await this.event(jobId, 'info', 'started', started);
      }
      await this.train(jobId, plan, c, done);
    } catch (err) {
      const e = err as { code?: unknown; message?: unknown };
      const code = typeof e.code === 'string' && !/^P\d{4}$/.test(e.code) ? e.code : 'INTERNAL';
      const message = typeof e.message === 'string' ? e.message : String(err);
      if (code === 'INTERNAL') this.log.error({ err, job: jobId }, 'job failed');
      await this.fail(jobId, ['validating', 'running', 'paused'], code, message);
    } finally {
      // An interrupted job (the server is stopping) keeps its status: the next start resumes it.
      this.controls.delete(jobId);
    }
  }

  private async validate(jobId: string): Promise<Plan> {
    const job = (await this.jobs.byId(jobId))!;
    const adapter = await this.repos.adapters.get(job.adapterId, job.ownerId);
    if (!adapter) throw new JobError('ADAPTER_NOT_FOUND', `adapter '${job.adapterId}' no longer exists`);
    const dataset: DatasetRecord | null = await this.repos.datasets.get(job.datasetId, job.ownerId);
    if (!dataset) throw new JobError('DATASET_NOT_FOUND', `dataset '${job.datasetId}' no longer exists`);
    if (dataset.modelId !== adapter.modelId) throw new JobError('DATASET_MODEL_MISMATCH', `dataset model '${dataset.modelId}' is not the adapter's model '${adapter.modelId}'`);
    const parsed = await this.datasets.load(dataset);
    const params = job.params;
    const n = parsed.samples.length;
    const nVal = params.validationSplit > 0 ? Math.max(1, Math.round(n * params.validationSplit)) : 0;
    if (n - nVal < 1) throw new JobError('JOB_INVALID', `dataset has ${n} rows: too few for a validation split of ${params.validationSplit}`, { rows: n });
    // The split is fixed by the adapter's seed and the dataset, so a rerun of the job sees the same sets.
    const seed = adapter.config.seed;
    const order = createRng(seed, hashSeeds(1, n)).shuffle(Array.from({ length: n }, (_, i) => i));
    const validation = order.slice(0, nVal).map((i) => parsed.samples[i]!);
    const train = order.slice(nVal).map((i) => parsed.samples[i]!);
    const perEpoch = Math.ceil(train.length / params.batchSize);
    return { adapterId: adapter.id, seed, params, train, validation, summary: parsed.summary, perEpoch, totalSteps: perEpoch * params.epochs, regression: parsed.summary.label.kind === 'vector' };
  }

  /**
   * Trains the plan's schedule from batch `done` on (0 for a fresh job; a resumed job's completed
   * steps), so that the job makes exactly `plan.totalSteps` steps in all, whatever restarts came between.
   */
  private async train(jobId: string, plan: Plan, c: Control, done: number): Promise<void> {
    const trainer = this.trainer();
    const { params } = plan;
    let step = done;
    let stepped = false;
    let lastCheckpointStep = -1;
    let adapterStep = 0;
    let window: { loss: number; correct: boolean | null }[] = [];
    // What a run before a restart wrote: validations (the first per epoch), ended epochs, checkpoints.
    const stored = await this.storedEvents(jobId, ['validation', 'epoch', 'checkpoint']);
    const validations = new Map<number, Validation>();
    const endedEpochs = new Set<number>();
    const checkpointSteps = new Set<number>();
    let finalCheckpoint: number | null = null; // the adapter step of a final checkpoint written before a restart
    for (const e of stored) {
      const d = e.data;
      if (e.type === 'validation' && typeof d['epoch'] === 'number' && !validations.has(d['epoch'])) {
        validations.set(d['epoch'], { n: d['n'] as number, accuracy: (d['accuracy'] ?? null) as number | null, loss: (d['loss'] ?? null) as number | null });
      }
      if (e.type === 'epoch' && typeof d['epoch'] === 'number') endedEpochs.add(d['epoch']);
      if (e.type === 'checkpoint' && typeof d['step'] === 'number') {
        checkpointSteps.add(d['step']);
        if (d['final'] === true && typeof d['adapterStep'] === 'number') finalCheckpoint = d['adapterStep'];
      }
    }
    // The baseline before any step: evaluated once, taken from its event when resuming.
    let validation = validations.get(0);
    if (!validation) {
      validation = await this.evaluate(trainer, plan);
      await this.event(jobId, 'info', 'validation', { epoch: 0, step: 0, ...validation });
    }
    const baseline = validation;
    // Resuming: the latest validation of an epoch whose batches were all done.
    for (let e = Math.min(Math.floor(done / plan.perEpoch), params.epochs); e > 0; e--) {
      const v = validations.get(e);
      if (v) {
        validation = v;
        break;
      }
    }
    const checkpoint = async (final: boolean) => {
      if (lastCheckpointStep === adapterStep) return;
      const ck = await trainer.checkpoint(plan.adapterId, { kind: 'job', jobId });
      lastCheckpointStep = ck.step;
      if (!stepped) adapterStep = progress.adapterStep = ck.step; // resumed with every step done: the adapter's step now
      const metrics = { ...ck.metrics, job: { step, epoch: progress.epoch, trainLoss: mean(window.map((w) => w.loss)), validation } };
      await this.repos.jobs.mergeCheckpointMetrics(ck.id, metrics);
      await this.event(jobId, 'info', 'checkpoint', { checkpointId: ck.id, step, adapterStep: ck.step, final, metrics });
    };
    const progress = {
      epoch: Math.min(Math.floor(done / plan.perEpoch), params.epochs),
      step,
      totalSteps: plan.totalSteps,
      fraction: step / plan.totalSteps,
      adapterStep: 0,
      trainLoss: null as number | null,
      trainAccuracy: null as number | null,
      validation,
    };
    if (done > 0) await this.jobs.setProgress(jobId, progress);
    // A periodic checkpoint due at the last step before a restart, and not written then.
    if (done > 0 && done < plan.totalSteps && params.checkpointEvery > 0 && done % params.checkpointEvery === 0 && !checkpointSteps.has(done)) {
      if (!(await this.gate(c))) return;
      await checkpoint(false);
    }
    for (let epoch = 1; epoch <= params.epochs; epoch++) {
      const first = (epoch - 1) * plan.perEpoch; // the schedule's index of the epoch's first batch
      if (first + plan.perEpoch <= done && endedEpochs.has(epoch)) continue; // done and reported before a restart
      progress.epoch = epoch;
      if (first + plan.perEpoch > done) {
        const order = createRng(plan.seed, hashSeeds(2, epoch)).shuffle(plan.train.slice());
        for (let b = Math.max(0, done - first) * params.batchSize; b < order.length; b += params.batchSize) {
          if (!(await this.gate(c))) return;
          const rows = order.slice(b, b + params.batchSize);
          const out = await trainer.train(plan.adapterId, { inputs: toFeeds(rows, plan.summary), labels: labelsOf(rows, plan.regression) }, { jobId });
          step++;
          stepped = true;
          adapterStep = out.step;
          if (c.cancelled || c.interrupted) return;
          out.loss.forEach((l, i) => window.push({ loss: l, correct: out.predicted ? out.predicted[i] === rows[i]!.label : null }));
          if (window.length > 200) window = window.slice(window.length - 200);
          Object.assign(progress, { step, adapterStep, fraction: step / plan.totalSteps, trainLoss: mean(window.map((w) => w.loss)), trainAccuracy: accuracy(window) });
          if (step % params.progressEvery === 0 || step === plan.totalSteps) {
            await this.jobs.setProgress(jobId, progress);
            await this.event(jobId, 'debug', 'progress', { ...progress, validation: undefined });
          }
          if (params.checkpointEvery > 0 && step % params.checkpointEvery === 0) await checkpoint(false);
        }
      }
      // An epoch ended before a restart but not reported: its validation event may be there already.
      const stillStored = first + plan.perEpoch <= done ? validations.get(epoch) : undefined;
      validation = stillStored ?? (await this.evaluate(trainer, plan));
      progress.validation = validation;
      await this.jobs.setProgress(jobId, progress);
      if (!stillStored) await this.event(jobId, 'info', 'validation', { epoch, step, ...validation });
      await this.event(jobId, 'info', 'epoch', { epoch, step, trainLoss: progress.trainLoss, trainAccuracy: progress.trainAccuracy, validation });
    }
    if (!(await this.gate(c))) return;
    if (finalCheckpoint !== null && !stepped) adapterStep = progress.adapterStep = finalCheckpoint;
    else await checkpoint(true);
    const result = { ...progress, fraction: 1, baseline };
    if (await this.jobs.transition(jobId, ['running', 'paused'], 'succeeded', { finishedAt: new Date(), progress: result })) {
      await this.event(jobId, 'info', 'finished', { step, adapterStep, validation, baseline });
    }
  }

  /** Every stored event of the job of one of `types`, in order. */
  private async storedEvents(jobId: string, types: readonly string[]): Promise<JobEventRecord[]> {
    const out: JobEventRecord[] = [];
    for (let after = 0; ; ) {
      const page = await this.jobs.events(jobId, after, 1000, types);
      out.push(...page);
      if (page.length < 1000) return out;
      after = page[page.length - 1]!.seq;
    }
  }

  /** Accuracy (classification) and mean loss over the validation rows at the adapter's current state. */
  private async evaluate(trainer: JobTrainer, plan: Plan): Promise<Validation> {
    const rows = plan.validation;
    if (rows.length === 0) return { n: 0, accuracy: null, loss: null };
    let correct = 0;
    let loss = 0; // float64 sum
    for (let b = 0; b < rows.length; b += this.evalBatch) {
      const batch = rows.slice(b, b + this.evalBatch);
      const res = await trainer.predictFeeds(plan.adapterId, toFeeds(batch, plan.summary));
      batch.forEach((r, i) => {
        if (plan.regression) {
          const y = r.label as number[];
          loss += y.reduce((a, v, k) => a + (res.outputs[i]![k]! - v) ** 2, 0) / y.length;
        } else {
          const y = r.label as number;
          if (res.predicted?.[i] === y) correct++;
          loss += -Math.log(Math.max(res.probs?.[i]?.[y] ?? 0, 1e-30));
        }
      });
    }
    return { n: rows.length, accuracy: plan.regression ? null : correct / rows.length, loss: loss / rows.length };
  }
}

/** Validation metrics: accuracy (classification) and mean loss over the validation rows. */
interface Validation {
  n: number;
  accuracy: number | null;
  loss: number | null;
}

interface Plan {
  adapterId: string;
  seed: number;
  params: JobParams;
  train: Sample[];
  validation: Sample[];
  summary: import('../repositories/datasets.js').DatasetSummary;
  perEpoch: number;
  totalSteps: number;
  regression: boolean;
}

function labelsOf(rows: readonly Sample[], regression: boolean): Labels {
  return regression ? Float32Array.from(rows.flatMap((r) => r.label as number[])) : rows.map((r) => r.label as number);
}

function mean(xs: number[]): number | null {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null;
}

function accuracy(w: { correct: boolean | null }[]): number | null {
  const c = w.filter((x) => x.correct !== null);
  return c.length ? c.filter((x) => x.correct).length / c.length : null;
}
