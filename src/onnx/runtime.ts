/**
 * The one module that imports onnxruntime-node. Sessions are created once per model bytes and reused;
 * the execution provider comes from configuration: `cuda` is tried first where asked (or on `auto`)
 * and, when the CUDA provider cannot load, we fall back to `cpu` with one log line. `webgpu` (Dawn
 * over Vulkan, built into onnxruntime-node's own Linux, Windows and macOS binaries, so nothing to
 * download) falls back the same way when no WebGPU adapter is found.
 */
import * as ort from 'onnxruntime-node';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { InvalidInputError, ModelFormatError, RuntimeFailureError } from '../errors.js';
import { decodeModel } from './model.js';
import type { NumericArray } from './proto.js';

export type ExecutionProvider = 'cpu' | 'cuda' | 'webgpu' | 'auto';

/** The provider a session runs on. */
export type ActiveProvider = 'cpu' | 'cuda' | 'webgpu';

/** Runtime configuration; defaults first, the caller's options spread over them. */
export interface RuntimeOptions {
  /**
   * `auto` tries CUDA and falls back to CPU; `cuda` also falls back, with the same log line; `webgpu`
   * tries onnxruntime's WebGPU provider and falls back to CPU with one log line. Default `cpu`.
   */
  executionProvider?: ExecutionProvider;
  /** Threads for one op (ORT intra-op pool); 0 lets ORT choose. */
  intraOpThreads?: number;
  /**
   * onnxruntime sessions a model may hold, one per set of input shapes it runs (see `Session`); 1
   * turns that off. Models larger than 64 MB always get one. Default 4.
   */
  shapeSessions?: number;
  /** Where the one fallback line goes. */
  log?: (msg: string) => void;
}

const DEFAULTS: Required<RuntimeOptions> = { executionProvider: 'cpu', intraOpThreads: 0, shapeSessions: 4, log: (m) => console.warn(m) };

/** Models above this size get one onnxruntime session whatever their input shapes (memory). */
const SHAPE_SESSIONS_MAX_BYTES = 64 * 1024 * 1024;

/** A tensor fed to or read from a session. */
export interface Tensor {
  data: NumericArray;
  dims: readonly number[];
  /** Set to 'bool' for a boolean tensor held in a Uint8Array (0/1). */
  type?: 'bool';
}

const TYPE_OF: [new (...a: never[]) => NumericArray, ort.Tensor.Type][] = [
  [Float32Array, 'float32'], [Float64Array, 'float64'], [Int32Array, 'int32'], [BigInt64Array, 'int64'],
  [Uint8Array, 'uint8'], [Int8Array, 'int8'],
];

function toOrt(name: string, t: Tensor): ort.Tensor {
  const entry = TYPE_OF.find(([C]) => t.data instanceof C);
  if (!entry) throw new InvalidInputError(`input '${name}': unsupported array type`);
  const n = t.dims.reduce((a, b) => a * b, 1);
  if (n !== t.data.length) {
    throw new InvalidInputError(`input '${name}': ${t.data.length} values do not fill shape [${t.dims.join(', ')}]`, { input: name, shape: [...t.dims] });
  }
  return new ort.Tensor(t.type === 'bool' ? 'bool' : entry[1], t.data as never, t.dims);
}

/**
 * A created ONNX Runtime session: one model, and up to `maxShapes` onnxruntime sessions of it, one per
 * set of input shapes.
 *
 * Why more than one: onnxruntime plans its memory (one block for every intermediate tensor, the
 * "memory pattern") from the first shapes a session runs, and for any other shapes it falls back to
 * allocating tensor by tensor on every run. The transformer fixture's gradient graph at batch 32
 * logged 227 such fallbacks a run in a session that had first run batch 1, and ran 5–9% slower than
 * in one that had only seen batch 32 (`npx tsx bench/shape-sessions.ts`). So a run with new input
 * shapes starts a session of its own in the background (while it and the runs after it use the
 * first one) and later runs with those shapes use it. Results are the same either way.
 */
