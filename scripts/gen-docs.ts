/**
 * Writes the documents generated from the code, so they can never drift from it (a unit test fails
 * when a committed one is out of date):
 * - docs/stages.md: the pipeline (from queues/pipeline.ts) and each model stage's protocol (from
 *   config/model-stages.ts, the prompt markers of src/{synthesis,scenarios,rollouts}/prompt-markers.ts and
 *   the zod answer schemas of src/synthesis/schemas.ts, src/scenarios/schemas.ts and src/rollouts/prompts.ts);
 * - docs/errors.md: every error code (from ERROR_CODES in src/errors.ts), and the environment server's (envServerCodeDocs in src/env-server/errors.ts);
 * - the generated blocks of docs/architecture.md (the stage graph), between their markers.
 *
 *   npx tsx scripts/gen-docs.ts           # rewrite them
 *   npx tsx scripts/gen-docs.ts --check   # exit 1 if one is out of date
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { MODEL_STAGES, MODEL_STAGE_NAMES, type ModelStage } from '../config/model-stages.js';
import type { Edge } from '../queues/define-pipeline.js';
import { ITEMS, PIPELINE, PIPELINE_STAGES, RUN_COUNTERS, STAGES } from '../queues/pipeline.js';
import { envServerCodeDocs } from '../src/env-server/errors.js';
import { type CodeSpec, ERROR_CODES, type ErrorAction } from '../src/errors.js';
import { ROLLOUT_PROMPT_MARKERS } from '../src/rollouts/prompt-markers.js';
import { AGENT_PREFIX, ROLLOUT_PROMPT_VERSIONS, STOP_TOKEN, USER_GREETING, UserSimulatorAnswer } from '../src/rollouts/prompts.js';
import { SCENARIO_PROMPT_MARKERS } from '../src/scenarios/prompt-markers.js';
import { SCENARIO_PROMPT_VERSIONS } from '../src/scenarios/prompts.js';
import { SCENARIO_STAGE_OUTPUTS } from '../src/scenarios/schemas.js';
import { PROMPT_MARKERS, type PromptMarker } from '../src/synthesis/prompt-markers.js';
import { PROMPT_VERSIONS } from '../src/synthesis/prompts.js';
import { STAGE_OUTPUTS } from '../src/synthesis/schemas.js';

/** The model stages that send chat requests (every one but mine.dedup). */
export type ChatStage = { [S in ModelStage]: (typeof MODEL_STAGES)[S]['kind'] extends 'chat' ? S : never }[ModelStage];

/** What each chat stage must answer: a zod schema (rendered as JSON Schema), or, for the policy, words. */
export const STAGE_ANSWERS = { ...STAGE_OUTPUTS, ...SCENARIO_STAGE_OUTPUTS, 'rollout.user': UserSimulatorAnswer } as const;

/** The markers of every chat stage's prompt, in the order they appear. */
export const STAGE_MARKERS: Record<ChatStage, readonly PromptMarker[]> = { ...PROMPT_MARKERS, ...SCENARIO_PROMPT_MARKERS, ...ROLLOUT_PROMPT_MARKERS };

const PROMPT_VERSION_OF: Record<string, string> = { ...PROMPT_VERSIONS, ...SCENARIO_PROMPT_VERSIONS, ...ROLLOUT_PROMPT_VERSIONS };

/** The answer check of skeleton.method and check.repair (src/synthesis/assemble.ts checkMethodSource), in words. */
const METHOD_CHECK =
  'Each answer is checked before it is accepted: a `source` with a line that starts (after indentation) with `import` or `export` and a space, ' +
  'or with `require(` anywhere (spaces before the parenthesis, comments and strings included), is refused with ' +
  '"the method must not use import, export or require: environments have no modules"; otherwise it must parse in the sandbox inside a class ' +
  "body and define a method of the operation's name. A refused answer goes back to the model with the problem, like a schema error.";

const docPath = (name: string) => fileURLToPath(new URL(`../docs/${name}`, import.meta.url));
export const STAGE_DOC_PATH = docPath('stages.md');
export const ERRORS_DOC_PATH = docPath('errors.md');
export const ARCHITECTURE_DOC_PATH = docPath('architecture.md');

