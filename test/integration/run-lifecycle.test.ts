import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { pendingKey } from '../../queues/enqueuer.js';
import { deleteRun, runsFinishedBefore } from '../../queues/run-delete.js';
import { reconcilePending } from '../../queues/run-jobs.js';
import { runStatus, type StatusDeps } from '../../queues/run-status.js';
import { runOptionsFrom, submitRollouts, submitScenarios, submitSynthesis } from '../../queues/submit.js';
import { runSink } from '../../src/datasets/sink.js';
import { createRedisLedger } from '../../src/llm/redis-ledger.js';
import { createRedisRunControl } from '../../src/runs/control.js';
import { runKey } from '../../src/runs/keys.js';
import { createRedisRunStore } from '../../src/runs/store.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import type { EnvironmentRecord } from '../../src/synthesis/types.js';
import { rejection } from '../helpers/assert.js';
import { DEMO, recordingRedis, useFleet } from '../helpers/integration.js';

const env = (runId: string, i: number, status: EnvironmentRecord['status']): EnvironmentRecord => ({
  id: `env-${i}`,
  runId,
  status,
  description: { summary: `Domain ${i} — 図書館 📚`, introduction: 'An environment with a state.' },
  failure: null,
  lineage: { runId, sourceTaskId: null, models: {}, prompts: {}, createdAt: '2026-12-01T00:00:00.000Z' },
});

