import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { pino } from 'pino';
import { EnvServerError } from '../../src/env-server/errors.js';
import { createSessionRegistry, type ServedScenario, type SessionRegistry } from '../../src/env-server/sessions.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import { createLanguageRouter } from '../../src/sandbox/language-router.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../src/sandbox/limits.js';
import { createPythonSandboxRunner } from '../../src/sandbox/python/python-runner.js';
import { createLocalSandboxRunner, type SandboxRunner } from '../../src/sandbox/runner.js';
import type { EnvironmentRecord } from '../../src/synthesis/types.js';
import { rejection } from '../helpers/assert.js';

/**
 * One Python interpreter holds every session here, as `envfleet serve` holds them by default: an environment whose call
 * swallows the interrupt (a loop inside a bare except) gets its interpreter terminated and replaced, and the other
 * sessions on it lose their environments. A stranger's probe: those sessions were scored 0 (reward 0, ended_by
 * environment-error) although they had played their task out; that is the server's doing, as a full memory bound is.
 */
const SOURCE = [
  'class Counter:',
  '    def __init__(self, config=None):',
  '        self.count = 0',
  '        self.note = ""',
  '',
  '    def bump(self, note: str) -> dict:',
  '        """Count one, with a note."""',
  '        self.count += 1',
  '        self.note = note',
  '        return {"count": self.count, "note": note}',
  '',
  '    def swallow(self) -> dict:',
  '        """A loop that swallows every interrupt."""',
  '        while True:',
  '            try:',
  '                while True:',
  '                    pass',
  '            except:',
  '                pass',
  '',
].join('\n');
const TOOLS = [
  { type: 'function', function: { name: 'bump', description: 'Count one, with a note.', parameters: { type: 'object', properties: { note: { type: 'string' } }, required: ['note'] } } },
  { type: 'function', function: { name: 'swallow', description: 'A loop that swallows every interrupt.', parameters: { type: 'object', properties: {} } } },
];
const ENV = {
  id: 'env-counter',
  runId: 'lost',
  status: 'kept',
  description: { summary: 'A counter — 计数器', introduction: 'A counter 🧮.' },
  className: 'Counter',
  source: SOURCE,
  language: 'python',
  tools: TOOLS,
} as unknown as EnvironmentRecord;
const SCENARIO = {
  id: 'scn-count-once',
  runId: 'lost',
  environmentId: ENV.id,
  index: 0,
  status: 'ready',
  initialState: { count: 0, note: '' },
  task: 'Count once, noting « café ☕ ».',
  checklist: [{ item: 'counted once', language: 'python', check: 'def check_func(final_state):\n    return final_state["count"] == 1 and final_state["note"] == "café ☕"\n' }],
} as unknown as ScenarioRecord;
const LIMITS = { ...DEFAULT_SANDBOX_LIMITS, callDeadlineMs: 1_000, createDeadlineMs: 10_000, checkDeadlineMs: 2_000 };

const GROWER = [
  'class Grower:',
  '    def __init__(self, config=None):',
  '        self.data = []',
  '',
  '    def grow(self, n: int) -> dict:',
  '        """Grow the state."""',
  '        self.data = [[i, i, i] for i in range(n)]',
  '        return {"n": n}',
  '',
  '    def ping(self) -> dict:',
  '        """Ping."""',
  '        return {"ok": 1}',
  '',
].join('\n');

