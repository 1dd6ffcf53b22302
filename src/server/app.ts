/**
 * The HTTP app. `createContext` wires repositories and services over an open database and runtime;
 * `appPlugin` is the service itself as a fastify plugin (health at the root, the REST API under /v1
 * behind authentication); `buildApp` makes a fastify instance with the external plugins (zod type
 * provider, OpenAPI at /docs, rate limits, multipart, error handling, request ids, metrics) and
 * registers `appPlugin` on it.
 */
import { randomUUID } from 'node:crypto';

import fastifyCors from '@fastify/cors';
import fastifyMultipart from '@fastify/multipart';
import fastifyRateLimit from '@fastify/rate-limit';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyPluginAsync } from 'fastify';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Logger as PinoLogger } from 'pino';

import type { OnnxRuntime } from '../onnx/index.js';
import { Authenticator, rateLimitKey } from './auth.js';
import { BlobStore } from './blob-store.js';
import type { Config } from './config.js';
import type { Database } from './db/database.js';
import { errorHandler, notFoundHandler } from './error-handler.js';
import { PayloadTooLargeError } from './errors.js';
import { Metrics } from './metrics.js';
import { createRepositories, type Repositories } from './repositories/index.js';
import { adapterRoutes } from './routes/adapters.js';
import { datasetRoutes } from './routes/datasets.js';
import { healthRoutes } from './routes/health.js';
import { jobRoutes } from './routes/jobs.js';
import { modelRoutes } from './routes/models.js';
import { onlineRoutes } from './routes/online.js';
import { userRoutes } from './routes/users.js';
import { AdapterService } from './services/adapters.js';
import { DatasetService } from './services/datasets.js';
import { EngineCache } from './services/engines.js';
import { JobService } from './services/jobs.js';
import { ModelService } from './services/models.js';
import { OnlineService } from './services/online.js';

/** Room for multipart boundaries and small fields on top of the file-size limit. */
const UPLOAD_FRAMING_BYTES = 1024 * 1024;

/** The settings the app reads. */
export type AppConfig = Pick<Config, 'dataDir' | 'bodyLimit' | 'maxUploadBytes' | 'rateLimitMax' | 'rateLimitWindowMs' | 'adminApiKey'> & Partial<Pick<Config, 'maxHotAdapters' | 'maxEngines' | 'graphCacheMaxBytes' | 'corsOrigins'>>;

/** Everything a route may use. */
export interface AppContext {
  config: AppConfig;
  db: Database;
  runtime: OnnxRuntime;
  repos: Repositories;
  blobs: BlobStore;
  models: ModelService;
  adapters: AdapterService;
  /** Per-adapter online state: predict, observe, state, downloads, job training (one writer per adapter). */
  online: OnlineService;
  datasets: DatasetService;
  /** Fine-tuning jobs and their in-process runner. */
  jobs: JobService;
  auth: Authenticator;
  metrics: Metrics;
  log: PinoLogger;
}

/** What the app is built from. */
export interface AppDeps {
  config: AppConfig;
  db: Database;
  runtime: OnnxRuntime;
  log: PinoLogger;
  /** Single-user local mode; default: no admin key configured and no user keys stored. */
  localMode?: boolean;
}

/** Wires repositories and services; creates the system users the auth mode needs. */
export async function createContext(deps: AppDeps): Promise<AppContext> {
  const { config, db, runtime, log } = deps;
  const repos = createRepositories(db);
  const blobs = new BlobStore(config.dataDir);
  const models = new ModelService(repos, blobs, runtime, log);
  const metrics = new Metrics({ adapters: () => repos.adapters.count(), models: () => repos.models.count() });
  const engines = new EngineCache(models, runtime, blobs, {
    ...(config.maxEngines !== undefined && { maxEngines: config.maxEngines }),
    ...(config.graphCacheMaxBytes !== undefined && { graphCacheMaxBytes: config.graphCacheMaxBytes }),
    metrics,
  });
  const adapters = new AdapterService(repos, models, engines);
  const localMode = deps.localMode ?? (!config.adminApiKey && (await repos.users.activeKeyCount()) === 0);
  const auth = new Authenticator(repos.users, { adminApiKey: config.adminApiKey, localMode });
  await auth.init();
  const online = new OnlineService(repos.online, models, engines, blobs, metrics, log, { ...(config.maxHotAdapters !== undefined && { maxHot: config.maxHotAdapters }) });
  const datasets = new DatasetService(repos, blobs, models);
  const jobs = new JobService(repos, datasets, adapters, () => online, log);
  // Adapters a crash left behind their snapshot are replayed in the background; resumed jobs share it.
  void online.recoverAtStartup().catch((err: unknown) => log.error({ err }, 'start-up recovery failed; adapters recover on first use'));
  await jobs.recover();
  return { config, db, runtime, repos, blobs, models, adapters, online, datasets, jobs, auth, metrics, log };
}

