import { resolve } from 'node:path';

import { describe, expect, it } from 'vitest';

import { databaseProvider, describeConfig, loadConfig } from '../../src/server/config.js';

describe('loadConfig', () => {
  it('has the documented defaults', () => {
    const c = loadConfig({}, []);
    expect(c).toMatchObject({ port: 8080, host: '127.0.0.1', ortEp: 'auto', ortThreads: 0, dataDir: resolve('./data'), logLevel: 'info' });
    expect(c.databaseUrl).toBe(`file:${resolve('./data/service.db')}`);
    expect(c.adminApiKey).toBeUndefined();
  });

  it('reads the environment, and a CLI flag beats the environment', () => {
    const env = { PORT: '9000', HOST: '0.0.0.0', DATA_DIR: '/tmp/x', ORT_EP: 'cuda', ORT_THREADS: '2', ADMIN_API_KEY: 'k'.repeat(20) };
    const c = loadConfig(env, ['--port', '9001', '--ort-ep=cpu', '--database-url', 'postgres://u:secret@db/app']);
    expect(c).toMatchObject({ port: 9001, host: '0.0.0.0', dataDir: '/tmp/x', ortEp: 'cpu', ortThreads: 2, adminApiKey: 'k'.repeat(20) });
    expect(c.databaseUrl).toBe('postgres://u:secret@db/app');
    expect(databaseProvider(c.databaseUrl)).toBe('postgresql');
  });

  it('names each bad setting by its variable and flag (INVALID_CONFIG)', () => {
    expect(() => loadConfig({ PORT: 'eighty', ORT_EP: 'tpu' }, [])).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG', message: expect.stringMatching(/PORT \(--port\).*ORT_EP \(--ort-ep\)/) }));
    expect(() => loadConfig({ ADMIN_API_KEY: 'short' }, [])).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG', message: expect.stringContaining('ADMIN_API_KEY') }));
    expect(() => loadConfig({}, ['--no-such-flag', '1'])).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG' }));
    for (const bad of ['0', '-3', '1.5', 'many']) {
      expect(() => loadConfig({ MAX_HOT_ADAPTERS: bad }, [])).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG', message: expect.stringContaining('MAX_HOT_ADAPTERS (--max-hot-adapters)') }));
    }
    expect(loadConfig({ ORT_EP: 'webgpu', MAX_HOT_ADAPTERS: '7' }, [])).toMatchObject({ ortEp: 'webgpu', maxHotAdapters: 7 });
    expect(loadConfig({}, []).maxHotAdapters).toBe(1000);
    expect(() => loadConfig({ MAX_ENGINES: '0' }, [])).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG', message: expect.stringContaining('MAX_ENGINES (--max-engines)') }));
    expect(loadConfig({ MAX_ENGINES: '3' }, []).maxEngines).toBe(3);
    for (const bad of ['-1', '1.5', 'lots']) {
      expect(() => loadConfig({ GRAPH_CACHE_MAX_BYTES: bad }, [])).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG', message: expect.stringContaining('GRAPH_CACHE_MAX_BYTES (--graph-cache-max-bytes)') }));
    }
    expect(loadConfig({}, ['--graph-cache-max-bytes', '0']).graphCacheMaxBytes).toBe(0);
    expect(loadConfig({}, []).graphCacheMaxBytes).toBe(2 * 1024 ** 3);
  });

  it('logs no secret', () => {
    const c = loadConfig({ ADMIN_API_KEY: 'super-secret-admin-key', DATABASE_URL: 'postgresql://app:hunter2@db:5432/x' }, []);
    const text = JSON.stringify(describeConfig(c));
    expect(text).not.toContain('super-secret-admin-key');
    expect(text).not.toContain('hunter2');
    expect(describeConfig(c)).toMatchObject({ adminApiKey: 'set (hidden)', databaseProvider: 'postgresql' });
  });

  it('treats file: URLs and plain paths as SQLite', () => {
    expect(databaseProvider('file:./data/x.db')).toBe('sqlite');
    expect(databaseProvider('/var/lib/x.db')).toBe('sqlite');
    expect(databaseProvider('postgresql://h/db')).toBe('postgresql');
  });
});
