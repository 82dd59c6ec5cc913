import { expect } from 'chai';
import type { ChatResult, ModelGateway } from '../../../src/llm/gateway.js';
import { runEpisode } from '../../../src/rollouts/episode.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../../src/sandbox/limits.js';
import type { SandboxRunner } from '../../../src/sandbox/runner.js';
import type { ChecksInput, EpisodeRecord } from '../../../src/sandbox/tasks.js';
import type { ScenarioRecord } from '../../../src/scenarios/types.js';
import type { EnvironmentRecord } from '../../../src/synthesis/types.js';

const TOOLS = ['look', 'plant', 'uproot'].map(name => ({ type: 'function', function: { name, description: name, parameters: { type: 'object', properties: {} } } }));
const ENV = { id: 'env-g', description: { summary: 'Jardin 花园', introduction: 'A garden 🌷.' }, className: 'Garden', source: 'class Garden: pass', language: 'python', tools: TOOLS } as unknown as EnvironmentRecord;
const SCENARIO = {
  id: 'g1',
  runId: 'r',
  environmentId: ENV.id,
  index: 0,
  status: 'ready',
  initialState: {},
  task: 'Plante une tulipe 🌷',
  checklist: [{ item: 'per turn', check: 'def check_func(s):\n    return True\n', language: 'python', episode: true }],
  script: { turns: [{ messages: ['Plante une tulipe 🌷'] }, { messages: ['Regarde — 看看', 'puis arrache-la'], addTools: ['uproot'] }], excludedTools: ['look'], withheldTools: ['uproot'], maxStepsPerTurn: 2 },
} as unknown as ScenarioRecord;

/** A scripted episode whose policy answers `replies` in turn; what it was offered and what the checks saw. */
async function episode(replies: readonly ({ call: string } | { text: string })[], maxSteps = 10) {
  let i = 0;
  const offered: string[][] = [];
  let seen: EpisodeRecord | undefined;
  const gateway = {
    chat: (_ctx: unknown, request: { tools: { function: { name: string } }[] }) => {
      offered.push(request.tools.map(t => t.function.name));
      const r = replies[Math.min(i, replies.length - 1)]!;
      i += 1;
      const message = 'call' in r ? { role: 'assistant', content: null, tool_calls: [{ id: `c${i}`, type: 'function', function: { name: r.call, arguments: '{}' } }] } : { role: 'assistant', content: r.text };
      return Promise.resolve({ message, finishReason: 'stop', usage: { promptTokens: 1, completionTokens: 1 }, model: 'p', cached: false, toolCallFormat: 'native', tokens: null, sampling: {} } as unknown as ChatResult);
    },
    structured: () => Promise.reject(new Error('the user simulator must not be called')),
    embed: () => Promise.reject(new Error('not used')),
  } as unknown as ModelGateway;
  let state = 0;
  const sandbox = {
    openSession: () =>
      Promise.resolve({
        call: (tool: string) => ((state += 1), Promise.resolve({ result: { did: tool }, us: 1 })),
        snapshot: () => Promise.resolve({ n: state }),
        initialState: () => Promise.resolve('{"n":0}'),
        finish: () => Promise.resolve({ stateJson: JSON.stringify({ n: state }), checks: { results: [], reward: 0, solved: false } }),
        close: () => Promise.resolve(),
      }),
    checks: (input: ChecksInput) => ((seen = input.episode), Promise.resolve({ results: input.checks.map(c => ({ item: c.item, passed: true })), reward: 1, solved: true })),
  } as unknown as SandboxRunner;
  const t = await runEpisode(
    { gateway, sandbox },
    { runId: 'r', scenario: SCENARIO, env: ENV, mode: 'conversational', sample: 0, limits: { maxSteps, maxTokens: 0, maxWallMs: 60_000 }, sandboxLimits: DEFAULT_SANDBOX_LIMITS, policyModel: null, userModel: null, sampling: { temperature: 1, maxTokens: 100 } },
  );
  return { t, offered, seen };
}

describe('episode: scripted multi-turn scenarios', () => {
  it('plays the turns without a user simulator, offers tools per turn, records the state at the end of each turn', async () => {
    const { t, offered, seen } = await episode([{ call: 'plant' }, { text: 'Plantée ✅' }, { call: 'uproot' }, { text: 'Arrachée' }]);
    expect(t.termination.reason).to.equal('agent-finished');
    expect(t.userMessages).to.equal(null);
    expect(t.userModel).to.equal(null);
    expect(offered).to.deep.equal([['plant'], ['plant'], ['plant', 'uproot'], ['plant', 'uproot']]);
    expect(t.messages.filter(m => m.role === 'user').map(m => m.content)).to.deep.equal(['Plante une tulipe 🌷', 'Regarde — 看看', 'puis arrache-la']);
    expect(seen?.turnStates).to.deep.equal([{ n: 1 }, { n: 2 }]);
    expect(t.reward).to.equal(1);
  });

  it('a tool not offered yet (or excluded) is an unknown tool, and the episode goes on', async () => {
    const { t } = await episode([{ call: 'uproot' }, { text: 'Non.' }, { call: 'look' }, { text: 'Rien.' }], 10);
    expect(t.steps.map(s => [s.tool, s.runtimeError])).to.deep.equal([
      ['uproot', 'TOOL_NOT_OFFERED'],
      ['look', 'TOOL_NOT_OFFERED'],
    ]);
    expect(t.termination.reason).to.equal('agent-finished');
  });

  it('ends with step-limit once a turn has more tool-calling steps than allowed (BFCL: count > limit), with the turns answered so far', async () => {
    const { t, seen } = await episode([{ call: 'plant' }, { call: 'plant' }, { call: 'plant' }]);
    expect(t.termination.reason).to.equal('step-limit');
    expect(t.steps).to.have.length(3);
    expect(t.termination.detail).to.match(/3 tool-calling steps in user turn 1; the scenario allows 2 per turn/);
    expect(seen?.turnStates).to.deep.equal([]);
  });

  it('lets a turn use all its tool-calling steps and still answer in text (the answer is not a step of the limit); the trajectory keeps the turn states', async () => {
    const { t, seen } = await episode([{ call: 'plant' }, { call: 'plant' }, { text: 'Deux 🌷' }, { call: 'uproot' }, { text: 'Fini' }]);
    expect(t.termination.reason).to.equal('agent-finished');
    expect(t.turnStates).to.deep.equal([{ n: 2 }, { n: 3 }]);
    expect(seen?.turnStates).to.deep.equal(t.turnStates);
  });
});
