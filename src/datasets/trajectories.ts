import type { ScenarioRecord } from '../scenarios/types.js';
import type { EnvironmentRecord } from '../synthesis/types.js';
import type { GroupStats } from '../rollouts/groups.js';
import type { Trajectory } from '../rollouts/types.js';

/**
 * The dataset formats trainers load (docs/formats.md has each with an example line):
 * OpenAI chat fine-tuning, LlamaFactory ShareGPT (with function_call / observation turns), LlamaFactory
 * alpaca with one sample per assistant turn, and RL scenario and group records.
 */

interface Msg {
  role: string;
  content?: string | null;
  tool_calls?: { id: string; type: 'function'; function: { name: string; arguments: string } }[];
  tool_call_id?: string;
  reasoning_content?: string;
}

/**
 * The messages a trainer learns from. An episode that ended on a reply that looked like a tool call
 * but could not be read (`unparsed-tool-call`) loses that last reply: it is kept in the trajectory,
 * never trained on.
 */
const msgs = (t: Trajectory): Msg[] => {
  const all = t.messages as unknown as Msg[];
  return t.termination.reason === 'unparsed-tool-call' && all.at(-1)?.role === 'assistant' ? all.slice(0, -1) : all;
};

/** Drops what follows the last assistant message: a training example ends with the model's turn. */
function upToLastAssistant(messages: Msg[]): Msg[] {
  let last = -1;
  messages.forEach((m, i) => {
    if (m.role === 'assistant') last = i;
  });
  return messages.slice(0, last + 1);
}

/** OpenAI chat fine-tuning: {"messages": [...], "tools": [...]} (reasoning is not part of the format). */
export function toOpenAI(t: Trajectory): { messages: Msg[]; tools: unknown[]; parallel_tool_calls: boolean } | null {
  const messages = upToLastAssistant(msgs(t)).map(m => {
    if (m.role === 'assistant') {
      return {
        role: 'assistant',
        ...(m.content ? { content: m.content } : {}),
        ...(m.tool_calls?.length ? { tool_calls: m.tool_calls.map(c => ({ id: c.id, type: 'function' as const, function: { name: c.function.name, arguments: c.function.arguments } })) } : {}),
      };
    }
    if (m.role === 'tool') return { role: 'tool', tool_call_id: m.tool_call_id!, content: m.content ?? '' };
    return { role: m.role, content: m.content ?? '' };
  });
  if (!messages.some(m => m.role === 'assistant')) return null;
  return { messages, tools: [...t.tools], parallel_tool_calls: true };
}

const parseArgs = (raw: string): unknown => {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
};

/**
 * LlamaFactory ShareGPT: {"conversations": [{"from": "human" | "gpt" | "function_call" | "observation", "value"}],
 * "system", "tools"}; human/observation at even indices, gpt/function_call at odd ones. Several tool calls of one
 * message become one function_call turn holding a JSON list, and their results one observation turn (a JSON list).
 */
export function toShareGPT(t: Trajectory): { conversations: { from: string; value: string }[]; system: string; tools: string } | null {
  const all = msgs(t);
  const system = all.find(m => m.role === 'system')?.content ?? '';
  const turns: { from: string; value: string }[] = [];
  let pendingResults: string[] = [];
  const flushResults = () => {
    if (!pendingResults.length) return;
    turns.push({ from: 'observation', value: pendingResults.length === 1 ? pendingResults[0]! : JSON.stringify(pendingResults) });
    pendingResults = [];
  };
  for (const m of all) {
    if (m.role === 'system') continue;
    if (m.role === 'tool') {
      pendingResults.push(m.content ?? '');
      continue;
    }
    flushResults();
    if (m.role === 'user') turns.push({ from: 'human', value: m.content ?? '' });
    else if (m.role === 'assistant' && m.tool_calls?.length) {
      const calls = m.tool_calls.map(c => ({ name: c.function.name, arguments: parseArgs(c.function.arguments) }));
      turns.push({ from: 'function_call', value: JSON.stringify(calls.length === 1 ? calls[0] : calls) });
    } else if (m.role === 'assistant') turns.push({ from: 'gpt', value: m.content ?? '' });
  }
  flushResults();
  while (turns.length && (turns.at(-1)!.from === 'human' || turns.at(-1)!.from === 'observation')) turns.pop();
  if (!turns.length || turns[0]!.from !== 'human') return null;
  for (let i = 0; i < turns.length; i += 1) {
    const expectOdd = turns[i]!.from === 'gpt' || turns[i]!.from === 'function_call';
    if (expectOdd !== (i % 2 === 1)) return null; // cannot alternate (e.g. two user turns in a row)
  }
  return { conversations: turns, system, tools: JSON.stringify(t.tools.map(x => (x as { function: unknown }).function)) };
}

