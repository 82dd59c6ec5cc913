import { expect } from 'chai';
import type { ToolCallFormat } from '../../../config/index.js';
import type { ChatResult, ModelGateway } from '../../../src/llm/gateway.js';
import { runEpisode } from '../../../src/rollouts/episode.js';
import type { Trajectory } from '../../../src/rollouts/types.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../../src/sandbox/limits.js';
import type { SandboxRunner } from '../../../src/sandbox/runner.js';
import type { ChecksInput } from '../../../src/sandbox/tasks.js';
import type { ScenarioRecord } from '../../../src/scenarios/types.js';
import type { EnvironmentRecord } from '../../../src/synthesis/types.js';

const TOOLS = ['get_member', 'return_book'].map(name => ({ type: 'function', function: { name, description: name, parameters: { type: 'object', properties: { loan_id: { type: 'string' } } } } }));
const ENV = { id: 'env-1', description: { summary: 'Bibliothèque 图书馆', introduction: 'A library 📚.' }, className: 'Library', source: 'class Library {}', tools: TOOLS } as unknown as EnvironmentRecord;
const SCENARIO = { id: 's1', runId: 'r', environmentId: ENV.id, index: 0, status: 'ready', initialState: {}, task: 'Rends le prêt L1 — 归还 L1', checklist: [{ item: 'Has loan L1 returned', check: 'function check() { return true; }' }] } as unknown as ScenarioRecord;

/** One non-conversational episode whose policy answers `replies` in turn (as text content), under a profile with `format`. */
async function episode(format: ToolCallFormat, replies: readonly unknown[]): Promise<{ t: Trajectory; calls: unknown[] }> {
  let turn = 0;
  const calls: unknown[] = [];
  const gateway = {
    chat: () => {
      const reply = replies[Math.min(turn, replies.length - 1)];
      turn += 1;
      // A reply is its text, or a message's fields (content and tool_calls, as a server answered them).
      const message = typeof reply === 'object' && reply !== null && 'tool_calls' in reply ? { role: 'assistant', refusal: null, ...reply } : { role: 'assistant', content: reply, refusal: null };
      return Promise.resolve({ message, finishReason: 'stop', usage: { promptTokens: 1, completionTokens: 1 }, model: 'policy-v1', cached: false, toolCallFormat: format, tokens: null } as unknown as ChatResult);
    },
    structured: () => Promise.reject(new Error('not used')),
    embed: () => Promise.reject(new Error('not used')),
  } as unknown as ModelGateway;
  const sandbox = {
    openSession: () =>
      Promise.resolve({
        call: (tool: string, args: unknown) => (calls.push([tool, args]), Promise.resolve({ result: { success: true }, us: 1 })),
        snapshot: () => Promise.resolve({}),
        close: () => Promise.resolve(),
      }),
    checks: (input: ChecksInput) => Promise.resolve({ results: input.checks.map(c => ({ item: c.item, passed: true })), reward: 1, solved: true }),
  } as unknown as SandboxRunner;
  const t = await runEpisode(
    { gateway, sandbox },
    { runId: 'r', scenario: SCENARIO, env: ENV, mode: 'non-conversational', sample: 0, limits: { maxSteps: 5, maxTokens: 0, maxWallMs: 60_000 }, sandboxLimits: DEFAULT_SANDBOX_LIMITS, policyModel: null, userModel: null, sampling: { temperature: 1, maxTokens: 100 } },
  );
  return { t, calls };
}

describe('episode: replies as models write them', () => {
  it('drops the text copy of calls a server returned both as tool calls and in the text, and keeps text that says something else', async () => {
    const native = (id: string, name: string, args: string) => ({ id, type: 'function', function: { name, arguments: args } });
    const { t, calls } = await episode('native', [
      { content: 'Je rends le prêt 📚\n<tool_call>\n{"name": "return_book", "arguments": {"loan_id": "L1"}}\n</tool_call>', tool_calls: [native('c1', 'return_book', '{"loan_id":"L1"}')] },
      // The text calls another tool than the tool call does: the model's own words, kept.
      { content: '<tool_call>{"name": "get_member", "arguments": {}}</tool_call>', tool_calls: [native('c2', 'return_book', '{"loan_id": "L1"}')] },
      'Fini — 完成 ✅',
    ]);
    expect(calls).to.deep.equal([['return_book', { loan_id: 'L1' }], ['return_book', { loan_id: 'L1' }]]);
    const assistant = t.messages.filter(m => m.role === 'assistant') as { content: string | null; tool_calls?: unknown[] }[];
    expect(assistant[0]!.content).to.equal('Je rends le prêt 📚');
    expect(assistant[0]!.tool_calls).to.have.length(1);
    expect(assistant[1]!.content).to.equal('<tool_call>{"name": "get_member", "arguments": {}}</tool_call>');
    expect(t.termination.reason).to.equal('agent-finished');
  });


  it('a call written after prose in another shape than the profile names is not a finished answer', async () => {
    const { t, calls } = await episode('llama3', ['Sure! Je m’en occupe 👍\n\n{"name": "return_book", "parameters": {"loan_id": "L1"}}']);
    expect(t.termination.reason).to.equal('unparsed-tool-call');
    expect(t.termination.detail).to.match(/llama3/);
    expect(calls).to.deep.equal([]);
  });

  it('moves reasoning written in the text to reasoning_content, and reads the call after it', async () => {
    const { t, calls } = await episode('hermes', ['Let me plan: L1 first — 先还书.</think>\n<tool_call>\n{"name": "return_book", "arguments": {"loan_id": "L1"}}\n</tool_call>', 'C’est fait ✅']);
    expect(calls).to.deep.equal([['return_book', { loan_id: 'L1' }]]);
    const first = t.messages.find(m => m.role === 'assistant') as { content: string | null; reasoning_content?: string; tool_calls?: unknown[] };
    expect(first.content).to.equal(null);
    expect(first.reasoning_content).to.equal('Let me plan: L1 first — 先还书.');
    expect(first.tool_calls).to.have.length(1);
    expect(t.termination.reason).to.equal('agent-finished');
    expect(t.messages.at(-1)).to.deep.include({ role: 'assistant', content: 'C’est fait ✅' });
  });

  it('an empty reply (no text, no call; only reasoning, as vLLM with a reasoning parser can answer) ends the episode saying so; an answer has no such detail', async () => {
    for (const empty of [null, '', '  \n']) {
      const { t } = await episode('native', [empty]);
      expect(t.termination.reason).to.equal('agent-finished');
      expect(t.termination.detail, JSON.stringify(empty)).to.equal("the policy's reply in turn 1 was empty (no text and no tool call)");
    }
    const { t } = await episode('hermes', ['<think>je réfléchis 🤔</think>']);
    expect(t.termination.detail).to.equal("the policy's reply in turn 1 was empty (no text and no tool call; it wrote only reasoning, no answer after it)");
    expect((await episode('native', ['Fait ✅'])).t.termination.detail).to.equal(null);
  });

  it('an answer in prose stays an answer under every format', async () => {
    for (const format of ['native', 'hermes', 'llama3', 'mistral', 'json', 'auto'] as const) {
      const { t } = await episode(format, ['Le prêt L1 est rendu — 已归还. Anything else? {"note": "no call here"}']);
      expect(t.termination.reason, format).to.equal('agent-finished');
    }
  });
});

