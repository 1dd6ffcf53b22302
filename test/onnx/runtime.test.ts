import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { decodeModel, encodeModel, MALLOC_TUNABLES, mallocHint, OnnxRuntime } from '../../src/onnx/index.js';
import { int64Tensor } from '../../src/onnx/proto.js';
import { Session } from '../../src/onnx/runtime.js';
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

  // No machine here has a WebGPU adapter (onnxruntime-node's provider needs Vulkan); one that has
  // runs the other branch, and bench/webgpu.ts compares the two providers there.
  it('uses the WebGPU provider where an adapter is found, else falls back to CPU with one log line', async () => {
    const lines: string[] = [];
    const rt = new OnnxRuntime({ executionProvider: 'webgpu', log: (m) => lines.push(m) });
    const s1 = await rt.session(fixtureBytes('mlp.opset14'));
    const s2 = await rt.session(fixtureBytes('cnn.opset14'));
    expect(['cpu', 'webgpu']).toContain(s1.provider);
    expect(s2.provider).toBe(s1.provider);
    expect(rt.provider).toBe(s1.provider);
    if (s1.provider === 'cpu') {
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^onnxruntime: WebGPU execution provider unavailable \(.+\); falling back to CPU$/);
    } else {
      expect(lines).toEqual([]);
    }
    const g = golden('mlp.opset14');
    const out = await s1.run(g.inputs);
    expect(relErr(out.logits!.data as Float32Array, g.expected.logitsBase)).toBeLessThan(1e-5);
    await rt.close();
  });

  // A GPU session whose run fails is moved to the CPU (Session's cpuFallback). The failing session
  // here is a real CPU session of the MLP with a Reshape of x to [1, 20] in front, standing for a GPU
  // kernel that cannot run: batch 1 gives the MLP's output, batch 3 fails and runs on the fallback.
  describe('a GPU session whose run fails', () => {
    const bytes = fixtureBytes('mlp.opset14');
    const heldModel = decodeModel(bytes);
    const g = heldModel.graph!;
    g.initializer = [...(g.initializer ?? []), int64Tensor('one_row', [2], [1, 20])];
    for (const n of g.node ?? []) n.input = (n.input ?? []).map((i) => (i === 'x' ? 'x_one_row' : i));
    g.node = [{ opType: 'Reshape', input: ['x', 'one_row'], output: ['x_one_row'], name: 'one_row' }, ...(g.node ?? [])];
    const heldBytes = encodeModel(heldModel);
    const held = () => ort.InferenceSession.create(heldBytes);
    const rows = (n: number, width = 20) => ({ x: { data: Float32Array.from({ length: n * width }, (_, i) => Math.sin(i)), dims: [n, width] } });

    it('runs again on the CPU and stays there, with one log line', async () => {
      const lines: string[] = [];
      let opened = 0;
      const s = new Session(await held(), 'webgpu', held, 4, { open: () => (opened++, ort.InferenceSession.create(bytes)), log: (m) => lines.push(m) });
      const one = await s.run(rows(1));
      expect(s.provider).toBe('webgpu');
      const [a, b] = await Promise.all([s.run(rows(3)), s.run(rows(3))]);
      expect(s.provider).toBe('cpu');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^onnxruntime: a run failed on the WebGPU execution provider \(.*Reshape node. Name:'one_row'.*\); this model runs on the CPU from now on$/);
      expect(opened).toBe(1);
      const plain = await ort.InferenceSession.create(bytes);
      const want = (await plain.run({ x: new ort.Tensor('float32', rows(3).x.data, [3, 20]) })).logits!.data as Float32Array;
      expect([...a.logits!.data as Float32Array]).toEqual([...want]);
      expect([...b.logits!.data as Float32Array]).toEqual([...want]);
      expect([...(await s.run(rows(1))).logits!.data as Float32Array]).toEqual([...one.logits!.data as Float32Array]);
      expect(lines).toHaveLength(1);
      await plain.release();
      await s.release();
    });

    it('fails with INVALID_INPUT and stays on the GPU when the CPU rejects the run too', async () => {
      const lines: string[] = [];
      const s = new Session(await held(), 'webgpu', held, 4, { open: () => ort.InferenceSession.create(bytes), log: (m) => lines.push(m) });
      await expect(s.run(rows(1, 19))).rejects.toMatchObject({ code: 'INVALID_INPUT' });
      expect(s.provider).toBe('webgpu');
      expect(lines).toEqual([]);
      expect((await s.run(rows(1))).logits!.dims).toEqual([1, 5]);
      await s.release();
    });
  });

  it('forgets a session on request: its holder keeps using it, the next request opens a new one', async () => {
    const rt = new OnnxRuntime({ intraOpThreads: 1 });
    const a = await rt.session(fixtureBytes('mlp.opset14'));
    await rt.session(fixtureBytes('cnn.opset14'));
    expect(rt.cached).toBe(2);
    rt.forget(a);
    expect(rt.cached).toBe(1);
    rt.forget(a);
    expect(rt.cached).toBe(1);
    const g = golden('mlp.opset14');
    const b = await rt.session(fixtureBytes('mlp.opset14'));
    expect(b).not.toBe(a);
    expect(rt.cached).toBe(2);
    const [oa, ob] = [await a.run(g.inputs), await b.run(g.inputs)];
    expect([...oa.logits!.data as Float32Array]).toEqual([...ob.logits!.data as Float32Array]);
    // Forgetting the first again changes nothing: the cache now holds the second.
    rt.forget(a);
    expect(await rt.session(fixtureBytes('mlp.opset14'))).toBe(b);
    await a.release();
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
