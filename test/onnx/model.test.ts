import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, mkdirSync, writeFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeModel, encodeModel, inspectModel, loadModelBytes, loadModelFile, OnnxRuntime, onnx } from '../../src/onnx/index.js';
import { fixtureBytes, fixtureModel, golden, relErr } from '../fixtures.js';

const rt = new OnnxRuntime();
afterAll(() => rt.close());

describe('decodeModel', () => {
  it('reads an exporter-made model', () => {
    const m = decodeModel(fixtureBytes('mlp.opset14'));
    expect(m.graph?.node?.length).toBeGreaterThan(0);
  });
  it.each([
    ['empty bytes', new Uint8Array()],
    ['random bytes', Uint8Array.from({ length: 256 }, (_, i) => (i * 97 + 13) & 255)],
    ['text', new TextEncoder().encode('this is not an onnx model')],
    ['a truncated model', fixtureBytes('cnn.opset17').subarray(0, 5000)],
  ])('refuses %s with MODEL_FORMAT', (_, bytes) => {
    expect(() => decodeModel(bytes)).toThrow(expect.objectContaining({ code: 'MODEL_FORMAT' }));
  });
  it('refuses a model whose nodes read undefined tensors', () => {
    const m = fixtureModel('mlp.opset14');
    m.graph!.node![1]!.input![0] = 'nowhere';
    expect(() => decodeModel(encodeModel(m))).toThrow(expect.objectContaining({ code: 'MODEL_FORMAT', message: expect.stringContaining("'nowhere'") }));
  });
  it('round-trips through encodeModel', () => {
    const bytes = fixtureBytes('transformer.opset17');
    const again = encodeModel(decodeModel(bytes));
    expect(inspectModel(decodeModel(again))).toEqual(inspectModel(decodeModel(bytes)));
  });
});

describe('inspectModel', () => {
  it('shows inputs and outputs with symbolic dims, opsets, initializers and Constant-node weights', () => {
    const info = inspectModel(fixtureModel('transformer.opset17'));
    expect(info.opset).toBe(17);
    expect(info.inputs).toEqual([{ name: 'ids', dtype: 'int64', shape: ['batch', 'seq'] }]);
    expect(info.outputs).toEqual([{ name: 'logits', dtype: 'float32', shape: ['batch', 3] }]);
    expect(info.initializers.find((i) => i.name === 'tok.weight')).toEqual({ name: 'tok.weight', dtype: 'float32', dims: [50, 32] });
    expect(info.opTypes).toContain('LayerNormalization');
    const cnn = inspectModel(fixtureModel('cnn.opset14'));
    expect(cnn.constants.length).toBeGreaterThan(0);
    expect(cnn.opset).toBe(14);
  });
});

function withExternalData(dir: string, location: string): Uint8Array {
  const m = fixtureModel('mlp.opset14');
  const w = m.graph!.initializer!.find((t) => t.name === 'fc1.weight')!;
  writeFileSync(join(dir, 'weights.bin'), Buffer.concat([Buffer.alloc(16), Buffer.from(w.rawData!)]));
  const len = w.rawData!.length;
  w.rawData = new Uint8Array();
  w.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
  w.externalData = [{ key: 'location', value: location }, { key: 'offset', value: '16' }, { key: 'length', value: String(len) }];
  return encodeModel(m);
}

describe('external data', () => {
  it('is read from the model folder and inlined, giving the same outputs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ext-'));
    writeFileSync(join(dir, 'model.onnx'), withExternalData(dir, 'weights.bin'));
    const { bytes } = loadModelFile(join(dir, 'model.onnx'));
    const g = golden('mlp.opset14');
    const s = await rt.open(bytes);
    const out = await s.run(g.inputs);
    expect(relErr(out.logits!.data as Float32Array, g.expected.logitsBase)).toBeLessThan(1e-6);
  });
  it.each([
    ['a parent-folder escape', '../weights.bin'],
    ['an absolute path', '/etc/passwd'],
    ['a missing file', 'absent.bin'],
  ])('refuses %s with MODEL_EXTERNAL_DATA', (_, location) => {
    const dir = mkdtempSync(join(tmpdir(), 'ext-'));
    const inner = join(dir, 'model');
    mkdirSync(inner);
    writeFileSync(join(inner, 'model.onnx'), withExternalData(inner, location));
    writeFileSync(join(dir, 'weights.bin'), Buffer.alloc(4096));
    expect(() => loadModelFile(join(inner, 'model.onnx'))).toThrow(expect.objectContaining({ code: 'MODEL_EXTERNAL_DATA' }));
  });
  it('refuses a symlink that leads out of the folder', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ext-'));
    const inner = join(dir, 'model');
    mkdirSync(inner);
    const bytes = withExternalData(dir, 'link.bin');
    symlinkSync(join(dir, 'weights.bin'), join(inner, 'link.bin'));
    writeFileSync(join(inner, 'model.onnx'), bytes);
    expect(() => loadModelFile(join(inner, 'model.onnx'))).toThrow(expect.objectContaining({ code: 'MODEL_EXTERNAL_DATA', message: expect.stringContaining('links outside') }));
  });
  it('is refused in uploaded bytes, which have no folder', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ext-'));
    expect(() => loadModelBytes(withExternalData(dir, 'weights.bin'))).toThrow(expect.objectContaining({ code: 'MODEL_EXTERNAL_DATA' }));
  });
});
