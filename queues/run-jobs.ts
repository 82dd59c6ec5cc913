import { Queue, type ConnectionOptions } from 'bullmq';
import type { BudgetPause, ParkedJob, RunControl } from '../src/runs/control.js';
import type { RunStore } from '../src/runs/store.js';
import { dropScenarioCancelled } from '../src/scenarios/stages.js';
import { endEnvCancelled } from '../src/synthesis/environments.js';
import { RedisUnsafeError, RunCancelledError, RunGoneError } from '../src/errors.js';
import { describeRedis, isRedisConnectionError, type RedisTarget } from '../src/redis/connection.js';
import { sleep } from '../src/util/sleep.js';
import { queuePrefix } from './define-queue.js';
import { parsePendingKey } from './enqueuer.js';
import { PIPELINE, STAGES, isPipelineStage } from './pipeline.js';

/** Where a run's jobs are: the Redis connection and key prefix their queues use. */
export interface QueuesAt {
  readonly connection: ConnectionOptions;
  readonly prefix: string;
  /** A queue's hash tag on a Redis Cluster (default: as `PIPELINE` says; a queue it does not know, its name). */
  readonly slotTagOf?: (queue: string) => string;
}

/** A Queue of `at` (its keys under the queue's hash tag on a Redis Cluster). */
export function queueAt(at: QueuesAt, name: string): Queue {
  const slotTag = at.slotTagOf?.(name) ?? (PIPELINE.isStage(name) ? PIPELINE.slotTagOf(name) : name);
  return new Queue(name, { connection: at.connection, prefix: queuePrefix(at.prefix, slotTag, at.connection) });
}

/**
 * StatusDeps.workersOf over `at`'s queues: how many workers BullMQ lists for a stage's queue (from Redis's client
 * list; null where Redis refuses CLIENT LIST).
 */
export function workersOfQueues(at: QueuesAt): (stage: string) => Promise<number | null> {
  return async stage => {
    const queue = queueAt(at, stage);
    try {
      return await workersCount(queue);
    } finally {
      await queue.close();
    }
  };
}

/** Whether each stage's queue is paused in BullMQ (for status: a queue paused in the dashboard's queue view stalls every run). */
export function pausedOfQueues(at: QueuesAt): (stage: string) => Promise<boolean> {
  return async stage => {
    const queue = queueAt(at, stage);
    try {
      return await queue.isPaused();
    } finally {
      await queue.close();
    }
  };
}

/**
 * The stages where jobs of the run are outstanding and whose queue is paused in BullMQ (the dashboard's queue view, a
 * Queue.pause), in pipeline order: what holds a running run that envfleet resume cannot release. A queue whose state
 * cannot be read is not named.
 */
export async function pausedQueuesOfRun(at: QueuesAt, store: RunStore, runId: string): Promise<string[]> {
  const pending = await store.pendingByStage(runId);
  const pausedOf = pausedOfQueues(at);
  const stages = PIPELINE.names.filter(stage => (pending[stage] ?? 0) > 0);
  const flags = await Promise.all(stages.map(stage => pausedOf(stage).catch(() => false)));
  return stages.filter((_, i) => flags[i]);
}

/** The line that says which queues paused in BullMQ hold a run, and where to resume them ('' for none). */
export function pausedQueuesText(runId: string, stages: readonly string[]): string {
  if (!stages.length) return '';
  const many = stages.length > 1;
  return (
    `run ${runId}: the queue${many ? 's' : ''} ${stages.join(', ')}, where jobs of the run wait, ${many ? 'are' : 'is'} paused in BullMQ ` +
    `(the dashboard's queue view at /queues, or a Queue.pause): no job there starts until ${many ? 'they are' : 'it is'} resumed there (envfleet resume resumes runs, not queues)`
  );
}

/**
 * Ends the rate limit of every stage's queue (BullMQ's, set by a worker while a model endpoint cools down: it holds every
 * job of the queue, of every run), for `envfleet resume` with the endpoints' cool-downs. The queues that were held, with
 * the milliseconds left.
 */
export async function clearQueueRateLimits(at: QueuesAt): Promise<{ stage: string; leftMs: number }[]> {
  const ended: { stage: string; leftMs: number }[] = [];
  for (const stage of PIPELINE.names) {
    const queue = queueAt(at, stage);
    try {
      const leftMs = await queue.getRateLimitTtl();
      if (leftMs > 0 && (await queue.removeRateLimitKey()) > 0) ended.push({ stage, leftMs });
    } finally {
      await queue.close();
    }
  }
  return ended;
}