export class Session {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  private readonly byShape = new Map<string, ort.InferenceSession>();
  private readonly pending = new Map<string, Promise<void>>();
  private firstShape: string | undefined;
  private released = false;
  /** Bumped when the session moves to the CPU: background sessions of the old provider are dropped. */
  private generation = 0;
  private cpuSpare: Promise<ort.InferenceSession> | undefined;

  /**
   * `cpuFallback`: for a session on a GPU provider, how to open the model on the CPU instead. A run
   * that fails on the GPU (a kernel the provider has but cannot run with these attributes, say
   * onnxruntime's WebGPU MaxPool with its Indices output) moves the session to the CPU for good, with
   * one log line, and is run again there. When the CPU rejects it too, the inputs were at fault: the
   * run fails with INVALID_INPUT and the session stays on the GPU.
   */
  constructor(
    private inner: ort.InferenceSession,
    private current: ActiveProvider,
    private spawn?: () => Promise<ort.InferenceSession>,
    private readonly maxShapes = 1,
    private readonly cpuFallback?: { open: () => Promise<ort.InferenceSession>; log: (msg: string) => void },
  ) {
    this.inputNames = inner.inputNames;
    this.outputNames = inner.outputNames;
  }

  /** The provider this session's runs use now. */
  get provider(): ActiveProvider {
    return this.current;
  }

  /** onnxruntime sessions this one holds: the first, plus one per further set of input shapes. */
  get sessions(): number {
    return Math.max(1, this.byShape.size);
  }

  /** Wait for the sessions being started for new input shapes (tests and benchmarks). */
  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.all(this.pending.values());
  }

  /** The onnxruntime session for these input shapes, starting one in the background when they are new. */
  private pick(shape: string): ort.InferenceSession {
    if (this.firstShape === undefined) {
      this.firstShape = shape;
      this.byShape.set(shape, this.inner);
      return this.inner;
    }
    const own = this.byShape.get(shape);
    if (own) return own;
    if (this.spawn && !this.released && !this.pending.has(shape) && this.byShape.size + this.pending.size < this.maxShapes) {
      const generation = this.generation;
      const p = this.spawn().then(
        async (s) => {
          if (this.released || generation !== this.generation) await s.release();
          else this.byShape.set(shape, s);
        },
        () => {
          /* stay on the first session for these shapes */
        },
      ).finally(() => this.pending.delete(shape));
      this.pending.set(shape, p);
    }
    return this.inner;
  }

  /** Run with named inputs; returns the requested outputs (all by default) as plain tensors. */
  async run(feeds: Record<string, Tensor>, fetches?: readonly string[]): Promise<Record<string, Tensor>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    // The input shapes as a key, only where there can be more than one session (see pick).
    const keyed = this.spawn !== undefined && this.maxShapes > 1;
    let shape = '';
    for (const name of this.inputNames) {
      const t = feeds[name];
      if (!t) throw new InvalidInputError(`missing input '${name}' (the graph takes ${this.inputNames.join(', ')})`, { input: name });
      ortFeeds[name] = toOrt(name, t);
      if (keyed) shape += `${t.dims.join(',')};`;
    }
    for (const name of Object.keys(feeds)) {
      if (!this.inputNames.includes(name)) throw new InvalidInputError(`unknown input '${name}' (the graph takes ${this.inputNames.join(', ')})`, { input: name });
    }
    let res: ort.InferenceSession.OnnxValueMapType;
    for (;;) {
      const provider = this.current;
      const inner = this.pick(shape);
      try {
        res = fetches ? await inner.run(ortFeeds, fetches as string[]) : await inner.run(ortFeeds);
        break;
      } catch (e) {
        const msg = (e as Error).message;
        if (provider === 'cpu' || !this.cpuFallback) throw new InvalidInputError(`onnxruntime rejected the inputs: ${msg}`);
        if (this.current === 'cpu') continue; // moved while this run was queued
        // The same run on the CPU: if it fails there too, the inputs were at fault and the GPU stays.
        const cpu = await this.cpuSession();
        try {
          res = fetches ? await cpu.run(ortFeeds, fetches as string[]) : await cpu.run(ortFeeds);
        } catch (e2) {
          throw new InvalidInputError(`onnxruntime rejected the inputs: ${(e2 as Error).message}`);
        }
        await this.moveTo(cpu, msg.split('\n')[0]!);
        break;
      }
    }
    const out: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(res)) {
      const t = v as ort.Tensor;
      out[k] = t.type === 'bool' ? { data: t.data as NumericArray, dims: [...t.dims], type: 'bool' } : { data: t.data as NumericArray, dims: [...t.dims] };
    }
    return out;
  }

  /** The model opened on the CPU (see the constructor), once. */
  private cpuSession(): Promise<ort.InferenceSession> {
    this.cpuSpare ??= this.cpuFallback!.open().catch((e: unknown) => {
      this.cpuSpare = undefined;
      throw wrapCreateError(e);
    });
    return this.cpuSpare;
  }

  /** Make `cpu` this session's one onnxruntime session (see the constructor). */
  private async moveTo(cpu: ort.InferenceSession, reason: string): Promise<void> {
    if (this.current === 'cpu') return;
    this.generation++;
    const old = new Set([this.inner, ...this.byShape.values()]);
    const was = this.current;
    this.inner = cpu;
    this.byShape.clear();
    this.firstShape = undefined;
    this.spawn = this.cpuFallback!.open;
    this.current = 'cpu';
    this.cpuFallback!.log(`onnxruntime: a run failed on the ${was === 'webgpu' ? 'WebGPU' : 'CUDA'} execution provider (${reason}); this model runs on the CPU from now on`);
    // A run queued on an old session fails once it is released, and runs again on the CPU.
    for (const s of old) await s.release().catch(() => undefined);
  }

  async release(): Promise<void> {
    this.released = true;
    await this.settled();
    const spare = await this.cpuSpare?.catch(() => undefined);
    const all = new Set([this.inner, ...this.byShape.values(), ...(spare ? [spare] : [])]);
    this.byShape.clear();
    for (const s of all) await s.release();
  }
}

