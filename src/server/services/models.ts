/**
 * Base models: validating an upload (src/onnx decodes it, ONNX Runtime must open it), making a fixed
 * batch size symbolic where the graph allows (FixedBatchInfo), storing it content-addressed, listing
 * its LoRA targets, deleting it, and registering the built-in models of models/ at start-up (verified
 * by src/data; a bad one is logged and skipped, never fatal).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { loadBuiltinModels, type BuiltinModel } from '../../data/index.js';
import { ModelUnsupportedError, RuntimeFailureError } from '../../errors.js';
import { fixedBatchSize, inspectModel, listTargets, loadModelBytes, relaxBatch, relaxFixedBatch, sha256, type ModelProto, type OnnxRuntime } from '../../onnx/index.js';
import type { BlobStore } from '../blob-store.js';
import { ConflictError, NotFoundError } from '../errors.js';
import { newId } from '../ids.js';
import type { Logger } from '../logger.js';
import type { ModelRecord, NewModel, Repositories, StoredTarget } from '../repositories/index.js';

/** What we learn from a model's bytes. */
export interface ModelAnalysis {
  proto: ModelProto;
  fields: Pick<NewModel, 'opset' | 'inputs' | 'outputs' | 'targets' | 'opTypes'>;
}

/** Decodes (MODEL_FORMAT / MODEL_EXTERNAL_DATA on bad bytes) and inspects a model. */
export function analyseModel(bytes: Uint8Array): ModelAnalysis {
  return analyseProto(loadModelBytes(bytes));
}

function analyseProto(proto: ModelProto): ModelAnalysis {
  const info = inspectModel(proto);
  const targets: StoredTarget[] = listTargets(proto).map((t) => ({
    module: t.module,
    node: t.node,
    opType: t.opType,
    weight: t.weight,
    weightDims: t.weightDims,
    in: t.in,
    out: t.out,
    shared: t.shared,
  }));
  return { proto, fields: { opset: info.opset, inputs: info.inputs, outputs: info.outputs, targets, opTypes: info.opTypes } };
}

/** What registering the built-in models did. */
export interface BuiltinReport {
  /** Newly registered or updated to new bytes. */
  registered: string[];
  unchanged: string[];
  skipped: { name: string; code: string; message: string }[];
}

/**
 * `metadata.batch` of a model exported with a fixed batch size: `relaxed` when its leading dims were
 * made symbolic (src/onnx relaxFixedBatch: it computes each sample on its own), so that its stored
 * signature and its graph (ModelService.proto) take any batch; else `reason` says why not, and
 * adapters on it are refused with the way to export it again.
 */
export interface FixedBatchInfo {
  fixed: number;
  relaxed: boolean;
  reason?: string;
}

/** Keeps this many decoded models in memory (adapter creation and training read them). */
const PROTO_CACHE_SIZE = 8;

export class ModelService {
  private readonly protos = new Map<string, ModelProto>();

  constructor(
    private readonly repos: Repositories,
    private readonly blobs: BlobStore,
    private readonly runtime: OnnxRuntime,
    private readonly log: Logger,
  ) {}

  /**
   * Validates and stores an uploaded model. Nothing is stored unless it decodes, ONNX Runtime can
   * open it, and neither its name nor its bytes are registered yet.
   */
  async upload(input: { bytes: Uint8Array; name: string; description?: string | null }): Promise<ModelRecord> {
    const { bytes, name } = input;
    const analysed = analyseModel(bytes);
    const blobSha = sha256(bytes);
    const existing = await this.repos.models.getBySha(blobSha);
    if (existing) {
      throw new ConflictError('MODEL_EXISTS', `this model is already registered as '${existing.name}' (${existing.id})`, { id: existing.id, name: existing.name, sha256: blobSha });
    }
    if (await this.repos.models.getByName(name)) throw new ConflictError('NAME_TAKEN', `a model named '${name}' already exists`, { name });
    await this.checkRuntimeOpens(bytes);
    const { proto, fields, batch } = await this.relaxed(analysed, name);
    const blob = await this.blobs.put(bytes);
    try {
      const record = await this.repos.models.create({
        id: newId('mdl'),
        name,
        description: input.description ?? null,
        sha256: blob.sha256,
        size: blob.size,
        path: blob.path,
        builtin: false,
        metadata: batch ? { batch } : {},
        ...fields,
      });
      this.remember(record.sha256, proto);
      return record;
    } catch (err) {
      // A concurrent upload may own the blob by now; remove it only if no model references it.
      if (!(await this.repos.models.getBySha(blob.sha256))) await this.blobs.remove(blob.path);
      throw err;
    }
  }

