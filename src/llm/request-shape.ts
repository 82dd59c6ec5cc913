/**
 * The body of a chat request as a profile's request shape says (config/request-shapes.ts): the token
 * parameter the endpoint takes, sampling parameters only where accepted, reasoning effort, extra body
 * fields, and a stage's schema as `response_format: json_schema` where the endpoint enforces it. The
 * gateway and `envfleet doctor` build requests here and nowhere else.
 */
import type { ChatCompletionCreateParamsNonStreaming, ChatCompletionMessageParam, ChatCompletionTool, ChatCompletionToolChoiceOption } from 'openai/resources/chat/completions';
import { z } from 'zod';
import type { ModelProfile } from '../../config/index.js';

export interface ShapedChatInput {
  readonly model: string;
  readonly messages: readonly ChatCompletionMessageParam[];
  readonly temperature: number;
  readonly maxTokens: number;
  readonly tools?: readonly ChatCompletionTool[] | undefined;
  readonly toolChoice?: ChatCompletionToolChoiceOption | undefined;
  readonly responseFormat?: ChatCompletionCreateParamsNonStreaming['response_format'] | undefined;
  /** Sent as `seed` when the profile's shape says so. */
  readonly seed?: number | undefined;
}

/**
 * The copies of each message with its reasoning taken out or renamed, kept per message: an episode sends its earlier
 * messages again with every turn, and the gateway remembers each message object's digest and text (a new copy each
 * turn would be hashed and written again).
 */
const reasoningCopies = { dropped: new WeakMap<object, object>(), renamed: new WeakMap<object, object>() };

/**
 * A message without its `reasoning_content` (`dropped`), or with it as `reasoning` (`renamed`: vLLM ≥ 0.16 reads only
 * that one); the same object when it has none, the same copy every time.
 */
function reasoningAs<M>(m: M, how: keyof typeof reasoningCopies): M {
  if (m === null || typeof m !== 'object' || !('reasoning_content' in m)) return m;
  const copies = reasoningCopies[how];
  const known = copies.get(m);
  if (known) return known as M;
  const { reasoning_content: reasoning, ...rest } = m as M & { reasoning_content?: unknown };
  const copy = how === 'dropped' ? rest : { ...rest, reasoning };
  copies.set(m, copy);
  return copy as M;
}

/**
 * The `tool_choice` a request with tools gets when its caller names none: none for native tool calls (the endpoint's
 * default, "auto"); for calls that come as text, served without a tool-call parser, "none" (vLLM refuses its default
 * "auto" there, and still renders the tools into the prompt under "none"), or no tool_choice at all where the profile
 * says `textToolChoice: omit` (SGLang renders no tools under "none").
 */
export function defaultToolChoice(shape: Pick<ModelProfile['request'], 'toolCallFormat' | 'textToolChoice'>, hasTools: boolean): 'none' | undefined {
  return hasTools && shape.toolCallFormat !== 'native' && shape.textToolChoice === 'none' ? 'none' : undefined;
}

/** The request body for `profile`'s endpoint. Extra body fields come last but never replace a field envfleet sets (refused in the configuration). */
export function shapeChatRequest(profile: Pick<ModelProfile, 'request'>, input: ShapedChatInput): ChatCompletionCreateParamsNonStreaming {
  const shape = profile.request;
  const body: Record<string, unknown> = {
    ...shape.extraBody,
    model: input.model,
    // An earlier turn's reasoning stays in the transcript (the trajectory keeps it) but is sent only when the profile asks.
    messages: !shape.sendReasoning
      ? input.messages.map(m => reasoningAs(m, 'dropped'))
      : shape.reasoningField === 'reasoning'
        ? input.messages.map(m => reasoningAs(m, 'renamed'))
        : [...input.messages],
    ...(shape.sampling ? { temperature: input.temperature } : {}),
    [shape.tokenParam]: input.maxTokens,
    ...(shape.reasoningEffort ? { reasoning_effort: shape.reasoningEffort } : {}),
    ...(shape.logprobs ? { logprobs: true } : {}),
    ...(shape.returnTokenIds ? { return_token_ids: true } : {}),
    ...(shape.seed && input.seed !== undefined ? { seed: input.seed } : {}),
    ...(input.tools?.length ? { tools: [...input.tools] } : {}),
    ...(input.toolChoice ? { tool_choice: input.toolChoice } : {}),
    ...(input.responseFormat ? { response_format: input.responseFormat } : {}),
  };
  return body as unknown as ChatCompletionCreateParamsNonStreaming;
}