/** What each chat stage's request contains, in words (the prompts are in each area's prompts.ts; their markers are listed after this). */
const REQUESTS: Record<ChatStage, string> = {
  'mine.judge': 'system: the criteria of a stateful, domain-specific task with two worked examples; user: the task.',
  'mine.topic': 'system: how to infer the environment, the two scores and two worked examples; user: the task.',
  'skeleton.state': 'system: what to design (entities, rules, JSON Schema of `this.state`, example state) with a worked e-commerce example; user: the description. The example state must be valid against the state schema.',
  'skeleton.operations': 'system: queries and state changes with a worked example; user: the description, entities, rules and state schema. Each operation\'s `parameters` must compile as a JSON Schema.',
  'skeleton.method': `system: the method contract (one object of named arguments, envelope results, never throw, no import, require or host APIs) and a worked example; user: the description, class name, rules, state schema, all operation names and the operation to write. One request per operation, and again from skeleton.assemble for a method that is missing or does not load (with the same stage header), or whose class of its own (the method and its helpers) does not load or instantiate when the assembled class does not (every method when none fails alone: methods that clash together). ${METHOD_CHECK}`,
  'check.config': 'user only: rules for a rich, valid test state; the description, rules, state schema and the assembled class source. The state must match the schema and instantiate in the sandbox.',
  'check.probe.tester': 'system: the tester role (positive and negative cases, balanced coverage) with the environment and its tools; user: a per-tool table of tests so far, the current state and what to do next. Unknown tools and unknown argument keys go back to the tester.',
  'check.probe.checker': 'user only: pass / warning / fail criteria; the environment, rules, the tool, the method source, the case type, the arguments, the result (and runtime error), the state before and the diff. One request per judged probe step.',
  'check.repair': `system: the method contract; user: the environment, class, rules, state schema, the operation, the current method and the checker's reasons. One request per failing tool of a rejected environment with repair rounds left. ${METHOD_CHECK}`,
  'scenario.state': 'system: what a valid, rich initial state is; user: the environment (description, rules, operations), the state schema and which state of how many, with a focus hint that differs per state. The state must match the schema and instantiate in the sandbox; an exact duplicate (canonical JSON) of another state of the environment is dropped.',
  'scenario.task': 'system: task design rules (realistic, grounded in the state, achievable with the tools, must change the state, several calls, goals not steps), asking for both forms; user: the environment and the initial state. `expectedTools` must name existing tools and at least one state change; a task that duplicates another of the environment (normalized text) is dropped.',
  'scenario.checklist': 'system: checklist rules (independent "Has …" items, exact fields and values, one boolean each) with a worked example; user: the environment, the initial state and the task.',
  'scenario.check': 'system: the check-function contract (`function check(finalState, initialState)`, true or false, strict equality for explicit values, presence for generated ids, no mutation, never throw); user: the environment, state schema, initial state, task and one checklist item. One request per checklist item. The function is run in the sandbox on the initial state; a throw, a timeout or a non-boolean goes back to the model with what happened.',
  'rollout.policy':
    'one per agent turn of an episode (`rollout.run`), with the whole conversation so far. System: how to act, which differs by mode, and the environment\'s introduction. ' +
    "Then, non-conversational: one user message, the scenario's instruction as it is; conversational: the simulated user's replies (`rollout.user`) as user messages, as they are. " +
    "The policy's earlier replies are assistant messages (with their `tool_calls`); the result of each call is a `tool` message whose content is the JSON the method returned " +
    '(`{"success": true, …}` or `{"success": false, "error": …}`; arguments that are not JSON come back as an error result too). ' +
    "`tools` lists every tool of the environment; temperature and max tokens are the run's sampling settings; answers are cached only per sample and turn.",
  'rollout.user':
    "conversational mode only: the simulated user's own conversation, kept apart from the agent's. System: how to play the user (reveal facts gradually and only when asked, " +
    `stay within the goal, keep ids exact, end the reply with \`${STOP_TOKEN}\` once the goal is achieved), then the goal and the facts. ` +
    `Then user messages, each \`${AGENT_PREFIX}\` and what the agent said, alternating with the simulator's own earlier answers as assistant messages (the JSON it returned). ` +
    `The first request is sent before the policy is asked anything: its only user message is \`${AGENT_PREFIX}${USER_GREETING}\`, and the answer's reply opens the agent's conversation. ` +
    'After that the simulator is asked once after every agent message without a tool call.',
};

