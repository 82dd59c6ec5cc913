import { Queue } from 'bullmq';
import { expect } from 'chai';
import { join } from 'node:path';
import { PIPELINE } from '../../queues/pipeline.js';
import { submitRollouts, submitSynthesis } from '../../queues/submit.js';
import { parseModelScript } from '../../src/model-server/index.js';
import { isArchived, type Trajectory } from '../../src/rollouts/types.js';
import type { RunStore } from '../../src/runs/store.js';
import { SANDBOX_FULL_WAITS_FIELD } from '../../workers/bootstrap.js';
import { buildDemoRun, DEMO, until, useFleet, type Fleet } from '../helpers/integration.js';

/**
 * Environments a model wrote carelessly (not hostile): a constructor that builds a large state, states and
 * results near the size caps. Real Redis, real workers with their real sandbox pool, the scripted model
 * server. No timing assertions.
 */

const tool = (name: string, properties: Record<string, unknown> = {}) => ({ type: 'function' as const, function: { name, description: name, parameters: { type: 'object', properties } } });

/** Builds `records` records in its constructor: about 20 MiB of sandbox heap for 50,000 (a 3.5 MB state). */
const BIG_CONSTRUCTOR = `class Careless {
  constructor(s) {
    this.state = s;
    this.state.items = [];
    for (let i = 0; i < s.records; i++) this.state.items.push({ id: 'R' + i, name: 'record number ' + i, tags: ['a', 'b'], n: i });
  }
  count() { return { success: true, data: this.state.items.length }; }
}`;

async function trajectoriesOf(store: RunStore, runId: string): Promise<Trajectory[]> {
  const out: Trajectory[] = [];
  for (const id of await store.listDocIds(runId, 'trajectory')) {
    const t = (await store.getDoc(runId, 'trajectory', id))!;
    if (isArchived(t)) throw new Error(`trajectory ${id} was archived`);
    out.push(t);
  }
  return out;
}

