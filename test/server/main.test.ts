/** `npm start`'s entry point as a child process: start-up log, listening, graceful stop on SIGTERM, bad configuration. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { cleanupTemp, modelsDir, tempDir } from './helpers.js';

afterAll(cleanupTemp);

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function start(env: Record<string, string>, args: string[] = []) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server/main.ts', ...args], {
    cwd: ROOT,
    env: { ...process.env, ORT_EP: 'cpu', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += String(d)));
  child.stderr.on('data', (d) => (out += String(d)));
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  return { child, exited, output: () => out };
}

/** The address the child logs once it listens (30 s at most). */
async function listening(p: ReturnType<typeof start>): Promise<string> {
  let address: string | undefined;
  for (let i = 0; i < 600 && !address; i++) {
    await new Promise((r) => setTimeout(r, 50));
    address = /"address":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(p.output())?.[1];
  }
  expect(address, p.output()).toBeDefined();
  return address!;
}

describe('main', () => {
  it('starts in announced local mode, serves, and stops cleanly on SIGTERM', async () => {
    const p = start({ DATA_DIR: tempDir('main-'), MODELS_DIR: modelsDir({ 'tiny-mlp': 'mlp.opset17' }) }, ['--port', '0']);
    try {
      const address = await listening(p);
      expect(await (await fetch(`${address}/healthz`)).json()).toEqual({ status: 'ok' });
      const models = (await (await fetch(`${address}/v1/models`)).json()) as { items: { name: string; builtin: boolean }[] };
      expect(models.items).toEqual([expect.objectContaining({ name: 'tiny-mlp', builtin: true })]);
      p.child.kill('SIGTERM');
      expect(await p.exited).toBe(0);
      const out = p.output();
      expect(out).toContain('starting with this configuration');
      expect(out).toContain('single-user local mode');
      expect(out).toMatch(/onnxruntime [\d.]+ using the CPU execution provider/);
      expect(out).toContain('"msg":"stopped"');
    } finally {
      p.child.kill('SIGKILL');
    }
  });

  // Here no WebGPU adapter exists (no Vulkan): the service says so once and runs on the CPU.
  it('with ORT_EP=webgpu, starts on WebGPU where an adapter is found, else on the CPU with one line saying why', async () => {
    const p = start({ DATA_DIR: tempDir('main-'), MODELS_DIR: modelsDir({ 'tiny-mlp': 'mlp.opset17' }), ORT_EP: 'webgpu' }, ['--port', '0']);
    try {
      const address = await listening(p);
      const ready = (await (await fetch(`${address}/readyz`)).json()) as { checks: { onnxruntime: { provider: string } } };
      const out = p.output();
      const fallbacks = out.match(/WebGPU execution provider unavailable \([^)]*\); falling back to CPU/g) ?? [];
      if (fallbacks.length > 0) {
        expect(fallbacks).toHaveLength(1);
        expect(out).toMatch(/onnxruntime [\d.]+ using the CPU execution provider/);
        expect(ready.checks.onnxruntime.provider).toBe('cpu');
      } else {
        expect(out).toMatch(/onnxruntime [\d.]+ using the WEBGPU execution provider/);
        expect(ready.checks.onnxruntime.provider).toBe('webgpu');
      }
      p.child.kill('SIGTERM');
      expect(await p.exited).toBe(0);
    } finally {
      p.child.kill('SIGKILL');
    }
  });

  it('exits with status 2 and a clear message on a bad configuration', async () => {
    const p = start({ DATA_DIR: tempDir('main-'), PORT: 'not-a-port' });
    expect(await p.exited).toBe(2);
    expect(p.output()).toMatch(/PORT \(--port\)/);
  });
});
