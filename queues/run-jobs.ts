import { Queue, type ConnectionOptions } from 'bullmq';
import type { RunControl } from '../src/runs/control.js';
import type { RunStore } from '../src/runs/store.js';
import { sleep } from '../src/util/sleep.js';
import { parsePendingKey } from './enqueuer.js';

/** Where a run's jobs are: the Redis connection and key prefix their queues use. */
export interface QueuesAt {
  readonly connection: ConnectionOptions;
  readonly prefix: string;
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
        queue = new Queue(name, { connection: at.connection, prefix: at.prefix });
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
export async function reconcilePending(at: QueuesAt, store: RunStore, runId: string): Promise<number> {
  let fixed = 0;
  await forEachPendingJob(at, store, runId, async ({ key, queue, jobId }) => {
    const state = await queue.getJobState(jobId);
    if (state === 'completed' || state === 'failed' || state === 'unknown') {
      await store.donePending(runId, key);
      fixed += 1;
    }
  });
  return fixed;
}

export interface RunProgress {
  readonly outstanding: number;
  readonly environments: Record<string, number>;
  readonly scenarios: Record<string, number>;
}

/** How many of a kind's documents have each status. */
export async function countByStatus(store: RunStore, runId: string, kind: 'env' | 'scenario'): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const id of await store.listDocIds(runId, kind)) {
    const doc = await store.getDoc(runId, kind, id);
    if (doc) out[doc.status] = (out[doc.status] ?? 0) + 1;
  }
  return out;
}

export async function runProgress(store: RunStore, runId: string): Promise<RunProgress> {
  return { outstanding: await store.pendingCount(runId), environments: await countByStatus(store, runId, 'env'), scenarios: await countByStatus(store, runId, 'scenario') };
}

/** Waits until the run has no outstanding job, reporting progress when it changes (and reconciling now and then when given the queues). */
export async function waitForRun(store: RunStore, runId: string, report: (p: RunProgress) => void, options: { signal?: AbortSignal; queues?: QueuesAt } = {}): Promise<RunProgress> {
  let last = '';
  let polls = 0;
  for (;;) {
    polls += 1;
    if (options.queues && polls % 20 === 0) await reconcilePending(options.queues, store, runId);
    const progress = await runProgress(store, runId);
    const line = JSON.stringify(progress);
    if (line !== last) report(progress);
    last = line;
    if (progress.outstanding === 0) return progress;
    await sleep(500, options.signal);
  }
}

/**
 * Cancels a run: the run is marked cancelled (jobs that start from now on end at once as
 * RUN_CANCELLED), its waiting and delayed jobs are removed, jobs already running finish, and the
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
    await store.donePending(runId, key);
    removed += 1;
  });
  // What was still being built ends now, with the reason, so exports and status say why it is missing.
  const failure = { stage: 'run', code: 'RUN_CANCELLED', message: reason } as const;
  for (const id of await store.listDocIds(runId, 'env')) {
    const env = await store.getDoc(runId, 'env', id);
    if (env && (env.status === 'building' || env.status === 'probing')) await store.putDoc(runId, 'env', id, { ...env, status: 'failed', failure });
  }
  for (const id of await store.listDocIds(runId, 'scenario')) {
    const scenario = await store.getDoc(runId, 'scenario', id);
    if (scenario?.status === 'building') await store.putDoc(runId, 'scenario', id, { ...scenario, status: 'dropped', dropReason: failure });
  }
  await store.count(runId, 'run', 'cancelled');
  return { removed, running };
}
