import { z } from 'zod';

/**
 * The JSON each synthesis stage's model must answer. docs/stages.md is generated from these
 * (scripts/gen-stage-docs.ts), so a scripted or real model server can be put behind any stage.
 */

const identifier = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an identifier: letters, digits and _');
const snakeCase = z.string().regex(/^[a-z][a-z0-9_]*$/, 'snake_case: lower-case letters, digits and _');
const jsonSchemaObject = z
  .record(z.string(), z.unknown())
  .refine(s => s['type'] === 'object', { message: 'must be a JSON Schema with "type": "object"' });
const score = z.number().int().min(1).max(10);

export const JudgeOutput = z
  .strictObject({
    needsEnvironment: z.boolean().describe('true when the task needs a stateful, domain-specific environment'),
    reason: z.string().min(1).describe('why, in one or two sentences'),
  })
  .describe('mine.judge');
export type JudgeOutput = z.infer<typeof JudgeOutput>;

export const TopicOutput = z
  .strictObject({
    summary: z.string().min(3).max(120).describe('a short label of the environment, e.g. "Hotel reservation system"'),
    introduction: z.string().min(20).describe('about three sentences on the environment itself: its state, typical operations, scope; not the task'),
    usefulness: score.describe('1–10: breadth of real-world use'),
    modelability: score.describe('1–10: how well it fits one class whose JSON state the methods read and change'),
  })
  .describe('mine.topic');
export type TopicOutput = z.infer<typeof TopicOutput>;

export const StateOutput = z
  .strictObject({
    className: identifier.describe('PascalCase class name of the environment'),
    entities: z
      .array(
        z.strictObject({
          name: z.string().min(1),
          description: z.string().min(1),
          attributes: z.array(z.strictObject({ name: identifier, type: z.string().min(1), description: z.string() })).min(1),
        }),
      )
      .min(1)
      .describe('the entities the state holds'),
    rules: z.array(z.string().min(3)).min(1).describe('constraints every operation must respect'),
    stateSchema: jsonSchemaObject.describe('JSON Schema (type object) of this.state'),
    exampleState: z.record(z.string(), z.unknown()).describe('a small state valid against stateSchema'),
  })
  .describe('skeleton.state');
export type StateOutput = z.infer<typeof StateOutput>;

export const Operation = z.strictObject({
  name: snakeCase.describe('the method and tool name'),
  kind: z.enum(['query', 'state_change']),
  description: z.string().min(5).describe('what the tool does, its errors and the rules it enforces'),
  parameters: jsonSchemaObject.describe('JSON Schema (type object) of the named arguments'),
});
export type Operation = z.infer<typeof Operation>;

export const OperationsOutput = z
  .strictObject({ operations: z.array(Operation).min(2).max(40) })
  .superRefine((value, ctx) => {
    const names = value.operations.map(o => o.name);
    const dup = names.filter((n, i) => names.indexOf(n) !== i);
    if (dup.length) ctx.addIssue({ code: 'custom', path: ['operations'], message: `duplicate operation names: ${[...new Set(dup)].join(', ')}` });
    for (const kind of ['query', 'state_change'] as const) {
      if (!value.operations.some(o => o.kind === kind)) ctx.addIssue({ code: 'custom', path: ['operations'], message: `at least one ${kind} operation is required` });
    }
    if (names.includes('constructor')) ctx.addIssue({ code: 'custom', path: ['operations'], message: '"constructor" is not an operation name' });
  })
  .describe('skeleton.operations');
export type OperationsOutput = z.infer<typeof OperationsOutput>;

export const MethodOutput = z
  .strictObject({
    source: z.string().min(10).describe('the method as it appears in a class body: name({ a, b }) { ... }'),
    helpers: z.array(z.string()).default([]).describe('optional private helper methods (_name(...) { ... }) it uses'),
  })
  .describe('skeleton.method / check.repair');
export type MethodOutput = z.infer<typeof MethodOutput>;

export const ConfigOutput = z
  .strictObject({ state: z.record(z.string(), z.unknown()).describe('a rich initial state valid against the state schema') })
  .describe('check.config');
export type ConfigOutput = z.infer<typeof ConfigOutput>;

export const TesterOutput = z
  .strictObject({
    thought: z.string().describe('what this case tests and why'),
    tool: z.string().min(1).describe('one tool of the environment'),
    arguments: z.record(z.string(), z.unknown()).describe('argument object; keys must be parameters of the tool (values may be invalid in negative cases)'),
    caseType: z.preprocess(v => (typeof v === 'string' ? v.trim().toLowerCase() : v), z.enum(['positive', 'negative'])),
  })
  .describe('check.probe.tester');
export type TesterOutput = z.infer<typeof TesterOutput>;

export const CheckerOutput = z
  .strictObject({
    analysis: z.string().describe('step-by-step reasoning about the call'),
    verdict: z.preprocess(v => (typeof v === 'string' ? v.replace(/[*_`"']/g, '').trim().toLowerCase() : v), z.enum(['pass', 'warning', 'fail'])),
    reason: z.string().describe('for warning or fail: what is wrong and how to fix it; otherwise "no error"'),
  })
  .describe('check.probe.checker');
export type CheckerOutput = z.infer<typeof CheckerOutput>;

export const STAGE_OUTPUTS = {
  'mine.judge': JudgeOutput,
  'mine.topic': TopicOutput,
  'skeleton.state': StateOutput,
  'skeleton.operations': OperationsOutput,
  'skeleton.method': MethodOutput,
  'check.config': ConfigOutput,
  'check.probe.tester': TesterOutput,
  'check.probe.checker': CheckerOutput,
  'check.repair': MethodOutput,
} as const;
