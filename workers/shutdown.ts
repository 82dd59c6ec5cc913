import type { Logger } from '../src/logger.js';
import type { QueueWorker } from './bootstrap.js';

export interface ShutdownDeps {
  readonly workers: readonly QueueWorker[];
  /** Closed after the workers, in order (pool, queues, connections). */
  readonly closers: readonly { readonly name: string; close(): Promise<unknown> }[];
  readonly timeoutMs: number;
  readonly logger: Logger;
}

/**
 * Graceful stop: stop fetching; let in-flight jobs finish within the deadline; past it, abort them
 * (an aborted job goes back to its queue with its attempt kept) and, if one still does not stop,
 * close hard — its lock then expires and the stalled-job check hands it to another worker.
 * Then close the pool and connections. Resolves when everything is closed.
 */
export async function shutdownGracefully(deps: ShutdownDeps): Promise<void> {
  const { logger } = deps;
  const closing = deps.workers.map(async w => {
    w.beginShutdown();
    const finished = w.worker.close();
    const inTime = await raceDeadline(finished, deps.timeoutMs);
    if (inTime) return;
    logger.warn({ queue: w.name }, 'in-flight jobs did not finish before the shutdown deadline; aborting them');
    w.worker.cancelAllJobs('shutdown');
    if (await raceDeadline(finished, 5_000)) return;
    // (a stranger saw every such job come back to its queue as it stopped, 17 s later, none as stalled)
    logger.warn({ queue: w.name }, 'jobs did not stop within 5 s of the abort; closing without waiting for them: each goes back to its queue as it stops, or is recovered as stalled if this process is killed first');
    await w.worker.close(true);
  });
  await Promise.all(closing);
  for (const w of deps.workers) await w.queue.close().catch(err => logger.warn({ err }, 'queue close failed'));
  for (const closer of deps.closers) {
    await closer.close().catch(err => logger.warn({ err, what: closer.name }, 'close failed'));
  }
}

async function raceDeadline(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<false>(resolve => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true as const), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** What a process says as it stops (onTerminationSignals): the worker's words unless told others. */
export interface StopWords {
  /** At the signal (a function: it may say what is open then). */
  readonly stopping: () => string;
  readonly stopped: string;
  readonly failed: string;
}
const WORKER_WORDS: StopWords = { stopping: () => 'shutting down: no new jobs, waiting for in-flight ones', stopped: 'shutdown complete', failed: 'shutdown failed' };

/** Installs SIGTERM/SIGINT handlers that run `stop` once, then exit 0 (a second signal exits at once). */
export function onTerminationSignals(stop: () => Promise<void>, logger: Logger, words: StopWords = WORKER_WORDS): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, words.stopping());
    stop().then(
      () => {
        logger.info(words.stopped);
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, words.failed);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}
