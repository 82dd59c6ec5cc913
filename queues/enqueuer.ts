import { FlowProducer, Queue, type ConnectionOptions, type FlowJob } from 'bullmq';
import type { RunStore } from '../src/runs/store.js';
import type { AnyStages, DataOf, EntryInputsOf, Feed, NameOf, OutputsOf, Pipeline } from './define-pipeline.js';
import { queuePrefix, type JobsConfig, type QueueDefinition } from './define-queue.js';

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
  close(): Promise<void>;
}

type AnyFeed = Feed<AnyStages, unknown, unknown>;

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

  /** One job, unless it exists already. */
  const add = async (name: string, input: unknown): Promise<number> => {
    const def = definition(name);
    const data = def.parseData(input) as { runId: string };
    const jobId = def.jobId(data);
    const queue = queueOf(name);
    if (await queue.getJob(jobId)) return 0;
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

  /** A fan-in: the parent and, under it, one chain of `through` stages per child. Nothing if the parent exists. */
  const addFlow = async (parentStage: string, through: readonly string[], parent: unknown, children: readonly unknown[]): Promise<number> => {
    const chain = (data: unknown): FlowJob => through.reduce<FlowJob | undefined>((child, s) => node(s, data, child ? [child] : undefined), undefined)!;
    const root = node(parentStage, parent, children.map(chain));
    const { ignoreDependencyOnFailure: _ignored, ...rootOpts } = root.opts!;
    const flow = { ...root, opts: rootOpts };
    if (await queueOf(parentStage).getJob(rootOpts.jobId!)) return 0;
    await options.store.addPending((root.data as { runId: string }).runId, keysOf(flow));
    await flowProducer().add(flow);
    return count(flow);
  };

  const apply = async (feed: AnyFeed, data: unknown, output: unknown): Promise<number> => {
    if ('next' in feed) {
      const next = feed.data(data, output);
      return next === null ? 0 : add(feed.next, next);
    }
    if ('each' in feed) {
      let added = 0;
      for (const item of feed.data(data, output)) added += await add(feed.each, item);
      return added;
    }
    const flow = feed.data(data, output);
    return flow === null ? 0 : addFlow(feed.fanIn, feed.through, flow.parent, flow.children);
  };

  return {
    async follow(stage, data, output) {
      let added = 0;
      for (const feed of pipeline.feeds[stage] ?? []) added += await apply(feed as AnyFeed, data, output);
      return added;
    },
    enter: (entry, input) => apply(pipeline.entries[entry].feed as AnyFeed, input, null),
    async close() {
      await flows?.close();
      for (const q of queues.values()) await q.close();
    },
  };
}
