/**
 * Online adaptation (DESIGN 5): the per-adapter state manager behind predict, observe, the stream,
 * state, downloads and job training.
 *
 *  - Hot state: each adapter in use has its optimizer state in memory (states are immutable, so a
 *    predict reads the latest committed state without waiting for the writer).
 *  - One writer per adapter: updates of one adapter run one at a time through a promise queue;
 *    different adapters proceed in parallel.
 *  - Durability: an update is computed, then its observation (exact input bytes and labels) is
 *    appended to the Observation log together with the adapter's new step in one transaction, and
 *    only then does the hot state move and the caller get an answer. A rejected update (bad input,
 *    bad label, a non-PD or non-finite step, a failed commit) stores nothing and leaves the state.
 *  - Snapshots: every `snapshotEvery` steps (and at close) the state goes to a safetensors blob with
 *    an AdapterCheckpoint row, in the background.
 *  - Recovery: the latest checkpoint at or below the committed step (or the initial state from the
 *    adapter's seed), then a replay of the logged observations after it. Steps are deterministic, so
 *    the recovered state equals a replay of every acknowledged observation. At start-up every
 *    adapter whose step is past its latest checkpoint (a crash came after its last snapshot) is
 *    recovered and snapshotted in the background (`recoverAtStartup`); any other adapter's state is
 *    loaded on its first use.
 */
import { deserializeState, initState, OPTIMIZER_FAMILY, serializeState, type OptimizerState, type OptimizerType } from '../../kalman/index.js';
import type { Tokenizer } from '../../data/index.js';
import { AdapterEngine, exportInferenceBundle, exportMergedOnnx, exportPeft, exportState, importState, initTheta, predict, trainStep, type ExportSubject, type Labels } from '../../lora/index.js';
import type { Tensor } from '../../onnx/index.js';
import type { BlobStore } from '../blob-store.js';
import { NotFoundError } from '../errors.js';
import { newId } from '../ids.js';
import type { Logger } from '../logger.js';
import { evictPast, touch } from '../lru.js';
import type { Metrics } from '../metrics.js';
import type { ModelRecord } from '../repositories/index.js';
import type { CheckpointKind, CheckpointRecord, OnlineAdapterRow, OnlineRepository } from '../repositories/online.js';
import { EngineCache, loraOf } from './engines.js';
import { decodeFeeds, encodeFeeds, parseInputs, parseLabels, type EncodedTensor, type InputModel, type LabelTarget } from './inputs.js';
import type { ModelService } from './models.js';

/** Download formats (DESIGN 3.4). */
export const DOWNLOAD_FORMATS = ['peft', 'merged-onnx', 'state', 'inference-onnx'] as const;
export type DownloadFormat = (typeof DOWNLOAD_FORMATS)[number];

export interface OnlineOptions {
  /** Snapshot the state every this many steps (default 50). */
  snapshotEvery?: number;
  /** Recent metrics cover this many samples (default 100). */
  metricsWindow?: number;
  /**
   * Adapter states kept in memory (default 1000). Past it the least recently used one is evicted:
   * inside its writer queue it is snapshotted if it has steps since its last snapshot and dropped,
   * and its next request recovers it (from that snapshot) like a restart does.
   */
  maxHot?: number;
}

/** Per-sample predictions of a batch. */
export interface PredictResult {
  step: number;
  /** Model outputs [B][m]. */
  outputs: number[][];
  /** Classification: softmax probabilities [B][m] and the predicted class per sample. */
  probs?: number[][];
  predicted?: number[];
  /** Kalman optimizers: diag(H·diag(p)·Hᵀ + R) per sample [B][m]. */
  variance?: number[][];
}

/** An accepted update: the prequential prediction (made before it), its loss, and the new step. */
export interface UpdateResult {
  /** The adapter's step after this update (= the observation's seq in the log). */
  step: number;
  /** Outputs before the update [B][m]. */
  prediction: number[][];
  probs?: number[][];
  predicted?: number[];
  /** Per-sample loss before the update. */
  loss: number[];
  /** Kalman optimizers: the predictive variance per sample, before the update. */
  variance?: number[][];
}

/** Recent prequential metrics over the last `window` samples. */
export interface RecentMetrics {
  window: number;
  n: number;
  /** Classification: the share of samples predicted right before their update; null otherwise. */
  accuracy: number | null;
  /** Mean per-sample loss before the update; null when no samples. */
  loss: number | null;
}

