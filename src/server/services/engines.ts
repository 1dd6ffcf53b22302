/**
 * Adapter engines (src/lora), one per (base model sha256, LoRA config, task, output), created on first use and
 * shared by every adapter of that shape, whoever owns it: θ is a graph input, so one set of ONNX
 * Runtime sessions serves them all. Built graphs are cached on disk under DATA_DIR/graphs, bounded by
 * GRAPH_CACHE_MAX_BYTES (least recently used first).
 */
import { join } from 'node:path';

import { parseTokenizer, type Tokenizer } from '../../data/index.js';
import { ModelUnsupportedError, OutputNotFoundError, TargetNotFoundError, UnsupportedOpError, type DomainError } from '../../errors.js';
import { AdapterEngine, type Task } from '../../lora/index.js';
import type { LoraConfig, OnnxRuntime } from '../../onnx/index.js';
import type { BlobStore } from '../blob-store.js';
import { evictPast, touch } from '../lru.js';
import type { Metrics } from '../metrics.js';
import type { AdapterConfig, ModelRecord } from '../repositories/index.js';
import type { ModelService } from './models.js';

/** The task an adapter trains for: regression observations mean regression, everything else classifies. */
export function taskOf(config: AdapterConfig): Task {
  return config.observation === 'regression' ? 'regression' : 'classification';
}

/** The LoRA config of an adapter, pinned to the modules it resolved to at creation. */
export function loraOf(config: AdapterConfig): LoraConfig {
  return { targets: config.sites.map((s) => s.module), rank: config.rank, alpha: config.alpha, rslora: config.rslora };
}

/** Errors an engine build gives for the model and configuration alone (see EngineCache.refused). */
const DETERMINISTIC = [UnsupportedOpError, ModelUnsupportedError, TargetNotFoundError, OutputNotFoundError];
/** Refused configurations remembered. */
const MAX_REFUSED = 256;

export class EngineCache {
  /** Least recently used first (see engine). */
  private readonly engines = new Map<string, Promise<AdapterEngine>>();
  private readonly tokenizers = new Map<string, Promise<Tokenizer | null>>();
  private readonly cacheDir: string;

  /**
   * Configurations whose engine could not be built for a reason in the model and the configuration
   * alone (an op with no gradient rule on the path, an output the task cannot use): the same request
   * would fail the same way, so it gets the same error without building again (least recently used
   * first out past MAX_REFUSED). Other failures (out of memory, a disk error) are tried again.
   */
  private readonly refused = new Map<string, DomainError>();
  private readonly maxEngines: number;
  private readonly graphCacheMaxBytes: number | undefined;
  private readonly builds: Metrics['engineBuilds'] | undefined;

  /**
   * `maxEngines`: engines kept (default 32). Past it the least recently used one leaves the cache and
   * its sessions the runtime's (AdapterEngine.detach): adapter states that hold it keep using it, and
   * it is freed with them; the next request for its configuration builds a new one (its graphs come
   * from the on-disk graph cache). `graphCacheMaxBytes`: bound of that cache (src/onnx/graph-cache.ts).
   * `metrics`: counts builds (`engine_builds_total`).
   */
  constructor(
    private readonly models: ModelService,
    private readonly runtime: OnnxRuntime,
    private readonly blobs: BlobStore,
    options: { maxEngines?: number; graphCacheMaxBytes?: number; metrics?: Metrics } = {},
  ) {
    this.maxEngines = options.maxEngines ?? 32;
    if (!Number.isInteger(this.maxEngines) || this.maxEngines < 1) throw new RangeError(`maxEngines must be a positive integer, got ${this.maxEngines}`);
    this.graphCacheMaxBytes = options.graphCacheMaxBytes;
    this.builds = options.metrics?.engineBuilds;
    this.cacheDir = join(blobs.dataDir, 'graphs');
  }

  /** Engines in the cache (created or being created). */
  get size(): number {
    return this.engines.size;
  }

  /**
   * The engine for an adapter of `model`, created and cached on first use. A failed creation is not
   * cached, except that a refusal for the model and configuration alone is remembered (see refused).
   */
  engine(model: ModelRecord, config: AdapterConfig): Promise<AdapterEngine> {
    const lora = loraOf(config);
    const task = taskOf(config);
    const output = config.output;
    const key = JSON.stringify([model.sha256, lora, task, output]);
    let p = this.engines.get(key);
    if (p) return touch(this.engines, key, p);
    const refusal = this.refused.get(key);
    if (refusal) return Promise.reject(touch(this.refused, key, refusal));
    const created = (async () => AdapterEngine.create(await this.models.proto(model), lora, this.runtime, { task, output, cacheDir: this.cacheDir, ...(this.graphCacheMaxBytes !== undefined && { cacheMaxBytes: this.graphCacheMaxBytes }) }))();
    p = created;
    this.engines.set(key, created);
    created.then(
      () => this.builds?.inc({ result: 'ok' }),
      (err: unknown) => {
        this.builds?.inc({ result: 'error' });
        if (this.engines.get(key) === created) this.engines.delete(key);
        if (!DETERMINISTIC.some((c) => err instanceof c)) return;
        this.refused.set(key, err as DomainError);
        evictPast(this.refused, MAX_REFUSED);
      },
    );
    evictPast(this.engines, this.maxEngines, key, (_, old) => {
      old.then((e) => e.detach(), () => undefined).catch(() => undefined);
    });
    return p;
  }

  /** The model's built-in tokenizer (text models), else null. */
  tokenizer(model: ModelRecord): Promise<Tokenizer | null> {
    let p = this.tokenizers.get(model.sha256);
    if (!p) {
      const meta = model.metadata['tokenizer'] as { path?: string } | null | undefined;
      p = meta?.path ? this.blobs.read(meta.path).then((b) => parseTokenizer(new TextDecoder().decode(b), model.name)) : Promise.resolve(null);
      this.tokenizers.set(model.sha256, p);
      p.catch(() => this.tokenizers.delete(model.sha256));
    }
    return p;
  }
}
