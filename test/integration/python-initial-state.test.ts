import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { pino } from 'pino';
import { createSessionRegistry, type ServedScenario } from '../../src/env-server/sessions.js';
import { createLanguageRouter } from '../../src/sandbox/language-router.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../src/sandbox/limits.js';
import { createPythonSandboxRunner } from '../../src/sandbox/python/python-runner.js';
import { createLocalSandboxRunner, type SandboxRunner } from '../../src/sandbox/runner.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import type { EnvironmentRecord } from '../../src/synthesis/types.js';
import { playCalls } from '../helpers/episodes.js';

// A Python environment's checks see the constructed instance's state as `initial_state` (EnvScaler's semantics: what
// __init__ set, then the config's keys). The checks that run outside the session — an episode's (they read the
// transcript), a JavaScript check of a Python environment, a served session's reward preview — must see that state
// too, not the config the scenario gives: here the config names only the owner, and __init__ sets a float balance.
const SOURCE = [
  'class Wallet:',
  '    def __init__(self, config=None):',
  '        self.balance = 0.0',
  '        self.history = []',
  '    def deposit(self, amount):',
  '        self.balance += amount',
  '        self.history.append(amount)',
  '        return {"balance": self.balance}',
  '',
].join('\n');
const TOOLS = [{ type: 'function' as const, function: { name: 'deposit', description: 'Deposit an amount', parameters: { type: 'object', properties: { amount: { type: 'number' } }, required: ['amount'] } } }];
const ENV = { id: 'env-wallet', description: { summary: 'Porte-monnaie 钱包', introduction: 'A wallet 👛.' }, className: 'Wallet', source: SOURCE, language: 'python', tools: TOOLS } as unknown as EnvironmentRecord;

const PY_CHECK = 'def check_func(final_state):\n    return isinstance(final_state["balance"], float) and isinstance(initial_state["balance"], float) and initial_state["owner"] == "Zoë 张" and final_state["balance"] - initial_state["balance"] == 5.0\n';
const CHECKLIST = [
  { item: 'the balance went up by 5 (Python, in the session)', check: PY_CHECK, language: 'python' as const },
  { item: 'the balance went up by 5 (Python, with the transcript)', check: `${PY_CHECK.replace('return ', 'return len(episode["messages"]) > 0 and ')}`, language: 'python' as const, episode: true as const },
  { item: 'the balance went up by 5 (JavaScript)', check: 'function check(finalState, initialState) { return initialState.owner === "Zoë 张" && initialState.balance === 0 && finalState.balance - initialState.balance === 5; }' },
];
const SCENARIO = { id: 'sc-wallet', runId: 'r-initial', environmentId: ENV.id, index: 0, status: 'ready', initialState: { owner: 'Zoë 张' }, task: 'Dépose 5 € 💶', checklist: CHECKLIST } as unknown as ScenarioRecord;

