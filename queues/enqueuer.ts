import { FlowProducer, Queue, type ConnectionOptions, type FlowJob, type Job } from 'bullmq';
import { codeOfFailedReason } from '../src/errors.js';
import type { RunStore } from '../src/runs/store.js';
import type { AnyStages, DataOf, EntryInputsOf, Feed, NameOf, OutputsOf, Pipeline } from './define-pipeline.js';
import { SANDBOX_FULL_WAITS_FIELD, queuePrefix, type JobsConfig, type QueueDefinition } from './define-queue.js';

/** The key under which a job is tracked in its run's set of outstanding jobs. */
export const pendingKey = (queue: string, jobId: string) => `${queue}|${jobId}`;
export const parsePendingKey = (key: string) => {
  const at = key.indexOf('|');
  return { queue: key.slice(0, at), jobId: key.slice(at + 1) };
};

/**
 * Enqueues a run's jobs by following a pipeline declaration: the jobs a stage feeds once it has run,
 * and the jobs an entry point starts. Every job it adds is recorded in the run's outstanding set first
 * (a run is finished when that set is empty), and job ids are deterministic, so enqueueing twice
 * adds nothing.
 */
export interface RunEnqueuer<St extends AnyStages, Out extends OutputsOf<St>, En extends EntryInputsOf> {
  /** Enqueues what `stage` feeds after a job with `data` produced `output`. Returns the number of jobs added. */
  follow<S extends NameOf<St>>(stage: S, data: DataOf<St, S>, output: Out[S]): Promise<number>;
  /** Enqueues the work submitted to an entry point. Returns the number of jobs added. */
  enter<E extends keyof En & string>(entry: E, input: En[E]): Promise<number>;
  /**
   * `enter`, and the entry's jobs that exist and failed for good run again (a command run again once
   * the cause of the failure is fixed): each failed job whose item `reopen` takes back is retried
   * (a fan-in whose jobs have all ended is removed and added again, its jobs that had succeeded
   * finding their results stored). Returns the jobs added and the failed jobs retried.
   */
  resubmit<E extends keyof En & string>(entry: E, input: En[E], reopen: ReopenItem): Promise<{ added: number; retried: number }>;
  /** Retries the job of `stage` with `data` if it exists and failed for good (its item reopened first); true when it was retried. */
  retryFailedJob<S extends NameOf<St>>(stage: S, data: DataOf<St, S>, reopen: ReopenItem): Promise<boolean>;
  close(): Promise<void>;
}

type AnyFeed = Feed<AnyStages, unknown, unknown>;

/**
 * Takes back how an item ended when a job of `stage` with `data` failed for good with `code`, just
 * before the job runs again; false leaves the job failed (an ending that cannot be taken back).
 */
export type ReopenItem = (stage: string, data: unknown, code: string) => Promise<boolean>;

/** While resubmitting: how failed jobs are reopened, and how many were retried. */
interface Retrying {
  readonly reopen: ReopenItem;
  retried: number;
}