/** How many workers BullMQ lists for `queue` (from Redis's client list); null where Redis refuses CLIENT LIST (some managed Redis). */
export async function workersCount(queue: Queue): Promise<number | null> {
  try {
    return await queue.getWorkersCount();
  } catch {
    return null;
  }
}

/** Visits every outstanding job of a run, with a Queue to inspect or change it. */
export async function forEachPendingJob(
  at: QueuesAt,
  store: RunStore,
  runId: string,
  visit: (entry: { key: string; queue: Queue; jobId: string }) => Promise<void>,
): Promise<void> {
  const queues = new Map<string, Queue>();
  try {
    for (const key of await store.pending(runId)) {
      const { queue: name, jobId } = parsePendingKey(key);
      let queue = queues.get(name);
      if (!queue) {
        queue = queueAt(at, name);
        queues.set(name, queue);
      }
      await visit({ key, queue, jobId });
    }
  } finally {
    for (const q of queues.values()) await q.close();
  }
}

/**
 * Forgets outstanding entries whose job has ended (or is gone) without being settled, as happens
 * when a worker dies in the instant between finishing a job and recording it.
 */
export async function reconcilePending(at: QueuesAt, store: RunStore, runId: string, options: { unknownGraceMs?: number } = {}): Promise<number> {
  let fixed = 0;
  const unknown: string[] = [];
  await forEachPendingJob(at, store, runId, async ({ key, queue, jobId }) => {
    const state = await queue.getJobState(jobId);
    if (state === 'completed' || state === 'failed') {
      await store.donePending(runId, key);
      fixed += 1;
    } else if (state === 'unknown') unknown.push(key);
  });
  if (!unknown.length) return fixed;
  // An entry is put in the outstanding set just before its job is added: a job not there yet may be
  // on its way. Only one still missing a moment later is gone (removed, or its add crashed).
  await sleep(options.unknownGraceMs ?? 2_000);
  await forEachPendingJob(at, store, runId, async ({ key, queue, jobId }) => {
    if (!unknown.includes(key) || (await queue.getJobState(jobId)) !== 'unknown') return;
    await store.donePending(runId, key);
    fixed += 1;
  });
  return fixed;
}

export interface RunProgress {
  readonly outstanding: number;
  readonly environments: Record<string, number>;
  readonly scenarios: Record<string, number>;
  /** Set while the run is paused (by envfleet pause, a budget, a long rate-limit spell), with the recorded reason. */
  readonly paused?: { readonly reason: string | null; readonly budget: BudgetPause | null };
  /** Queues where jobs of the run have been waiting with no worker consuming the queue for a while (waitForRun's `idleWorkerMs`). */
  readonly unconsumed?: readonly string[];
  /** Queues where jobs of the run are outstanding and which are paused in BullMQ (pausedQueuesOfRun; needs the queues). */
  readonly pausedQueues?: readonly string[];
  /**
   * Set while jobs of the run have been waiting for the model endpoint for a while (429s, or the endpoint cannot be
   * reached: a wrong port, a server restarting), without a break for `minutes` (whole minutes, so the note is not
   * repeated every poll); the run pauses after ENVFLEET_RATE_LIMIT_PAUSE_MS of it.
   */
  readonly endpointWait?: { readonly jobs: number; readonly minutes: number };
  /** Set while Redis does not answer (a restart): the counts are unknown then (`outstanding` is -1). */
  readonly redisAway?: { readonly reason: string };
}

/** Outstanding jobs and items by status: three counter reads, whatever the size of the run. */
export async function runProgress(store: RunStore, runId: string): Promise<RunProgress> {
  const [outstanding, environments, scenarios] = await Promise.all([store.pendingCount(runId), store.statusCounts(runId, 'env'), store.statusCounts(runId, 'scenario')]);
  return { outstanding, environments, scenarios };
}

/**
 * The queues where jobs of the run wait and no worker consumes the queue (BullMQ lists a queue's
 * workers from Redis's client list; a Redis that refuses CLIENT LIST tells nothing, and nothing is said).
 */