describe('careless environments (real Redis, real workers and sandbox pool)', function () {
  const fleet = useFleet();
  let f: Fleet;

  it('episodes whose sandbox thread is full of their neighbours’ environments run again instead of being recorded as environment-error', async () => {
    // The careless scenarios' policy takes its time, so their large environments live side by side in the one thread.
    const extra = parseModelScript({
      rules: [
        { stage: 'rollout.policy', matchLast: '^user: careless task', fault: { type: 'delay', ms: 1000 }, respond: { toolCalls: [{ name: 'count', arguments: {} }] } },
        { stage: 'rollout.policy', matchLast: '^tool: \\{"success":true,"data":50000\\}$', fault: { type: 'delay', ms: 1000 }, respond: { content: 'There are 50000 records.' } },
      ],
    }, 'careless');
    // One sandbox thread of 80 MiB: about three of these environments fit at once, and six episodes start together.
    f = await fleet({ extra, overrides: { ENVFLEET_POOL_THREADS: '1', ENVFLEET_SANDBOX_HEAP_MB: '80', ENVFLEET_POOL_TASKS_PER_THREAD: '32', ENVFLEET_ROLLOUT_CONCURRENCY: '32', ENVFLEET_JOB_ATTEMPTS: '12' } });
    const ready = await buildDemoRun(f, 'full');
    const demoEnv = (await f.store.getDoc('full', 'env', (await f.store.listDocIds('full', 'env'))[0]!))!;
    await f.store.putDoc('full', 'env', 'env-careless', { ...demoEnv, id: 'env-careless', className: 'Careless', source: BIG_CONSTRUCTOR, tools: [tool('count')] });
    for (const id of ['sc-big-1', 'sc-big-2', 'sc-big-3']) {
      await f.store.putDoc('full', 'scenario', id, {
        ...ready[0]!,
        id,
        environmentId: 'env-careless',
        initialState: { records: 50000 },
        task: `careless task ${id}`,
        checklist: [{ item: 'all records are there', check: 'function check(f) { return f.items.length === 50000; }' }],
      });
    }
    await submitRollouts(f.config, f.redis, { runId: 'full', samples: 2, modes: ['non-conversational'] });
    await f.waitForRun('full');

    const all = await trajectoriesOf(f.store, 'full');
    const careless = all.filter(t => t.environmentId === 'env-careless');
    expect(careless).to.have.length(6);
    // Each one as it ends alone in the thread: nothing recorded for a neighbour's memory.
    for (const t of careless) expect({ reason: t.termination.reason, detail: t.termination.detail, reward: t.reward }, `${t.scenarioId} #${t.sample}`).to.deep.equal({ reason: 'agent-finished', detail: null, reward: 1 });
    expect(all.filter(t => t.termination.reason === 'environment-error')).to.deep.equal([]);
    // The thread was full: some episodes came back later (no attempt used).
    const queue = new Queue('rollout.run', { connection: f.redis, prefix: f.config.redis.prefix });
    try {
      const jobs = (await queue.getJobs(['completed'])).filter(j => String((j.data as { scenarioId?: unknown }).scenarioId).startsWith('sc-big'));
      const waits = await Promise.all(jobs.map(async j => Number(await f.redis.hget(queue.toKey(j.id!), SANDBOX_FULL_WAITS_FIELD))));
      expect(waits.some(w => w > 0), 'some careless episode found the thread full').to.equal(true);
      expect(jobs.map(j => j.attemptsMade), 'no attempt used for the full thread').to.satisfy((a: number[]) => a.every(n => n <= 1));
    } finally {
      await queue.close();
    }
  });

  it("synthesis under a sandbox thread full of other work's environments runs its stage again, and keeps and rejects what it would alone", async () => {
    // One thread of 64 MiB, filled by environments the test holds open (as concurrent rollouts would), while synth runs.
    f = await fleet({ overrides: { ENVFLEET_POOL_THREADS: '1', ENVFLEET_SANDBOX_HEAP_MB: '64', ENVFLEET_POOL_TASKS_PER_THREAD: '32', ENVFLEET_JOB_ATTEMPTS: '8', ENVFLEET_JOB_BACKOFF_MS: '200' } });
    const sandbox = f.workers.ctx.sandbox;
    const held = [];
    // Large environments first, then smaller ones, until not even an empty one has room.
    for (const records of [50000, 5000, 500, 0]) {
      for (;;) {
        try {
          held.push(await sandbox.openSession({ name: 'hoard', className: 'Careless', source: BIG_CONSTRUCTOR, tools: [tool('count')] }, { records }, { ...f.config.sandbox, createDeadlineMs: 30_000 }));
        } catch (err) {
          expect(err).to.have.property('code', 'SANDBOX_MEMORY_FULL');
          break;
        }
      }
    }
    expect(held.length).to.be.greaterThan(2);
    await submitSynthesis(f.config, f.redis, { runId: 'busy-synth', tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
    // Long in the unit that matters: a stage met the full thread and was taken again.
    const queues = PIPELINE.names.map(name => new Queue(name, { connection: f.redis, prefix: f.config.redis.prefix }));
    try {
      await until(async () => {
        for (const q of queues) for (const j of await q.getJobs(['delayed', 'wait', 'active', 'completed', 'failed'])) if (Number(await f.redis.hget(q.toKey(j.id!), SANDBOX_FULL_WAITS_FIELD)) > 0) return true;
        return false;
      }, 'a synthesis stage to meet the full thread');
    } finally {
      await Promise.all(queues.map(q => q.close()));
    }
    for (const s of held) await s.close();
    await f.waitForRun('busy-synth');
    // What the demo's synthesis keeps and rejects on an idle thread (README): the library and the garage kept, the clinic rejected.
    const statuses: Record<string, string> = {};
    for (const id of await f.store.listDocIds('busy-synth', 'env')) {
      const env = (await f.store.getDoc('busy-synth', 'env', id))!;
      statuses[env.state?.className ?? id] = env.status;
    }
    expect(Object.values(statuses).sort()).to.deep.equal(['kept', 'kept', 'rejected']);
    expect(await f.store.statusCounts('busy-synth', 'env')).to.not.have.property('failed');
  });
});
