/**
 * Shared by bench/layout-ab and bench/shape-sessions: the models they time and the fresh child
 * process each measurement runs in, with bench/grad-throughput's heap and malloc settings
 * (`--initial-heap-size=64`, `GLIBC_TUNABLES`).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { decodeModel, MALLOC_TUNABLES, type ModelProto } from '../src/onnx/index.js';

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
