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
    expect(() => new OnnxRuntime({ shapeSessions: 0 })).toThrow(RangeError);
    expect(() => new OnnxRuntime({ shapeSessions: 1.5 })).toThrow(RangeError);
  });

  // onnxruntime plans its memory from the first input shapes a session runs (Session): new shapes get
  // a session of their own, started in the background, up to `shapeSessions`.
  it('runs each new set of input shapes in a session of its own, with the same results', async () => {
    const rows = (n: number) => ({ x: { data: Float32Array.from({ length: n * 20 }, (_, i) => Math.sin(i)), dims: [n, 20] } });
    const rt = new OnnxRuntime({ intraOpThreads: 1 });
    const s = await rt.session(fixtureBytes('mlp.opset14'));
    const first = await s.run(rows(1));
    expect(s.sessions).toBe(1);
    // Batch 3 runs on the first session while its own starts, then on its own.
    const before = (await s.run(rows(3))).logits!.data as Float32Array;
    await s.settled();
    expect(s.sessions).toBe(2);
    const after = (await s.run(rows(3))).logits!.data as Float32Array;
    expect(Array.from(after)).toEqual(Array.from(before));
    expect(relErr(after.subarray(0, 5), first.logits!.data as Float32Array)).toBeLessThan(1e-6);
    // Shapes already seen start nothing; past the limit (4) new shapes stay on the first session.
    await s.run(rows(1));
    for (const n of [4, 5, 6, 7]) await s.run(rows(n));
    await s.settled();
    expect(s.sessions).toBe(4);
    expect(relErr(((await s.run(rows(7))).logits!.data as Float32Array).subarray(0, 15), after)).toBeLessThan(1e-6);
    await rt.close();
    await expect(s.run(rows(3))).rejects.toThrow();

    const one = new OnnxRuntime({ intraOpThreads: 1, shapeSessions: 1 });
    const t = await one.session(fixtureBytes('mlp.opset14'));
    for (const n of [1, 3, 5]) await t.run(rows(n));
    await t.settled();
    expect(t.sessions).toBe(1);
    await one.close();
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