/** What a stage must answer when it is not one JSON object, or what happens to the object (after the JSON Schema). */
const ANSWER_NOTES: Partial<Record<ChatStage, string>> = {
  'rollout.policy':
    "The model answers as a chat model, not with a JSON object. With tool calls — native `tool_calls`, or written in the text in the format the profile's " +
    '`toolCallFormat` names (docs/configuration.md) — every call runs, in order, and the episode goes on; a reply that looks like a tool call but cannot be read ends it as ' +
    '`unparsed-tool-call`. Without a tool call the text is the agent\'s answer: non-conversational, it ends the episode (`agent-finished`); conversational, it goes to the ' +
    'simulated user. A reply cut off at the token limit (`finish_reason: "length"`) ends the episode as `token-limit`: none of its calls run, and it is never a training target. ' +
    'A reply the endpoint\'s content filter withheld or cut (`finish_reason: "content_filter"`) ends it the same way, as `content-filtered`. ' +
    '`reasoning_content` is kept in the trajectory. A scripted server answers with `toolCalls` and/or `content` and routes on the last message of the ' +
    "conversation with `matchLast` (e.g. `^tool: .*Returned`, `^user: Hi, I'd like`): see docs/scripted-model.md.",
  'rollout.user':
    `Only \`reply\` reaches the agent, as the next user message, unchanged. \`${STOP_TOKEN}\` in \`reply\` ends the episode as \`user-stopped\` (that reply, token included, is the ` +
    `last user message of the trajectory); in \`thought\` it means nothing; in the answer to the greeting it is removed, since the agent has not spoken yet.`,
};

const cell = (text: string) => text.replaceAll('|', '\\|');

/** One model stage's section of docs/stages.md: the request, its markers, the answer. */
function stageSection(stage: ChatStage): string[] {
  const out = [`### \`${stage}\``, '', `Request: ${REQUESTS[stage]}`, ''];
  out.push('Lines of the request that start with a marker, in the order they appear:', '', '| message | marker | followed by |', '|---|---|---|');
  for (const m of STAGE_MARKERS[stage]) out.push(`| ${m.in} | \`${cell(m.text)}\` | ${cell(m.then)}${m.when ? ` (only when ${cell(m.when)})` : ''} |`);
  out.push('');
  const schema = (STAGE_ANSWERS as Partial<Record<ChatStage, z.ZodType>>)[stage];
  if (schema) {
    const json = z.toJSONSchema(schema, { io: 'output', unrepresentable: 'any' }) as Record<string, unknown>;
    delete json['$schema'];
    out.push('The model must answer one JSON object matching:', '', '```json', JSON.stringify(json, null, 2), '```', '');
  }
  if (ANSWER_NOTES[stage]) out.push(ANSWER_NOTES[stage], '');
  return out;
}

/** How the gateway's repair request starts (src/llm/gateway.ts `structured`; a unit test sends an invalid answer and reads it). */
export const REPAIR_PREFIX = 'Your previous reply could not be used: ';