async function queuesWithoutWorkers(at: QueuesAt, store: RunStore, runId: string): Promise<string[]> {
  const pending = await store.pendingByStage(runId);
  const out: string[] = [];
  for (const [name, n] of Object.entries(pending)) {
    if (!n || !PIPELINE.isStage(name)) continue;
    const queue = queueAt(at, name);
    try {
      const counts = await queue.getJobCounts('wait', 'prioritized');
      // CLIENT LIST refused (null): no claim either way.
      if ((counts['wait'] ?? 0) + (counts['prioritized'] ?? 0) > 0 && (await workersCount(queue)) === 0) out.push(name);
    } finally {
      await queue.close();
    }
  }
  return out;
}

/** How long jobs wait for the model endpoint before a waiting command says so (a short 429 spell is normal). */
const ENDPOINT_WAIT_NOTE_MS = 20_000;

export interface WaitOptions {
  readonly signal?: AbortSignal;
  /** The run's queues: outstanding entries are reconciled now and then, and queues no worker consumes are noticed. */
  readonly queues?: QueuesAt;
  /** The run's control: a paused run is reported as paused, with its reason. */
  readonly control?: RunControl;
  /** How long jobs may wait in a queue no worker consumes before it is reported (default 30 s). */
  readonly idleWorkerMs?: number;
  /** How long jobs of the run may wait for the model endpoint (429s, unreachable) before it is reported (default 20 s; needs the control). */
  readonly endpointWaitNoteMs?: number;
  /**
   * How long Redis may not answer (a restart, a failover) before the wait gives up with REDIS_UNAVAILABLE
   * (default 60 s: ENVFLEET_REDIS_STARTUP_WAIT_MS in the commands); meanwhile progress says so (`redisAway`).
   */
  readonly redisAwayMs?: number;
  /** Where Redis is, for the messages (default: not named). */
  readonly redisAt?: string | RedisTarget;
}

/**
 * Waits until the run has no outstanding job, reporting progress when it changes (and reconciling now
 * and then when given the queues). It explains a wait that would otherwise look endless: a paused run
 * (with the control), and jobs waiting in a queue no worker consumes (with the queues).
 *
 * A run is watched for hours, and its Redis may restart meanwhile: a moment without Redis is waited out
 * (reported as `redisAway`, up to `redisAwayMs`), and a run that is no longer there once Redis answers (it
 * restarted without its data) ends the wait with RunGoneError, never as a run with nothing left to do.
 */