describe('checks outside a Python session see the initial state its own checks see (the constructed instance’s)', function () {
  this.timeout(180_000);
  let python: ReturnType<typeof createPythonSandboxRunner>;
  let sandbox: SandboxRunner;

  before(() => {
    python = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 256, logger: pino({ level: 'silent' }) });
    sandbox = createLanguageRouter({ js: createLocalSandboxRunner(), python });
  });
  after(async () => {
    await sandbox.close();
  });

  it('a session gives its initial state as its checks see it: the floats as floats, what __init__ set beside the config', async () => {
    const session = await sandbox.openSession({ name: 'wallet', className: 'Wallet', source: SOURCE, tools: TOOLS, language: 'python' }, { owner: 'Zoë 张' }, DEFAULT_SANDBOX_LIMITS);
    try {
      expect(await session.initialState()).to.equal('{"balance":0.0,"history":[],"owner":"Zoë 张"}');
      await session.call('deposit', { amount: 5 });
      expect(await session.initialState(), 'what the tools did is not in it').to.equal('{"balance":0.0,"history":[],"owner":"Zoë 张"}');
    } finally {
      await session.close();
    }
    // A text past 64 Ki characters that is not ASCII crosses from the interpreter as UTF-8 bytes: it arrives whole,
    // a lone surrogate as its escape (as create wrote it).
    const text = '注意 🧾 é'.repeat(12_000);
    const big = await sandbox.openSession({ name: 'wallet', className: 'Wallet', source: SOURCE, tools: TOOLS, language: 'python' }, { owner: `${text}\ud800` }, DEFAULT_SANDBOX_LIMITS);
    try {
      expect(await big.initialState()).to.equal(`{"balance":0.0,"history":[],"owner":"${text}\\ud800"}`);
      expect(JSON.parse(await big.initialState())).to.deep.equal({ balance: 0, history: [], owner: `${text}\ud800` });
    } finally {
      await big.close();
    }
  });

  it('an episode scores every check, the episode check and the JavaScript one included, on that initial state', async () => {
    const t = await playCalls(sandbox, SCENARIO, ENV, [{ name: 'deposit', arguments: '{"amount": 5}' }]);
    expect(t.termination.reason).to.equal('agent-finished');
    expect(t.checks).to.deep.equal(CHECKLIST.map(c => ({ item: c.item, passed: true })));
    expect(t.reward).to.equal(1);
  });

  it('gives the initial state as the session wrote it at its start, running no code of the environment: a class whose copy leaves a field out (__getstate__) loses no reward', async () => {
    // The copy create keeps for the checks has no `_cache` (deepcopy goes through __getstate__), so encoding the copy
    // again raised AttributeError: the episode lost its final state and every check, the preview failed.
    const source = [
      'from dataclasses import dataclass, field',
      '@dataclass',
      'class Account:',
      '    id: str',
      '    _cache: dict = field(default_factory=dict)',
      '    def __getstate__(self):',
      '        d = self.__dict__.copy()',
      '        d.pop("_cache", None)',
      '        return d',
      'class Bank:',
      '    def __init__(self, config=None):',
      '        self.accounts = [Account("compte-é"), Account("注意 🧾 é" * 12000)]',
      '        self.n = 0',
      '    def bump(self):',
      '        self.n += 1',
      '        return {"n": self.n}',
      '',
    ].join('\n');
    const tools = [{ type: 'function' as const, function: { name: 'bump', description: 'bump', parameters: { type: 'object', properties: {} } } }];
    const env = { ...ENV, id: 'env-bank', className: 'Bank', source, tools } as EnvironmentRecord;
    const checklist = [
      { item: 'n is 1', check: 'def check_func(final_state):\n    return final_state["n"] == 1 and initial_state["n"] == 0\n', language: 'python' as const },
      { item: 'n is 1, said once', check: 'def check_func(final_state):\n    return final_state["n"] == 1 and initial_state["n"] == 0 and len(episode["messages"]) > 0\n', language: 'python' as const, episode: true as const },
    ];
    const session = await sandbox.openSession({ name: 'bank', className: 'Bank', source, tools, language: 'python' }, {}, DEFAULT_SANDBOX_LIMITS);
    try {
      expect(await session.initialState()).to.equal(`{"accounts":[{"_cache":{},"id":"compte-é"},{"_cache":{},"id":"${'注意 🧾 é'.repeat(12_000)}"}],"n":0}`);
    } finally {
      await session.close();
    }
    const t = await playCalls(sandbox, { ...SCENARIO, id: 'sc-bank', environmentId: env.id, initialState: {}, checklist }, env, [{ name: 'bump', arguments: {} }]);
    expect(t.checksError).to.equal(null);
    expect(t.checks).to.deep.equal(checklist.map(c => ({ item: c.item, passed: true })));
  });

  it("a served session's reward preview is what ending it would score", async () => {
    const plain = CHECKLIST.filter(c => !('episode' in c));
    const served: ServedScenario = { scenario: { ...SCENARIO, checklist: plain }, env: ENV, limits: DEFAULT_SANDBOX_LIMITS };
    const reg = createSessionRegistry({ sandbox, scenarios: { scenario: () => Promise.resolve(served) } }, { maxSessions: 2, idleTimeoutMs: 0 });
    const s = await reg.open(SCENARIO.id);
    expect(await reg.preview(s.id)).to.deep.include({ reward: 0, checksError: null });
    await reg.call(s.id, 'deposit', { amount: 5 });
    const preview = await reg.preview(s.id);
    const end = await reg.finish(s.id);
    expect(end.checks).to.deep.equal(plain.map(c => ({ item: c.item, passed: true })));
    expect(preview).to.deep.equal({ reward: end.reward, checks: end.checks, checksError: null });
  });
});