describe('episode: what the endpoint leaves out, and what the user may read', () => {
  it('gives a call sent without an id (or with another call\'s id) one of its own, on the call itself; the user reads the agent\'s answer without its reasoning', async () => {
    const policy = [
      // A server that sends no ids, and one that repeats one.
      { role: 'assistant', content: null, tool_calls: [{ type: 'function', function: { name: 'return_book', arguments: '{"loan_id": "L1"}' } }, { id: 'dup', type: 'function', function: { name: 'get_member', arguments: '{}' } }, { id: 'dup', type: 'function', function: { name: 'get_member', arguments: '{}' } }] },
      // Reasoning written in the text (no reasoning parser on the server), then the answer.
      { role: 'assistant', content: '<think>Secret plan 🤫: do not tell them about the fee.</think>C’est fait — 已归还 ✅' },
    ];
    let turn = 0;
    const userSaw: string[] = [];
    const gateway = {
      chat: () => Promise.resolve({ message: policy[Math.min(turn++, policy.length - 1)], finishReason: 'stop', usage: { promptTokens: 1, completionTokens: 1 }, model: 'policy-v1', cached: false, toolCallFormat: 'native', tokens: null } as unknown as ChatResult),
      structured: (_ctx: unknown, req: { messages: { content: string }[] }) => {
        userSaw.push(req.messages.at(-1)!.content);
        return Promise.resolve({ value: { reply: userSaw.length === 1 ? 'Rends L1 stp' : 'Merci ###STOP###' }, usage: { promptTokens: 1, completionTokens: 1 } });
      },
      embed: () => Promise.reject(new Error('not used')),
    } as unknown as ModelGateway;
    const sandbox = {
      openSession: () => Promise.resolve({ call: () => Promise.resolve({ result: { success: true }, us: 1 }), snapshot: () => Promise.resolve({}), close: () => Promise.resolve() }),
      checks: (input: ChecksInput) => Promise.resolve({ results: input.checks.map(c => ({ item: c.item, passed: true })), reward: 1, solved: true }),
    } as unknown as SandboxRunner;
    const t = await runEpisode(
      { gateway, sandbox },
      { runId: 'r', scenario: SCENARIO, env: ENV, mode: 'conversational', sample: 0, limits: { maxSteps: 5, maxTokens: 0, maxWallMs: 60_000 }, sandboxLimits: DEFAULT_SANDBOX_LIMITS, policyModel: null, userModel: null, sampling: { temperature: 1, maxTokens: 100 } },
    );
    const first = t.messages.find(m => m.role === 'assistant') as { tool_calls: { id: string }[] };
    const ids = first.tool_calls.map(c => c.id);
    expect(ids).to.deep.equal(['call_1_0', 'dup', 'call_1_2']);
    expect(t.messages.filter(m => m.role === 'tool').map(m => (m as { tool_call_id: string }).tool_call_id)).to.deep.equal(ids);
    expect(t.steps.map(s => s.toolCallId)).to.deep.equal(ids);
    // The user simulator read the answer, not the reasoning.
    expect(userSaw.at(-1)).to.include('C’est fait — 已归还 ✅');
    expect(userSaw.join('\n')).to.not.include('Secret plan');
    const answer = t.messages.filter(m => m.role === 'assistant').at(-1) as unknown as { content: string; reasoning_content: string };
    expect(answer.reasoning_content).to.include('Secret plan 🤫');
    expect(t.termination.reason).to.equal('user-stopped');
  });
});
