import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { loadConfig } from '../../../config/index.js';
import { runOptionsFrom } from '../../../queues/submit.js';
import { exportRun } from '../../../src/datasets/export.js';
import { groupStats } from '../../../src/rollouts/groups.js';
import type { Trajectory } from '../../../src/rollouts/types.js';
import { createRedisRunStore, type RunStore } from '../../../src/runs/store.js';
import type { ScenarioRecord } from '../../../src/scenarios/types.js';
import type { EnvironmentRecord } from '../../../src/synthesis/types.js';
import { rejection } from '../../helpers/assert.js';

const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';

const createdAt = '2026-01-01T00:00:00.000Z';
// Every value names its run, so that a stored document is found by its value in one run only.
const env = (runId: string, id: string): EnvironmentRecord => ({
  id, runId, status: 'kept', description: { summary: `Domain ${id}`, introduction: 'A domain.' }, className: 'Domain', source: 'class Domain {}',
  tools: [{ type: 'function', function: { name: 'get', parameters: { type: 'object' } } }], failure: null, lineage: { runId, sourceTaskId: null, models: {}, prompts: {}, createdAt },
});
const scenario = (runId: string, id: string, status: 'ready' | 'dropped'): ScenarioRecord => ({
  id, runId, environmentId: 'env-a', index: 0, status, initialState: { n: 1 }, task: 'Set n to 2.', checklistItems: ['n is 2'],
  checklist: [{ item: 'n is 2', check: 'function check(f) { return f.n === 2; }' }], validation: { onInitialState: [{ item: 'n is 2', passed: false }], repairs: [] },
  dropReason: status === 'dropped' ? { stage: 'scenario.task', code: 'DUPLICATE_TASK', message: 'the same task as scenario scn-a' } : null,
  lineage: { runId, environmentId: 'env-a', models: {}, prompts: {}, createdAt },
});
const trajectory = (runId: string): Trajectory => ({
  id: 'trj-a', runId, scenarioId: 'scn-a', environmentId: 'env-a', mode: 'non-conversational', sample: 0, model: 'm', userModel: null,
  sampling: { temperature: 1, maxTokens: 100 }, tools: [], messages: [{ role: 'system', content: 's' }, { role: 'user', content: 'Set n to 2.' }, { role: 'assistant', content: 'Done.' }],
  userMessages: null, steps: [], checks: [{ item: 'n is 2', passed: true }], reward: 1, solved: true, checksError: null,
  termination: { reason: 'agent-finished', detail: null }, turns: 1, usage: { promptTokens: 0, completionTokens: 0, modelCalls: 0 },
  timings: { startedAt: createdAt, wallMs: 0, envUs: 0 }, finalState: { n: 2 }, lineage: {},
});

describe('a failing export (real Redis)', () => {
  const prefix = `envfleet-test-export-${randomUUID().slice(0, 8)}`;
  let redis: Redis;
  let store: RunStore;

  before(() => {
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    store = createRedisRunStore(redis, prefix);
  });
  after(async () => {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  /** A run with two of every document an export reads (each file gets lines before the second one). */
  async function seed(runId: string) {
    await store.createRun({ id: runId, createdAt, input: 'descriptions', options: runOptionsFrom(loadConfig({})) });
    const docs = {
      envA: env(runId, 'env-a'), envB: env(runId, 'env-b'), scnA: scenario(runId, 'scn-a', 'ready'), scnB: scenario(runId, 'scn-b', 'dropped'),
      trajectory: trajectory(runId),
      grpA: groupStats(runId, 'scn-a', 'env-a', 'non-conversational', [trajectory(runId)], 1), grpB: groupStats(runId, 'scn-b', 'env-a', 'non-conversational', [], 1),
    };
    await store.putDoc(runId, 'env', 'env-a', docs.envA);
    await store.putDoc(runId, 'env', 'env-b', docs.envB);
    await store.putDoc(runId, 'scenario', 'scn-a', docs.scnA);
    await store.putDoc(runId, 'scenario', 'scn-b', docs.scnB);
    await store.putDoc(runId, 'trajectory', docs.trajectory.id, docs.trajectory);
    await store.putDoc(runId, 'group', docs.grpA.id, docs.grpA);
    await store.putDoc(runId, 'group', docs.grpB.id, docs.grpB);
    return docs;
  }

  /** Breaks a stored document where it lies (found by its value, wherever the store keeps it): reading it back fails. */
  async function corrupt(value: unknown) {
    const json = JSON.stringify(value);
    for (const key of await redis.keys(`${prefix}:*`)) {
      if ((await redis.type(key)) === 'string' && (await redis.get(key)) === json) {
        await redis.set(key, '{"torn');
        return;
      }
    }
    throw new Error('document not found');
  }

  it('leaves no file under its real name when an environment cannot be read', async () => {
    const docs = await seed('fail-env');
    await corrupt(docs.envB);
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-export-fail-'));
    await rejection(exportRun(store, 'fail-env', dir));
    expect(await readdir(dir)).to.deep.equal([]);
  });

  // An export's files go under their names together, once all are complete (ExportStage): a failure part way leaves
  // none of them (these tests said the files before the failure were left whole, which mixed two runs' files in a
  // folder that held an earlier export: export-files.test.ts).
  it('leaves no file when a scenario cannot be read, not even the environments file written before it', async () => {
    const docs = await seed('fail-scn');
    await corrupt(docs.scnB);
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-export-fail-'));
    await rejection(exportRun(store, 'fail-scn', dir));
    expect(await readdir(dir)).to.deep.equal([]);
  });

  it('leaves no file when a group cannot be read, though every file before it was complete', async () => {
    const docs = await seed('fail-grp');
    await corrupt(docs.grpB);
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-export-fail-'));
    await rejection(exportRun(store, 'fail-grp', dir));
    expect(await readdir(dir)).to.deep.equal([]);
  });

  it('leaves no partial file and puts no file under its name when a name is held by a folder', async () => {
    await seed('fail-rename');
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-export-fail-'));
    // Something else holds the name (here a directory): the finished file cannot be renamed onto it.
    await mkdir(join(dir, 'rl-scenarios.jsonl'));
    await writeFile(join(dir, 'rl-scenarios.jsonl', 'keep'), 'not ours');
    const err = await rejection(exportRun(store, 'fail-rename', dir));
    expect(err).to.have.property('code', 'OUTPUT_NOT_WRITABLE');
    expect(String((err as Error).message)).to.include(join(dir, 'rl-scenarios.jsonl'));
    expect((await readdir(dir)).sort()).to.deep.equal(['rl-scenarios.jsonl']);
    expect((await stat(join(dir, 'rl-scenarios.jsonl'))).isDirectory()).to.equal(true);
    expect(await readdir(join(dir, 'rl-scenarios.jsonl'))).to.deep.equal(['keep']);
  });
});