/** Creates and caches sessions: one per (model bytes, options). */
export class OnnxRuntime {
  private readonly opts: Required<RuntimeOptions>;
  private readonly cache = new Map<string, Promise<Session>>();
  /** Each created session's cache key and entry (see forget). */
  private readonly entries = new WeakMap<Session, { key: string; entry: Promise<Session> }>();
  private cudaUnavailable = false;
  private webgpuUnavailable = false;

  constructor(options: RuntimeOptions = {}) {
    this.opts = { ...DEFAULTS, ...options };
    if (!['cpu', 'cuda', 'webgpu', 'auto'].includes(this.opts.executionProvider)) {
      throw new RangeError(`executionProvider must be 'cpu', 'cuda', 'webgpu' or 'auto', got '${this.opts.executionProvider}'`);
    }
    if (!Number.isInteger(this.opts.intraOpThreads) || this.opts.intraOpThreads < 0) {
      throw new RangeError(`intraOpThreads must be a non-negative integer, got ${this.opts.intraOpThreads}`);
    }
    if (!Number.isInteger(this.opts.shapeSessions) || this.opts.shapeSessions < 1) {
      throw new RangeError(`shapeSessions must be a positive integer, got ${this.opts.shapeSessions}`);
    }
  }

  /** Session for these model bytes, created on first use and reused afterwards. */
  session(bytes: Uint8Array, key?: string): Promise<Session> {
    const k = key ?? createHash('sha256').update(bytes).digest('hex');
    let s = this.cache.get(k);
    if (!s) {
      const p = this.create(bytes);
      s = p;
      this.cache.set(k, p);
      p.then(
        (created) => this.entries.set(created, { key: k, entry: p }),
        () => {
          if (this.cache.get(k) === p) this.cache.delete(k);
        },
      );
    }
    return s;
  }

  /** Sessions in the cache (created or being created). */
  get cached(): number {
    return this.cache.size;
  }