export interface StateSummary {
  adapterId: string;
  optimizer: string;
  step: number;
  /** Observation-noise covariance R (m×m), Kalman optimizers only; null otherwise. */
  R: number[][] | null;
  /** min, mean and max of the covariance diagonal p, Kalman optimizers only; null otherwise. */
  p: { min: number; mean: number; max: number } | null;
  metrics: RecentMetrics;
  /** Step of the latest snapshot written by this process (recovery starts there). */
  snapshotStep: number;
}

interface Sample {
  correct: boolean | null;
  loss: number;
}

interface Hot {
  adapter: OnlineAdapterRow;
  model: ModelRecord;
  engine: AdapterEngine;
  tokenizer: Tokenizer | null;
  state: OptimizerState;
  step: number;
  snapshotStep: number;
  recent: Sample[];
}

/** The observation log's stored form. */
interface LoggedInputs {
  feeds: Record<string, EncodedTensor>;
}
interface LoggedLabels {
  labels: number[];
}

/** The recent-metrics window a checkpoint carries (writeCheckpoint); empty when absent or unreadable. */
function recentOf(text: string | undefined): Sample[] {
  if (!text) return [];
  try {
    const raw = JSON.parse(text) as unknown;
    if (!Array.isArray(raw)) return [];
    return raw
      .filter((e): e is [number | null, number] => Array.isArray(e) && (e[0] === null || e[0] === 0 || e[0] === 1) && typeof e[1] === 'number')
      .map(([c, loss]) => ({ correct: c === null ? null : c === 1, loss }));
  } catch {
    return [];
  }
}

const rows = (a: ArrayLike<number>, m: number): number[][] => {
  const out: number[][] = [];
  for (let r = 0; r < a.length / m; r++) out.push(Array.from({ length: m }, (_, c) => a[r * m + c]!));
  return out;
};

export class OnlineService {
  /** Adapter states in memory, least recently used first (see trim). */
  private readonly hots = new Map<string, Promise<Hot>>();
  /**
   * Per adapter, the one state object that is what is stored: set by each recovery, which runs in the
   * adapter's writer queue like every write, and dropped when that object leaves memory. Writers
   * write through it (live), so an object that is not it is behind, or about to be.
   */
  private readonly current = new Map<string, Hot>();
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly background = new Set<Promise<unknown>>();
  /** Adapters being deleted (see retire). */
  private readonly retired = new Set<string>();
  /** Snapshot writes in flight, by adapter. */
  private readonly snapshots = new Map<string, Set<Promise<unknown>>>();
  private readonly snapshotEvery: number;
  private readonly window: number;
  private readonly maxHot: number;
  private closed = false;

  constructor(
    private readonly repo: OnlineRepository,
    private readonly models: ModelService,
    private readonly engines: EngineCache,
    private readonly blobs: BlobStore,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    options: OnlineOptions = {},
  ) {
    this.snapshotEvery = options.snapshotEvery ?? 50;
    this.window = options.metricsWindow ?? 100;
    this.maxHot = options.maxHot ?? 1000;
    if (!Number.isInteger(this.maxHot) || this.maxHot < 1) throw new RangeError(`maxHot must be a positive integer, got ${this.maxHot}`);
  }

  /** Adapters with a state in memory: cached, or current and not yet dropped by its eviction. */
  get inMemory(): number {
    let n = this.hots.size;
    for (const id of this.current.keys()) if (!this.hots.has(id)) n++;
    return n;
  }

  /** Predictions for `inputs` (request JSON, see services/inputs.ts) at the adapter's current state. ADAPTER_NOT_FOUND unless `ownerId` owns it. */
  async predict(adapterId: string, ownerId: string, inputs: unknown): Promise<PredictResult> {
    const hot = await this.access(adapterId, ownerId);
    const { feeds } = parseInputs(this.inputModel(hot), inputs);
    return this.predictHot(hot, feeds);
  }

  /**
   * Prequential update: the prediction for `inputs` before the update, then one optimizer step on
   * (inputs, labels), durable (logged and committed) before this resolves.
   */
  async observe(adapterId: string, ownerId: string, inputs: unknown, labels: unknown): Promise<UpdateResult> {
    const hot = await this.access(adapterId, ownerId);
    const { feeds, batch } = parseInputs(this.inputModel(hot), inputs);
    const ys = parseLabels(this.labelTarget(hot), labels, batch);
    return this.apply(hot, feeds, ys);
  }

