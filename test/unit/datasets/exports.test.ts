import { expect } from 'chai';
import { toLlamaFactory, toOpenAI, toShareGPT } from '../../../src/datasets/trajectories.js';
import { groupStats } from '../../../src/rollouts/groups.js';
import type { Trajectory } from '../../../src/rollouts/types.js';
import { AlpacaLine, OpenAIFineTuneLine, ShareGPTLine } from '../../helpers/formats.js';

function trajectory(messages: unknown[], extra: Partial<Trajectory> = {}): Trajectory {
  return {
    id: 't', runId: 'r', scenarioId: 's', environmentId: 'e', mode: 'non-conversational', sample: 0, model: 'm', userModel: null,
    sampling: { temperature: 1, maxTokens: 100 }, tools: [{ type: 'function', function: { name: 'get', parameters: { type: 'object' } } }],
    messages: messages as Trajectory['messages'], userMessages: null, steps: [], checks: [], reward: 1, solved: true, checksError: null,
    termination: { reason: 'agent-finished', detail: null }, turns: 1, usage: { promptTokens: 0, completionTokens: 0, modelCalls: 0 },
    timings: { startedAt: '', wallMs: 0, envUs: 0 }, finalState: {}, lineage: {}, ...extra,
  };
}

const call = (id: string, name: string, args: string) => ({ id, type: 'function', function: { name, arguments: args } });
const PARALLEL = trajectory([
  { role: 'system', content: 'sys' },
  { role: 'user', content: 'do it' },
  { role: 'assistant', content: null, reasoning_content: 'plan', tool_calls: [call('a', 'get', '{"x":1}'), call('b', 'get', '{"x":2}')] },
  { role: 'tool', tool_call_id: 'a', content: '{"success":true}' },
  { role: 'tool', tool_call_id: 'b', content: '{"success":false}' },
  { role: 'assistant', content: 'done' },
  { role: 'user', content: 'thanks ###STOP###' },
]);

describe('dataset exports', () => {
  it('OpenAI: keeps tool calls and results, drops reasoning, ends at the last assistant turn', () => {
    const line = toOpenAI(PARALLEL)!;
    expect(OpenAIFineTuneLine.safeParse(line).success).to.equal(true);
    expect(line.messages.at(-1)).to.deep.equal({ role: 'assistant', content: 'done' });
    expect(JSON.stringify(line)).not.to.include('reasoning_content');
  });

  it('ShareGPT: parallel calls become one function_call and one observation turn, alternating properly', () => {
    const line = toShareGPT(PARALLEL)!;
    expect(ShareGPTLine.safeParse(line).success).to.equal(true);
    expect(line.conversations.map(c => c.from)).to.deep.equal(['human', 'function_call', 'observation', 'gpt']);
    expect(JSON.parse(line.conversations[1]!.value)).to.deep.equal([{ name: 'get', arguments: { x: 1 } }, { name: 'get', arguments: { x: 2 } }]);
    expect(JSON.parse(line.conversations[2]!.value)).to.deep.equal(['{"success":true}', '{"success":false}']);
  });

  it('ShareGPT: refuses a conversation that cannot alternate', () => {
    const twoUsers = trajectory([{ role: 'system', content: 's' }, { role: 'user', content: 'a' }, { role: 'user', content: 'b' }, { role: 'assistant', content: 'c' }]);
    expect(toShareGPT(twoUsers)).to.equal(null);
  });

  it('alpaca: one sample per assistant turn, reasoning only in the supervised output', () => {
    const lines = toLlamaFactory(PARALLEL);
    expect(lines).to.have.length(2);
    for (const l of lines) expect(AlpacaLine.safeParse(l).success).to.equal(true);
    expect(lines[0]!.output).to.match(/^<think>\nplan\n<\/think>/);
    expect(lines[1]!.history[0]![1]).not.to.include('<think>');
    expect(lines[1]!.instruction).to.include('<tool_response>');
    expect(lines[0]!.system).to.include('# Tools');
  });
});

describe('groupStats', () => {
  it('computes mean, population std, pass@1 and pass@K, counting a missing reward as 0', () => {
    const g = groupStats('r', 's', 'e', 'non-conversational', [
      trajectory([], { sample: 1, reward: 0.5, solved: false }),
      trajectory([], { sample: 0, reward: 1, solved: true }),
      trajectory([], { sample: 2, reward: null, solved: false, termination: { reason: 'model-error', detail: 'x' } }),
    ]);
    expect(g.rewards).to.deep.equal([1, 0.5, 0]);
    expect(g.mean).to.be.closeTo(0.5, 1e-9);
    expect(g.std).to.be.closeTo(Math.sqrt((0.25 + 0 + 0.25) / 3), 1e-6);
    expect(g).to.deep.include({ solved: 1, passAtK: true, samples: 3 });
    expect(g.passAt1).to.be.closeTo(1 / 3, 1e-6);
    expect(g.terminations).to.deep.equal({ 'agent-finished': 2, 'model-error': 1 });
  });
});
