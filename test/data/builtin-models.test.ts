import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { DEFAULT_MODELS_DIR, loadBuiltinModels, readManifest, sha256Hex, type DataError } from '../../src/data/index.js';

const NAMES = ['digits-mlp', 'digits-cnn', 'mail-transformer'];
const tmpRoot = mkdtempSync(join(tmpdir(), 'builtin-models-test-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));

/** A fresh copy of models/ (manifest, ONNX and tokenizer files) in a temp dir. */
function copyModels(): string {
  const dir = mkdtempSync(join(tmpRoot, 'm-'));
  for (const f of readdirSync(DEFAULT_MODELS_DIR)) {
    if (f === 'manifest.json' || f.endsWith('.onnx') || f.endsWith('-tokenizer.json')) {
      copyFileSync(join(DEFAULT_MODELS_DIR, f), join(dir, f));
    }
  }
  return dir;
}

describe('loadBuiltinModels', () => {
  it('verifies every built-in model in the repository', () => {
    const { models, problems, manifest } = loadBuiltinModels();
    expect(problems).toEqual([]);
    expect(models.map((m) => m.name)).toEqual(NAMES);
    for (const m of models) {
      expect(m.bytes.length).toBe(m.entry.size);
      expect(m.bytes.length).toBeLessThanOrEqual(5 * 1024 * 1024);
      expect(sha256Hex(m.bytes)).toBe(m.entry.sha256);
    }
    expect(models.find((m) => m.name === 'mail-transformer')!.tokenizer?.vocabSize).toBeGreaterThan(1000);
    expect(manifest.models.length).toBe(3);
  });

  it('refuses a truncated model with MODEL_CHECKSUM and keeps the others', () => {
    const dir = copyModels();
    const expected = readManifest(dir).models.find((m) => m.name === 'digits-mlp')!;
    truncateSync(join(dir, 'digits-mlp.onnx'), 1000);
    const { models, problems } = loadBuiltinModels(dir);
    expect(models.map((m) => m.name)).toEqual(['digits-cnn', 'mail-transformer']);
    expect(problems).toHaveLength(1);
    const p = problems[0] as DataError;
    expect(p.code).toBe('MODEL_CHECKSUM');
    expect(p.details).toMatchObject({
      model: 'digits-mlp',
      file: join(dir, 'digits-mlp.onnx'),
      expectedSha256: expected.sha256,
      expectedSize: expected.size,
      actualSize: 1000,
    });
    expect(p.details?.actualSha256).not.toBe(expected.sha256);
    expect(p.message).toContain('digits-mlp.onnx');
  });

  it('refuses an altered model of the right size with MODEL_CHECKSUM', () => {
    const dir = copyModels();
    const path = join(dir, 'digits-cnn.onnx');
    const bytes = readFileSync(path);
    bytes[bytes.length >> 1] ^= 0x01;
    writeFileSync(path, bytes);
    const { models, problems } = loadBuiltinModels(dir);
    expect(models.map((m) => m.name)).toEqual(['digits-mlp', 'mail-transformer']);
    expect(problems.map((p) => p.code)).toEqual(['MODEL_CHECKSUM']);
    expect(problems[0]!.details).toMatchObject({ model: 'digits-cnn', actualSha256: sha256Hex(bytes), actualSize: bytes.length });
    expect(problems[0]!.message).toContain('sha256');
  });

  it('reports a missing model file with MODEL_CHECKSUM and a null actual hash', () => {
    const dir = copyModels();
    unlinkSync(join(dir, 'mail-transformer.onnx'));
    const { models, problems } = loadBuiltinModels(dir);
    expect(models.map((m) => m.name)).toEqual(['digits-mlp', 'digits-cnn']);
    expect(problems[0]).toMatchObject({ code: 'MODEL_CHECKSUM', details: { model: 'mail-transformer', actualSha256: null } });
  });

  it('skips a text model whose tokenizer was altered', () => {
    const dir = copyModels();
    const path = join(dir, 'mail-tokenizer.json');
    writeFileSync(path, readFileSync(path, 'utf8').replace('"the"', '"teh"'));
    const { models, problems } = loadBuiltinModels(dir);
    expect(models.map((m) => m.name)).toEqual(['digits-mlp', 'digits-cnn']);
    expect(problems[0]).toMatchObject({ code: 'MODEL_CHECKSUM', details: { model: 'mail-transformer', file: path } });
  });

  it('refuses manifest entries that point outside the folder', () => {
    const dir = copyModels();
    const manifest = readManifest(dir);
    manifest.models[0]!.file = '../digits-mlp.onnx';
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
    const { models, problems } = loadBuiltinModels(dir);
    expect(models).toHaveLength(2);
    expect(problems[0]).toMatchObject({ code: 'MODEL_MANIFEST' });
  });

  it('throws MODEL_MANIFEST when the manifest is missing or malformed', () => {
    const empty = mkdtempSync(join(tmpRoot, 'e-'));
    expect(() => loadBuiltinModels(empty)).toThrow(expect.objectContaining({ code: 'MODEL_MANIFEST' }));
    writeFileSync(join(empty, 'manifest.json'), '{"models": 3}');
    expect(() => loadBuiltinModels(empty)).toThrow(expect.objectContaining({ code: 'MODEL_MANIFEST' }));
    writeFileSync(join(empty, 'manifest.json'), '{');
    expect(() => loadBuiltinModels(empty)).toThrow(expect.objectContaining({ code: 'MODEL_MANIFEST' }));
    expect(() => loadBuiltinModels(3 as unknown as string)).toThrow(TypeError);
  });
});