  /**
   * One optimizer step of `adapterId` on a parsed batch (feeds with a leading batch axis; labels: class
   * ids, or flat float targets [B·m] for regression), through the adapter's writer queue and logged
   * like an observe: durable when it resolves. No ownership check (the caller, e.g. a job, has done it).
   * Throws and stores nothing when the batch or the step is rejected. `jobId` is logged with the step.
   */
  async train(adapterId: string, batch: { inputs: Readonly<Record<string, Tensor>>; labels: Labels }, opts: { jobId?: string } = {}): Promise<UpdateResult> {
    const hot = await this.hot(adapterId);
    hot.engine.validate(batch.inputs, batch.labels);
    return this.apply(hot, batch.inputs, batch.labels, opts.jobId ?? null);
  }

  /**
   * How many steps job `jobId` has made on `adapterId` (its logged observations), counted after every
   * update queued before this call. Exact: each is logged in the same transaction as its step.
   */
  completedSteps(adapterId: string, jobId: string): Promise<number> {
    return this.exclusive(adapterId, () => this.repo.jobStepCount(adapterId, jobId));
  }

  /** Predictions for parsed feeds at the current state (no ownership check; for jobs' validation). */
  async predictFeeds(adapterId: string, feeds: Readonly<Record<string, Tensor>>): Promise<PredictResult> {
    const hot = await this.hot(adapterId);
    return this.predictHot(this.current.get(adapterId) ?? hot, feeds);
  }

  /** What parsing a request for this adapter needs: the model's inputs (+ tokenizer) and the label target. */
  async signature(adapterId: string): Promise<{ inputs: InputModel; labels: LabelTarget }> {
    const hot = await this.hot(adapterId);
    return { inputs: this.inputModel(hot), labels: this.labelTarget(hot) };
  }

  /**
   * Writes a checkpoint of the adapter's state as it is after every update queued before this call
   * (kind `job` with its `jobId`, `manual`, or `snapshot`). Durable when it resolves.
   */
  async checkpoint(adapterId: string, opts: { kind?: CheckpointKind; jobId?: string | null } = {}): Promise<CheckpointRecord> {
    const hot = await this.hot(adapterId);
    return this.exclusive(adapterId, async () => {
      const cur = await this.live(hot);
      return this.writeCheckpoint(cur, cur.state, cur.step, opts.kind ?? 'manual', opts.jobId ?? null);
    });
  }

  /** Checkpoints of an adapter (optionally of one job), by step. */
  listCheckpoints(adapterId: string, opts: { jobId?: string } = {}): Promise<CheckpointRecord[]> {
    return this.repo.listCheckpoints(adapterId, opts);
  }

  /** Step, R, p summary and recent metrics. */
  async state(adapterId: string, ownerId: string): Promise<StateSummary> {
    const hot = await this.access(adapterId, ownerId);
    const s = hot.state;
    let R: number[][] | null = null;
    let p: StateSummary['p'] = null;
    if (s.type === 'loko' || s.type === 'r-kalman') {
      R = s.m > 0 ? rows(s.R, s.m) : [];
      let min = Infinity;
      let max = -Infinity;
      let sum = 0;
      for (const v of s.p) {
        min = Math.min(min, v);
        max = Math.max(max, v);
        sum += v;
      }
      p = { min, mean: sum / s.p.length, max };
    }
    return { adapterId, optimizer: s.type, step: hot.step, R, p, metrics: this.summarise(hot.recent), snapshotStep: hot.snapshotStep };
  }

