/**
 * A real listening server (port 0) and fetch: a browser-style multipart upload, adapter creation,
 * local mode (no keys configured), and rate limits keyed by API key.
 */
import { request } from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';

import { ADMIN_KEY, cleanupTemp, fixture, startServer, testConfig } from './helpers.js';

afterAll(cleanupTemp);

describe('a listening server', () => {
  it('serves uploads and adapters over HTTP in single-user local mode', async () => {
    const server = await startServer(testConfig());
    const base = await server.app.listen({ port: 0, host: '127.0.0.1' });
    try {
      expect(server.ctx.auth.localMode).toBe(true);
      expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: 'ok' });

      const form = new FormData();
      form.append('name', 'mlp-over-http');
      form.append('file', new Blob([new Uint8Array(fixture())]), 'mlp.onnx');
      const up = await fetch(`${base}/v1/models`, { method: 'POST', body: form });
      expect(up.status).toBe(201);
      const model = (await up.json()) as { id: string; targets: unknown[] };
      expect(model.targets).toHaveLength(3);

      const res = await fetch(`${base}/v1/adapters`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ modelId: model.id, targets: 'all', rank: 2, optimizer: { type: 'adamw', lr: 0.001 } }),
      });
      expect(res.status).toBe(201);
      expect(res.headers.get('x-request-id')).toBeTruthy();
      expect(await res.json()).toMatchObject({ rank: 2, optimizer: { type: 'adamw', lr: 0.001 } });

      const me = (await (await fetch(`${base}/v1/me`)).json()) as { mode: string; user: { name: string } };
      expect(me).toMatchObject({ mode: 'local', user: { name: 'local' } });
      const users = await fetch(`${base}/v1/users`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'x' }) });
      expect(users.status).toBe(403);
      expect(((await users.json()) as { message: string }).message).toMatch(/ADMIN_API_KEY/);
    } finally {
      await server.close();
    }
  });

  it('refuses a 2 GB upload with 413 before reading it, with the default limits, and stores nothing', async () => {
    const server = await startServer(testConfig());
    const base = await server.app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const before = await server.ctx.repos.models.count();
      const url = new URL(`${base}/v1/models`);
      const started = Date.now();
      const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request({
          host: url.hostname, port: url.port, path: url.pathname, method: 'POST',
          headers: { 'content-type': 'multipart/form-data; boundary=x', 'content-length': String(2 * 1024 ** 3) },
        }, (r) => {
          let body = '';
          r.on('data', (c) => (body += c));
          r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        // Send only the first 64 KiB of the declared 2 GB; the answer must not wait for the rest.
        req.write(Buffer.alloc(64 * 1024, 7));
      });
      expect(res.status).toBe(413);
      expect(JSON.parse(res.body)).toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(await server.ctx.repos.models.count()).toBe(before);
    } finally {
      await server.close();
    }
  });

  it('rate-limits per API key with 429 RATE_LIMITED, other keys unaffected, health exempt', async () => {
    const server = await startServer(testConfig({ ADMIN_API_KEY: ADMIN_KEY, RATE_LIMIT_MAX: '3', RATE_LIMIT_WINDOW_MS: '60000' }));
    const base = await server.app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const admin = { authorization: `Bearer ${ADMIN_KEY}` };
      const created = (await (await fetch(`${base}/v1/users`, { method: 'POST', headers: { ...admin, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'dave' }) })).json()) as {
        apiKey: { key: string };
      };
      const dave = { authorization: `Bearer ${created.apiKey.key}` };
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await fetch(`${base}/v1/adapters`, { headers: dave })).status);
      expect(statuses).toEqual([200, 200, 200, 429, 429]);
      const limited = await fetch(`${base}/v1/adapters`, { headers: dave });
      expect(await limited.json()).toMatchObject({ code: 'RATE_LIMITED' });
      expect(limited.headers.get('retry-after')).toBeTruthy();
      // The admin key had one request (creating dave): it has its own bucket.
      expect((await fetch(`${base}/v1/models`, { headers: admin })).status).toBe(200);
      for (let i = 0; i < 5; i++) expect((await fetch(`${base}/healthz`)).status).toBe(200);
    } finally {
      await server.close();
    }
  });
});
