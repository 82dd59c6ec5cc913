/**
 * The worker process of bench/synthesis.ts, assembled as `startWorkerProcess` (workers/main.ts)
 * does — createFleetContext, the Redis guard, startWorkers, shutdownGracefully — for the ten
 * synthesis queues only (the only ones the benchmark feeds), with one addition: the model gateway is rebuilt with the same
 * dependencies but a limiter that times each slot acquisition, so the report can separate the
 * wait for a fleet-wide endpoint slot from the rest of a job's non-model time. The stage (and cache
 * salt) of each acquisition comes from an AsyncLocalStorage set by a thin gateway wrapper.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { AppConfig } from '../../config/index.js';
import { createModelGateway, type ModelGateway } from '../../src/llm/gateway.js';
import type { EndpointLimiter } from '../../src/llm/ports.js';
import { createRedisResponseCache } from '../../src/llm/redis-cache.js';
import { createRedisLimiter } from '../../src/llm/redis-limiter.js';
import type { Logger } from '../../src/logger.js';
import { assertRedisSafeForWorkers } from '../../src/redis/guard.js';
import { QUEUE_NAMES } from '../../queues/index.js';
import type { QueueWorker } from '../../workers/bootstrap.js';
import { createFleetContext, type FleetContext } from '../../workers/fleet.js';
import { resolveQueueNames, startWorkers } from '../../workers/registry.js';
import { shutdownGracefully } from '../../workers/shutdown.js';

/** One slot acquisition: how long the request waited for the limiter, and whether it got a slot. */
export interface LimiterWait {
  readonly stage: string | null;
  /** The call's cache salt (the operation name for skeleton.method, `round:step` for probe calls). */
  readonly salt: string | null;
  readonly startMs: number;
  readonly endMs: number;
  /** false: the limiter refused (cool-down after a 429, or the wait would exceed its maximum); the job went back to its queue. */
  readonly granted: boolean;
}

export interface BenchWorker {
  readonly ctx: FleetContext;
  readonly workers: readonly QueueWorker[];
  readonly waits: readonly LimiterWait[];
  stop(): Promise<void>;
}

/** The queues of environment synthesis (the only ones this benchmark feeds). */
export const SYNTHESIS_QUEUES = QUEUE_NAMES.filter(name => /^(mine|skeleton|check)\./.test(name));

export async function startBenchWorker(config: AppConfig, logger: Logger, concurrency: number): Promise<BenchWorker> {
  const base = await createFleetContext(config, logger);
  try {
    await assertRedisSafeForWorkers(base.redis, { requirePersistence: config.redis.requirePersistence });
  } catch (err) {
    await base.close();
    throw err;
  }
  const waits: LimiterWait[] = [];
  const callOf = new AsyncLocalStorage<{ stage: string; salt: string | null }>();
  const redisLimiter = createRedisLimiter(base.redis, config.redis.prefix);
  const limiter: EndpointLimiter = {
    async acquire(endpoint, options) {
      const startMs = Date.now();
      const { stage, salt } = callOf.getStore() ?? { stage: null, salt: null };
      try {
        const lease = await redisLimiter.acquire(endpoint, options);
        waits.push({ stage, salt, startMs, endMs: Date.now(), granted: true });
        return lease;
      } catch (err) {
        waits.push({ stage, salt, startMs, endMs: Date.now(), granted: false });
        throw err;
      }
    },
    coolDown: (endpoint, ms) => redisLimiter.coolDown(endpoint, ms),
  };
  const inner = createModelGateway({
    config,
    cache: createRedisResponseCache(base.redis, config.redis.prefix),
    limiter,
    ledger: base.ledger,
    logger: logger.child({ component: 'gateway' }),
  });
  const within = <T>(c: { stage: string; cacheSalt?: string | undefined }, fn: () => Promise<T>) => callOf.run({ stage: c.stage, salt: c.cacheSalt ?? null }, fn);
  const gateway: ModelGateway = {
    chat: (c, request) => within(c, () => inner.chat(c, request)),
    structured: (c, request) => within(c, () => inner.structured(c, request)),
    embed: (c, inputs) => within(c, () => inner.embed(c, inputs)),
  };
  const ctx: FleetContext = { ...base, gateway, close: () => base.close() };
  let workers: QueueWorker[];
  try {
    workers = startWorkers(ctx, resolveQueueNames(SYNTHESIS_QUEUES), concurrency);
    await Promise.all(workers.map(w => w.worker.waitUntilReady()));
  } catch (err) {
    await base.close();
    throw err;
  }
  return {
    ctx,
    workers,
    waits,
    stop: () =>
      shutdownGracefully({
        workers,
        closers: [{ name: 'redis', close: () => ctx.close() }],
        timeoutMs: config.worker.shutdownTimeoutMs,
        logger,
      }),
  };
}