  /** The adapter in a DESIGN 3.4 format, at the current step or at the checkpoint of `step` (CHECKPOINT_NOT_FOUND otherwise). */
  async download(adapterId: string, ownerId: string, format: DownloadFormat, step?: number): Promise<{ bytes: Uint8Array; filename: string; contentType: string; step: number }> {
    const hot = await this.access(adapterId, ownerId);
    let state = hot.state;
    let at = hot.step;
    if (step !== undefined && step !== hot.step) {
      const ck = await this.repo.checkpointAt(adapterId, step);
      if (!ck) throw new NotFoundError('checkpoint', `${adapterId}@${step}`);
      ({ state } = await this.readCheckpoint(ck));
      at = step;
    }
    const subject: ExportSubject = {
      modelName: hot.model.name,
      modelSha256: hot.model.sha256,
      lora: loraOf(hot.adapter.config),
      sites: hot.engine.sites,
      theta: state.theta,
      optimizer: state.type,
      step: at,
      output: hot.engine.output,
    };
    const base = `${adapterId}-step${at}`;
    switch (format) {
      case 'peft':
        return { bytes: exportPeft(subject), filename: `${base}-peft.zip`, contentType: 'application/zip', step: at };
      case 'merged-onnx':
        return { bytes: exportMergedOnnx(await this.models.proto(hot.model), subject), filename: `${base}-merged.onnx`, contentType: 'application/octet-stream', step: at };
      case 'inference-onnx':
        return { bytes: exportInferenceBundle(await this.models.proto(hot.model), subject), filename: `${base}-inference.zip`, contentType: 'application/zip', step: at };
      case 'state':
        return {
          bytes: exportState(serializeState(state), { adapterId, modelSha256: hot.model.sha256, adapterStep: String(at) }),
          filename: `${base}-state.safetensors`,
          contentType: 'application/octet-stream',
          step: at,
        };
    }
  }

  /**
   * Start-up recovery: every adapter whose committed step is past its latest checkpoint (a crash came
   * after its last snapshot) is recovered now — checkpoint + replay of its log — and snapshotted, so
   * its first request after a crash does not pay for the replay and a second crash replays nothing
   * twice. Runs in the background (requests are served meanwhile; one that reaches such an adapter
   * waits for its recovery, which is shared). Resolves with the number recovered; failures are logged
   * per adapter (that adapter then recovers on first use, as before).
   */
  recoverAtStartup(): Promise<number> {
    const run = (async () => {
      const behind = await this.repo.adaptersBehindSnapshot();
      if (behind.length === 0) return 0;
      const t0 = performance.now();
      let ok = 0;
      for (const a of behind) {
        if (this.closed) break;
        try {
          const hot = await this.hot(a.id);
          await this.exclusive(a.id, async () => {
            if (!this.closed) await this.snapshotIfBehind(await this.live(hot));
          });
          ok++;
        } catch (err) {
          this.log.error({ err, adapter: a.id }, 'start-up recovery of an adapter failed; it will be recovered on first use');
        }
      }
      this.log.info({ adapters: ok, of: behind.length, ms: Math.round(performance.now() - t0) }, `start-up recovery: ${ok} adapter(s) replayed from their log and snapshotted`);
      return ok;
    })();
    this.track(run.catch(() => 0));
    return run;
  }

  /**
   * An adapter is about to be deleted: from now on its updates and predictions answer
   * ADAPTER_NOT_FOUND, and this resolves once the ones already queued or running, and the snapshot
   * writes they started, are done (so none of them writes after its rows are gone). `release` ends it.
   */
  async retire(adapterId: string): Promise<void> {
    this.retired.add(adapterId);
    const p = this.hots.get(adapterId);
    this.hots.delete(adapterId);
    this.metrics.hotAdapters.set(this.inMemory);
    await p?.catch(() => null);
    await this.queues.get(adapterId);
    // Whoever still holds a state object reloads it before writing, and finds the adapter gone (live).
    this.current.delete(adapterId);
    await Promise.allSettled([...(this.snapshots.get(adapterId) ?? [])]);
  }

  /** The deletion `retire` announced is over (done or failed): the id is looked up again on use. */
  release(adapterId: string): void {
    this.retired.delete(adapterId);
    this.hots.delete(adapterId);
    this.current.delete(adapterId);
  }

