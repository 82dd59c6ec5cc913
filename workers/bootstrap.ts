import { DelayedError, Queue, RateLimitError, UnrecoverableError, Worker, type ConnectionOptions, type Job } from 'bullmq';
import { setMaxListeners } from 'node:events';
import { hostname } from 'node:os';
import type { z } from 'zod';
import type { AppConfig } from '../config/index.js';
import type { QueueDefinition } from '../queues/define-queue.js';
import { RunCancelledError, castToError, classifyError, type ErrorCode } from '../src/errors.js';
import type { Logger } from '../src/logger.js';
import type { RunControl } from '../src/runs/control.js';
import type { MetricsRecorder } from '../src/runs/metrics.js';

export interface ProcessorContext {
  readonly job: Job;
  readonly signal: AbortSignal;
  readonly logger: Logger;
}

export type JobHandler<D extends z.ZodType, R extends z.ZodType> = (data: z.infer<D>, ctx: ProcessorContext) => Promise<z.infer<R>>;

export interface QueueWorker {
  readonly name: string;
  readonly worker: Worker;
  readonly queue: Queue;
  /** Marks the worker as shutting down: aborted jobs go back to the queue instead of failing. */
  beginShutdown(): void;
}

/** How a job ended for good: completed, or failed with no retry left (with the code that ended it). */
export type JobOutcome = { readonly status: 'completed' } | { readonly status: 'failed'; readonly code: ErrorCode; readonly message: string };

/** Called once per job when it is finished for good. */
export type SettledHook = (data: unknown, jobId: string, outcome: JobOutcome) => Promise<void>;

export interface WorkerSettings {
  readonly config: Pick<AppConfig, 'worker' | 'jobs' | 'redis'>;
  readonly connection: ConnectionOptions;
  readonly logger: Logger;
  readonly concurrency: number;
  readonly onSettled?: SettledHook;
  /** Makes the queue honour run pause / cancel and budget pauses (jobs whose data has a runId). */
  readonly runControl?: RunControl;
  /** Records job durations (the dashboard's /metrics). */
  readonly metrics?: MetricsRecorder;
}

/** How long a job of a paused run waits before it looks again. */
const PAUSED_RECHECK_MS = 2_000;

/** A failed job's `failedReason`: its code, then the message. */
const failedReason = (code: ErrorCode, message: string) => `[${code}] ${message}`;

/**
 * The one way a worker is made. Every worker of the fleet gets the same lock and stalled-job
 * settings (they must match across machines), an error listener, data validation, a child
 * logger per job, and the single translation from `classifyError` to BullMQ:
 * give up → UnrecoverableError; rate limit → the whole queue waits, the attempt is kept;
 * retry → rethrown for BullMQ's exponential backoff.
 */