describe('envfleet serve: sessions whose Python interpreter another session took down are not scored (real Pyodide)', function () {
  this.timeout(300_000);
  let sandbox: SandboxRunner;
  let registry: SessionRegistry;

  before(() => {
    const python = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 192, graceMs: 500, logger: pino({ level: 'silent' }) });
    sandbox = createLanguageRouter({ js: createLocalSandboxRunner(), python });
    const served: ServedScenario = { scenario: SCENARIO, env: ENV, limits: LIMITS };
    registry = createSessionRegistry({ sandbox, scenarios: { scenario: () => Promise.resolve(served) } }, { maxSessions: 8, idleTimeoutMs: 0 });
  });
  after(async () => {
    await registry?.closeAll();
    await sandbox?.close();
  });

  it('evicts them, unscored (SESSION_EVICTED, sandbox_code ENV_DISPOSED), and scores the session whose call took the interpreter down as before', async () => {
    const played = await registry.open(SCENARIO.id);
    const calling = await registry.open(SCENARIO.id);
    const culprit = await registry.open(SCENARIO.id);
    for (const s of [played, calling]) expect((await registry.call(s.id, 'bump', { note: 'café ☕' })).runtimeError ?? null).to.equal(null);

    const stopped = await registry.call(culprit.id, 'swallow', {});
    expect(stopped.runtimeError).to.equal('DEADLINE_EXCEEDED');

    // A call of a session on the lost interpreter: SESSION_EVICTED, no reward.
    const err = await rejection(registry.call(calling.id, 'bump', { note: 'encore' }));
    expect(err).to.be.instanceOf(EnvServerError);
    expect(err).to.have.property('code', 'SESSION_EVICTED');
    expect((err as EnvServerError).message).to.include('another session').and.not.to.include('ENVFLEET_SANDBOX_HEAP_MB');
    expect((err as EnvServerError).details).to.include({ sandbox_code: 'ENV_DISPOSED', session_ended: true });
    expect(await registry.finish(calling.id)).to.include({ endedBy: 'evicted', reward: null, evictedFor: 'ENV_DISPOSED' });

    // One that had played its task out and verifies after: evicted too, not 0.
    const result = await registry.finish(played.id);
    expect(result).to.include({ endedBy: 'evicted', reward: null, solved: false, evictedFor: 'ENV_DISPOSED' });
    expect(result.detail).to.include('the final state could not be read').and.include('another session');

    // The session whose own call did it ends as before: its environment's error (no final state to check), not evicted.
    const own = await registry.finish(culprit.id);
    expect(own).to.include({ endedBy: 'environment-error' });
    expect(own.checksError).to.include('final state');
    expect(own).not.to.have.property('evictedFor');

    // The replaced interpreter serves new sessions.
    const fresh = await registry.open(SCENARIO.id);
    await registry.call(fresh.id, 'bump', { note: 'café ☕' });
    expect(await registry.finish(fresh.id)).to.include({ endedBy: 'finished', reward: 1, solved: true });
  });
  it("does not evict a session its own limit ended (a state read past its deadline): that is the environment's failure, scored as before (a reviewer's check)", async () => {
    const grower: ServedScenario = {
      env: { ...ENV, id: 'env-grower', className: 'Grower', source: GROWER, tools: [
        { type: 'function', function: { name: 'grow', description: 'Grow the state.', parameters: { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] } } },
        { type: 'function', function: { name: 'ping', description: 'Ping.', parameters: { type: 'object', properties: {} } } },
      ] } as unknown as EnvironmentRecord,
      scenario: { ...SCENARIO, id: 'scn-grower', environmentId: 'env-grower', initialState: { data: [] }, checklist: [{ item: 'true', language: 'python', check: 'def check_func(final_state):\n    return True\n' }] } as unknown as ScenarioRecord,
      limits: { ...LIMITS, callDeadlineMs: 400, createDeadlineMs: 400 },
    };
    const own = createSessionRegistry({ sandbox, scenarios: { scenario: () => Promise.resolve(grower) } }, { maxSessions: 2, idleTimeoutMs: 0 });
    try {
      const s = await own.open('scn-grower');
      await own.call(s.id, 'grow', { n: 350_000 });
      // Reading a state of a million numbers runs past the 400 ms deadline: the session's environment is ended.
      await own.preview(s.id).catch(() => undefined);
      const after = await own.call(s.id, 'ping', {}).catch((e: unknown) => e);
      expect(after, String(after)).not.to.be.instanceOf(EnvServerError);
      const result = await own.finish(s.id);
      expect(result.endedBy, JSON.stringify(result)).to.not.equal('evicted');
      expect(result).not.to.have.property('evictedFor');
    } finally {
      await own.closeAll();
    }
  });
});

/**
 * Many environments of a few MB each fill one interpreter (a serve process's sessions: τ-bench's retail database is
 * about 1.3 MB a session). None holds enough to be stopped as a hoarder, so a call, a creation or a final state that
 * met the cap was recorded as that environment's own MEMORY_EXCEEDED: a stranger's probe got 500 ENVIRONMENT_FAILED
 * for new sessions and reward 0 for a session whose final state could not be written.
 */
