import { z } from 'zod';

/**
 * Validators written from the formats' published descriptions (not from our writer), used to
 * check every line of every export.
 */

const parsesAsJson = (s: string) => {
  try {
    JSON.parse(s);
    return true;
  } catch {
    return false;
  }
};

/**
 * OpenAI chat fine-tuning (with tools): {messages, tools?, parallel_tool_calls?}. Message keys as OpenAI's
 * fine-tuning request schema lists them (no others: e.g. `reasoning_content` is not one); `weight` (0 or 1)
 * only on assistant messages, and at least one assistant message is trained (no weight, or 1).
 */
const ToolCallText = z.strictObject({ id: z.string().min(1), type: z.literal('function'), function: z.strictObject({ name: z.string().min(1), arguments: z.string() }) });
export const OpenAIFineTuneLine = z
  .object({
    messages: z
      .array(
        z.discriminatedUnion('role', [
          z.strictObject({ role: z.literal('system'), content: z.string(), name: z.string().optional() }),
          z.strictObject({ role: z.literal('user'), content: z.string(), name: z.string().optional() }),
          z.strictObject({
            role: z.literal('assistant'),
            content: z.string().nullable().optional(),
            refusal: z.string().nullable().optional(),
            name: z.string().optional(),
            tool_calls: z.array(ToolCallText).optional(),
            weight: z.union([z.literal(0), z.literal(1)]).optional(),
          }),
          z.strictObject({ role: z.literal('tool'), tool_call_id: z.string().min(1), content: z.string() }),
        ]),
      )
      .min(2),
    tools: z.array(z.object({ type: z.literal('function'), function: z.object({ name: z.string(), description: z.string().optional(), parameters: z.record(z.string(), z.unknown()).optional() }) })).optional(),
    parallel_tool_calls: z.boolean().optional(),
  })
  .superRefine((line, ctx) => {
    if (!line.messages.some(m => m.role === 'assistant' && m.weight !== 0)) ctx.addIssue({ code: 'custom', message: 'needs at least one trained assistant message' });
    const open = new Set<string>();
    for (const m of line.messages) {
      if (m.role === 'assistant') {
        if (m.content === undefined && !m.tool_calls?.length) ctx.addIssue({ code: 'custom', message: 'an assistant message needs content or tool_calls' });
        for (const c of m.tool_calls ?? []) open.add(c.id);
      }
      if (m.role === 'tool' && !open.has(m.tool_call_id)) ctx.addIssue({ code: 'custom', message: `tool message answers unknown call ${m.tool_call_id}` });
    }
  });

/**
 * The tool calls of a LLaMA-Factory function_call value, read as its FunctionFormatter reads them: the JSON
 * inside the template's tool-call words if present (prose and thought before them are kept), else the value
 * without a leading `<think>` block; one {name, arguments} or a list of them. Null when it cannot be read.
 */
export function functionCallsOf(value: string): { name: string; arguments: unknown }[] | null {
  const inside = /<tool_call>([\s\S]*?)<\/tool_call>/.exec(value);
  const json = inside ? inside[1]! : value.replace(/<think>\n[\s\S]*?\n<\/think>\n\n/, '');
  if (!parsesAsJson(json)) return null;
  const v = JSON.parse(json) as unknown;
  const calls = Array.isArray(v) ? v : [v];
  const ok = calls.every(c => !!c && typeof c === 'object' && typeof (c as { name?: unknown }).name === 'string' && 'arguments' in c);
  return ok ? (calls as { name: string; arguments: unknown }[]) : null;
}

const isPlainObject = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * LlamaFactory ShareGPT: human/observation at even positions, gpt/function_call at odd ones, an even count.
 * The last turn is the one trained on (`mask_history: true`): a call there has its arguments as an object.
 * Several results are never a JSON list of JSON strings (LLaMA-Factory would render the list as one result).
 */