  /** The model, or MODEL_NOT_FOUND. */
  async get(id: string): Promise<ModelRecord> {
    const m = await this.repos.models.get(id);
    if (!m) throw new NotFoundError('model', id);
    return m;
  }

  list(): Promise<ModelRecord[]> {
    return this.repos.models.list();
  }

  /** Deletes an uploaded model and its file; MODEL_BUILTIN or MODEL_IN_USE (409) when it must stay. */
  async delete(id: string): Promise<void> {
    const m = await this.get(id);
    if (m.builtin) {
      throw new ConflictError('MODEL_BUILTIN', `model '${m.name}' is built in (models/manifest.json) and cannot be deleted`, { id });
    }
    const usage = await this.repos.models.usage(id);
    if (usage.adapters > 0 || usage.datasets > 0) {
      throw new ConflictError('MODEL_IN_USE', `model '${m.name}' is used by ${usage.adapters} adapter(s) and ${usage.datasets} dataset(s); delete them first`, { id, ...usage });
    }
    if (!(await this.repos.models.delete(id))) throw new NotFoundError('model', id);
    this.protos.delete(m.sha256);
    await this.blobs.remove(m.path);
  }

  /** The decoded graph of a stored model (cached), with its batch axis made symbolic where it was relaxed (FixedBatchInfo). */
  async proto(m: ModelRecord): Promise<ModelProto> {
    const hit = this.protos.get(m.sha256);
    if (hit) return hit;
    let proto = loadModelBytes(await this.blobs.read(m.path));
    const batch = m.metadata['batch'] as FixedBatchInfo | undefined;
    if (batch?.relaxed) proto = relaxBatch(proto, batch.fixed);
    this.remember(m.sha256, proto);
    return proto;
  }

  /**
   * A model exported with a fixed batch size, relaxed where it computes each sample on its own (the
   * analysis of the relaxed graph, and what was found); other models as they are.
   */
  private async relaxed(a: ModelAnalysis, name: string): Promise<ModelAnalysis & { batch?: FixedBatchInfo }> {
    const fixed = fixedBatchSize(a.proto);
    if (fixed === null) return a;
    const res = await relaxFixedBatch(a.proto, fixed, this.runtime);
    if ('reason' in res) {
      this.log.info({ model: name, fixed, reason: res.reason }, `model '${name}' was exported with a fixed batch size of ${fixed} and keeps it: ${res.reason}`);
      return { ...a, batch: { fixed, relaxed: false, reason: res.reason } };
    }
    this.log.info({ model: name, fixed }, `model '${name}' was exported with a fixed batch size of ${fixed}; it computes each sample on its own, so its batch axis is made symbolic`);
    return { ...analyseProto(res.model), batch: { fixed, relaxed: true } };
  }

  /**
   * Uploaded models stored before uploads were checked for a fixed batch size (no `metadata.batch`)
   * whose first input has one: checked now, as an upload is (FixedBatchInfo). Run at start-up. No
   * adapter can exist on such a model (it could not be trained), so its signature can change.
   * Returns the names of the models relaxed.
   */
  async checkFixedBatches(): Promise<string[]> {
    const relaxed: string[] = [];
    for (const m of await this.repos.models.list()) {
      const lead = m.inputs[0]?.shape?.[0];
      if (m.builtin || m.metadata['batch'] !== undefined || typeof lead !== 'number' || lead < 1) continue;
      try {
        const { proto, fields, batch } = await this.relaxed(analyseModel(await this.blobs.read(m.path)), m.name);
        if (!batch) continue;
        await this.repos.models.update(m.id, { ...(batch.relaxed ? fields : {}), metadata: { ...m.metadata, batch } });
        this.protos.delete(m.sha256);
        if (batch.relaxed) {
          this.remember(m.sha256, proto);
          relaxed.push(m.name);
        }
      } catch (err) {
        this.log.error({ err, model: m.name }, `model '${m.name}': the fixed batch size check failed; it stays as it is`);
      }
    }
    return relaxed;
  }

  /** The stored bytes of a model. */
  bytes(m: ModelRecord): Promise<Uint8Array> {
    return this.blobs.read(m.path);
  }

