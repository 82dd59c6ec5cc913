import { DelayedError, Queue, RateLimitError, UnrecoverableError, Worker, type ConnectionOptions, type Job } from 'bullmq';
import { setMaxListeners } from 'node:events';
import { hostname } from 'node:os';
import type { z } from 'zod';
import type { AppConfig } from '../config/index.js';
import { SANDBOX_FULL_WAITS_FIELD, queuePrefix, type QueueDefinition } from '../queues/define-queue.js';
import { pendingKey } from '../queues/enqueuer.js';
import { releaseParkedJob } from '../queues/run-jobs.js';
import { RequestError, RunCancelledError, budgetStageOf, castToError, classifyError, codeOf, isRedisFull, usesSandboxWaits, type ErrorCode } from '../src/errors.js';
import type { Logger } from '../src/logger.js';
import type { BudgetPause, RunControl } from '../src/runs/control.js';
import type { MetricsRecorder } from '../src/runs/metrics.js';
import { isRedisConnectionError } from '../src/redis/connection-errors.js';
import { nowAndThen, type NowAndThen } from '../src/util/now-and-then.js';

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
  /**
   * Called when a job is parked (its run paused): the job runs nowhere now. A processor's own marks of a job it ran are
   * cleared as it ends, but a job parked before its processor starts (taken again after a worker died with it) left the
   * dead worker's mark.
   */
  readonly onParked?: (data: unknown, jobId: string) => Promise<void>;
  /** Called when a job comes back later for want of sandbox room (SANDBOX_MEMORY_FULL, or an environment lost with its interpreter), no attempt used. */
  readonly onWaited?: (data: unknown, jobId: string, code: ErrorCode) => Promise<void>;
  /** Makes the queue honour run pause / cancel and budget pauses (jobs whose data has a runId). */
  readonly runControl?: RunControl;
  /** Records job durations (the dashboard's /metrics). */
  readonly metrics?: MetricsRecorder;
}

/**
 * How far in the future a parked job is delayed. Resume brings it back (and the workers' recheck,
 * should a resume be missed); the horizon only bounds what a lost parking record could cost: the
 * job then wakes by itself and, if its run is still paused, is parked again. That is one start per
 * horizon, and none for a pause shorter than it. It cannot be "never": BullMQ scores a delayed job
 * by its timestamp × 4096, which must stay an exact double.
 */
const PARK_HORIZON_MS = 30 * 24 * 3_600_000;

/**
 * How many times a job may stall (its worker died holding it, or lost its lock) before it fails with
 * JOB_FAILED. A stall is not evidence against the job: a worker that dies stalls every job it holds,
 * and BullMQ never forgets a job's stalls, so in a fleet whose workers get killed (preempted machines,
 * deploys, a chaos run killing one every few seconds) innocent jobs collected three stalls and their
 * items were lost. The bound is there for a job that kills every worker that runs it; such a job
 * costs at most this many worker restarts.
 */
const MAX_STALLS = 20;
/**
 * The longest a queue waits at once for a rate-limited endpoint (a longer Retry-After pauses the run
 * instead, unless runs never pause for rate limits: ENVFLEET_RATE_LIMIT_PAUSE_MS 0); after it a job asks
 * the limiter again, which costs no model call while the endpoint still cools down.
 */
const MAX_RATE_LIMIT_WAIT_MS = 3_600_000;
/**
 * BullMQ's own stall limit, never reached: envfleet applies MAX_STALLS in the processor instead, so
 * that the item is ended before the job is recorded as failed (settle first, as for every other
 * failure). When BullMQ failed the job, only the 'failed' event of the worker that did so ended the
 * item, and that worker could die first: the item was lost, its pending entry dropped by reconcile.
 */
const BULLMQ_MAX_STALLED = 1_000_000_000;

/** Where a job's waits for a full sandbox thread are counted, in its own hash (queues/define-queue.ts). */
export { SANDBOX_FULL_WAITS_FIELD };

/** A failed job's `failedReason`: its code, then the message. */
const failedReason = (code: ErrorCode, message: string) => `[${code}] ${message}`;

/** Runs this process found gone (RUN_GONE): each is said once, for every queue's worker. */
const runsSaidGone = new Set<string>();

