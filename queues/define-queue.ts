import { Queue, type ConnectionOptions, type JobsOptions } from 'bullmq';
import type { z } from 'zod';
import type { AppConfig } from '../config/index.js';
import { InvalidJobDataError } from '../src/errors.js';
import { describeZodError } from '../src/llm/json-output.js';
import { hashOf } from '../src/util/canonical.js';

/**
 * Everything about one queue that producers and workers share. A queue file declares one of
 * these and nothing else redeclares its name, schemas or options.
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
}

export interface QueueDefinition<D extends z.ZodType, R extends z.ZodType> extends QueueSpec<D, R> {
  jobId(data: z.infer<D>): string;
  /** Validates job data read from Redis; invalid data is a permanent failure. */
  parseData(raw: unknown): z.infer<D>;
  parseResult(raw: unknown): z.infer<R>;
  create(connection: ConnectionOptions, options: { prefix: string; jobs: JobsConfig }): Queue;
  /** Validates, then adds with the deterministic id. Returns the id and whether the job already existed. */
  enqueue(queue: Queue, data: z.input<D>, overrides?: JobsOptions): Promise<{ jobId: string; added: boolean }>;
}

export type JobsConfig = AppConfig['jobs'];

export function defineQueue<D extends z.ZodType, R extends z.ZodType>(spec: QueueSpec<D, R>): QueueDefinition<D, R> {
  if (spec.name.includes(':')) throw new Error(`queue name "${spec.name}" must not contain ":"`);
  const jobId = (data: z.infer<D>) => `${spec.name.replace(/[^A-Za-z0-9_.-]/g, '_')}-${hashOf(spec.identity(data), 40)}`;
  const parseData = (raw: unknown): z.infer<D> => {
    const result = spec.data.safeParse(raw);
    if (!result.success) throw new InvalidJobDataError(spec.name, describeZodError(result.error));
    return result.data;
  };
  return {
    ...spec,
    jobId,
    parseData,
    parseResult(raw) {
      const result = spec.result.safeParse(raw);
      if (!result.success) throw new InvalidJobDataError(spec.name, `result: ${describeZodError(result.error)}`);
      return result.data;
    },
    create(connection, { prefix, jobs }) {
      return new Queue(spec.name, {
        connection,
        prefix,
        defaultJobOptions: spec.jobOptions(jobs),
        streams: { events: { maxLen: 2_000 } },
      });
    },
    async enqueue(queue, input, overrides = {}) {
      const data = parseData(input);
      const id = jobId(data);
      const existing = await queue.getJob(id);
      if (existing) return { jobId: id, added: false };
      await queue.add(spec.name, data, { ...overrides, jobId: id });
      return { jobId: id, added: true };
    },
  };
}

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
