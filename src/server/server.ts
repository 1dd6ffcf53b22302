/**
 * Start-up in order: configuration (logged, secrets hidden) → database (migrated) → ONNX Runtime →
 * built-in models (verified; a bad one is skipped) → the app, ready to listen. main.ts adds listening
 * and signals; tests use this directly.
 */
import { mkdirSync } from 'node:fs';

import type { Logger as PinoLogger } from 'pino';

import { OnnxRuntime, ortVersion } from '../onnx/index.js';
import { buildApp, createContext, type App, type AppContext } from './app.js';
import { describeConfig, type Config } from './config.js';
import { openDatabase } from './db/database.js';
import { createLogger } from './logger.js';
import type { BuiltinReport } from './services/models.js';
import { probeRuntime } from './services/runtime-probe.js';

export interface Server {
  app: App;
  ctx: AppContext;
  builtins: BuiltinReport;
  /** Stops accepting requests, waits for those in flight, then releases sessions and the database. */
  close(): Promise<void>;
}

export interface ServerOptions {
  log?: PinoLogger;
  /** Migrations folder override (tests). */
  migrationsDir?: string;
  /** Force or forbid local mode (tests); default: decided from the configuration and stored keys. */
  localMode?: boolean;
}

export async function createServer(config: Config, options: ServerOptions = {}): Promise<Server> {
  const log = options.log ?? createLogger(config.logLevel);
  log.info({ config: describeConfig(config) }, 'starting with this configuration');
  mkdirSync(config.dataDir, { recursive: true });
  const db = await openDatabase(config.databaseUrl, {
    ...(options.migrationsDir && { migrationsDir: options.migrationsDir }),
    log: (msg, data) => log.info(data ?? {}, msg),
  });
  log.info({ provider: db.provider, applied: db.migrations.applied, upToDate: db.migrations.skipped.length }, `database ready (${db.provider})`);
  const runtime = new OnnxRuntime({ executionProvider: config.ortEp, intraOpThreads: config.ortThreads, log: (m) => log.warn(m) });
  try {
    await probeRuntime(runtime);
    log.info({ ortVersion, executionProvider: runtime.provider, requested: config.ortEp }, `onnxruntime ${ortVersion} using the ${runtime.provider.toUpperCase()} execution provider`);
    const ctx = await createContext({ config, db, runtime, log, ...(options.localMode !== undefined && { localMode: options.localMode }) });
    const builtins = await ctx.models.registerBuiltins(config.modelsDir);
    await ctx.models.checkFixedBatches();
    if (ctx.auth.localMode) {
      log.warn(
        { mode: 'local', user: 'local' },
        'single-user local mode: no ADMIN_API_KEY is set and no API keys exist, so every request acts as the local admin user without a key. ' +
          'Set ADMIN_API_KEY to require keys and to create users (POST /v1/users).',
      );
      if (!['127.0.0.1', 'localhost', '::1'].includes(config.host)) {
        log.warn({ host: config.host }, `local mode on a non-loopback address (${config.host}): anyone who can reach it has admin rights`);
      }
    } else {
      log.info({ mode: 'api-key', adminKey: config.adminApiKey !== undefined }, 'API keys required (Authorization: Bearer <key>)');
    }
    const app = await buildApp(ctx);
    await app.ready();
    return {
      app,
      ctx,
      builtins,
      async close() {
        await app.close();
        await runtime.close();
        await db.close();
      },
    };
  } catch (err) {
    await runtime.close().catch(() => {});
    await db.close().catch(() => {});
    throw err;
  }
}