export function startQueueWorker<D extends z.ZodType, R extends z.ZodType>(def: QueueDefinition<D, R>, handler: JobHandler<D, R>, settings: WorkerSettings): QueueWorker {
  const { config, connection } = settings;
  const log = settings.logger.child({ queue: def.name });
  const queue = new Queue(def.name, { connection, prefix: config.redis.prefix, defaultJobOptions: def.jobOptions(config.jobs), streams: { events: { maxLen: 2_000 } } });
  queue.on('error', err => log.error({ err }, 'queue connection error'));
  let shuttingDown = false;
  /**
   * Jobs settled in this process (the processor settles a job before BullMQ records its end, so a
   * crash in between cannot leave it unsettled; the worker events settle what never reached the
   * processor, e.g. a job that stalled too often). Settling is idempotent; this only avoids doing it twice.
   */
  const settled = new Set<string>();
  const settleOnce = async (job: Job, outcome: JobOutcome) => {
    const key = `${job.id ?? ''}:${outcome.status}:${job.attemptsStarted}`;
    if (settled.has(key)) return;
    settled.add(key);
    if (settled.size > 10_000) settled.delete(settled.values().next().value!);
    await settings.onSettled?.(job.data, job.id ?? '', outcome);
  };
  /** Ends the job for good with `code`: settled first, then failed without a retry. */
  const giveUp = async (job: Job, code: ErrorCode, message: string): Promise<never> => {
    await settleOnce(job, { status: 'failed', code, message });
    throw new UnrecoverableError(failedReason(code, message));
  };

  const worker = new Worker(
    def.name,
    async (job: Job, token?: string, signal?: AbortSignal) => {
      const jobLog = log.child({ jobId: job.id, attempt: job.attemptsMade + 1 });
      const abort = signal ?? new AbortController().signal;
      // One job makes many model calls with its signal; each adds a listener while in flight.
      setMaxListeners(1_000, abort);
      const runId = (job.data as { runId?: unknown } | null)?.runId;
      const control = typeof runId === 'string' ? settings.runControl : undefined;
      const wait = async (why: string) => {
        jobLog.info({ runId, why }, 'run paused; the job waits');
        await job.moveToDelayed(Date.now() + PAUSED_RECHECK_MS, token);
        throw new DelayedError();
      };
      if (control) {
        const state = await control.get(runId as string);
        if (state.state === 'cancelled') {
          const err = new RunCancelledError(runId as string, state.reason);
          return giveUp(job, err.code, err.message);
        }
        if (state.state === 'paused' && token) await wait(state.reason ?? 'paused');
      }
      try {
        const data = def.parseData(job.data);
        const result = def.parseResult(await handler(data, { job, signal: abort, logger: jobLog }));
        await settleOnce(job, { status: 'completed' });
        return result;
      } catch (raw) {
        const err = castToError(raw);
        if (shuttingDown && abort.aborted && token) {
          // Cut short by shutdown: back to the queue now, no attempt used.
          jobLog.warn('job interrupted by shutdown; returned to its queue');
          await job.moveToDelayed(Date.now(), token);
          throw new DelayedError();
        }
        const verdict = classifyError(err);
        if (verdict.action === 'pause-run' && control && token) {
          // Reached a budget: the run pauses; this job (and every other of the run) waits for resume.
          await control.pause(runId as string, `budget reached: ${err.message}`);
          jobLog.warn({ runId, code: verdict.code }, 'budget reached; the run is paused');
          await wait('budget');
        }
        if (verdict.action === 'rate-limit') {
          const delay = verdict.delayMs ?? 5_000;
          jobLog.warn({ code: verdict.code, delayMs: delay }, 'rate limited; the queue waits');
          await queue.rateLimit(delay);
          throw new RateLimitError();
        }
        if (verdict.action === 'give-up' || verdict.action === 'pause-run') {
          jobLog.error({ err, code: verdict.code }, 'job failed permanently');
          return giveUp(job, verdict.code, err.message);
        }
        if (job.attemptsMade + 1 >= (job.opts.attempts ?? 1)) await settleOnce(job, { status: 'failed', code: verdict.code, message: err.message });
        jobLog.warn({ err, code: verdict.code }, 'job failed; it will be retried if attempts remain');
        const retryable = new Error(failedReason(verdict.code, err.message));
        if (err.stack) retryable.stack = err.stack;
        throw retryable;
      }
    },
    {
      connection,
      prefix: config.redis.prefix,
      // Recorded on each job it takes (job.processedBy), so a run shows which machines did what.
      name: `${hostname()}:${process.pid}`,
      concurrency: settings.concurrency,
      lockDuration: config.worker.lockDurationMs,
      stalledInterval: config.worker.stalledIntervalMs,
      // A job interrupted by a crash (not by a graceful shutdown) may stall twice before it fails.
      maxStalledCount: 2,
      // Rate-limited starts do not use attempts; this caps a job that is rate limited forever.
      maxStartedAttempts: Math.max(100, config.jobs.attempts * 20),
      // Must be set for manual rate limiting (queue.rateLimit) to be honoured; it never binds by itself.
      limiter: { max: 1_000_000, duration: 1_000 },
      autorun: true,
    },
  );
  worker.on('error', err => log.error({ err }, 'worker error'));
  const settle = (job: Job, outcome: JobOutcome) => {
    if (job.processedOn && job.finishedOn) settings.metrics?.observe('job', { queue: def.name, status: outcome.status }, (job.finishedOn - job.processedOn) / 1000);
    settleOnce(job, outcome).catch((err: unknown) => log.error({ err, jobId: job.id }, 'settling the job failed'));
  };
  worker.on('completed', job => settle(job, { status: 'completed' }));
  worker.on('failed', (job, err) => {
    if (!job) return;
    // 'failed' fires on every failed attempt; only a job that is now in the failed set is final.
    job.getState().then(
      state => {
        if (state !== 'failed') return;
        log.error({ jobId: job.id, reason: err.message }, 'job failed');
        // The processor settled what it failed itself; what reaches only this event failed in BullMQ
        // before the processor ran (it stalled, or started too often).
        settle(job, { status: 'failed', code: 'JOB_FAILED', message: err.message });
      },
      (e: unknown) => log.warn({ err: e }, 'could not read the state of a failed job'),
    );
  });
  return {
    name: def.name,
    worker,
    queue,
    beginShutdown() {
      shuttingDown = true;
    },
  };
}
