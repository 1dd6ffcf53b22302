/**
 * The training-graph caches: the on-disk folder stays under its bound (least recently used entries
 * first, never the one just written, crash leftovers removed), and the in-process cache lets a graph
 * go once nothing holds it. Real files, real graph builds on a fixture.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';

import { afterEach, describe, expect, it } from 'vitest';

import { buildTrainingGraph, clearTrainingGraphCache, OnnxRuntime, pruneGraphCache, type TrainingGraph } from '../../src/onnx/index.js';
import { fixtureModel } from '../fixtures.js';

const rt = new OnnxRuntime();
const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'graph-cache-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const HOUR = 3600;
/** Write `<key>.onnx` (size bytes) and `<key>.json` (10 bytes), both `age` seconds old. */
function entry(dir: string, key: string, size: number, age: number, parts: ('onnx' | 'json')[] = ['onnx', 'json']): void {
  const t = Date.now() / 1000 - age;
  for (const p of parts) {
    const f = join(dir, `${key}.${p}`);
    writeFileSync(f, Buffer.alloc(p === 'onnx' ? size : 10));
    utimesSync(f, t, t);
  }
}
const keys = (dir: string) => [...new Set(readdirSync(dir).map((f) => f.split('.')[0]!))].sort();

describe('pruneGraphCache', () => {
  it('removes the least recently used entries until the folder fits, keeping the given one', () => {
    const dir = tempDir();
    entry(dir, 'aa', 100, 50);
    entry(dir, 'bb', 100, 40);
    entry(dir, 'cc', 100, 30);
    entry(dir, 'dd', 100, 60); // the oldest, but the one just written
    expect(pruneGraphCache(dir, 230, 'dd').sort()).toEqual(['aa', 'bb']);
    expect(keys(dir)).toEqual(['cc', 'dd']);
    // Under the bound nothing goes; at 0 everything but the kept entry goes.
    expect(pruneGraphCache(dir, 220)).toEqual([]);
    expect(pruneGraphCache(dir, 0, 'cc')).toEqual(['dd']);
    expect(keys(dir)).toEqual(['cc']);
  });

  it('removes crash leftovers (old .tmp files and old half entries) and leaves fresh ones and other files', () => {
    const dir = tempDir();
    entry(dir, 'aa', 10, 10);
    writeFileSync(join(dir, 'old.onnx.tmp'), 'x');
    utimesSync(join(dir, 'old.onnx.tmp'), Date.now() / 1000 - 2 * HOUR, Date.now() / 1000 - 2 * HOUR);
    writeFileSync(join(dir, 'new.json.tmp'), 'x');
    entry(dir, 'b0', 10, 2 * HOUR, ['onnx']);
    entry(dir, 'b1', 10, 2 * HOUR, ['json']);
    entry(dir, 'b2', 10, 10, ['onnx']); // another process between its two renames
    writeFileSync(join(dir, 'README'), 'not ours');
    expect(pruneGraphCache(dir, 1e9).sort()).toEqual(['b0', 'b1']);
    expect(readdirSync(dir).sort()).toEqual(['README', 'aa.json', 'aa.onnx', 'b2.onnx', 'new.json.tmp']);
  });

  it('takes a missing folder as empty and refuses a bad bound', () => {
    expect(pruneGraphCache(join(tempDir(), 'none'), 0)).toEqual([]);
    expect(() => pruneGraphCache(tempDir(), -1)).toThrow(RangeError);
    expect(() => pruneGraphCache(tempDir(), Number.NaN)).toThrow(RangeError);
  });
});

describe('buildTrainingGraph with a bounded cacheDir', () => {
  const spec = (rank: number) => ({ lora: { targets: 'all' as const, rank }, mode: 'gradient' as const, layout: 'packed' as const });

  it('keeps the folder under cacheMaxBytes, refreshing an entry when it is read', async () => {
    const dir = tempDir();
    const model = fixtureModel('mlp.opset17');
    clearTrainingGraphCache();
    const g2 = await buildTrainingGraph(model, spec(2), rt, { cacheDir: dir });
    const size = statSync(join(dir, `${g2.key}.onnx`)).size + statSync(join(dir, `${g2.key}.json`)).size;
    const bound = { cacheDir: dir, cacheMaxBytes: Math.floor(size * 2.5) };
    const g3 = await buildTrainingGraph(model, spec(3), rt, bound);
    expect(keys(dir)).toEqual([g2.key, g3.key].sort());
    // Age both, rank 2 the older, then read rank 2 back from disk: it becomes the most recently used.
    for (const [k, age] of [[g2.key, 200], [g3.key, 100]] as const) utimesSync(join(dir, `${k}.onnx`), Date.now() / 1000 - age, Date.now() / 1000 - age);
    clearTrainingGraphCache();
    const again = await buildTrainingGraph(model, spec(2), rt, bound);
    expect(again).toEqual(g2);
    // A third graph pushes the folder over 2.5 entries: rank 3, the least recently used, goes.
    const g4 = await buildTrainingGraph(model, spec(4), rt, bound);
    expect(keys(dir)).toEqual([g2.key, g4.key].sort());
    // A bound below one graph keeps only the newest, and every graph still builds.
    const g1 = await buildTrainingGraph(model, spec(1), rt, { cacheDir: dir, cacheMaxBytes: 0 });
    expect(keys(dir)).toEqual([g1.key]);
    expect(g1.n).toBe(1 * (20 + 32) + 1 * (32 + 32) + 1 * (32 + 5));
  });

  it('builds even when the cache folder cannot be written', async () => {
    const file = join(tempDir(), 'not-a-folder');
    writeFileSync(file, 'x');
    clearTrainingGraphCache();
    const g = await buildTrainingGraph(fixtureModel('mlp.opset17'), spec(2), rt, { cacheDir: file });
    expect(g.bytes.length).toBeGreaterThan(0);
    expect(existsSync(join(file, `${g.key}.onnx`))).toBe(false);
  });
});

describe('the in-process graph cache', () => {
  it('shares a graph while it is held and lets it go once nothing holds it', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const model = fixtureModel('mlp.opset17');
    const spec = { lora: { targets: 'all' as const, rank: 2 }, mode: 'gradient' as const, layout: 'packed' as const };
    clearTrainingGraphCache();
    let held: TrainingGraph | undefined = await buildTrainingGraph(model, spec, rt);
    expect(await buildTrainingGraph(model, spec, rt)).toBe(held);
    // Concurrent builds of one key share one build.
    clearTrainingGraphCache();
    const probe = async () => {
      const [a, b] = await Promise.all([buildTrainingGraph(model, spec, rt), buildTrainingGraph(model, spec, rt)]);
      expect(a).toBe(b);
      return { ref: new WeakRef(a), key: a.key };
    };
    const { ref, key } = await probe();
    held = undefined;
    for (let i = 0; i < 10 && ref.deref() !== undefined; i++) {
      await new Promise((r) => setTimeout(r, 10));
      gc();
    }
    expect(ref.deref()).toBeUndefined();
    const rebuilt = await buildTrainingGraph(model, spec, rt);
    expect(rebuilt.key).toBe(key);
  });
});
