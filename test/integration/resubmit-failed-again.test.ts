import { Queue } from 'bullmq';
import { expect } from 'chai';
import { z } from 'zod';
import { definePipeline, type StageSpec } from '../../queues/define-pipeline.js';
import { createRunEnqueuer } from '../../queues/enqueuer.js';
import { waitForRun } from '../../queues/run-jobs.js';
import { SandboxFullError } from '../../src/sandbox/errors.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../src/sandbox/limits.js';
import { SANDBOX_FULL_WAITS_FIELD } from '../../workers/bootstrap.js';
import { createFleetContext, type FleetContext } from '../../workers/fleet.js';
import { shutdownGracefully } from '../../workers/shutdown.js';
import { startStageWorkers, type StageProcessors } from '../../workers/stage-workers.js';
import { dropPrefix, requireRedis, silentLogger, testConfig, type Overrides } from '../helpers/integration.js';

/**
 * A job that failed for good and is retried by a re-submission (a command run again: `envfleet scenarios` retries the
 * failed jobs of its entry stage with their attempts reset), then fails again, with the same worker processes up.
 * Real Redis, real BullMQ workers, a one-stage pipeline whose processor always fails.
 */

const Num = z.strictObject({ runId: z.string().min(1), n: z.number().int() });
const failing: StageSpec<typeof Num> = { description: 'always fails', data: Num, item: { kind: 'number', id: d => String(d.n) }, onFailure: 'ends-item', funnel: { passed: ['done'] } };

type Entries = { numbers: { runId: string; numbers: readonly number[] } };
const TOY = definePipeline<{ 'toy.fails': typeof failing }, { 'toy.fails': number }, Entries>({
  stages: { 'toy.fails': failing },
  feeds: {},
  entries: { numbers: { command: 'toy numbers', feed: { each: 'toy.fails', data: (i: Entries['numbers']) => i.numbers.map(n => ({ runId: i.runId, n })) } } },
});

/** Fails within `ms`, saying what did not happen, instead of waiting for ever. */
async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

describe('a failed job retried by a re-submission, failing again (real Redis, real BullMQ workers)', function () {
  let ctx: FleetContext | undefined;
  before(requireRedis);
  afterEach(async () => {
    if (!ctx) return;
    await ctx.close();
    await dropPrefix(ctx.config.redis.prefix);
    ctx = undefined;
  });

  /**
   * Runs the toy run to its end, submits it again (the failed job retried) and runs it to its end again; returns
   * the job after each round and the items ended.
   */
  async function twice(fail: () => Error, overrides: Overrides) {
    ctx = await createFleetContext(testConfig(null, { ENVFLEET_JOB_BACKOFF_MS: '20', ...overrides }), silentLogger());
    const c = ctx;
    const ended: string[] = [];
    const processors: StageProcessors<typeof TOY.stages, { 'toy.fails': number }, null> = {
      'toy.fails': { run: () => Promise.reject(fail()), result: value => ({ ok: true, detail: { value } }) },
    };
    const { workers, enqueuer } = startStageWorkers(c, {
      pipeline: TOY,
      processors,
      stages: ['toy.fails'],
      deps: () => null,
      endItem: (stage, data, failure) => {
        ended.push(`${stage} ${data.n} ${failure.code}`);
        return Promise.resolve();
      },
    });
    const producer = createRunEnqueuer(TOY, c.redis, { prefix: c.config.redis.prefix, jobs: c.config.jobs, store: c.store });
    const queue = new Queue('toy.fails', { connection: c.redis, prefix: c.config.redis.prefix });
    const jobId = TOY.queues['toy.fails'].jobId({ runId: 'toy', n: 7 });
    const look = async () => {
      const job = (await queue.getJob(jobId))!;
      return { state: await job.getState(), starts: job.attemptsStarted, attempts: job.attemptsMade, waits: await c.redis.hget(queue.toKey(jobId), SANDBOX_FULL_WAITS_FIELD), failedReason: job.failedReason };
    };
    try {
      await c.store.createRun({ id: 'toy', createdAt: new Date().toISOString(), input: 'descriptions', options: { limits: DEFAULT_SANDBOX_LIMITS, models: {} } as never });
      expect(await producer.enter('numbers', { runId: 'toy', numbers: [7] })).to.equal(1);
      await within(30_000, 'the run to finish', waitForRun(c.store, 'toy', () => undefined));
      const first = await look();
      const endedFirst = [...ended];
      // Submitted again (its cause fixed, or so its user thinks): the failed job is retried with its attempts reset.
      expect(await producer.resubmit('numbers', { runId: 'toy', numbers: [7] }, () => Promise.resolve(true))).to.deep.equal({ added: 0, retried: 1 });
      await within(30_000, 'the run submitted again to finish', waitForRun(c.store, 'toy', () => undefined));
      return { first, endedFirst, second: await look(), ended };
    } finally {
      await queue.close();
      await producer.close();
      await shutdownGracefully({ workers, closers: [{ name: 'enqueuer', close: () => enqueuer.close() }], timeoutMs: 2_000, logger: silentLogger() });
    }
  }

  it('ends its item again and leaves the run, though it failed after as many starts as the first time (the same worker process)', async () => {
    const r = await twice(() => new Error('always the same failure'), { ENVFLEET_JOB_ATTEMPTS: '2' });
    expect(r.first).to.include({ state: 'failed', starts: 2, attempts: 2 });
    expect(r.endedFirst).to.deep.equal(['toy.fails 7 UNEXPECTED']);
    // Before, its end was taken for one this process had settled already (same job id, same number of starts): the
    // item was not ended again and the run kept waiting for the job for ever.
    expect(r.second).to.include({ state: 'failed', starts: 2, attempts: 2 });
    expect(r.ended).to.deep.equal(['toy.fails 7 UNEXPECTED', 'toy.fails 7 UNEXPECTED']);
  });

  it('gets its waits for a full sandbox thread back with its attempts (ENVFLEET_SANDBOX_FULL_WAITS): as many starts as the first time', async () => {
    const r = await twice(() => SandboxFullError.at('the environment did not start', 'no room for a new environment'), { ENVFLEET_JOB_ATTEMPTS: '2', ENVFLEET_SANDBOX_FULL_WAITS: '2' });
    // Two waits (no attempt used), then its two attempts.
    expect(r.first).to.include({ state: 'failed', starts: 4, attempts: 2, waits: '2' });
    // Before, the waits stayed spent in the job's hash: the first full thread after the retry used an attempt at once
    // (2 starts, no wait), so a thread still full ended it within its attempts (seconds) instead of ENVFLEET_SANDBOX_FULL_WAITS.
    expect(r.second).to.include({ state: 'failed', starts: 4, attempts: 2, waits: '2' });
    expect(r.second.failedReason).to.contain('come back 2 times for a full sandbox thread');
    expect(r.ended).to.deep.equal(['toy.fails 7 SANDBOX_MEMORY_FULL', 'toy.fails 7 SANDBOX_MEMORY_FULL']);
  });
});
