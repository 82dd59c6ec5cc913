import { z } from 'zod';
import { STAGE_NAMES, type StageName } from '../../config/index.js';
import type { ModelGateway } from '../llm/gateway.js';
import type { Logger } from '../logger.js';
import type { ArtifactStore } from '../store/artifact-store.js';
import { zodFromJsonSchema } from '../util/json-schema.js';

/**
 * A single model call as a unit of work: the gateway's smallest job, used by the demo and for
 * probing an endpoint through the real queues. Text output is stored as is; JSON output is
 * validated against a JSON Schema with the gateway's repair loop.
 */
export const ModelCallInput = z.strictObject({
  runId: z.string().min(1),
  stage: z.enum(STAGE_NAMES as [StageName, ...StageName[]]),
  /** Caller's id for this call (e.g. a source task id); part of the job identity. */
  key: z.string().min(1),
  messages: z
    .array(z.strictObject({ role: z.enum(['system', 'user', 'assistant']), content: z.string() }))
    .min(1),
  output: z.discriminatedUnion('type', [
    z.strictObject({ type: z.literal('text') }),
    z.strictObject({ type: z.literal('json'), schema: z.record(z.string(), z.unknown()) }),
  ]),
});
export type ModelCallInput = z.infer<typeof ModelCallInput>;

export const ModelCallOutput = z.strictObject({
  /** Artifact reference of `{ output, usage, calls }`. */
  ref: z.string(),
  calls: z.number().int().positive(),
  promptTokens: z.number().int().nonnegative(),
  completionTokens: z.number().int().nonnegative(),
});
export type ModelCallOutput = z.infer<typeof ModelCallOutput>;

export interface ModelCallDeps {
  readonly gateway: ModelGateway;
  readonly artifacts: ArtifactStore;
}

export async function runModelCall(
  deps: ModelCallDeps,
  input: ModelCallInput,
  ctx: { id: string; signal?: AbortSignal | undefined; logger?: Logger | undefined },
): Promise<ModelCallOutput> {
  const call = { runId: input.runId, stage: input.stage, signal: ctx.signal, logger: ctx.logger };
  let output: unknown;
  let calls = 1;
  let usage;
  if (input.output.type === 'text') {
    const result = await deps.gateway.chat(call, { messages: input.messages });
    output = result.message.content ?? '';
    usage = result.usage;
  } else {
    const result = await deps.gateway.structured(call, { messages: input.messages, schema: zodFromJsonSchema(input.output.schema) });
    output = result.value;
    calls = result.calls;
    usage = result.usage;
  }
  const ref = await deps.artifacts.put(`model-call/${input.runId}`, ctx.id, { key: input.key, stage: input.stage, output, usage, calls });
  return { ref, calls, promptTokens: usage.promptTokens, completionTokens: usage.completionTokens };
}
