import { loadConfig } from '../config/index.js';
import { createLogger } from '../src/logger.js';
import { startWorkerProcess } from '../workers/main.js';
import { onTerminationSignals } from '../workers/shutdown.js';

/** `envfleet worker`: consumes the chosen stages' queues until SIGTERM/SIGINT. */
export async function workerCommand(opts: { queues?: string; concurrency?: number }): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config);
  const options = {
    ...(opts.queues ? { queues: opts.queues.split(',').map(q => q.trim()).filter(Boolean) } : {}),
    ...(opts.concurrency ? { concurrency: opts.concurrency } : {}),
  };
  // Redis that goes away while the worker starts (a restart) is waited for as when it is down at start.
  const deadline = Date.now() + config.redis.startupWaitMs;
  for (;;) {
    try {
      // Each start waits for Redis only as long as is left of the one wait (it waited the whole of it each time).
      const left = Math.max(1, deadline - Date.now());
      const running = await startWorkerProcess({ ...config, redis: { ...config.redis, startupWaitMs: left } }, logger, options);
      onTerminationSignals(() => running.stop(), logger);
      return;
    } catch (err) {
      if (!lostRedis(err) || Date.now() + 1_000 >= deadline) throw err;
      logger.warn({ err }, 'Redis went away while the worker was starting; starting again (ENVFLEET_REDIS_STARTUP_WAIT_MS)');
      await new Promise(resolve => setTimeout(resolve, 1_000));
    }
  }
}

/** A connection that closed or was refused (not a Redis that answers but refuses envfleet: that is not waited for). */
function lostRedis(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  return e?.code === 'REDIS_UNAVAILABLE' || e?.code === 'ECONNREFUSED' || e?.code === 'ECONNRESET' || /Connection is closed|ECONNREFUSED|ECONNRESET/.test(typeof e?.message === 'string' ? e.message : '');
}
