/**
 * The on-disk cache of built training graphs: `<key>.onnx` (the graph) and `<key>.json` (the rest of
 * the TrainingGraph) in one folder. A graph holds a full copy of its model's weights, and every
 * (model, LoRA config, kind) has its own, so the folder is bounded: past `maxBytes` the least recently
 * used entries go (a hit refreshes an entry's time), never the one just written. Graphs of deleted
 * models and of older builders (the key's version salt) age out the same way. Files are written to a
 * `.tmp` name and renamed, so a reader never sees half a graph; a `.tmp` or a half entry older than an
 * hour is the leftover of a crash and is removed.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, utimesSync, writeFileSync, type Stats } from 'node:fs';
import { join } from 'node:path';

/** Default bound of the folder, bytes. */
export const GRAPH_CACHE_MAX_BYTES = 2 * 1024 ** 3;

/** How old a `.tmp` file or a half entry must be before pruning takes it for a crash's leftover. */
const STALE_MS = 60 * 60 * 1000;

/** An entry's two files, read back; undefined when absent or damaged (the caller rebuilds). */
export function readCachedGraph<M>(dir: string, key: string): { meta: M; bytes: Uint8Array } | undefined {
  const onnx = join(dir, `${key}.onnx`);
  let entry: { meta: M; bytes: Uint8Array };
  try {
    entry = { meta: JSON.parse(readFileSync(join(dir, `${key}.json`), 'utf8')) as M, bytes: new Uint8Array(readFileSync(onnx)) };
  } catch {
    return undefined;
  }
  try {
    const now = new Date();
    utimesSync(onnx, now, now);
  } catch {
    /* a read-only folder still serves its graphs */
  }
  return entry;
}

/** Write an entry (graph first, so a reader that finds the .json finds the graph), then prune. */
export function writeCachedGraph(dir: string, key: string, meta: unknown, bytes: Uint8Array, maxBytes = GRAPH_CACHE_MAX_BYTES): void {
  checkBound(maxBytes);
  mkdirSync(dir, { recursive: true });
  const onnx = join(dir, `${key}.onnx`);
  const json = join(dir, `${key}.json`);
  try {
    writeFileSync(`${onnx}.tmp`, bytes);
    renameSync(`${onnx}.tmp`, onnx);
    writeFileSync(`${json}.tmp`, JSON.stringify(meta));
    renameSync(`${json}.tmp`, json);
  } finally {
    removeQuietly(`${onnx}.tmp`);
    removeQuietly(`${json}.tmp`);
  }
  pruneGraphCache(dir, maxBytes, key);
}

/**
 * Remove the least recently used entries (by the .onnx file's modification time) until the folder's
 * entries take at most `maxBytes`, keeping `keep`; remove stale `.tmp` files and stale half entries
 * (one file of the two). Returns the keys removed. Files another process removes meanwhile are skipped.
 */
export function pruneGraphCache(dir: string, maxBytes: number, keep?: string): string[] {
  checkBound(maxBytes);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const now = Date.now();
  const entries = new Map<string, { onnx?: { size: number; time: number }; json?: { size: number; time: number } }>();
  for (const name of names) {
    const st = statOrUndefined(join(dir, name));
    if (!st?.isFile()) continue;
    if (name.endsWith('.tmp')) {
      if (now - st.mtimeMs > STALE_MS) removeQuietly(join(dir, name));
      continue;
    }
    const m = /^([0-9a-f]+)\.(onnx|json)$/.exec(name);
    if (!m) continue;
    const e = entries.get(m[1]!) ?? {};
    e[m[2] as 'onnx' | 'json'] = { size: st.size, time: st.mtimeMs };
    entries.set(m[1]!, e);
  }
  const removed: string[] = [];
  const remove = (key: string) => {
    removeQuietly(join(dir, `${key}.json`));
    removeQuietly(join(dir, `${key}.onnx`));
    removed.push(key);
  };
  let total = 0;
  const whole: { key: string; size: number; time: number }[] = [];
  for (const [key, e] of entries) {
    if (!e.onnx || !e.json) {
      // Another process may be between its two renames: only an old half entry is a crash's leftover.
      if (key !== keep && now - (e.onnx ?? e.json)!.time > STALE_MS) remove(key);
      continue;
    }
    total += e.onnx.size + e.json.size;
    whole.push({ key, size: e.onnx.size + e.json.size, time: e.onnx.time });
  }
  whole.sort((a, b) => a.time - b.time || (a.key < b.key ? -1 : 1));
  for (const e of whole) {
    if (total <= maxBytes) break;
    if (e.key === keep) continue;
    remove(e.key);
    total -= e.size;
  }
  return removed;
}

function checkBound(maxBytes: number): void {
  if (!Number.isFinite(maxBytes) || maxBytes < 0) throw new RangeError(`maxBytes must be a non-negative number, got ${maxBytes}`);
}

function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    /* gone already */
  }
}