/** How often a worker process says that Redis refuses its writes (maxmemory), or takes them again, and that it does not answer. */
const REDIS_SAID_EVERY_MS = 30_000;
/** How often a queue whose worker stopped taking jobs for a full Redis looks whether Redis has room again. */
const REDIS_FULL_RECHECK_MS = 5_000;
/** This process's words on a full Redis (with the refusals each stands for) and on room again: one line for all its queues. */
const redisFullSaid = { full: nowAndThen(REDIS_SAID_EVERY_MS), room: nowAndThen(REDIS_SAID_EVERY_MS) };
interface Said {
  /**
   * Redis out of reach (restarting, killed): since when (this spell: errors less than a minute apart), the last word on
   * it, and the errors met since. Every queue's worker and queue connection reports each reconnection attempt, ten a
   * second for 17 queues: a stranger's probe counted 565 error lines with stacks for a 30 s restart, and no line saying
   * what was going on.
   */
  readonly redisAway: { since: number; last: number; word: NowAndThen };
  /** Runs whose jobs were seen ending for their cancel (said once each, not as a failure per job). */
  readonly cancelled: Set<string>;
}
/** What a worker process (its workers share its logger) has said once, or now and then. */
const saidBy = new WeakMap<Logger, Said>();
function saidFor(logger: Logger): Said {
  let said = saidBy.get(logger);
  if (!said) saidBy.set(logger, (said = { redisAway: { since: 0, last: 0, word: nowAndThen(REDIS_SAID_EVERY_MS) }, cancelled: new Set() }));
  return said;
}

/** Says (at most every REDIS_SAID_EVERY_MS for the process) that Redis does not answer; true if `err` is that. */
function sayRedisAway(said: Said, log: Logger, err: Error): boolean {
  if (!isRedisConnectionError(err)) return false;
  const redisAwaySaid = said.redisAway;
  const now = Date.now();
  if (now - redisAwaySaid.last > 60_000) redisAwaySaid.since = now;
  redisAwaySaid.last = now;
  const errors = redisAwaySaid.word.take(now);
  if (errors === 0) return true;
  log.warn(
    { code: 'REDIS_UNAVAILABLE', reason: err.message, since: new Date(redisAwaySaid.since).toISOString(), errors },
    'Redis does not answer: the workers reconnect by themselves and take jobs again once it answers (jobs in flight finish, or are taken over from their checkpoints); said again every 30 s while it lasts',
  );
  return true;
}

/**
 * The one way a worker is made. Every worker of the fleet gets the same lock and stalled-job
 * settings (they must match across machines), an error listener, data validation, a child
 * logger per job, and the single translation from `classifyError` to BullMQ:
 * give up → UnrecoverableError; rate limit → the whole queue waits, the attempt is kept;
 * retry → rethrown for BullMQ's exponential backoff; pause the run → the job is parked; wait → the
 * job alone is delayed a moment, the attempt is kept (for a full sandbox thread, SANDBOX_MEMORY_FULL, a
 * growing delay, and at most ENVFLEET_SANDBOX_FULL_WAITS times per job, counted in the job's hash:
 * SANDBOX_FULL_WAITS_FIELD; past them the failure uses attempts).
 *
 * Starts are not a budget here. BullMQ counts a start (`attemptsStarted`, in moveToActive) every
 * time a worker takes a job, also when the job only goes back (rate limited, parked, interrupted by
 * shutdown), and `maxStartedAttempts` fails a job past a number of starts before its processor
 * runs. Counting starts measured nothing useful: a run paused overnight, or a long 429 storm, failed
 * its jobs. So there is no start cap, and what it guarded against is bounded otherwise:
 * - a job of a paused run is parked once (delayed far in the future, recorded with the run) and
 *   brought back by resume: no start and no CPU while it waits, however long (see ParkedJobsKeeper);
 * - a rate-limited job goes back to its queue, and the queue takes nothing while the endpoint cools
 *   down (queue.rateLimit; BullMQ's moveToActive refuses to hand out a job while the limiter key
 *   lives), so a storm costs one start per cool-down, not a hot loop. How long a job may keep being
 *   rate limited is bounded by wall time: past `worker.rateLimitPauseMs` of one unbroken streak its
 *   run pauses (nothing is lost; `envfleet resume` goes on once the endpoint answers again);
 * - a job whose workers keep dying fails once it has stalled more than MAX_STALLS times; errors use attempts.
 */
