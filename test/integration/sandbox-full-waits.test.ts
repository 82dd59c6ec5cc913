import { Queue, type Job } from 'bullmq';
import { expect } from 'chai';
import { formatStatus } from '../../cli/runs.js';
import { runStatus } from '../../queues/run-status.js';
import { submitRollouts } from '../../queues/submit.js';
import { isArchived, type Trajectory } from '../../src/rollouts/types.js';
import type { RunStore } from '../../src/runs/store.js';
import type { EnvSession } from '../../src/sandbox/runner.js';
import { buildDemoRun, until, useFleet, type Fleet } from '../helpers/integration.js';

/**
 * Episodes whose sandbox thread stays full of other work's memory (SANDBOX_MEMORY_FULL) for longer than their job's
 * attempts last. Real Redis, real BullMQ workers, their real piscina pool, the scripted model server. The thread is
 * kept full by environments the test opens in the workers' own sandbox (as a careless co-tenant would), and "long" is
 * counted in starts of the job, never in wall time: two attempts, a backoff of 100 ms.
 */

const tool = (name: string) => ({ type: 'function' as const, function: { name, description: name, parameters: { type: 'object', properties: {} } } });

/** Builds `records` records in its constructor: about 20 MiB of sandbox heap for 50,000. */
const HOARDER = `class Hoarder {
  constructor(s) {
    this.state = s;
    this.state.items = [];
    for (let i = 0; i < s.records; i++) this.state.items.push({ id: 'R' + i, name: 'record number ' + i, tags: ['a', 'b'], n: i });
  }
  count() { return { success: true, data: this.state.items.length }; }
}`;

/** Opens environments in the workers' sandbox, large ones first, until not even an empty one has room. */
async function fillTheThread(f: Fleet): Promise<EnvSession[]> {
  const held: EnvSession[] = [];
  for (const records of [50000, 5000, 500, 0]) {
    for (;;) {
      try {
        held.push(await f.workers.ctx.sandbox.openSession({ name: 'hoard', className: 'Hoarder', source: HOARDER, tools: [tool('count')] }, { records }, { ...f.config.sandbox, createDeadlineMs: 30_000 }));
      } catch (err) {
        expect(err).to.have.property('code', 'SANDBOX_MEMORY_FULL');
        break;
      }
    }
  }
  expect(held.length).to.be.greaterThan(2);
  return held;
}

/** Where the workers count a job's waits for a full thread, in the job's hash (SANDBOX_FULL_WAITS_FIELD, workers/bootstrap.ts). */
const SANDBOX_FULL_WAITS_FIELD = 'envfleetSandboxFullWaits';

async function trajectoriesOf(store: RunStore, runId: string): Promise<Trajectory[]> {
  const out: Trajectory[] = [];
  for (const id of await store.listDocIds(runId, 'trajectory')) {
    const t = (await store.getDoc(runId, 'trajectory', id))!;
    if (isArchived(t)) throw new Error(`trajectory ${id} was archived`);
    out.push(t);
  }
  return out;
}

