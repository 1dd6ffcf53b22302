/** CORS_ORIGINS: browsers on the listed origins may call the API (preflight before authentication); by default no CORS headers. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadConfig } from '../../src/server/config.js';
import type { Server } from '../../src/server/server.js';
import { ADMIN_KEY, bearer, cleanupTemp, modelsDir, startServer, testConfig } from './helpers.js';

let open: Server;
let closed: Server;
const APP = 'http://app.example:5173';

beforeAll(async () => {
  open = await startServer(testConfig({ ADMIN_API_KEY: ADMIN_KEY, MODELS_DIR: modelsDir({ 'tiny-mlp': 'mlp.opset17' }), CORS_ORIGINS: `${APP}, https://other.example` }));
  closed = await startServer(testConfig({ ADMIN_API_KEY: ADMIN_KEY, MODELS_DIR: modelsDir() }));
}, 60_000);

afterAll(async () => {
  await open?.close();
  await closed?.close();
  cleanupTemp();
});

const preflight = (s: Server, origin: string) =>
  s.app.inject({ method: 'OPTIONS', url: '/v1/models', headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' } });

describe('CORS_ORIGINS', () => {
  it('answers a listed origin\'s preflight before authentication, allowing the Authorization header', async () => {
    const res = await preflight(open, APP);
    expect(res.statusCode).toBe(204);
    expect(res.headers['access-control-allow-origin']).toBe(APP);
    expect(String(res.headers['access-control-allow-headers'])).toMatch(/authorization/);
    expect(String(res.headers['access-control-allow-methods'])).toMatch(/POST/);
  });

  it('marks the listed origin\'s responses readable, errors included, and exposes Content-Disposition for downloads', async () => {
    const ok = await open.app.inject({ url: '/v1/models', headers: { origin: APP, ...bearer(ADMIN_KEY) } });
    expect(ok.statusCode).toBe(200);
    expect(ok.headers['access-control-allow-origin']).toBe(APP);
    expect(String(ok.headers['access-control-expose-headers'])).toMatch(/content-disposition/);
    const denied = await open.app.inject({ url: '/v1/models', headers: { origin: APP } });
    expect(denied.statusCode).toBe(401);
    expect(denied.headers['access-control-allow-origin']).toBe(APP);
  });

  it('gives another origin no CORS headers, and by default nobody', async () => {
    for (const res of [await preflight(open, 'http://evil.example'), await preflight(closed, APP), await closed.app.inject({ url: '/v1/models', headers: { origin: APP, ...bearer(ADMIN_KEY) } })]) {
      expect(res.headers['access-control-allow-origin']).toBeUndefined();
    }
  });

  it('refuses an origin with a path, another scheme, or * with others (INVALID_CONFIG)', () => {
    for (const bad of ['http://app.example/path', 'ftp://app.example', '*,http://app.example', 'app.example']) {
      expect(() => loadConfig({ CORS_ORIGINS: bad }, [])).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG', message: expect.stringContaining('CORS_ORIGINS (--cors-origins)') }));
    }
    expect(loadConfig({ CORS_ORIGINS: '*' }, []).corsOrigins).toEqual(['*']);
    expect(loadConfig({}, []).corsOrigins).toEqual([]);
  });
});