  /** Waits for queued updates, snapshots every adapter changed since its last snapshot, waits for the writes. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.queues.values()]);
    // Every adapter's current state, those evicted meanwhile included (their eviction leaves it to this).
    for (const [id, hot] of this.current) {
      try {
        await this.snapshotIfBehind(hot);
      } catch (err) {
        this.log.error({ err, adapter: id }, 'snapshot at close failed; the log still holds every update');
      }
    }
    await Promise.allSettled([...this.background]);
  }

  // --- internals

  private inputModel(hot: Hot): InputModel {
    return { inputs: hot.model.inputs, tokenizer: hot.tokenizer };
  }

  private labelTarget(hot: Hot): LabelTarget {
    return { task: hot.engine.task, m: hot.engine.m };
  }

  /** The hot state of `adapterId` if `ownerId` owns it; ADAPTER_NOT_FOUND otherwise (never says which). */
  private async access(adapterId: string, ownerId: string): Promise<Hot> {
    if (this.retired.has(adapterId)) throw new NotFoundError('adapter', adapterId);
    const cached = this.hots.get(adapterId);
    if (cached) {
      this.cache(adapterId, cached);
      const hot = await cached;
      if (hot.adapter.ownerId !== ownerId) throw new NotFoundError('adapter', adapterId);
      return this.current.get(adapterId) ?? hot;
    }
    const row = await this.repo.adapter(adapterId);
    if (!row || row.ownerId !== ownerId) throw new NotFoundError('adapter', adapterId);
    return this.hot(adapterId);
  }

  private hot(adapterId: string): Promise<Hot> {
    if (this.retired.has(adapterId)) return Promise.reject(new NotFoundError('adapter', adapterId));
    let p = this.hots.get(adapterId);
    if (p) {
      this.cache(adapterId, p);
    } else {
      p = this.exclusive(adapterId, () => this.recover(adapterId));
      this.cache(adapterId, p);
      p.catch(() => {
        if (this.hots.get(adapterId) === p) this.hots.delete(adapterId);
        this.metrics.hotAdapters.set(this.inMemory);
      });
      this.trim(adapterId);
    }
    return p;
  }

  /**
   * Evicts the least recently used states past `maxHot` (never `keep`). Each leaves the cache at once,
   * so a request after this recovers it anew, behind the eviction in its writer queue. The eviction
   * itself, when the object is still the adapter's current one, snapshots it if it has steps since
   * its last snapshot (so that recovery replays nothing) and drops it as current: writers that still
   * hold it recover the adapter again (live).
   */
  private trim(keep: string): void {
    evictPast(this.hots, this.maxHot, keep, (id, p) => {
      this.metrics.evictions.inc();
      const evict = this.exclusive(id, async () => {
        const hot = await p.catch(() => null);
        const cur = this.current.get(id);
        // The current object leaves with the cached one, or when no cached one is left to reach it
        // (a recovery queued earlier may have made another object current meanwhile).
        if (!cur || this.closed || (cur !== hot && this.hots.has(id))) return;
        if (!this.retired.has(id)) await this.snapshotIfBehind(cur);
        if (this.current.get(id) === cur && (cur === hot || !this.hots.has(id))) this.current.delete(id);
        this.metrics.hotAdapters.set(this.inMemory);
      });
      this.track(evict.catch((err) => this.log.error({ err, adapter: id }, 'snapshot at eviction failed; the log still holds every update')), id);
    });
    this.metrics.hotAdapters.set(this.inMemory);
  }

  /**
   * Inside `hot`'s writer queue: the state to write to, the adapter's current object (see `current`).
   * That is `hot` unless another request recovered the adapter since `hot` was handed out, or it left
   * memory; then it is that other object, or, if none is in memory, a recovery here from what is
   * stored, which is exact since every write goes through this queue (ADAPTER_NOT_FOUND when the
   * adapter was deleted meanwhile). Such a recovery is cached as the most recently used state.
   */
  private async live(hot: Hot): Promise<Hot> {
    const id = hot.adapter.id;
    if (this.retired.has(id)) throw new NotFoundError('adapter', id);
    const cur = this.current.get(id);
    if (cur) return cur;
    const fresh = await this.recover(id);
    if (this.retired.has(id)) {
      this.current.delete(id);
      throw new NotFoundError('adapter', id);
    }
    this.cache(id, Promise.resolve(fresh));
    this.trim(id);
    return fresh;
  }

  /** Cache `p` as the adapter's state, most recently used (last in `hots`; see trim). */
  private cache(adapterId: string, p: Promise<Hot>): void {
    touch(this.hots, adapterId, p);
  }

