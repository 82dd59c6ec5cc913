import { z } from 'zod';

/** The language an environment or a check is written in; absent means JavaScript (data written before Python existed). */
export const CodeLanguage = z.enum(['js', 'python']);
export type CodeLanguage = z.infer<typeof CodeLanguage>;

const JS_IDENTIFIER = /^[A-Za-z_$][\w$]*$/;
/** ASCII only: the runtime looks names up with getattr and passes arguments as keywords. */
const PYTHON_IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** An OpenAI function tool: `{type: "function", function: {name, description?, parameters}}`. */
export const FunctionTool = z.object({
  type: z.literal('function'),
  function: z.object({
    name: z.string().regex(JS_IDENTIFIER, "an identifier of ASCII letters, digits and _ ($ too in JavaScript), not starting with a digit: the method name, which is also the tool's name the model calls (model APIs take ASCII tool names only)"),
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
  }),
});
export type FunctionTool = z.infer<typeof FunctionTool>;

/** What the runtime needs of an environment bundle (the full bundle has more; see docs/formats.md). */
export const EnvironmentCode = z
  .object({
    name: z.string().min(1),
    className: z.string().regex(JS_IDENTIFIER, 'an identifier of ASCII letters, digits and _ ($ too in JavaScript), not starting with a digit'),
    source: z.string().min(1),
    tools: z.array(FunctionTool).readonly(),
    language: CodeLanguage.optional(),
  })
  .superRefine((code, ctx) => {
    if (code.language !== 'python') return;
    // (A name that is no identifier at all was refused above, once.)
    if (JS_IDENTIFIER.test(code.className) && !PYTHON_IDENTIFIER.test(code.className)) {
      ctx.addIssue({ code: 'custom', path: ['className'], message: 'a Python identifier (ASCII letters, digits and _, not starting with a digit) for a Python environment' });
    }
    code.tools.forEach((tool, i) => {
      if (JS_IDENTIFIER.test(tool.function.name) && !PYTHON_IDENTIFIER.test(tool.function.name)) {
        ctx.addIssue({ code: 'custom', path: ['tools', i, 'function', 'name'], message: 'a Python identifier (ASCII letters, digits and _, not starting with a digit) for a Python environment: no $' });
      }
    });
  });
export type EnvironmentCode = z.infer<typeof EnvironmentCode>;

/**
 * `check` is `function check(finalState, initialState)` in JavaScript, `def check_func(final_state)` in Python (initial_state is a global).
 * `episode: true` (Python only): the check also reads the global `episode` ({messages, turn_states}: the agent's transcript, and the
 * state at the end of each scripted user turn or null), so it runs after the episode rather than inside the session (docs/formats.md).
 */
export const CheckSpec = z.object({ item: z.string(), check: z.string().min(1), language: CodeLanguage.optional(), episode: z.literal(true).optional() });
export type CheckSpec = z.infer<typeof CheckSpec>;

/** The language of an environment or a check: JavaScript unless it says Python. */
export const languageOf = (code: { readonly language?: CodeLanguage | undefined }): CodeLanguage => code.language ?? 'js';

export const ToolCall = z.object({ tool: z.string().min(1), arguments: z.unknown().default({}) });
export type ToolCall = z.infer<typeof ToolCall>;
