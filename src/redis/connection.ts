import { Redis, type RedisOptions } from 'ioredis';
import { RedisUnsafeError } from '../errors.js';

export type { Redis } from 'ioredis';

/**
 * `worker`: blocking BullMQ connections; commands wait through reconnects (`maxRetriesPerRequest: null`,
 * as BullMQ requires). `producer`: the CLI and anything that enqueues; commands fail at once while
 * Redis is down (`enableOfflineQueue: false`) so a user gets an error instead of a hang.
 */
export type RedisRole = 'worker' | 'producer';

export function createRedisConnection(url: string, role: RedisRole, extra: RedisOptions = {}): Redis {
  const base: RedisOptions =
    role === 'worker'
      ? { maxRetriesPerRequest: null, enableReadyCheck: true }
      : {
          maxRetriesPerRequest: 1,
          enableOfflineQueue: false,
          connectTimeout: 5_000,
          // Keep reconnecting in the background, but commands issued while down fail fast.
          retryStrategy: (times: number) => Math.min(times * 200, 2_000),
        };
  const options: RedisOptions = Object.assign({}, base, { lazyConnect: true }, extra);
  const redis = new Redis(url, options as never);
  // Connection errors surface through commands and `waitForRedis`; an unhandled 'error' event
  // would otherwise crash the process.
  redis.on('error', () => undefined);
  return redis;
}

/** The URL with its password hidden, for messages and logs. */
export function redactRedisUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable REDIS_URL)';
  }
}

/**
 * Connects and PINGs within `timeoutMs`, or throws REDIS_UNAVAILABLE with a message that says what to do.
 */
export async function waitForRedis(redis: Redis, url: string, timeoutMs = 5_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    if (redis.status === 'wait') await Promise.race([redis.connect(), timeout]);
    await Promise.race([redis.ping(), timeout]);
  } catch (err) {
    throw unavailable(url, err);
  } finally {
    clearTimeout(timer);
  }
}

const unavailable = (url: string, err: unknown) =>
  new RedisUnsafeError(
    'REDIS_UNAVAILABLE',
    `cannot reach Redis at ${redactRedisUrl(url)} (${(err as Error).message}). ` +
      'Start Redis (for example `redis-server --appendonly yes --maxmemory-policy noeviction`) or point REDIS_URL at a running one.',
    { cause: err },
  );

/**
 * For a process that runs for hours (a worker, the sink): a Redis that is down or still loading its
 * files when the process starts (a restart, containers started in any order) is waited for, up to
 * `waitMs` (ENVFLEET_REDIS_STARTUP_WAIT_MS), trying again every `everyMs`; `onWaiting` is told once.
 * Then REDIS_UNAVAILABLE, as for a command.
 */
export async function waitForRedisToStart(redis: Redis, url: string, waitMs: number, onWaiting?: (reason: string) => void, everyMs = 500): Promise<void> {
  const deadline = Date.now() + waitMs;
  let told = false;
  for (;;) {
    try {
      return await waitForRedis(redis, url, Math.max(1, Math.min(5_000, deadline - Date.now())));
    } catch (err) {
      if (Date.now() + everyMs >= deadline) throw err;
      if (!told) onWaiting?.((err as Error).message);
      told = true;
      await new Promise(resolve => setTimeout(resolve, everyMs));
    }
  }
}
