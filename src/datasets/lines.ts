import type { ScenarioRecord } from '../scenarios/types.js';
import type { EnvironmentRecord } from '../synthesis/types.js';

/** One line of environments.jsonl (documented field by field in docs/formats.md). */
export function environmentLine(env: EnvironmentRecord) {
  return {
    id: env.id,
    status: env.status,
    name: env.className ?? null,
    summary: env.description.summary,
    introduction: env.description.introduction,
    exampleTask: env.description.task ?? null,
    entities: env.state?.entities ?? null,
    stateSchema: env.state?.stateSchema ?? null,
    rules: env.state?.rules ?? null,
    operations: env.operations?.map(o => ({ name: o.name, kind: o.kind })) ?? null,
    tools: env.tools ?? null,
    className: env.className ?? null,
    source: env.source ?? null,
    language: env.language ?? 'js',
    exampleState: env.state?.exampleState ?? null,
    testState: env.testState ?? null,
    ...(env.testStateJson === undefined ? {} : { testStateJson: env.testStateJson }),
    quality: env.quality
      ? { ...env.quality, history: (env.qualityHistory ?? []).map(q => ({ round: q.round, verdict: q.verdict, notFailRate: q.notFailRate, passRate: q.passRate })) }
      : null,
    assembleRepairs: env.assembleRepairs ?? [],
    failure: env.failure ?? null,
    lineage: env.lineage,
  };
}

/** One line of scenarios.jsonl (docs/formats.md). */
export function scenarioLine(s: ScenarioRecord) {
  return {
    id: s.id,
    environmentId: s.environmentId,
    index: s.index,
    initialState: s.initialState,
    ...(s.initialStateJson === undefined ? {} : { initialStateJson: s.initialStateJson }),
    task: s.task,
    userGoal: s.userGoal,
    expectedTools: s.expectedTools ?? [],
    checklist: s.checklist ?? [],
    ...(s.unscored ? { unscored: true } : {}),
    ...(s.script ? { script: s.script } : {}),
    validation: s.validation ?? null,
    lineage: s.lineage,
  };
}

/** One line of scenarios-dropped.jsonl: a scenario that left the pipeline, with why and what it had (docs/formats.md). */
export function droppedScenarioLine(s: ScenarioRecord) {
  return {
    id: s.id,
    environmentId: s.environmentId,
    index: s.index,
    reason: s.dropReason ?? null,
    task: s.task ?? null,
    // Every item of a written checklist, with its check function once one was written (null before):
    // a scenario dropped while its checks were being written still shows its checklist.
    checklist: s.checklistItems ? s.checklistItems.map((item, i) => ({ item, check: s.checklist?.[i]?.check ?? null })) : (s.checklist ?? null),
    validation: s.validation ?? null,
    lineage: s.lineage,
  };
}
