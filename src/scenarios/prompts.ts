import type { ChatMessage } from '../llm/gateway.js';
import type { EnvironmentRecord } from '../synthesis/types.js';
import { clip, PYTHON_LANGUAGE_LINE } from '../synthesis/prompts.js';

/** Prompts of the scenario stages (the seed's ScenGenerator intent); versions go into lineage. */
export const SCENARIO_PROMPT_VERSIONS = {
  'scenario.state': 'scenario-state-v1',
  'scenario.task': 'scenario-task-v1',
  'scenario.checklist': 'scenario-checklist-v1',
  'scenario.check': 'scenario-check-v1',
} as const;

/**
 * The versions for a Python environment (synthesized with --language python, or imported from EnvScaler):
 * its states are instance attributes and its checks are `check_func(final_state)`.
 */
export const SCENARIO_PYTHON_PROMPT_VERSIONS = {
  ...SCENARIO_PROMPT_VERSIONS,
  'scenario.state': 'scenario-state-py-v1',
  'scenario.check': 'scenario-check-py-v1',
} as const satisfies Record<keyof typeof SCENARIO_PROMPT_VERSIONS, string>;

export const scenarioPromptVersionsFor = (env: Pick<EnvironmentRecord, 'language'>): Readonly<Record<keyof typeof SCENARIO_PROMPT_VERSIONS, string>> =>
  env.language === 'python' ? SCENARIO_PYTHON_PROMPT_VERSIONS : SCENARIO_PROMPT_VERSIONS;

/** Whether the environment's state schema says what the state holds (an imported EnvScaler environment's does not). */
export const schemaDescribesState = (env: Pick<EnvironmentRecord, 'state'>): boolean => {
  const props = (env.state?.stateSchema as { properties?: unknown } | undefined)?.properties;
  return !!props && typeof props === 'object' && Object.keys(props).length > 0;
};

/**
 * What a Python environment's state looks like when its schema does not say (EnvScaler's classes have no
 * schema): the state of the class instantiated with an empty config, probed in the sandbox (`state`), or
 * why that failed (`error`).
 */
export interface ProbedShape {
  readonly state: Record<string, unknown> | null;
  readonly error: string | null;
}

const json = (v: unknown) => JSON.stringify(v, null, 1);

function environment(env: EnvironmentRecord): string {
  const ops = (env.operations ?? []).map((o, i) => `${i + 1}. ${o.name} (${o.kind}): ${o.description}`).join('\n');
  return `Environment: ${env.description.summary}\nIntroduction: ${env.description.introduction}\nRules:\n${(env.state?.rules ?? []).map(r => `- ${r}`).join('\n')}\nOperations:\n${ops}`;
}

/** Different states come from different hints, not only from sampling (the seed sampled one prompt 50 times). */
const STATE_FOCUS = [
  'a quiet day: few records, mostly in their normal states',
  'a busy day: many records, several in unusual states (cancelled, overdue, full, blocked)',
  'edge cases: records at limits (zero counts, maximum values, expired or soon-expiring items)',
  'a mix of new and long-standing records with varied names, dates and amounts',
  'a state where some operations must fail (unpaid balances, missing capacity, conflicting bookings)',
];

/** The lines that tell the model what a Python environment's state is (after `State schema:`). */
function pythonStateLines(env: EnvironmentRecord, shape: ProbedShape | null): string {
  if (env.language !== 'python') return '';
  const lines = [`\n${PYTHON_LANGUAGE_LINE}`];
  if (shape) {
    lines.push(
      shape.state
        ? `State shape (the class instantiated with an empty config; each key is an instance attribute): ${clip(JSON.stringify(shape.state), 4000)}`
        : `State shape: unknown (the class does not instantiate with an empty config: ${shape.error ?? 'no state'})`,
    );
    lines.push(`Class source (the attributes its methods read and change):\n${clip(env.source ?? '', 12000)}`);
  }
  return lines.join('\n');
}

export function scenarioStatePrompt(env: EnvironmentRecord, index: number, total: number, shape: ProbedShape | null = null): ChatMessage[] {
  const python = env.language === 'python';
  return [
    {
      role: 'system',
      content:
        (python
          ? 'You generate initial states (init configs) for a simulated tool environment written as a Python class: the state is a JSON ' +
            'object whose keys are instance attributes of the class, each set on the instance as it is (use exactly the attribute names ' +
            'and record shapes the class uses). '
          : '') +
        'You generate initial states (databases) for a simulated tool environment. The state must match the state schema exactly, ' +
        'respect the rules, and every cross reference (ids) must resolve. Make it realistic and rich (4-10 records per collection), ' +
        'with fictional names, varied statuses, dates and amounts. Answer with one JSON object: {"state": the initial state}.',
    },
    {
      role: 'user',
      content:
        `${environment(env)}\nState schema: ${clip(json(env.state?.stateSchema ?? {}), 8000)}\n` +
        `This is state ${index + 1} of ${total}; make it different from the others. Focus: ${STATE_FOCUS[index % STATE_FOCUS.length]}.${pythonStateLines(env, shape)}`,
    },
  ];
}

