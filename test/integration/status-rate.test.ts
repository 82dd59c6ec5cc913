import { randomUUID } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import { expect } from 'chai';
import { formatFunnel, formatStatus } from '../../cli/runs.js';
import { pausedOfQueues, workersOfQueues } from '../../queues/run-jobs.js';
import { runStatus, timeLeftText } from '../../queues/run-status.js';
import { createRedisLedger } from '../../src/llm/redis-ledger.js';
import { createRedisConnection, waitForRedis, type Redis } from '../../src/redis/connection.js';
import { createRedisRunControl } from '../../src/runs/control.js';
import { runKeys } from '../../src/runs/keys.js';
import { createRedisRunStore, type RunStore } from '../../src/runs/store.js';

const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';

/**
 * `envfleet status`'s rate and time left come from the jobs finished in the last minutes of the clock. A run whose
 * workers stopped (none running, jobs waiting) is not estimated to end in seconds from the rate it had before.
 */
describe('envfleet status: the rate is that of the last minutes, not of the last minutes that had jobs', function () {
  this.timeout(30_000);
  const prefix = `envfleet-test-rate-${randomUUID().slice(0, 8)}`;
  let redis: Redis;
  let store: RunStore;
  before(async () => {
    redis = createRedisConnection(REDIS_URL, 'producer');
    await waitForRedis(redis, REDIS_URL, 10_000);
    store = createRedisRunStore(redis, prefix);
  });
  after(async () => {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });
  const minuteAgo = (n: number) => new Date((Math.floor(Date.now() / 60_000) - n) * 60_000).toISOString();
  const statusOf = (runId: string) => runStatus({ store, ledger: createRedisLedger(redis, prefix), control: createRedisRunControl(redis, prefix) }, runId);
  const runWith = async (runId: string, finished: Record<string, number>) => {
    // Written and read within one minute of the clock (the minutes are counted from it).
    if (Date.now() % 60_000 > 55_000) await new Promise(r => setTimeout(r, 60_000 - (Date.now() % 60_000) + 50));
    await store.createRun({ id: runId, createdAt: minuteAgo(30), input: 'tasks', options: {} as never });
    await store.addPending(runId, ['rollout.run|a', 'rollout.run|b', 'rollout.run|c']);
    // Minutes of the past, written where the store's tick() counts a finished job.
    for (const [minute, count] of Object.entries(finished)) await redis.hset(runKeys(prefix, runId).throughput, minute, count);
  };

  it('jobs that finished ten minutes ago and none since: rate 0, no time left estimated', async () => {
    await runWith('stalled', { [minuteAgo(14)]: 200, [minuteAgo(12)]: 300, [minuteAgo(10)]: 100 });
    const s = (await statusOf('stalled'))!;
    expect(s.state).to.equal('running');
    expect(s.outstanding).to.equal(3);
    expect(s.ratePerMinute).to.equal(0);
    expect(s.etaMinutes).to.equal(null);
    expect(formatStatus(s)).to.include('rate 0.0 jobs/min; time left unknown');
    // No job has entered a stage: the funnel says so rather than print its header alone.
    expect(s.funnel).to.deep.equal([]);
    expect(formatFunnel(s.funnel)).to.equal('stages: nothing has entered a stage yet');
    // A run cancelled after it finished says when it was cancelled, and when it finished (it said "cancelled at" the
    // time it finished: a stranger's probe).
    const cancelled = { ...s, state: 'cancelled' as const, finishedAt: '2026-12-07T01:00:00.000Z', control: { ...s.control, state: 'cancelled' as const, since: '2026-12-07T02:00:00.000Z', reason: 'plus besoin' } };
    expect(formatStatus(cancelled)).to.include('run stalled — cancelled at 2026-12-07T02:00:00.000Z (finished at 2026-12-07T01:00:00.000Z) (plus besoin)');
    // A pause too (it said "paused at" the time the run had finished; one not finished said no time: a stranger's probe).
    const paused = { ...cancelled, state: 'paused' as const, control: { ...cancelled.control, state: 'paused' as const, reason: 'revue — レビュー' } };
    expect(formatStatus(paused)).to.include('run stalled — paused at 2026-12-07T02:00:00.000Z (finished at 2026-12-07T01:00:00.000Z) (revue — レビュー)');
    expect(formatStatus({ ...paused, finishedAt: null })).to.include('run stalled — paused at 2026-12-07T02:00:00.000Z (revue — レビュー)');
  });

  it('jobs finishing now: the rate over the last five minutes, empty minutes counted', async () => {
    await runWith('moving', { [minuteAgo(20)]: 1000, [minuteAgo(3)]: 10, [minuteAgo(0)]: 5 });
    const s = (await statusOf('moving'))!;
    expect(s.ratePerMinute).to.equal(3);
    expect(s.etaMinutes).to.equal(1);
  });

  it('a run younger than five minutes: over the minutes since its first finished job', async () => {
    await runWith('young', { [minuteAgo(1)]: 6, [minuteAgo(0)]: 2 });
    const s = (await statusOf('young'))!;
    expect(s.ratePerMinute).to.equal(4);
  });

  it('jobs outstanding where no worker consumes the queue (the worker was killed): no time left from the rate it had, the queue named, and the jobs shown active said to be held by no one', async () => {
    await runWith('orphaned', { [minuteAgo(1)]: 30, [minuteAgo(0)]: 10 });
    await store.running('orphaned', 'rollout.run', 'a', true);
    const deps = { store, ledger: createRedisLedger(redis, prefix), control: createRedisRunControl(redis, prefix), workersOf: workersOfQueues({ connection: redis, prefix }) };
    const s = (await runStatus(deps, 'orphaned'))!;
    expect(s.state).to.equal('running');
    expect(s.ratePerMinute).to.equal(20);
    expect(s.unconsumed).to.deep.equal(['rollout.run']);
    expect(s.etaMinutes).to.equal(null);
    const text = formatStatus(s);
    expect(text).to.include('rate 20.0 jobs/min; no time left estimated: no worker is consuming rollout.run, where jobs of the run are outstanding (start `envfleet worker` with the same REDIS_URL and ENVFLEET_REDIS_PREFIX)');
    expect(text).to.include('the 1 job shown active in rollout.run was taken by a worker that has stopped: nothing runs it now');
    // A worker consuming the queue again (a real BullMQ worker, listed by Redis's client list): the estimate is back.
    const connection = createRedisConnection(REDIS_URL, 'worker');
    const worker = new Worker('rollout.run', () => Promise.resolve(undefined), { connection, prefix, autorun: false });
    try {
      void worker.run();
      await worker.waitUntilReady();
      for (let i = 0; i < 100 && (await workersOfQueues({ connection: redis, prefix })('rollout.run')) === 0; i++) await new Promise(r => setTimeout(r, 50));
      const back = (await runStatus(deps, 'orphaned'))!;
      expect(back.unconsumed).to.deep.equal([]);
      expect(back.etaMinutes).to.equal(3 / 20);
      expect(formatStatus(back)).to.include('about 0.1 min left').and.not.include('no worker');
      // Paused, the run says so, not that workers are missing.
      await deps.control.pause('orphaned', 'test');
    } finally {
      await worker.close();
      connection.disconnect();
    }
    const paused = (await runStatus(deps, 'orphaned'))!;
    expect(paused.unconsumed).to.deep.equal([]);
    expect(formatStatus(paused)).to.include('while it is paused').and.not.include('no worker');
    // A run with nothing outstanding (finished, or cancelled with nothing left) is not "about 0.0 min" from its end.
    for (const state of ['finished', 'cancelled'] as const) expect(timeLeftText({ id: 'done', state, outstanding: 0, etaMinutes: 0 })).to.equal('nothing left to do');
  });

  it("names a queue paused in BullMQ (the dashboard's queue view) where jobs of the run wait, with no time left from the rate (it promised minutes left while nothing moved: a stranger's probe)", async () => {
    await runWith('stuck', { [minuteAgo(1)]: 30, [minuteAgo(0)]: 10 });
    const at = { connection: redis, prefix };
    const deps = { store, ledger: createRedisLedger(redis, prefix), control: createRedisRunControl(redis, prefix), pausedOf: pausedOfQueues(at) };
    expect(formatStatus((await runStatus(deps, 'stuck'))!)).to.include('about 0.1 min left');
    const queue = new Queue('rollout.run', { connection: redis, prefix });
    try {
      await queue.pause();
      const s = (await runStatus(deps, 'stuck'))!;
      expect(s.pausedQueues).to.deep.equal(['rollout.run']);
      expect(s.etaMinutes).to.equal(null);
      expect(formatStatus(s)).to.include("no time left estimated: the queue rollout.run, where jobs of the run are outstanding, is paused in BullMQ (the dashboard's queue view at /queues, or a Queue.pause): its jobs wait until it is resumed there");
      await queue.resume();
      expect((await runStatus(deps, 'stuck'))!.pausedQueues).to.deep.equal([]);
    } finally {
      await queue.close();
    }
  });
});