export async function waitForRun(store: RunStore, runId: string, report: (p: RunProgress) => void, options: WaitOptions = {}): Promise<RunProgress> {
  let last = '';
  let polls = 0;
  const idleWorkerMs = options.idleWorkerMs ?? 30_000;
  const redisAwayMs = options.redisAwayMs ?? 60_000;
  /** When each queue was first seen with waiting jobs and no worker (unbroken since). */
  const idleSince = new Map<string, number>();
  let unconsumed: string[] = [];
  let pausedQueues: string[] = [];
  let endpointWait: { jobs: number; minutes: number } | null = null;
  /** Since when Redis has not answered (unbroken), and why; null while it answers. */
  let away: { since: number; reason: string } | null = null;
  const poll = async (): Promise<RunProgress> => {
    polls += 1;
    if (options.queues && polls % 20 === 0) await reconcilePending(options.queues, store, runId);
    const counts = await runProgress(store, runId);
    const control = options.control ? await options.control.get(runId) : null;
    const paused = control?.state === 'paused';
    if (options.queues && !paused && counts.outstanding > 0 && (polls === 1 || polls % 10 === 0)) {
      const now = Date.now();
      const idle = new Set(await queuesWithoutWorkers(options.queues, store, runId));
      for (const q of [...idleSince.keys()]) if (!idle.has(q)) idleSince.delete(q);
      for (const q of idle) if (!idleSince.has(q)) idleSince.set(q, now);
      unconsumed = [...idleSince].filter(([, since]) => now - since >= idleWorkerMs).map(([q]) => q);
      pausedQueues = await pausedQueuesOfRun(options.queues, store, runId);
    } else if (paused) {
      idleSince.clear();
      unconsumed = [];
      pausedQueues = [];
    }
    if (options.control && !paused && counts.outstanding > 0 && (polls === 1 || polls % 10 === 0)) {
      const waits = await options.control.endpointWaits(runId);
      endpointWait = waits && waits.longestMs >= (options.endpointWaitNoteMs ?? ENDPOINT_WAIT_NOTE_MS) ? { jobs: waits.jobs, minutes: Math.floor(waits.longestMs / 60_000) } : null;
    } else if (paused) endpointWait = null;
    return {
      ...counts,
      ...(paused ? { paused: { reason: control.reason, budget: control.budget } } : {}),
      ...(unconsumed.length && counts.outstanding > 0 ? { unconsumed: PIPELINE.names.filter(s => unconsumed.includes(s)) } : {}),
      ...(endpointWait && counts.outstanding > 0 ? { endpointWait } : {}),
      ...(pausedQueues.length && counts.outstanding > 0 ? { pausedQueues } : {}),
    };
  };
  for (;;) {
    let progress: RunProgress;
    try {
      progress = await poll();
      // Nothing outstanding, or Redis back after a while away: the run must still be there (a Redis that restarted
      // empty has no outstanding job either).
      if ((progress.outstanding === 0 || away) && !(await store.getRun(runId))) throw new RunGoneError(runId, options.redisAt === undefined ? undefined : describeRedis(options.redisAt), away !== null);
      away = null;
    } catch (err) {
      if (!isRedisConnectionError(err)) throw err;
      const now = Date.now();
      away ??= { since: now, reason: (err as Error).message };
      if (now - away.since >= redisAwayMs) {
        const at = options.redisAt ? ` at ${describeRedis(options.redisAt)}` : '';
        throw new RedisUnsafeError(
          'REDIS_UNAVAILABLE',
          `Redis${at} has not answered for ${Math.round((now - away.since) / 1000)} s while this command waited for run "${runId}" (${away.reason}); it stopped waiting. ` +
            `The run is kept in Redis: once it answers again, envfleet status --run ${runId} shows where it is, and the same command run again waits for it again.`,
          { cause: err },
        );
      }
      progress = { outstanding: -1, environments: {}, scenarios: {}, redisAway: { reason: away.reason } };
    }
    const line = JSON.stringify(progress);
    if (line !== last) report(progress);
    last = line;
    if (progress.outstanding === 0) return progress;
    await sleep(500, options.signal);
  }
}

/**
 * Brings one parked job back: BullMQ's promote moves it from the delayed set to its queue's wait
 * list atomically, so of several releasers racing for the same parking (workers hearing a resume,
 * the resume command, the recheck, the parker itself) exactly one moves it; the others find it no
 * longer delayed. Then the parking is forgotten (unless the job was parked again meanwhile).
 *
 * A job found active may be between being recorded and being moved to the delayed set: its record
 * is kept, because its parker looks at the run again once the job is moved and brings it back
 * itself (`owner`: that parker, which knows the job is its to bring back). Returns true when this
 * call moved the job.
 */
export async function releaseParkedJob(queue: Queue, control: RunControl, runId: string, parked: ParkedJob, options: { owner?: boolean } = {}): Promise<boolean> {
  const { jobId } = parsePendingKey(parked.key);
  const job = await queue.getJob(jobId);
  if (job) {
    try {
      await job.promote();
      await control.unpark(runId, parked);
      return true;
    } catch {
      // Not delayed (brought back by someone else, ended, or not moved yet), or Redis failed: the
      // state says which; if it cannot be read either, this throws and nothing is forgotten.
      const state = await job.getState();
      if (state === 'delayed') {
        // Moved to the delayed set just after the first try (or that try failed): once more, and an
        // error now is a real one (the parking stays recorded for the next try).
        await job.promote();
        await control.unpark(runId, parked);
        return true;
      }
      if (state === 'active' && !options.owner) return false;
    }
  }
  await control.unpark(runId, parked);
  return false;
}

/**
 * Brings back every parked job of a run (call it once the run is no longer paused). Idempotent and
 * safe to run from several processes at once: a parking ended by another is skipped after one read
 * (and one ended before this call started is not even listed), and each batch is taken in a random
 * order so that processes that start together mostly take different jobs. `failed` counts jobs that
 * could not be brought back now; they stay recorded for the next try (the workers' recheck).
 */
