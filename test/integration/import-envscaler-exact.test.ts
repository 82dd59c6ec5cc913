import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import type { AppConfig } from '../../config/index.js';
import { runOptionsFrom, submitRollouts } from '../../queues/submit.js';
import { exportRun } from '../../src/datasets/export.js';
import { loadExportScenarioSource } from '../../src/env-server/file-source.js';
import { createSessionRegistry } from '../../src/env-server/sessions.js';
import { parseModelScript } from '../../src/model-server/index.js';
import { findEnvscalerFiles, importEnvscaler } from '../../src/importers/envscaler.js';
import type { Trajectory } from '../../src/rollouts/types.js';
import type { RunOptions } from '../../src/runs/options.js';
import { createRedisRunStore, type RunStore } from '../../src/runs/store.js';
import { createLanguageRouter } from '../../src/sandbox/language-router.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../src/sandbox/limits.js';
import { createPythonSandboxRunner } from '../../src/sandbox/python/python-runner.js';
import { createLocalSandboxRunner, type SandboxRunner } from '../../src/sandbox/runner.js';
import type { EnvironmentRecord } from '../../src/synthesis/types.js';
import { dropPrefix, requireRedis, testConfig, useFleet } from '../helpers/integration.js';

// EnvScaler reads init_config with Python's json (json.load of the file, or json.loads of a string field) and sets each
// key on the instance: 5.0 is a float there, 12345678901234567891 an exact int, 1e16 a float. Read by JSON.parse in
// Node and written again, they reached the instance as 5, 12345678901234567000 and 10000000000000000 (ints).
// The expected texts below were written by CPython 3.12 doing what EnvScaler does, and copied here.
const CONFIG = '{"total": 5.0, "serial": 12345678901234567891, "big": 1e16, "neg": -0.0, "rates": [1.0, 2.5, 3.0], "note": "caisse 收银 🧾", "10": "dix", "9": "neuf"}';
const AS_PYTHON_READS = '{"total":5.0,"serial":12345678901234567891,"big":1e+16,"neg":-0.0,"rates":[1.0,2.5,3.0],"note":"caisse 收银 🧾","10":"dix","9":"neuf"}';
const READ = '{"big":1e+16,"kinds":["float","int","float"],"neg":-0.0,"note":"caisse 收银 🧾","rates":[1.0,2.5,3.0],"serial":12345678901234567891,"total":5.0}';
const SOURCE = [
  'class Till:',
  '    def __init__(self, config=None):',
  '        self.note = ""',
  '',
  '    def read(self) -> dict:',
  '        """Read the till."""',
  '        return {"total": self.total, "serial": self.serial, "big": self.big, "neg": self.neg, "rates": self.rates, "note": self.note, "kinds": [type(self.total).__name__, type(self.serial).__name__, type(self.big).__name__]}',
  '',
].join('\n');
const CHECK = 'def check_func(final_state):\n    return isinstance(final_state["total"], float) and final_state["serial"] == 12345678901234567891 and isinstance(initial_state["big"], float)\n';
const ENV = {
  env_id: 'env_till_rl',
  environment_summary: 'A till — caisse 收银',
  environment_introduction: 'A shop till 🧾.',
  state_space_definition: [{ entity: 'Till', attributes: 'total, serial', description: 'the till' }],
  constraints_rules: [],
  operation_list: [],
  env_class_name: 'Till',
  env_class_code: SOURCE,
  tools: [{ type: 'function', function: { name: 'read', description: 'Read the till.', parameters: { type: 'object', properties: {} } } }],
};
const scenario = (taskId: string, initConfig: string) =>
  `{"env_id": "env_till_rl", "env_class_name": "Till", "task_id": "${taskId}", "task": "Lis la caisse 🧾", "init_config": ${initConfig}, "checklist_with_func": [{"check_item": "the numbers as written", "check_func": ${JSON.stringify(CHECK)}}]}`;

const codeOf = (env: EnvironmentRecord) => ({ name: env.description.summary, className: env.className!, source: env.source!, tools: env.tools ?? [], ...(env.language ? { language: env.language } : {}) });