export function renderStageDoc(): string {
  const out: string[] = [];
  out.push(
    '# Stages: the pipeline and its model protocol',
    '',
    '<!-- Generated by scripts/gen-docs.ts from queues/pipeline.ts, config/model-stages.ts, the prompt markers and the answer schemas: do not edit by hand. -->',
    '',
    ...pipelineSection(),
    '## Model stages',
    '',
    'Every model request envfleet sends is a chat completion (or an embeddings request) to an OpenAI-compatible',
    'endpoint, with the model stage named in an `X-Envfleet-Stage` header. The stage decides the model profile',
    '(model, temperature, max tokens, endpoint, request shape) and whether identical requests of one run are served',
    'from the cache. Any server — a real model, a gateway, or `envfleet model-server` with a fixture script',
    '([docs/scripted-model.md](scripted-model.md)) — can stand behind a stage as long as it answers what the',
    "stage's section below says. Each section lists what the request holds, its markers and the answer.",
    '',
    '### Answers and repairs',
    '',
    "Every chat stage but `rollout.policy` answers one JSON object, read from the assistant message's `content`",
    "with `<think>…</think>` blocks left out. The whole reply is taken when it matches the stage's schema; else each",
    '```` ```json ```` fence and each top-level `{…}` or `[…]` block is tried, and the one value that matches is taken',
    '(an example echoed as it is, or the answer written twice, is still one value). When they give several different',
    'values that match, the reply goes back for repair (`the reply holds N different JSON values that each match the',
    'required format …`): a draft before the answer, an example after it and a format reminder in a fence look alike, and',
    'taking any one silently inverted verdicts. Keys the schema does not know are dropped. A reply written as one JSON',
    'value (from its first character to its last, or in a fence tagged json or starting with a bracket) that does not',
    'parse is read through the slips a reader mends without guessing ([jsonrepair](https://github.com/josdejong/jsonrepair):',
    "raw line breaks or tabs in strings, as code often has, trailing commas, comments, single quotes, Python's `True` /",
    '`False` / `None`) when its brackets balance (a reply cut short is not completed) and the mended value matches the',
    "schema; otherwise it is said so, with the parser's message (`Bad control character in string literal …: a line break",
    "or tab inside a JSON string is written \\n or \\t`), not by what a fragment of it lacks. Else the schema's complaint is",
    'about the whole reply or its last block. A value nested more than 1,000 levels deep is refused. Where the profile enforces structured output (`structuredOutput: json_schema`,',
    '[configuration.md](configuration.md)) the schema is also sent as `response_format`.',
    '',
    'When no candidate matches the schema (or a stage check, such as "the method loads in the sandbox", fails), the',
    'next request repeats the conversation, the reply as an assistant message and a user message that starts',
    `\`${REPAIR_PREFIX}\` and says what is wrong (one \`- at <path>: <message>\` line per schema problem), at most`,
    '`ENVFLEET_REPAIR_ATTEMPTS` times; then the item ends with `MODEL_OUTPUT_INVALID` and its reason, and the run',
    'goes on. A reply cut at the token limit (`finish_reason: "length"`), or withheld or cut by the endpoint\'s content filter',
    '(`"content_filter"`), counts as invalid. In a repair request the',
    "last user message is the repair, so a scripted rule's `match` sees it while `matchAny` still sees the prompt.",
    '',
    '### Markers',
    '',
    "Each chat stage's prompt has markers: fixed texts at the start of a line of a message, each followed by a value",
    'of this request (`Environment: Library circulation system`, `Checklist item: Has …`). A scripted model routes on',
    'them ([docs/scripted-model.md](scripted-model.md): `match` tests the last user message, `matchAny` the whole',
    'request body, `matchLast` the last message). Values that are JSON are indented by one space over several lines',
    'unless a table says compact; in the request body that `matchAny` reads, a newline is `\\n` and a quote `\\"`.',
    'test/unit/docs/stage-protocol.test.ts builds every prompt from a small fixture and finds each marker in it.',
    '',
    '### Names and defaults',
    '',
    '| stage (`X-Envfleet-Stage`) | kind | cached | temperature | max tokens | prompt version |',
    '|---|---|---|---|---|---|',
  );
  for (const stage of MODEL_STAGE_NAMES) {
    const s = MODEL_STAGES[stage];
    out.push(`| \`${stage}\` | ${s.kind} | ${s.cache === 'salted' ? 'per sample and turn' : s.cache ? 'yes' : 'no'} | ${s.kind === 'chat' ? s.temperature : '—'} | ${s.kind === 'chat' ? s.maxTokens : '—'} | ${PROMPT_VERSION_OF[stage] ?? '—'} |`);
  }
  out.push(
    '',
    '`ENVFLEET_MODELS_FILE` overrides model, temperature, max tokens and endpoint per stage (docs/configuration.md).',
    '`envfleet doctor` sends its one test request per request shape with `X-Envfleet-Stage: doctor` (not a model',
    'stage: any answer that is not an error will do).',
    '',
  );
  for (const stage of MODEL_STAGE_NAMES) {
    if (stage === 'mine.dedup') {
      out.push(
        '### `mine.dedup` (embeddings)',
        '',
        'One `/v1/embeddings` request per batch of up to 64 candidate descriptions, each input `"<summary>: <introduction>"`,',
        'with `encoding_format: "float"`. A description is dropped when its cosine similarity to an already kept one reaches',
        '`ENVFLEET_DEDUP_THRESHOLD`; candidates are taken best scores first (modelability, then usefulness), then in input order.',
        '',
      );
    } else out.push(...stageSection(stage));
  }
  return out.join('\n');
}