  /** Latest checkpoint (or the seed's initial state) + replay of the log after it. */
  private async recover(adapterId: string): Promise<Hot> {
    // Read here, inside the writer queue: a row read before (by access, say) may be behind by then,
    // once states can leave memory and come back between the read and this (trim).
    const row = await this.repo.adapter(adapterId);
    if (!row) throw new NotFoundError('adapter', adapterId);
    const model = await this.models.get(row.modelId);
    if (model.sha256 !== row.config.modelSha256) {
      this.log.warn({ adapter: adapterId, recorded: row.config.modelSha256, current: model.sha256 }, 'the base model changed since this adapter was made; using the current bytes');
    }
    const [engine, tokenizer] = await Promise.all([this.engines.engine(model, row.config), this.engines.tokenizer(model)]);
    const ck = row.step > 0 ? await this.repo.latestCheckpoint(adapterId, row.step) : null;
    let state: OptimizerState;
    let step: number;
    let recent: Sample[] = [];
    if (ck) {
      ({ state, recent } = await this.readCheckpoint(ck));
      recent = recent.slice(-this.window);
      step = ck.step;
    } else {
      const cfg = row.config;
      state = initState(cfg.optimizer as Parameters<typeof initState>[0], engine.layout, initTheta(engine.sites, cfg.seed), cfg.seed);
      step = 0;
    }
    const hot: Hot = { adapter: row, model, engine, tokenizer, state, step, snapshotStep: step, recent };
    if (step < row.step) {
      const t0 = performance.now();
      const log = await this.repo.observations(adapterId, step);
      for (const o of log) {
        if (o.seq !== hot.step + 1) throw new Error(`observation log of adapter '${adapterId}' has a gap: expected seq ${hot.step + 1}, found ${o.seq}`);
        const feeds = decodeFeeds((o.inputs as LoggedInputs).feeds);
        const raw = (o.labels as LoggedLabels).labels;
        const labels = engine.task === 'regression' ? Float32Array.from(raw) : raw;
        const out = await trainStep(engine, hot.state, { inputs: feeds, labels });
        hot.state = out.state;
        hot.step = o.seq;
        hot.recent = this.remember(hot.recent, out, labels);
      }
      if (hot.step !== row.step) throw new Error(`adapter '${adapterId}' is at step ${row.step} but its log ends at ${hot.step}`);
      this.log.info({ adapter: adapterId, from: step, to: hot.step, ms: Math.round(performance.now() - t0) }, `adapter recovered: checkpoint at step ${step} + ${hot.step - step} replayed observations`);
    }
    // Inside the writer queue (hot, live): from now on this object is what is stored.
    this.current.set(adapterId, hot);
    return hot;
  }

  /** A checkpoint's optimizer state and the recent-metrics window it carries (see writeCheckpoint). */
  private async readCheckpoint(ck: CheckpointRecord): Promise<{ state: OptimizerState; recent: Sample[] }> {
    const file = importState(await this.blobs.read(ck.tensorPath));
    return { state: deserializeState(file as Parameters<typeof deserializeState>[0]), recent: recentOf(file.meta['recent']) };
  }

  private apply(hot: Hot, feeds: Readonly<Record<string, Tensor>>, labels: Labels, jobId: string | null = null): Promise<UpdateResult> {
    const id = hot.adapter.id;
    return this.exclusive(id, async () => {
      if (this.retired.has(id)) throw new NotFoundError('adapter', id);
      hot = await this.live(hot);
      const out = await trainStep(hot.engine, hot.state, { inputs: feeds, labels });
      const seq = hot.step + 1;
      const recent = this.remember(hot.recent, out, labels);
      await this.repo.commit({
        id: newId('obs'),
        adapterId: id,
        seq,
        inputs: { feeds: encodeFeeds(feeds) } satisfies LoggedInputs,
        labels: { labels: Array.from(labels) } satisfies LoggedLabels,
        metrics: { ...this.summarise(recent) },
        jobId,
      });
      hot.state = out.state;
      hot.step = seq;
      hot.recent = recent;
      this.metrics.observes.inc({ optimizer: out.state.type });
      if (seq - hot.snapshotStep >= this.snapshotEvery && !this.closed) {
        hot.snapshotStep = seq;
        this.track(this.writeCheckpoint(hot, out.state, seq, 'snapshot', null).catch((err) => this.log.error({ err, adapter: id, step: seq }, 'snapshot failed; the log still holds every update')), id);
      }
      const m = hot.engine.m;
      return {
        step: seq,
        prediction: rows(out.output, m),
        ...(out.probs && { probs: rows(out.probs, m), predicted: out.predicted! }),
        loss: Array.from(out.loss),
        ...(out.predictiveVariance && { variance: out.predictiveVariance.map((v) => Array.from(v)) }),
      };
    });
  }

