import { z } from 'zod';
import type { EnvironmentRecord } from '../synthesis/types.js';
import type { Operation } from '../synthesis/schemas.js';
import { parseLines, type LineProblem } from '../synthesis/inputs.js';
import { jsonObjectText } from './scenarios-file.js';

/**
 * A line of environments.jsonl, as much of it as scenario generation and serving need (a kept
 * environment's line: rejected and failed ones may lack the code). Unknown fields are ignored.
 */
export const EnvironmentLine = z.object({
  id: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only'),
  status: z.string().optional(),
  summary: z.string().min(1),
  introduction: z.string().min(1),
  exampleTask: z.string().nullish(),
  entities: z.array(z.unknown()).nullish(),
  stateSchema: z.record(z.string(), z.unknown()),
  rules: z.array(z.string()).nullish(),
  operations: z.array(z.object({ name: z.string(), kind: z.enum(['query', 'state_change']) })).nullish(),
  tools: z.array(z.object({ type: z.literal('function'), function: z.object({ name: z.string(), description: z.string().optional(), parameters: z.record(z.string(), z.unknown()).optional() }) })).min(1),
  className: z.string().regex(/^[A-Za-z_$][\w$]*$/),
  source: z.string().min(1),
  language: z.enum(['js', 'python']).optional(),
  exampleState: z.record(z.string(), z.unknown()).nullish(),
  testState: z.record(z.string(), z.unknown()).nullish(),
  testStateJson: jsonObjectText('testState').optional(),
  quality: z.unknown().optional(),
  lineage: z.record(z.string(), z.unknown()).optional(),
});

/**
 * Reads environments.jsonl (the export format) for `envfleet scenarios --environments`. Only kept
 * environments (or lines without a status) are imported; bad lines are reported by number.
 */
export async function readEnvironmentsFile(path: string, runId: string): Promise<{ items: EnvironmentRecord[]; problems: LineProblem[]; skipped: number }> {
  const parsed = await parseLines(path, EnvironmentLine);
  const items: EnvironmentRecord[] = [];
  const problems: LineProblem[] = [...parsed.problems];
  let skipped = 0;
  for (const { value: e } of parsed.items) {
    if (e.status !== undefined && e.status !== 'kept') {
      skipped += 1;
      continue;
    }
    items.push(environmentRecordFromLine(e, runId));
  }
  return { items, problems, skipped };
}

export type EnvironmentLineValue = z.infer<typeof EnvironmentLine>;

/** The environment record of a line of environments.jsonl, as run `runId` holds it (the line's own lineage under `lineage.imported`). */
export function environmentRecordFromLine(e: EnvironmentLineValue, runId: string): EnvironmentRecord {
  const kinds = new Map((e.operations ?? []).map(o => [o.name, o.kind]));
  const operations: Operation[] = e.tools.map(t => ({
    name: t.function.name,
    kind: kinds.get(t.function.name) ?? (/^(get|list|find|search|show|view|check|lookup)_/.test(t.function.name) ? 'query' : 'state_change'),
    description: t.function.description ?? t.function.name,
    parameters: t.function.parameters ?? { type: 'object' },
  }));
  return {
    id: e.id,
    runId,
    status: 'kept',
    description: { summary: e.summary, introduction: e.introduction, ...(e.exampleTask ? { task: e.exampleTask } : {}) },
    state: { className: e.className, entities: (e.entities ?? []) as never, rules: e.rules ?? [], stateSchema: e.stateSchema, exampleState: e.exampleState ?? {} },
    className: e.className,
    operations,
    source: e.source,
    ...(e.language === 'python' ? { language: 'python' as const } : {}),
    tools: e.tools,
    ...(e.testState ? { testState: e.testState, ...(e.testStateJson === undefined ? {} : { testStateJson: e.testStateJson }) } : {}),
    failure: null,
    lineage: { runId, sourceTaskId: null, models: {}, prompts: {}, createdAt: new Date().toISOString(), ...(e.lineage ? { imported: e.lineage } : {}) },
  };
}
