import { z } from 'zod';
import type { ScenarioRecord } from '../scenarios/types.js';

/** A state as Python reads its source's text (`…Json` beside `field`): the JSON text of an object. */
export const jsonObjectText = (field: string) =>
  z.string().refine(t => {
    try {
      const v: unknown = JSON.parse(t);
      return typeof v === 'object' && v !== null && !Array.isArray(v);
    } catch {
      return false;
    }
  }, `must be the JSON text of an object (${field} as Python reads it)`);

/**
 * A line of scenarios.jsonl (the export format, docs/formats.md; written by `scenarioLine` in
 * lines.ts), as much of it as serving a scenario needs. Unknown fields are ignored. The export writes
 * ready scenarios only, without a status; a line that has one says whether it is ready.
 */
export const ScenarioLine = z.object({
  id: z.string().min(1),
  environmentId: z.string().min(1),
  index: z.number().int().min(0),
  status: z.enum(['building', 'ready', 'dropped']).optional(),
  initialState: z.record(z.string(), z.unknown()),
  /** initialState as Python reads its source's text, when it differs (docs/formats.md): a JSON object's text. */
  initialStateJson: jsonObjectText('initialState').optional(),
  task: z.string().nullish(),
  userGoal: z.object({ goal: z.string(), facts: z.array(z.string()) }).nullish(),
  expectedTools: z.array(z.string()).nullish(),
  checklist: z.array(z.object({ item: z.string(), check: z.string(), language: z.enum(['js', 'python']).optional(), episode: z.literal(true).optional() })),
  unscored: z.boolean().optional(),
  script: z
    .object({
      turns: z.array(z.object({ messages: z.array(z.string()), addTools: z.array(z.string()).optional() })).min(1),
      excludedTools: z.array(z.string()).optional(),
      withheldTools: z.array(z.string()).optional(),
      maxStepsPerTurn: z.number().int().positive().optional(),
    })
    .optional(),
  validation: z
    .object({
      onInitialState: z.array(z.object({ item: z.string(), passed: z.boolean() })),
      repairs: z.array(z.object({ item: z.string(), problem: z.string() })),
      verification: z.object({ model: z.string(), tries: z.array(z.object({ reward: z.number().nullable(), termination: z.string() })), solved: z.boolean() }).optional(),
    })
    .nullish(),
  lineage: z
    .object({
      runId: z.string().optional(),
      environmentId: z.string().optional(),
      models: z.record(z.string(), z.string()).optional(),
      prompts: z.record(z.string(), z.string()).optional(),
      createdAt: z.string().optional(),
    })
    .nullish(),
});

export type ScenarioLineValue = z.infer<typeof ScenarioLine>;

/** The scenario record of a line of scenarios.jsonl; `runId` when the line's lineage names no run. */
export function scenarioRecordFromLine(s: ScenarioLineValue, runId: string): ScenarioRecord {
  const run = s.lineage?.runId ?? runId;
  return {
    id: s.id,
    runId: run,
    environmentId: s.environmentId,
    index: s.index,
    status: s.status ?? 'ready',
    initialState: s.initialState,
    ...(s.initialStateJson !== undefined ? { initialStateJson: s.initialStateJson } : {}),
    ...(s.task != null ? { task: s.task } : {}),
    ...(s.userGoal ? { userGoal: s.userGoal } : {}),
    ...(s.expectedTools ? { expectedTools: s.expectedTools } : {}),
    checklistItems: s.checklist.map(c => c.item),
    checklist: s.checklist.map(c => ({ item: c.item, check: c.check, ...(c.language ? { language: c.language } : {}), ...(c.episode ? { episode: true as const } : {}) })),
    ...(s.unscored ? { unscored: true } : {}),
    ...(s.script
      ? {
          script: {
            turns: s.script.turns.map(t => ({ messages: t.messages, ...(t.addTools ? { addTools: t.addTools } : {}) })),
            ...(s.script.excludedTools ? { excludedTools: s.script.excludedTools } : {}),
            ...(s.script.withheldTools ? { withheldTools: s.script.withheldTools } : {}),
            ...(s.script.maxStepsPerTurn ? { maxStepsPerTurn: s.script.maxStepsPerTurn } : {}),
          },
        }
      : {}),
    ...(s.validation
      ? { validation: { onInitialState: s.validation.onInitialState, repairs: s.validation.repairs, ...(s.validation.verification ? { verification: s.validation.verification } : {}) } }
      : {}),
    dropReason: null,
    lineage: {
      runId: run,
      environmentId: s.lineage?.environmentId ?? s.environmentId,
      models: s.lineage?.models ?? {},
      prompts: s.lineage?.prompts ?? {},
      createdAt: s.lineage?.createdAt ?? '',
    },
  };
}
