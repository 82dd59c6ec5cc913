import { expect } from 'chai';
import { JobAbortedError, ModelError, RunCancelledError } from '../../../src/errors.js';
import type { ChatResult, ModelGateway } from '../../../src/llm/gateway.js';
import { EPISODE_ROOM_WAIT_MS, runEpisode } from '../../../src/rollouts/episode.js';
import type { Trajectory } from '../../../src/rollouts/types.js';
import { SandboxError, SandboxFullError } from '../../../src/sandbox/errors.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../../src/sandbox/limits.js';
import type { EnvSession, OpenOptions, SandboxRunner } from '../../../src/sandbox/runner.js';
import type { ChecksInput } from '../../../src/sandbox/tasks.js';
import type { ScenarioRecord } from '../../../src/scenarios/types.js';
import type { EnvironmentRecord } from '../../../src/synthesis/types.js';

const TOOLS = [{ type: 'function', function: { name: 'return_book', description: 'Rend un prêt — 还书', parameters: { type: 'object', properties: { loan_id: { type: 'string' } } } } }];
const ENV = { id: 'env-1', description: { summary: 'Bibliothèque 图书馆', introduction: 'A library 📚.' }, className: 'Library', source: 'class Library {}', tools: TOOLS } as unknown as EnvironmentRecord;
const SCENARIO = { id: 's1', runId: 'r', environmentId: ENV.id, index: 0, status: 'ready', initialState: { loans: ['L1'] }, task: 'Rends le prêt L1 — 归还 L1 📚', checklist: [{ item: 'Loan L1 returned', check: 'function check() { return true; }' }] } as unknown as ScenarioRecord;

const CALL = { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'return_book', arguments: '{"loan_id": "L1"}' } }] };
const ANSWER = { role: 'assistant', content: 'C’est rendu ✅ — 已归还' };
const reply = (message: unknown) => ({ message, finishReason: 'stop', usage: { promptTokens: 3, completionTokens: 2 }, model: 'policy-v1', cached: false, toolCallFormat: 'native', tokens: null }) as unknown as ChatResult;

interface Fakes {
  /** What happened, in order: 'open asked', 'chat N', 'open done', 'call TOOL', 'finish', 'close'. */
  events: string[];
  sandbox: SandboxRunner;
  gateway: ModelGateway;
}

/**
 * A gateway answering `replies` in turn (an Error is thrown instead) and a sandbox whose session starts when `started`
 * resolves (or fails with it).
 */
function fakes(replies: readonly unknown[], started: (events: string[]) => Promise<void>): Fakes {
  const events: string[] = [];
  let turn = 0;
  const session: EnvSession = {
    call: (tool: string) => (events.push(`call ${tool}`), Promise.resolve({ result: { success: true }, us: 1 })),
    snapshot: () => Promise.resolve({ loans: [] }),
    finish: () => (events.push('finish'), Promise.resolve({ stateJson: '{"loans":[]}', checks: null })),
    close: () => (events.push('close'), Promise.resolve()),
  } as unknown as EnvSession;
  const sandbox = {
    openSession: () => {
      events.push('open asked');
      return started(events).then(() => (events.push('open done'), session));
    },
    checks: (input: ChecksInput) => Promise.resolve({ results: input.checks.map(c => ({ item: c.item, passed: true })), reward: 1, solved: true }),
  } as unknown as SandboxRunner;
  const gateway = {
    chat: () => {
      turn += 1;
      events.push(`chat ${turn}`);
      const r = replies[Math.min(turn - 1, replies.length - 1)];
      return r instanceof Error ? Promise.reject(r) : Promise.resolve(reply(r));
    },
    structured: () => Promise.reject(new Error('not used')),
    embed: () => Promise.reject(new Error('not used')),
  } as unknown as ModelGateway;
  return { events, sandbox, gateway };
}

const episode = (f: Fakes, maxWallMs = 60_000): Promise<Trajectory> =>
  runEpisode(
    { gateway: f.gateway, sandbox: f.sandbox },
    { runId: 'r', scenario: SCENARIO, env: ENV, mode: 'non-conversational', sample: 0, limits: { maxSteps: 5, maxTokens: 0, maxWallMs }, sandboxLimits: DEFAULT_SANDBOX_LIMITS, policyModel: null, userModel: null, sampling: { temperature: 1, maxTokens: 100 } },
  );