export const ShareGPTLine = z
  .object({
    conversations: z.array(z.object({ from: z.enum(['human', 'gpt', 'function_call', 'observation']), value: z.string() })).min(2),
    system: z.string().optional(),
    tools: z.string().refine(parsesAsJson, 'tools must be a JSON string').optional(),
  })
  .superRefine((line, ctx) => {
    line.conversations.forEach((turn, i) => {
      const odd = turn.from === 'gpt' || turn.from === 'function_call';
      if (odd !== (i % 2 === 1)) ctx.addIssue({ code: 'custom', message: `turn ${i} (${turn.from}) is out of order` });
      if (turn.from === 'function_call') {
        const calls = functionCallsOf(turn.value);
        if (!calls) ctx.addIssue({ code: 'custom', message: `function_call ${i} cannot be read (JSON {name, arguments} or a list of them)` });
        else if (i === line.conversations.length - 1 && !calls.every(c => isPlainObject(c.arguments))) ctx.addIssue({ code: 'custom', message: `the trained function_call ${i} has arguments that are not an object` });
      }
      if (turn.from === 'observation' && parsesAsJson(turn.value)) {
        const v = JSON.parse(turn.value) as unknown;
        if (Array.isArray(v) && v.length > 1 && v.every(x => typeof x === 'string')) ctx.addIssue({ code: 'custom', message: `observation ${i} is a JSON list of results` });
      }
    });
    if (line.conversations.length % 2 !== 0) ctx.addIssue({ code: 'custom', message: 'must end with a gpt or function_call turn' });
  });

/** LlamaFactory alpaca: instruction, input, output, optional system and history of [prompt, response] pairs. */
export const AlpacaLine = z.object({
  instruction: z.string(),
  input: z.string(),
  output: z.string().min(1),
  system: z.string().optional(),
  history: z.array(z.tuple([z.string(), z.string()])).optional(),
});

/**
 * A Hugging Face chat message as the chat templates and TRL read it: tool-call arguments are objects (the
 * templates apply `tojson` to them), no key holds null (TRL ≥ 1.0 does not strip nulls; a template prints them).
 */
const HFToolCall = z.object({ id: z.string().optional(), type: z.literal('function'), function: z.object({ name: z.string().min(1), arguments: z.unknown() }) });
const HFMessage = z.discriminatedUnion('role', [
  z.strictObject({ role: z.literal('system'), content: z.string() }),
  z.strictObject({ role: z.literal('user'), content: z.string() }),
  z.strictObject({ role: z.literal('assistant'), content: z.string().optional(), reasoning_content: z.string().optional(), tool_calls: z.array(HFToolCall).min(1).optional() }),
  z.strictObject({ role: z.literal('tool'), content: z.string(), tool_call_id: z.string().optional(), name: z.string().optional() }),
]);
type HFMessage = z.infer<typeof HFMessage>;

/**
 * TRL conversational prompt-completion with tools: {prompt: messages, completion: messages, tools: [function
 * tools]}. The prompt starts with system or user and ends where the model speaks (a user or tool message); the
 * completion ends with an assistant message; every call in the completion has an object of arguments.
 */
export const HFPromptCompletionLine = z
  .strictObject({
    prompt: z.array(HFMessage).min(1),
    completion: z.array(HFMessage).min(1),
    tools: z.array(z.object({ type: z.literal('function'), function: z.object({ name: z.string().min(1), parameters: z.record(z.string(), z.unknown()).optional() }) })).min(1),
  })
  .superRefine((line, ctx) => {
    const issue = (message: string) => ctx.addIssue({ code: 'custom', message });
    if (!['system', 'user'].includes(line.prompt[0]!.role)) issue('the prompt must start with a system or user message');
    if (!['user', 'tool'].includes(line.prompt.at(-1)!.role)) issue('the prompt must end with a user or tool message');
    if (line.completion.at(-1)!.role !== 'assistant') issue('the completion must end with an assistant message');
    const calls = (m: HFMessage) => (m.role === 'assistant' ? (m.tool_calls ?? []) : []);
    for (const m of line.completion) for (const c of calls(m)) if (!isPlainObject(c.function.arguments)) issue(`call ${c.function.name} in the completion has arguments that are not an object`);
    const open = new Set<string>();
    for (const m of [...line.prompt, ...line.completion]) {
      if (m.role === 'assistant' && m.content === undefined && !m.tool_calls) issue('an assistant message needs content or tool_calls');
      for (const c of calls(m)) if (c.id) open.add(c.id);
      if (m.role === 'tool' && m.tool_call_id && !open.has(m.tool_call_id)) issue(`tool message answers unknown call ${m.tool_call_id}`);
    }
    const nulls = JSON.stringify(line).match(/:null[,}]/g);
    if (nulls) issue('no key may hold null');
  });

