import type { PromptMarker } from '../synthesis/prompt-markers.js';
import type { SCENARIO_PROMPT_VERSIONS } from './prompts.js';

/** The environment block that opens the user message of every scenario stage. */
const ENVIRONMENT: readonly PromptMarker[] = [
  { text: 'Environment: ', in: 'user', then: "the environment's summary (its short label)" },
  { text: 'Introduction: ', in: 'user', then: 'its introduction' },
  { text: 'Rules:', in: 'user', then: 'one `- <rule>` line per rule' },
  { text: 'Operations:', in: 'user', then: 'one `<k>. <name> (<query|state_change>): <description>` line per operation' },
];

/** The markers of the scenario stages' prompts (src/scenarios/prompts.ts); see PromptMarker. */
export const SCENARIO_PROMPT_MARKERS = {
  'scenario.state': [
    ...ENVIRONMENT,
    { text: 'State schema: ', in: 'user', then: 'the JSON Schema of the state' },
    { text: 'This is state ', in: 'user', then: '`<k> of <M>; make it different from the others. Focus: <a hint that differs per state>.`' },
  ],
  'scenario.task': [...ENVIRONMENT, { text: 'Initial state:', in: 'user', then: 'on the next line, the initial state (compact JSON)' }],
  'scenario.checklist': [
    ...ENVIRONMENT,
    { text: 'Initial state:', in: 'user', then: 'on the next line, the initial state (compact JSON)' },
    { text: 'Task: ', in: 'user', then: "the task's instruction" },
  ],
  'scenario.check': [
    ...ENVIRONMENT,
    { text: 'State schema: ', in: 'user', then: 'the JSON Schema of the state' },
    { text: 'Initial state:', in: 'user', then: 'on the next line, the initial state (compact JSON)' },
    { text: 'Task: ', in: 'user', then: "the task's instruction" },
    { text: 'Checklist item: ', in: 'user', then: 'the one item this function checks, e.g. `Has device D-7 located in room 12`' },
  ],
} as const satisfies Record<keyof typeof SCENARIO_PROMPT_VERSIONS, readonly PromptMarker[]>;
