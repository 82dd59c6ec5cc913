import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { pino } from 'pino';
import { classifyError } from '../../src/errors.js';
import type { ModelGateway } from '../../src/llm/gateway.js';
import { runEpisode } from '../../src/rollouts/episode.js';
import { InterpreterLostError } from '../../src/sandbox/errors.js';
import { DEFAULT_SANDBOX_LIMITS, type SandboxLimits } from '../../src/sandbox/limits.js';
import { createPythonSandboxRunner, type PythonSandboxRunner } from '../../src/sandbox/python/python-runner.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import type { EnvironmentRecord } from '../../src/synthesis/types.js';
import { rejection } from '../helpers/assert.js';

/**
 * Rollout episodes of Python environments sharing one interpreter (the real Pyodide in its child process), when one of
 * them takes the interpreter down: the others' environments are lost with it through no call of their own. Such an
 * episode is no measure of the policy: it is thrown (InterpreterLostError), so its job runs it again, rather than
 * recorded as an environment error with no reward.
 */

const LIMITS: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, callDeadlineMs: 1_000, createDeadlineMs: 5_000, checkDeadlineMs: 1_000 };

const SOURCE = [
  'class Compteur:',
  '    def __init__(self, config):',
  '        self.count = 0',
  '        self.notes = []',
  '    def ping(self, note):',
  '        self.count += 1',
  '        self.notes.append(note)',
  '        return {"success": True, "count": self.count}',
  '    def spin(self):',
  '        # careless code: a loop whose bare except swallows the interrupt, so the interpreter is terminated',
  '        while True:',
  '            try:',
  '                while True:',
  '                    pass',
  '            except:',
  '                pass',
  '',
].join('\n');

const tool = (name: string, properties: Record<string, unknown> = {}) => ({ type: 'function', function: { name, description: name, parameters: { type: 'object', properties } } });
const ENV = {
  id: 'env-compteur',
  description: { summary: 'compteur', introduction: 'Un compteur.' },
  className: 'Compteur',
  source: SOURCE,
  language: 'python',
  tools: [tool('ping', { note: { type: 'string' } }), tool('spin')],
} as unknown as EnvironmentRecord;

const SCENARIO = {
  id: 'compteur-1',
  runId: 'r',
  environmentId: ENV.id,
  index: 0,
  status: 'ready',
  initialState: {},
  task: 'ping twice',
  checklist: [{ item: 'pinged twice, notes intact', check: 'def check_func(final_state):\n    return final_state["count"] == 2 and final_state["notes"] == ["café ☕", "東京 😀"]', language: 'python' }],
} as unknown as ScenarioRecord;

type Reply = { calls: { name: string; arguments: unknown }[] } | { text: string };

/** A model that answers each request with the next reply, after `before[i]` (a promise) when there is one. */
function scriptedGateway(replies: readonly Reply[], before: Record<number, Promise<void>> = {}): ModelGateway & { requests: number } {
  const gateway = {
    requests: 0,
    chat: async () => {
      const i = gateway.requests;
      gateway.requests += 1;
      await before[i];
      const r = replies[i] ?? { text: 'fini' };
      const message =
        'calls' in r
          ? { role: 'assistant', content: null, refusal: null, tool_calls: r.calls.map((c, k) => ({ id: `call_${i}_${k}`, type: 'function', function: { name: c.name, arguments: JSON.stringify(c.arguments) } })) }
          : { role: 'assistant', content: r.text, refusal: null };
      return { message, finishReason: 'calls' in r ? 'tool_calls' : 'stop', usage: { promptTokens: 1, completionTokens: 1 }, model: 'scripted', cached: false, toolCallFormat: 'native', tokens: null, sampling: {} };
    },
    structured: () => Promise.reject(new Error('not used')),
    embed: () => Promise.reject(new Error('not used')),
  };
  return gateway as unknown as ModelGateway & { requests: number };
}

const ping = (note: string): Reply => ({ calls: [{ name: 'ping', arguments: { note } }] });

