import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { loadConfig } from '../../../config/index.js';
import { runOptionsFrom } from '../../../queues/submit.js';
import { rolloutsLookup, writeImported } from '../../../src/importers/write.js';
import { trajectoryIdOf } from '../../../src/runs/ids.js';
import { createRedisRunStore, type RunStore } from '../../../src/runs/store.js';
import type { ScenarioRecord } from '../../../src/scenarios/types.js';

const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';

const scenario = (id: string, index: number, task: string): ScenarioRecord =>
  ({
    id, runId: 'imp', environmentId: 'bfcl-NoteBoard', index, status: 'ready', initialState: { notes: [] }, task,
    checklist: [{ item: 'ok', language: 'python', check: 'def check_func(final_state):\n    return True\n' }],
    lineage: { runId: 'imp', environmentId: 'bfcl-NoteBoard', models: {}, prompts: {}, createdAt: '2026-12-07T00:00:00.000Z', source: 'bfcl' },
  }) as unknown as ScenarioRecord;

describe('writing an imported scenario again (real Redis)', () => {
  const prefix = `envfleet-test-import-write-${randomUUID().slice(0, 8)}`;
  let redis: Redis;
  let store: RunStore;
  before(async () => {
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    store = createRedisRunStore(redis, prefix);
    await store.createRun({ id: 'imp', createdAt: '2026-12-07T00:00:00.000Z', input: 'bfcl', options: runOptionsFrom(loadConfig({})) });
  });
  after(async () => {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  it("leaves one whose place among its environment's scenarios alone moved as it was (BFCL's --limit renumbered 4 unchanged entries, 'updated')", async () => {
    expect(await writeImported(store, 'imp', 'scenario', scenario('multi_turn_miss_func_0', 1, 'Note « café » ☕'), 'bfcl')).to.deep.equal({ outcome: 'imported' });
    expect(await writeImported(store, 'imp', 'scenario', scenario('multi_turn_miss_func_0', 3, 'Note « café » ☕'), 'bfcl')).to.deep.equal({ outcome: 'unchanged' });
    expect((await store.getDoc('imp', 'scenario', 'multi_turn_miss_func_0'))!.index).to.equal(1);
    expect(await writeImported(store, 'imp', 'scenario', scenario('multi_turn_miss_func_0', 3, 'Note « thé » 🍵'), 'bfcl')).to.deep.equal({ outcome: 'updated' });
  });

  it('refuses to change one whose earlier version has episodes rolled out (their rewards came from its earlier checks), by the scenario its trajectories name', async () => {
    expect(await writeImported(store, 'imp', 'scenario', scenario('t1', 0, 'Tâche 一'), 'bfcl')).to.deep.equal({ outcome: 'imported' });
    // An episode of it, its group not written yet (a group is written once all its episodes are); trajectory ids are hashes.
    const trj = trajectoryIdOf('imp', 't1', 'conversational', 0);
    await store.putDoc('imp', 'trajectory', trj, { id: trj, runId: 'imp', scenarioId: 't1' } as never);
    expect(await writeImported(store, 'imp', 'scenario', scenario('t1', 0, 'Tâche 二'), 'bfcl', undefined, rolloutsLookup(store, 'imp'))).to.deep.equal({ outcome: 'rolled-out' });
    expect((await store.getDoc('imp', 'scenario', 't1'))!.task).to.equal('Tâche 一');
    // Moved in its file only: written, not refused.
    const moved = { ...scenario('t1', 0, 'Tâche 一'), lineage: { ...scenario('t1', 0, 'Tâche 一').lineage, original: { file: 'rl.json', record: 'line 9' } } } as unknown as ScenarioRecord;
    expect(await writeImported(store, 'imp', 'scenario', moved, 'bfcl', undefined, rolloutsLookup(store, 'imp'))).to.deep.equal({ outcome: 'updated' });
    // A scenario whose id starts with the other's and a dot (EnvScaler ids may hold dots) is not taken for it.
    expect(await writeImported(store, 'imp', 'scenario', scenario('t1.b', 0, 'Tâche 三'), 'bfcl')).to.deep.equal({ outcome: 'imported' });
    expect(await writeImported(store, 'imp', 'scenario', scenario('t1.b', 0, 'Tâche 四'), 'bfcl', undefined, rolloutsLookup(store, 'imp'))).to.deep.equal({ outcome: 'updated' });
  });

  it('refuses to change an environment whose earlier version has episodes rolled out (they ran its earlier code), by the environment its trajectories name; moved in its file only, it is written', async () => {
    const env = (source: string, file = 'notes.py') =>
      ({
        id: 'bfcl-Carnet', runId: 'imp', status: 'kept', className: 'Carnet', language: 'python', source, tools: [], description: { summary: 'carnet', introduction: 'Un carnet 📓.' },
        lineage: { runId: 'imp', sourceTaskId: null, models: {}, prompts: {}, createdAt: '2026-12-07T00:00:00.000Z', source: 'bfcl', original: { envId: 'Carnet', className: 'Carnet', file, record: 'Carnet' } },
      }) as never;
    expect(await writeImported(store, 'imp', 'env', env('class Carnet:\n    pass  # « v1 »\n'), 'bfcl')).to.deep.equal({ outcome: 'imported' });
    // Without episodes: a changed environment is written.
    expect(await writeImported(store, 'imp', 'env', env('class Carnet:\n    pass  # « v2 »\n'), 'bfcl', undefined, rolloutsLookup(store, 'imp'))).to.deep.equal({ outcome: 'updated' });
    const trj = trajectoryIdOf('imp', 'c1', 'conversational', 0);
    await store.putDoc('imp', 'trajectory', trj, { id: trj, runId: 'imp', scenarioId: 'c1', environmentId: 'bfcl-Carnet' } as never);
    expect(await writeImported(store, 'imp', 'env', env('class Carnet:\n    pass  # « v3 » 東京\n'), 'bfcl', undefined, rolloutsLookup(store, 'imp'))).to.deep.equal({ outcome: 'rolled-out' });
    expect((await store.getDoc('imp', 'env', 'bfcl-Carnet'))!.source).to.include('v2');
    expect(await writeImported(store, 'imp', 'env', env('class Carnet:\n    pass  # « v2 »\n', 'other/notes.py'), 'bfcl', undefined, rolloutsLookup(store, 'imp'))).to.deep.equal({ outcome: 'updated' });
    expect((await store.getDoc('imp', 'env', 'bfcl-Carnet'))!.lineage.original!.file).to.equal('other/notes.py');
  });
});
