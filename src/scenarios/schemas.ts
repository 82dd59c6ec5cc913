import { z } from 'zod';

/** The JSON each scenario stage's model must answer (documented in docs/stages.md). */

export const ScenarioStateOutput = z
  .strictObject({ state: z.record(z.string(), z.unknown()).describe('an initial state valid against the environment’s state schema') })
  .describe('scenario.state');
export type ScenarioStateOutput = z.infer<typeof ScenarioStateOutput>;

export const ScenarioTaskOutput = z
  .strictObject({
    instruction: z.string().min(40).describe('the task for the non-conversational mode: goals, not steps, with the identifiers the agent needs'),
    userGoal: z
      .strictObject({
        goal: z.string().min(10).describe('what the simulated user wants, in their words'),
        facts: z.array(z.string().min(1)).min(1).describe('facts the simulated user may reveal when asked (ids, names, amounts)'),
      })
      .describe('the same task for the conversational mode'),
    expectedTools: z.array(z.string().min(1)).min(2).describe('the tools a solution calls, in order (at least one state change)'),
  })
  .describe('scenario.task');
export type ScenarioTaskOutput = z.infer<typeof ScenarioTaskOutput>;

export const ScenarioChecklistOutput = z
  .strictObject({ items: z.array(z.string().min(5)).min(1).max(12).describe('independent, verifiable items, each "Has …", one field each') })
  .describe('scenario.checklist');
export type ScenarioChecklistOutput = z.infer<typeof ScenarioChecklistOutput>;

export const ScenarioCheckOutput = z
  .strictObject({ check: z.string().min(10).describe('JavaScript: function check(finalState, initialState) { ... return true or false; }; for a Python environment, Python: def check_func(final_state): ... return True or False (initial_state is a global)') })
  .describe('scenario.check');
export type ScenarioCheckOutput = z.infer<typeof ScenarioCheckOutput>;

export const SCENARIO_STAGE_OUTPUTS = {
  'scenario.state': ScenarioStateOutput,
  'scenario.task': ScenarioTaskOutput,
  'scenario.checklist': ScenarioChecklistOutput,
  'scenario.check': ScenarioCheckOutput,
} as const;
