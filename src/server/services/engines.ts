/**
 * Adapter engines (src/lora), one per (base model sha256, LoRA config, task), created on first use and
 * shared by every adapter of that shape, whoever owns it: θ is a graph input, so one set of ONNX
 * Runtime sessions serves them all. Built graphs are cached on disk under DATA_DIR/graphs.
 */
import { join } from 'node:path';

import { parseTokenizer, type Tokenizer } from '../../data/index.js';
import { AdapterEngine, type Task } from '../../lora/index.js';
import type { LoraConfig, OnnxRuntime } from '../../onnx/index.js';
import type { BlobStore } from '../blob-store.js';
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

export class EngineCache {
  /** Least recently used first (see engine). */
  private readonly engines = new Map<string, Promise<AdapterEngine>>();
  private readonly tokenizers = new Map<string, Promise<Tokenizer | null>>();
  private readonly cacheDir: string;

  /**
   * `maxEngines`: engines kept (default 32). Past it the least recently used one leaves the cache and
   * its sessions the runtime's (AdapterEngine.detach): adapter states that hold it keep using it, and
   * it is freed with them; the next request for its configuration builds a new one (its graphs come
   * from the on-disk graph cache).
   */
  constructor(
    private readonly models: ModelService,
    private readonly runtime: OnnxRuntime,
    private readonly blobs: BlobStore,
    private readonly maxEngines = 32,
  ) {
    if (!Number.isInteger(maxEngines) || maxEngines < 1) throw new RangeError(`maxEngines must be a positive integer, got ${maxEngines}`);
    this.cacheDir = join(blobs.dataDir, 'graphs');
  }

  /** Engines in the cache (created or being created). */
  get size(): number {
    return this.engines.size;
  }

  /** The engine for an adapter of `model` (created and cached on first use; a failed creation is not cached). */
  engine(model: ModelRecord, config: AdapterConfig): Promise<AdapterEngine> {
    const lora = loraOf(config);
    const task = taskOf(config);
    const key = JSON.stringify([model.sha256, lora, task]);
    let p = this.engines.get(key);
    if (p) {
      this.engines.delete(key);
      this.engines.set(key, p);
      return p;
    }
    const created = (async () => AdapterEngine.create(await this.models.proto(model), lora, this.runtime, { task, cacheDir: this.cacheDir }))();
    p = created;
    this.engines.set(key, created);
    created.catch(() => {
      if (this.engines.get(key) === created) this.engines.delete(key);
    });
    for (const [k, old] of this.engines) {
      if (this.engines.size <= this.maxEngines) break;
      if (k === key) continue;
      this.engines.delete(k);
      old.then((e) => e.detach(), () => undefined).catch(() => undefined);
    }
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
