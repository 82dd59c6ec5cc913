import type { AppConfig } from '../config/index.js';
import { createModelGateway, type ModelGateway } from '../src/llm/gateway.js';
import type { EndpointLimiter, Ledger } from '../src/llm/ports.js';
import { createRedisResponseCache } from '../src/llm/redis-cache.js';
import { createRedisLedger } from '../src/llm/redis-ledger.js';
import { createRedisLimiter } from '../src/llm/redis-limiter.js';
import type { Logger } from '../src/logger.js';
import { createRedisConnection, waitForRedis, type Redis } from '../src/redis/connection.js';
import type { SandboxRunner } from '../src/sandbox/runner.js';
import { createRedisArtifactStore, type ArtifactStore } from '../src/store/artifact-store.js';
import { createSandboxPool } from './sandbox-pool.js';
import { createRunEnqueuer, type RunEnqueuer } from '../queues/run-enqueuer.js';
import { createRedisSynthesisStore, type SynthesisStore } from '../src/synthesis/store.js';
import { createRedisTrajectoryStream, type TrajectoryStream } from '../src/rollouts/stream.js';
import { createRedisRunControl, type RunControl } from '../src/runs/control.js';
import { createRedisMetrics, type MetricsRecorder } from '../src/runs/metrics.js';

/** Everything a worker process shares between its queues, built once from the configuration. */
export interface FleetContext {
  readonly config: AppConfig;
  readonly logger: Logger;
  /** For BullMQ workers (blocking commands; waits through reconnects). */
  readonly workerConnection: Redis;
  /** For stores, the gateway's cache/limits/ledger, and enqueueing (fails fast). */
  readonly redis: Redis;
  readonly gateway: ModelGateway;
  readonly ledger: Ledger;
  readonly artifacts: ArtifactStore;
  /** The sandbox pool of this process (piscina threads running QuickJS). */
  readonly sandbox: SandboxRunner;
  readonly store: SynthesisStore;
  readonly enqueuer: RunEnqueuer;
  readonly stream: TrajectoryStream;
  readonly runControl: RunControl;
  readonly metrics: MetricsRecorder;
  close(): Promise<void>;
}

/**
 * Instruments a context's model path without rebuilding it (benchmarks time limiter waits this way):
 * each hook receives the real limiter or gateway and returns what the context uses instead.
 */
export interface FleetHooks {
  readonly wrapLimiter?: (limiter: EndpointLimiter) => EndpointLimiter;
  readonly wrapGateway?: (gateway: ModelGateway) => ModelGateway;
}

export async function createFleetContext(config: AppConfig, logger: Logger, hooks: FleetHooks = {}): Promise<FleetContext> {
  const redis = createRedisConnection(config.redis.url, 'worker');
  await waitForRedis(redis, config.redis.url);
  const workerConnection = createRedisConnection(config.redis.url, 'worker');
  // Pub/sub only: hears other processes free endpoint slots.
  const limiterSubscriber = createRedisConnection(config.redis.url, 'worker');
  const prefix = config.redis.prefix;
  const ledger = createRedisLedger(redis, prefix);
  const runControl = createRedisRunControl(redis, prefix);
  const metrics = createRedisMetrics(redis, prefix);
  const limiter = createRedisLimiter(redis, prefix, { subscriber: limiterSubscriber });
  const baseGateway = createModelGateway({
    budgets: runId => runControl.budgets(runId),
    observe: (stage, seconds, ok) => metrics.observe('model_request', { stage, outcome: ok ? 'ok' : 'error' }, seconds),
    config,
    cache: createRedisResponseCache(redis, prefix),
    limiter: hooks.wrapLimiter ? hooks.wrapLimiter(limiter) : limiter,
    ledger,
    logger: logger.child({ component: 'gateway' }),
  });
  const gateway = hooks.wrapGateway ? hooks.wrapGateway(baseGateway) : baseGateway;
  const sandbox = createSandboxPool(config, logger.child({ component: 'sandbox' }));
  const store = createRedisSynthesisStore(redis, prefix);
  const enqueuer = createRunEnqueuer(redis, { prefix, jobs: config.jobs, store });
  return {
    config,
    logger,
    sandbox,
    store,
    enqueuer,
    stream: createRedisTrajectoryStream(redis, prefix),
    runControl,
    metrics,
    workerConnection,
    redis,
    gateway,
    ledger,
    artifacts: createRedisArtifactStore(redis, prefix),
    async close() {
      await enqueuer.close();
      await sandbox.close();
      await Promise.allSettled([redis.quit(), workerConnection.quit(), limiterSubscriber.quit()]);
    },
  };
}