  /**
   * Drop `session` from the cache without releasing it: whoever still holds it keeps using it, and
   * garbage collection frees it (onnxruntime's memory with it) once nobody does. The next request for
   * the same bytes creates a new session. For caches above this one (EngineCache) that evict.
   */
  forget(session: Session): void {
    const e = this.entries.get(session);
    if (e && this.cache.get(e.key) === e.entry) this.cache.delete(e.key);
  }

  /**
   * A fresh session that is not cached (the caller releases it). `quiet`: onnxruntime logs nothing
   * below fatal, for runs that are expected to fail (the caller reports the failure).
   */
  open(bytes: Uint8Array, options: { quiet?: boolean } = {}): Promise<Session> {
    return this.create(bytes, options.quiet ?? false);
  }

  private async create(bytes: Uint8Array, quiet = false): Promise<Session> {
    const base: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all', ...(quiet && { logSeverityLevel: 4 }) };
    if (this.opts.intraOpThreads > 0) base.intraOpNumThreads = this.opts.intraOpThreads;
    const shapes = bytes.length <= SHAPE_SESSIONS_MAX_BYTES ? this.opts.shapeSessions : 1;
    const ep = this.opts.executionProvider;
    const cpuOpts: ort.InferenceSession.SessionOptions = { ...base, executionProviders: ['cpu'] };
    const cpuFallback = { open: () => ort.InferenceSession.create(bytes, cpuOpts), log: this.opts.log };
    const wantCuda = (ep === 'cuda' || ep === 'auto') && !this.cudaUnavailable;
    if (wantCuda && !cudaProviderInstalled()) {
      this.cudaUnavailable = true;
      this.opts.log(`onnxruntime: CUDA execution provider unavailable (libonnxruntime_providers_cuda.so is not installed; see README "GPU"); falling back to CPU`);
    } else if (wantCuda) {
      try {
        // Severity 4 (fatal only): the failed provider load is reported by our one line below, not ORT's.
        const opts: ort.InferenceSession.SessionOptions = { ...base, logSeverityLevel: 4, executionProviders: ['cuda'] };
        return new Session(await ort.InferenceSession.create(bytes, opts), 'cuda', () => ort.InferenceSession.create(bytes, opts), shapes, cpuFallback);
      } catch (e) {
        const msg = (e as Error).message;
        if (!/cuda|provider|shared librar/i.test(msg)) throw wrapCreateError(e);
        this.cudaUnavailable = true;
        this.opts.log(`onnxruntime: CUDA execution provider unavailable (${msg.split('\n')[0]}); falling back to CPU`);
      }
    }
    if (ep === 'webgpu' && !this.webgpuUnavailable) {
      try {
        // Severity 3: no warning that shape ops stay on the CPU (onnxruntime places them there on purpose).
        const cpuNodes = webgpuCpuNodes(bytes);
        // onnxruntime-node refuses an empty list ("Provider options key/value cannot be empty").
        const webgpu: ort.InferenceSession.WebGpuExecutionProviderOption = { name: 'webgpu', ...(cpuNodes.length > 0 ? { forceCpuNodeNames: cpuNodes } : {}) };
        const opts: ort.InferenceSession.SessionOptions = { ...base, logSeverityLevel: quiet ? 4 : 3, executionProviders: [webgpu] };
        return new Session(await ort.InferenceSession.create(bytes, opts), 'webgpu', () => ort.InferenceSession.create(bytes, opts), shapes, cpuFallback);
      } catch (e) {
        const msg = (e as Error).message;
        if (/WebGPU adapter|vulkan|dawn/i.test(msg)) {
          this.webgpuUnavailable = true;
          this.opts.log(`onnxruntime: WebGPU execution provider unavailable (${webgpuReason(msg)}); falling back to CPU`);
        } else if (/webgpu/i.test(msg)) {
          this.opts.log(`onnxruntime: the WebGPU execution provider cannot take this model (${msg.split('\n')[0]}); it runs on the CPU`);
        } else {
          throw wrapCreateError(e);
        }
      }
    }
    try {
      return new Session(await ort.InferenceSession.create(bytes, cpuOpts), 'cpu', () => ort.InferenceSession.create(bytes, cpuOpts), shapes);
    } catch (e) {
      throw wrapCreateError(e);
    }
  }

