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
});
