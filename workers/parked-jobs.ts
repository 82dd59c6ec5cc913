import { releaseParkedJobs, type QueuesAt } from '../queues/run-jobs.js';
import type { Logger } from '../src/logger.js';
import type { RunControl } from '../src/runs/control.js';

/**
 * One per worker process (the fleet context starts it): brings back the parked jobs of runs that are no longer paused. It hears resumes and cancels on the
 * run-control channel and acts at once; and every `recheckMs`, in case a resume was missed (a
 * message lost in a reconnect, no worker running when the run was resumed), it looks at every run
 * with parked jobs. Neither uses a start: only Redis reads, and a promotion when a run was resumed.
 * It also looks once when it starts, so a worker started after a resume brings that run's jobs back.
 */
export interface ParkedJobsKeeper {
  stop(): Promise<void>;
}

/** A process that hears of a resume waits up to this long (at random) before it brings back what is still parked. */
const HEARD_JITTER_MS = 1_000;

export function startParkedJobsKeeper(control: RunControl, at: QueuesAt, recheckMs: number, log: Logger): ParkedJobsKeeper {
  let stopped = false;
  let sweeping = false;
  // One release per run at a time in this process; a request that comes meanwhile runs it once more.
  const releasing = new Set<string>();
  const again = new Set<string>();

  const release = (runId: string): void => {
    if (stopped) return;
    if (releasing.has(runId)) {
      again.add(runId);
      return;
    }
    releasing.add(runId);
    void (async () => {
      do {
        again.delete(runId);
        if ((await control.get(runId)).state === 'paused') continue;
        const { released, failed, firstError } = await releaseParkedJobs(at, control, runId);
        if (released) log.info({ runId, released }, 'brought back the parked jobs of a run that is no longer paused');
        if (failed) log.warn({ runId, failed, err: firstError }, 'some parked jobs could not be brought back; the recheck tries again');
      } while (again.has(runId) && !stopped);
    })()
      .catch((err: unknown) => log.warn({ err, runId }, 'bringing back parked jobs failed; the recheck tries again'))
      .finally(() => releasing.delete(runId));
  };

  const sweep = async (): Promise<void> => {
    if (sweeping) return;
    sweeping = true;
    try {
      for (const runId of await control.runsWithParkedJobs()) release(runId);
    } catch (err) {
      log.warn({ err }, 'looking for parked jobs to bring back failed; the next recheck tries again');
    } finally {
      sweeping = false;
    }
  };

  // Every worker process hears a resume; the resume command brings the jobs back at once, and
  // processes that come a little later find only what is left (none of them waits for another).
  const heard = (runId: string) => setTimeout(() => release(runId), Math.random() * HEARD_JITTER_MS).unref();
  const unwatch = control.watch(heard).catch((err: unknown) => {
    log.warn({ err }, 'cannot listen for resumed runs; parked jobs come back with the recheck only');
    return undefined;
  });
  const timer = setInterval(() => void sweep(), recheckMs);
  timer.unref();
  void sweep();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      const close = await unwatch;
      await close?.().catch((err: unknown) => log.debug({ err }, 'closing the run-control listener failed'));
    },
  };
}