const code = (x: string) => `\`${x}\``;
const EDGE_WORDS: Record<Edge['kind'], string> = { next: '→', 'fan-out': '⇉ each', 'flow-child': '→ (flow)', 'fan-in': '⇒ all done' };

/** Job data fields of a stage, from its zod schema. */
function fieldsOf(schema: z.ZodType): string[] {
  const json = z.toJSONSchema(schema, { io: 'input' }) as { properties?: Record<string, unknown> };
  return Object.keys(json.properties ?? {});
}

/** The pipeline part of docs/stages.md: what each queue takes, feeds, counts and ends with. */
function pipelineSection(): string[] {
  const feedsOf = (s: string) =>
    PIPELINE.edges()
      .filter(e => e.from === s)
      .map(e => `${EDGE_WORDS[e.kind]} ${code(e.to)}`)
      .join('<br>') || '— (the item is done)';
  const out = [
    '## The pipeline',
    '',
    'Each stage is a BullMQ queue of the same name; its jobs carry references only (the documents are in the',
    "run's store). `queues/pipeline.ts` declares all of it: the job data, the item that moves through the stage,",
    'the stages it feeds, its funnel counters, and how the item leaves. The graph is drawn in',
    '[architecture.md](architecture.md#the-stage-graph).',
    '',
    '| stage (queue) | job data | item | feeds | funnel: passed | left | measures | ends an item with |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const s of PIPELINE_STAGES) {
    const spec = STAGES[s];
    const f = spec.funnel as { passed: readonly string[]; left?: readonly string[]; measures?: readonly string[] };
    const ends = [...('ends' in spec ? spec.ends : [])].map(code);
    out.push(
      `| ${code(s)} | ${fieldsOf(spec.data).join(', ')} | ${spec.item.kind}${spec.onFailure === 'item-goes-on' ? ' (a failed job does not end it)' : ''} | ${feedsOf(s)} | ${f.passed.join(', ')} | ${(f.left ?? []).join(', ') || '—'} | ${(f.measures ?? []).join(', ') || '—'} | ${ends.join(', ') || '—'} |`,
    );
  }
  out.push('', '**Entry points** (where the command line submits work):', '');
  for (const [entry, { command, feed }] of Object.entries(PIPELINE.entries)) {
    const first = 'next' in feed ? feed.next : 'each' in feed ? feed.each : feed.through[0];
    out.push(`- ${code(command)} (${code(entry)}) ⇉ ${code(first)}`);
  }
  out.push('', '**Items** and how one leaves the pipeline when a job of its stage fails for good (after its retries):', '');
  for (const [kind, { what }] of Object.entries(ITEMS)) out.push(`- ${code(kind)}: ${what}`);
  out.push(
    '',
    'A stage also ends items itself, with the codes in its last column; its counter is then `failed:CODE` (environments,',
    'tasks) or `dropped:CODE` (scenarios), which the funnel counts as "left". Every code is in [errors.md](errors.md).',
    '',
    '**Run counters** that are not stages:',
    '',
    ...Object.entries(RUN_COUNTERS).map(([name, what]) => `- ${code(name)}: ${what}`),
    '',
  );
  return out;
}

const ACTION_WORDS: Record<ErrorAction, string> = {
  retry: 'retried with exponential backoff (ENVFLEET_JOB_ATTEMPTS)',
  'give-up': 'no retry',
  'rate-limit': 'the queue waits; no attempt used',
  'pause-run': 'the run pauses; no attempt used',
  wait: 'the job comes back later; no attempt used',
};