/**
 * zod writes `propertyNames: {type: "string"}` under every record; vLLM's default guided-decoding
 * backend (xgrammar) does not support the keyword and falls back or fails, and it says nothing
 * (keys are strings in JSON anyway). Our own stage schemas only: bounded by their depth.
 */
function withoutPropertyNames(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(withoutPropertyNames);
  if (!node || typeof node !== 'object') return node;
  return Object.fromEntries(Object.entries(node).filter(([k]) => k !== 'propertyNames').map(([k, v]) => [k, withoutPropertyNames(v)]));
}

const schemaCache = new WeakMap<z.ZodType, Record<string, unknown> | null>();

/**
 * A stage schema as `response_format: {type: "json_schema"}` (zod 4's converter; `strict: false`,
 * since OpenAI's strict mode refuses open records such as a state), or null when the schema cannot be
 * written as JSON Schema (the prompt and the repair loop still hold the model to it).
 */
export function jsonSchemaResponseFormat(name: string, schema: z.ZodType): ChatCompletionCreateParamsNonStreaming['response_format'] | null {
  let json = schemaCache.get(schema);
  if (json === undefined) {
    try {
      json = withoutPropertyNames(z.toJSONSchema(schema, { io: 'input', unrepresentable: 'throw' })) as Record<string, unknown>;
      delete json['$schema'];
    } catch {
      json = null;
    }
    schemaCache.set(schema, json);
  }
  if (json === null) return null;
  return { type: 'json_schema', json_schema: { name: name.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 64), schema: json, strict: false } };
}

/** What a trainer needs of one sampled completion to correct for off-policy samples, when the endpoint returned it. */
export interface TokenRecord {
  /** Log-probability of each completion token (`choices[0].logprobs.content[].logprob`), or null. */
  readonly logprobs: readonly number[] | null;
  /** Completion token ids (vLLM `choices[0].token_ids`), or null. */
  readonly tokenIds: readonly number[] | null;
  /** Prompt token ids (vLLM `prompt_token_ids`), or null. */
  readonly promptTokenIds: readonly number[] | null;
}

const numbers = (v: unknown): number[] | null => (Array.isArray(v) && v.every(x => typeof x === 'number') ? (v) : null);

/** The token data of a chat completion body (any of it may be absent: null then), or null when there is none at all. */
export function tokenRecordOf(body: unknown): TokenRecord | null {
  const b = (body ?? {}) as { prompt_token_ids?: unknown; choices?: { logprobs?: { content?: { logprob?: unknown }[] | null } | null; token_ids?: unknown; prompt_token_ids?: unknown }[] };
  const choice = b.choices?.[0];
  const content = choice?.logprobs?.content;
  const logprobs = Array.isArray(content) ? numbers(content.map(c => c?.logprob)) : null;
  const tokenIds = numbers(choice?.token_ids);
  const promptTokenIds = numbers(b.prompt_token_ids) ?? numbers(choice?.prompt_token_ids);
  return logprobs || tokenIds || promptTokenIds ? { logprobs, tokenIds, promptTokenIds } : null;
}

/** Body fields that decide how tokens are sampled (OpenAI's and vLLM/SGLang's extra ones). */
const SAMPLING_FIELDS = ['temperature', 'top_p', 'top_k', 'min_p', 'seed', 'presence_penalty', 'frequency_penalty', 'repetition_penalty', 'reasoning_effort'] as const;

/** The sampling parameters a request body actually carries (what a trainer needs to know a sample was drawn with). */
export function samplingOf(body: ChatCompletionCreateParamsNonStreaming): Record<string, unknown> {
  const b = body as unknown as Record<string, unknown>;
  return Object.fromEntries(SAMPLING_FIELDS.filter(k => b[k] !== undefined).map(k => [k, b[k]]));
}
