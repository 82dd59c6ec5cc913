/**
 * The slice of the OpenAI wire protocol the scripted server speaks: request
 * schemas (loose, only the fields it uses are checked), error bodies, and the
 * builders for chat completion / embeddings / model list responses.
 */
import { z } from 'zod';
import type { ModelScript, ScriptedResponse, ScriptedToolCall } from './fixtures.js';

/** Token usage exactly as sent back to the client. */
export interface TokenUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** Body of every error response, in OpenAI's format. */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export function openAIError(message: string, type: string, code: string | null = null, param: string | null = null): OpenAIErrorBody {
  return { error: { message, type, param, code } };
}

/** Model id that is always listed and used in fallback bodies. */
export const DEFAULT_MODEL = 'scripted';
/** `created` timestamp of listed models (fixed, so listings are reproducible). */
const MODEL_CREATED = 1_700_000_000;

const ChatMessage = z.looseObject({ role: z.string(), content: z.unknown().optional() });
export type ChatMessage = z.infer<typeof ChatMessage>;

export const ChatRequest = z.looseObject({
  model: z.string().min(1),
  messages: z.array(ChatMessage).min(1),
  n: z.number().int().min(1).max(128).nullish(),
  tools: z.array(z.unknown()).nullish(),
});
export type ChatRequest = z.infer<typeof ChatRequest>;

export const MAX_EMBEDDING_DIMENSIONS = 8192;

export const EmbeddingsRequest = z.looseObject({
  model: z.string().min(1),
  input: z.union([z.string(), z.array(z.string()).min(1)], {
    error: 'input must be a string or a non-empty array of strings (token arrays are not supported by the scripted server)',
  }),
  dimensions: z.number().int().min(1).max(MAX_EMBEDDING_DIMENSIONS).nullish(),
  encoding_format: z.enum(['float', 'base64']).nullish(),
});
export type EmbeddingsRequest = z.infer<typeof EmbeddingsRequest>;

/** The first zod issue as an OpenAI `invalid_request_error` (param = dotted path). */
export function invalidRequest(error: z.ZodError): OpenAIErrorBody {
  const issue = error.issues[0];
  const param = issue === undefined || issue.path.length === 0 ? null : issue.path.map(String).join('.');
  const message = issue === undefined ? 'Invalid request body.' : `Invalid request: ${param ?? 'body'}: ${issue.message}`;
  return openAIError(message, 'invalid_request_error', null, param);
}

/** Text of a message `content`: a string, or the `text` parts of a content-part array. */
export function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  const texts: string[] = [];
  for (const part of content as unknown[]) {
    if (typeof part === 'object' && part !== null && 'text' in part && typeof part.text === 'string') texts.push(part.text);
  }
  return texts.join('\n');
}

/** Text of the last `user` message, or null when there is none. */
export function lastUserMessage(messages: readonly ChatMessage[]): string | null {
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i];
    if (message?.role === 'user') return contentText(message.content);
  }
  return null;
}

/** `ROLE: CONTENT` of the last message (any role), for `matchLast` rules; tool calls are shown as `tool_call NAME ARGS`. */
export function lastMessageText(messages: readonly ChatMessage[]): string {
  const message = messages.at(-1);
  if (!message) return '';
  const calls = (message as { tool_calls?: { function?: { name?: string; arguments?: string } }[] }).tool_calls ?? [];
  const callText = calls.map(c => ` tool_call ${c.function?.name ?? ''} ${c.function?.arguments ?? ''}`).join('');
  return `${message.role}: ${contentText(message.content) ?? ''}${callText}`;
}

/** Token estimate used for `usage: auto`: ceil(characters / 4). */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

interface OpenAIToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

interface AssistantMessage {
  role: 'assistant';
  content: string | null;
  refusal: null;
  tool_calls?: OpenAIToolCall[];
  reasoning_content?: string;
}

export interface ChatChoice {
  index: number;
  message: AssistantMessage;
  logprobs: null;
  finish_reason: NonNullable<ScriptedResponse['finishReason']>;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: ChatChoice[];
  usage: TokenUsage;
}

function toolCallArguments(call: ScriptedToolCall): string {
  const args = call.arguments ?? {};
  return typeof args === 'string' ? args : JSON.stringify(args);
}

/** Builds one choice; `toolCallId(i)` supplies ids for tool calls that have none in the script. */
export function buildChoice(index: number, response: ScriptedResponse, toolCallId: (callIndex: number) => string): ChatChoice {
  const content = response.content ?? (response.json === undefined ? null : JSON.stringify(response.json));
  const message: AssistantMessage = { role: 'assistant', content, refusal: null };
  if (response.toolCalls !== undefined) {
    message.tool_calls = response.toolCalls.map((call, i) => ({
      id: call.id ?? toolCallId(i),
      type: 'function',
      function: { name: call.name, arguments: toolCallArguments(call) },
    }));
  }
  if (response.reasoning !== undefined) message.reasoning_content = response.reasoning;
  const finishReason = response.finishReason ?? (message.tool_calls === undefined ? 'stop' : 'tool_calls');
  return { index, message, logprobs: null, finish_reason: finishReason };
}

/** Everything the assistant "generated" in a choice, for token estimates. */
function completionText(choice: ChatChoice): string {
  const { message } = choice;
  const calls = (message.tool_calls ?? []).map((call) => call.function.name + call.function.arguments);
  return (message.content ?? '') + (message.reasoning_content ?? '') + calls.join('');
}

/**
 * Usage of a completion. Per choice: the response's own `usage`, else the
 * script default, else estimates. The prompt is counted once (from the first
 * choice); completion tokens are summed over choices.
 */
export function completionUsage(
  request: ChatRequest,
  choices: readonly { choice: ChatChoice; response: ScriptedResponse }[],
  defaults: ModelScript['defaults'],
): TokenUsage {
  const fixed = defaults?.usage === 'auto' ? undefined : defaults?.usage;
  const autoPrompt = estimateTokens(JSON.stringify(request.messages) + (request.tools ? JSON.stringify(request.tools) : ''));
  let promptTokens: number | undefined;
  let completionTokens = 0;
  for (const { choice, response } of choices) {
    const counts = response.usage ?? fixed;
    promptTokens ??= counts?.prompt_tokens ?? autoPrompt;
    completionTokens += counts?.completion_tokens ?? estimateTokens(completionText(choice));
  }
  const prompt = promptTokens ?? autoPrompt;
  return { prompt_tokens: prompt, completion_tokens: completionTokens, total_tokens: prompt + completionTokens };
}

export interface EmbeddingsResponse {
  object: 'list';
  data: { object: 'embedding'; index: number; embedding: number[] | string }[];
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

export interface ModelList {
  object: 'list';
  data: ModelEntry[];
}

export interface ModelEntry {
  id: string;
  object: 'model';
  created: number;
  owned_by: 'envfleet-scripted';
}

/** `scripted`, the script's `models`, then every model named by a rule, without duplicates. */
export function listModels(script: ModelScript): ModelList {
  const ids = new Set<string>([DEFAULT_MODEL, ...(script.models ?? [])]);
  for (const rule of script.rules ?? []) if (rule.model !== undefined) ids.add(rule.model);
  return {
    object: 'list',
    data: [...ids].map((id) => ({ id, object: 'model', created: MODEL_CREATED, owned_by: 'envfleet-scripted' })),
  };
}
