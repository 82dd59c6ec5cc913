import type { ScenarioRecord } from '../scenarios/types.js';
import type { EnvironmentRecord } from '../synthesis/types.js';
import type { GroupStats } from '../rollouts/groups.js';
import type { Trajectory } from '../rollouts/types.js';
import { pythonJson } from './python-json.js';
import { pythonDumpsText, pythonTextWhereLost } from '../util/python-json.js';
import { RawJson } from '../util/raw-json.js';

/**
 * The dataset formats trainers load (docs/formats.md has each with an example line and the loader
 * settings): OpenAI chat fine-tuning, LLaMA-Factory ShareGPT (function_call / observation turns) and
 * alpaca, the Hugging Face / TRL conversational prompt-completion file, and RL scenario and group records.
 *
 * Two rules hold in every SFT file:
 * - An assistant turn with a broken tool call (arguments that do not parse, that the tool's schema refused,
 *   or a tool that does not exist) stays in the conversation, as context, but is never a training target.
 * - Reasoning (`reasoning_content`) is kept on every assistant turn or dropped from every one (`SftOptions`).
 */

interface Call {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

interface Msg {
  role: string;
  content?: string | null;
  tool_calls?: Call[];
  tool_call_id?: string;
  reasoning_content?: string | null;
}

export const REASONING_MODES = ['keep', 'drop'] as const;
export type ReasoningMode = (typeof REASONING_MODES)[number];

export interface SftOptions {
  /** `keep`: every assistant turn's reasoning goes into every file, in the form each format carries it; `drop`: into none. */
  readonly reasoning: ReasoningMode;
}

export const DEFAULT_SFT_OPTIONS: SftOptions = { reasoning: 'drop' };

/**
 * Runtime codes of a tool call whose arguments were the model's fault: not JSON, not an object, or refused by
 * the tool's JSON Schema (src/rollouts/episode.ts for the parse, src/sandbox/quickjs-host.ts for the schema).
 * A call to a tool the policy was not given is broken too (checked by name: the sandbox's UNKNOWN_TOOL also
 * covers a declared tool whose method is missing, which is the environment's fault), and so is a call, in a
 * scripted multi-turn episode, of a tool not offered in that turn (TOOL_NOT_OFFERED: the trajectory's tools
 * are the last turn's, so the name alone would not show it).
 */
export const BAD_ARGUMENT_CODES: ReadonlySet<string> = new Set(['INVALID_ARGUMENTS', 'TOOL_NOT_OFFERED']);

/** The arguments of a call as a value, or undefined when they are not JSON (an empty string is `{}`, as the episode reads it). */
function parsedArguments(raw: string): { value: unknown } | undefined {
  if (raw.trim() === '') return { value: {} };
  try {
    return { value: JSON.parse(raw) as unknown };
  } catch {
    return undefined;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The arguments as the chat templates expect them: an object; a broken call's arguments as they were (the string, when not JSON). */
const argumentsValue = (raw: string): unknown => parsedArguments(raw)?.value ?? raw;

/**
 * The arguments as Python's json.dumps writes what json.loads reads of the model's text (the templates' tojson):
 * `2.0` stays a float, an integer past 2^53 exact, keys in the model's order. Undefined when the text is not JSON
 * (or Python would not read it): then the caller writes what it wrote before.
 */
const argumentsText = (raw: string): string | undefined => (raw.trim() === '' ? '{}' : pythonDumpsText(raw));

/**
 * The arguments as a value inside a JSON line (the HF / TRL files): the parsed object, or, where JavaScript's reading
 * of the text differs from Python's (`2.0`, an integer past 2^53, `1e16`, integer-like keys), the text Python would
 * write (a RawJson, which the dataset writer copies), so a trainer's json.loads gets what the model sent.
 */
function argumentsInLine(raw: string): unknown {
  const value = argumentsValue(raw);
  if (typeof value !== 'object' || value === null) return value;
  const exact = raw.trim() === '' ? undefined : pythonTextWhereLost(raw, value);
  return exact === undefined ? value : new RawJson(exact);
}

/** A call as LLaMA-Factory's and Qwen's templates write it: `{"name": …, "arguments": …}`, the arguments as argumentsText. */
function callText(name: string, raw: string): string {
  const args = argumentsText(raw);
  return args === undefined ? pyJson({ name, arguments: argumentsValue(raw) }) : `{"name": ${JSON.stringify(name)}, "arguments": ${args}}`;
}

/**
 * The transcript a trainer sees, and which assistant messages are training targets. An episode that ended on
 * a reply that looked like a tool call but could not be read (`unparsed-tool-call`) loses that last reply.
 */
interface Transcript {
  readonly messages: readonly Msg[];
  /** Per message: true for an assistant message a trainer learns from (not broken, not empty). */
  readonly target: readonly boolean[];
  readonly system: string;
}

function transcript(t: Trajectory): Transcript {
  const all = t.messages as unknown as Msg[];
  const messages = t.termination.reason === 'unparsed-tool-call' && all.at(-1)?.role === 'assistant' ? all.slice(0, -1) : all;
  const toolNames = new Set(t.tools.map(x => (x as { function?: { name?: string } }).function?.name));
  let turn = 0;
  const broken = messages.map(m => {
    if (m.role !== 'assistant') return false;
    turn += 1;
    const steps = t.steps.filter(s => s.turn === turn);
    return (m.tool_calls ?? []).some((c, i) => {
      const step = steps.find(s => s.toolCallId === c.id) ?? steps[i];
      if (step?.runtimeError && BAD_ARGUMENT_CODES.has(step.runtimeError)) return true;
      if (!toolNames.has(c.function.name)) return true;
      return !isObject(parsedArguments(c.function.arguments)?.value);
    });
  });
  // A reply cut off at the token limit (finish_reason "length") or by the endpoint's content filter ("content_filter")
  // is unfinished: context only, never a target.
  const cut = new Set((t.policyTurns ?? []).filter(p => p.finishReason === 'length' || p.finishReason === 'content_filter').map(p => p.turn));
  let reply = 0;
  const unfinished = messages.map(m => m.role === 'assistant' && cut.has(++reply));
  // An empty reply (no text, no call) teaches nothing: context only, like a broken one. Whitespace is no text (vLLM
  // with a reasoning parser answers "\n\n" after the thinking), as the episode loop says of it.
  const target = messages.map((m, i) => m.role === 'assistant' && !broken[i] && !unfinished[i] && (!!m.content?.trim() || !!m.tool_calls?.length));
  return { messages, target, system: messages.find(m => m.role === 'system')?.content ?? '' };
}

const reasoningOf = (m: Msg, o: SftOptions): string | null => {
  const r = o.reasoning === 'keep' && typeof m.reasoning_content === 'string' ? m.reasoning_content.replace(/^\n+|\n+$/g, '') : '';
  return r.trim() ? r : null;
};

/** Reasoning in text form, as Qwen3 and LLaMA-Factory's reasoning templates write it (their thought words). */
const withThink = (r: string | null, body: string): string => (r === null ? body : `<think>\n${r}\n</think>\n\n${body}`);

/** JSON as Python's json.dumps writes it (the templates' tojson). */
export const pyJson = (v: unknown): string => pythonJson(v);

// ------------------------------------------------------------------------------------------------ OpenAI

type OpenAIMessage =
  | { role: 'system' | 'user'; content: string }
  | { role: 'assistant'; content?: string; tool_calls?: Call[]; weight?: 0 }
  | { role: 'tool'; tool_call_id: string; content: string };

/**
 * OpenAI chat fine-tuning: {"messages": [...], "tools": [...], "parallel_tool_calls": true}, one line per
 * trajectory ending at its last target. Arguments stay strings, as OpenAI specifies; an assistant message
 * with a broken call gets `weight: 0`. The format has no reasoning field: kept reasoning is a `<think>` block
 * at the start of the content.
 */
export function toOpenAI(t: Trajectory, o: SftOptions = DEFAULT_SFT_OPTIONS): { messages: OpenAIMessage[]; tools: unknown[]; parallel_tool_calls: boolean } | null {
  const tr = transcript(t);
  const end = tr.target.lastIndexOf(true);
  if (end < 0) return null;
  const messages = tr.messages.slice(0, end + 1).map((m, i): OpenAIMessage => {
    if (m.role === 'assistant') {
      const content = withThink(reasoningOf(m, o), m.content ?? '');
      const calls = m.tool_calls?.length ? m.tool_calls.map(c => ({ id: c.id, type: 'function' as const, function: { name: c.function.name, arguments: c.function.arguments } })) : null;
      return {
        role: 'assistant',
        ...(content || !calls ? { content } : {}),
        ...(calls ? { tool_calls: calls } : {}),
        ...(tr.target[i] ? {} : { weight: 0 as const }),
      };
    }
    if (m.role === 'tool') return { role: 'tool', tool_call_id: m.tool_call_id!, content: m.content ?? '' };
    return { role: m.role === 'system' ? 'system' : 'user', content: m.content ?? '' };
  });
  return { messages, tools: [...t.tools], parallel_tool_calls: true };
}

// ------------------------------------------------------------------------------------------------ ShareGPT

/**
 * Several results of one assistant turn in one observation, separated as LLaMA-Factory's own converter of
 * OpenAI-style data joins them: its Qwen templates wrap an observation in <tool_response> … </tool_response>,
 * so each result becomes its own block, as the model's chat template renders consecutive tool messages.
 */
export const OBSERVATION_SEPARATOR = '\n</tool_response>\n<tool_response>\n';

type ShareGPTTurn = { from: 'human' | 'gpt' | 'function_call' | 'observation'; value: string };

/**
 * A function_call value LLaMA-Factory's FunctionFormatter reads: `[<think>…</think>\n\n][content\n<tool_call>]JSON[</tool_call>]`.
 * It finds the JSON with non-greedy regexes, the template's tool-call words (`<tool_call>(.*?)</tool_call>`, or
 * `<|tool_call_start|>…<|tool_call_end|>`), else its thought words (`<think>(.*?)</think>`), then json.loads it: one
 * value those words cut stops its preprocessing of the whole dataset. So the JSON holds no `<` or `>`: inside its
 * strings (the only place JSON has them) they are written `\u003c` and `\u003e`, which json.loads reads back to the
 * same text, and LLaMA-Factory writes the arguments again with json.dumps(…, ensure_ascii=False): the rendering is the
 * same. The text and the reasoning beside the calls cannot be escaped: functionCallWritable says when they are safe.
 */
function functionCallValue(m: Msg, o: SftOptions): string {
  const calls = m.tool_calls!.map(c => callText(c.function.name, c.function.arguments).replace(/</g, '\\u003c').replace(/>/g, '\\u003e'));
  const json = calls.length === 1 ? calls[0]! : `[${calls.join(', ')}]`;
  // Prose next to the calls: the calls go inside the template's tool-call words so the prose stays (LLaMA-Factory ≥ 0.9.4).
  const body = m.content ? `${m.content}\n<tool_call>${json}</tool_call>` : json;
  return withThink(reasoningOf(m, o), body);
}

/** The words LLaMA-Factory's templates find the calls of a function_call value by (tool_call_words; `lfm2`'s are the second pair). */
const TOOL_CALL_WORDS = ['<tool_call>', '</tool_call>', '<|tool_call_start|>', '<|tool_call_end|>'];
/** The thought words it strips before reading the JSON when no tool-call words are found (and its templates' `<think>`). */
const THOUGHT_WORDS = ['<think>', '</think>'];

/**
 * Whether a function_call turn can be written so that LLaMA-Factory reads back its calls: the text beside them and its
 * kept reasoning hold none of the tool-call words (the regex would take the JSON from there), and the reasoning no
 * thought word (the thought regex would end inside it).
 */
function functionCallWritable(m: Msg, o: SftOptions): boolean {
  const text = m.content ?? '';
  const reasoning = reasoningOf(m, o) ?? '';
  return !TOOL_CALL_WORDS.some(w => text.includes(w) || reasoning.includes(w)) && !THOUGHT_WORDS.some(w => reasoning.includes(w));
}

/**
 * LLaMA-Factory ShareGPT: {"conversations": [{"from", "value"}], "system", "tools"}, human/observation at even
 * positions, gpt/function_call at odd ones. One line per target assistant turn: the conversation up to and
 * including it (train with `mask_history: true`, which supervises the last turn only), so a broken turn is only
 * ever context and the recovery after it is still learned. A function_call turn LLaMA-Factory could not read back
 * (functionCallWritable) ends the conversation as a break of the alternation does: lines only before it.
 */
/** Why toShareGPT gave no line for target turns of a trajectory: a turn it could not write readably (tool-call or thought words beside a call), or an order of turns LLaMA-Factory refuses. */
export type ShareGPTLeftOut = 'unreadable-call-turn' | 'turn-order';

export function toShareGPT(
  t: Trajectory,
  o: SftOptions = DEFAULT_SFT_OPTIONS,
  /** Told, for a trajectory that gives fewer lines than it has target turns, why and how many are left out. */
  leftOut?: (why: ShareGPTLeftOut, turns: number) => void,
): { conversations: ShareGPTTurn[]; system: string; tools: string }[] {
  const tr = transcript(t);
  const turns: ShareGPTTurn[] = [];
  const target: boolean[] = [];
  const writable: boolean[] = [];
  let results: string[] = [];
  const flush = () => {
    if (!results.length) return;
    turns.push({ from: 'observation', value: results.join(OBSERVATION_SEPARATOR) });
    target.push(false);
    writable.push(true);
    results = [];
  };
  tr.messages.forEach((m, i) => {
    if (m.role === 'system') return;
    if (m.role === 'tool') {
      results.push(m.content ?? '');
      return;
    }
    flush();
    if (m.role === 'user') turns.push({ from: 'human', value: m.content ?? '' });
    else if (m.tool_calls?.length) turns.push({ from: 'function_call', value: functionCallValue(m, o) });
    else turns.push({ from: 'gpt', value: withThink(reasoningOf(m, o), m.content ?? '') });
    target.push(tr.target[i]!);
    writable.push(m.role !== 'assistant' || !m.tool_calls?.length || functionCallWritable(m, o));
  });
  flush();
  // Alternation as LLaMA-Factory checks it; a conversation that breaks it (two user turns in a row), or a function_call
  // turn it could not read, gives lines only before the break.
  let ok = 0;
  while (ok < turns.length && writable[ok] && (turns[ok]!.from === 'gpt' || turns[ok]!.from === 'function_call') === (ok % 2 === 1) && (ok > 0 || turns[0]!.from === 'human')) ok += 1;
  const tools = JSON.stringify(t.tools.map(x => (x as { function: unknown }).function));
  const left = target.filter((x, k) => x && k >= ok).length;
  if (left && leftOut) leftOut(writable[ok] ? 'turn-order' : 'unreadable-call-turn', left);
  return turns.flatMap((_, k) => (k < ok && target[k] ? [{ conversations: turns.slice(0, k + 1), system: tr.system, tools }] : []));
}

// ------------------------------------------------------------------------------------------------ alpaca

/** Qwen3-style rendering of the tools into the system prompt, as the Qwen2.5 / Qwen3 chat templates write it. */
function qwenSystem(system: string, tools: readonly unknown[]): string {
  return (
    `${system}\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n` +
    `${tools.map(tool => pyJson(tool)).join('\n')}\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>`
  );
}

/** An assistant turn in Qwen's text form; a call whose arguments are not JSON shows them exactly as the model sent them. */
function qwenAssistant(m: Msg, o: SftOptions): string {
  const calls = (m.tool_calls ?? []).map(c => {
    const call = parsedArguments(c.function.arguments) ? callText(c.function.name, c.function.arguments) : `{"name": ${JSON.stringify(c.function.name)}, "arguments": ${c.function.arguments}}`;
    return `<tool_call>\n${call}\n</tool_call>`;
  });
  return withThink(reasoningOf(m, o), [m.content ?? '', ...calls].filter(Boolean).join('\n'));
}

/**
 * LLaMA-Factory alpaca with history: one sample per target assistant turn (instruction = the user or tool-result
 * turn before it, output = the assistant turn, history = every earlier [instruction, output] pair, broken turns
 * included as context), the tools rendered into the system prompt as Qwen's chat templates do. Train with
 * `mask_history: true`: LLaMA-Factory otherwise trains the history's assistant turns too.
 */
export function toLlamaFactory(t: Trajectory, o: SftOptions = DEFAULT_SFT_OPTIONS): { instruction: string; input: string; output: string; system: string; history: [string, string][] }[] {
  const tr = transcript(t);
  const system = qwenSystem(tr.system, t.tools);
  const pairs: { user: string; assistant: string; target: boolean }[] = [];
  let pendingUser: string[] = [];
  tr.messages.forEach((m, i) => {
    if (m.role === 'user') pendingUser.push(m.content ?? '');
    else if (m.role === 'tool') pendingUser.push(`<tool_response>\n${m.content ?? ''}\n</tool_response>`);
    else if (m.role === 'assistant') {
      pairs.push({ user: pendingUser.join('\n'), assistant: qwenAssistant(m, o), target: tr.target[i]! });
      pendingUser = [];
    }
  });
  return pairs.flatMap((p, i) =>
    p.target
      ? [{ instruction: p.user, input: '', output: p.assistant, system, history: pairs.slice(0, i).map(q => [q.user, q.assistant] as [string, string]) }]
      : [],
  );
}

// ------------------------------------------------------------------------------------------------ Hugging Face / TRL

type HFMessage =
  | { role: 'system' | 'user'; content: string }
  | { role: 'assistant'; content?: string; reasoning_content?: string; tool_calls?: { id: string; type: 'function'; function: { name: string; arguments: unknown } }[] }
  | { role: 'tool'; tool_call_id: string; name: string; content: string };

/**
 * Hugging Face chat messages (what `apply_chat_template` and TRL read): tool-call `arguments` as objects, kept
 * reasoning as `reasoning_content` (the field Qwen3's template renders), tool messages with the tool's `name`.
 * No key is ever null: TRL does not strip nulls, and a template renders them.
 */
function hfMessages(tr: Transcript, o: SftOptions): HFMessage[] {
  const names = new Map<string, string>();
  return tr.messages.map((m): HFMessage => {
    if (m.role === 'assistant') {
      const reasoning = reasoningOf(m, o);
      for (const c of m.tool_calls ?? []) names.set(c.id, c.function.name);
      return {
        role: 'assistant',
        ...(m.content || !m.tool_calls?.length ? { content: m.content ?? '' } : {}),
        ...(reasoning !== null ? { reasoning_content: reasoning } : {}),
        ...(m.tool_calls?.length ? { tool_calls: m.tool_calls.map(c => ({ id: c.id, type: 'function' as const, function: { name: c.function.name, arguments: argumentsInLine(c.function.arguments) } })) } : {}),
      };
    }
    if (m.role === 'tool') return { role: 'tool', tool_call_id: m.tool_call_id!, name: names.get(m.tool_call_id!) ?? '', content: m.content ?? '' };
    return { role: m.role === 'system' ? 'system' : 'user', content: m.content ?? '' };
  });
}

/**
 * Hugging Face / TRL conversational prompt-completion: {"prompt": [...], "completion": [...], "tools": [...]}.
 * The targets of a trajectory come in runs between broken turns; each run is one line whose completion is the
 * run (its assistant turns and what came between them) and whose prompt is everything before it, broken turns
 * included. A trajectory without a broken call is one line. Train with `assistant_only_loss=True` (the loss is
 * then on the completion's assistant turns only).
 */
export function toHF(t: Trajectory, o: SftOptions = DEFAULT_SFT_OPTIONS): { prompt: HFMessage[]; completion: HFMessage[]; tools: unknown[] }[] {
  const tr = transcript(t);
  const messages = hfMessages(tr, o);
  const lines: { prompt: HFMessage[]; completion: HFMessage[]; tools: unknown[] }[] = [];
  let start = -1;
  let end = -1;
  const close = () => {
    if (start > 0) lines.push({ prompt: messages.slice(0, start), completion: messages.slice(start, end + 1), tools: [...t.tools] });
    start = -1;
  };
  tr.messages.forEach((m, i) => {
    if (m.role !== 'assistant') return;
    if (!tr.target[i]) close();
    else {
      if (start < 0) start = i;
      end = i;
    }
  });
  close();
  return lines;
}

// ------------------------------------------------------------------------------------------------ RL

/**
 * One RL record per scenario: everything a trainer's environment needs. `initialState` is written as Python reads the
 * scenario's text where JavaScript's reading differs (initialStateJson: an imported config's 5.0, an integer past 2^53),
 * compacted to one line.
 */
export function toRLScenario(s: ScenarioRecord, env: EnvironmentRecord) {
  const exact = s.initialStateJson === undefined ? undefined : pythonDumpsText(s.initialStateJson, true);
  return {
    id: s.id,
    environmentId: env.id,
    environment: { name: env.description.summary, introduction: env.description.introduction, className: env.className, source: env.source, language: env.language ?? 'js', stateSchema: env.state?.stateSchema ?? null },
    tools: env.tools ?? [],
    initialState: exact === undefined ? s.initialState : new RawJson(exact),
    task: s.task,
    userGoal: s.userGoal,
    checks: s.checklist ?? [],
    reward: s.unscored
      ? { kind: 'none', reason: 'the scenario has no checks by design (EnvScaler SFT)' }
      : { kind: 'checklist-fraction', solvedWhen: 'all checks true', checkSignature: env.language === 'python' ? 'check_func(final_state) -> bool, initial_state a global' : 'check(finalState, initialState) -> boolean' },
  };
}

export function toRLGroup(g: GroupStats) {
  return { ...g };
}

/** `solvedOnly`: solved trajectories only. `minReward`: a reward of at least this; a trajectory without one (unscored: a model or environment error) never passes it, not even at 0. */
export type SftFilter = { readonly solvedOnly: boolean; readonly minReward: number | null };

export function passesFilter(t: Trajectory, f: SftFilter): boolean {
  if (f.solvedOnly && !t.solved) return false;
  if (f.minReward !== null && (typeof t.reward !== 'number' || t.reward < f.minReward)) return false;
  return true;
}