export function createRunEnqueuer<St extends AnyStages, Out extends OutputsOf<St>, En extends EntryInputsOf>(
  pipeline: Pipeline<St, Out, En>,
  connection: ConnectionOptions,
  options: { prefix: string; jobs: JobsConfig; store: RunStore },
): RunEnqueuer<St, Out, En> {
  const queues = new Map<string, Queue>();
  const definition = (name: string): QueueDefinition => pipeline.queues[name as NameOf<St>];
  const prefixOf = (name: string) => queuePrefix(options.prefix, pipeline.slotTagOf(name), connection);
  const queueOf = (name: string): Queue => {
    let q = queues.get(name);
    if (!q) {
      q = new Queue(name, { connection, prefix: prefixOf(name), defaultJobOptions: definition(name).jobOptions(options.jobs), streams: { events: { maxLen: 2_000 } } });
      q.on('error', () => undefined);
      queues.set(name, q);
    }
    return q;
  };
  let flows: FlowProducer | undefined;
  const flowProducer = () => {
    if (!flows) {
      flows = new FlowProducer({ connection, prefix: options.prefix });
      flows.on('error', () => undefined);
    }
    return flows;
  };

  /** Retries a job that failed for good, when its item is reopened; true when it was retried. */
  const retryFailed = async (name: string, job: Job, retrying: Retrying): Promise<boolean> => {
    if ((await job.getState()) !== 'failed') return false;
    if (!(await retrying.reopen(name, job.data, codeOfFailedReason(job.failedReason)))) return false;
    await options.store.addPending((job.data as { runId: string }).runId, [pendingKey(name, job.id!)]);
    // It starts afresh: its attempts, and its waits for a full sandbox thread (counted in its hash, which a retry keeps).
    // Failed, the job is held by no worker, so no wait is being counted meanwhile.
    const queue = queueOf(name);
    await (await queue.getBackend().client).hdel(queue.toKey(job.id!), SANDBOX_FULL_WAITS_FIELD);
    try {
      await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
    } catch {
      // Retried by another submission at the same moment: no longer failed.
      return false;
    }
    retrying.retried += 1;
    return true;
  };

  /** One job, unless it exists already (then, when resubmitting, retried if it failed). */
  const add = async (name: string, input: unknown, retrying?: Retrying): Promise<number> => {
    const def = definition(name);
    const data = def.parseData(input) as { runId: string };
    const jobId = def.jobId(data);
    const queue = queueOf(name);
    const existing = await queue.getJob(jobId);
    if (existing) {
      if (retrying) await retryFailed(name, existing, retrying);
      return 0;
    }
    await options.store.addPending(data.runId, [pendingKey(name, jobId)]);
    await queue.add(name, data, { jobId });
    return 1;
  };

  const node = (name: string, input: unknown, children?: FlowJob[]): FlowJob => {
    const def = definition(name);
    const data = def.parseData(input);
    return {
      name,
      queueName: name,
      // On a Redis Cluster every node of a flow is under the flow's hash tag (its stages share it).
      prefix: prefixOf(name),
      data,
      opts: {
        ...queueOf(name).defaultJobOptions,
        jobId: def.jobId(data),
        // A failed child never blocks its parent: the fan-in stage handles missing results.
        ignoreDependencyOnFailure: true,
      },
      ...(children ? { children } : {}),
    };
  };
  const keysOf = (job: FlowJob): string[] => [pendingKey(job.queueName, job.opts!.jobId!), ...(job.children ?? []).flatMap(keysOf)];
  const count = (job: FlowJob): number => 1 + (job.children ?? []).reduce((a, c) => a + count(c), 0);

  const nodesOf = (job: FlowJob): FlowJob[] => [job, ...(job.children ?? []).flatMap(nodesOf)];

  /**
   * A fan-in that exists, when resubmitting: once every job of it has ended, and some failed for good
   * and their items are reopened, the whole flow is removed and added again (a child retried alone
   * would not run its parent again). Its jobs that had succeeded run again and find their results
   * stored, so no model request is repeated.
   */
  const reAddFailedFlow = async (flow: FlowJob, retrying: Retrying): Promise<void> => {
    const rootJob = await queueOf(flow.queueName).getJob(flow.opts!.jobId!);
    const rootState = rootJob ? await rootJob.getState() : 'unknown';
    if (!rootJob || (rootState !== 'completed' && rootState !== 'failed')) return;
    const failed: { name: string; job: Job }[] = [];
    for (const n of nodesOf(flow)) {
      const job = await queueOf(n.queueName).getJob(n.opts!.jobId!);
      if (job && (await job.getState()) === 'failed') failed.push({ name: n.queueName, job });
    }
    let reopened = 0;
    for (const { name, job } of failed) if (await retrying.reopen(name, job.data, codeOfFailedReason(job.failedReason))) reopened += 1;
    if (!reopened) return;
    try {
      await rootJob.remove({ removeChildren: true });
    } catch {
      // Being removed or retried by another submission at the same moment.
      return;
    }
    await options.store.addPending((flow.data as { runId: string }).runId, keysOf(flow));
    await flowProducer().add(flow);
    retrying.retried += reopened;
  };

  /** A fan-in: the parent and, under it, one chain of `through` stages per child. Nothing if the parent exists (then, when resubmitting, see reAddFailedFlow). */
  const addFlow = async (parentStage: string, through: readonly string[], parent: unknown, children: readonly unknown[], retrying?: Retrying): Promise<number> => {
    const chain = (data: unknown): FlowJob => through.reduce<FlowJob | undefined>((child, s) => node(s, data, child ? [child] : undefined), undefined)!;
    const root = node(parentStage, parent, children.map(chain));
    const { ignoreDependencyOnFailure: _ignored, ...rootOpts } = root.opts!;
    const flow = { ...root, opts: rootOpts };
    if (await queueOf(parentStage).getJob(rootOpts.jobId!)) {
      if (retrying) await reAddFailedFlow(flow, retrying);
      return 0;
    }
    await options.store.addPending((root.data as { runId: string }).runId, keysOf(flow));
    await flowProducer().add(flow);
    return count(flow);
  };

  const apply = async (feed: AnyFeed, data: unknown, output: unknown, retrying?: Retrying): Promise<number> => {
    if ('next' in feed) {
      const next = feed.data(data, output);
      return next === null ? 0 : add(feed.next, next, retrying);
    }
    if ('each' in feed) {
      let added = 0;
      for (const item of feed.data(data, output)) added += await add(feed.each, item, retrying);
      return added;
    }
    const flow = feed.data(data, output);
    return flow === null ? 0 : addFlow(feed.fanIn, feed.through, flow.parent, flow.children, retrying);
  };

  return {
    async follow(stage, data, output) {
      let added = 0;
      for (const feed of pipeline.feeds[stage] ?? []) added += await apply(feed as AnyFeed, data, output);
      return added;
    },
    enter: (entry, input) => apply(pipeline.entries[entry].feed as AnyFeed, input, null),
    async retryFailedJob(stage, input, reopen) {
      const def = definition(stage);
      const data = def.parseData(input) as { runId: string };
      const job = await queueOf(stage).getJob(def.jobId(data));
      return job ? retryFailed(stage, job, { reopen, retried: 0 }) : false;
    },
    async resubmit(entry, input, reopen) {
      const retrying: Retrying = { reopen, retried: 0 };
      const added = await apply(pipeline.entries[entry].feed as AnyFeed, input, null, retrying);
      return { added, retried: retrying.retried };
    },
    async close() {
      await flows?.close();
      for (const q of queues.values()) await q.close();
    },
  };
}
