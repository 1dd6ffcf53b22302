/**
 * Shared by bench/layout-ab and bench/shape-sessions: the models they time and the fresh child
 * process each measurement runs in, with bench/grad-throughput's heap and malloc settings
 * (`--initial-heap-size=64`, `GLIBC_TUNABLES`).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { decodeModel, MALLOC_TUNABLES, probeFeeds, type ModelProto, type Tensor } from '../src/onnx/index.js';

/** A fixture (the transformer at 7 tokens) or a built-in model (64 tokens). */
export function loadBenchModel(name: string): { model: ModelProto; seq: number } {
  const fixture = ['mlp', 'cnn', 'transformer'].includes(name);
  const path = fixture ? `test/fixtures/${name}.opset17.onnx` : `models/${name}.onnx`;
  return { model: decodeModel(new Uint8Array(readFileSync(path))), seq: name === 'transformer' ? 7 : 64 };
}

/** Run this script again as `--child <name>` in a fresh process and parse the JSON it prints. */
export function runChild<T>(name: string): T {
  const out = execFileSync(process.execPath, ['--initial-heap-size=64', ...process.execArgv, process.argv[1]!, '--child', name], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, GLIBC_TUNABLES: MALLOC_TUNABLES },
  });
  return JSON.parse(out) as T;
}

/**
 * Print a markdown table with one row per model and process: `repeat` fresh child processes per model
 * (runChild), each row made from the child's JSON by `row`.
 */
export function childTable<T>(header: string[], models: readonly string[], repeat: number, row: (name: string, k: number, r: T) => (string | number)[]): void {
  console.log(`| ${header.join(' | ')} |`);
  console.log(`| ${header.map(() => '---').join(' | ')} |`);
  for (const name of models) {
    for (let k = 0; k < repeat; k++) console.log(`| ${row(name, k, runChild<T>(name)).join(' | ')} |`);
  }
}

/**
 * Synthetic inputs of a model at a batch size (and sequence length, where an input's probe dim is 5):
 * float32 sin(0.37·i)·0.5 + 0.5, int64 token ids 1–40, other types zeros. The same in every bench.
 */
export function benchFeeds(model: ModelProto, batch: number, seq: number | undefined): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(probeFeeds(model, 0))) {
    const dims = t.dims.map((d, i) => (i === 0 ? batch : d === 5 && seq ? seq : d));
    const n = dims.reduce((a, b) => a * b, 1);
    const C = (t.data as unknown as { constructor: new (n: number) => Tensor['data'] }).constructor;
    const data = new C(n);
    if (data instanceof Float32Array) for (let i = 0; i < n; i++) data[i] = Math.sin(i * 0.37) * 0.5 + 0.5;
    else if (data instanceof BigInt64Array) for (let i = 0; i < n; i++) data[i] = BigInt((i * 7) % 40 + 1);
    out[name] = { data, dims };
  }
  return out;
}
