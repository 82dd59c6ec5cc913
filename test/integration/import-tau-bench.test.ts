import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import type { AppConfig } from '../../config/index.js';
import { runOptionsFrom, submitRollouts } from '../../queues/submit.js';
import { exportRun } from '../../src/datasets/export.js';
import { loadExportScenarioSource } from '../../src/env-server/file-source.js';
import { createSessionRegistry } from '../../src/env-server/sessions.js';
import { findEnvscalerFiles, importEnvscaler } from '../../src/importers/envscaler.js';
import { READER_PY, READER_TOOLS } from '../../src/importers/tau-bench-python.js';
import { findTauBenchDomains, importTauBench, minifyJson, tauLimits, type TauImportSummary } from '../../src/importers/tau-bench.js';
import { parseModelScript } from '../../src/model-server/index.js';
import { scoreFinalState } from '../../src/rollouts/score.js';
import type { Trajectory } from '../../src/rollouts/types.js';
import type { RunOptions } from '../../src/runs/options.js';
import { createRedisRunStore, type RunStore } from '../../src/runs/store.js';
import { EnvironmentCode } from '../../src/sandbox/bundle.js';
import { createLanguageRouter } from '../../src/sandbox/language-router.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../src/sandbox/limits.js';
import { createPythonSandboxRunner } from '../../src/sandbox/python/python-runner.js';
import { createLocalSandboxRunner, type EnvSession, type SandboxRunner } from '../../src/sandbox/runner.js';
import type { EnvironmentRecord } from '../../src/synthesis/types.js';
import { childEnv, dropPrefix, ENVFLEET_BIN, requireRedis, testConfig, useFleet } from '../helpers/integration.js';
import { windowsCopy } from '../helpers/windows-copy.js';

const CHECKOUT = new URL('../fixtures/tau-bench/', import.meta.url).pathname;
const DOMAIN = join(CHECKOUT, 'tau_bench', 'envs', 'teashop');
const LIMITS = tauLimits(DEFAULT_SANDBOX_LIMITS);
const OPTIONS = { limits: DEFAULT_SANDBOX_LIMITS, models: {} } as unknown as RunOptions;
const silent = pino({ level: 'silent' });

const codeOf = (env: EnvironmentRecord) => ({ name: env.description.summary, className: env.className!, source: env.source!, tools: env.tools ?? [], ...(env.language ? { language: env.language } : {}) });

