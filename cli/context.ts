import { loadConfig, type AppConfig } from '../config/index.js';
import type { QueuesAt } from '../queues/run-jobs.js';
import { RequestError } from '../src/errors.js';
import { createRedisLedger } from '../src/llm/redis-ledger.js';
import type { Ledger } from '../src/llm/ports.js';
import { createRedisConnection, waitForRedis, type Redis } from '../src/redis/connection.js';
import { createRedisRunControl, type RunControl } from '../src/runs/control.js';
import { checkRunName } from '../src/runs/ids.js';
import { createRedisRunStore, type RunStore } from '../src/runs/store.js';

/** What a command that reads or changes runs works with, on one producer connection (fails fast when Redis is down). */
export interface CommandContext {
  readonly config: AppConfig;
  readonly redis: Redis;
  readonly at: QueuesAt;
  readonly store: RunStore;
  readonly control: RunControl;
  readonly ledger: Ledger;
}

/** Loads the configuration, connects, runs `fn`, disconnects. */
export async function withRuns<T>(fn: (c: CommandContext) => Promise<T>, config: AppConfig = loadConfig()): Promise<T> {
  const redis = createRedisConnection(config.redis, 'producer');
  try {
    await waitForRedis(redis, config.redis);
    const prefix = config.redis.prefix;
    return await fn({ config, redis, at: { connection: redis, prefix }, store: createRedisRunStore(redis, prefix), control: createRedisRunControl(redis, prefix), ledger: createRedisLedger(redis, prefix) });
  } finally {
    redis.disconnect();
  }
}

/** Fails unless the run exists, with where to look. */
export async function requireRun(store: RunStore, runId: string): Promise<void> {
  // A run of the store goes by its name, whatever the rules for new names were when it was made; a name no run has,
  // and none can have, is said to be such a name, not "does not exist".
  if (await store.getRun(runId)) return;
  checkRunName(runId);
  throw new RequestError(`run "${runId}" does not exist (see envfleet runs; check REDIS_URL and ENVFLEET_REDIS_PREFIX)`);
}
