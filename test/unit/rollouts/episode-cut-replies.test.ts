import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { pino } from 'pino';
import { loadConfig } from '../../../config/index.js';
import { toHF, toLlamaFactory, toOpenAI, toShareGPT } from '../../../src/datasets/trajectories.js';
import { createModelGateway } from '../../../src/llm/gateway.js';
import { parseModelScript, startModelServer, type ModelServer } from '../../../src/model-server/index.js';
import { runEpisode } from '../../../src/rollouts/episode.js';
import type { Trajectory } from '../../../src/rollouts/types.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../../src/sandbox/limits.js';
import { createLocalSandboxRunner, type SandboxRunner } from '../../../src/sandbox/runner.js';
import type { ScenarioRecord } from '../../../src/scenarios/types.js';
import type { EnvironmentRecord } from '../../../src/synthesis/types.js';
import { createMemoryLedger, createMemoryLimiter, createMemoryResponseCache } from '../../helpers/memory-ports.js';

const fixture = (name: string): unknown => JSON.parse(readFileSync(new URL(`../../../fixtures/reference/${name}`, import.meta.url), 'utf8'));
const bundle = fixture('hotel-env.bundle.json') as { className: string; source: string; tools: unknown[] };
const ENV = { id: 'env-h', description: { summary: 'Hôtel 酒店', introduction: 'A hotel 🏨.' }, className: bundle.className, source: bundle.source, tools: bundle.tools } as unknown as EnvironmentRecord;
const SCENARIO = {
  id: 'h1',
  runId: 'r',
  environmentId: ENV.id,
  index: 0,
  status: 'ready',
  initialState: fixture('hotel-state.json'),
  task: 'Who is guest G0001? — 客人是谁？',
  checklist: [{ item: 'nothing changed', check: 'function check(f, i) { return JSON.stringify(f) === JSON.stringify(i); }' }],
} as unknown as ScenarioRecord;

describe('episode: a policy reply cut off at the token limit (finish_reason "length"), real gateway, scripted server and sandbox', function () {
  this.timeout(30_000);
  let server: ModelServer;
  let sandbox: SandboxRunner;
  before(() => {
    sandbox = createLocalSandboxRunner();
  });
  after(() => sandbox.close());
  afterEach(() => server.close());

  async function episode(responses: unknown[]): Promise<Trajectory> {
    server = await startModelServer({ script: parseModelScript({ rules: [{ stage: 'rollout.policy', responses }] }) });
    const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: server.url } });
    const gateway = createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
    return runEpisode(
      { gateway, sandbox },
      { runId: 'r', scenario: SCENARIO, env: ENV, mode: 'non-conversational', sample: 0, limits: { maxSteps: 6, maxTokens: 0, maxWallMs: 60_000 }, sandboxLimits: DEFAULT_SANDBOX_LIMITS, policyModel: null, userModel: null, sampling: { temperature: 1, maxTokens: 64 } },
    );
  }

  it('a cut answer does not finish the episode and is never a training target', async () => {
    const t = await episode([
      { toolCalls: [{ name: 'get_guest', arguments: { guest_id: 'G0001' } }] },
      { content: 'Guest G0001 is Ali — 他的名', finishReason: 'length' },
    ]);
    expect(t.termination.reason).to.equal('token-limit');
    expect(t.termination.detail).to.match(/cut off at its token limit.*"length".*max tokens 64/);
    expect(t.policyTurns?.map(p => p.finishReason)).to.deep.equal(['tool_calls', 'length']);
    // The call before it is still taught; the cut reply is in no file's targets.
    const openai = toOpenAI(t)!;
    expect(openai.messages.at(-1)).to.deep.include({ role: 'assistant' });
    expect(JSON.stringify(openai)).to.not.include('他的名');
    expect(JSON.stringify(toShareGPT(t))).to.not.include('他的名');
    expect(JSON.stringify(toLlamaFactory(t))).to.not.include('他的名');
    expect(JSON.stringify(toHF(t))).to.not.include('他的名');
  });

  it("a cut reply's tool calls do not run (the last may be half written)", async () => {
    const t = await episode([{ toolCalls: [{ name: 'get_guest', arguments: { guest_id: 'G0001' } }], finishReason: 'length' }]);
    expect(t.steps).to.deep.equal([]);
    expect(t.termination.reason).to.equal('token-limit');
    expect(t.termination.detail).to.match(/1 tool call did not run/);
    expect(toOpenAI(t)).to.equal(null);
  });

  it("a reply the endpoint's content filter withheld or cut ends the episode as content-filtered: its calls do not run, it is never a target", async () => {
    const t = await episode([
      { toolCalls: [{ name: 'get_guest', arguments: { guest_id: 'G0001' } }] },
      { content: 'Guest G0001 is Ali — 他的', toolCalls: [{ name: 'get_guest', arguments: { guest_id: 'G0002' } }], finishReason: 'content_filter' },
    ]);
    expect(t.termination.reason).to.equal('content-filtered');
    expect(t.termination.detail).to.match(/content filter.*turn 2.*"content_filter".*1 tool call did not run/);
    expect(t.steps.map(s => JSON.parse(s.rawArguments) as unknown)).to.deep.equal([{ guest_id: 'G0001' }]);
    expect(t.policyTurns?.map(p => p.finishReason)).to.deep.equal(['tool_calls', 'content_filter']);
    for (const file of [toOpenAI(t), toShareGPT(t), toLlamaFactory(t), toHF(t)]) expect(JSON.stringify(file)).to.not.include('他的');
    // An empty filtered answer (what OpenAI sends when it withholds all of it) is no agent-finished episode either.
    const empty = await episode([{ content: '', finishReason: 'content_filter' }]);
    expect(empty.termination.reason).to.equal('content-filtered');
    expect(toOpenAI(empty)).to.equal(null);
  });

  it('an exported trajectory recorded before this rule (a cut reply that ended it agent-finished) does not teach the cut reply', async () => {
    const t = await episode([{ content: 'Guest G0001 is Ali — 他的名', finishReason: 'stop' }]);
    const older = { ...t, policyTurns: t.policyTurns!.map(p => ({ ...p, finishReason: 'length' })) } as Trajectory;
    expect(toOpenAI(t)).to.not.equal(null);
    expect(toOpenAI(older)).to.equal(null);
    expect(toShareGPT(older)).to.deep.equal([]);
    expect(toHF(older)).to.deep.equal([]);
  });
});