async function keysOf(redis: Redis, runId: string, prefix: string): Promise<string[]> {
  const root = runKey(prefix, runId);
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${root}*`, 'COUNT', 1000);
    cursor = next;
    found.push(...keys.filter(k => k === root || k.startsWith(`${root}:`)));
  } while (cursor !== '0');
  return found;
}

describe('runs over their lifetime: status at any size, settings that do not change silently, deletion', function () {
  const fleet = useFleet();

  it('reads a run’s status with the same Redis commands for 10 items as for 2,000, and counts by status and stage correctly', async () => {
    const f = await fleet({ workers: false });
    // A connection that counts the commands it sends (how much work a read costs, independent of the machine).
    const { redis: counting, sent } = recordingRedis();
    try {
      const prefix = f.config.redis.prefix;
      const countingDeps: StatusDeps = { store: createRedisRunStore(counting, prefix), ledger: createRedisLedger(counting, prefix), control: createRedisRunControl(counting, prefix) };
      await f.store.createRun({ id: 'big', createdAt: new Date().toISOString(), input: 'descriptions', options: runOptionsFrom(f.config) });
      const grow = async (from: number, to: number) => {
        for (let i = from; i < to; i += 1) await f.store.putDoc('big', 'env', `env-${i}`, env('big', i, i % 3 === 0 ? 'kept' : 'building'));
        await f.store.addPending('big', Array.from({ length: to - from }, (_, k) => pendingKey('skeleton.state', `job-${from + k}`)));
      };
      await grow(0, 10);
      const before = sent.length;
      const small = (await runStatus(countingDeps, 'big'))!;
      const smallCost = sent.length - before;
      await grow(10, 2_000);
      // An environment changes status: the counts follow, in the same write.
      await f.store.putDoc('big', 'env', 'env-1', env('big', 1, 'kept'));
      await f.store.donePending('big', pendingKey('skeleton.state', 'job-0'));
      const mid = sent.length;
      const large = (await runStatus(countingDeps, 'big'))!;
      expect(sent.length - mid).to.equal(smallCost);
      expect(small.environments).to.deep.equal({ kept: 4, building: 6 });
      expect(large.environments).to.deep.equal({ kept: 668, building: 1_332 });
      expect(large.outstanding).to.equal(1_999);
      expect(large.stages.find(s => s.stage === 'skeleton.state')).to.deep.include({ waiting: 1_999, running: 0 });
      expect(large.redis.byArea['doc:env']).to.be.greaterThan(0);
      expect(large.redis.perItem.environment).to.equal(Math.round(large.redis.byArea['doc:env']! / 2_000));
      expect(large.state).to.equal('running');
    } finally {
      counting.disconnect();
    }
  });

  it('refuses a re-submission with other settings, naming each difference, and accepts the same one', async () => {
    const f = await fleet({ workers: false });
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-resubmit-'));
    const descriptions = join(dir, 'd.jsonl');
    await writeFile(descriptions, `${JSON.stringify({ summary: 'Library', introduction: 'A library with members, books and loans.' })}\n`);
    await submitSynthesis(f.config, f.redis, { runId: 'r', descriptions, probeSteps: 8 });
    expect(await submitSynthesis(f.config, f.redis, { runId: 'r', descriptions, probeSteps: 8 })).to.deep.include({ created: false, jobsAdded: 0 });
    const synth = await rejection(submitSynthesis(f.config, f.redis, { runId: 'r', descriptions, probeSteps: 12, maxEnvs: 5 }));
    expect(synth).to.have.property('code', 'INVALID_REQUEST');
    expect(String(synth)).to.include('probeSteps: 8 → 12 (--probe-steps or ENVFLEET_PROBE_STEPS)').and.to.include('maxEnvs: 0 → 5 (--max-envs)');

    // No worker runs here: the environment is made kept, and a scenario ready, by hand (there must be something to submit).
    const [envId] = await f.store.listDocIds('r', 'env');
    await f.store.putDoc('r', 'env', envId!, { ...(await f.store.getDoc('r', 'env', envId!))!, status: 'kept' });
    const readyScenario = (runId: string) => f.store.putDoc(runId, 'scenario', 's1', { id: 's1', runId, environmentId: envId!, index: 0, status: 'ready' } as unknown as ScenarioRecord);
    await submitScenarios(f.config, f.redis, { runId: 'r', perEnv: 3 });
    await readyScenario('r');
    const scenarios = await rejection(submitScenarios(f.config, f.redis, { runId: 'r', perEnv: 3, verifyWith: 'reference' }));
    expect(String(scenarios)).to.include('verifyWith: null → "reference" (--verify-with)');

    await submitRollouts(f.config, f.redis, { runId: 'r', samples: 2, modes: ['non-conversational'] });
    await submitRollouts(f.config, f.redis, { runId: 'r', samples: 2, modes: ['non-conversational'] });
    const rollouts = await rejection(submitRollouts(f.config, f.redis, { runId: 'r', samples: 3, modes: ['non-conversational'] }));
    expect(rollouts).to.have.property('code', 'INVALID_REQUEST');
    expect(String(rollouts)).to.include('samples: 2 → 3 (--samples)');
    expect((await f.store.getDoc('r', 'rollout-config', 'current'))?.samples).to.equal(2);
    // Another policy is not a changed setting but a generation of its own, frozen in its turn — only on
    // purpose: it needs a version of its own (a forgotten or mistyped flag does not start a paid generation).
    const unnamed = await rejection(submitRollouts(f.config, f.redis, { runId: 'r', samples: 3, modes: ['non-conversational'], policyModel: 'new-checkpoint' }));
    // (The first policy named by its model, the profile's when no --model was given; it said "model null".)
    expect(String(unnamed)).to.match(/policy model "[^"]+" \(the rollout\.policy profile's, no --model given\)/).and.to.match(/--policy-version of its own/);
    const generation = await submitRollouts(f.config, f.redis, { runId: 'r', samples: 3, modes: ['non-conversational'], policyModel: 'new-checkpoint', policyVersion: 'step-2000' });
    expect(generation.policy).to.match(/^p-[0-9a-f]{12}$/);
    expect((await f.store.getDoc('r', 'rollout-config', generation.policy!))?.policyModel).to.equal('new-checkpoint');
    const again = await rejection(submitRollouts(f.config, f.redis, { runId: 'r', samples: 4, modes: ['non-conversational'], policyModel: 'new-checkpoint', policyVersion: 'step-2000' }));
    expect(String(again)).to.include('samples: 3 → 4');
    // Two first submissions at once: one is the run's first generation, the other a generation of its own.
    await f.store.createRun({ ...(await f.store.getRun('r'))!, id: 'r2' });
    await readyScenario('r2');
    const both = await Promise.all(['v1', 'v2'].map(v => submitRollouts(f.config, f.redis, { runId: 'r2', samples: 2, modes: ['non-conversational'], policyVersion: v })));
    expect(both.filter(b => b.policy === undefined)).to.have.length(1);
    const later = both.find(b => b.policy !== undefined)!;
    expect((await f.store.getDoc('r2', 'rollout-config', later.policy!))?.policyVersion).to.equal(later.config.policyVersion);
    expect((await f.store.getDoc('r2', 'rollout-config', 'current'))?.policyVersion).to.equal(both.find(b => b.policy === undefined)!.config.policyVersion);
  });

  it('creates no run and freezes nothing when a submission has nothing valid to submit (a missing, empty or wrong file; no kept environment; no ready scenario)', async () => {
    const f = await fleet({ workers: false });
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-nothing-'));
    const empty = join(dir, 'empty.jsonl');
    await writeFile(empty, '\n');
    const descriptions = join(dir, 'd.jsonl');
    await writeFile(descriptions, `${JSON.stringify({ summary: 'Library', introduction: 'A library with members, books and loans.' })}\n`);

    const missing = await rejection(submitSynthesis(f.config, f.redis, { runId: 'v4', tasks: join(dir, 'nope.jsonl'), language: 'python' }));
    expect(missing).to.have.property('code', 'INPUT_FILE_INVALID');
    expect(String(missing)).to.include('nope.jsonl').and.to.include('cannot read');
    const nothing = await rejection(submitSynthesis(f.config, f.redis, { runId: 'v4', tasks: empty, language: 'python' }));
    expect(nothing).to.have.property('code', 'INPUT_FILE_INVALID');
    expect(String(nothing)).to.include('the file is empty').and.to.include('run "v4" was not created');
    // A descriptions file given as --tasks: every line is wrong, and says why.
    const wrongKind = await rejection(submitSynthesis(f.config, f.redis, { runId: 'v4', tasks: descriptions, language: 'python' }));
    expect(String(wrongKind)).to.include('line 1: task').and.to.include('{"task": TEXT');
    expect(await f.store.getRun('v4')).to.equal(null);
    // The corrected command is not refused for options frozen by a failed one.
    expect(await submitSynthesis(f.config, f.redis, { runId: 'v4', descriptions })).to.deep.include({ created: true, items: 1 });

    const noEnvs = await rejection(submitScenarios(f.config, f.redis, { runId: 'e', perEnv: 2, environments: empty }));
    expect(noEnvs).to.have.property('code', 'INPUT_FILE_INVALID');
    expect(await f.store.getRun('e')).to.equal(null);
    const noKept = await rejection(submitScenarios(f.config, f.redis, { runId: 'v4', perEnv: 2 }));
    expect(String(noKept)).to.include('no kept environment').and.to.include('envfleet status --run v4');
    expect(await f.store.getDoc('v4', 'scenario-config', 'current')).to.equal(null);
    const noReady = await rejection(submitRollouts(f.config, f.redis, { runId: 'v4', samples: 2, modes: ['non-conversational'] }));
    expect(noReady).to.have.property('code', 'INVALID_REQUEST');
    expect(String(noReady)).to.include('no ready scenario').and.to.include('nothing to roll out');
    expect(await f.store.getDoc('v4', 'rollout-config', 'current')).to.equal(null);
  });

  it('reconciles outstanding entries: a job that ended or never came is let go, one that exists is kept', async () => {
    const f = await fleet({ workers: false });
    const at = { connection: f.redis, prefix: f.config.redis.prefix };
    const queue = new Queue('mine.judge', { connection: f.redis, prefix: f.config.redis.prefix });
    try {
      await queue.add('mine.judge', { runId: 'r', taskId: 't1' }, { jobId: 'waiting-job' });
      await f.store.addPending('r', [pendingKey('mine.judge', 'waiting-job'), pendingKey('mine.judge', 'never-added')]);
      expect(await reconcilePending(at, f.store, 'r', { unknownGraceMs: 50 })).to.equal(1);
      expect(await f.store.pending('r')).to.deep.equal([pendingKey('mine.judge', 'waiting-job')]);
      expect(await f.store.pendingByStage('r')).to.deep.equal({ 'mine.judge': 1 });
    } finally {
      await queue.close();
    }
  });

  it('deletes a finished run entirely — documents, counters, cache, ledger, stream, finished jobs — and refuses one with outstanding jobs', async () => {
    const f = await fleet();
    await submitSynthesis(f.config, f.redis, { runId: 'done', tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
    await f.waitForRun('done');
    const prefix = f.config.redis.prefix;
    const before = await keysOf(f.redis, 'done', prefix);
    expect(before.some(k => k.includes(':cache:'))).to.equal(true);
    expect(before.some(k => k.endsWith(':ledger'))).to.equal(true);
    const status = (await runStatus({ store: f.store, ledger: f.workers.ctx.ledger, control: f.workers.ctx.runControl }, 'done'))!;
    expect(status.state).to.equal('finished');
    expect(status.redis.byArea).to.have.property('cache:mine.judge');
    expect(status.redis.perItem.environment).to.be.greaterThan(0);
    // A run that never had a job (listed as finished) counts as finished when it was created.
    await f.store.createRun({ id: 'empty', createdAt: new Date(Date.now() - 1_000).toISOString(), input: 'tasks', options: runOptionsFrom(f.config) });
    expect(await runsFinishedBefore(f.store, new Date(Date.now() + 60_000))).to.deep.equal(['done', 'empty']);
    expect(await runsFinishedBefore(f.store, new Date(Date.now() - 3_600_000))).to.deep.equal([]);
    await deleteRun(f.redis, f.config.redis.prefix, f.store, f.workers.ctx.runControl, 'empty');

    // A run with outstanding jobs is refused.
    await f.workers.ctx.runControl.pause('busy', 'hold it');
    await submitSynthesis(f.config, f.redis, { runId: 'busy', tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
    const busy = await rejection(deleteRun(f.redis, prefix, f.store, f.workers.ctx.runControl, 'busy'));
    expect(String(busy)).to.match(/outstanding jobs; cancel it first/);

    const deleted = await deleteRun(f.redis, prefix, f.store, f.workers.ctx.runControl, 'done');
    expect(deleted.keys).to.equal(before.length);
    expect(deleted.jobs).to.be.greaterThan(0);
    expect(await keysOf(f.redis, 'done', prefix)).to.deep.equal([]);
    expect(await f.store.listRuns()).to.not.include('done');
    const judge = new Queue('mine.judge', { connection: f.redis, prefix });
    try {
      const left = await judge.getJobs(['completed', 'failed']);
      expect(left.filter(j => (j.data as { runId: string }).runId === 'done')).to.deep.equal([]);
    } finally {
      await judge.close();
    }
    // The other run is untouched.
    expect(await f.store.getRun('busy')).to.not.equal(null);

    // Keys under a name without a run record (a run written by an older layout) are removed too; a name
    // with nothing under it is refused.
    await f.redis.set(`${prefix}:run:orphan:doc:judge:t1`, '{"needsEnvironment":true}');
    await f.redis.set(`${prefix}:run:orphan:ids:judge`, 'x');
    expect(await deleteRun(f.redis, prefix, f.store, f.workers.ctx.runControl, 'orphan')).to.deep.equal({ runId: 'orphan', keys: 2, jobs: 0 });
    expect(String(await rejection(deleteRun(f.redis, prefix, f.store, f.workers.ctx.runControl, 'orphan')))).to.match(/run "orphan" does not exist/);
  });

  it('refuses to create a run over what an earlier run of the name left without its record (Redis lost it while workers wrote), saying how to clear it', async () => {
    // A stranger's probe: Redis restarted empty mid-run, the old run's workers went on writing (trajectories, ledger,
    // counters), and a new run of the same name counted 274 of its requests and 128 episodes as its own.
    const f = await fleet({ workers: false });
    const prefix = f.config.redis.prefix;
    const ledger = createRedisLedger(f.redis, prefix);
    const control = createRedisRunControl(f.redis, prefix);
    const record = { id: 'lost', createdAt: new Date().toISOString(), input: 'tasks' as const, options: runOptionsFrom(f.config) };
    expect(await f.store.createRun(record)).to.equal(true);
    await ledger.record({ id: 'call-1', runId: 'lost', stage: 'rollout.policy', model: 'm', usage: { promptTokens: 10, completionTokens: 2 }, cached: false, costUsd: 0, priced: false });
    // The record gone (as after a restart), the ledger written after it.
    await f.redis.del(runKey(prefix, 'lost', false));
    const refused = await rejection(f.store.createRun(record));
    expect(refused).to.have.property('code', 'INVALID_REQUEST');
    expect(String(refused)).to.include('Redis holds data of an earlier run named "lost"').and.to.include('envfleet runs delete --run lost');
    expect(await f.store.getRun('lost')).to.equal(null);
    await deleteRun(f.redis, prefix, f.store, control, 'lost');
    expect(await f.store.createRun(record)).to.equal(true);
    expect((await ledger.totals('lost')).requests).to.equal(0);

    // Its sink's folder: the earlier run of the name wrote there, so this one is refused there (their trajectory ids are
    // the same: the sink would keep the earlier run's lines for this one's); the earlier run itself goes on there.
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-sink-again-'));
    await runSink({ redis: f.redis, prefix, store: f.store, runId: 'lost', dir });
    await deleteRun(f.redis, prefix, f.store, control, 'lost');
    await f.store.createRun({ ...record, createdAt: new Date(Date.now() + 1000).toISOString() });
    const again = await rejection(runSink({ redis: f.redis, prefix, store: f.store, runId: 'lost', dir }));
    expect(again).to.have.property('code', 'INVALID_REQUEST');
    expect(String(again)).to.include('holds trajectories of an earlier run named "lost"').and.to.include('Give the sink another --out');
    await runSink({ redis: f.redis, prefix, store: f.store, runId: 'lost', dir: await mkdtemp(join(tmpdir(), 'envfleet-sink-new-')) });
  });

  it('deletes what a run left without its record, its finished jobs included, so that a new run of its name runs again', async () => {
    // A reviewer's case: the leftovers deleted but not the run's finished jobs (kept 30 days under ids made from its
    // name): the new run found every job done, added nothing, and finished empty.
    const f = await fleet();
    const prefix = f.config.redis.prefix;
    await submitSynthesis(f.config, f.redis, { runId: 'again', tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
    await f.waitForRun('again');
    await f.redis.del(runKey(prefix, 'again', false));
    expect(String(await rejection(submitSynthesis(f.config, f.redis, { runId: 'again', tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 })))).to.include('envfleet runs delete --run again');
    const deleted = await deleteRun(f.redis, prefix, f.store, f.workers.ctx.runControl, 'again');
    expect(deleted.jobs, 'its finished jobs').to.be.greaterThan(0);
    const fresh = await submitSynthesis(f.config, f.redis, { runId: 'again', tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
    expect(fresh).to.deep.include({ created: true });
    expect(fresh.jobsAdded).to.be.greaterThan(0);
  });
});