export function scenarioTaskPrompt(env: EnvironmentRecord, state: unknown): ChatMessage[] {
  return [
    {
      role: 'system',
      content:
        'You design a task that another agent will carry out with the environment’s tools, starting from the given state. ' +
        'Requirements: realistic and business-relevant; grounded in this state (only existing records, unless the task creates them); ' +
        'achievable with the listed operations; it MUST change the state (no query-only tasks); it needs several query and change calls ' +
        'over several records or conditions; give the identifiers the agent cannot discover, but state goals, not steps; nothing outside ' +
        'the tools (no auto-generated timestamps). Write it twice: as an instruction for an agent that gets the whole task up front, and as ' +
        'a user goal for a conversation in which a simulated user reveals the facts when asked. ' +
        'Answer with one JSON object: {"instruction": string, "userGoal": {"goal": string, "facts": [string]}, "expectedTools": [tool names a solution calls, in order]}.',
    },
    { role: 'user', content: `${environment(env)}\nInitial state:\n${clip(JSON.stringify(state), 12000)}` },
  ];
}

export function scenarioChecklistPrompt(env: EnvironmentRecord, task: string, state: unknown): ChatMessage[] {
  return [
    {
      role: 'system',
      content:
        'You turn a task into a checklist that verifies, from the final state, that the task was done. Items are independent, each ' +
        'starts with "Has …", names exact fields and values, checks one thing, and is verifiable by one boolean expression over the final ' +
        'state (compared with the initial state where the item is about a change). ' +
        'Example: for "Register device D-7 in room 12 and mark it compliant" → {"items": ["Has a device with id D-7", "Has device D-7 ' +
        'located in room 12", "Has device D-7 with compliance status compliant"]}. Answer with one JSON object: {"items": [string]}.',
    },
    { role: 'user', content: `${environment(env)}\nInitial state:\n${clip(JSON.stringify(state), 8000)}\nTask: ${task}` },
  ];
}

/** The seed's check-function prompt (G3), for Python environments: EnvScaler's `check_func(final_state)` with `initial_state` as a global. */
function pythonScenarioCheckPrompt(env: EnvironmentRecord, task: string, state: unknown, item: string): ChatMessage[] {
  return [
    {
      role: 'system',
      content:
        'Write one Python check function for one checklist item: def check_func(final_state): returning True or False (a bool; ' +
        'anything else counts as failed). final_state is the environment\'s final state: a dict of its instance attributes (JSON values: ' +
        'dict, list, str, int, float, bool, None). The initial state, the same shape, is the global initial_state. Follow the field names ' +
        'and formats of the state exactly; for generated ids or timestamps check presence and type, not the value; for explicit target ' +
        'values use strict equality (==); use initial_state only to detect changes ("added" = absent before, present after); check only ' +
        'this item; no mutation, no side effects, no file, network or host access; imports only from the standard library (re, math, ' +
        'datetime, json …); never raise on a missing record (use .get): return False. ' +
        'Answer with one JSON object: {"check": the function source}.\n' +
        'Example for "Has order O-12 with status cancelled": {"check": "def check_func(final_state):\\n    order = final_state.get(\\"orders\\", {}).get(\\"O-12\\")\\n' +
        '    return isinstance(order, dict) and order.get(\\"status\\") == \\"cancelled\\"\\n"}',
    },
    {
      role: 'user',
      content:
        `${environment(env)}\nState schema: ${clip(json(env.state?.stateSchema ?? {}), 6000)}\nInitial state:\n${clip(JSON.stringify(state), 8000)}\nTask: ${task}\nChecklist item: ${item}\n${PYTHON_LANGUAGE_LINE}`,
    },
  ];
}

export function scenarioCheckPrompt(env: EnvironmentRecord, task: string, state: unknown, item: string): ChatMessage[] {
  if (env.language === 'python') return pythonScenarioCheckPrompt(env, task, state, item);
  return [
    {
      role: 'system',
      content:
        'Write one JavaScript check function for one checklist item: function check(finalState, initialState) { ... } returning true or ' +
        'false. Follow the field names and formats of the state exactly; for generated ids or timestamps check presence and type, not ' +
        'the value; for explicit target values use strict equality; use initialState only to detect changes ("added" = absent before, ' +
        'present after); check only this item; no mutation, no side effects, no host APIs; never throw on a missing record: return false. ' +
        'Answer with one JSON object: {"check": the function source}.',
    },
    {
      role: 'user',
      content: `${environment(env)}\nState schema: ${clip(json(env.state?.stateSchema ?? {}), 6000)}\nInitial state:\n${clip(JSON.stringify(state), 8000)}\nTask: ${task}\nChecklist item: ${item}`,
    },
  ];
}
