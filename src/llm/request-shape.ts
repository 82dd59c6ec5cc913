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
}

/** The request body for `profile`'s endpoint. Extra body fields come last but never replace a field envfleet sets (refused in the configuration). */
export function shapeChatRequest(profile: Pick<ModelProfile, 'request'>, input: ShapedChatInput): ChatCompletionCreateParamsNonStreaming {
  const shape = profile.request;
  const body: Record<string, unknown> = {
    ...shape.extraBody,
    model: input.model,
    messages: [...input.messages],
    ...(shape.sampling ? { temperature: input.temperature } : {}),
    [shape.tokenParam]: input.maxTokens,
    ...(shape.reasoningEffort ? { reasoning_effort: shape.reasoningEffort } : {}),
    ...(input.tools?.length ? { tools: [...input.tools] } : {}),
    ...(input.toolChoice ? { tool_choice: input.toolChoice } : {}),
    ...(input.responseFormat ? { response_format: input.responseFormat } : {}),
  };
  return body as unknown as ChatCompletionCreateParamsNonStreaming;
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
      json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'throw' });
      delete json['$schema'];
    } catch {
      json = null;
    }
    schemaCache.set(schema, json);
  }
  if (json === null) return null;
  return { type: 'json_schema', json_schema: { name: name.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 64), schema: json, strict: false } };
}
