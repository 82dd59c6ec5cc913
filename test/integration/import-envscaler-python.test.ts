import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import type { AppConfig } from '../../config/index.js';
import { runOptionsFrom, submitRollouts } from '../../queues/submit.js';
import { parseModelScript } from '../../src/model-server/index.js';
import type { Trajectory } from '../../src/rollouts/types.js';
import { exportRun } from '../../src/datasets/export.js';
import { loadExportScenarioSource } from '../../src/env-server/file-source.js';
import { createSessionRegistry, runScenarioSource, type SessionRegistry } from '../../src/env-server/sessions.js';
import { findEnvscalerFiles, importEnvscaler } from '../../src/importers/envscaler.js';
import { scoreFinalState } from '../../src/rollouts/score.js';
import type { RunOptions } from '../../src/runs/options.js';
import { createRedisRunStore, type RunStore } from '../../src/runs/store.js';
import { EnvironmentCode } from '../../src/sandbox/bundle.js';
import { createLanguageRouter } from '../../src/sandbox/language-router.js';
import { DEFAULT_SANDBOX_LIMITS, type SandboxLimits } from '../../src/sandbox/limits.js';
import { createPythonSandboxRunner } from '../../src/sandbox/python/python-runner.js';
import { createLocalSandboxRunner, type SandboxRunner } from '../../src/sandbox/runner.js';
import type { EnvironmentRecord } from '../../src/synthesis/types.js';
import { dropPrefix, requireRedis, testConfig, useFleet } from '../helpers/integration.js';

const FIXTURES = new URL('../fixtures/envscaler/', import.meta.url).pathname;
const LIMITS: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, callDeadlineMs: 2_000, createDeadlineMs: 10_000, checkDeadlineMs: 2_000 };

/** The bundle episode.ts and the serve sessions open for an environment document. */
const codeOf = (env: EnvironmentRecord) => ({ name: env.description.summary, className: env.className!, source: env.source!, tools: env.tools ?? [], ...(env.language ? { language: env.language } : {}) });

// EnvScaler reads init_config with Python's json (json.load of the file, or json.loads of a string field) and sets each
// key on the instance: 5.0 is a float there, 12345678901234567891 an exact int, 1e16 a float. Read by JSON.parse in
// Node and written again, they reached the instance as 5, 12345678901234567000 and 10000000000000000 (ints).
// The expected texts below were written by CPython 3.12 doing what EnvScaler does, and copied here.
const CONFIG = '{"total": 5.0, "serial": 12345678901234567891, "big": 1e16, "neg": -0.0, "rates": [1.0, 2.5, 3.0], "note": "caisse 收银 🧾", "10": "dix", "9": "neuf"}';
const AS_PYTHON_READS = '{"total":5.0,"serial":12345678901234567891,"big":1e+16,"neg":-0.0,"rates":[1.0,2.5,3.0],"note":"caisse 收银 🧾","10":"dix","9":"neuf"}';
const READ = '{"big":1e+16,"kinds":["float","int","float"],"neg":-0.0,"note":"caisse 收银 🧾","rates":[1.0,2.5,3.0],"serial":12345678901234567891,"total":5.0}';
const TILL_SOURCE = [
  'class Till:',
  '    def __init__(self, config=None):',
  '        self.note = ""',
  '',
  '    def read(self) -> dict:',
  '        """Read the till."""',
  '        return {"total": self.total, "serial": self.serial, "big": self.big, "neg": self.neg, "rates": self.rates, "note": self.note, "kinds": [type(self.total).__name__, type(self.serial).__name__, type(self.big).__name__]}',
  '',
].join('\n');
const TILL_CHECK = 'def check_func(final_state):\n    return isinstance(final_state["total"], float) and final_state["serial"] == 12345678901234567891 and isinstance(initial_state["big"], float)\n';
const TILL_ENV = {
  env_id: 'env_till_rl',
  environment_summary: 'A till — caisse 收银',
  environment_introduction: 'A shop till 🧾.',
  state_space_definition: [{ entity: 'Till', attributes: 'total, serial', description: 'the till' }],
  constraints_rules: [],
  operation_list: [],
  env_class_name: 'Till',
  env_class_code: TILL_SOURCE,
  tools: [{ type: 'function', function: { name: 'read', description: 'Read the till.', parameters: { type: 'object', properties: {} } } }],
};
const tillScenario = (taskId: string, initConfig: string) =>
  `{"env_id": "env_till_rl", "env_class_name": "Till", "task_id": "${taskId}", "task": "Lis la caisse 🧾", "init_config": ${initConfig}, "checklist_with_func": [{"check_item": "the numbers as written", "check_func": ${JSON.stringify(TILL_CHECK)}}]}`;

