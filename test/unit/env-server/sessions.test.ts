import { expect } from 'chai';
import { EnvServerError } from '../../../src/env-server/errors.js';
import { createSessionRegistry, scoredResult, type ScenarioSource, type ServedScenario } from '../../../src/env-server/sessions.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../../src/sandbox/limits.js';
import type { EnvSession, SandboxRunner } from '../../../src/sandbox/runner.js';
import type { ScenarioRecord } from '../../../src/scenarios/types.js';
import type { EnvironmentRecord } from '../../../src/synthesis/types.js';

const served: ServedScenario = {
  scenario: { id: 'sc1', runId: 'r', environmentId: 'e1', index: 0, status: 'ready', initialState: { n: 0 }, task: 'count to 2', checklist: [{ item: 'n is 2', check: '' }, { item: 'n is positive', check: '' }] } as unknown as ScenarioRecord,
  env: { id: 'e1', className: 'C', source: 'class C {}', tools: [], description: { summary: 'counter' } } as unknown as EnvironmentRecord,
  limits: DEFAULT_SANDBOX_LIMITS,
};

const scenarios: ScenarioSource = {
  scenario: id => (id === 'sc1' ? Promise.resolve(served) : Promise.reject(new EnvServerError('UNKNOWN_SCENARIO', `no scenario ${id}`))),
};

/** A sandbox whose environments count `inc` calls; `boom` discards the environment; checks read `n`. */
function fakeSandbox() {
  const stats = { opened: 0, closed: 0, snapshots: 0 };
  const sandbox: Pick<SandboxRunner, 'openSession' | 'checks'> = {
    async openSession(_code, initialState) {
      stats.opened += 1;
      await new Promise(resolve => setTimeout(resolve, 5));
      const state = { ...(initialState as { n: number }) };
      let disposed = false;
      const session: EnvSession = {
        tools: ['inc', 'boom', 'slow'],
        call(tool) {
          if (disposed) return Promise.resolve({ result: { success: false, error: 'disposed' }, runtimeError: 'ENV_DISPOSED', us: 0 });
          if (tool === 'slow') return new Promise(resolve => setTimeout(() => resolve({ result: { success: true, n: state.n }, us: 1 }), 150));
          if (tool === 'boom') {
            disposed = true;
            return Promise.resolve({ result: { success: false, error: 'out of time' }, runtimeError: 'DEADLINE_EXCEEDED', us: 0 });
          }
          state.n += 1;
          return Promise.resolve({ result: { success: true, n: state.n }, us: 1 });
        },
        snapshot() {
          stats.snapshots += 1;
          return disposed ? Promise.reject(new Error('ENV_DISPOSED')) : Promise.resolve(structuredClone(state));
        },
        initialState() {
          return disposed ? Promise.reject(new Error('ENV_DISPOSED')) : Promise.resolve(JSON.stringify(initialState));
        },
        finish() {
          // The server ends a session with finish (its checks run where the state is); null checks: scoreFinalState runs them.
          stats.snapshots += 1;
          return disposed ? Promise.reject(new Error('ENV_DISPOSED')) : Promise.resolve({ stateJson: JSON.stringify(state), checks: null } as never);
        },
        close() {
          stats.closed += 1;
          return Promise.resolve();
        },
      };
      return session;
    },
    checks(input) {
      const n = (input.finalState as { n: number }).n;
      const results = [{ item: 'n is 2', passed: n === 2 }, { item: 'n is positive', passed: n > 0 }];
      return Promise.resolve({ results, reward: results.filter(r => r.passed).length / results.length } as never);
    },
  };
  return { sandbox, stats };
}

const codeOf = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (err) {
    return err instanceof EnvServerError ? err.code : String(err);
  }
  return 'no error';
};