/** docs/errors.md: every code, where it comes from and what its job does next. */
export function renderErrorsDoc(): string {
  const out = [
    '# Error codes',
    '',
    '<!-- Generated by scripts/gen-docs.ts from ERROR_CODES in src/errors.ts: do not edit by hand. -->',
    '',
    'Every failure envfleet records carries one of these codes: in a failed job\'s `failedReason` (`[CODE] message`),',
    'in the `failure` of an environment, the `dropReason` of a scenario, the `termination.detail` of a trajectory',
    "whose job failed, the funnel (`failed:CODE`, `dropped:CODE`), the sandbox's tool results (`runtimeError`) and the",
    'error line of a command (`envfleet: [CODE] message`).',
    'One function, `classifyError` in `src/errors.ts`, reads this table to decide what a job does next; the HTTP',
    "status of a model endpoint maps to a code in one place (`modelCodeOfStatus`). The area says whose fault it is:",
    'a rollout whose job fails on an `environment` code ends as `environment-error`, otherwise as `model-error`.',
    '',
    '| code | area | a job that fails with it | meaning |',
    '|---|---|---|---|',
  ];
  for (const [name, spec] of Object.entries(ERROR_CODES) as [string, CodeSpec][]) out.push(`| ${code(name)} | ${spec.area} | ${spec.outcome ?? ACTION_WORDS[spec.action]} | ${spec.means.replaceAll('|', '\\|')} |`);
  out.push(
    '',
    '## The environment server',
    '',
    '<!-- From envServerCodeDocs in src/env-server/errors.ts. -->',
    '',
    "What a trainer's request to `envfleet serve` can run into ([env-server.md](env-server.md)): the server's own codes",
    '(`{"error": {code, message, …}}` with the HTTP status on the NeMo Gym surface and the session routes), the sandbox',
    'codes as each surface shows them, the JSON-RPC codes of the MCP endpoint (`/sessions/{id}/mcp`) and of OpenEnv\'s',
    '`POST /mcp`, and the codes of OpenEnv\'s `{"type": "error"}` messages on `/ws`. None of them fails a job.',
    '',
    '| code | HTTP status or protocol shape | meaning | what to do |',
    '|---|---|---|---|',
  );
  const cell = (s: string) => s.replaceAll('|', '\\|');
  for (const row of envServerCodeDocs()) out.push(`| ${/^[A-Z_]+$/.test(row.code) ? code(row.code) : row.code} | ${cell(row.shape)} | ${cell(row.means)} | ${cell(row.todo)} |`);
  return `${out.join('\n')}\n`;
}

const id = (s: string) => s.replace(/[^A-Za-z0-9]/g, '_');
const MERMAID_ARROWS: Record<Edge['kind'], string> = { next: '-->', 'fan-out': '==>|each|', 'flow-child': '-->', 'fan-in': '-.->|all done|' };

/** The stage graph, as a Mermaid flowchart. */
export function renderGraph(): string {
  const lines = ['```mermaid', 'flowchart TD'];
  for (const [entry, { command }] of Object.entries(PIPELINE.entries)) lines.push(`  ${id(`entry_${entry}`)}(["${command}"])`);
  for (const s of PIPELINE_STAGES) lines.push(`  ${id(s)}["${s}"]`);
  for (const e of PIPELINE.edges()) {
    const from = e.from.startsWith('(') ? id(`entry_${e.from.slice(1, -1)}`) : id(e.from);
    lines.push(`  ${from} ${MERMAID_ARROWS[e.kind]} ${id(e.to)}`);
  }
  lines.push('```');
  return lines.join('\n');
}

/** Replaces the text between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`. */
export function fillBlock(doc: string, name: string, content: string): string {
  const open = `<!-- generated:${name} (scripts/gen-docs.ts) -->`;
  const close = `<!-- /generated:${name} -->`;
  const start = doc.indexOf(open);
  const end = doc.indexOf(close);
  if (start < 0 || end < start) throw new Error(`docs: the markers of block "${name}" are missing (${open} … ${close})`);
  return `${doc.slice(0, start + open.length)}\n${content}\n${doc.slice(end)}`;
}

/** Every generated document: its path and the content it must have. */
export function generatedDocs(): { path: string; content: string }[] {
  return [
    { path: STAGE_DOC_PATH, content: renderStageDoc() },
    { path: ERRORS_DOC_PATH, content: renderErrorsDoc() },
    { path: ARCHITECTURE_DOC_PATH, content: fillBlock(readFileSync(ARCHITECTURE_DOC_PATH, 'utf8'), 'graph', renderGraph()) },
  ];
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const stale: string[] = [];
  for (const { path, content } of generatedDocs()) {
    let current = '';
    try {
      current = readFileSync(path, 'utf8');
    } catch {
      // missing counts as out of date
    }
    if (current === content) continue;
    if (process.argv.includes('--check')) stale.push(path);
    else {
      writeFileSync(path, content);
      console.log(`wrote ${path}`);
    }
  }
  if (stale.length) {
    console.error(`out of date: ${stale.join(', ')}; run npx tsx scripts/gen-docs.ts`);
    process.exit(1);
  }
}