/** LLaMA-Factory's dataset_info.json: each entry names its file and formatting; columns and tags as DatasetAttr reads them. */
export const LlamaFactoryDatasetInfo = z.record(
  z.string(),
  z.strictObject({
    file_name: z.string().min(1),
    formatting: z.enum(['alpaca', 'sharegpt', 'openai']),
    columns: z.partialRecord(z.enum(['prompt', 'query', 'response', 'history', 'messages', 'system', 'tools', 'images', 'videos', 'audios', 'chosen', 'rejected', 'kto_tag']), z.string()).optional(),
    tags: z.partialRecord(z.enum(['role_tag', 'content_tag', 'user_tag', 'assistant_tag', 'observation_tag', 'function_tag', 'system_tag']), z.string()).optional(),
  }),
);

export const RLScenarioLine = z.object({
  id: z.string(),
  environmentId: z.string(),
  environment: z.object({ className: z.string(), source: z.string().min(1) }),
  tools: z.array(z.object({ type: z.literal('function') })).min(1),
  initialState: z.record(z.string(), z.unknown()),
  task: z.string().min(1),
  userGoal: z.object({ goal: z.string(), facts: z.array(z.string()) }),
  checks: z.array(z.object({ item: z.string(), check: z.string().min(1) })).min(1),
});

export const RLGroupLine = z.object({
  scenarioId: z.string(),
  mode: z.enum(['non-conversational', 'conversational']),
  samples: z.number().int().positive(),
  rewards: z.array(z.number().min(0).max(1)),
  unscored: z.number().int().nonnegative(),
  mean: z.number().min(0).max(1),
  std: z.number().min(0),
  passAt1: z.number().min(0).max(1),
  passAtK: z.boolean(),
  trajectoryIds: z.array(z.string()),
});

// ---------------------------------------------------------------------------------------------
// RL trainers: verl's RLHFDataset, TRL's GRPOTrainer, verifiers (docs/formats.md, rl-verl.json and rl-prompts.jsonl).

/** Keywords whose value maps names to schemas that each describe a value (so need a type). */
const TYPED_MAPS = ['properties', 'patternProperties'];
/** Keywords whose value is a schema (or list of schemas, for items) that describes a value. */
const TYPED_VALUES = ['items', 'additionalItems', 'additionalProperties', 'contains'];

/**
 * Paths (`properties.a.items`) of the schemas in a tool's parameters that describe a value but have no
 * `type` — what verl's OpenAIFunctionPropertySchema refuses. Walks without recursion, `maxDepth` levels deep.
 */