  /** The provider new sessions use now (before the first session, the one asked for). */
  get provider(): ActiveProvider {
    const ep = this.opts.executionProvider;
    if (ep === 'webgpu') return this.webgpuUnavailable ? 'cpu' : 'webgpu';
    return ep === 'cpu' || this.cudaUnavailable ? 'cpu' : 'cuda';
  }

  async close(): Promise<void> {
    const all = [...this.cache.values()];
    this.cache.clear();
    for (const s of all) {
      try {
        await (await s).release();
      } catch {
        /* a session that failed to create has nothing to release */
      }
    }
  }
}

/** Whether onnxruntime-node's CUDA provider library was installed (its install script fetches it). */
function cudaProviderInstalled(): boolean {
  try {
    const pkg = dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
    const bin = join(pkg, 'bin');
    for (const napi of readdirSync(bin)) {
      if (existsSync(join(bin, napi, process.platform, process.arch, 'libonnxruntime_providers_cuda.so'))) return true;
    }
  } catch {
    /* no bin folder: no provider */
  }
  return false;
}

/**
 * Nodes that onnxruntime 1.30's WebGPU provider takes but cannot run, by name, to be placed on the CPU:
 * MaxPool with its Indices output ("The Indices output is not supported yet"; the gradient graphs read
 * it). Unnamed ones, and anything else that fails there, move the session to the CPU (Session).
 */
function webgpuCpuNodes(bytes: Uint8Array): string[] {
  let nodes;
  try {
    nodes = decodeModel(bytes).graph?.node ?? [];
  } catch {
    return []; // onnxruntime reports what is wrong with the bytes
  }
  return nodes.filter((n) => n.opType === 'MaxPool' && (n.domain ?? '') === '' && (n.output ?? []).filter(Boolean).length > 1 && n.name).map((n) => n.name!);
}

/** The gist of onnxruntime's message when the WebGPU provider finds no adapter (it names a source path first). */
function webgpuReason(msg: string): string {
  const line = msg.split('\n')[0]!;
  const at = line.search(/Failed to get a WebGPU adapter/);
  return at >= 0 ? line.slice(at) : line;
}

function wrapCreateError(e: unknown): Error {
  const msg = (e as Error).message ?? String(e);
  if (/protobuf|parsing|Load model|ModelProto|invalid model|Failed to load model/i.test(msg)) return new ModelFormatError(`onnxruntime cannot load the model: ${msg}`);
  return new RuntimeFailureError(`onnxruntime cannot create a session: ${msg}`);
}

/**
 * glibc malloc settings for a process that runs training graphs (set in the environment before the
 * process starts; the Dockerfile does). onnxruntime-node copies every output into a fresh buffer:
 * per-sample gradients and Jacobians are hundreds of KB to MB per run, and with glibc's defaults
 * those either come from mmap (≥ 128 KB at first) or from heap memory that free() keeps handing back
 * to the system, so each run page-faults its output in again. On this project's VM that was 10–25
 * faults per digits-mlp gradient run at batch 32 (1.5–2.3x its time) and 100–350 per Jacobian run
 * (2.7–4.4x). A fixed 32 MB mmap threshold and a 256 MB trim threshold keep that memory in the process.
 */
export const MALLOC_TUNABLES = 'glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456';

/**
 * A one-line hint when this process runs on glibc without an mmap threshold set (see
 * `MALLOC_TUNABLES`), else null.
 */
export function mallocHint(): string | null {
  if (process.platform !== 'linux' || /mmap_threshold/.test(process.env.GLIBC_TUNABLES ?? '')) return null;
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  if (!header?.glibcVersionRuntime) return null;
  return `GLIBC_TUNABLES is not set: per-sample gradient and Jacobian runs may page-fault their outputs in on every run; start with GLIBC_TUNABLES=${MALLOC_TUNABLES} (README, "Memory allocator")`;
}

/** The onnxruntime-node version, for logs and benchmarks. */
export const ortVersion: string = ort.env.versions.node ?? 'unknown';
