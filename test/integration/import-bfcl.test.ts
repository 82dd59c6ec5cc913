import { mkdtemp, rm } from 'node:fs/promises';
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
import { REPLAY_TOOL, UNAVAILABLE_MODULES } from '../../src/importers/bfcl-source.js';
import { findBfclLayout, importBfcl } from '../../src/importers/bfcl.js';
import { parseModelScript } from '../../src/model-server/index.js';
import { runEpisode } from '../../src/rollouts/episode.js';
import type { Trajectory } from '../../src/rollouts/types.js';
import type { RunOptions } from '../../src/runs/options.js';
import { createRedisRunStore, type RunStore } from '../../src/runs/store.js';
import { EnvironmentCode } from '../../src/sandbox/bundle.js';
import { DEFAULT_SANDBOX_LIMITS, type SandboxLimits } from '../../src/sandbox/limits.js';
import { createPythonSandboxRunner, type PythonSandboxRunner } from '../../src/sandbox/python/python-runner.js';
import type { EnvironmentRecord } from '../../src/synthesis/types.js';
import { callingGateway, goldOf, goldTextOf } from '../helpers/bfcl.js';
import { dropPrefix, requireRedis, testConfig, useFleet } from '../helpers/integration.js';
import { MPMATH_MISSING, mpmathPackage } from '../helpers/mpmath.js';
import { windowsCopy } from '../helpers/windows-copy.js';
import { loadConfig } from '../../config/index.js';

const FIXTURE = new URL('../fixtures/bfcl/', import.meta.url).pathname;
const LIMITS: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, callDeadlineMs: 5_000, createDeadlineMs: 20_000, checkDeadlineMs: 5_000 };
const OPTIONS = { limits: DEFAULT_SANDBOX_LIMITS, models: {} } as unknown as RunOptions;
const codeOf = (env: EnvironmentRecord) => ({ name: env.description.summary, className: env.className!, source: env.source!, tools: env.tools ?? [], language: 'python' as const });

/**
 * `envfleet import bfcl` on the hand-written look-alike of a BFCL checkout (test/fixtures/bfcl): the
 * environments and scripted scenarios it makes, the gold replay in the real Python runtime, the
 * check on episodes, serving, and idempotence.
 */
