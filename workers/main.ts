import type { AppConfig } from '../config/index.js';
import { PIPELINE, PIPELINE_STAGES, isPipelineStage, type PipelineStage } from '../queues/pipeline.js';
import { RequestError } from '../src/errors.js';
import type { Logger } from '../src/logger.js';
import { assertRedisSafeForWorkers } from '../src/redis/guard.js';
import type { QueueWorker } from './bootstrap.js';
import { createFleetContext, type FleetContext } from './fleet.js';
import { endEnvfleetItem } from './item-endings.js';
import { PROCESSORS } from './processors.js';
import { shutdownGracefully } from './shutdown.js';
import { startStageWorkers } from './stage-workers.js';
import { createStartPacer } from '../src/rollouts/start-pacer.js';

/**
 * ENVFLEET_ROLLOUT_START_PACING=auto paces a process running at least this many episodes at once: with 1,000 it gained
 * 2-5 points of the Little's-law bound, with 100 nothing, at 2 ms more CPU per episode (docs/benchmarks.md, issue 14).
 */
export const PACING_AUTO_MIN = 256;

export interface RunningWorker {
  readonly ctx: FleetContext;
  readonly workers: readonly QueueWorker[];
  /** Graceful stop (see shutdownGracefully). */
  stop(): Promise<void>;
}

/** Resolves the configured or requested queue list (the stages of queues/pipeline.ts). */
export function resolveQueueNames(requested: readonly string[] | 'all'): PipelineStage[] {
  if (requested === 'all') return [...PIPELINE_STAGES];
  const unknown = requested.filter(q => !isPipelineStage(q));
  if (unknown.length) throw new RequestError(`unknown queue(s) ${unknown.join(', ')} (--queues or ENVFLEET_WORKER_QUEUES); the queues are the pipeline's stages: ${PIPELINE_STAGES.join(', ')}`);
  return requested as PipelineStage[];
}

/**
 * Starts a worker process's queues: connects, refuses an unsafe Redis, starts one BullMQ worker per
 * stage of envfleet's pipeline. The caller installs the signal handlers (the CLI) or calls `stop`
 * (tests, the demo).
 */
export async function startWorkerProcess(config: AppConfig, logger: Logger, options: { queues?: readonly string[]; concurrency?: number } = {}): Promise<RunningWorker> {
  const stages = resolveQueueNames(options.queues ?? config.worker.queues);
  const ctx = await createFleetContext(config, logger);
  try {
    const verdict = await assertRedisSafeForWorkers(ctx.redis, { requirePersistence: config.redis.requirePersistence });
    for (const warning of verdict.warnings) logger.warn(warning);
  } catch (err) {
    await ctx.close();
    throw err;
  }
  // One per process: it paces the episodes this process starts, against the latency its own policy calls see.
  const rollouts = options.concurrency ?? config.worker.rolloutConcurrency;
  const pacing = config.worker.rolloutStartPacing;
  const pacer = pacing === 'on' || (pacing === 'auto' && rollouts >= PACING_AUTO_MIN) ? createStartPacer({ concurrency: rollouts }) : undefined;
  const { workers, enqueuer } = startStageWorkers(ctx, {
    pipeline: PIPELINE,
    processors: PROCESSORS,
    stages,
    deps: job => ({ gateway: ctx.gateway, sandbox: ctx.sandbox, store: ctx.store, stream: ctx.stream, signal: job.signal, logger: job.logger, pacer }),
    endItem: endEnvfleetItem(ctx),
    ...(options.concurrency === undefined ? {} : { concurrency: options.concurrency }),
  });
  try {
    await Promise.all(workers.map(w => w.worker.waitUntilReady()));
  } catch (err) {
    // Redis went away while the workers connected: close what was started; the caller may start again.
    await Promise.all(workers.map(w => w.worker.close(true).catch(() => undefined)));
    await enqueuer.close().catch(() => undefined);
    await ctx.close().catch(() => undefined);
    throw err;
  }
  logger.info({ queues: stages, concurrency: options.concurrency ?? config.worker.concurrency }, 'worker started');
  return {
    ctx,
    workers,
    stop: () =>
      shutdownGracefully({
        workers,
        closers: [
          { name: 'enqueuer', close: () => enqueuer.close() },
          { name: 'redis', close: () => ctx.close() },
        ],
        timeoutMs: config.worker.shutdownTimeoutMs,
        logger,
      }),
  };
}
