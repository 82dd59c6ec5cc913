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

/** OpenAI chat fine-tuning (with tools): {messages, tools?, parallel_tool_calls?}. */
export const OpenAIFineTuneLine = z
  .object({
    messages: z
      .array(
        z.discriminatedUnion('role', [
          z.object({ role: z.literal('system'), content: z.string() }),
          z.object({ role: z.literal('user'), content: z.string() }),
          z.object({
            role: z.literal('assistant'),
            content: z.string().nullable().optional(),
            tool_calls: z
              .array(z.object({ id: z.string().min(1), type: z.literal('function'), function: z.object({ name: z.string().min(1), arguments: z.string() }) }))
              .optional(),
            weight: z.union([z.literal(0), z.literal(1)]).optional(),
          }),
          z.object({ role: z.literal('tool'), tool_call_id: z.string().min(1), content: z.string() }),
        ]),
      )
      .min(2),
    tools: z.array(z.object({ type: z.literal('function'), function: z.object({ name: z.string(), description: z.string().optional(), parameters: z.record(z.string(), z.unknown()).optional() }) })).optional(),
    parallel_tool_calls: z.boolean().optional(),
  })
  .superRefine((line, ctx) => {
    if (!line.messages.some(m => m.role === 'assistant')) ctx.addIssue({ code: 'custom', message: 'needs at least one assistant message' });
    const open = new Set<string>();
    for (const m of line.messages) {
      if (m.role === 'assistant') {
        if (!m.content && !m.tool_calls?.length) ctx.addIssue({ code: 'custom', message: 'an assistant message needs content or tool_calls' });
        for (const c of m.tool_calls ?? []) open.add(c.id);
      }
      if (m.role === 'tool' && !open.has(m.tool_call_id)) ctx.addIssue({ code: 'custom', message: `tool message answers unknown call ${m.tool_call_id}` });
    }
  });

/** LlamaFactory ShareGPT: human/observation at even positions, gpt/function_call at odd ones. */
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
        if (!parsesAsJson(turn.value)) ctx.addIssue({ code: 'custom', message: `function_call ${i} is not JSON` });
        else {
          const v = JSON.parse(turn.value) as unknown;
          const calls = Array.isArray(v) ? v : [v];
          for (const c of calls) if (!c || typeof c !== 'object' || typeof (c as { name?: unknown }).name !== 'string' || !('arguments' in c)) ctx.addIssue({ code: 'custom', message: `function_call ${i} needs name and arguments` });
        }
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
  mean: z.number().min(0).max(1),
  std: z.number().min(0),
  passAt1: z.number().min(0).max(1),
  passAtK: z.boolean(),
  trajectoryIds: z.array(z.string()),
});