  /**
   * Registers the models of `dir`'s manifest: new ones are added, changed files replace the old
   * bytes, unchanged ones are left alone. A model whose file fails verification (MODEL_CHECKSUM), or
   * whose name or bytes an uploaded model already has, is logged and skipped.
   */
  async registerBuiltins(dir?: string): Promise<BuiltinReport> {
    const report: BuiltinReport = { registered: [], unchanged: [], skipped: [] };
    let found;
    try {
      found = loadBuiltinModels(dir);
    } catch (err) {
      const e = err as Error & { code?: string };
      this.log.error({ err: e, dir }, `built-in models: cannot read the manifest; none registered`);
      report.skipped.push({ name: '*', code: e.code ?? 'MODEL_MANIFEST', message: e.message });
      return report;
    }
    for (const p of found.problems) {
      const name = typeof p.details?.['model'] === 'string' ? (p.details['model'] as string) : '?';
      this.log.error({ code: p.code, details: p.details }, `built-in model '${name}' skipped: ${p.message}`);
      report.skipped.push({ name, code: p.code, message: p.message });
    }
    for (const b of found.models) {
      try {
        const outcome = await this.registerOne(b, found.dir);
        if (outcome === 'unchanged') report.unchanged.push(b.name);
        else report.registered.push(b.name);
      } catch (err) {
        const e = err as Error & { code?: string };
        this.log.error({ err: e, model: b.name }, `built-in model '${b.name}' skipped: ${e.message}`);
        report.skipped.push({ name: b.name, code: e.code ?? 'INTERNAL', message: e.message });
      }
    }
    this.log.info({ registered: report.registered, unchanged: report.unchanged, skipped: report.skipped.map((s) => s.name) }, `built-in models: ${report.registered.length + report.unchanged.length} available, ${report.skipped.length} skipped`);
    return report;
  }

  private async registerOne(b: BuiltinModel, dir: string): Promise<'new' | 'updated' | 'unchanged'> {
    const sha = b.entry.sha256;
    const byName = await this.repos.models.getByName(b.name);
    if (byName && !byName.builtin) throw new ConflictError('NAME_TAKEN', `an uploaded model is already named '${b.name}'`, { id: byName.id });
    if (byName && byName.sha256 === sha) return 'unchanged';
    const bySha = await this.repos.models.getBySha(sha);
    if (bySha && bySha.id !== byName?.id) {
      throw new ConflictError('MODEL_EXISTS', `its bytes are already registered as '${bySha.name}' (${bySha.id})`, { id: bySha.id });
    }
    const { proto, fields, batch } = await this.relaxed(analyseModel(b.bytes), b.name);
    const blob = await this.blobs.put(b.bytes);
    const metadata = { ...(await this.builtinMetadata(b, dir)), ...(batch && { batch }) };
    const data = { sha256: blob.sha256, size: blob.size, path: blob.path, description: b.entry.description ?? null, metadata, ...fields };
    this.remember(sha, proto);
    if (byName) {
      const usage = await this.repos.models.usage(byName.id);
      await this.repos.models.update(byName.id, data);
      await this.blobs.remove(byName.path);
      this.log.warn({ model: b.name, from: byName.sha256, to: sha, adapters: usage.adapters }, `built-in model '${b.name}' changed; adapters made for the old bytes keep their recorded sha256`);
      return 'updated';
    }
    await this.repos.models.create({ id: newId('mdl'), name: b.name, builtin: true, ...data });
    return 'new';
  }

  private async builtinMetadata(b: BuiltinModel, dir: string): Promise<Record<string, unknown>> {
    const e = b.entry;
    const meta: Record<string, unknown> = { task: e.task, labels: e.labels, preprocessing: e.preprocessing, metrics: e.metrics };
    if (e.tokenizer) {
      // The tokenizer was verified by loadBuiltinModels; keep a copy next to the model's bytes.
      const tok = await this.blobs.put(new Uint8Array(readFileSync(join(dir, e.tokenizer.file))));
      meta['tokenizer'] = { path: tok.path, sha256: tok.sha256, vocabSize: e.tokenizer.vocabSize ?? null, maxLength: e.tokenizer.maxLength ?? null };
    }
    return meta;
  }

  /** ONNX Runtime must be able to open the model; its refusal is the client's problem (422), not ours. */
  private async checkRuntimeOpens(bytes: Uint8Array): Promise<void> {
    try {
      const session = await this.runtime.open(bytes);
      await session.release();
    } catch (err) {
      if (err instanceof RuntimeFailureError) {
        throw new ModelUnsupportedError(`onnxruntime cannot open this model: ${err.message}`);
      }
      throw err;
    }
  }

  private remember(sha: string, proto: ModelProto): void {
    this.protos.delete(sha);
    this.protos.set(sha, proto);
    while (this.protos.size > PROTO_CACHE_SIZE) this.protos.delete(this.protos.keys().next().value!);
  }
}
