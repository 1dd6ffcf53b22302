/** The service's logger: pino, JSON lines, with secrets redacted wherever they could appear. */
import { pino, type Logger as PinoLogger, type LoggerOptions } from 'pino';

export type Logger = Pick<PinoLogger, 'info' | 'warn' | 'error' | 'debug' | 'fatal' | 'child' | 'level'>;

/** Paths pino masks in every log line. */
export const REDACT = ['req.headers.authorization', 'headers.authorization', 'adminApiKey', 'key', 'apiKey.key'];

export function createLogger(level: string, destination?: NodeJS.WritableStream): PinoLogger {
  const options: LoggerOptions = { level, redact: { paths: REDACT, censor: '[redacted]' } };
  return destination ? pino(options, destination as never) : pino(options);
}