describe('rollout episodes whose Python interpreter another episode took down', function () {
  this.timeout(180_000);
  let runner: PythonSandboxRunner;

  before(async () => {
    // One interpreter: every episode's environment is on it.
    runner = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 192, logger: pino({ level: 'silent' }) });
    await runner.started();
  });
  after(async () => {
    await runner?.close();
  });

  const episode = (gateway: ModelGateway, sample: number) =>
    runEpisode(
      { gateway, sandbox: runner },
      { runId: 'r', scenario: SCENARIO, env: ENV, mode: 'non-conversational', sample, limits: { maxSteps: 10, maxTokens: 0, maxWallMs: 120_000 }, sandboxLimits: LIMITS, policyModel: null, userModel: null, sampling: { temperature: 1, maxTokens: 100 } },
    );

  it('throws the episodes whose environments were lost with it (a call after the loss, a final state after it) for their jobs to run again; the episode that took it down is recorded as its own environment error; the run again scores', async () => {
    let release!: () => void;
    const gate = new Promise<void>(resolve => (release = resolve));
    // Victim 1 pings, then (after the loss) pings again; victim 2 pings, then (after the loss) ends in text: its final state is read.
    const v1 = scriptedGateway([ping('café ☕'), ping('東京 😀'), { text: 'fini' }], { 1: gate });
    const v2 = scriptedGateway([ping('café ☕'), { text: 'terminé — 完成' }], { 1: gate });
    const p1 = episode(v1, 0);
    const p2 = episode(v2, 1);
    for (const p of [p1, p2]) p.catch(() => undefined); // awaited below, after the culprit's episode
    // Both first calls ran before the culprit's (each victim's second request waits at the gate).
    while (v1.requests < 2 || v2.requests < 2) await new Promise(resolve => setTimeout(resolve, 20));

    const culprit = await episode(scriptedGateway([{ calls: [{ name: 'spin', arguments: {} }] }]), 2);
    expect(culprit.termination.reason).to.equal('environment-error');
    expect(culprit.termination.detail).to.include('DEADLINE_EXCEEDED');
    expect(culprit.reward).to.equal(null);
    release();

    for (const [p, where] of [[p1, 'ping found its environment gone'], [p2, 'the final state could not be read']] as const) {
      const err = await rejection(p);
      expect(err, where).to.be.instanceOf(InterpreterLostError);
      expect((err as InterpreterLostError).code).to.equal('ENV_DISPOSED');
      expect((err as Error).message).to.include(where).and.include('runs it again without using an attempt while it has waits left');
      // Its job runs it again without using an attempt, as for a full sandbox (a stranger's re-probe: interpreters taken
      // down under memory pressure used up 19 episodes' attempts); past ENVFLEET_SANDBOX_FULL_WAITS it uses attempts.
      expect(classifyError(err, { sandboxFullWaits: 0, maxSandboxFullWaits: 3, backoffMs: 1_000 })).to.deep.equal({ action: 'wait', code: 'ENV_DISPOSED', delayMs: 1_000 });
      expect(classifyError(err, { sandboxFullWaits: 3, maxSandboxFullWaits: 3, backoffMs: 1_000 })).to.deep.include({ action: 'retry', code: 'ENV_DISPOSED', waitsSpent: 3 });
    }

    // The job run again: a fresh interpreter serves, and the episode scores.
    const again = await episode(scriptedGateway([ping('café ☕'), ping('東京 😀'), { text: 'fini' }]), 0);
    expect(again.termination.reason).to.equal('agent-finished');
    expect(again.checks).to.deep.equal([{ item: 'pinged twice, notes intact', passed: true }]);
    expect(again.reward).to.equal(1);
  });

  it('runs the calls of environments already running before the creation of new ones (a burst of slow creations held every running episode behind them)', async () => {
    const running = await runner.openSession(ENV as never, {}, LIMITS);
    // A constructor that takes a while, as a τ-bench environment's (seconds for the airline database).
    const slow = { ...ENV, source: SOURCE.replace('        self.count = 0\n', '        self.count = 0\n        for i in range(40_000_000):\n            pass\n') } as EnvironmentRecord;
    const order: string[] = [];
    const created = [1, 2, 3].map(i =>
      runner.openSession(slow as never, {}, { ...LIMITS, createDeadlineMs: 120_000 }).then(s => {
        order.push(`create ${i}`);
        return s;
      }),
    );
    // The three are queued, the first constructing; then a running environment's call comes.
    await new Promise(resolve => setTimeout(resolve, 500));
    const pinged = running.call('ping', { note: 'pressé — 急ぎ' }).then(out => {
      order.push('ping');
      return out;
    });
    expect(await pinged).to.deep.include({ result: { success: true, count: 1 } });
    const sessions = await Promise.all(created);
    expect(order.indexOf('ping'), order.join(', ')).to.be.below(order.indexOf('create 2'));
    for (const s of [...sessions, running]) await s.close();
  });

  // A check that counts for a while (the interpreter runs one job at a time: a call queued meanwhile runs after it).
  const SLOW = { item: 'slow but true', check: 'def check_func(final_state):\n    n = 0\n    for i in range(30_000_000):\n        n += 1\n    return n > 0\n', language: 'python' as const };
  const COUNT = { item: 'compte — 計数', check: 'def check_func(final_state):\n    return final_state["count"] == 1\n', language: 'python' as const };
  const SLOW_LIMITS: SandboxLimits = { ...LIMITS, checkDeadlineMs: 60_000 };

  it("throws an episode whose checks lost the interpreter (scored 0 before: the lost check counted as false), and marks only the checks it took from others: the culprit's own checks after it are not run, unmarked", async () => {
    const bystander = await runner.openSession(ENV as never, {}, LIMITS);
    try {
      // Victim: one ping, then text; its checks (the slow one, then the count) run as it finishes.
      const v = scriptedGateway([ping('café ☕'), { text: 'terminé' }]);
      const victim = runEpisode(
        { gateway: v, sandbox: runner },
        { runId: 'r', scenario: { ...SCENARIO, checklist: [SLOW, COUNT] }, env: ENV, mode: 'non-conversational', sample: 7, limits: { maxSteps: 10, maxTokens: 0, maxWallMs: 120_000 }, sandboxLimits: SLOW_LIMITS, policyModel: null, userModel: null, sampling: { temperature: 1, maxTokens: 100 } },
      );
      victim.catch(() => undefined);
      while (v.requests < 2) await new Promise(resolve => setTimeout(resolve, 20));
      // The slow check is running: the culprit's call waits behind it, the count check is queued after that call.
      await new Promise(resolve => setTimeout(resolve, 1_000));
      expect(await bystander.call('spin', {})).to.deep.include({ runtimeError: 'DEADLINE_EXCEEDED' });
      const err = await rejection(victim);
      expect(err).to.be.instanceOf(InterpreterLostError);
      expect((err as Error).message).to.include('the check "compte — 計数" could not run');
    } finally {
      await bystander.close();
    }

    // The checks on their own: the one run before the loss passes, the one after is marked lost with the interpreter.
    const culprit = await runner.openSession(ENV as never, {}, LIMITS);
    const checked = runner.checks({ checks: [SLOW, COUNT], finalState: { count: 1, notes: [] }, initialState: {}, limits: SLOW_LIMITS });
    await new Promise(resolve => setTimeout(resolve, 1_000));
    await culprit.call('spin', {});
    const results = (await checked).results;
    expect(results.map(r => [r.item, r.passed, r.errorCode, r.lostWith])).to.deep.equal([
      ['slow but true', true, undefined, undefined],
      ['compte — 計数', false, 'ENV_DISPOSED', 'interpreter'],
    ]);
    // (Queued behind the culprit's call, or sent once the interpreter was gone.)
    expect(results[1]!.error).to.match(/^the interpreter holding this environment was recycled/);
    await culprit.close();

    // A check that takes the interpreter down itself fails, unmarked, and the checks after it are not run (unmarked).
    const SPIN = { item: 'boucle', check: 'def check_func(final_state):\n    while True:\n        try:\n            while True:\n                pass\n        except:\n            pass\n', language: 'python' as const };
    const own = await runner.checks({ checks: [SPIN, COUNT], finalState: { count: 1, notes: [] }, initialState: {}, limits: LIMITS });
    expect(own.results.map(r => [r.item, r.passed, r.errorCode, r.lostWith])).to.deep.equal([
      ['boucle', false, 'DEADLINE_EXCEEDED', undefined],
      ['compte — 計数', false, 'ENV_DISPOSED', undefined],
    ]);
    expect(own.results[1]!.error).to.match(/^not run: the check "boucle" before it took the interpreter down/);

    // So does one that fails the interpreter fatally (Pyodide's stack overflowed): the checks after it were marked lost
    // with the interpreter, and its episode was run again for ever (a reviewer's repro).
    const FATAL = { item: 'fatale', check: 'import ast\ndef check_func(final_state):\n    ast.parse("+".join(["1"] * 20000))\n    return True\n', language: 'python' as const };
    const fatal = await runner.checks({ checks: [FATAL, COUNT], finalState: { count: 1, notes: [] }, initialState: {}, limits: LIMITS });
    expect(fatal.results.map(r => [r.item, r.passed, r.errorCode, r.lostWith])).to.deep.equal([
      ['fatale', false, 'STACK_OVERFLOW', undefined],
      ['compte — 計数', false, 'ENV_DISPOSED', undefined],
    ]);
    expect(fatal.results[1]!.error).to.match(/^not run: the check "fatale" before it took the interpreter down \(STACK_OVERFLOW\)/);
  });
});