/** The service as a fastify plugin: health routes at the root, the API under /v1 behind authentication. */
export const appPlugin: FastifyPluginAsync<{ ctx: AppContext }> = async (app, { ctx }) => {
  // Jobs stop at a step boundary; then queued online updates finish and hot states are snapshotted before the database closes.
  app.addHook('onClose', async () => {
    await ctx.jobs.stop();
    await ctx.online.close();
  });
  await app.register(healthRoutes, { ctx });
  await app.register(
    async (v1) => {
      v1.decorateRequest('principal', null);
      v1.addHook('onRequest', async (req) => {
        req.principal = await ctx.auth.authenticate(req.headers.authorization);
      });
      await v1.register(modelRoutes, { ctx });
      await v1.register(adapterRoutes, { ctx });
      await v1.register(onlineRoutes, { ctx });
      await v1.register(datasetRoutes, { ctx });
      await v1.register(jobRoutes, { ctx });
      await v1.register(userRoutes, { ctx });
    },
    { prefix: '/v1' },
  );
};

function createFastify(ctx: AppContext) {
  return Fastify({
    loggerInstance: ctx.log,
    bodyLimit: ctx.config.bodyLimit,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    routerOptions: { ignoreTrailingSlash: true },
  }).withTypeProvider<ZodTypeProvider>();
}

/** The fastify instance type of the app. */
export type App = ReturnType<typeof createFastify>;

/** A fastify instance serving `ctx` (call `ready()` or `listen()` on it). */
export async function buildApp(ctx: AppContext): Promise<App> {
  const app = createFastify(ctx);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler(notFoundHandler);

  app.addHook('onRequest', async (req, reply) => {
    void reply.header('x-request-id', req.id);
    // An upload that declares more bytes than the limit (plus multipart framing) is refused before
    // its body is read, so a 2 GB upload costs nothing; undeclared sizes are cut off while streaming.
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (Number.isFinite(declared) && declared > ctx.config.maxUploadBytes + UPLOAD_FRAMING_BYTES && /^multipart\//i.test(req.headers['content-type'] ?? '')) {
      void reply.header('connection', 'close');
      throw new PayloadTooLargeError(ctx.config.maxUploadBytes);
    }
  });
  app.addHook('onResponse', async (req, reply) => {
    ctx.metrics.observeRequest(req.method, req.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
  });

  const origins = ctx.config.corsOrigins ?? [];
  if (origins.length > 0) {
    // Preflights are answered here, before authentication; the API key goes in the Authorization header.
    await app.register(fastifyCors, {
      origin: origins.includes('*') ? '*' : origins,
      methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
      allowedHeaders: ['authorization', 'content-type'],
      exposedHeaders: ['content-disposition', 'x-request-id', 'retry-after'],
      maxAge: 600,
    });
  }

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'onnx-lora-kalman',
        description: 'Online LoRA fine-tuning of frozen ONNX models with Kalman-filter optimizers. Errors are {code, message, details?}.',
        version: '0.1.0',
      },
      components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'Authorization: Bearer <API key>' } } },
      security: [{ apiKey: [] }],
    },
    transform: jsonSchemaTransform,
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });

  if (ctx.config.rateLimitMax > 0) {
    await app.register(fastifyRateLimit, {
      global: true,
      max: ctx.config.rateLimitMax,
      timeWindow: ctx.config.rateLimitWindowMs,
      keyGenerator: rateLimitKey,
      errorResponseBuilder: (_req, c) =>
        Object.assign(new Error(`rate limit of ${c.max} requests per ${c.after} exceeded; retry in ${c.after}`), {
          code: 'RATE_LIMITED',
          statusCode: 429,
          details: { limit: c.max, retryAfterMs: c.ttl },
        }),
    });
  }
  // Multipart bodies are not subject to bodyLimit; uploads have their own limit, maxUploadBytes.
  await app.register(fastifyMultipart, {
    limits: { fileSize: ctx.config.maxUploadBytes, files: 1, fields: 20, fieldSize: 1024 * 1024, parts: 32 },
  });
  await app.register(appPlugin, { ctx });
  return app;
}