export async function releaseParkedJobs(at: QueuesAt, control: RunControl, runId: string): Promise<{ released: number; failed: number; firstError?: unknown }> {
  const queues = new Map<string, Queue>();
  let released = 0;
  let failed = 0;
  let firstError: unknown;
  try {
    for await (const batch of control.parked(runId)) {
      for (const parked of shuffled(batch)) {
        if (!(await control.isParked(runId, parked))) continue;
        const { queue: name } = parsePendingKey(parked.key);
        let queue = queues.get(name);
        if (!queue) {
          queue = queueAt(at, name);
          queues.set(name, queue);
        }
        try {
          if (await releaseParkedJob(queue, control, runId, parked)) released += 1;
        } catch (err) {
          failed += 1;
          firstError ??= err;
        }
      }
    }
  } finally {
    for (const q of queues.values()) await q.close();
  }
  return { released, failed, ...(failed ? { firstError } : {}) };
}

function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i -= 1) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/**
 * Resumes a run and brings back its parked jobs at once (workers that hear of the resume do the
 * same; the first to reach a job moves it, the others find it moved).
 */
export async function resumeRun(at: QueuesAt, control: RunControl, runId: string): Promise<{ released: number; failed: number; firstError?: unknown }> {
  await control.resume(runId);
  return releaseParkedJobs(at, control, runId);
}

/** BullMQ states of a job that waits for its turn (not running, not finished, not missing). */
const WAITING_STATES = new Set(['waiting', 'delayed', 'prioritized', 'waiting-children', 'paused']);

/**
 * Counts a job of `stage` ended by its run's cancel: as `failed:RUN_CANCELLED` in the stage's row, except an episode's or
 * a group's, whose stage counters are the run's trajectories by termination (an episode never run is none): those as
 * the run's `cancelled:STAGE` event.
 */
export async function countCancelled(store: Pick<RunStore, 'count'>, runId: string, stage: string): Promise<void> {
  const kind = isPipelineStage(stage) ? STAGES[stage].item.kind : null;
  if (kind === 'episode' || kind === 'group') await store.count(runId, 'run', `cancelled:${stage}`);
  else await store.count(runId, stage, 'failed:RUN_CANCELLED');
}

/**
 * Cancels a run: the run is marked cancelled (jobs that start from now on end at once as
 * RUN_CANCELLED), its waiting and delayed jobs are removed, jobs already running end at their next model call
 * (the gateway reads the run's state with its budgets: RUN_CANCELLED), and the
 * environments and scenarios still being built end as failed / dropped with RUN_CANCELLED.
 */
export async function cancelRun(at: QueuesAt, store: RunStore, control: RunControl, runId: string, reason: string): Promise<{ removed: number; running: number }> {
  await control.cancel(runId, reason);
  let removed = 0;
  let running = 0;
  await forEachPendingJob(at, store, runId, async ({ key, queue, jobId }) => {
    const job = await queue.getJob(jobId);
    const state = job ? await job.getState() : 'missing';
    if (state === 'active') {
      running += 1;
      return;
    }
    if (job) {
      try {
        await job.remove({ removeChildren: true });
      } catch {
        running += 1; // locked by a worker right now: it ends as cancelled when it starts or finishes
        return;
      }
    }
    // Counted where it stopped, as a job running at the cancel is when it ends (workers/item-endings.ts): a job that
    // waited, or is gone (an episode removed with its group's job just before), not one that finished (counted then),
    // and only by the cancel that took it out (two cancels at once). (A job whose pending mark was written but which is
    // not added yet is counted here, and again if it then comes and ends RUN_CANCELLED: a moment's window.)
    if ((await store.donePending(runId, key)) && (WAITING_STATES.has(state) || state === 'missing')) await countCancelled(store, runId, queue.name);
    removed += 1;
  });
  // What was still being built ends now, with the reason, so exports and status say why it is missing.
  // (each over what it read: a verdict's job that kept its environment in between keeps it, with its report; in the
  // words of a job of the run that ends as cancelled, which marks what was made after these: the first cancel's reason)
  const message = new RunCancelledError(runId, (await control.get(runId)).reason).message;
  for (const id of await store.idsWithStatus(runId, 'env', ['building', 'probing'])) await endEnvCancelled(store, runId, id, message);
  for (const id of await store.idsWithStatus(runId, 'scenario', ['building'])) await dropScenarioCancelled(store, runId, id, message);
  // Its parked jobs were delayed jobs, removed above; a job parked since then finds the run cancelled when it looks again.
  await control.forgetParked(runId);
  await store.count(runId, 'run', 'cancelled');
  return { removed, running };
}