describe('env-server session registry', () => {
  it('opens, calls, finishes with the checks reward, keeps the result; finishing twice snapshots once', async () => {
    const { sandbox, stats } = fakeSandbox();
    const reg = createSessionRegistry({ sandbox, scenarios }, { maxSessions: 4, idleTimeoutMs: 0 });
    const s = await reg.open('sc1');
    expect(s).to.include({ scenarioId: 'sc1', environmentId: 'e1', task: 'count to 2' });
    expect((await reg.call(s.id, 'inc', {})).result).to.deep.equal({ success: true, n: 1 });
    await reg.call(s.id, 'inc', {});
    const [a, b] = await Promise.all([reg.finish(s.id), reg.finish(s.id, 'closed')]);
    expect(a).to.equal(b);
    expect(a).to.include({ reward: 1, solved: true, endedBy: 'finished', calls: 2, checksError: null });
    // Kept as the text the runtime wrote, not parsed.
    expect(a.finalState!.json).to.equal(JSON.stringify({ n: 2 }));
    expect(stats).to.deep.include({ snapshots: 1, closed: 1 });
    expect(reg.result(s.id)).to.equal(a);
    expect(await codeOf(reg.call(s.id, 'inc', {}))).to.equal('SESSION_CLOSED');
    expect(await codeOf(reg.finish('nope'))).to.equal('UNKNOWN_SESSION');
    expect(reg.stats()).to.deep.equal({ active: 0, max: 4 });
  });

  it("gives no preview, and ends the session unscored (evicted, ENV_DISPOSED), when a check lost its Python interpreter to another session's environment", async () => {
    const { sandbox } = fakeSandbox();
    const lost: Pick<SandboxRunner, 'openSession' | 'checks'> = {
      openSession: (...args) => sandbox.openSession(...args),
      checks: () => Promise.resolve({ results: [{ item: 'n is 2', passed: false, error: 'the interpreter holding this environment was recycled', errorCode: 'ENV_DISPOSED', lostWith: 'interpreter' }, { item: 'n is positive', passed: true }], reward: 0.5, solved: false }),
    };
    const reg = createSessionRegistry({ sandbox: lost, scenarios }, { maxSessions: 4, idleTimeoutMs: 0 });
    const s = await reg.open('sc1');
    await reg.call(s.id, 'inc', {});
    const preview = await reg.preview(s.id);
    expect(preview.reward).to.equal(null);
    expect(preview.checksError).to.include('the check "n is 2" could not run');
    const ended = await reg.finish(s.id);
    expect(ended).to.include({ endedBy: 'evicted', reward: null, solved: false, evictedFor: 'ENV_DISPOSED' });
    expect(ended.checks).to.deep.equal([]);
  });

  it('previews the reward of the current state without ending the session', async () => {
    const { sandbox, stats } = fakeSandbox();
    const reg = createSessionRegistry({ sandbox, scenarios }, { maxSessions: 4, idleTimeoutMs: 0 });
    const s = await reg.open('sc1');
    expect((await reg.preview(s.id)).reward).to.equal(0);
    await reg.call(s.id, 'inc', {});
    expect((await reg.preview(s.id)).reward).to.equal(0.5);
    await reg.call(s.id, 'inc', {});
    expect(await reg.preview(s.id)).to.deep.include({ reward: 1, checksError: null });
    expect(stats.closed, 'the session goes on').to.equal(0);
    expect((await reg.call(s.id, 'inc', {})).result).to.deep.equal({ success: true, n: 3 });
    expect((await reg.finish(s.id)).reward).to.equal(0.5);
    expect(await codeOf(reg.preview(s.id))).to.equal('SESSION_CLOSED');
  });

  it('never passes the maximum, even for sessions opened at once; a failed open frees its slot', async () => {
    const { sandbox } = fakeSandbox();
    const reg = createSessionRegistry({ sandbox, scenarios }, { maxSessions: 2, idleTimeoutMs: 0 });
    const opened = await Promise.allSettled([reg.open('sc1'), reg.open('sc1'), reg.open('sc1')]);
    expect(opened.filter(o => o.status === 'fulfilled')).to.have.length(2);
    const refused = opened.find(o => o.status === 'rejected')!;
    expect((refused.reason as EnvServerError).details).to.deep.equal({ active: 2, max: 2 });
    const first = (opened[0] as PromiseFulfilledResult<{ id: string }>).value.id;
    await reg.finish(first);
    expect(await codeOf(reg.open('unknown'))).to.equal('UNKNOWN_SCENARIO');
    expect(reg.stats().active).to.equal(1);
    await reg.open('sc1');
    expect(reg.stats().active).to.equal(2);
    await reg.closeAll();
    expect(reg.stats().active).to.equal(0);
    expect(await codeOf(reg.open('sc1'))).to.equal('OVER_CAPACITY');
  });

  it('ends a session that is idle too long, and one whose environment was discarded; their results are kept', async () => {
    const { sandbox } = fakeSandbox();
    const reg = createSessionRegistry({ sandbox, scenarios }, { maxSessions: 4, idleTimeoutMs: 40 });
    const idle = await reg.open('sc1');
    await reg.call(idle.id, 'inc', {});
    await new Promise(resolve => setTimeout(resolve, 120));
    expect(reg.result(idle.id)).to.include({ endedBy: 'idle-timeout', reward: 0.5 });
    expect(await codeOf(reg.call(idle.id, 'inc', {}))).to.equal('SESSION_CLOSED');

    const broken = await reg.open('sc1');
    const outcome = await reg.call(broken.id, 'boom', {});
    expect(outcome.runtimeError).to.equal('DEADLINE_EXCEEDED');
    const r = reg.result(broken.id)!;
    expect(r).to.include({ endedBy: 'environment-error', reward: null });
    expect(r.checksError).to.match(/final state could not be read/);
    expect(reg.stats().active).to.equal(0);
  });

  it('ends the sessions cut by the server\'s stop without a reward (SESSION_INTERRUPTED where one would be given), the final state kept', async () => {
    const { sandbox } = fakeSandbox();
    const reg = createSessionRegistry({ sandbox, scenarios }, { maxSessions: 4, idleTimeoutMs: 0 });
    const s = await reg.open('sc1');
    await reg.call(s.id, 'inc', {});
    await reg.call(s.id, 'inc', {});
    await reg.closeAll();
    // Its checks would all pass on that state: before, the stop gave it reward 1, as if the agent had finished.
    const r = reg.result(s.id)!;
    expect(r).to.include({ endedBy: 'shutdown', reward: null, solved: false, calls: 2 });
    expect(r.checks).to.deep.equal([]);
    expect(r.checksError).to.match(/not scored: the server stopped during the episode/);
    expect(r.finalState!.json).to.equal(JSON.stringify({ n: 2 }));
    let thrown: unknown = null;
    try {
      scoredResult(await reg.finish(s.id));
    } catch (err) {
      thrown = err;
    }
    expect(thrown).to.be.instanceOf(EnvServerError);
    expect((thrown as EnvServerError).code).to.equal('SESSION_INTERRUPTED');
    expect((thrown as EnvServerError).details).to.deep.equal({ session_ended: true, ended_by: 'shutdown', scenario_id: 'sc1' });
    expect((thrown as EnvServerError).message).to.match(/server stopped during the episode/).and.to.match(/play scenario sc1 again in a new session/);
    // A tool call after it says the same: no reward, play again.
    const refused = await reg.call(s.id, 'inc', {}).then(() => null, (err: unknown) => err as EnvServerError);
    expect(refused?.code).to.equal('SESSION_CLOSED');
    expect(refused?.message).to.match(/no reward \(its result says SESSION_INTERRUPTED\)/);
  });

  it('does not end a session for idleness while one of its calls is running longer than the idle timeout', async () => {
    const { sandbox } = fakeSandbox();
    const reg = createSessionRegistry({ sandbox, scenarios }, { maxSessions: 4, idleTimeoutMs: 40 });
    const s = await reg.open('sc1');
    expect((await reg.call(s.id, 'slow', {})).result).to.deep.include({ success: true });
    expect(reg.result(s.id), 'still live after a 150 ms call with a 40 ms idle timeout').to.equal(null);
    expect((await reg.call(s.id, 'inc', {})).result).to.deep.equal({ success: true, n: 1 });
    await new Promise(resolve => setTimeout(resolve, 120));
    expect(reg.result(s.id)).to.include({ endedBy: 'idle-timeout' });
  });

  it('answers OVER_CAPACITY, not ENVIRONMENT_FAILED, when the sandbox thread has no memory left for another environment', async () => {
    const { sandbox } = fakeSandbox();
    const full: typeof sandbox = { ...sandbox, openSession: () => Promise.reject(Object.assign(new Error('no room for a new environment'), { code: 'SANDBOX_MEMORY_FULL' })) };
    const reg = createSessionRegistry({ sandbox: full, scenarios }, { maxSessions: 4, idleTimeoutMs: 0 });
    let refused: unknown;
    try {
      await reg.open('sc1');
    } catch (err) {
      refused = err;
    }
    expect(refused).to.be.instanceOf(EnvServerError);
    expect(refused).to.deep.include({ code: 'OVER_CAPACITY', details: { active: 0, max: 4 } });
    expect(String((refused as Error).message)).to.match(/ENVFLEET_SANDBOX_HEAP_MB/);
    expect(reg.stats().active).to.equal(0);
  });

  it('keeps ended results within a byte budget and an age, oldest forgotten first', async () => {
    const { sandbox } = fakeSandbox();
    // What one result is charged (twice its JSON text, plus 1 KB), from a result like the ones below.
    const probe = createSessionRegistry({ sandbox, scenarios }, { maxSessions: 1, idleTimeoutMs: 0 });
    const one = 2 * JSON.stringify(await probe.finish((await probe.open('sc1')).id)).length + 1024;
    const reg = createSessionRegistry({ sandbox, scenarios }, { maxSessions: 4, idleTimeoutMs: 0, keepResultBytes: 3 * one + 100, keepResultsForMs: 60_000 });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const s = await reg.open('sc1');
      await reg.finish(s.id);
      ids.push(s.id);
    }
    // Room for three: the last three are kept.
    expect(ids.map(id => reg.result(id) !== null)).to.deep.equal([false, false, true, true, true]);
    const aged = createSessionRegistry({ sandbox, scenarios }, { maxSessions: 4, idleTimeoutMs: 0, keepResultsForMs: 30 });
    const s = await aged.open('sc1');
    await aged.finish(s.id);
    expect(aged.result(s.id)).to.not.equal(null);
    await new Promise(resolve => setTimeout(resolve, 60));
    expect(aged.result(s.id)).to.equal(null);
    expect(aged.knows(s.id)).to.equal(false);
  });
});