/** Qwen3-style rendering of the tools into the system prompt (as the seed's SFT step 1 does). */
function qwenSystem(system: string, tools: readonly unknown[]): string {
  return (
    `${system}\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n` +
    `${tools.map(tool => JSON.stringify(tool)).join('\n')}\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>`
  );
}

function qwenAssistant(m: Msg, withThinking: boolean): string {
  const calls = (m.tool_calls ?? []).map(c => `<tool_call>\n${JSON.stringify({ name: c.function.name, arguments: parseArgs(c.function.arguments) })}\n</tool_call>`);
  const body = [m.content ?? '', ...calls].filter(Boolean).join('\n');
  return withThinking && m.reasoning_content ? `<think>\n${m.reasoning_content.trim()}\n</think>\n\n${body}` : body;
}

/**
 * LlamaFactory alpaca with history: one sample per assistant turn (instruction = the user or tool-result turn
 * before it, output = the assistant turn with its reasoning, history = earlier [user, assistant] pairs without
 * reasoning), tools rendered in the Qwen3 chat format as the seed's SFT steps do.
 */
export function toLlamaFactory(t: Trajectory): { instruction: string; input: string; output: string; system: string; history: [string, string][] }[] {
  const all = msgs(t);
  const system = qwenSystem(all.find(m => m.role === 'system')?.content ?? '', t.tools);
  const pairs: { user: string; assistant: Msg }[] = [];
  let pendingUser: string[] = [];
  for (const m of all) {
    if (m.role === 'system') continue;
    if (m.role === 'user') pendingUser.push(m.content ?? '');
    else if (m.role === 'tool') pendingUser.push(`<tool_response>\n${m.content ?? ''}\n</tool_response>`);
    else if (m.role === 'assistant') {
      pairs.push({ user: pendingUser.join('\n'), assistant: m });
      pendingUser = [];
    }
  }
  return pairs.map((p, i) => ({
    instruction: p.user,
    input: '',
    output: qwenAssistant(p.assistant, true),
    system,
    history: pairs.slice(0, i).map(q => [q.user, qwenAssistant(q.assistant, false)] as [string, string]),
  }));
}

/** One RL record per scenario: everything a trainer's environment needs. */
export function toRLScenario(s: ScenarioRecord, env: EnvironmentRecord) {
  return {
    id: s.id,
    environmentId: env.id,
    environment: { name: env.description.summary, introduction: env.description.introduction, className: env.className, source: env.source, stateSchema: env.state?.stateSchema ?? null },
    tools: env.tools ?? [],
    initialState: s.initialState,
    task: s.task,
    userGoal: s.userGoal,
    checks: s.checklist ?? [],
    reward: { kind: 'checklist-fraction', solvedWhen: 'all checks true', checkSignature: 'check(finalState, initialState) -> boolean' },
  };
}

export function toRLGroup(g: GroupStats) {
  return { ...g };
}

export type SftFilter = { readonly solvedOnly: boolean; readonly minReward: number | null };

export function passesFilter(t: Trajectory, f: SftFilter): boolean {
  if (f.solvedOnly && !t.solved) return false;
  if (f.minReward !== null && (t.reward ?? 0) < f.minReward) return false;
  return true;
}