describe('envfleet import tau-bench: the reader in the sandbox (ast, literals only)', function () {
  this.timeout(120_000);
  let sandbox: SandboxRunner;
  let reader: EnvSession;
  before(async () => {
    sandbox = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 192, logger: silent });
    const tools = READER_TOOLS.map(name => ({ type: 'function' as const, function: { name, parameters: { type: 'object' } } }));
    reader = await sandbox.openSession({ name: 'reader', className: 'TauBenchReader', source: READER_PY, tools, language: 'python' }, {}, { ...LIMITS, maxResultBytes: 8 << 20 });
  });
  after(async () => {
    await reader?.close();
    await sandbox?.close();
  });
  const parse = async (source: string) => {
    const head = (await reader.call('parse_tasks', { file: 'tasks_x.py', source })).result as { count?: number; problem?: string };
    if (head.problem) return head;
    return (await reader.call('task_batch', { file: 'tasks_x.py', start: 0, count: 100 })).result as { index: number; line: number; task: Record<string, unknown> | null; problem: string | null; key: string | null }[];
  };

  it('reads the fixture task file: Task/Action keyword calls become records, the task written with a variable is a named skip', async () => {
    const tasks = (await parse(await readFile(join(DOMAIN, 'tasks_test.py'), 'utf8'))) as { index: number; task: Record<string, unknown> | null; problem: string | null }[];
    expect(tasks.map(t => t.index)).to.deep.equal([0, 1, 2, 3, 4]);
    expect(tasks[0]!.task).to.deep.include({ user_id: 'm_li', outputs: [] });
    expect((tasks[0]!.task!['actions'] as unknown[])[1]).to.deep.equal({ name: 'add_points', kwargs: { member_id: 'm_li', points: 30, note: 'tasting night 🍵' } });
    expect(tasks[1]!.task!['outputs']).to.deep.equal(['6234']);
    expect(tasks[3]!.task).to.equal(null);
    expect(tasks[3]!.problem).to.match(/TASKS_TEST\[3\]\.actions\[0\]\.kwargs\.member_id: Name is not a literal \(line \d+\)/);
  });

  it('tells 30 from 30.0 (the key is over the Python repr), and refuses what is not a literal, with where', async () => {
    const a = (await parse('TASKS = [Task(user_id="u", instruction="i", actions=[Action(name="t", kwargs={"n": 30})], outputs=[])]')) as { key: string }[];
    const b = (await parse('TASKS = [Task(user_id="u", instruction="i", actions=[Action(name="t", kwargs={"n": 30.0})], outputs=[])]')) as { key: string }[];
    expect(a[0]!.key).to.not.equal(b[0]!.key);
    const bad = (await parse('TASKS = [Task("u", instruction="i", actions=[], outputs=[]), Task(user_id="u", instruction="i" + "j", actions=[], outputs=[]), Task(user_id="u", instruction="é", actions=[Action(name="t", kwargs={"a": -1, "b": [True, None]})])]')) as {
      task: unknown;
      problem: string | null;
    }[];
    expect(bad[0]!.problem).to.match(/positional arguments/);
    expect(bad[1]!.problem).to.match(/TASKS\[1\]\.instruction: BinOp is not a literal/);
    expect(bad[2]!.task).to.deep.equal({ annotator: null, user_id: 'u', instruction: 'é', actions: [{ name: 't', kwargs: { a: -1, b: [true, null] } }], outputs: [] });
    expect(await parse('x = 1')).to.have.property('problem').that.matches(/no module-level list of Task/);
    expect(await parse('TASKS = [Task(')).to.have.property('problem').that.matches(/syntax error, line 1/);
  });

  it('rewrites a tool file: the tau_bench import dropped, eval routed to the arithmetic walker; other tau_bench imports are refused', async () => {
    const files = { 'evaluate_sum.py': await readFile(join(DOMAIN, 'tools', 'evaluate_sum.py'), 'utf8'), 'bad.py': 'from tau_bench.envs.base import Env\nclass X(Tool):\n    pass\n' };
    const out = (await reader.call('analyze_tools', { files, init_source: await readFile(join(DOMAIN, 'tools', '__init__.py'), 'utf8') })).result as {
      files: Record<string, { problems: string[]; classes?: string[]; evals?: number; source?: string }>;
      order: [string, string][];
    };
    const sum = out.files['evaluate_sum.py']!;
    expect(sum.classes).to.deep.equal(['EvaluateSum']);
    expect(sum.evals).to.equal(1);
    expect(sum.source).to.include('float(_envfleet_eval(expression,');
    expect(sum.source).to.match(/^# \(envfleet\) from tau_bench\.envs\.tool import Tool/m);
    expect(out.files['bad.py']!.problems[0]).to.match(/bad\.py, line 1: imports Env from tau_bench\.envs\.base/);
    expect(out.order.map(o => o[1])).to.deep.equal(['LookupMember', 'AddPoints', 'EvaluateSum', 'HandOver']);
  });

  it('minifies JSON text outside strings only', () => {
    const text = '{\n  "a b": [1.0, 2],\n\t"c": "x \\" y\\\\",  "d" : "é 🍵"\r\n}';
    expect(minifyJson(text)).to.equal('{"a b":[1.0,2],"c":"x \\" y\\\\","d":"é 🍵"}');
  });
});

