import type { PROMPT_VERSIONS } from './prompts.js';

/**
 * A fixed text of a stage's prompt that says what follows it: what a scripted answer routes on
 * (`match`, `matchAny`, `matchLast` in docs/scripted-model.md) and what docs/stages.md lists for
 * each model stage. Every marker starts a line of a message of its role; a stage's markers are
 * listed in the order they first appear. test/unit/docs/stage-protocol.test.ts builds every
 * prompt from a small fixture and finds each marker in it, so a prompt cannot lose one unnoticed.
 */
export interface PromptMarker {
  /** The text exactly as it appears, at the start of a line. */
  readonly text: string;
  /** The role of the message that holds it. */
  readonly in: 'system' | 'user';
  /** What follows it. */
  readonly then: string;
  /** Set when only some requests of the stage have it: when. */
  readonly when?: string;
}

/** `Environment: <summary>` and `Introduction: …`, the first lines of every synthesis prompt from skeleton.state on. */
const DESCRIPTION: readonly PromptMarker[] = [
  { text: 'Environment: ', in: 'user', then: "the environment's summary (its short label, e.g. `Library circulation system`)" },
  { text: 'Introduction: ', in: 'user', then: 'its introduction' },
  { text: 'Example task: ', in: 'user', then: 'the task it was mined from', when: 'the description has a task' },
];

/**
 * The last line of the user message of a Python run's prompts (`envfleet synth --language python`),
 * `Language: Python (an EnvScaler-style class: the state is the instance attributes)`: what a model (or a
 * scripted answer) routes on to answer in Python. JavaScript prompts have no such line.
 */
export const PYTHON_MARKER: PromptMarker = {
  text: 'Language: Python',
  in: 'user',
  then: 'the rest of the line, ` (an EnvScaler-style class: the state is the instance attributes)`: the answer is Python; it is the last line of the message',
  when: 'the environment is Python (`envfleet synth --language python`, or imported from EnvScaler)',
};

/** JSON values in the prompts are indented by one space (several lines) unless said "compact". */
export const PROMPT_MARKERS = {
  'mine.judge': [{ text: 'Task: ', in: 'user', then: 'the source task' }],
  'mine.topic': [{ text: 'Task: ', in: 'user', then: 'the source task' }, PYTHON_MARKER],
  'skeleton.state': [...DESCRIPTION, PYTHON_MARKER],
  'skeleton.operations': [
    ...DESCRIPTION,
    { text: 'Entities: ', in: 'user', then: 'the entities (JSON)' },
    { text: 'Rules: ', in: 'user', then: 'the rules (a JSON list)' },
    { text: 'State schema: ', in: 'user', then: 'the JSON Schema of `this.state`' },
    PYTHON_MARKER,
  ],
  'skeleton.method': [
    ...DESCRIPTION,
    { text: 'Class: ', in: 'user', then: 'the class name' },
    { text: 'Rules: ', in: 'user', then: 'the rules (a JSON list)' },
    { text: 'State schema: ', in: 'user', then: 'the JSON Schema of `this.state`' },
    { text: 'All operations: ', in: 'user', then: 'every operation name, comma-separated' },
    { text: 'Write the method for operation ', in: 'user', then: '`<name>: <the operation as JSON>`' },
    PYTHON_MARKER,
    {
      text: 'That method does not work: ',
      in: 'user',
      then: 'what is wrong, then `Write it again, fixing this, in the same JSON format.` (after the previous method and its helpers as an assistant message)',
      when: 'skeleton.assemble asks again: the method was missing or did not load, or the class did not',
    },
  ],
  'check.config': [
    { text: 'Environment: ', in: 'user', then: "the environment's summary" },
    { text: 'Introduction: ', in: 'user', then: 'its introduction' },
    { text: 'Rules: ', in: 'user', then: 'the rules (a JSON list)' },
    { text: 'State schema: ', in: 'user', then: 'the JSON Schema of `this.state`' },
    { text: 'Class source (for the shape the methods expect):', in: 'user', then: 'on the next lines, the assembled class' },
    PYTHON_MARKER,
  ],
  'check.probe.tester': [
    { text: 'Environment: ', in: 'system', then: '`<summary>: <introduction>`' },
    { text: 'Tools: ', in: 'system', then: 'every tool as JSON: name, description, parameters' },
    { text: 'Tests so far:', in: 'user', then: 'a table `| Tool | Total | Positive | Negative | Pass | Warning | Fail |`, one row per tool' },
    { text: 'Current state:', in: 'user', then: 'on the next line, the state before this call (compact JSON), then what to do next' },
  ],
  'check.probe.checker': [
    { text: 'Environment: ', in: 'user', then: "the environment's summary" },
    { text: 'Rules: ', in: 'user', then: 'the rules (a JSON list)' },
    { text: 'Tool: ', in: 'user', then: 'the operation (JSON: name, kind, description, parameters)' },
    { text: 'Method source:', in: 'user', then: "on the next lines, the method's source" },
    { text: 'Case type: ', in: 'user', then: '`positive` or `negative`' },
    { text: 'Arguments: ', in: 'user', then: 'the arguments of the call (JSON)' },
    { text: 'Result: ', in: 'user', then: 'what the method returned (JSON), e.g. `{"success": false, "error": …}`' },
    { text: 'Runtime error: ', in: 'user', then: "the call's runtime error code", when: 'the call ended with a runtime error' },
    { text: 'State before: ', in: 'user', then: 'the state before the call (compact JSON)' },
    { text: 'Diff: ', in: 'user', then: 'what the call changed (JSON)' },
  ],
  'check.repair': [
    { text: 'Environment: ', in: 'user', then: "the environment's summary" },
    { text: 'Class: ', in: 'user', then: 'the class name' },
    { text: 'Rules: ', in: 'user', then: 'the rules (a JSON list)' },
    { text: 'State schema: ', in: 'user', then: 'the JSON Schema of `this.state`' },
    { text: 'Operation: ', in: 'user', then: 'the operation whose method failed (JSON: name, kind, description, parameters)' },
    { text: 'Current method:', in: 'user', then: 'on the next lines, its source' },
    { text: 'What the checker reported:', in: 'user', then: "one `- <reason>` line per failed probe step of the tool" },
    PYTHON_MARKER,
  ],
} as const satisfies Record<keyof typeof PROMPT_VERSIONS, readonly PromptMarker[]>;
