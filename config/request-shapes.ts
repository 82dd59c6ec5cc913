/**
 * How a chat request is shaped for an endpoint: which token parameter it takes, whether it accepts
 * sampling parameters, reasoning effort, extra body fields, whether it enforces a JSON Schema on the
 * answer, and how its model writes tool calls. Chosen per model profile (ENVFLEET_MODELS_FILE), from
 * a preset and/or single fields. Documented in docs/configuration.md ("Request shapes").
 */
import { z } from 'zod';

/** How a model's tool calls arrive: in `message.tool_calls` (native), or written in the text in one of these formats. */
export const TOOL_CALL_FORMATS = ['native', 'hermes', 'llama3', 'mistral', 'json', 'auto'] as const;
export type ToolCallFormat = (typeof TOOL_CALL_FORMATS)[number];

/** What is sent as `tool_choice` with the tools of a model whose tool calls arrive as text (RequestShape.textToolChoice). */
export const TEXT_TOOL_CHOICES = ['none', 'omit'] as const;
export type TextToolChoice = (typeof TEXT_TOOL_CHOICES)[number];

export const REASONING_EFFORTS = ['minimal', 'low', 'medium', 'high'] as const;
export type ReasoningEffort = (typeof REASONING_EFFORTS)[number];

/** Body fields envfleet sets itself: extraBody may not replace them. */
export const RESERVED_BODY_FIELDS = ['model', 'messages', 'tools', 'tool_choice', 'response_format', 'max_tokens', 'max_completion_tokens', 'temperature', 'reasoning_effort', 'logprobs', 'return_token_ids', 'seed', 'stream', 'n'] as const;

export interface RequestShape {
  /** The preset it started from, or null. */
  readonly preset: RequestPresetName | null;
  /** `max_tokens` (most servers) or `max_completion_tokens` (OpenAI's reasoning models, newer OpenAI models). */
  readonly tokenParam: 'max_tokens' | 'max_completion_tokens';
  /** Whether `temperature` is sent (OpenAI's reasoning models refuse it). */
  readonly sampling: boolean;
  /** Sent as `reasoning_effort` when set. */
  readonly reasoningEffort: ReasoningEffort | null;
  /** Added to every request body (vLLM/SGLang: `chat_template_kwargs`, `top_k`, guided decoding options). */
  readonly extraBody: Readonly<Record<string, unknown>>;
  /** `json_schema`: structured stages send their schema as `response_format: {type: "json_schema"}`; `prompt`: the schema is only described in the prompt. */
  readonly structuredOutput: 'json_schema' | 'prompt';
  readonly toolCallFormat: ToolCallFormat;
  /**
   * With a text toolCallFormat, the `tool_choice` sent with the tools: `none` (vLLM without a tool-call parser refuses
   * the default "auto", and still renders the tools into the prompt under "none"), or `omit` (SGLang renders no tools
   * under "none"; left out, its default "auto" renders them, and without --tool-call-parser nothing parses the text).
   */
  readonly textToolChoice: TextToolChoice;
  /** Ask for the log-probability of every sampled token (`logprobs: true`). */
  readonly logprobs: boolean;
  /** Ask for the token ids of the prompt and the completion (vLLM: `return_token_ids: true`). */
  readonly returnTokenIds: boolean;
  /** Send a seed with each request that has one (a rollout: one seed per episode, derived from its id, recorded with it). */
  readonly seed: boolean;
  /**
   * Send the earlier assistant turns' `reasoning_content` back with the conversation. Off by default: it is what
   * chat templates drop anyway, and some APIs refuse it (DeepSeek's reasoner answers 400); on for a model that must
   * see its own earlier reasoning between tool calls (Kimi K2's thinking mode).
   */
  readonly sendReasoning: boolean;
  /**
   * The field the earlier turns' reasoning is sent in when `sendReasoning` is on: `reasoning_content` (DeepSeek's
   * convention: Moonshot's Kimi API, SGLang, vLLM before 0.16) or `reasoning` (vLLM from 0.16, which reads only that
   * one on the messages it is sent and drops `reasoning_content` without a word; the `vllm` preset's).
   */
  readonly reasoningField: ReasoningField;
}

/** The message field an earlier turn's reasoning is sent back in (RequestShape.reasoningField). */
export const REASONING_FIELDS = ['reasoning_content', 'reasoning'] as const;
export type ReasoningField = (typeof REASONING_FIELDS)[number];

type Fields = Omit<RequestShape, 'preset'>;

/** What envfleet sends without a preset: what it always sent. */
export const DEFAULT_REQUEST_SHAPE: Fields = { tokenParam: 'max_tokens', sampling: true, reasoningEffort: null, extraBody: {}, structuredOutput: 'prompt', toolCallFormat: 'native', textToolChoice: 'none', logprobs: false, returnTokenIds: false, seed: false, sendReasoning: false, reasoningField: 'reasoning_content' };

