import { expect } from 'chai';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { definePipeline, type StageSpec } from '../../queues/define-pipeline.js';
import { createRunEnqueuer } from '../../queues/enqueuer.js';
import { waitForRun } from '../../queues/run-jobs.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../src/sandbox/limits.js';
import { createFleetContext, type FleetContext } from '../../workers/fleet.js';
import { shutdownGracefully } from '../../workers/shutdown.js';
import { startStageWorkers, type StageProcessors } from '../../workers/stage-workers.js';
import { requireRedis, dropPrefix, silentLogger, testConfig } from '../helpers/integration.js';

/**
 * The pipeline machinery (enqueuer, stage workers, settling) is written against a declaration, not
 * against envfleet's stages. This suite declares a small pipeline, runs it on real workers, then adds
 * a stage between two of its stages — touching only the declaration and one processor — and runs that.
 */

const Num = z.strictObject({ runId: z.string().min(1), n: z.number().int() });
const Run = z.strictObject({ runId: z.string().min(1) });

/** A stage of the toy pipeline: its item is one number, or the run. */
const stage = <D extends typeof Num | typeof Run>(description: string, data: D, kind: 'number' | 'run', id: (d: z.infer<D>) => string): StageSpec<D> => ({
  description,
  data,
  item: { kind, id },
  onFailure: 'ends-item',
  funnel: { passed: ['done'] },
});

const square = stage('squares a number', Num, 'number', d => String(d.n));
const double = stage('doubles it', Num, 'number', d => String(d.n));
const sum = stage('adds up every number once all are through', Run, 'run', d => d.runId);

type Entries = { numbers: { runId: string; numbers: readonly number[] } };
const numbersEntry = <T extends string>(through: readonly [T, ...T[]]) => ({
  numbers: { command: 'toy numbers', feed: { fanIn: 'toy.sum' as const, through, data: (i: Entries['numbers']) => ({ parent: { runId: i.runId }, children: i.numbers.map(n => ({ runId: i.runId, n })) }) } },
});

/** Version 1: each number is squared, then the run's numbers are summed. */
const V1 = definePipeline<{ 'toy.square': typeof square; 'toy.sum': typeof sum }, { 'toy.square': number; 'toy.sum': number }, Entries>({
  stages: { 'toy.square': square, 'toy.sum': sum },
  feeds: {},
  entries: numbersEntry(['toy.square']),
});

/** Version 2: a stage between the two — the declaration gains it, the entry's chain goes through it. */
const V2 = definePipeline<{ 'toy.square': typeof square; 'toy.double': typeof double; 'toy.sum': typeof sum }, { 'toy.square': number; 'toy.double': number; 'toy.sum': number }, Entries>({
  stages: { 'toy.square': square, 'toy.double': double, 'toy.sum': sum },
  feeds: {},
  entries: numbersEntry(['toy.square', 'toy.double']),
});

/** What the toy processors work with: the test's Redis, where each number's latest value is kept. */
interface ToyDeps {
  readonly redis: Redis;
  readonly key: (runId: string) => string;
}

const V1_PROCESSORS: StageProcessors<typeof V1.stages, { 'toy.square': number; 'toy.sum': number }, ToyDeps> = {
  'toy.square': {
    async run(d, deps) {
      if (d.n < 0) throw new Error('negative numbers are refused');
      await deps.redis.hset(deps.key(d.runId), String(d.n), d.n * d.n);
      return d.n * d.n;
    },
    result: value => ({ ok: true, detail: { value } }),
  },
  'toy.sum': {
    async run(d, deps) {
      const total = Object.values(await deps.redis.hgetall(deps.key(d.runId))).reduce((a, v) => a + Number(v), 0);
      await deps.redis.set(`${deps.key(d.runId)}:sum`, total);
      return total;
    },
    result: total => ({ ok: true, detail: { total } }),
  },
};