describe('a rollout episode whose Python environment does not fit beside the running ones', function () {
  this.timeout(180_000);

  it('waits in the interpreter for one of them to end and then runs, its first model calls made meanwhile, instead of going back to its job (which ran the episode again from the start)', async () => {
    // τ-bench airline at 64 episodes per worker: about 30 fit an interpreter; the others were refused, waited in the
    // queue with a backoff that doubled to 30 s, and ran again from the start: 3 times as long as at 8.
    const runner = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 192, logger: pino({ level: 'silent' }) });
    try {
      const holder = { name: 'holder', className: 'Holder', source: 'KEPT = []\nclass Holder:\n    def __init__(self, c):\n        KEPT.append(bytearray(36 << 20))\n', tools: [], language: 'python' } as never;
      const held = [];
      for (let i = 0; i < 4; i++) held.push(await runner.openSession(holder, {}, LIMITS));
      // 3 MB of JSON in its state: creating it may take 24 MB, more than is left beside 4 × 36 MB.
      const scenario = { ...SCENARIO, initialState: { pad: 'é—数据 🛫'.repeat(300_000) } } as ScenarioRecord;
      const gateway = scriptedGateway([ping('café ☕'), ping('東京 😀'), { text: 'fini' }]);
      let settled = false;
      const running = runEpisode(
        { gateway, sandbox: runner },
        { runId: 'r', scenario, env: ENV, mode: 'non-conversational', sample: 0, limits: { maxSteps: 10, maxTokens: 0, maxWallMs: 120_000 }, sandboxLimits: LIMITS, policyModel: null, userModel: null, sampling: { temperature: 1, maxTokens: 100 } },
      ).finally(() => (settled = true));
      running.catch(() => undefined);
      // Its first tool call waits for the environment, which waits for room (a start that may not wait is refused).
      while (gateway.requests < 1) await new Promise(resolve => setTimeout(resolve, 20));
      const refused = await rejection(runner.openSession(ENV as never, scenario.initialState, LIMITS));
      expect(refused).to.have.property('code', 'SANDBOX_MEMORY_FULL');
      expect(settled).to.equal(false);
      for (const h of held.splice(0, 2)) await h.close();
      const trajectory = await running;
      expect(trajectory.termination.reason).to.equal('agent-finished');
      expect(trajectory.checks).to.deep.equal([{ item: 'pinged twice, notes intact', passed: true }]);
      expect(trajectory.reward).to.equal(1);
      for (const h of held) await h.close();
    } finally {
      await runner.close();
    }
  });
});
