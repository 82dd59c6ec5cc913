import { pino, type DestinationStream, type Logger } from 'pino';
import type { AppConfig } from '../config/index.js';
import { cutText } from './util/text.js';

export type { Logger } from 'pino';

/**
 * The process logger. Secrets are redacted by path; model output, tool arguments and environment
 * content are untrusted and must be nested under a key (never spread into the top level).
 */
export function createLogger(
  config: Pick<AppConfig, 'log'>,
  destination?: DestinationStream,
  bindings: Record<string, unknown> = {},
): Logger {
  const options = {
    level: config.log.level,
    base: { service: 'envfleet', pid: process.pid, ...bindings },
    redact: {
      paths: ['apiKey', '*.apiKey', '*.*.apiKey', 'headers.authorization', 'headers.Authorization', '*.headers.authorization'],
      censor: '[redacted]',
    },
  };
  return destination ? pino(options, destination) : pino(options, pino.destination({ dest: 2, sync: true }));
}

/** Shortens untrusted text before it goes into a log line. */
export function truncateForLog(text: string, max = 500): string {
  if (text.length <= max) return text;
  const shown = cutText(text, max);
  return `${shown}… (${text.length - shown.length} more chars)`;
}
