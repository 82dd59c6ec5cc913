import { loadConfig } from '../config/index.js';
import { createLogger } from '../src/logger.js';
import { startWorkerProcess } from '../workers/main.js';
import { onTerminationSignals } from '../workers/shutdown.js';

/** `envfleet worker`: consumes the chosen stages' queues until SIGTERM/SIGINT. */
export async function workerCommand(opts: { queues?: string; concurrency?: number }): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config);
  const running = await startWorkerProcess(config, logger, {
    ...(opts.queues ? { queues: opts.queues.split(',').map(q => q.trim()).filter(Boolean) } : {}),
    ...(opts.concurrency ? { concurrency: opts.concurrency } : {}),
  });
  onTerminationSignals(() => running.stop(), logger);
}
