import { z } from 'zod';
import type { EnvironmentRecord } from '../synthesis/types.js';
import type { Operation } from '../synthesis/schemas.js';
import type { LineProblem } from '../synthesis/inputs.js';
import { readFile } from 'node:fs/promises';
import { InputFileError } from '../sandbox/files.js';

/** A line of environments.jsonl, as much of it as scenario generation needs. */
const EnvironmentLine = z.object({
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
  exampleState: z.record(z.string(), z.unknown()).nullish(),
  testState: z.record(z.string(), z.unknown()).nullish(),
  quality: z.unknown().optional(),
  lineage: z.record(z.string(), z.unknown()).optional(),
});

/**
 * Reads environments.jsonl (the export format) for `envfleet scenarios --environments`. Only kept
 * environments (or lines without a status) are imported; bad lines are reported by number.
 */
export async function readEnvironmentsFile(path: string, runId: string): Promise<{ items: EnvironmentRecord[]; problems: LineProblem[]; skipped: number }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new InputFileError(`${path}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const items: EnvironmentRecord[] = [];
  const problems: LineProblem[] = [];
  let skipped = 0;
  for (const [i, raw] of text.split('\n').entries()) {
    if (!raw.trim()) continue;
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch (err) {
      problems.push({ line: i + 1, problem: `not valid JSON: ${(err as Error).message}` });
      continue;
    }
    const r = EnvironmentLine.safeParse(json);
    if (!r.success) {
      problems.push({ line: i + 1, problem: r.error.issues.slice(0, 4).map(x => `${x.path.join('.') || '(line)'}: ${x.message}`).join('; ') });
      continue;
    }
    const e = r.data;
    if (e.status !== undefined && e.status !== 'kept') {
      skipped += 1;
      continue;
    }
    const kinds = new Map((e.operations ?? []).map(o => [o.name, o.kind]));
    const operations: Operation[] = e.tools.map(t => ({
      name: t.function.name,
      kind: kinds.get(t.function.name) ?? (/^(get|list|find|search|show|view|check|lookup)_/.test(t.function.name) ? 'query' : 'state_change'),
      description: t.function.description ?? t.function.name,
      parameters: t.function.parameters ?? { type: 'object' },
    }));
    items.push({
      id: e.id,
      runId,
      status: 'kept',
      description: { summary: e.summary, introduction: e.introduction, ...(e.exampleTask ? { task: e.exampleTask } : {}) },
      state: { className: e.className, entities: (e.entities ?? []) as never, rules: e.rules ?? [], stateSchema: e.stateSchema, exampleState: e.exampleState ?? {} },
      className: e.className,
      operations,
      source: e.source,
      tools: e.tools,
      ...(e.testState ? { testState: e.testState } : {}),
      failure: null,
      lineage: { runId, sourceTaskId: null, models: {}, prompts: {}, createdAt: new Date().toISOString(), ...(e.lineage ? { imported: e.lineage } : {}) },
    });
  }
  return { items, problems, skipped };
}