const KEEPER = [
  'KEPT = []',
  'class Keeper:',
  '    def __init__(self, config=None):',
  '        self.kept = 0',
  '',
  '    def keep(self, mb: int) -> dict:',
  '        """Keep some megabytes."""',
  '        KEPT.append(bytearray(mb << 20))',
  '        self.kept += mb',
  '        return {"kept": self.kept}',
  '',
  '    def work(self, mb: int) -> dict:',
  '        """Use some megabytes for a moment."""',
  '        scratch = bytearray(mb << 20)',
  '        return {"used": len(scratch) >> 20}',
  '',
].join('\n');
const BIG = 'HELD = []\nclass Big:\n    def __init__(self, config=None):\n        HELD.append(bytearray(110 << 20))\n        self.n = 0\n\n    def n_(self) -> dict:\n        """N."""\n        return {"n": self.n}\n';
const served = (id: string, className: string, source: string, tools: readonly unknown[]): ServedScenario => ({
  env: { ...ENV, id: `env-${id}`, className, source, tools } as unknown as EnvironmentRecord,
  scenario: { ...SCENARIO, id, environmentId: `env-${id}`, initialState: { kept: 0 }, checklist: [{ item: 'true', language: 'python', check: 'def check_func(final_state):\n    return True\n' }] } as unknown as ScenarioRecord,
  limits: { ...LIMITS, callDeadlineMs: 5_000 },
});

describe('envfleet serve: an interpreter full of many environments is the server\'s load (real Pyodide)', function () {
  this.timeout(300_000);
  let sandbox: SandboxRunner;
  let registry: SessionRegistry;

  before(() => {
    const python = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 192, logger: pino({ level: 'silent' }) });
    sandbox = createLanguageRouter({ js: createLocalSandboxRunner(), python });
    const keeperTools = [
      { type: 'function', function: { name: 'keep', description: 'Keep some megabytes.', parameters: { type: 'object', properties: { mb: { type: 'integer' } }, required: ['mb'] } } },
      { type: 'function', function: { name: 'work', description: 'Use some megabytes for a moment.', parameters: { type: 'object', properties: { mb: { type: 'integer' } }, required: ['mb'] } } },
    ];
    const scenarios: Record<string, ServedScenario> = {
      keeper: served('keeper', 'Keeper', KEEPER, keeperTools),
      big: served('big', 'Big', BIG, [{ type: 'function', function: { name: 'n_', description: 'N.', parameters: { type: 'object', properties: {} } } }]),
    };
    registry = createSessionRegistry({ sandbox, scenarios: { scenario: id => Promise.resolve(scenarios[id]!) } }, { maxSessions: 16, idleTimeoutMs: 0 });
  });
  after(async () => {
    await registry?.closeAll();
    await sandbox?.close();
  });

  it('refuses a new session OVER_CAPACITY and evicts a session whose call found no room, unscored, instead of blaming their environments', async () => {
    // Eight sessions of 14 MB each: 112 MB of a 192 MB interpreter, none a quarter of it.
    for (let i = 0; i < 8; i++) {
      const s = await registry.open('keeper');
      expect((await registry.call(s.id, 'keep', { mb: 14 })).runtimeError ?? null, `keeper ${i}`).to.equal(null);
    }
    const refused = await rejection(registry.open('big'));
    expect(refused, String(refused)).to.have.property('code', 'OVER_CAPACITY');
    expect(String(refused)).to.include('ENVFLEET_PYTHON_HEAP_MB=192').and.include('its 8 other environments held about');

    const worker = await registry.open('keeper');
    const evicted = await rejection(registry.call(worker.id, 'work', { mb: 100 }));
    expect(evicted, String(evicted)).to.have.property('code', 'SESSION_EVICTED');
    expect(String(evicted)).to.include('ENVFLEET_PYTHON_HEAP_MB').and.not.include('ENVFLEET_SANDBOX_HEAP_MB reached');
    expect(await registry.finish(worker.id)).to.include({ endedBy: 'evicted', reward: null });

    // An environment asking for more than the others hold, freed (more than the whole heap): its own bomb, however
    // crowded the interpreter is (a reviewer's check: it was evicted unscored, and an episode would wait for ever).
    const bomber = await registry.open('keeper');
    const bomb = await registry.call(bomber.id, 'work', { mb: 1000 });
    expect(bomb.runtimeError).to.equal('MEMORY_EXCEEDED');
    expect(await registry.finish(bomber.id)).to.include({ endedBy: 'environment-error' });
  });
});