export function untypedProperties(schema: unknown, maxDepth = 64): string[] {
  const out: string[] = [];
  const stack: [unknown, string, number, boolean][] = [[schema, '', 0, true]];
  while (stack.length) {
    const [node, path, depth, typed] = stack.pop()!;
    if (node === null || typeof node !== 'object' || Array.isArray(node) || depth > maxDepth) continue;
    const s = node as Record<string, unknown>;
    if (typed && !Object.prototype.hasOwnProperty.call(s, 'type')) out.push(path || '(root)');
    const at = (k: string) => (path ? `${path}.${k}` : k);
    for (const key of TYPED_MAPS) {
      const map = s[key];
      if (map && typeof map === 'object' && !Array.isArray(map)) for (const [name, sub] of Object.entries(map)) stack.push([sub, at(`${key}.${name}`), depth + 1, true]);
    }
    for (const key of TYPED_VALUES) {
      const v = s[key];
      if (Array.isArray(v)) v.forEach((sub, i) => stack.push([sub, at(`${key}.${i}`), depth + 1, true]));
      else if (v && typeof v === 'object') stack.push([v, at(key), depth + 1, true]);
    }
    for (const key of ['anyOf', 'oneOf', 'allOf']) {
      const v = s[key];
      if (Array.isArray(v)) v.forEach((sub, i) => stack.push([sub, at(`${key}.${i}`), depth + 1, false]));
    }
  }
  return out.sort();
}

/** verl's tool schema (verl/tools/schemas.py, OpenAIFunctionToolSchema): every property has a `type`, `enum` holds strings, `required` is a list. */
export const VerlToolSchema = z.object({
  type: z.string(),
  function: z.object({
    name: z.string(),
    description: z.string(),
    parameters: z.object({
      type: z.string(),
      properties: z.record(z.string(), z.object({ type: z.string(), description: z.string().nullish(), enum: z.array(z.string()).nullish() })),
      required: z.array(z.string()),
    }),
  }),
});

const ChatPromptMessage = z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string() });

/** A JSON string that parses to a value `schema` accepts. */
const jsonStringOf = <T extends z.ZodType>(schema: T) =>
  z.string().transform((s, ctx) => {
    try {
      const r = schema.safeParse(JSON.parse(s));
      if (r.success) return r.data;
      ctx.addIssue({ code: 'custom', message: `JSON string: ${JSON.stringify(r.error.issues).slice(0, 300)}` });
    } catch {
      ctx.addIssue({ code: 'custom', message: 'not a JSON string' });
    }
    return z.NEVER;
  });

/**
 * verl's RL dataset row: RLHFDataset reads `prompt` (data.prompt_key: chat messages, ending with the
 * turn the policy answers), `data_source` (data.reward_fn_key), `reward_model.ground_truth` (the reward
 * manager), and `extra_info` (`index`; ToolAgentLoop's `tools_kwargs[tool].create_kwargs` and
 * `interaction_kwargs.name`).
 */
export const VerlLine = z
  .looseObject({
    data_source: z.string().min(1),
    prompt: z.array(ChatPromptMessage).min(1),
    reward_model: z.looseObject({ style: z.string(), ground_truth: z.string().min(1) }),
    extra_info: z.looseObject({
      index: z.number().int().min(0),
      split: z.string().min(1),
      run_id: z.string().min(1),
      scenario_id: z.string().min(1),
      environment_id: z.string().min(1),
      tools: jsonStringOf(z.array(VerlToolSchema).min(1)),
      need_tools_kwargs: z.boolean().optional(),
      tools_kwargs: z.record(z.string(), z.looseObject({ create_kwargs: z.record(z.string(), z.unknown()) })),
      interaction_kwargs: z.looseObject({ name: z.string().min(1) }),
    }),
  })
  .superRefine((line, ctx) => {
    if (line.prompt.at(-1)?.role !== 'user') ctx.addIssue({ code: 'custom', message: 'the prompt must end with the user turn the policy answers' });
    const names = line.extra_info.tools.map(t => t.function.name);
    if (JSON.stringify(Object.keys(line.extra_info.tools_kwargs).sort()) !== JSON.stringify([...names].sort())) ctx.addIssue({ code: 'custom', message: 'tools_kwargs must have one entry per tool' });
    for (const t of line.extra_info.tools) {
      const untyped = untypedProperties(t.function.parameters);
      if (untyped.length) ctx.addIssue({ code: 'custom', message: `${t.function.name}: untyped ${untyped.join(', ')}` });
    }
  });