describe('a sandbox thread full of other work for longer than the attempts last (real Redis, workers and sandbox pool)', function () {
  const fleet = useFleet();
  // One thread of 64 MiB; two attempts with a backoff of 100 ms: before the wait, a thread full for three starts ended the episode.
  const overrides = { ENVFLEET_POOL_THREADS: '1', ENVFLEET_SANDBOX_HEAP_MB: '64', ENVFLEET_POOL_TASKS_PER_THREAD: '32', ENVFLEET_JOB_ATTEMPTS: '2', ENVFLEET_JOB_BACKOFF_MS: '100' } as const;

  it('episodes wait for the memory without using attempts, are not recorded as environment-error, and complete once it is free', async () => {
    const f = await fleet({ overrides });
    const ready = await buildDemoRun(f, 'full-wait');
    expect(ready.length).to.be.greaterThan(0);
    const held = await fillTheThread(f);
    await submitRollouts(f.config, f.redis, { runId: 'full-wait', samples: 1, modes: ['non-conversational'] });
    const queue = new Queue('rollout.run', { connection: f.redis, prefix: f.config.redis.prefix });
    try {
      const attempts = f.config.jobs.attempts;
      let jobs: Job[] = [];
      // Long in the unit that matters: every episode started more than twice its attempts while the thread was full
      // (or, as before the wait, recorded for good).
      await until(async () => {
        jobs = await queue.getJobs(['delayed', 'wait', 'active', 'completed', 'failed']);
        if ((await f.store.listDocIds('full-wait', 'trajectory')).length > 0) return true;
        return jobs.length === ready.length && jobs.every(j => j.attemptsStarted > 2 * attempts);
      }, 'every episode to meet the full thread more times than it has attempts');
      expect(await trajectoriesOf(f.store, 'full-wait'), 'recorded while the thread was full').to.deep.equal([]);
      for (const j of jobs) expect(j.attemptsMade, `${j.id} used no attempt`).to.equal(0);

      for (const s of held) await s.close();
      await f.waitForRun('full-wait');
      const all = await trajectoriesOf(f.store, 'full-wait');
      expect(all).to.have.length(ready.length);
      expect(all.filter(t => t.termination.reason === 'environment-error').map(t => t.termination.detail)).to.deep.equal([]);
      for (const t of all) expect({ reason: t.termination.reason, detail: t.termination.detail }, t.scenarioId).to.deep.equal({ reason: 'agent-finished', detail: null });
      const done = await queue.getJobs(['completed']);
      expect(done).to.have.length(ready.length);
      let allWaits = 0;
      for (const j of done) {
        const waits = Number(await f.redis.hget(queue.toKey(j.id!), SANDBOX_FULL_WAITS_FIELD));
        expect(waits, `${j.id}'s waits`).to.be.greaterThan(2 * attempts - 1);
        allWaits += waits;
      }
      // The run's status counts them (envfleet status: "waits for sandbox room"), each once.
      expect((await f.store.counters('full-wait'))['waits']).to.deep.equal({ SANDBOX_MEMORY_FULL: allWaits });
      const status = (await runStatus({ store: f.store, ledger: f.workers.ctx.ledger, control: f.workers.ctx.runControl }, 'full-wait'))!;
      expect(formatStatus(status)).to.include(`waits for sandbox room: SANDBOX_MEMORY_FULL ${allWaits} (jobs that came back later without using an attempt`);
    } finally {
      await queue.close();
    }
  });

  it('a thread that never frees ends the episode after ENVFLEET_SANDBOX_FULL_WAITS waits and its attempts, as environment-error saying so', async () => {
    const f = await fleet({ overrides: { ...overrides, ENVFLEET_SANDBOX_FULL_WAITS: '3' } });
    const ready = await buildDemoRun(f, 'full-forever');
    const held = await fillTheThread(f);
    try {
      await submitRollouts(f.config, f.redis, { runId: 'full-forever', samples: 1, modes: ['non-conversational'] });
      await f.waitForRun('full-forever');
      const all = await trajectoriesOf(f.store, 'full-forever');
      expect(all).to.have.length(ready.length);
      for (const t of all) {
        expect(t.termination.reason, t.scenarioId).to.equal('environment-error');
        expect(t.reward).to.equal(null);
        expect(t.termination.detail).to.match(/^\[SANDBOX_MEMORY_FULL\] /);
        expect(t.termination.detail).to.contain('come back 3 times for a full sandbox thread or a lost Python interpreter without using an attempt, the most ENVFLEET_SANDBOX_FULL_WAITS=3 allows: the thread stayed full');
      }
      const queue = new Queue('rollout.run', { connection: f.redis, prefix: f.config.redis.prefix });
      try {
        const failed = await queue.getJobs(['failed']);
        expect(failed).to.have.length(ready.length);
        for (const j of failed) {
          // Three waits, then its two attempts: five starts, no more.
          expect({ starts: j.attemptsStarted, attempts: j.attemptsMade, waits: await f.redis.hget(queue.toKey(j.id!), SANDBOX_FULL_WAITS_FIELD) }, j.id).to.deep.equal({ starts: 5, attempts: 2, waits: '3' });
        }
      } finally {
        await queue.close();
      }
    } finally {
      for (const s of held) await s.close();
    }
  });
});
