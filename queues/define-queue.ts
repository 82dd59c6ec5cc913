import type { JobsOptions } from 'bullmq';
import type { z } from 'zod';
import type { AppConfig } from '../config/index.js';
import { InvalidJobDataError } from '../src/errors.js';
import { isCluster, tag } from '../src/redis/slots.js';
import { describeZodError } from '../src/llm/json-output.js';
import { hashOf } from '../src/util/canonical.js';

export type JobsConfig = AppConfig['jobs'];

/**
 * Everything about one queue that producers and workers share: its name, the schemas of its job
 * data and result, its default job options and what identifies a job. Nothing else redeclares them.
 * (Creating a BullMQ Queue or Worker for it is the business of queues/enqueuer.ts and workers/.)
 */
export interface QueueSpec<D extends z.ZodType, R extends z.ZodType> {
  /** Queue name, also the job name. No `:` (BullMQ uses it in keys). */
  readonly name: string;
  readonly data: D;
  readonly result: R;
  /** What a job of this queue is for, shown by `envfleet worker --help` and the docs. */
  readonly description: string;
  /**
   * Defaults for every job of this queue, from the configured retry policy; per-job overrides
   * are exceptions and need a comment.
   */
  readonly jobOptions: (jobs: JobsConfig) => JobsOptions;
  /**
   * The inputs that identify a job. Equal inputs give the same job id, so re-submitting work is
   * a no-op and a resumed run does not redo finished jobs.
   */
  readonly identity: (data: z.infer<D>) => unknown;
  /**
   * The queue's hash tag on a Redis Cluster (default: its name). Queues joined by a BullMQ flow must
   * share one: the flow's scripts touch the parent's and the children's queues together.
   */
  readonly slotTag?: string;
}

export interface QueueDefinition<D extends z.ZodType = z.ZodType, R extends z.ZodType = z.ZodType> extends QueueSpec<D, R> {
  jobId(data: z.infer<D>): string;
  /** Validates job data (at enqueue, and again when read from Redis); invalid data is a permanent failure. */
  parseData(raw: unknown): z.infer<D>;
  parseResult(raw: unknown): z.infer<R>;
}

export function defineQueue<D extends z.ZodType, R extends z.ZodType>(spec: QueueSpec<D, R>): QueueDefinition<D, R> {
  if (spec.name.includes(':')) throw new Error(`queue name "${spec.name}" must not contain ":"`);
  return {
    ...spec,
    jobId: data => `${spec.name.replace(/[^A-Za-z0-9_.-]/g, '_')}-${hashOf(spec.identity(data), 40)}`,
    parseData(raw) {
      const result = spec.data.safeParse(raw);
      if (!result.success) throw new InvalidJobDataError(spec.name, describeZodError(result.error));
      return result.data;
    },
    parseResult(raw) {
      const result = spec.result.safeParse(raw);
      if (!result.success) throw new InvalidJobDataError(spec.name, `result: ${describeZodError(result.error)}`);
      return result.data;
    },
  };
}

/**
 * The field of a job's own BullMQ hash where envfleet counts the times the job went back for a sandbox thread full
 * of other work's memory (SANDBOX_MEMORY_FULL), or for a Python interpreter another environment took down, without
 * using an attempt (workers/bootstrap.ts). In the job's hash, it
 * lives as long as the job (deleted with it, never orphaned), survives worker restarts and moves with the job's slot
 * on a Redis Cluster; BullMQ reads only its own fields. A failed job retried by a re-submission gets its waits back
 * with its attempts (queues/enqueuer.ts).
 */
export const SANDBOX_FULL_WAITS_FIELD = 'envfleetSandboxFullWaits';

/**
 * The key prefix of a queue's BullMQ keys. On a Redis Cluster connection it is the prefix followed by
 * the queue's hash tag (`PREFIX:{TAG}`, so BullMQ's keys are `PREFIX:{TAG}:QUEUE:…`): every key of a
 * queue is in one slot, as BullMQ's scripts need, and the queues spread over the nodes. On one Redis
 * it is the prefix itself, the layout it always was.
 */
export const queuePrefix = (prefix: string, slotTag: string, connection: unknown): string => (isCluster(connection) ? `${prefix}:${tag(true, slotTag)}` : prefix);

/** Default options every queue starts from: bounded retries with exponential backoff, bounded retention. */
export function baseJobOptions(jobs: JobsConfig): JobsOptions {
  return {
    attempts: jobs.attempts,
    backoff: { type: 'exponential', delay: jobs.backoffMs, jitter: 0.5 },
    // Kept long enough to serve as the idempotency window of deterministic job ids.
    removeOnComplete: { age: 30 * 86_400, count: 100_000 },
    removeOnFail: { age: 30 * 86_400, count: 100_000 },
  };
}