describe('episode: the environment starts while the first model call is made', () => {
  it('sends the first model call before the environment has started, and runs the tool once it has', async () => {
    // The environment starts only once the model was asked: an episode that waited for its environment first would never end.
    let modelAsked!: () => void;
    const asked = new Promise<void>(resolve => (modelAsked = resolve));
    const f = fakes([CALL, ANSWER], () => asked);
    const gateway = f.gateway;
    const chat = gateway.chat.bind(gateway);
    gateway.chat = (...args: Parameters<typeof chat>) => {
      const r = chat(...args);
      modelAsked();
      return r;
    };
    const t = await episode(f);
    expect(f.events).to.deep.equal(['open asked', 'chat 1', 'open done', 'call return_book', 'chat 2', 'finish', 'close']);
    expect(t.termination.reason).to.equal('agent-finished');
    expect(t.reward).to.equal(1);
    expect(t.steps.map(s => s.tool)).to.deep.equal(['return_book']);
  });

  it('ends as environment-error where the environment is first needed when it did not start: the turn made meanwhile is kept, no tool ran', async () => {
    const f = fakes([CALL, ANSWER], () => Promise.reject(new SandboxError('CONSTRUCTOR_FAILED', 'constructor threw: état invalide 💥')));
    const t = await episode(f);
    expect(t.termination).to.deep.equal({ reason: 'environment-error', detail: 'the environment did not start: constructor threw: état invalide 💥' });
    expect(f.events).to.deep.equal(['open asked', 'chat 1']);
    expect(t.turns).to.equal(1);
    expect(t.usage).to.deep.equal({ promptTokens: 3, completionTokens: 2, modelCalls: 1 });
    expect(t.steps).to.deep.equal([]);
    expect(t.finalState).to.equal(null);
    expect(t.reward).to.not.equal(1);
  });

  it('ends as environment-error, not agent-finished, when the agent answered at once and the environment did not start', async () => {
    const f = fakes([ANSWER], () => Promise.reject(new SandboxError('CONSTRUCTOR_FAILED', 'no such class')));
    const t = await episode(f);
    expect(t.termination).to.deep.equal({ reason: 'environment-error', detail: 'the environment did not start: no such class' });
    expect(t.finalState).to.equal(null);
  });

  it('makes the job wait (SandboxFullError) when the sandbox thread had no room for the environment, after the model answered', async () => {
    const f = fakes([CALL, ANSWER], () => Promise.reject(new SandboxError('SANDBOX_MEMORY_FULL', 'no room for a new environment')));
    let thrown: unknown;
    try {
      await episode(f);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).to.be.instanceOf(SandboxFullError);
    expect(String((thrown as Error).message)).to.include('the environment did not start');
    expect(f.events).to.deep.equal(['open asked', 'chat 1']);
  });

  it('runs the checks of an episode whose model failed for good on the started environment but gives it no reward, and closes it; a model failure the job retries closes it too', async () => {
    const lost = fakes([new ModelError('MODEL_NOT_FOUND', 'no such model « pôlicy »')], () => Promise.resolve());
    const t = await episode(lost);
    expect(t.termination.reason).to.equal('model-error');
    expect(t.finalState).to.not.equal(null);
    // Every check passes on that state, yet the endpoint cut the episode short: no reward, not solved.
    expect(t.checks.length).to.be.greaterThan(0);
    expect(t.checks.every(c => c.passed)).to.equal(true);
    expect(t.reward).to.equal(null);
    expect(t.solved).to.equal(false);
    expect(lost.events.slice(-2)).to.deep.equal(['finish', 'close']);

    const retried = fakes([new ModelError('MODEL_SERVER_ERROR', '500 from the endpoint')], () => Promise.resolve());
    let thrown: unknown;
    try {
      await episode(retried);
    } catch (err) {
      thrown = err;
    }
    expect((thrown as ModelError).code).to.equal('MODEL_SERVER_ERROR');
    expect(retried.events).to.include('close');
    expect(retried.events).to.not.include('finish');
  });

  it('a run cancelled mid-episode ends the job (RUN_CANCELLED), with no trajectory recorded as model-error, and closes the environment', async () => {
    const cancelled = fakes([CALL, new RunCancelledError('r', 'changed my mind — 取消')], () => Promise.resolve());
    let thrown: unknown;
    try {
      await episode(cancelled);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).to.be.instanceOf(RunCancelledError);
    expect(cancelled.events).to.include('close');
    expect(cancelled.events).to.not.include('finish');
  });

  it("does not count the time the episode waited for its environment to start (a full Python interpreter holds a start until there is room) toward its time limit; the rest counts", async () => {
    // The limit is 500 ms. The environment takes 1 s to start, the model answers at once: the episode ends as the agent said.
    const slowStart = () => new Promise<void>(resolve => setTimeout(resolve, 1_000));
    const waited = await episode(fakes([CALL, ANSWER], slowStart), 500);
    expect(waited.termination.reason).to.equal('agent-finished');
    // The model takes 1 s, the environment starts at once: past the limit.
    const f = fakes([CALL, ANSWER], () => Promise.resolve());
    const chat = f.gateway.chat.bind(f.gateway);
    f.gateway.chat = (...args: Parameters<typeof chat>) => new Promise(resolve => setTimeout(resolve, 1_000)).then(() => chat(...args));
    const slowModel = await episode(f, 500);
    expect(slowModel.termination.reason).to.equal('time-limit');
    expect(slowModel.termination.detail).to.match(/^ran \d+ ms( \(not counting the \d+ ms it waited for its environment to start\))?; the limit is 500 ms$/);
  });

  it('throws JobAbortedError, not SandboxFullError, when its environment stopped waiting for room because the job was aborted (a cancelled run, a stopping worker): the job is not put back to wait', async () => {
    const controller = new AbortController();
    // The sandbox gives the start up once the job's signal aborts, as a Python interpreter waiting for room does.
    const f = fakes([CALL, ANSWER], () => new Promise<void>((_, reject) => controller.signal.addEventListener('abort', () => reject(new SandboxError('SANDBOX_MEMORY_FULL', 'no room; its caller gave up waiting for room')))));
    const chat = f.gateway.chat.bind(f.gateway);
    f.gateway.chat = (...args: Parameters<typeof chat>) => {
      const r = chat(...args);
      controller.abort();
      return r;
    };
    // What the episode asks of the sandbox: a wait for room, given up with the job.
    const open = f.sandbox.openSession.bind(f.sandbox);
    let options: OpenOptions | undefined;
    f.sandbox.openSession = (...args: Parameters<typeof open>) => {
      options = args[4];
      return open(...args);
    };
    const thrown = await runEpisode(
      { gateway: f.gateway, sandbox: f.sandbox, signal: controller.signal },
      { runId: 'r', scenario: SCENARIO, env: ENV, mode: 'non-conversational', sample: 0, limits: { maxSteps: 5, maxTokens: 0, maxWallMs: 60_000 }, sandboxLimits: DEFAULT_SANDBOX_LIMITS, policyModel: null, userModel: null, sampling: { temperature: 1, maxTokens: 100 } },
    ).then(
      () => null,
      (err: unknown) => err,
    );
    expect(thrown).to.be.instanceOf(JobAbortedError);
    expect(thrown).to.not.be.instanceOf(SandboxFullError);
    expect((thrown as Error).message).to.include('its caller gave up waiting for room');
    expect(options?.roomWaitMs).to.equal(EPISODE_ROOM_WAIT_MS);
    expect(options?.signal?.aborted).to.equal(true);
  });

  it('gives up a start still waiting for room when the episode ends without its environment (a cancelled run: the model call throws), instead of holding the job until the wait runs out', async () => {
    let given: AbortSignal | undefined;
    const f = fakes([new RunCancelledError('r', 'cancelled by a test')], () => new Promise<void>((_, reject) => given!.addEventListener('abort', () => reject(new SandboxError('SANDBOX_MEMORY_FULL', 'no room; its caller gave up waiting for room')))));
    const open = f.sandbox.openSession.bind(f.sandbox);
    f.sandbox.openSession = (...args: Parameters<typeof open>) => {
      given = args[4]?.signal;
      return open(...args);
    };
    // The job's own signal never aborts (cancelling a run does not abort it): the episode's end gives the start up.
    const thrown = await episode(f).then(
      () => null,
      (err: unknown) => err,
    );
    expect(thrown).to.be.instanceOf(RunCancelledError);
    expect(given?.aborted).to.equal(true);
  });

  it("ends an episode whose environment still waits for room when its run is cancelled (the gate, asked while it waits: no model call comes), and gives the start up", async () => {
    let given: AbortSignal | undefined;
    const f = fakes([CALL, ANSWER], () => new Promise<void>((_, reject) => given!.addEventListener('abort', () => reject(new SandboxError('SANDBOX_MEMORY_FULL', 'no room; its caller gave up waiting for room')))));
    const open = f.sandbox.openSession.bind(f.sandbox);
    f.sandbox.openSession = (...args: Parameters<typeof open>) => {
      given = args[4]?.signal;
      return open(...args);
    };
    let asked = 0;
    f.gateway.checkRun = (runId: string) => {
      asked += 1;
      return Promise.reject(new RunCancelledError(runId, 'cancelled by a test — 取消'));
    };
    const thrown = await episode(f).then(
      () => null,
      (err: unknown) => err,
    );
    expect(thrown).to.be.instanceOf(RunCancelledError);
    expect(asked).to.equal(1);
    expect(given?.aborted).to.equal(true);
    expect(f.events).to.not.include('call return_book');
  });
});
