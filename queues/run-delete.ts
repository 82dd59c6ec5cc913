import { RequestError } from '../src/errors.js';
import { isCluster, scanKeys, type Redis } from '../src/redis/connection.js';
import type { RunControl } from '../src/runs/control.js';
import { checkRunName } from '../src/runs/ids.js';
import { runKey, runsKey } from '../src/runs/keys.js';
import { trajectoryStreamKey } from '../src/rollouts/stream.js';
import type { RunStore } from '../src/runs/store.js';
import { PIPELINE_STAGES } from './pipeline.js';
import { queueAt } from './run-jobs.js';
import { runState } from './run-status.js';

export interface DeletedRun {
  readonly runId: string;
  /** Redis keys removed (the run's record, documents, counters, cache, ledger, stream...). */
  readonly keys: number;
  /** Finished jobs of the run removed from the queues. */
  readonly jobs: number;
}

const JOB_PAGE = 1_000;

export interface DeleteRunOptions {
  /** Delete it even when its trajectory stream holds trajectories no sink has written to disk. */
  readonly force?: boolean;
}

/**
 * Deletes a run: its jobs kept in the queues (completed and failed jobs stay 30 days as the
 * idempotency window of deterministic job ids), then every Redis key it owns (src/runs/keys.ts: record,
 * documents, counters, probe steps, response cache, ledger, stream, control), then its name. A run
 * with outstanding jobs is refused: cancel it first. So is one with trajectories no `envfleet sink` has written to
 * disk (their only copy is in Redis: paid model calls), unless `force`. A run of the store is taken by its name; a
 * name no run has must be one a run can have (checkRunName). Returns what was removed.
 */
export async function deleteRun(redis: Redis, prefix: string, store: RunStore, control: RunControl, runId: string, options: DeleteRunOptions = {}): Promise<DeletedRun> {
  // The run's keys are found by a pattern, escaped: a name with * ? [ matched other runs' keys (`runs delete --run 'd*'`
  // emptied 23 runs, running ones too). A run of the store is taken by its name, whatever the rules for new names
  // were when it was made.
  const root = runKey(prefix, runId, isCluster(redis));
  if (!(await store.getRun(runId))) {
    // No such run: a name no run can have is said so.
    checkRunName(runId);
    await refuseUnsunk(redis, prefix, runId, options, false);
    // No record but keys under its name (a run interrupted while being created, or written by an older
    // layout): they are removed too, since a new run of that name would otherwise find them.
    // Its finished jobs too (their ids are the run's, kept 30 days): a new run of the name would find them done and
    // add nothing.
    const jobs = await removeFinishedJobs(redis, prefix, runId);
    const keys = await unlinkUnder(redis, root);
    if (keys === 0 && jobs === 0) throw new RequestError(`run "${runId}" does not exist (see envfleet runs)`);
    await redis.srem(runsKey(prefix), runId);
    return { runId, keys, jobs };
  }
  const outstanding = await store.pendingCount(runId);
  if (outstanding > 0) {
    const now = await control.get(runId);
    const state = runState(now, outstanding);
    // Cancelled already: the jobs left are the ones that were running, which end at their next model call or sandbox step.
    throw new RequestError(
      now.state === 'cancelled'
        ? `run "${runId}" is cancelled, and ${outstanding} of its jobs are still ending (those that were running stop at their next step); wait until envfleet status --run ${runId} shows none outstanding (envfleet runs lists it as cancelled with 0), then delete it`
        : `run "${runId}" is ${state} with ${outstanding} outstanding jobs; cancel it first (envfleet cancel --run ${runId}), then delete it`,
    );
  }
  await refuseUnsunk(redis, prefix, runId, options, true);
  const jobs = await removeFinishedJobs(redis, prefix, runId);
  const keys = await unlinkUnder(redis, root);
  await redis.srem(runsKey(prefix), runId);
  return { runId, keys, jobs };
}

/** Refuses to delete a run with trajectories no sink has written to disk, unless `force`. */
async function refuseUnsunk(redis: Redis, prefix: string, runId: string, options: DeleteRunOptions, recorded: boolean): Promise<void> {
  if (options.force) return;
  const unsunk = await unsunkTrajectories(redis, prefix, runId);
  if (unsunk === 0) return;
  throw new RequestError(
    recorded
      ? `run "${runId}" has ${unsunk} trajectories that no envfleet sink has written to disk, so Redis holds their only copy: write them first (envfleet sink --run ${runId} --out DIR), or, if you have them already (envfleet export), pass --force to delete them with the run`
      : `"${runId}" has no run record (what an earlier run of the name left, or Redis lost the record), but its stream holds ${unsunk} trajectories no envfleet sink has written to disk; without the record neither the sink nor export can write them: pass --force to delete them with the rest`,
  );
}

/** How many of the run's trajectories no `envfleet sink` has written to disk yet (entries left in its trajectory stream). */
export function unsunkTrajectories(redis: Redis, prefix: string, runId: string): Promise<number> {
  return redis.xlen(trajectoryStreamKey(prefix, runId, isCluster(redis)));
}

/** Removes the run's completed and failed jobs from every queue; returns how many. */
async function removeFinishedJobs(redis: Redis, prefix: string, runId: string): Promise<number> {
  let jobs = 0;
  for (const name of PIPELINE_STAGES) {
    const queue = queueAt({ connection: redis, prefix }, name);
    try {
      // Page from the end so that removing jobs does not shift the pages still to read.
      for (const state of ['completed', 'failed'] as const) {
        const total = (await queue.getJobCounts(state))[state] ?? 0;
        for (let end = total - 1; end >= 0; end -= JOB_PAGE) {
          for (const job of await queue.getJobs([state], Math.max(0, end - JOB_PAGE + 1), end)) {
            if ((job.data as { runId?: unknown } | null)?.runId !== runId) continue;
            await job.remove();
            jobs += 1;
          }
        }
      }
    } finally {
      await queue.close();
    }
  }
  return jobs;
}

/** `text` matched literally by a Redis glob pattern (SCAN MATCH): a prefix may hold [ ] or a backslash. */
const globEscaped = (text: string) => text.replace(/[*?[\]\\]/g, '\\$&');

/**
 * Unlinks `root` and every key under `root:`; returns how many existed. On a Redis Cluster they all
 * carry the run's hash tag, so one UNLINK may take a batch of them. The root (the run's record) goes first: a write
 * that holds only while the run exists (its budgets set by a command, a worker's keepBudgets) is refused from then on,
 * where, the record gone last, it could write the run's control hash again after the scan had passed it, and a new run
 * of the name started with the old budgets. (A delete cut short leaves keys without a record: run again, it takes them.)
 */
async function unlinkUnder(redis: Redis, root: string): Promise<number> {
  let keys = await redis.unlink(root);
  for await (const found of scanKeys(redis, `${globEscaped(root)}:*`)) keys += await redis.unlink(...found);
  return keys;
}

/**
 * The runs that finished (no outstanding job) before `date`: what `envfleet runs delete --finished-before` deletes.
 * A run that never had a job (`envfleet runs` lists it as finished) finished when it was created.
 */
export async function runsFinishedBefore(store: RunStore, date: Date): Promise<string[]> {
  const out: string[] = [];
  for (const id of await store.listRuns()) {
    const finishedAt = (await store.finishedAt(id)) ?? (await store.getRun(id))?.createdAt ?? null;
    if (finishedAt && Date.parse(finishedAt) < date.getTime() && (await store.pendingCount(id)) === 0) out.push(id);
  }
  return out.sort();
}
