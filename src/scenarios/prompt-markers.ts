import { PYTHON_MARKER, type PromptMarker } from '../synthesis/prompt-markers.js';
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
    PYTHON_MARKER,
    {
      text: 'State shape',
      in: 'user',
      then: "`(the class instantiated with an empty config; each key is an instance attribute): <compact JSON>`, or `: unknown (…)` with why",
      when: 'a Python environment whose state schema says nothing (imported from EnvScaler): the shape comes from a probe of the class',
    },
    { text: 'Class source (the attributes its methods read and change):', in: 'user', then: 'on the next lines, the class', when: 'the state shape is probed (see `State shape`)' },
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
    { ...PYTHON_MARKER, then: `${PYTHON_MARKER.then}: \`def check_func(final_state)\`; the initial state shown is the instance's attributes as the runtime hands them over` },
  ],
} as const satisfies Record<keyof typeof SCENARIO_PROMPT_VERSIONS, readonly PromptMarker[]>;
