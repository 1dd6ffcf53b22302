/**
 * `npm start`: configuration → migrations → built-in models → listen, and a graceful stop on
 * SIGTERM/SIGINT (stop accepting, finish requests in flight, close the database); a second signal,
 * or a stop that hangs, exits at once.
 */
import { mallocHint } from '../onnx/index.js';
import { loadConfig } from './config.js';
import { createLogger } from './logger.js';
import { createServer } from './server.js';

const STOP_TIMEOUT_MS = 15_000;

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
  const log = createLogger(config.logLevel);
  const server = await createServer(config, { log });
  const hint = mallocHint();
  if (hint) log.info(hint);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'stopping: no new requests, finishing those in flight');
    const timer = setTimeout(() => {
      log.error({ timeoutMs: STOP_TIMEOUT_MS }, 'stop timed out: exiting');
      process.exit(1);
    }, STOP_TIMEOUT_MS);
    timer.unref();
    server.close().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  const address = await server.app.listen({ port: config.port, host: config.host });
  log.info({ address, docs: `${address}/docs` }, `listening on ${address}`);
}

main().catch((err: unknown) => {
  const e = err as Error & { code?: string };
  // pino may not exist yet (bad config) or be the failed part; stderr always works.
  process.stderr.write(`failed to start: ${e.code ? `${e.code}: ` : ''}${e.message}\n`);
  process.exit(1);
});
