/**
 * The service's configuration (DESIGN 5): defaults, then the environment, then a CLI flag for each
 * setting, validated once with zod. `describeConfig` gives the effective values for the start-up log
 * with secrets masked.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { z } from 'zod';

import { InvalidConfigError } from '../errors.js';

const MiB = 1024 * 1024;

/** Integers given as text (env, flags) or numbers. */
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const optionalText = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

/** The validated configuration. */
export const ConfigSchema = z.object({
  port: int(0, 65_535).default(8080),
  host: z.string().min(1).default('127.0.0.1'),
  /** Database file (SQLite default), blobs and temporary files live here. */
  dataDir: z.string().min(1).default('./data'),
  /** `file:<path>` / a plain path (SQLite) or `postgres://...` / `postgresql://...`; default `file:<dataDir>/service.db`. */
  databaseUrl: optionalText,
  /**
   * `cpu`, `cuda`, `webgpu` (onnxruntime's WebGPU provider, Vulkan on Linux; falls back to CPU with one
   * log line), or `auto` (try CUDA, fall back to CPU with one log line).
   */
  ortEp: z.enum(['cpu', 'cuda', 'webgpu', 'auto']).default('auto'),
  /** Threads of one ONNX Runtime op (intra-op pool); 0 lets ORT choose. */
  ortThreads: int(0, 1024).default(0),
  /** A key with admin rights; without it and without users the service runs in single-user local mode. */
  adminApiKey: optionalText.refine((v) => v === undefined || v.length >= 16, {
    message: 'ADMIN_API_KEY must be at least 16 characters',
  }),
  /** Largest JSON body, bytes. */
  bodyLimit: int(1024, 2 ** 31 - 1).default(16 * MiB),
  /** Largest uploaded file (model, dataset), bytes. Models are protobuf, which caps them at 2 GiB. */
  maxUploadBytes: int(1, 2 ** 31 - 1).default(1024 * MiB),
  /** Requests per key (or per address without a key) per window; 0 turns rate limiting off. */
  rateLimitMax: int(0, 1_000_000_000).default(6000),
  rateLimitWindowMs: int(1, 86_400_000).default(60_000),
  /**
   * Adapter states kept in memory; past it the least recently used is snapshotted and dropped, and
   * recovered on its next request (services/online.ts).
   */
  maxHotAdapters: int(1, 10_000_000).default(1000),
  /**
   * Adapter engines (one per base model, LoRA configuration and task: its onnxruntime sessions) kept
   * in memory; past it the least recently used leaves the cache (services/engines.ts).
   */
  maxEngines: int(1, 100_000).default(32),
  /**
   * Bound of DATA_DIR/graphs, the on-disk cache of built training graphs (each holds a copy of its
   * model's weights), bytes; past it the least recently used graphs go (src/onnx/graph-cache.ts).
   */
  graphCacheMaxBytes: int(0, Number.MAX_SAFE_INTEGER).default(2 * 1024 * MiB),
  /**
   * Browser origins allowed to call the API (CORS), comma-separated (`https://app.example.com`), or
   * `*` for any; empty (the default) sends no CORS headers, so browsers refuse cross-origin calls.
   */
  corsOrigins: z
    .string()
    .default('')
    .transform((v) => v.split(',').map((o) => o.trim()).filter((o) => o !== ''))
    .refine((list) => list.every((o) => o === '*' || /^https?:\/\/[^/\s?#]+$/i.test(o)), {
      message: "each origin is scheme://host[:port] (no path), or '*'",
    })
    .refine((list) => !list.includes('*') || list.length === 1, { message: "'*' stands alone" }),
  /** Where the built-in models and their manifest are (default: the repository's models/). */
  modelsDir: optionalText,
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

/** The validated configuration, with `databaseUrl` resolved. */
export type Config = Omit<z.output<typeof ConfigSchema>, 'databaseUrl' | 'dataDir'> & {
  /** Absolute path. */
  dataDir: string;
  databaseUrl: string;
};

/** Each setting's environment variable and CLI flag. */
export const CONFIG_SOURCES: { readonly [K in keyof z.input<typeof ConfigSchema>]-?: { env: string; flag: string } } = {
  port: { env: 'PORT', flag: 'port' },
  host: { env: 'HOST', flag: 'host' },
  dataDir: { env: 'DATA_DIR', flag: 'data-dir' },
  databaseUrl: { env: 'DATABASE_URL', flag: 'database-url' },
  ortEp: { env: 'ORT_EP', flag: 'ort-ep' },
  ortThreads: { env: 'ORT_THREADS', flag: 'ort-threads' },
  adminApiKey: { env: 'ADMIN_API_KEY', flag: 'admin-api-key' },
  bodyLimit: { env: 'BODY_LIMIT', flag: 'body-limit' },
  maxUploadBytes: { env: 'MAX_UPLOAD_BYTES', flag: 'max-upload-bytes' },
  rateLimitMax: { env: 'RATE_LIMIT_MAX', flag: 'rate-limit-max' },
  rateLimitWindowMs: { env: 'RATE_LIMIT_WINDOW_MS', flag: 'rate-limit-window-ms' },
  maxHotAdapters: { env: 'MAX_HOT_ADAPTERS', flag: 'max-hot-adapters' },
  maxEngines: { env: 'MAX_ENGINES', flag: 'max-engines' },
  graphCacheMaxBytes: { env: 'GRAPH_CACHE_MAX_BYTES', flag: 'graph-cache-max-bytes' },
  corsOrigins: { env: 'CORS_ORIGINS', flag: 'cors-origins' },
  modelsDir: { env: 'MODELS_DIR', flag: 'models-dir' },
  logLevel: { env: 'LOG_LEVEL', flag: 'log-level' },
};

/**
 * Reads the configuration: defaults, overridden by `env`, overridden by `--flag value` in `argv`.
 * Throws INVALID_CONFIG naming each bad setting by its variable and flag.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, argv: readonly string[] = process.argv.slice(2)): Config {
  const options = Object.fromEntries(Object.values(CONFIG_SOURCES).map((s) => [s.flag, { type: 'string' as const }]));
  let flags: Record<string, string | boolean | undefined>;
  try {
    flags = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values as Record<string, string | undefined>;
  } catch (err) {
    throw new InvalidConfigError(`bad command line: ${(err as Error).message}`, { argv: [...argv] });
  }
  const raw: Record<string, unknown> = {};
  for (const [key, { env: name, flag }] of Object.entries(CONFIG_SOURCES)) {
    const fromFlag = flags[flag];
    const fromEnv = env[name];
    if (typeof fromFlag === 'string') raw[key] = fromFlag;
    else if (fromEnv !== undefined && fromEnv !== '') raw[key] = fromEnv;
  }
  const parsed = ConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => {
      const key = String(i.path[0] ?? '');
      const src = CONFIG_SOURCES[key as keyof typeof CONFIG_SOURCES];
      return { setting: src ? `${src.env} (--${src.flag})` : key, message: i.message };
    });
    throw new InvalidConfigError(`invalid configuration: ${problems.map((p) => `${p.setting}: ${p.message}`).join('; ')}`, { problems });
  }
  const c = parsed.data;
  const dataDir = resolve(c.dataDir);
  const databaseUrl = c.databaseUrl ?? `file:${resolve(dataDir, 'service.db')}`;
  return { ...c, dataDir, databaseUrl };
}

/** Which database a URL names. */
export function databaseProvider(url: string): 'sqlite' | 'postgresql' {
  return /^postgres(ql)?:\/\//i.test(url) ? 'postgresql' : 'sqlite';
}

/** The configuration as it may be logged: the admin key masked, a database password removed. */
export function describeConfig(config: Config): Record<string, unknown> {
  return {
    ...config,
    adminApiKey: config.adminApiKey === undefined ? 'not set' : 'set (hidden)',
    databaseUrl: redactUrl(config.databaseUrl),
    databaseProvider: databaseProvider(config.databaseUrl),
  };
}

function redactUrl(url: string): string {
  if (databaseProvider(url) !== 'postgresql') return url;
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparsable, hidden)';
  }
}