export const REQUEST_PRESETS = {
  /** OpenAI chat models (gpt-4o, gpt-4.1): max_completion_tokens, sampling, JSON Schema answers, native tool calls. */
  'openai-chat': { tokenParam: 'max_completion_tokens', sampling: true, structuredOutput: 'json_schema' },
  /** OpenAI reasoning models (o-series, GPT-5): max_completion_tokens, no temperature. */
  'openai-reasoning': { tokenParam: 'max_completion_tokens', sampling: false, structuredOutput: 'json_schema' },
  /** vLLM's OpenAI server: max_tokens, sampling, guided decoding through response_format; native tool calls need --enable-auto-tool-choice and a --tool-call-parser (else set toolCallFormat); reasoning sent back as `reasoning` (vLLM ≥ 0.16). */
  vllm: { tokenParam: 'max_tokens', sampling: true, structuredOutput: 'json_schema', reasoningField: 'reasoning' },
  /** SGLang's OpenAI server: as vLLM (native tool calls need --tool-call-parser); text tool calls without tool_choice, which under "none" would hide the tools. */
  sglang: { tokenParam: 'max_tokens', sampling: true, structuredOutput: 'json_schema', textToolChoice: 'omit' },
  /** Ollama's /v1 API: max_tokens, sampling, response_format json_schema (Ollama ≥ 0.5). */
  ollama: { tokenParam: 'max_tokens', sampling: true, structuredOutput: 'json_schema' },
} as const satisfies Record<string, Partial<Fields>>;
export type RequestPresetName = keyof typeof REQUEST_PRESETS;
export const REQUEST_PRESET_NAMES = Object.keys(REQUEST_PRESETS) as [RequestPresetName, ...RequestPresetName[]];

/** The request-shape fields of a profile in ENVFLEET_MODELS_FILE (all optional). */
export const RequestShapeFields = {
  preset: z.enum(REQUEST_PRESET_NAMES).optional(),
  tokenParam: z.enum(['max_tokens', 'max_completion_tokens']).optional(),
  sampling: z.boolean().optional(),
  reasoningEffort: z.enum(REASONING_EFFORTS).optional(),
  extraBody: z
    .record(z.string(), z.unknown())
    .refine(body => !Object.keys(body).some(k => (RESERVED_BODY_FIELDS as readonly string[]).includes(k)), {
      error: issue => `extraBody may not set ${Object.keys(issue.input as object).filter(k => (RESERVED_BODY_FIELDS as readonly string[]).includes(k)).join(', ')}: envfleet sets those itself (use tokenParam, sampling, reasoningEffort, structuredOutput or the profile's temperature/maxTokens)`,
    })
    .optional(),
  structuredOutput: z.enum(['json_schema', 'prompt']).optional(),
  toolCallFormat: z.enum(TOOL_CALL_FORMATS).optional(),
  textToolChoice: z.enum(TEXT_TOOL_CHOICES).optional(),
  logprobs: z.boolean().optional(),
  returnTokenIds: z.boolean().optional(),
  seed: z.boolean().optional(),
  sendReasoning: z.boolean().optional(),
  reasoningField: z.enum(REASONING_FIELDS).optional(),
};

type FileFields = { [K in keyof typeof RequestShapeFields]?: z.infer<(typeof RequestShapeFields)[K]> };

/** One layer's fields: its preset's, then its own. */
function layer(entry: FileFields | undefined): Partial<Fields> & { preset?: RequestPresetName } {
  if (!entry) return {};
  const { preset, ...own } = entry;
  const defined = Object.fromEntries(Object.entries(own).filter(([, v]) => v !== undefined)) as Partial<Fields>;
  return { ...(preset ? { preset, ...REQUEST_PRESETS[preset] } : {}), ...defined };
}

/** The shape of a stage's requests: the defaults, then the default profile's preset and fields, then the stage's preset and fields. */
export function resolveRequestShape(defaultEntry: FileFields | undefined, stageEntry: FileFields | undefined): RequestShape {
  const merged = { ...DEFAULT_REQUEST_SHAPE, preset: null, ...layer(defaultEntry), ...layer(stageEntry) };
  return {
    preset: merged.preset ?? null,
    tokenParam: merged.tokenParam,
    sampling: merged.sampling,
    reasoningEffort: merged.reasoningEffort ?? null,
    // Merged, the stage's keys over the default's; a stage removes an inherited key by setting it to null.
    extraBody: Object.fromEntries(Object.entries({ ...(layer(defaultEntry).extraBody ?? {}), ...(layer(stageEntry).extraBody ?? {}) }).filter(([, v]) => v !== null)),
    structuredOutput: merged.structuredOutput,
    toolCallFormat: merged.toolCallFormat,
    textToolChoice: merged.textToolChoice,
    logprobs: merged.logprobs,
    returnTokenIds: merged.returnTokenIds,
    seed: merged.seed,
    sendReasoning: merged.sendReasoning,
    reasoningField: merged.reasoningField,
  };
}
