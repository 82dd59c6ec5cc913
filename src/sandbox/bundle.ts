import { z } from 'zod';

/** An OpenAI function tool: `{type: "function", function: {name, description?, parameters}}`. */
export const FunctionTool = z.object({
  type: z.literal('function'),
  function: z.object({
    name: z.string().regex(/^[A-Za-z_$][\w$]*$/, 'a JavaScript identifier (the method name)'),
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
  }),
});
export type FunctionTool = z.infer<typeof FunctionTool>;

/** What the runtime needs of an environment bundle (the full bundle has more; see docs/formats.md). */
export const EnvironmentCode = z.object({
  name: z.string().min(1),
  className: z.string().regex(/^[A-Za-z_$][\w$]*$/, 'a JavaScript identifier'),
  source: z.string().min(1),
  tools: z.array(FunctionTool).readonly(),
  language: z.enum(['js', 'python']).optional(),
});
export type EnvironmentCode = z.infer<typeof EnvironmentCode>;

export const CheckSpec = z.object({ item: z.string(), check: z.string().min(1), language: z.enum(['js', 'python']).optional() });
export type CheckSpec = z.infer<typeof CheckSpec>;

export const ToolCall = z.object({ tool: z.string().min(1), arguments: z.unknown().default({}) });
export type ToolCall = z.infer<typeof ToolCall>;
