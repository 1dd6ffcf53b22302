/** Built-in models: registered at start with builtin: true, a corrupt file logged and skipped, unchanged on restart. */
import { afterAll, describe, expect, it } from 'vitest';

import { captureLogger, cleanupTemp, modelsDir, startServer, testConfig } from './helpers.js';

afterAll(cleanupTemp);

describe('built-in models', () => {
  it('registers the verified ones, skips a corrupt one with a log line, and keeps them across restarts', async () => {
    const dir = modelsDir({ 'tiny-mlp': 'mlp.opset17', 'tiny-cnn': 'cnn.opset17', 'broken-mlp': 'mlp.opset14' }, ['broken-mlp']);
    const config = testConfig({ MODELS_DIR: dir });
    const { log, lines } = captureLogger();
    const server = await startServer(config, { log });
    try {
      expect(server.builtins.registered.sort()).toEqual(['tiny-cnn', 'tiny-mlp']);
      expect(server.builtins.skipped).toEqual([expect.objectContaining({ name: 'broken-mlp', code: 'MODEL_CHECKSUM' })]);
      const skipped = lines.find((l) => l['code'] === 'MODEL_CHECKSUM');
      expect(skipped).toMatchObject({ level: 50, msg: expect.stringContaining("built-in model 'broken-mlp' skipped") });

      const list = (await server.app.inject({ url: '/v1/models' })).json().items as { name: string; builtin: boolean; targets: unknown[]; metadata: Record<string, unknown>; id: string }[];
      expect(list.map((m) => [m.name, m.builtin])).toEqual([
        ['tiny-cnn', true],
        ['tiny-mlp', true],
      ]);
      const mlp = list.find((m) => m.name === 'tiny-mlp')!;
      expect(mlp.targets).toHaveLength(3);
      expect(mlp.metadata).toMatchObject({ task: 'classification', labels: ['a', 'b', 'c', 'd', 'e'] });

      // Built-in models are managed by the manifest, not by DELETE.
      const del = await server.app.inject({ method: 'DELETE', url: `/v1/models/${mlp.id}` });
      expect(del.statusCode).toBe(409);
      expect(del.json().code).toBe('MODEL_BUILTIN');
      // Local mode (no keys configured) was announced.
      expect(lines.some((l) => String(l['msg']).startsWith('single-user local mode'))).toBe(true);
    } finally {
      await server.close();
    }

    const again = await startServer(config);
    try {
      expect(again.builtins.unchanged.sort()).toEqual(['tiny-cnn', 'tiny-mlp']);
      expect(again.builtins.registered).toEqual([]);
      expect(await again.ctx.repos.models.count()).toBe(2);
    } finally {
      await again.close();
    }
  });

  it('starts with none when the manifest is unreadable, and says so', async () => {
    const { log, lines } = captureLogger();
    const server = await startServer(testConfig({ MODELS_DIR: '/nonexistent/models' }), { log });
    try {
      expect(server.builtins.skipped).toEqual([expect.objectContaining({ code: 'MODEL_MANIFEST' })]);
      expect(lines.some((l) => l['level'] === 50 && String(l['msg']).includes('cannot read the manifest'))).toBe(true);
      expect((await server.app.inject({ url: '/readyz' })).statusCode).toBe(200);
    } finally {
      await server.close();
    }
  });
});