describe('envfleet import tau-bench: the layout', () => {
  it('finds the domain from a checkout, its envs folder, or the domain folder', async () => {
    for (const from of [CHECKOUT, join(CHECKOUT, 'tau_bench', 'envs'), DOMAIN]) expect((await findTauBenchDomains(from)).map(d => d.name)).to.deep.equal(['teashop']);
    const d = (await findTauBenchDomains(CHECKOUT))[0]!;
    expect(d.toolFiles).to.deep.equal(['add_points.py', 'evaluate_sum.py', 'hand_over.py', 'lookup_member.py']);
    expect(d.dataFiles).to.deep.equal(['members.json', 'teas.json']);
    expect(d.tasks.map(t => t.split)).to.deep.equal(['test', 'dev']);
  });

  it('says what is missing when the layout is wrong', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-tau-layout-'));
    try {
      await cp(CHECKOUT, dir, { recursive: true });
      await rm(join(dir, 'tau_bench', 'envs', 'teashop', 'wiki.md'));
      let err: Error | null = null;
      await findTauBenchDomains(dir).catch((e: Error) => (err = e));
      expect(err!.message).to.match(/no τ-bench domain found.*tau_bench\/envs\/teashop: no wiki\.md \(the policy\)/);
      await findTauBenchDomains(join(dir, 'nowhere')).catch((e: Error) => (err = e));
      expect(err!.message).to.match(/no such directory; pass a checkout/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('envfleet import tau-bench (command line, real Redis, real Pyodide)', function () {
  this.timeout(300_000);
  let config: AppConfig;
  let dir: string;
  before(async () => {
    await requireRedis();
    config = testConfig(null);
    dir = await mkdtemp(join(tmpdir(), 'envfleet-tau-cli-'));
  });
  after(async () => {
    if (config) await dropPrefix(config.redis.prefix);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('exits 1 when every task was skipped, though the domain\'s environment was written (it exited 0, offering to roll out a run without scenarios)', async () => {
    const domain = join(dir, 'teashop');
    await cp(DOMAIN, domain, { recursive: true });
    // The task file of the split cannot be read at all: its one skip stands for every task.
    await writeFile(join(domain, 'tasks_test.py'), 'TASKS_TEST = [Task(user_id="m_li", instruction="点一杯抹茶 🍵"\n');
    const r = await promisify(execFile)(process.execPath, [ENVFLEET_BIN, 'import', 'tau-bench', '--from', domain, '--run', 'tau-none'], { env: childEnv(config), maxBuffer: 64 << 20 }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
    );
    expect(r.code, r.stderr).to.equal(1);
    expect(r.stdout).to.match(/environments: 1 new/).and.match(/scenarios: +0 new, 0 unchanged, 0 updated/).and.match(/skipped: +1 tasks:\n +teashop\/tasks_test\.py the file: syntax error/);
    expect(r.stderr).to.match(/nothing was imported \(only 1 environment, without a scenario to roll out\): all 1 tasks were skipped .*run tau-none was created without scenarios \(envfleet runs delete --run tau-none/);
  });
});

describe('envfleet import tau-bench: import, sessions, checks (real Redis, real Pyodide)', function () {
  this.timeout(300_000);
  let config: AppConfig;
  let redis: Redis;
  let store: RunStore;
  let sandbox: SandboxRunner;
  let first: TauImportSummary;

  before(async () => {
    await requireRedis();
    config = testConfig(null);
    redis = new Redis(config.redis.url);
    store = createRedisRunStore(redis, config.redis.prefix);
    const python = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 256, logger: silent });
    sandbox = createLanguageRouter({ js: createLocalSandboxRunner(), python });
    first = await importTauBench(store, sandbox, { runId: 'tau', domains: await findTauBenchDomains(CHECKOUT), splits: ['test'] }, OPTIONS, silent);
  });
  after(async () => {
    await sandbox?.close();
    redis?.disconnect();
    if (config) await dropPrefix(config.redis.prefix);
  });

  it('one Python environment per domain, one ready scenario per readable task; the malformed task is a named skip; the run gets τ-bench limits', async () => {
    expect(first.environments).to.deep.equal({ imported: 1, unchanged: 0, updated: 0 });
    expect(first.scenarios).to.deep.equal({ imported: 4, unchanged: 0, updated: 0 });
    expect(first.checks).to.equal(5);
    expect(first.skipped).to.have.length(1);
    expect(first.skipped[0]).to.deep.include({ file: 'teashop/tasks_test.py', where: 'task 3 (line 28)' });
    const d = first.domains[0]!;
    expect(d).to.deep.include({ domain: 'teashop', environmentId: 'tau-teashop', tools: 4, replayed: 4, reused: 0, withOutputs: 1, unchangedByGold: 2 });
    expect(d.initialHash).to.match(/^[0-9a-f]{64}$/);
    const env = (await store.getDoc('tau', 'env', 'tau-teashop'))!;
    expect(EnvironmentCode.safeParse(codeOf(env)).success).to.equal(true);
    expect(env.tools!.map(t => t.function.name)).to.deep.equal(['lookup_member', 'add_points', 'evaluate_sum', 'transfer_to_human_agents']);
    expect(env.endTools).to.deep.equal(['transfer_to_human_agents']);
    expect(env.description.introduction).to.include('抹茶');
    expect(env.source).to.include("'{\"m_li\":{\"name\":\"李雷\",\"points\":120.0,");
    const run = (await store.getRun('tau'))!;
    expect(run.input).to.equal('tau-bench');
    expect(run.options.limits.checkDeadlineMs).to.be.at.least(30_000);
    const s0 = (await store.getDoc('tau', 'scenario', 'tau-teashop-test-0'))!;
    expect(s0).to.deep.include({ status: 'ready', task: s0.userGoal!.goal, initialState: {} });
    expect(s0.lineage.original).to.deep.include({ envId: 'teashop', split: 'test', userId: 'm_li', file: 'tasks_test.py', record: 0 });
    expect(s0.lineage.source).to.equal('tau-bench');
    const s2 = (await store.getDoc('tau', 'scenario', 'tau-teashop-test-2'))!;
    expect(s2.lineage.original!.goldHash).to.equal(d.initialHash);
    expect(s0.lineage.original!.goldHash).to.not.equal(d.initialHash);
  });

  it('imports a checkout as Windows leaves it (a UTF-8 byte order mark and CRLF in every file, a folder name with spaces and accents) as it imports the plain one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-tau-'));
    try {
      const checkout = join(dir, 'mon dépôt τ-bench');
      await windowsCopy(CHECKOUT, checkout);
      const r = await importTauBench(store, sandbox, { runId: 'tau-windows', domains: await findTauBenchDomains(checkout), splits: ['test'] }, OPTIONS, silent);
      expect(r.environments).to.deep.equal({ imported: 1, unchanged: 0, updated: 0 });
      expect(r.scenarios).to.deep.equal({ imported: 4, unchanged: 0, updated: 0 });
      expect(r.skipped.map(s => s.where)).to.deep.equal(['task 3 (line 28)']);
      expect(r.domains[0]!.initialHash).to.equal(first.domains[0]!.initialHash);
      const env = (await store.getDoc('tau-windows', 'env', 'tau-teashop'))!;
      expect(env.description.introduction).to.equal((await store.getDoc('tau', 'env', 'tau-teashop'))!.description.introduction);
      for (const id of ['tau-teashop-test-0', 'tau-teashop-test-1', 'tau-teashop-test-2', 'tau-teashop-test-4']) {
        expect((await store.getDoc('tau-windows', 'scenario', id))!.lineage.original!.goldHash, id).to.equal((await store.getDoc('tau', 'scenario', id))!.lineage.original!.goldHash);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the gold path scores 1 (arguments through JSON), a wrong path less; the calculator keeps eval semantics without eval', async () => {
    const env = (await store.getDoc('tau', 'env', 'tau-teashop'))!;
    const s0 = (await store.getDoc('tau', 'scenario', 'tau-teashop-test-0'))!;
    const gold = await sandbox.openSession(codeOf(env), s0.initialState, LIMITS);
    expect(JSON.parse((await gold.call('lookup_member', { member_id: 'm_li' })).result as string)).to.deep.include({ name: '李雷', tier: '茶友 🍵' });
    expect((await gold.call('add_points', { member_id: 'm_li', points: 30, note: 'tasting night 🍵' })).result).to.equal('Points now 150.0');
    for (const [expression, out] of [
      ['1234 + 5000', '6234.0'],
      ['(2 + 3) * 4 / 3', '6.67'],
      ['2 ** 10 - -1', '1025.0'],
      ['7 // 2', '3.0'],
      ['1/0', 'Error: division by zero'],
      ['import os', 'Error: only digits, + - * / ( ) . and spaces'],
      ['(2)(3)', "Error: 'int' object is not callable"],
    ]) {
      expect((await gold.call('evaluate_sum', { expression })).result, expression).to.equal(out);
    }
    expect((await gold.call('evaluate_sum', { expression: '1 +' })).result).to.match(/^Error: .*\(<string>, line 1\)/);
    // An expression of 10,000 terms (20 KB): CPython's eval refuses it with RecursionError; Pyodide's stack overflowed
    // first, fatally, and the interpreter went down with every session on it (a stranger's probe). The session and its
    // co-tenant go on.
    const bystander = await sandbox.openSession(codeOf(env), s0.initialState, LIMITS);
    for (const terms of [10_000, 100_000]) {
      expect((await gold.call('evaluate_sum', { expression: Array(terms).fill('1').join('+') })).result, `${terms} terms`).to.equal('Error: maximum recursion depth exceeded during ast construction');
    }
    expect(JSON.parse((await bystander.call('lookup_member', { member_id: 'm_li' })).result as string)).to.deep.include({ name: '李雷' });
    await bystander.close();
    const end = await gold.finish(s0.checklist!);
    expect(end.checks!.results.map(r => r.passed)).to.deep.equal([true]);
    const wrong = await sandbox.openSession(codeOf(env), s0.initialState, LIMITS);
    await wrong.call('add_points', { member_id: 'm_li', points: 31, note: 'tasting night 🍵' });
    expect((await wrong.finish(s0.checklist!)).checks!.reward).to.equal(0);
    const s4 = (await store.getDoc('tau', 'scenario', 'tau-teashop-test-4'))!;
    const other = await sandbox.openSession(codeOf(env), s4.initialState, LIMITS);
    expect((await other.call('add_points', { member_id: 'm_zoe', points: 5, note: 'une amie' })).result).to.equal('Points now 40');
    expect((await other.finish(s4.checklist!)).checks!.reward).to.equal(1);
  });

  it('the outputs check reads the transcript: the number said with a thousands comma passes, silence fails', async () => {
    const env = (await store.getDoc('tau', 'env', 'tau-teashop'))!;
    const s1 = (await store.getDoc('tau', 'scenario', 'tau-teashop-test-1'))!;
    expect(s1.checklist!.map(c => c.episode ?? false)).to.deep.equal([false, true]);
    const session = await sandbox.openSession(codeOf(env), s1.initialState, LIMITS);
    const end = await session.finish(s1.checklist!.filter(c => !c.episode));
    const said = { messages: [{ role: 'user', content: 'what is 1,234 plus 5,000?' }, { role: 'assistant', content: 'That makes 6,234 — voilà 🍵' }], turnStates: null };
    const yes = await scoreFinalState(sandbox, s1, JSON.parse(end.stateJson!), LIMITS, null, end.checks, said);
    expect(yes.reward).to.equal(1);
    const silent2 = { messages: [{ role: 'user', content: '6234?' }], turnStates: null };
    const no = await scoreFinalState(sandbox, s1, JSON.parse(end.stateJson!), LIMITS, null, end.checks, silent2);
    expect(no.reward).to.equal(0.5);
  });

  it('importing again changes nothing and replays nothing; --split dev adds its task; another run is refused without --append', async () => {
    const again = await importTauBench(store, sandbox, { runId: 'tau', domains: await findTauBenchDomains(CHECKOUT), splits: ['test'] }, OPTIONS, silent);
    expect(again.environments).to.deep.equal({ imported: 0, unchanged: 1, updated: 0 });
    expect(again.scenarios).to.deep.equal({ imported: 0, unchanged: 4, updated: 0 });
    expect(again.domains[0]).to.deep.include({ replayed: 0, reused: 4 });
    const dev = await importTauBench(store, sandbox, { runId: 'tau', domains: await findTauBenchDomains(CHECKOUT), splits: ['dev'], limit: 1 }, OPTIONS, silent);
    expect(dev.scenarios).to.deep.equal({ imported: 1, unchanged: 0, updated: 0 });
    expect((await store.listDocIds('tau', 'scenario')).sort()).to.deep.equal(['tau-teashop-dev-0', 'tau-teashop-test-0', 'tau-teashop-test-1', 'tau-teashop-test-2', 'tau-teashop-test-4']);

    const ENVSCALER = new URL('../fixtures/envscaler/github', import.meta.url).pathname;
    await importEnvscaler(store, { runId: 'mixed', files: await findEnvscalerFiles(ENVSCALER), split: 'all' }, OPTIONS);
    let err: Error | null = null;
    await importTauBench(store, sandbox, { runId: 'mixed', domains: await findTauBenchDomains(CHECKOUT), splits: ['test'] }, OPTIONS, silent).catch((e: Error) => (err = e));
    expect(err!.message).to.match(/made from envscaler, not imported from τ-bench.*--append/);
    const appended = await importTauBench(store, sandbox, { runId: 'mixed', domains: await findTauBenchDomains(CHECKOUT), splits: ['test'], append: true }, OPTIONS, silent);
    expect(appended.scenarios.imported).to.equal(4);
    expect(appended.warnings.join(' ')).to.match(/froze checkDeadlineMs = 1000 ms, below the 30000 ms/);
  });

  it('envfleet serve on the export files: a session on an imported task answers a tool call; finishing scores it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-tau-serve-'));
    try {
      await exportRun(store, 'tau', dir, { formats: [] });
      const loaded = await loadExportScenarioSource({ environments: join(dir, 'environments.jsonl'), scenarios: join(dir, 'scenarios.jsonl') }, LIMITS);
      const registry = createSessionRegistry({ sandbox, scenarios: loaded.source }, { maxSessions: 2, idleTimeoutMs: 0 });
      const session = await registry.open('tau-teashop-test-4');
      const card = await registry.call(session.id, 'lookup_member', { member_id: 'm_zoe' });
      expect(JSON.parse(card.result as string)).to.deep.include({ name: 'Zoë Müller', points: 35 });
      expect((await registry.call(session.id, 'add_points', { member_id: 'm_zoe', points: 5, note: 'une amie' })).result).to.equal('Points now 40');
      const done = await registry.finish(session.id);
      expect(done, JSON.stringify(done)).to.include({ reward: 1, solved: true, checksError: null });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** A scripted policy for the tea club (non-conversational: the instruction is the first user message). */
const POLICY = parseModelScript({
  rules: [
    { name: 'look', stage: 'rollout.policy', matchLast: '^user: You are 李雷 \\(member m_li\\)', respond: { toolCalls: [{ name: 'lookup_member', arguments: { member_id: 'm_li' } }] } },
    { name: 'add', stage: 'rollout.policy', matchLast: '^tool: .*茶友', respond: { toolCalls: [{ name: 'add_points', arguments: { member_id: 'm_li', points: 30, note: 'tasting night 🍵' } }] } },
    { name: 'added', stage: 'rollout.policy', matchLast: '^tool: "Points now', respond: { content: 'Done: 30 points added.' } },
    { name: 'sum', stage: 'rollout.policy', matchLast: '^user: You are Zoë Müller\\. You want to know', respond: { toolCalls: [{ name: 'evaluate_sum', arguments: { expression: '1234 + 5000' } }] } },
    { name: 'summed', stage: 'rollout.policy', matchLast: '^tool: "6234', respond: { content: 'It is 6,234.' } },
    { name: 'human', stage: 'rollout.policy', matchLast: '^user: You are Zoë\\. You ask for a human', respond: { toolCalls: [{ name: 'transfer_to_human_agents', arguments: { summary: 'wants a person — une personne' } }] } },
    { name: 'wrong', stage: 'rollout.policy', matchLast: '^user: You are Zoë Müller \\(m_zoe\\)', respond: { toolCalls: [{ name: 'add_points', arguments: { member_id: 'm_zoe', points: 50, note: 'une amie' } }] } },
  ],
});

describe('envfleet rollouts on an imported τ-bench run (real workers, Python runtime, scripted policy)', function () {
  this.timeout(300_000);
  const fleet = useFleet();

  it('episodes run in the imported domain; the gold path and the outputs score 1, a wrong path 0', async () => {
    const f = await fleet({ script: POLICY });
    const python = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 256, logger: silent });
    try {
      await importTauBench(f.store, python, { runId: 'tau-roll', domains: await findTauBenchDomains(CHECKOUT), splits: ['test'] }, runOptionsFrom(f.config), silent);
    } finally {
      await python.close();
    }
    const r = await submitRollouts(f.config, f.redis, { runId: 'tau-roll', samples: 1, modes: ['non-conversational'] });
    expect(r.scenarios).to.equal(4);
    await f.waitForRun('tau-roll');
    const by = new Map<string, Trajectory>();
    for (const id of await f.store.listDocIds('tau-roll', 'trajectory')) {
      const t = (await f.store.getDoc('tau-roll', 'trajectory', id)) as Trajectory;
      by.set(t.scenarioId, t);
    }
    expect(by.get('tau-teashop-test-0')!.steps.map(s => s.tool)).to.deep.equal(['lookup_member', 'add_points']);
    expect(by.get('tau-teashop-test-0')!.reward).to.equal(1);
    expect(by.get('tau-teashop-test-1')!.checks.map(c => c.passed)).to.deep.equal([true, true]);
    const human = by.get('tau-teashop-test-2')!;
    expect(human.steps.map(s => s.tool)).to.deep.equal(['transfer_to_human_agents']);
    expect(human.termination).to.deep.equal({ reason: 'tool-ended', detail: 'transfer_to_human_agents ends the episode' });
    expect(human.reward).to.equal(1);
    expect(by.get('tau-teashop-test-4')!.reward).to.equal(0);
    const finalState = by.get('tau-teashop-test-0')!.finalState;
    const data = ((typeof finalState === 'string' ? JSON.parse(finalState) : finalState) as { data: { members: Record<string, { points: number; history: unknown[] }> } }).data;
    expect(data.members['m_li']!.history).to.deep.equal([{ points: 30, note: 'tasting night 🍵' }]);
  });
});
