import { expect } from 'chai';
import { budgetCommand } from '../../cli/runs.js';
import { loadConfig } from '../../config/index.js';
import { deleteRun } from '../../queues/run-delete.js';
import { cancelRun } from '../../queues/run-jobs.js';
import { runOptionsFrom, submitRollouts, submitScenarios } from '../../queues/submit.js';
import { createRedisRunControl } from '../../src/runs/control.js';
import { runKeys } from '../../src/runs/keys.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import type { EnvironmentRecord } from '../../src/synthesis/types.js';
import { rejection } from '../helpers/assert.js';
import { REDIS_URL, useRunStore } from '../helpers/integration.js';

/**
 * Commands on one run at the same moment (two shells, a script that submits per mode in parallel): the run's settings
 * are frozen by exactly one submission, and the other is told they differ; budgets set at once are all kept.
 */
describe('commands on one run at the same moment (real Redis, no workers)', function () {
  const fixture = useRunStore('submit-race');
  const { prefix } = fixture;

  const config = () => loadConfig({}, { overrides: { REDIS_URL, ENVFLEET_REDIS_PREFIX: prefix, OPENAI_BASE_URL: 'http://127.0.0.1:9/v1', OPENAI_API_KEY: 'test-key', LOG_LEVEL: 'silent' } });

  /** A run with a kept environment and a ready scenario of it (documents only: no job runs here). */
  async function readyRun(runId: string) {
    const c = config();
    const store = fixture.store;
    await store.createRun({ id: runId, createdAt: new Date().toISOString(), input: 'descriptions', options: runOptionsFrom(c) });
    const env = { id: 'env-1', runId, status: 'kept', description: { summary: 'Bibliothèque — 图书馆 📚', introduction: 'prêts' }, failure: null } as never as EnvironmentRecord;
    await store.putDoc(runId, 'env', 'env-1', env);
    const scenario = { id: 'scn-1', runId, environmentId: 'env-1', index: 0, status: 'ready', dropReason: null, task: 'Rendre le livre — 还书 📖' } as never as ScenarioRecord;
    await store.putDoc(runId, 'scenario', 'scn-1', scenario);
    return { c, store };
  }

  /** The one fulfilled and the one refused of two settled submissions. */
  function oneEach<T>(settled: PromiseSettledResult<T>[]): { won: number; lost: unknown } {
    const won = settled.findIndex(s => s.status === 'fulfilled');
    const lost = settled.find(s => s.status === 'rejected');
    expect(settled.map(s => s.status).sort(), 'one submission froze the settings, the other was refused').to.deep.equal(['fulfilled', 'rejected']);
    return { won, lost: (lost as PromiseRejectedResult).reason };
  }

  it('freezes the rollout settings of one of two envfleet rollouts at once with other settings, and refuses the other saying how they differ', async () => {
    for (let round = 0; round < 5; round++) {
      const runId = `rollouts-race-${round}`;
      const { c, store } = await readyRun(runId);
      const temperatures = [0.2, 0.9];
      const settled = await Promise.allSettled(temperatures.map(temperature => submitRollouts(c, fixture.redis, { runId, samples: 2, modes: ['non-conversational'], temperature })));
      // (both read none and both wrote: the last write won, and the first one's groups ran on the other's temperature)
      const { won, lost } = oneEach(settled);
      expect(String(lost)).to.include('already has its rollout settings').and.to.include('temperature');
      expect((await store.getDoc(runId, 'rollout-config', 'current'))!.temperature, `round ${round}`).to.equal(temperatures[won]);
    }
  });

  it('freezes the scenario settings of one of two envfleet scenarios at once with other settings, and refuses the other', async () => {
    for (let round = 0; round < 5; round++) {
      const runId = `scenarios-race-${round}`;
      const { c, store } = await readyRun(runId);
      const perEnv = [2, 3];
      const settled = await Promise.allSettled(perEnv.map(n => submitScenarios(c, fixture.redis, { runId, perEnv: n })));
      const { won, lost } = oneEach(settled);
      expect(String(lost)).to.include('already has its scenario settings');
      expect((await store.getDoc(runId, 'scenario-config', 'current'))!.perEnv, `round ${round}`).to.equal(perEnv[won]);
    }
  });

  it('keeps every budget limit set by envfleet budget commands at the same moment, and the ones a worker stored first, in the form they were given', async () => {
    const control = createRedisRunControl(fixture.redis, prefix);
    const env = { ...process.env };
    const write = process.stdout.write.bind(process.stdout);
    try {
      Object.assign(process.env, { REDIS_URL, ENVFLEET_REDIS_PREFIX: prefix });
      process.stdout.write = (() => true);
      for (let round = 0; round < 5; round++) {
        const runId = `budgets-race-${round}`;
        await readyRun(runId);
        // What a worker stored first: its configured defaults.
        await control.keepBudgets(runId, { usd: 5, tokens: 0, byStage: {} });
        // Read whole and written whole apart, each command wrote back the copy it read: the others' limits were gone.
        await Promise.all([
          budgetCommand({ run: runId, stage: 'mine.judge', tokens: 10 }),
          budgetCommand({ run: runId, stage: 'rollout.policy', usd: 0.1 }),
          budgetCommand({ run: runId, tokens: Number.MAX_SAFE_INTEGER }),
        ]);
        const stored = JSON.parse((await fixture.redis.hget(runKeys(prefix, runId).control, 'budgets'))!) as Record<string, unknown>;
        expect(stored, `round ${round}`).to.deep.equal({ usd: 5, tokens: Number.MAX_SAFE_INTEGER, byStage: { 'mine.judge': { usd: 0, tokens: 10 }, 'rollout.policy': { usd: 0.1, tokens: 0 } } });
        expect(Object.keys(stored), 'in the order budgets are said').to.deep.equal(['usd', 'tokens', 'byStage']);
      }
    } finally {
      process.stdout.write = write;
      process.env = env;
    }
  });

  it("keeps the first reason of two cancels at the same moment, and marks what was being built in its words", async () => {
    const { store } = await readyRun('cancels-race');
    await store.putDoc('cancels-race', 'env', 'env-2', { id: 'env-2', runId: 'cancels-race', status: 'building', description: { summary: 'Parking — 停车场 🅿️', introduction: '' }, failure: null } as never);
    const control = createRedisRunControl(fixture.redis, prefix);
    // (read and written apart, both cancels wrote, and the second one's reason replaced the first one's)
    await Promise.all([control.cancel('cancels-race', 'le premier — 第一'), control.cancel('cancels-race', 'le second — 第二')]);
    expect((await control.get('cancels-race')).reason).to.equal('le premier — 第一');
    await cancelRun({ connection: fixture.redis, prefix }, store, control, 'cancels-race', 'encore — 再次');
    expect((await store.getDoc('cancels-race', 'env', 'env-2'))!.failure!.message).to.equal('run cancels-race was cancelled: le premier — 第一');
  });

  it('sets no budget on a run being deleted: the record goes first, and a budget written after it is refused instead of leaving the run’s control hash for a new run of the name', async () => {
    const { store } = await readyRun('budget-deleted');
    const control = createRedisRunControl(fixture.redis, prefix);
    await control.keepBudgets('budget-deleted', { usd: 5, tokens: 0, byStage: {} });
    // The order deleteRun unlinks keys in (a connection that notes each UNLINK's first key).
    const unlinked: string[] = [];
    const watching = new Proxy(fixture.redis, {
      get(target, name, receiver) {
        if (name === 'unlink') return (...keys: string[]) => (unlinked.push(keys[0]!), target.unlink(...keys));
        return Reflect.get(target, name, receiver) as unknown;
      },
    });
    await deleteRun(watching, prefix, store, control, 'budget-deleted');
    // (the record went last: a budget command between the scan and it wrote the control hash again)
    expect(unlinked[0], 'the first key unlinked').to.equal(runKeys(prefix, 'budget-deleted').record);
    const refused = await rejection(control.patchBudgets('budget-deleted', { tokens: 7 }, { usd: 0, tokens: 0, byStage: {} }, 'mine.judge'));
    expect(refused).to.have.property('code', 'INVALID_REQUEST');
    expect(String(refused)).to.include('is gone (deleted meanwhile): no budget was set');
    expect(await fixture.redis.exists(runKeys(prefix, 'budget-deleted').control)).to.equal(0);
  });
});
