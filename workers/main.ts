import type { AppConfig } from '../config/index.js';
import { assertRedisSafeForWorkers } from '../src/redis/guard.js';
import type { Logger } from '../src/logger.js';
import type { QueueWorker } from './bootstrap.js';
import { createFleetContext, type FleetContext, type FleetHooks } from './fleet.js';
import { resolveQueueNames, startWorkers } from './registry.js';
import { shutdownGracefully } from './shutdown.js';

export interface RunningWorker {
  readonly ctx: FleetContext;
  readonly workers: readonly QueueWorker[];
  /** Graceful stop (see shutdownGracefully). */
  stop(): Promise<void>;
}

/**
 * Starts a worker process's queues: connects, refuses an unsafe Redis, starts one BullMQ worker per
 * queue. The caller installs the signal handlers (the CLI) or calls `stop` (tests, the demo).
 */
export async function startWorkerProcess(
  config: AppConfig,
  logger: Logger,
  options: { queues?: readonly string[]; concurrency?: number; hooks?: FleetHooks } = {},
): Promise<RunningWorker> {
  const queueNames = resolveQueueNames(options.queues ?? config.worker.queues);
  const ctx = await createFleetContext(config, logger, options.hooks);
  try {
    const verdict = await assertRedisSafeForWorkers(ctx.redis, { requirePersistence: config.redis.requirePersistence });
    for (const warning of verdict.warnings) logger.warn(warning);
  } catch (err) {
    await ctx.close();
    throw err;
  }
  const workers = startWorkers(ctx, queueNames, options.concurrency);
  await Promise.all(workers.map(w => w.worker.waitUntilReady()));
  logger.info({ queues: queueNames, concurrency: options.concurrency ?? config.worker.concurrency }, 'worker started');
  return {
    ctx,
    workers,
    stop: () =>
      shutdownGracefully({
        workers,
        closers: [{ name: 'redis', close: () => ctx.close() }],
        timeoutMs: config.worker.shutdownTimeoutMs,
        logger,
      }),
  };
}
