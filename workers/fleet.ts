import type { AppConfig } from '../config/index.js';
import { createModelGateway, type ModelGateway } from '../src/llm/gateway.js';
import type { Ledger } from '../src/llm/ports.js';
import { createRedisResponseCache } from '../src/llm/redis-cache.js';
import { createRedisLedger } from '../src/llm/redis-ledger.js';
import { createRedisLimiter } from '../src/llm/redis-limiter.js';
import type { Logger } from '../src/logger.js';
import { createRedisConnection, waitForRedisToStart, type Redis } from '../src/redis/connection.js';
import { createRedisTrajectoryStream, type TrajectoryStream } from '../src/rollouts/stream.js';
import { createRedisRunControl, type RunControl } from '../src/runs/control.js';
import { createRedisMetrics, type MetricsRecorder } from '../src/runs/metrics.js';
import { createRedisRunStore, type RunStore } from '../src/runs/store.js';
import { createLanguageRouter } from '../src/sandbox/language-router.js';
import { retryWhenFull } from '../src/sandbox/retry-when-full.js';
import { createPythonSandboxRunner } from '../src/sandbox/python/python-runner.js';
import type { SandboxRunner } from '../src/sandbox/runner.js';
import { startParkedJobsKeeper } from './parked-jobs.js';
import { SANDBOX_THREAD_FILE, createSandboxPool } from './sandbox-pool.js';

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
  /**
   * The sandbox of this process: the piscina pool (QuickJS) for JavaScript environments and checks, the
   * Python runtime (Pyodide in a child process, forked on the first Python environment) for Python ones.
   */
  readonly sandbox: SandboxRunner;
  readonly store: RunStore;
  readonly stream: TrajectoryStream;
  readonly runControl: RunControl;
  readonly metrics: MetricsRecorder;
  close(): Promise<void>;
}

export async function createFleetContext(config: AppConfig, logger: Logger): Promise<FleetContext> {
  // The shared non-blocking connection: with hundreds of episodes in flight, the commands issued in one
  // tick go out in one write (auto-pipelining) instead of a socket write each.
  const redis = createRedisConnection(config.redis, 'worker', { enableAutoPipelining: true });
  await waitForRedisToStart(redis, config.redis, config.redis.startupWaitMs, reason =>
    logger.warn({ reason, waitMs: config.redis.startupWaitMs }, 'Redis does not answer yet; waiting for it (ENVFLEET_REDIS_STARTUP_WAIT_MS)'),
  );
  const workerConnection = createRedisConnection(config.redis, 'worker');
  // Pub/sub only: hears other processes free endpoint slots.
  const limiterSubscriber = createRedisConnection(config.redis, 'worker');
  const prefix = config.redis.prefix;
  const ledger = createRedisLedger(redis, prefix);
  const runControl = createRedisRunControl(redis, prefix);
  const metrics = createRedisMetrics(redis, prefix);
  const gateway = createModelGateway({
    // A run without budgets of its own gets this worker's configured ones stored as its own (keepBudgets), so the
    // budget that applies is the one status, the dashboard and envfleet budget show.
    gate: async runId => {
      const gate = await runControl.gate(runId);
      if (gate.budgets || (config.budgets.usd <= 0 && config.budgets.tokens <= 0)) return gate;
      // (keepBudgets writes nothing for a run deleted while a job of it ran)
      return { ...gate, budgets: await runControl.keepBudgets(runId, { ...config.budgets, byStage: {} }) };
    },
    observe: (stage, seconds, ok) => metrics.observe('model_request', { stage, outcome: ok ? 'ok' : 'error' }, seconds),
    config,
    cache: createRedisResponseCache(redis, prefix),
    limiter: createRedisLimiter(redis, prefix, { subscriber: limiterSubscriber }),
    ledger,
    logger: logger.child({ component: 'gateway' }),
  });
  const pool = createSandboxPool(config, logger.child({ component: 'sandbox' }), SANDBOX_THREAD_FILE);
  try {
    // A pool whose threads cannot start fails the process now, not each job later.
    await pool.started();
  } catch (err) {
    await pool.close().catch(() => undefined);
    await Promise.allSettled([redis.quit(), workerConnection.quit(), limiterSubscriber.quit()]);
    throw err;
  }
  const sandbox = retryWhenFull(
    createLanguageRouter({
      js: pool,
      python: createPythonSandboxRunner({ ...config.python, logger: logger.child({ component: 'python-sandbox' }) }),
    }),
  );
  const store = createRedisRunStore(redis, prefix);
  // Brings back the parked jobs of paused runs once they resume (workers/parked-jobs.ts).
  const parkedJobs = startParkedJobsKeeper(runControl, { connection: redis, prefix }, config.worker.pausedRecheckMs, logger.child({ component: 'parked-jobs' }));
  return {
    config,
    logger,
    sandbox,
    store,
    stream: createRedisTrajectoryStream(redis, prefix),
    runControl,
    metrics,
    workerConnection,
    redis,
    gateway,
    ledger,
    async close() {
      await parkedJobs.stop();
      await sandbox.close();
      // Observations still gathered in this process (src/runs/metrics.ts writes them every 250 ms).
      await metrics.flush();
      await Promise.allSettled([redis.quit(), workerConnection.quit(), limiterSubscriber.quit()]);
    },
  };
}