describe('session messages any surface may carry', () => {
  it('says how every surface starts a session and reads a result, and cuts an id of megabytes', async () => {
    const registry = createSessionRegistry({ sandbox: fakeSandbox().sandbox, scenarios }, { maxSessions: 2, idleTimeoutMs: 0 });
    const huge = `🚗${'x'.repeat(3 * 1024 * 1024)}`;
    let unknown: unknown;
    try {
      registry.info(huge);
    } catch (err) {
      unknown = err;
    }
    const message = (unknown as EnvServerError).message;
    expect((unknown as EnvServerError).code).to.equal('UNKNOWN_SESSION');
    expect(message.length).to.be.lessThan(600);
    expect(message).to.include(`"🚗${'x'.repeat(198)}"… (${3 * 1024 * 1024 + 2} UTF-16 code units)`);
    expect(message).to.include('POST /seed_session (NeMo Gym), POST /sessions (MCP), openenv/session/create or a /ws reset (OpenEnv)');
    const info = await registry.open('sc1');
    await registry.finish(info.id, 'closed');
    let closed: unknown;
    try {
      registry.info(info.id);
    } catch (err) {
      closed = err;
    }
    expect((closed as EnvServerError).code).to.equal('SESSION_CLOSED');
    expect((closed as EnvServerError).message).to.include('POST /verify, POST /sessions/{id}/verify or openenv/session/close').and.to.not.match(/^.*verify returns its reward/);
  });
});