  private async predictHot(hot: Hot, feeds: Readonly<Record<string, Tensor>>): Promise<PredictResult> {
    const step = hot.step;
    const res = await predict(hot.engine, hot.state, feeds);
    const m = hot.engine.m;
    return {
      step,
      outputs: rows(res.output, m),
      ...(res.probs && { probs: rows(res.probs, m), predicted: res.predicted! }),
      ...(res.variance && { variance: res.variance.map((v) => Array.from(v)) }),
    };
  }

  private remember(recent: Sample[], out: { loss: Float64Array; predicted?: number[] }, labels: Labels): Sample[] {
    const next = recent.slice();
    for (let b = 0; b < out.loss.length; b++) {
      next.push({ correct: out.predicted ? out.predicted[b] === labels[b] : null, loss: out.loss[b]! });
    }
    return next.length > this.window ? next.slice(next.length - this.window) : next;
  }

  private summarise(recent: Sample[]): RecentMetrics {
    const n = recent.length;
    const cls = recent.filter((s) => s.correct !== null);
    return {
      window: this.window,
      n,
      accuracy: cls.length ? cls.filter((s) => s.correct).length / cls.length : null,
      loss: n ? recent.reduce((a, s) => a + s.loss, 0) / n : null,
    };
  }

  /** Snapshots the hot state when it has steps after its last snapshot. */
  private async snapshotIfBehind(hot: Hot): Promise<void> {
    if (hot.step <= hot.snapshotStep) return;
    await this.writeCheckpoint(hot, hot.state, hot.step, 'snapshot', null);
    hot.snapshotStep = hot.step;
  }

  private async writeCheckpoint(hot: Hot, state: OptimizerState, step: number, kind: CheckpointKind, jobId: string | null): Promise<CheckpointRecord> {
    // The recent-metrics window goes along (metadata `recent`), so recovery restores it (recentOf).
    const recent = JSON.stringify(hot.recent.map((r) => [r.correct === null ? null : Number(r.correct), r.loss]));
    const bytes = exportState(serializeState(state), { adapterId: hot.adapter.id, modelSha256: hot.model.sha256, adapterStep: String(step), recent });
    const blob = await this.blobs.put(bytes);
    let noiseR: number[][] = [];
    let pSummary: Record<string, number> = {};
    if (state.type === 'loko' || state.type === 'r-kalman') {
      noiseR = state.m > 0 ? rows(state.R, state.m) : [];
      let min = Infinity;
      let max = -Infinity;
      let sum = 0;
      for (const v of state.p) {
        min = Math.min(min, v);
        max = Math.max(max, v);
        sum += v;
      }
      pSummary = { min, mean: sum / state.p.length, max };
    }
    return this.repo.saveCheckpoint({
      id: newId('ckp'),
      adapterId: hot.adapter.id,
      jobId,
      kind,
      step,
      metrics: { ...this.summarise(hot.recent) },
      noiseR,
      pSummary,
      tensorPath: blob.path,
      tensorSha256: blob.sha256,
      tensorSize: blob.size,
    });
  }

  /** Background work to wait for at close; `adapterId`'s own (its snapshots) also at its retire. */
  private track(p: Promise<unknown>, adapterId?: string): void {
    this.background.add(p);
    const own = adapterId === undefined ? undefined : this.snapshots.get(adapterId) ?? this.snapshots.set(adapterId, new Set()).get(adapterId)!;
    own?.add(p);
    void p.finally(() => {
      this.background.delete(p);
      own?.delete(p);
      if (adapterId !== undefined && own?.size === 0 && this.snapshots.get(adapterId) === own) this.snapshots.delete(adapterId);
    });
  }

  /** Runs `fn` after every earlier task of `adapterId` (one writer per adapter). */
  private exclusive<T>(adapterId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(adapterId) ?? Promise.resolve();
    const run = prev.then(fn);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.queues.set(adapterId, tail);
    void tail.then(() => {
      if (this.queues.get(adapterId) === tail) this.queues.delete(adapterId);
    });
    return run;
  }
}

/** Whether an optimizer type is a Kalman filter (has p and R). */
export function isKalman(type: string): boolean {
  return OPTIMIZER_FAMILY[type as OptimizerType] === 'kalman';
}