export function startQueueWorker<D extends z.ZodType, R extends z.ZodType>(def: QueueDefinition<D, R>, handler: JobHandler<D, R>, settings: WorkerSettings): QueueWorker {
  const { config, connection } = settings;
  const log = settings.logger.child({ queue: def.name });
  const said = saidFor(settings.logger);
  const prefix = queuePrefix(config.redis.prefix, def.slotTag ?? def.name, connection);
  const queue = new Queue(def.name, { connection, prefix, defaultJobOptions: def.jobOptions(config.jobs), streams: { events: { maxLen: 2_000 } } });
  queue.on('error', err => {
    if (!sayRedisAway(said, log, err)) log.error({ err }, 'queue connection error');
  });
  let shuttingDown = false;
  /**
   * Jobs settled in this process (the processor settles a job before BullMQ records its end, so a
   * crash in between cannot leave it unsettled, and that includes a job that stalled too often; the
   * worker events settle whatever else BullMQ ends on its own). Settling is idempotent; this only avoids doing it twice.
   * An end is told by the start it ends (`processedOn`, the same Job for the processor and the worker's events): a job
   * retried by a re-submission (its attempts and starts reset) may end again with the same number of starts, and that
   * end must be settled too (its item ended again, the job out of its run's outstanding set).
   */
  const settled = new Set<string>();
  /** Jobs the processor ended because their run is gone; their 'failed' event says nothing more. */
  const gone = new Set<string>();
  const sayRunGone = (runId: string, message: string) => {
    if (runsSaidGone.has(runId)) return;
    runsSaidGone.add(runId);
    if (runsSaidGone.size > 1_000) runsSaidGone.delete(runsSaidGone.values().next().value!);
    log.warn({ code: 'RUN_GONE', runId, reason: message }, 'jobs of a run that is no longer in Redis end without a retry (said once per run)');
  };
  const settleOnce = async (job: Job, outcome: JobOutcome) => {
    const key = `${job.id ?? ''}:${outcome.status}:${job.attemptsStarted}:${job.processedOn ?? ''}`;
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

  // A full Redis, said at most every REDIS_SAID_EVERY_MS for the whole process, whatever meets it: a job's own writes
  // (below, each job) or the worker's moves (onRedisFull).
  let fullCheck: NodeJS.Timeout | null = null;
  const sayFull = (reason: string, still: boolean): void => {
    const refusals = redisFullSaid.full.take();
    if (refusals === 0) return;
    log.error(
      { code: 'REDIS_FULL', reason, refusals },
      still
        ? 'Redis is still full (maxmemory): the workers take no jobs until it has room (jobs wait, no attempt used); raise maxmemory or free room (envfleet runs delete)'
        : 'Redis is full (maxmemory) and refuses writes: jobs wait, no attempt used, and the workers stop taking jobs until it has room; raise maxmemory or free room (envfleet runs delete)',
    );
  };
  const worker = new Worker(
    def.name,
    async (job: Job, token?: string, signal?: AbortSignal) => {
      const jobLog = log.child({ jobId: job.id, attempt: job.attemptsMade + 1 });
      if (job.stalledCounter > MAX_STALLS) {
        return giveUp(job, 'JOB_FAILED', `the job stalled ${job.stalledCounter} times (more than ${MAX_STALLS}): the workers running it kept dying`);
      }
      const abort = signal ?? new AbortController().signal;
      // One job makes many model calls with its signal; each adds a listener while in flight.
      setMaxListeners(1_000, abort);
      const runId = (job.data as { runId?: unknown } | null)?.runId;
      const control = typeof runId === 'string' ? settings.runControl : undefined;
      const key = pendingKey(def.name, job.id ?? '');
      /**
       * Parks the job until its run resumes: recorded first (so a parked job is always recorded),
       * then moved to the delayed set far in the future. A resume that came between the look that
       * decided to park and the move could not bring the job back (it was still active), so the
       * run is looked at once more after the move; if it is no longer paused the job brings itself back.
       */
      const park = async (why: string): Promise<never> => {
        const parking = await control!.park(runId as string, key);
        await job.moveToDelayed(Date.now() + PARK_HORIZON_MS, token);
        await settings.onParked?.(job.data, job.id ?? '').catch((err: unknown) => jobLog.warn({ err }, 'could not clear the running mark of the parked job'));
        try {
          const now = await control!.get(runId as string);
          if (now.state === 'paused') jobLog.info({ runId, why }, 'run paused; the job is parked until it resumes');
          else await releaseParkedJob(queue, control!, runId as string, parking, { owner: true });
        } catch (err) {
          // Parked and recorded: a resume or the workers' recheck brings it back.
          jobLog.warn({ err, runId }, 'could not look at the run again after parking the job');
        }
        throw new DelayedError();
      };
      /** Pauses the run (a cancelled run stays cancelled; the job then finds it so when it looks again). */
      const pauseRun = async (reason: string, budget?: BudgetPause) => {
        try {
          await control!.pause(runId as string, reason, budget);
        } catch (err) {
          if (!(err instanceof RequestError)) throw err;
        }
      };
      /** Ends a rate-limit streak: cheap to skip for a job taken for the first time, which cannot be in one. */
      const endRateLimitStreak = async () => {
        if (!control || job.attemptsStarted <= 1) return;
        await control.clearRateLimited(runId as string, key).catch((err: unknown) => jobLog.warn({ err }, 'could not end the rate-limit streak of the job'));
      };
      if (control) {
        const state = await control.get(runId as string);
        if (state.state === 'cancelled') {
          const err = new RunCancelledError(runId as string, state.reason);
          return giveUp(job, err.code, err.message);
        }
        if (state.state === 'paused' && token) await park(state.reason ?? 'paused');
      }
      try {
        const data = def.parseData(job.data);
        const result = def.parseResult(await handler(data, { job, signal: abort, logger: jobLog }));
        await endRateLimitStreak();
        await settleOnce(job, { status: 'completed' });
        return result;
      } catch (raw) {
        const err = castToError(raw);
        if (codeOf(err) === 'JOB_TAKEN_OVER') {
          // Held back past its lock (stopped, suspended): another worker runs the job now. Nothing is settled or failed
          // here, and BullMQ is told the job was dealt with (it would only fail to move a job whose lock it lost).
          jobLog.info({ code: 'JOB_TAKEN_OVER', reason: err.message }, 'another worker took this job over while this one was held back; it goes on there');
          // Should this worker still hold the lock after all, the job goes back now (not after the lock and a stall);
          // holding none, BullMQ refuses the move, which is the case above.
          if (token) await job.moveToDelayed(Date.now(), token).catch(() => undefined);
          throw new DelayedError();
        }
        if (codeOf(err) === 'RUN_GONE') {
          // Its run is no longer in Redis: nothing is settled (that would write counters of a run that is gone, making
          // keys again in an emptied Redis), no attempt is tried again, and the process says it once per run.
          sayRunGone(String(runId), err.message);
          gone.add(job.id ?? '');
          if (gone.size > 10_000) gone.delete(gone.values().next().value!); // a move BullMQ could not make fires no event
          throw new UnrecoverableError(failedReason('RUN_GONE', err.message));
        }
        if (shuttingDown && abort.aborted && token) {
          // Cut short by shutdown: back to the queue now, no attempt used.
          jobLog.warn('job interrupted by shutdown; returned to its queue');
          await job.moveToDelayed(Date.now(), token);
          throw new DelayedError();
        }
        // Waits for a full sandbox thread (or a Python interpreter another environment took down) are counted per job, so
        // that a thread that never frees cannot hold it for ever.
        const jobKey = job.id === undefined ? null : queue.toKey(job.id);
        const client = usesSandboxWaits(err) && jobKey !== null ? await queue.getBackend().client : null;
        const sandboxFullWaits = client ? Number((await client.hget(jobKey!, SANDBOX_FULL_WAITS_FIELD)) ?? 0) : 0;
        const verdict = classifyError(err, { sandboxFullWaits, maxSandboxFullWaits: jobKey === null ? 0 : config.jobs.sandboxFullWaits, backoffMs: config.jobs.backoffMs });
        if (verdict.code === 'RUN_PAUSED' && control && token) {
          // Its run was paused while it ran: parked at its model call, with the others of the run.
          await park('paused while running');
        }
        if (verdict.action === 'pause-run' && control && token) {
          // Reached a budget, or the endpoint refuses every call of the run: the run pauses; this job is parked
          // with the others of the run until resume.
          const budget = verdict.code === 'BUDGET_EXCEEDED';
          if (budget) await pauseRun(`budget reached: ${err.message}`, { stage: budgetStageOf(err) });
          else await pauseRun(`the model endpoint refused the API key in an episode: ${err.message}; fix the key where the workers read it (then restart them) and resume the run`);
          jobLog.warn({ runId, code: verdict.code }, budget ? 'budget reached; the run is paused' : 'the model endpoint refused the API key in an episode; the run is paused');
          await park(budget ? 'budget' : 'endpoint refused');
        }
        if (verdict.action === 'rate-limit') {
          const asked = verdict.delayMs ?? 5_000;
          const pauseAfter = config.worker.rateLimitPauseMs;
          // A 429, or an endpoint down (MODEL_UNREACHABLE: cannot be reached; MODEL_UNAVAILABLE: reached, serving nothing): the same wait.
          const unreachable = verdict.code === 'MODEL_UNREACHABLE' || verdict.code === 'MODEL_UNAVAILABLE';
          const down = verdict.code === 'MODEL_UNREACHABLE' ? 'cannot be reached' : 'serves nothing (5xx, no answer or a reset to every request)';
          if (control && token && pauseAfter > 0 && asked >= Math.max(pauseAfter, MAX_RATE_LIMIT_WAIT_MS)) {
            // The endpoint asks for a wait (Retry-After) of an hour or more, and no shorter than the streak that would pause
            // the run: waiting it out in the queue would hold the queue that long with nothing said; the run pauses now,
            // saying until when. (Shorter waits are ridden out, and a streak of them pauses the run as below.)
            const until = `${durationText(asked)} (until ${new Date(Date.now() + asked).toISOString()})`;
            await pauseRun(`${unreachable ? `the model endpoint ${down} and the fleet would wait ${until} before trying it again${verdict.code === 'MODEL_UNREACHABLE' ? ' (ENVFLEET_RATE_LIMIT_FALLBACK_MS)' : ''}` : `the model endpoint asks to wait ${until}`}, at least ENVFLEET_RATE_LIMIT_PAUSE_MS ${pauseAfter}: ${err.message}; resume the run after that time`);
            jobLog.warn({ runId, code: verdict.code, delayMs: asked }, 'the endpoint asks for a longer wait than a run waits rate limited; the run is paused');
            await park('rate limited');
          }
          // At least 1 ms: a Retry-After of 0 (or a date already past) would be a wait of 0, which Redis refuses (PX 0), and
          // the job would fail with that error, using an attempt.
          const delay = Math.max(1, Math.min(asked, MAX_RATE_LIMIT_WAIT_MS));
          // Nothing of this queue is taken while the endpoint cools down (no starts meanwhile).
          await queue.rateLimit(delay);
          if (control && token && pauseAfter > 0) {
            const limitedFor = await control.rateLimitedFor(runId as string, key);
            if (limitedFor >= pauseAfter) {
              await pauseRun(`${unreachable ? `the model endpoint ${down}` : 'rate limited'} without a break for ${Math.round(limitedFor / 1000)} s (ENVFLEET_RATE_LIMIT_PAUSE_MS ${pauseAfter}): ${err.message}; resume once the endpoint answers again`);
              jobLog.warn({ runId, code: verdict.code, limitedForMs: limitedFor }, unreachable ? 'the model endpoint down for too long; the run is paused' : 'rate limited for too long; the run is paused');
              await park('rate limited');
            }
          }
          jobLog.warn({ code: verdict.code, delayMs: delay, reason: err.message }, unreachable ? `the model endpoint ${down}; the queue waits` : 'rate limited; the queue waits');
          throw new RateLimitError();
        }
        await endRateLimitStreak();
        if (verdict.action === 'wait' && token) {
          if (client) {
            // Its sandbox thread is full of other work's environments: back later, no attempt used, the wait counted first
            // (a worker that dies before the move leaves the job to the stalled-job path, one wait spent). The job's lock is
            // this worker's, so no other process counts at the same time.
            const waits = sandboxFullWaits + 1;
            await client.hset(jobKey!, { [SANDBOX_FULL_WAITS_FIELD]: waits });
            // (counted for the run's status: the only sign, outside the workers' log, of episodes held back for memory)
            await settings.onWaited?.(job.data, job.id ?? '', verdict.code).catch((e: unknown) => jobLog.warn({ err: e }, 'could not count the wait'));
            jobLog.info(
              { code: verdict.code, delayMs: verdict.delayMs, waits, maxWaits: config.jobs.sandboxFullWaits, reason: err.message },
              verdict.code === 'SANDBOX_MEMORY_FULL'
                ? 'the sandbox that runs its environment (a JavaScript thread or a Python interpreter: the reason says which) is full of other work; the job comes back later, no attempt used'
                : 'its environment was lost with a Python interpreter another environment took down; the job comes back later, no attempt used',
            );
          } else if (verdict.code === 'REDIS_FULL') {
            // Redis refused a write (maxmemory): the operator's to fix; the job is kept, no attempt used. The move back is a
            // write too, and may be refused as well: the job's lock then lapses and the stalled-job path brings it back.
            // Said for the process, not per job (a thousand episodes meet it at once).
            sayFull(err.message, false);
            jobLog.debug({ code: verdict.code, delayMs: verdict.delayMs, reason: err.message }, 'Redis is full: the job comes back later, no attempt used');
          } else {
            // Not its turn yet (other jobs of its run must get somewhere first): back in a moment, no attempt used.
            jobLog.debug({ code: verdict.code, delayMs: verdict.delayMs, reason: err.message }, 'the job waits for others of its run');
          }
          await job.moveToDelayed(Date.now() + (verdict.delayMs ?? 1_000), token);
          throw new DelayedError();
        }
        if (verdict.action === 'give-up' || verdict.action === 'pause-run') {
          // A cancel reaching a running job (at its next model call) is the user's doing, not a failure to look into.
          if (verdict.code === 'RUN_CANCELLED') jobLog.info({ code: verdict.code, reason: err.message }, 'the run was cancelled; the job ends');
          else jobLog.error({ err, code: verdict.code }, 'job failed permanently');
          return giveUp(job, verdict.code, err.message);
        }
        const message =
          !verdict.waitsSpent
            ? err.message
            : `${err.message} (the job had already come back ${verdict.waitsSpent} time${verdict.waitsSpent === 1 ? '' : 's'} for a full sandbox thread or a lost Python interpreter without using an attempt, the most ENVFLEET_SANDBOX_FULL_WAITS=${config.jobs.sandboxFullWaits} allows: ${verdict.code === 'SANDBOX_MEMORY_FULL' ? 'the thread stayed full' : 'interpreters kept being taken down'}, so this used an attempt)`;
        // The last attempt: what is recorded says so (a message that says the job is run again would be wrong there).
        const attempts = job.opts.attempts ?? 1;
        if (job.attemptsMade + 1 >= attempts) await settleOnce(job, { status: 'failed', code: verdict.code, message: `${message} (this was the last of its ${attempts} attempt${attempts === 1 ? '' : 's'}, ENVFLEET_JOB_ATTEMPTS: it is not run again)` });
        jobLog.warn({ err, code: verdict.code, ...(verdict.waitsSpent === undefined ? {} : { sandboxFullWaits: verdict.waitsSpent }) }, 'job failed; it will be retried if attempts remain');
        const retryable = new Error(failedReason(verdict.code, message));
        if (err.stack) retryable.stack = err.stack;
        throw retryable;
      }
    },
    {
      connection,
      prefix,
      // Recorded on each job it takes (job.processedBy), so a run shows which machines did what.
      name: `${hostname()}:${process.pid}`,
      concurrency: settings.concurrency,
      lockDuration: config.worker.lockDurationMs,
      stalledInterval: config.worker.stalledIntervalMs,
      // Stalls are bounded by MAX_STALLS, in the processor (see above).
      maxStalledCount: BULLMQ_MAX_STALLED,
      // No maxStartedAttempts: starts are not a budget (see above).
      // Must be set for manual rate limiting (queue.rateLimit) to be honoured; it never binds by itself.
      limiter: { max: 1_000_000, duration: 1_000 },
      autorun: true,
    },
  );
  // Redis at its maxmemory refuses the worker's own moves (BullMQ's next-job script): its loop would try again at once,
  // and a stranger's probe saw 88,000 'worker error' lines in 25 s (260 MB of log). The queue stops taking jobs instead,
  // and every REDIS_FULL_RECHECK_MS tries a small write of its own (in the queue's slot, under Redis's own accounting):
  // refused, Redis is still full (said at most every REDIS_SAID_EVERY_MS for the whole process); taken, the queue
  // takes jobs again.
  const probeKey = `${queue.qualifiedName}:redis-full-probe`;
  const onRedisFull = (err: Error): void => {
    sayFull(err.message, false);
    if (fullCheck || shuttingDown) return;
    void worker.pause(true).catch(() => undefined);
    fullCheck = setInterval(() => {
      void (async () => {
        const client = (await queue.getBackend().client) as unknown as { set(key: string, value: string, px: 'PX', ms: number): Promise<unknown> }; // ioredis's Redis or Cluster
        try {
          await client.set(probeKey, '1', 'PX', 1_000);
        } catch (probeErr) {
          if (isRedisFull(probeErr)) sayFull((probeErr as Error).message, true);
          return; // still full, or Redis away: looked at again at the next tick
        }
        clearInterval(fullCheck!);
        fullCheck = null;
        if (!shuttingDown && !worker.closing) await worker.resume();
        if (redisFullSaid.room.take() > 0) log.info('Redis takes writes again: the workers take jobs again');
      })().catch((e: unknown) => log.warn({ err: e }, 'could not look whether Redis has room again; looked at again shortly'));
    }, REDIS_FULL_RECHECK_MS);
    fullCheck.unref();
  };
  worker.on('error', err => {
    if (isRedisFull(err)) {
      onRedisFull(err);
      return;
    }
    // A worker held back past ENVFLEET_LOCK_DURATION_MS (stopped, suspended, a long pause) loses its jobs' locks: other
    // workers take them over from their checkpoints. Said once per job, plainly, not as a failure with a stack.
    if (/could not renew lock|Missing lock for job|Lock mismatch/i.test(err.message)) {
      log.warn({ reason: err.message }, 'this worker lost a job\'s lock (it could not renew it for longer than ENVFLEET_LOCK_DURATION_MS: the worker held back, or Redis paused or out of reach; or the job was removed: run delete): another worker takes the job over from its checkpoint if it is still queued (after a Redis restart without persistence it is gone, with its run); steps in flight may be made twice, their model calls sent again');
      return;
    }
    // The job's keys are gone from Redis (its run deleted, or Redis restarted without its data): BullMQ could not record
    // the end of a job this worker was running. Nothing is lost that was not gone already.
    if (/Missing key for job/i.test(err.message)) {
      log.warn({ reason: err.message }, 'a job this worker ran is no longer in Redis (its run was deleted, or Redis restarted without its data), so its end could not be recorded there');
      return;
    }
    if (sayRedisAway(said, log, err)) return;
    log.error({ err }, 'worker error');
  });
  const settle = (job: Job, outcome: JobOutcome) => {
    if (job.processedOn && job.finishedOn) settings.metrics?.observe('job', { queue: def.name, status: outcome.status }, (job.finishedOn - job.processedOn) / 1000);
    settleOnce(job, outcome).catch((err: unknown) => log.error({ err, jobId: job.id }, 'settling the job failed'));
  };
  worker.on('completed', job => settle(job, { status: 'completed' }));
  worker.on('failed', (job, err) => {
    if (!job) return;
    // Its run is gone: said once per run (sayRunGone). (An id left from a move BullMQ could not make is dropped here.)
    if (gone.delete(job.id ?? '') && err.message.startsWith('[RUN_GONE]')) return;
    // 'failed' fires on every failed attempt; only a job that is now in the failed set is final.
    job.getState().then(
      state => {
        if (state !== 'failed') return;
        // Ended by its run's cancel: what the user asked for, said once per run, not as a failure per job.
        if (err.message.startsWith('[RUN_CANCELLED]')) {
          const runId = String((job.data as { runId?: unknown } | null)?.runId);
          if (!said.cancelled.has(runId)) {
            said.cancelled.add(runId);
            log.info({ runId }, 'jobs of a cancelled run end here as they come (RUN_CANCELLED); said once per run');
          }
          log.debug({ jobId: job.id, reason: err.message }, 'job ended: its run was cancelled');
        } else log.error({ jobId: job.id, reason: err.message }, 'job failed');
        // The processor settled what it failed itself (stalls included); what reaches only this event
        // failed in BullMQ before the processor ran, which envfleet's settings leave no way to do.
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
      if (fullCheck) clearInterval(fullCheck);
      fullCheck = null;
    },
  };
}

/** "40 s", "12 min", "3.5 h", "40 days": a wait as a person reads it. */
function durationText(ms: number): string {
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  if (ms < 172_800_000) return `${Math.round(ms / 360_000) / 10} h`;
  return `${Math.round(ms / 86_400_000)} days`;
}