/** An env file and a scenario file in the GitHub shapes (the env file keyed by env id, the scenarios a list) with those configs. */
async function writeTillFiles(dir: string, configs: Record<string, string>): Promise<void> {
  await writeFile(join(dir, '191_env_metadata.json'), JSON.stringify({ env_till_rl: TILL_ENV }, null, 2));
  await writeFile(join(dir, 'rl_scenario_metadata.json'), `[\n${Object.entries(configs).map(([id, c]) => tillScenario(id, c)).join(',\n')}\n]\n`);
}

/**
 * Imported EnvScaler documents run in the Python runtime (real Pyodide) as a rollout runs them: a
 * session on the scenario's initial state through the language router, tool calls, the scenario's
 * Python checks at the end, and the reward.
 */
describe('envfleet import envscaler: the imported documents in the Python runtime', function () {
  this.timeout(240_000);
  let config: AppConfig;
  let redis: Redis;
  let store: RunStore;
  let sandbox: SandboxRunner;
  let tillDir = '';

  before(async () => {
    await requireRedis();
    config = testConfig(null);
    redis = new Redis(config.redis.url);
    store = createRedisRunStore(redis, config.redis.prefix);
    const python = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 192, logger: pino({ level: 'silent' }) });
    sandbox = createLanguageRouter({ js: createLocalSandboxRunner(), python });
    await importEnvscaler(store, { runId: 'py', files: await findEnvscalerFiles(join(FIXTURES, 'github')), split: 'all' }, { limits: DEFAULT_SANDBOX_LIMITS, models: {} } as unknown as RunOptions);
    // The config once as an object, once as a JSON string.
    tillDir = await mkdtemp(join(tmpdir(), 'envfleet-envscaler-exact-'));
    await writeTillFiles(tillDir, { 'till-object': CONFIG, 'till-string': JSON.stringify(CONFIG) });
    const report = await importEnvscaler(store, { runId: 'exact', files: await findEnvscalerFiles(tillDir), split: 'all' }, { limits: DEFAULT_SANDBOX_LIMITS, models: {} } as unknown as RunOptions);
    expect(report.skipped).to.deep.equal([]);
  });
  after(async () => {
    await sandbox?.close();
    redis.disconnect();
    await dropPrefix(config.redis.prefix);
    if (tillDir) await rm(tillDir, { recursive: true, force: true });
  });

  it('an imported environment is a valid Python bundle', async () => {
    for (const id of await store.listDocIds('py', 'env')) expect(EnvironmentCode.safeParse(codeOf((await store.getDoc('py', 'env', id))!)).success, id).to.equal(true);
  });

  it('an RL scenario: EnvScaler construction on init_config, tool calls with multi-byte arguments, the Python checks with initial_state give reward 1', async () => {
    const env = (await store.getDoc('py', 'env', 'env_7_rl'))!;
    const scenario = (await store.getDoc('py', 'scenario', 'env_7_rl-task_1'))!;
    const session = await sandbox.openSession(codeOf(env), scenario.initialState, LIMITS);
    const start = (await session.snapshot()) as Record<string, unknown>;
    expect(start['tables']).to.deep.equal(scenario.initialState!['tables']);
    expect(start['bookings']).to.deep.equal(scenario.initialState!['bookings']);
    const free = await session.call('list_free_tables', {});
    expect(free.runtimeError).to.equal(undefined);
    expect((free.result as { data: { table_id: string }[] }).data.map(t => t.table_id)).to.deep.equal(['T1']);
    const booked = await session.call('book_table', { table_id: 'T1', guest: '李雷', note: '靠窗 🍵' });
    expect(booked.result).to.deep.include({ success: true, message: 'booked T1 for 李雷' });
    const again = await session.call('book_table', { table_id: 'T1', guest: 'Zoë' });
    expect(again.result).to.deep.include({ success: false });
    const end = await session.finish(scenario.checklist ?? []);
    expect(end.checks!.results.map(r => r.passed)).to.deep.equal([true, true]);
    expect(end.checks!.reward).to.equal(1);
    const bookings = (JSON.parse(end.stateJson!) as { bookings: Record<string, { guest: string; note: string }> }).bookings;
    expect(Object.values(bookings).map(b => [b.guest, b.note])).to.deep.include(['李雷', '靠窗 🍵']);
  });

  it('the same checks on an episode that did nothing give 0, and init_config given as a string builds the same state', async () => {
    const env = (await store.getDoc('py', 'env', 'env_7_rl'))!;
    const scenario = (await store.getDoc('py', 'scenario', 'env_7_rl-task_2'))!;
    const session = await sandbox.openSession(codeOf(env), scenario.initialState, LIMITS);
    const end = await session.finish(scenario.checklist ?? []);
    expect(end.checks!.reward).to.equal(0);
    const score = await scoreFinalState(sandbox, scenario, JSON.parse(end.stateJson!), LIMITS);
    expect(score.reward).to.equal(0);
  });

  /** `envfleet export` of the run, then `envfleet serve` on its files: fn gets the session registry. */
  async function servedFromExport(runId: string, fn: (registry: SessionRegistry) => Promise<void>): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-import-serve-'));
    try {
      await exportRun(store, runId, dir, { formats: [] });
      const loaded = await loadExportScenarioSource({ environments: join(dir, 'environments.jsonl'), scenarios: join(dir, 'scenarios.jsonl') }, LIMITS);
      const registry = createSessionRegistry({ sandbox, scenarios: loaded.source }, { maxSessions: 2, idleTimeoutMs: 0 });
      try {
        await fn(registry);
      } finally {
        await registry.closeAll();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  it('envfleet serve on the export files: a session on an imported scenario, a tool call, the reward from its Python checks', async () => {
    await servedFromExport('py', async registry => {
      const session = await registry.open('env_7_rl-task_1');
      expect(session.task).to.equal('Book table T1 for 李雷 with the note 靠窗 🍵.');
      expect((await registry.call(session.id, 'book_table', { table_id: 'T1', guest: '李雷', note: '靠窗' })).runtimeError).to.equal(undefined);
      expect(await registry.finish(session.id)).to.include({ reward: 1, solved: true, checksError: null });
    });
  });

  it('an SFT scenario (unscored) runs its environment; its reward is null with UNSCORED', async () => {
    const env = (await store.getDoc('py', 'env', 'env_2_sft'))!;
    const scenario = (await store.getDoc('py', 'scenario', 'env_2_sft-task_1'))!;
    const session = await sandbox.openSession(codeOf(env), scenario.initialState, LIMITS);
    const found = await session.call('find_book', { title: 'petit prince' });
    expect((found.result as { data: { book_id: string }[] }).data.map(b => b.book_id)).to.deep.equal(['K1']);
    expect((await session.call('lend_book', { book_id: 'K1', member: 'Zoë' })).result).to.deep.include({ success: true });
    const end = await session.finish(scenario.checklist ?? []);
    const score = await scoreFinalState(sandbox, scenario, JSON.parse(end.stateJson!), LIMITS, null, end.checks);
    expect(score.reward).to.equal(null);
    expect(score.checksError).to.match(/^UNSCORED/);
  });

  for (const id of ['till-object', 'till-string']) {
    it(`init_config as Python reads it (${id}): the scenario keeps the config as Python reads it, and a session made from it sees 5.0, the exact int and 1e+16`, async () => {
      const s = (await store.getDoc('exact', 'scenario', id))!;
      expect(s.initialStateJson).to.equal(AS_PYTHON_READS);
      const env = (await store.getDoc('exact', 'env', 'env_till_rl'))!;
      const session = await sandbox.openSession(codeOf(env), s.initialState, LIMITS, s.initialStateJson);
      const read = await session.call('read', {});
      expect(read.resultJson).to.equal(READ);
      const end = await session.finish(s.checklist ?? []);
      expect(end.checks!.results.map(r => r.passed)).to.deep.equal([true]);
      await session.close();
    });
  }

  it('init_config as Python reads it in the other file shapes: scenarios keyed by id, Hugging Face rows (JSON-string fields), a pretty-printed record', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-envscaler-exact-shapes-'));
    try {
      const row = (id: string) => JSON.stringify({ env_id: 'env_till_rl', env_class_name: 'Till', task_id: id, task: 'Lis la caisse 🧾', init_config: CONFIG, checklist_with_func: JSON.stringify([{ check_item: 'the numbers as written', check_func: TILL_CHECK }]) });
      const envRow = JSON.stringify({ ...TILL_ENV, env_id: 'env_till_rl', tools: JSON.stringify(TILL_ENV.tools) });
      const shapes: Record<string, Record<string, string>> = {
        keyed: { '191_env_metadata.json': JSON.stringify({ env_till_rl: TILL_ENV }), 'rl_scenario_metadata.json': `{\n  "till-keyed": ${tillScenario('till-keyed', CONFIG)}\n}\n` },
        rows: { '191_env_metadata.jsonl': `${envRow}\n`, 'rl_scenario_metadata.jsonl': `${row('till-row-string')}\n${tillScenario('till-row-object', CONFIG)}\n` },
        pretty: { '191_env_metadata.json': JSON.stringify({ env_till_rl: TILL_ENV }), 'rl_scenario_metadata.json': `${JSON.stringify(JSON.parse(tillScenario('till-pretty', '{}')), null, 2).replace('"init_config": {}', `"init_config": ${CONFIG.replaceAll(', ', ',\n    ')}`)}\n` },
      };
      for (const [shape, files] of Object.entries(shapes)) {
        const sub = join(dir, shape);
        await mkdir(sub);
        for (const [name, text] of Object.entries(files)) await writeFile(join(sub, name), text);
        const report = await importEnvscaler(store, { runId: `exact-${shape}`, files: await findEnvscalerFiles(sub), split: 'all' }, { limits: DEFAULT_SANDBOX_LIMITS, models: {} } as unknown as RunOptions);
        expect(report.skipped, shape).to.deep.equal([]);
        const ids = await store.listDocIds(`exact-${shape}`, 'scenario');
        expect(ids.length, shape).to.equal(shape === 'rows' ? 2 : 1);
        const env = (await store.getDoc(`exact-${shape}`, 'env', 'env_till_rl'))!;
        for (const id of ids) {
          const scenario = (await store.getDoc(`exact-${shape}`, 'scenario', id))!;
          expect(scenario.initialStateJson, id).to.equal(AS_PYTHON_READS);
          const session = await sandbox.openSession(codeOf(env), scenario.initialState, LIMITS, scenario.initialStateJson);
          try {
            expect((await session.call('read', {})).resultJson, id).to.equal(READ);
          } finally {
            await session.close();
          }
        }
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('init_config as Python reads it: envfleet serve from Redis makes the session from the same text', async () => {
    const registry = createSessionRegistry({ sandbox, scenarios: runScenarioSource(store, 'exact') }, { maxSessions: 2, idleTimeoutMs: 0 });
    try {
      const session = await registry.open('till-string');
      expect((await registry.call(session.id, 'read', {})).resultJson).to.equal(READ);
      expect(await registry.finish(session.id)).to.include({ reward: 1, checksError: null });
    } finally {
      await registry.closeAll();
    }
  });

  it('init_config as Python reads it: envfleet serve on the export files makes the session from the same text', async () => {
    await servedFromExport('exact', async registry => {
      const session = await registry.open('till-object');
      expect((await registry.call(session.id, 'read', {})).resultJson).to.equal(READ);
      expect(await registry.finish(session.id)).to.include({ reward: 1, checksError: null });
    });
  });
});

/** A scripted policy for the imported tea house and library (non-conversational mode). */
const POLICY = parseModelScript({
  rules: [
    { name: 'book', stage: 'rollout.policy', matchLast: '^user: Book table T1 for 李雷', respond: { toolCalls: [{ name: 'book_table', arguments: { table_id: 'T1', guest: '李雷', note: '靠窗 🍵' } }] } },
    { name: 'booked', stage: 'rollout.policy', matchLast: '^tool: .*booked T1', respond: { content: 'Booked T1 for 李雷.' } },
    { name: 'lend', stage: 'rollout.policy', matchLast: '^user: Lend « Le Petit Prince »', respond: { toolCalls: [{ name: 'lend_book', arguments: { book_id: 'K1', member: 'Zoë' } }] } },
    { name: 'lent', stage: 'rollout.policy', matchLast: '^tool: .*"lent"', respond: { content: 'Lent.' } },
    { name: 'give-up', stage: 'rollout.policy', matchLast: '^user: Cancel booking B0', respond: { content: 'I cannot do that.' } },
  ],
});

describe('envfleet rollouts on an imported EnvScaler run (real workers, Python runtime, scripted policy)', function () {
  this.timeout(300_000);
  const fleet = useFleet();

  it('episodes run in the Python environments; rewards come from the Python checks; the SFT scenario gets none', async () => {
    const f = await fleet({ script: POLICY });
    await importEnvscaler(f.store, { runId: 'es-roll', files: await findEnvscalerFiles(join(FIXTURES, 'github')), split: 'all' }, runOptionsFrom(f.config));
    const r = await submitRollouts(f.config, f.redis, { runId: 'es-roll', samples: 1, modes: ['non-conversational'] });
    expect(r.scenarios).to.equal(3);
    await f.waitForRun('es-roll');
    const byScenario = new Map<string, Trajectory>();
    for (const id of await f.store.listDocIds('es-roll', 'trajectory')) {
      const t = (await f.store.getDoc('es-roll', 'trajectory', id)) as Trajectory;
      byScenario.set(t.scenarioId, t);
    }
    const booked = byScenario.get('env_7_rl-task_1')!;
    expect(booked.steps.map(s => [s.tool, s.runtimeError ?? null])).to.deep.equal([['book_table', null]]);
    expect(booked.reward).to.equal(1);
    expect(booked.solved).to.equal(true);
    const finalState = (typeof booked.finalState === 'string' ? JSON.parse(booked.finalState) : booked.finalState) as { bookings: Record<string, { guest: string; note: string }> };
    expect(Object.values(finalState.bookings).map(b => b.note)).to.include('靠窗 🍵');
    const gaveUp = byScenario.get('env_7_rl-task_2')!;
    expect(gaveUp.reward).to.equal(0);
    const sft = byScenario.get('env_2_sft-task_1')!;
    expect(sft.steps.map(s => s.tool)).to.deep.equal(['lend_book']);
    expect(sft.reward).to.equal(null);
    expect(sft.checksError).to.match(/^UNSCORED/);
  });

  it("init_config as Python reads it: the episode's session is made from the text: the tool message and the reward show 5.0, the exact int and 1e+16", async () => {
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
      await writeTillFiles(dir, { 'till-object': CONFIG });
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
    // rl-scenarios.jsonl hands a trainer's environment the config as Python reads it (read as text: a parse loses it).
    const out = await mkdtemp(join(tmpdir(), 'envfleet-envscaler-exact-rl-'));
    try {
      await exportRun(f.store, 'exact-roll', out, { formats: ['rl'] });
      const [line, ...rest] = (await readFile(join(out, 'rl-scenarios.jsonl'), 'utf8')).split('\n').filter(Boolean);
      expect(rest).to.deep.equal([]);
      expect(line).to.include(`"initialState":${AS_PYTHON_READS},`);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});