describe('envfleet import envscaler: init_config reaches the Python instance as Python reads it', function () {
  this.timeout(240_000);
  let config: AppConfig;
  let redis: Redis;
  let store: RunStore;
  let sandbox: SandboxRunner;
  let dir: string;

  before(async () => {
    await requireRedis();
    config = testConfig(null);
    redis = new Redis(config.redis.url);
    store = createRedisRunStore(redis, config.redis.prefix);
    const python = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 192, logger: pino({ level: 'silent' }) });
    sandbox = createLanguageRouter({ js: createLocalSandboxRunner(), python });
    dir = await mkdtemp(join(tmpdir(), 'envfleet-envscaler-exact-'));
    // The GitHub shapes (the env file keyed by env id, the scenarios a list), the config once as an object, once as a JSON string.
    await writeFile(join(dir, '191_env_metadata.json'), JSON.stringify({ env_till_rl: ENV }, null, 2));
    await writeFile(join(dir, 'rl_scenario_metadata.json'), `[\n${scenario('till-object', CONFIG)},\n${scenario('till-string', JSON.stringify(CONFIG))}\n]\n`);
    const report = await importEnvscaler(store, { runId: 'exact', files: await findEnvscalerFiles(dir), split: 'all' }, { limits: DEFAULT_SANDBOX_LIMITS, models: {} } as unknown as RunOptions);
    expect(report.skipped).to.deep.equal([]);
  });
  after(async () => {
    await sandbox?.close();
    redis.disconnect();
    await dropPrefix(config.redis.prefix);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  for (const id of ['till-object', 'till-string']) {
    it(`${id}: the scenario keeps the config as Python reads it, and a session made from it sees 5.0, the exact int and 1e+16`, async () => {
      const s = (await store.getDoc('exact', 'scenario', id))!;
      expect(s.initialStateJson).to.equal(AS_PYTHON_READS);
      const env = (await store.getDoc('exact', 'env', 'env_till_rl'))!;
      const session = await sandbox.openSession(codeOf(env), s.initialState, DEFAULT_SANDBOX_LIMITS, s.initialStateJson);
      const read = await session.call('read', {});
      expect(read.resultJson).to.equal(READ);
      const end = await session.finish(s.checklist ?? []);
      expect(end.checks!.results.map(r => r.passed)).to.deep.equal([true]);
      await session.close();
    });
  }

  it('envfleet serve on the export files: the session is made from the same text', async () => {
    const out = await mkdtemp(join(tmpdir(), 'envfleet-envscaler-exact-export-'));
    try {
      await exportRun(store, 'exact', out, { formats: [] });
      const loaded = await loadExportScenarioSource({ environments: join(out, 'environments.jsonl'), scenarios: join(out, 'scenarios.jsonl') }, DEFAULT_SANDBOX_LIMITS);
      const registry = createSessionRegistry({ sandbox, scenarios: loaded.source }, { maxSessions: 2, idleTimeoutMs: 0 });
      try {
        const session = await registry.open('till-object');
        expect((await registry.call(session.id, 'read', {})).resultJson).to.equal(READ);
        expect(await registry.finish(session.id)).to.include({ reward: 1, checksError: null });
      } finally {
        await registry.closeAll();
      }
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});

describe('envfleet rollouts on such a scenario (real workers, Python runtime, scripted policy)', function () {
  this.timeout(300_000);
  const fleet = useFleet();

  it("the episode's session is made from the text: the tool message and the reward show 5.0, the exact int and 1e+16", async () => {
    const f = await fleet({
      script: parseModelScript({
        rules: [
          { name: 'read', stage: 'rollout.policy', matchLast: '^user: Lis la caisse', respond: { toolCalls: [{ name: 'read', arguments: {} }] } },
          { name: 'done', stage: 'rollout.policy', matchLast: '^tool: ', respond: { content: 'Lu ✅' } },
        ],
      }),
    });
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-envscaler-exact-roll-'));
    try {
      await writeFile(join(dir, '191_env_metadata.json'), JSON.stringify({ env_till_rl: ENV }));
      await writeFile(join(dir, 'rl_scenario_metadata.json'), `[${scenario('till-object', CONFIG)}]`);
      await importEnvscaler(f.store, { runId: 'exact-roll', files: await findEnvscalerFiles(dir), split: 'all' }, runOptionsFrom(f.config));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    await submitRollouts(f.config, f.redis, { runId: 'exact-roll', samples: 1, modes: ['non-conversational'] });
    await f.waitForRun('exact-roll');
    const [id] = await f.store.listDocIds('exact-roll', 'trajectory');
    const t = (await f.store.getDoc('exact-roll', 'trajectory', id!)) as Trajectory;
    expect(t.messages.find(m => m.role === 'tool')?.content).to.equal(READ);
    expect(t.reward).to.equal(1);
  });
});