/** Version 2's processors: version 1's, and one for the new stage. */
const V2_PROCESSORS: StageProcessors<typeof V2.stages, { 'toy.square': number; 'toy.double': number; 'toy.sum': number }, ToyDeps> = {
  ...V1_PROCESSORS,
  'toy.double': {
    async run(d, deps) {
      const value = 2 * Number(await deps.redis.hget(deps.key(d.runId), String(d.n)));
      await deps.redis.hset(deps.key(d.runId), String(d.n), value);
      return value;
    },
    result: value => ({ ok: true, detail: { value } }),
  },
};

describe('a pipeline built from a declaration (real Redis, real BullMQ workers)', function () {
  let ctx: FleetContext | undefined;
  before(requireRedis);
  afterEach(async () => {
    if (!ctx) return;
    await ctx.close();
    await dropPrefix(ctx.config.redis.prefix);
    ctx = undefined;
  });

  /** Runs `numbers` through a pipeline on real workers; returns the sum, the failed items and the graph. */
  async function run<P extends typeof V1 | typeof V2>(pipeline: P, processors: P extends typeof V1 ? typeof V1_PROCESSORS : typeof V2_PROCESSORS, numbers: number[]) {
    ctx = await createFleetContext(testConfig(null, { ENVFLEET_JOB_ATTEMPTS: '1' }), silentLogger());
    const c = ctx;
    const key = (runId: string) => `${c.config.redis.prefix}:toy:${runId}`;
    const ended: string[] = [];
    const { workers, enqueuer } = startStageWorkers(c, {
      pipeline: pipeline as typeof V2,
      processors: processors as typeof V2_PROCESSORS,
      stages: [...pipeline.names] as (typeof V2.names)[number][],
      deps: () => ({ redis: c.redis, key }),
      endItem: (stage, data, failure) => {
        ended.push(`${stage} ${JSON.stringify(data)} ${failure.code}`);
        return Promise.resolve();
      },
    });
    const producer = createRunEnqueuer(pipeline as typeof V2, c.redis, { prefix: c.config.redis.prefix, jobs: c.config.jobs, store: c.store });
    try {
      // As every submission does, the run is recorded first (waitForRun takes a run missing from Redis for one lost).
      await c.store.createRun({ id: 'toy', createdAt: new Date().toISOString(), input: 'descriptions', options: { limits: DEFAULT_SANDBOX_LIMITS, models: {} } as never });
      const added = await producer.enter('numbers', { runId: 'toy', numbers });
      await waitForRun(c.store, 'toy', () => undefined);
      return { added, sum: Number(await c.redis.get(`${key('toy')}:sum`)), ended, edges: pipeline.edges().map(e => `${e.from} ${e.kind} ${e.to}`) };
    } finally {
      await producer.close();
      await shutdownGracefully({ workers, closers: [{ name: 'enqueuer', close: () => enqueuer.close() }], timeoutMs: 2_000, logger: silentLogger() });
    }
  }

  it('runs the declared stages, fans in, and ends the item of a job that fails for good', async () => {
    const r = await run(V1, V1_PROCESSORS, [1, 2, 3, -4]);
    expect(r.added).to.equal(5); // the sum and four squares
    expect(r.sum).to.equal(1 + 4 + 9);
    expect(r.ended).to.deep.equal(['toy.square {"runId":"toy","n":-4} UNEXPECTED']);
    expect(r.edges).to.deep.equal(['(numbers) fan-out toy.square', 'toy.square fan-in toy.sum']);
  });

  it('takes a stage between two stages with a change to the declaration and one processor', async () => {
    expect(V2.names.filter(s => !V1.names.includes(s as never))).to.deep.equal(['toy.double']);
    expect(Object.keys(V2_PROCESSORS).filter(s => !(s in V1_PROCESSORS))).to.deep.equal(['toy.double']);
    const r = await run(V2, V2_PROCESSORS, [1, 2, 3]);
    expect(r.added).to.equal(7);
    expect(r.sum).to.equal(2 * (1 + 4 + 9));
    expect(r.edges).to.deep.equal(['(numbers) fan-out toy.square', 'toy.square flow-child toy.double', 'toy.double fan-in toy.sum']);
  });
});