const OpenAITool = z.object({ type: z.literal('function'), function: z.object({ name: z.string().min(1), description: z.string().optional(), parameters: z.record(z.string(), z.unknown()) }) });
/** verifiers' provider-agnostic tool (`info.tool_defs`: vf.Tool). */
const VerifiersTool = z.object({ name: z.string().min(1), description: z.string(), parameters: z.record(z.string(), z.unknown()) });

/**
 * A prompt-column row for TRL's GRPOTrainer (a conversational `prompt`; every other column is passed to
 * the reward functions; `tools` as a JSON string, TRL's advice for `datasets` without the Json type) and
 * verifiers (`prompt`, an int `example_id`, a string `answer`, `info` as a dict or JSON string with
 * `tool_defs`). Neither a `task` column nor `info.task` (verifiers reads it as a task payload), nor an
 * `environment` column (TRL's multi-environment selector).
 */
export const PromptLine = z
  .looseObject({
    prompt: z.array(ChatPromptMessage).min(1),
    tools: jsonStringOf(z.array(OpenAITool).min(1)),
    run_id: z.string().min(1),
    scenario_id: z.string().min(1),
    environment_id: z.string().min(1),
    example_id: z.number().int().min(0),
    answer: z.string(),
    info: jsonStringOf(z.looseObject({ tool_defs: z.array(VerifiersTool).min(1) })),
  })
  .superRefine((line, ctx) => {
    if (line.prompt.at(-1)?.role !== 'user') ctx.addIssue({ code: 'custom', message: 'the prompt must end with the user turn the policy answers' });
    for (const key of ['task', 'environment']) if (key in line) ctx.addIssue({ code: 'custom', message: `a "${key}" column means something else to verifiers / TRL` });
    if ('task' in line.info) ctx.addIssue({ code: 'custom', message: 'info.task is read by verifiers as a task payload' });
    for (const t of line.tools) {
      const untyped = untypedProperties(t.function.parameters);
      if (untyped.length) ctx.addIssue({ code: 'custom', message: `${t.function.name}: untyped ${untyped.join(', ')}` });
    }
  });

/**
 * What stops HF `datasets` (Arrow) from giving rows back as written, across all the lines of a file: a
 * key with values of two JSON types in different rows (pyarrow's reader fails, or newer `datasets`
 * turns the column into JSON), an empty object (Arrow has no empty struct), and objects at one path
 * with different keys (older `datasets` adds the missing keys as null), except under `mapPaths`, whose
 * keys are names (their values are compared with each other as `path.*`). Iterative, `maxDepth` deep.
 */
export function arrowProblems(lines: readonly unknown[], mapPaths: readonly string[] = [], maxDepth = 32): string[] {
  const types = new Map<string, Set<string>>();
  const keySets = new Map<string, string>();
  const problems = new Set<string>();
  for (const line of lines) {
    const stack: [unknown, string, number][] = [[line, '', 0]];
    while (stack.length) {
      const [v, path, depth] = stack.pop()!;
      if (v === null || depth > maxDepth) continue;
      const type = Array.isArray(v) ? 'array' : typeof v;
      if (!types.has(path)) types.set(path, new Set());
      types.get(path)!.add(type);
      if (Array.isArray(v)) for (const x of v) stack.push([x, `${path}[]`, depth + 1]);
      else if (type === 'object') {
        const keys = Object.keys(v as object);
        if (!keys.length) problems.add(`${path || '(row)'}: an empty object`);
        const isMap = mapPaths.includes(path);
        if (!isMap) {
          const set = JSON.stringify([...keys].sort());
          if (keySets.has(path) && keySets.get(path) !== set) problems.add(`${path || '(row)'}: different keys in different rows`);
          keySets.set(path, set);
        }
        for (const k of keys) stack.push([(v as Record<string, unknown>)[k], isMap ? `${path}.*` : path ? `${path}.${k}` : k, depth + 1]);
      }
    }
  }
  for (const [path, set] of types) if (set.size > 1) problems.add(`${path || '(row)'}: ${[...set].sort().join(' and ')} in different rows`);
  return [...problems].sort();
}