describe('envfleet import bfcl (look-alike fixtures, real Pyodide)', function () {
  this.timeout(300_000);
  let config: AppConfig;
  let redis: Redis;
  let store: RunStore;
  let python: PythonSandboxRunner;

  before(async () => {
    await requireRedis();
    config = testConfig(null);
    redis = new Redis(config.redis.url);
    store = createRedisRunStore(redis, config.redis.prefix);
    python = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 192, logger: pino({ level: 'silent' }) });
  });
  after(async () => {
    await python?.close();
    redis?.disconnect();
    if (config) await dropPrefix(config.redis.prefix);
  });

  it('imports one environment per combination of classes and one scripted scenario per entry; skips the mpmath entry with its reason; a re-import changes nothing', async () => {
    const layout = await findBfclLayout(FIXTURE, ['base', 'miss_func', 'long_context']);
    const first = await importBfcl(store, python, { runId: 'bf', layout, categories: ['base', 'miss_func', 'long_context'] }, OPTIONS);
    expect(first.created).to.equal(true);
    expect(first.environments).to.deep.equal({ imported: 2, unchanged: 0, updated: 0 });
    expect(first.scenarios).to.deep.include({ imported: 4, unchanged: 0, updated: 0 });
    expect(first.scenarios.byCategory).to.deep.equal({ base: 2, miss_func: 1, long_context: 1 });
    expect(first.replay).to.deep.include({ entries: 4, reused: 0 });
    expect(first.skipped.map(s => [s.where, s.problem])).to.deep.equal([['id fixture_base_2 (line 3)', `its gold calls use precise_ratio: DiceBank.precise_ratio needs mpmath: ${UNAVAILABLE_MODULES['mpmath']}`]]);
    expect(first.notes.join('\n')).to.match(/note_board\.py imports subprocess without using it/).and.match(/dice_bank\.py imports mpmath/);
    expect((await store.listDocIds('bf', 'env')).sort()).to.deep.equal(['bfcl-DiceBank-NoteBoard', 'bfcl-NoteBoard']);

    const again = await importBfcl(store, python, { runId: 'bf', layout, categories: ['base', 'miss_func', 'long_context'] }, OPTIONS);
    expect(again.created).to.equal(false);
    expect(again.environments).to.deep.equal({ imported: 0, unchanged: 2, updated: 0 });
    expect(again.scenarios).to.deep.include({ imported: 0, unchanged: 4, updated: 0 });
    expect(again.replay).to.deep.include({ entries: 0, reused: 4 });
  });

  it('imports a checkout as Windows leaves it (a UTF-8 byte order mark and CRLF in every file, a folder name with spaces and accents) as it imports the plain one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-bfcl-'));
    try {
      const checkout = join(dir, 'mon dépôt gorilla');
      await windowsCopy(FIXTURE, checkout);
      const layout = await findBfclLayout(checkout, ['base', 'miss_func', 'long_context']);
      const r = await importBfcl(store, python, { runId: 'bf-windows', layout, categories: ['base', 'miss_func', 'long_context'] }, OPTIONS);
      expect(r.environments).to.deep.equal({ imported: 2, unchanged: 0, updated: 0 });
      expect(r.scenarios.byCategory).to.deep.equal({ base: 2, miss_func: 1, long_context: 1 });
      expect(r.skipped.map(s => s.where)).to.deep.equal(['id fixture_base_2 (line 3)']);
      await importBfcl(store, python, { runId: 'bf-plain', layout: await findBfclLayout(FIXTURE, ['base']), categories: ['base'] }, OPTIONS);
      for (const id of ['fixture_base_0', 'fixture_base_1']) {
        const plain = (await store.getDoc('bf-plain', 'scenario', id))!;
        const windows = (await store.getDoc('bf-windows', 'scenario', id))!;
        expect(goldOf(windows), id).to.deep.equal(goldOf(plain));
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('says how to supply mpmath when it skips an entry for it', () => {
    expect(UNAVAILABLE_MODULES['mpmath']).to.match(/supply a pure-Python mpmath with ENVFLEET_PYTHON_PACKAGES \(the path of its package folder, the one holding __init__\.py; .*python3-mpmath.*\) and import again$/);
  });

  it('with mpmath supplied to the sandbox, imports the mpmath entry: its result is BFCL\'s string of the dict (the mpf\'s repr), and the gold calls as the agent\'s pass', async function () {
    const dir = mpmathPackage('the BFCL import test supplies mpmath to the Python sandbox');
    if (!dir) {
      console.log(`    skipped: ${MPMATH_MISSING}`);
      return this.skip();
    }
    const packages = loadConfig({ ENVFLEET_PYTHON_PACKAGES: dir }).python.packages;
    const withMpmath = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 192, packages, logger: pino({ level: 'silent' }) });
    try {
      const layout = await findBfclLayout(FIXTURE, ['base']);
      const r = await importBfcl(store, withMpmath, { runId: 'bfm', layout, categories: ['base'], pythonPackages: ['mpmath'] }, OPTIONS);
      expect(r.skipped).to.deep.equal([]);
      expect(r.scenarios).to.deep.include({ imported: 3 });
      expect(r.notes.join('\n')).to.match(/dice_bank\.py imports mpmath: the Python runtime is given it \(ENVFLEET_PYTHON_PACKAGES\), so the import is kept/);
      const env = (await store.getDoc('bfm', 'env', 'bfcl-DiceBank'))!;
      expect(env.source).to.match(/^ {4}import mpmath$/m);
      expect(env.source).not.to.include('_Unavailable("mpmath"');
      const scenario = (await store.getDoc('bfm', 'scenario', 'fixture_base_2'))!;
      // mp.dps = 30, then mpf(1) / mpf(3): a dict JSON cannot write, so BFCL hands the model str() of it.
      expect(goldOf(scenario)[0]!.results).to.deep.equal(["{'ratio': mpf('0.333333333333333333333333333333317')}"]);
      const t = await runEpisode(
        { gateway: callingGateway([[{ name: 'precise_ratio', arguments: { a: 1, b: 3 } }]]), sandbox: withMpmath },
        { runId: 'bfm', scenario, env, mode: 'non-conversational', sample: 0, limits: { maxSteps: 30, maxTokens: 0, maxWallMs: 120_000 }, sandboxLimits: LIMITS, policyModel: null, userModel: null, sampling: { temperature: 0, maxTokens: 64 } },
      );
      expect(t.reward).to.equal(1);
      // The agent reads the string as the environment returned it (JSON-encoded, as every tool result is).
      expect(t.messages.find(m => m.role === 'tool')!.content).to.equal(JSON.stringify("{'ratio': mpf('0.333333333333333333333333333333317')}"));
    } finally {
      await withMpmath.close();
    }
  });

  it('the documents: a valid Python bundle without the replay tool; excluded and withheld tools; the added-functions turn from the checkout', async () => {
    const env = (await store.getDoc('bf', 'env', 'bfcl-NoteBoard'))!;
    expect(EnvironmentCode.safeParse(codeOf(env)).success).to.equal(true);
    expect(env.tools!.map(t => t.function.name)).to.deep.equal(['open_folder', 'write_note', 'read_note', 'list_notes', 'delete_note']);
    expect(env.tools!.map(t => t.function.name)).not.to.include(REPLAY_TOOL.function.name);
    const base = (await store.getDoc('bf', 'scenario', 'fixture_base_0'))!;
    expect(base.script).to.deep.equal({
      turns: [{ messages: ['Dans inbox, écris une note « Café ☕ » : « Thé 茶 🍵 ».'] }, { messages: ["Liste les notes, s'il te plaît."] }],
      excludedTools: ['delete_note'],
      maxStepsPerTurn: 20,
    });
    expect(base.initialState).to.have.keys('__initial_config', '__long_context');
    const miss = (await store.getDoc('bf', 'scenario', 'fixture_miss_func_0'))!;
    expect(miss.script!.turns[2]).to.deep.equal({ messages: ['Nouvelles fonctions disponibles 🆕 — 请再试一次.'], addTools: ['delete_note'] });
    expect(miss.script!.withheldTools).to.deep.equal(['delete_note']);
    expect(miss.checklist).to.have.length(1);
    expect(miss.checklist![0]).to.include({ language: 'python', episode: true });
  });

  it('the gold replay: public state without parent links or private attributes, multi-byte results, a seeded die, the long-context filler with its text intact', async () => {
    const gold = goldOf((await store.getDoc('bf', 'scenario', 'fixture_base_0'))!);
    expect(gold.map(t => t.calls)).to.deep.equal([2, 1]);
    expect(gold[0]!.results).to.deep.equal([{ current_folder: 'inbox' }, { written: 'Café ☕', folder: 'inbox' }]);
    const board = gold[0]!.state as { NoteBoard: { root: { name: string; children: Record<string, { children: Record<string, unknown> }> }; long_context: boolean } };
    expect(Object.keys(board)).to.deep.equal(['NoteBoard']);
    expect(board.NoteBoard.long_context).to.equal(false);
    expect(board.NoteBoard.root.children['inbox']!.children['Café ☕']).to.deep.equal({ title: 'Café ☕', body: 'Thé 茶 🍵' });
    expect(JSON.stringify(board)).not.to.match(/parent|_cwd|_written/);
    expect(gold[1]!.results).to.deep.equal([{ notes: ['Café ☕', 'bonjour.txt'] }]);

    const dice = goldOf((await store.getDoc('bf', 'scenario', 'fixture_base_1'))!);
    expect(dice.map(t => t.calls)).to.deep.equal([2, 1, 0]);
    const bet = dice[0]!.results[1] as { roll: number; won: boolean; balance: number };
    expect(bet.roll).to.be.within(1, 6);
    expect(bet.balance).to.equal(bet.won ? 70 : 61);
    // The gold as the session wrote it: round(65.5 ± 4.5, 2) is a float in Python, 70.0 or 61.0, in the results and
    // the states (JavaScript reads both as integers; until 2026-12-05 the check's GOLD held 70 and 61).
    const goldText = goldTextOf((await store.getDoc('bf', 'scenario', 'fixture_base_1'))!);
    const balance = bet.won ? '70.0' : '61.0';
    expect(goldText).to.include(`"results":[{"balance":65.5},{"balance":${balance},"roll":${bet.roll},"won":${bet.won}}]`);
    expect(goldText).to.include(`"results":[{"balance":${balance}}]`);
    expect(goldText.match(new RegExp(`"DiceBank":\\{"balance":${balance.replace('.', '\\.')},`, 'g'))).to.have.length(3);

    const long = goldOf((await store.getDoc('bf', 'scenario', 'fixture_long_context_0'))!);
    const inbox = (long[0]!.state as { NoteBoard: { root: { children: Record<string, { children: Record<string, { body: string }> }> } } }).NoteBoard.root.children['inbox']!.children;
    expect(inbox['memo']!.body).to.equal('Memo, first line\n    an indented second line (its spaces are part of the text)\nlast line');
    expect(inbox['filler_1']!.body).to.equal('会议纪要：周一 10 点');
  });

  it('call strings are parsed with ast in the sandbox: positional and keyword literals; anything else is refused', async () => {
    const env = (await store.getDoc('bf', 'env', 'bfcl-DiceBank-NoteBoard'))!;
    const scenario = (await store.getDoc('bf', 'scenario', 'fixture_base_1'))!;
    const session = await python.openSession({ ...codeOf(env), tools: [...env.tools!, REPLAY_TOOL] }, scenario.initialState, LIMITS);
    try {
      const call = (text: string) => session.call('_replay_call', { call: text });
      expect((await call("deposit(1.5, note='Noël 🎄')")).result).to.deep.equal({ balance: 41.5 });
      expect((await call('  list_history(("deposit",))  ')).result).to.match(/^\[\{'kind': 'deposit', 'amount': 1\.5, 'note': 'Noël 🎄'\}\]$/);
      expect((await call('deposit(amount=-1)')).result).to.equal('Error during execution: the amount must be positive');
      const nested = await call('deposit(amount=abs(-3))');
      expect(nested.runtimeError).to.equal('TOOL_THREW');
      expect(JSON.stringify(nested.result)).to.match(/malformed node|ValueError/);
      expect((await call('__import__("os")')).runtimeError).to.equal('TOOL_THREW');
      expect(JSON.stringify((await call('withdraw(5)')).result)).to.match(/no tool named withdraw/);
      expect(JSON.stringify((await call('x.deposit(5)')).result)).to.match(/not a call of a function by name/);
      expect(((await session.snapshot()) as { DiceBank: { balance: number } }).DiceBank.balance).to.equal(41.5);
    } finally {
      await session.close();
    }
  });

  it('initial_config reaches the instance as Python reads it (BFCL json.loads: 40.0 a float), in the gold replay and in sessions of the scenario', async () => {
    const env = (await store.getDoc('bf', 'env', 'bfcl-DiceBank-NoteBoard'))!;
    const scenario = (await store.getDoc('bf', 'scenario', 'fixture_base_1'))!;
    expect(scenario.initialStateJson).to.include('"DiceBank":{"balance":40.0,"random_seed":1234}');
    expect(JSON.parse(scenario.initialStateJson!)).to.deep.equal(scenario.initialState);
    expect((await store.getDoc('bf', 'scenario', 'fixture_base_0'))!.initialStateJson, 'a config JavaScript reads alike keeps no text').to.equal(undefined);
    const session = await python.openSession(codeOf(env), scenario.initialState, LIMITS, scenario.initialStateJson);
    try {
      expect((await session.call('get_balance', {})).resultJson).to.equal('{"balance":40.0}');
    } finally {
      await session.close();
    }
  });

  it('scripted multi-turn episode (no user simulator): the gold path scores 1; withheld tools arrive at their turn; a call in an empty-gold turn, or a missing call, fails with BFCL\'s code', async () => {
    const run = async (id: string, turns: { name: string; arguments: unknown }[][]) => {
      const scenario = (await store.getDoc('bf', 'scenario', id))!;
      const env = (await store.getDoc('bf', 'env', scenario.environmentId))!;
      const gateway = callingGateway(turns);
      const t = await runEpisode(
        { gateway, sandbox: python },
        { runId: 'bf', scenario, env, mode: 'conversational', sample: 0, limits: { maxSteps: 30, maxTokens: 0, maxWallMs: 120_000 }, sandboxLimits: LIMITS, policyModel: null, userModel: null, sampling: { temperature: 0, maxTokens: 64 } },
      );
      return t;
    };
    const gold = [
      [
        { name: 'open_folder', arguments: { name: 'archive' } },
        { name: 'write_note', arguments: { title: 'plan', body: 'Étape 1 ✅' } },
      ],
      [],
      [{ name: 'delete_note', arguments: { title: 'plan' } }],
    ];
    const ok = await run('fixture_miss_func_0', gold);
    expect(ok.termination.reason).to.equal('agent-finished');
    expect(ok.userModel).to.equal(null);
    expect(ok.userMessages).to.equal(null);
    expect(ok.messages.filter(m => m.role === 'user').map(m => m.content)).to.deep.equal(["Open the archive and write a note 'plan' saying 'Étape 1 ✅'.", "Now remove the note 'plan'.", 'Nouvelles fonctions disponibles 🆕 — 请再试一次.']);
    expect(ok.steps.map(s => [s.tool, s.runtimeError])).to.deep.equal([
      ['open_folder', null],
      ['write_note', null],
      ['delete_note', null],
    ]);
    expect(ok.checks).to.deep.equal([{ item: ok.checks[0]!.item, passed: true }]);
    expect(ok.reward).to.equal(1);

    // delete_note is withheld until turn 3: called in turn 2 it is an unknown tool (and a call where the gold answer makes none).
    const early = await run('fixture_miss_func_0', [gold[0]!, [{ name: 'delete_note', arguments: { title: 'plan' } }], gold[2]!]);
    expect(early.steps[2]).to.include({ tool: 'delete_note', runtimeError: 'TOOL_NOT_OFFERED' });
    expect(early.reward).to.equal(0);
    expect(early.checks[0]!.error).to.match(/multi_turn:irrelevance_error:decoder_success: turn 1/);

    const missing = await run('fixture_miss_func_0', [gold[0]!, [], []]);
    expect(missing.reward).to.equal(0);
    expect(missing.checks[0]!.error).to.match(/multi_turn:empty_turn_model_response: turn 2/);

    const noWrite = await run('fixture_miss_func_0', [[gold[0]![0]!], [], gold[2]!]);
    expect(noWrite.checks[0]!.error).to.match(/multi_turn:instance_state_mismatch: turn 0: NoteBoard differs from the gold state in root/);
  });

  it('envfleet serve on the export files: an imported BFCL environment answers a tool call; its episode check needs a transcript', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-bfcl-serve-'));
    try {
      await exportRun(store, 'bf', dir, { formats: [] });
      const loaded = await loadExportScenarioSource({ environments: join(dir, 'environments.jsonl'), scenarios: join(dir, 'scenarios.jsonl') }, LIMITS);
      const registry = createSessionRegistry({ sandbox: python, scenarios: loaded.source }, { maxSessions: 2, idleTimeoutMs: 0 });
      const session = await registry.open('fixture_base_0');
      const opened = await registry.call(session.id, 'open_folder', { name: 'inbox' });
      expect(opened).to.deep.include({ result: { current_folder: 'inbox' } });
      const read = await registry.call(session.id, 'read_note', { title: 'bonjour.txt' });
      expect(read.result).to.deep.equal({ title: 'bonjour.txt', body: 'Salut 👋 — 你好' });
      const end = await registry.finish(session.id);
      expect(end.checks[0]).to.include({ passed: false, errorCode: 'CHECK_NEEDS_EPISODE' });
      // No reward rather than 0 for what may be the gold calls (a stranger's probe replayed them through serve: 0).
      expect(end.reward).to.equal(null);
      expect(end.checksError).to.match(/^CHECK_NEEDS_EPISODE: 1 of the scenario's 1 checks read the episode/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** A scripted policy (the scripted model server) for the fixtures' entries. */
const POLICY = parseModelScript({
  rules: [
    { name: 'inbox', stage: 'rollout.policy', matchLast: '^user: Dans inbox', respond: { toolCalls: [{ name: 'open_folder', arguments: { name: 'inbox' } }, { name: 'write_note', arguments: { title: 'Café ☕', body: 'Thé 茶 🍵' } }] } },
    { name: 'list', stage: 'rollout.policy', matchLast: '^user: Liste les notes', respond: { toolCalls: [{ name: 'list_notes', arguments: {} }] } },
    { name: 'deposit-only', stage: 'rollout.policy', matchLast: '^user: Deposit 25.5', respond: { toolCalls: [{ name: 'deposit', arguments: { amount: 25.5, note: 'Épargne 💰' } }] } },
    { name: 'balance', stage: 'rollout.policy', matchLast: '^user: What is my balance', respond: { toolCalls: [{ name: 'get_balance', arguments: {} }] } },
    { name: 'send', stage: 'rollout.policy', matchLast: '^user: Send 5', respond: { content: 'Je ne peux pas envoyer d’argent — 无法转账.' } },
    { name: 'done', stage: 'rollout.policy', matchLast: '^tool: ', respond: { content: 'C’est fait ✅' } },
  ],
});

describe('envfleet rollouts on an imported BFCL run (real workers, Python runtime, scripted policy)', function () {
  this.timeout(300_000);
  const fleet = useFleet();

  it('scripted multi-turn episodes: the gold path scores 1, a missing call fails with instance_state_mismatch', async () => {
    const f = await fleet({ script: POLICY });
    const python = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 192, logger: pino({ level: 'silent' }) });
    try {
      await importBfcl(f.store, python, { runId: 'bf-roll', layout: await findBfclLayout(FIXTURE, ['base', 'long_context']), categories: ['base', 'long_context'] }, runOptionsFrom(f.config));
    } finally {
      await python.close();
    }
    const r = await submitRollouts(f.config, f.redis, { runId: 'bf-roll', samples: 1, modes: ['non-conversational'] });
    expect(r.scenarios).to.equal(3);
    await f.waitForRun('bf-roll');
    const byScenario = new Map<string, Trajectory>();
    for (const id of await f.store.listDocIds('bf-roll', 'trajectory')) {
      const t = (await f.store.getDoc('bf-roll', 'trajectory', id)) as Trajectory;
      byScenario.set(t.scenarioId, t);
    }
    for (const id of ['fixture_base_0', 'fixture_long_context_0']) {
      const t = byScenario.get(id)!;
      expect(t.termination.reason, id).to.equal('agent-finished');
      expect(t.steps.map(s => s.tool), id).to.deep.equal(['open_folder', 'write_note', 'list_notes']);
      expect(t.reward, `${id}: ${t.checks[0]?.error}`).to.equal(1);
    }
    const dice = byScenario.get('fixture_base_1')!;
    expect(dice.steps.map(s => s.tool)).to.deep.equal(['deposit', 'get_balance']);
    expect(dice.reward).to.equal(0);
    expect(dice.checks[0]!.error).to.match(/multi_turn:instance_state_mismatch: turn 0: DiceBank differs from the gold state in balance, history/);
  });
});
