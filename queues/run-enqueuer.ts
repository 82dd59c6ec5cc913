import { FlowProducer, type ConnectionOptions, type FlowJob, type Queue } from 'bullmq';
import type { z } from 'zod';
import type { SynthesisStore } from '../src/synthesis/store.js';
import type { JobsConfig, QueueDefinition } from './define-queue.js';
import { mineDedupQueue } from './mine-dedup.queue.js';
import { mineJudgeQueue } from './mine-judge.queue.js';
import { mineTopicQueue } from './mine-topic.queue.js';
import { skeletonAssembleQueue } from './skeleton-assemble.queue.js';
import { skeletonMethodQueue } from './skeleton-method.queue.js';
import { rolloutGroupQueue } from './rollout-group.queue.js';
import { rolloutRunQueue } from './rollout-run.queue.js';

/** The key under which a job is tracked in its run's set of outstanding jobs. */
export const pendingKey = (queue: string, jobId: string) => `${queue}|${jobId}`;

/**
 * Enqueues the jobs of a run: single jobs and the two fan-out/fan-in flows. Every job it adds is
 * recorded in the run's outstanding set first (a run is finished when that set is empty), and job
 * ids are deterministic, so enqueueing twice adds nothing.
 */
export interface RunEnqueuer {
  add<D extends z.ZodType<{ runId: string }>, R extends z.ZodType>(def: QueueDefinition<D, R>, data: z.input<D>): Promise<{ jobId: string; added: boolean }>;
  /** mine.dedup (fan-in) ← mine.topic per task ← mine.judge per task. */
  miningFlow(runId: string, taskIds: readonly string[]): Promise<boolean>;
  /** skeleton.assemble (fan-in) ← skeleton.method per operation. */
  methodsFlow(runId: string, envId: string, ops: readonly string[]): Promise<boolean>;
  /** rollout.group (fan-in: statistics) ← rollout.run per sample. */
  rolloutFlow(runId: string, scenarioId: string, mode: 'non-conversational' | 'conversational', samples: number): Promise<boolean>;
  close(): Promise<void>;
}

export function createRunEnqueuer(connection: ConnectionOptions, options: { prefix: string; jobs: JobsConfig; store: SynthesisStore }): RunEnqueuer {
  const queues = new Map<string, Queue>();
  const queueOf = (def: QueueDefinition<never, never>): Queue => {
    let q = queues.get(def.name);
    if (!q) {
      q = def.create(connection, { prefix: options.prefix, jobs: options.jobs });
      q.on('error', () => undefined);
      queues.set(def.name, q);
    }
    return q;
  };
  const flows = new FlowProducer({ connection, prefix: options.prefix });
  flows.on('error', () => undefined);

  const node = (def: QueueDefinition<never, never>, data: unknown, children?: FlowJob[]): FlowJob => {
    const parsed = def.parseData(data);
    return {
      name: def.name,
      queueName: def.name,
      data: parsed,
      opts: {
        ...queueOf(def).defaultJobOptions,
        jobId: def.jobId(parsed),
        // A failed child never blocks its parent: the fan-in stage handles missing results.
        ignoreDependencyOnFailure: true,
      },
      ...(children ? { children } : {}),
    };
  };
  const keysOf = (job: FlowJob): string[] => [pendingKey(job.queueName, job.opts!.jobId!), ...(job.children ?? []).flatMap(keysOf)];
  const addFlow = async (runId: string, root: FlowJob): Promise<boolean> => {
    const rootQueue = queues.get(root.queueName)!;
    if (await rootQueue.getJob(root.opts!.jobId!)) return false;
    const { ignoreDependencyOnFailure: _ignored, ...rootOpts } = root.opts!;
    const flow = { ...root, opts: rootOpts };
    await options.store.addPending(runId, keysOf(flow));
    await flows.add(flow);
    return true;
  };

  return {
    async add(def, data) {
      const queue = queueOf(def as unknown as QueueDefinition<never, never>);
      const parsed = def.parseData(data);
      const jobId = def.jobId(parsed);
      if (await queue.getJob(jobId)) return { jobId, added: false };
      await options.store.addPending(parsed.runId, [pendingKey(def.name, jobId)]);
      return def.enqueue(queue, data);
    },
    miningFlow(runId, taskIds) {
      const asNever = <T>(q: T) => q as unknown as QueueDefinition<never, never>;
      const children = taskIds.map(taskId => node(asNever(mineTopicQueue), { runId, taskId }, [node(asNever(mineJudgeQueue), { runId, taskId })]));
      return addFlow(runId, node(asNever(mineDedupQueue), { runId }, children));
    },
    methodsFlow(runId, envId, ops) {
      const asNever = <T>(q: T) => q as unknown as QueueDefinition<never, never>;
      const children = ops.map(op => node(asNever(skeletonMethodQueue), { runId, envId, op }));
      return addFlow(runId, node(asNever(skeletonAssembleQueue), { runId, envId }, children));
    },
    rolloutFlow(runId, scenarioId, mode, samples) {
      const asNever = <T>(q: T) => q as unknown as QueueDefinition<never, never>;
      const children = [...Array(samples).keys()].map(sample => node(asNever(rolloutRunQueue), { runId, scenarioId, mode, sample }));
      return addFlow(runId, node(asNever(rolloutGroupQueue), { runId, scenarioId, mode, samples }, children));
    },
    async close() {
      await flows.close();
      for (const q of queues.values()) await q.close();
    },
  };
}
