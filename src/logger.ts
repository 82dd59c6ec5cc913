import { pino, type DestinationStream, type Logger } from 'pino';
import { secretsOf, type AppConfig } from '../config/index.js';
import { createSecretMask } from './util/secrets.js';
import { cutText } from './util/text.js';

export type { Logger } from 'pino';

/** The most characters an error's message or stack takes in a log line (its causes' included). */
const ERROR_LOG_CHARS = 4_000;

/**
 * The process logger. Secrets are redacted by path, and the configuration's secret values (API keys, tokens) are
 * masked in every error written (`{ err }`, with its causes: an endpoint may echo the request's key in its error
 * body); an error's message and stack are cut to a few thousand characters (a proxy's HTML error page, held by the
 * model client's error as a cause, filled 66 KB log lines). Model output, tool arguments and environment content are
 * untrusted and must be nested under a key (never spread into the top level).
 */
export function createLogger(
  config: Pick<AppConfig, 'log'> & Partial<Pick<AppConfig, 'endpoints' | 'headerSecrets' | 'dashboard' | 'serve' | 'redis'>>,
  destination?: DestinationStream,
  bindings: Record<string, unknown> = {},
): Logger {
  const mask = createSecretMask(secretsOf(config));
  // Strings masked and cut, in objects and arrays too (a client's error keeps the parsed error body as a field).
  const written = (value: unknown, depth = 0): unknown => {
    if (typeof value === 'string') return truncateForLog(mask(value), ERROR_LOG_CHARS);
    if (value === null || typeof value !== 'object') return value;
    // Deeper than that, the rest is kept as its (masked, cut) JSON text, so nothing below goes out unmasked.
    if (depth > 4) return truncateForLog(mask(jsonOfAnything(value)), ERROR_LOG_CHARS);
    if (Array.isArray(value)) return value.slice(0, 50).map(v => written(v, depth + 1));
    return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, written(v, depth + 1)]));
  };
  const options = {
    level: config.log.level,
    base: { service: 'envfleet', pid: process.pid, ...bindings },
    redact: {
      paths: ['apiKey', '*.apiKey', '*.*.apiKey', 'headers.authorization', 'headers.Authorization', '*.headers.authorization'],
      censor: '[redacted]',
    },
    serializers: {
      err: (err: Error) => {
        // Every string the serializer kept (message, stack, and the error's own fields such as a body) is masked and cut.
        return written(pino.stdSerializers.err(err));
      },
    },
  };
  return destination ? pino(options, destination) : pino(options, pino.destination({ dest: 2, sync: true }));
}

/**
 * JSON text of any value, for a log line: a reference back to an object it is inside is written "[Circular]" (ioredis
 * keeps a Cluster's error in its own `previousErrors`: JSON.stringify threw, and the throw, in a heartbeat's log line,
 * ended envfleet serve when a Redis Cluster node went down), and a value JSON cannot hold (a BigInt) as its text.
 */
export function jsonOfAnything(value: unknown): string {
  const ancestors: object[] = [];
  try {
    return (
      JSON.stringify(value, function (this: unknown, _key, v: unknown) {
        if (typeof v === 'bigint') return v.toString();
        if (v === null || typeof v !== 'object') return v;
        // `this` is the object holding v: the ancestors above it are the path from the top.
        while (ancestors.length && ancestors.at(-1) !== this) ancestors.pop();
        if (ancestors.includes(v)) return '[Circular]';
        ancestors.push(v);
        return v;
      }) ?? ''
    );
  } catch (err) {
    return `[not writable as JSON: ${(err as Error).message}]`;
  }
}

/** Shortens untrusted text before it goes into a log line. */
export function truncateForLog(text: string, max = 500): string {
  if (text.length <= max) return text;
  const shown = cutText(text, max);
  return `${shown}… (${text.length - shown.length} more chars)`;
}
