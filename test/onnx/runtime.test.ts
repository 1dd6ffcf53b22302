import { describe, expect, it } from 'vitest';
import { MALLOC_TUNABLES, mallocHint, OnnxRuntime } from '../../src/onnx/index.js';
import { fixtureBytes, golden, relErr } from '../fixtures.js';

describe('OnnxRuntime', () => {
  it('falls back from CUDA to CPU with one log line when the CUDA provider cannot load', async () => {
    const lines: string[] = [];
    const rt = new OnnxRuntime({ executionProvider: 'cuda', log: (m) => lines.push(m) });
    const s1 = await rt.session(fixtureBytes('mlp.opset14'));
    const s2 = await rt.session(fixtureBytes('cnn.opset14'));
    expect(s1.provider).toBe('cpu');
    expect(s2.provider).toBe('cpu');
    expect(rt.provider).toBe('cpu');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/CUDA execution provider unavailable.*falling back to CPU/);
    const g = golden('mlp.opset14');
    const out = await s1.run(g.inputs);
    expect(relErr(out.logits!.data as Float32Array, g.expected.logitsBase)).toBeLessThan(1e-6);
    await rt.close();
  });

  it('creates a session once per model and reuses it', async () => {
    const rt = new OnnxRuntime({ intraOpThreads: 1 });
    const a = await rt.session(fixtureBytes('mlp.opset14'));
    const b = await rt.session(fixtureBytes('mlp.opset14'));
    expect(b).toBe(a);
    await rt.close();
  });

  it('validates its options', () => {
    expect(() => new OnnxRuntime({ executionProvider: 'tpu' as never })).toThrow(RangeError);
    expect(() => new OnnxRuntime({ intraOpThreads: -1 })).toThrow(RangeError);
  });

  it('names the input that is missing, unknown or of the wrong size', async () => {
    const rt = new OnnxRuntime();
    const s = await rt.session(fixtureBytes('mlp.opset14'));
    await expect(s.run({})).rejects.toMatchObject({ code: 'INVALID_INPUT', message: expect.stringContaining("'x'") });
    await expect(s.run({ x: { data: new Float32Array(20), dims: [1, 20] }, y: { data: new Float32Array(1), dims: [1] } })).rejects.toMatchObject({ code: 'INVALID_INPUT', message: expect.stringContaining("'y'") });
    await expect(s.run({ x: { data: new Float32Array(19), dims: [1, 20] } })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    await expect(s.run({ x: { data: new Float32Array(21), dims: [1, 21] } })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    await rt.close();
  });

  it('refuses bytes that are not a model', async () => {
    const rt = new OnnxRuntime();
    await expect(rt.session(new Uint8Array([1, 2, 3]))).rejects.toMatchObject({ code: expect.stringMatching(/MODEL_FORMAT|ORT_RUNTIME/) });
    await rt.close();
  });

  it('hints at the malloc settings on glibc until GLIBC_TUNABLES sets an mmap threshold', () => {
    const saved = process.env.GLIBC_TUNABLES;
    const glibc = process.platform === 'linux' && !!(process.report?.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime;
    try {
      delete process.env.GLIBC_TUNABLES;
      const hint = mallocHint();
      if (glibc) expect(hint).toContain(`GLIBC_TUNABLES=${MALLOC_TUNABLES}`);
      else expect(hint).toBeNull();
      process.env.GLIBC_TUNABLES = MALLOC_TUNABLES;
      expect(mallocHint()).toBeNull();
    } finally {
      if (saved === undefined) delete process.env.GLIBC_TUNABLES;
      else process.env.GLIBC_TUNABLES = saved;
    }
  });
});
