import { expect } from 'chai';
import { pino } from 'pino';
import { z } from 'zod';
import { loadConfig } from '../../../config/index.js';
import { MODEL_STAGES, MODEL_STAGE_NAMES } from '../../../config/model-stages.js';
import { REPAIR_PREFIX, STAGE_ANSWERS, STAGE_MARKERS, renderStageDoc, type ChatStage } from '../../../scripts/gen-docs.js';
import { createModelGateway, type ChatMessage, type ChatResult, type ModelGateway, type StructuredRequest, type StructuredResult } from '../../../src/llm/gateway.js';
import { parseModelScript, startModelServer } from '../../../src/model-server/index.js';
import { runEpisode } from '../../../src/rollouts/episode.js';
import { AGENT_PREFIX, STOP_TOKEN, USER_GREETING, UserSimulatorAnswer } from '../../../src/rollouts/prompts.js';
import type { RolloutMode, Trajectory } from '../../../src/rollouts/types.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../../src/sandbox/limits.js';
import type { SandboxRunner } from '../../../src/sandbox/runner.js';
import type { ChecksInput } from '../../../src/sandbox/tasks.js';
import { scenarioCheckPrompt, scenarioChecklistPrompt, scenarioStatePrompt, scenarioTaskPrompt } from '../../../src/scenarios/prompts.js';
import type { ScenarioRecord } from '../../../src/scenarios/types.js';
import { checkMethodSource } from '../../../src/synthesis/assemble.js';
import type { PromptMarker } from '../../../src/synthesis/prompt-markers.js';
import {
  checkerPrompt,
  configPrompt,
  judgePrompt,
  methodPrompt,
  operationsPrompt,
  repairMethodPrompt,
  repairPrompt,
  statePrompt,
  testerPrompt,
  topicPrompt,
} from '../../../src/synthesis/prompts.js';
import { JudgeOutput } from '../../../src/synthesis/schemas.js';
import type { EnvDescription, EnvironmentRecord, ProbeStepRecord } from '../../../src/synthesis/types.js';
import { createMemoryLedger, createMemoryLimiter, createMemoryResponseCache } from '../../helpers/memory-ports.js';

/**
 * Keeps the model protocol of docs/stages.md true: every marker it lists (src/{synthesis,scenarios,rollouts}/prompt-markers.ts)
 * is found in prompts built from a small fixture, the rollout stages are read from what a real episode sends, and what the
 * doc says of answers (the method filter, the repair message, the user simulator's answer) is what the code does.
 */

const DESCRIPTION: EnvDescription = {
  summary: 'Library circulation system',
  introduction: 'A lending desk that tracks members, books and loans, with due dates and fines.',
  task: 'Return loan L1 and lend book B2 to member M1.',
};
const OPERATIONS = [
  { name: 'get_member', kind: 'query', description: 'Look a member up by id; fails if unknown.', parameters: { type: 'object', properties: { member_id: { type: 'string' } }, required: ['member_id'], additionalProperties: false } },
  { name: 'return_book', kind: 'state_change', description: 'Return a loan; fails if it is unknown or already returned.', parameters: { type: 'object', properties: { loan_id: { type: 'string' } }, required: ['loan_id'], additionalProperties: false } },
] as const;
const STATE = {
  className: 'LibraryDesk',
  entities: [{ name: 'Member', description: 'a borrower', attributes: [{ name: 'member_id', type: 'string', description: 'id' }] }],
  rules: ['a book is lent to one member at a time'],
  stateSchema: { type: 'object', properties: { members: { type: 'object' }, loans: { type: 'object' } }, required: ['members', 'loans'] },
  exampleState: { members: { M1: { member_id: 'M1' } }, loans: { L1: { loan_id: 'L1', returned: false } } },
};
const METHOD = 'return_book({ loan_id }) {\n  const loan = this.state.loans[loan_id];\n  if (!loan) return { success: false, error: `Loan ${loan_id} not found` };\n  loan.returned = true;\n  return { success: true, message: `Returned ${loan_id}` };\n}';
const ENV: EnvironmentRecord = {
  id: 'env-1',
  runId: 'r',
  status: 'probing',
  description: DESCRIPTION,
  state: STATE,
  className: STATE.className,
  operations: OPERATIONS.map(o => ({ ...o, parameters: { ...o.parameters } })),
  methods: { get_member: 'get_member({ member_id }) {\n  return { success: true, data: this.state.members[member_id] };\n}', return_book: METHOD },
  source: `class LibraryDesk {\n  ${METHOD}\n}\n`,
  tools: OPERATIONS.map(o => ({ type: 'function' as const, function: { name: o.name, description: o.description, parameters: { ...o.parameters } } })),
  testState: STATE.exampleState,
  lineage: { runId: 'r', sourceTaskId: null, models: {}, prompts: {}, createdAt: '2025-01-01T00:00:00.000Z' },
};
const STEP = { index: 0, tool: 'return_book', arguments: { loan_id: 'L1' }, caseType: 'positive', thought: 'return it', result: { success: true, message: 'Returned L1' }, runtimeError: null, diff: [] } as unknown as Omit<ProbeStepRecord, 'verdict' | 'judgedBy' | 'checker'>;
const STATS = { get_member: { total: 1, positive: 1, negative: 0, pass: 1, warning: 0, fail: 0 }, return_book: { total: 0, positive: 0, negative: 0, pass: 0, warning: 0, fail: 0 } };
const TASK = 'Return loan L1 for member M1, then lend book B2 to the same member.';
const ITEM = 'Has loan L1 marked returned';

/** One request of a stage, and the conditional markers (by text) that it must have; the others it must not. */
interface Variant {
  readonly name: string;
  readonly messages: readonly ChatMessage[];
  readonly present?: readonly string[];
}

type PromptStage = Exclude<ChatStage, 'rollout.policy' | 'rollout.user'>;

const PY = 'Language: Python';
/** The same environment synthesized in Python (envfleet synth --language python). */
const PY_ENV: EnvironmentRecord = { ...ENV, language: 'python' };
/** An imported EnvScaler environment: Python, and a state schema that says nothing. */
const IMPORTED_ENV: EnvironmentRecord = { ...PY_ENV, state: { ...STATE, stateSchema: { type: 'object' } } };
const PROBED = { state: { members: {}, loans: {} }, error: null };

const PROMPT_VARIANTS: Record<PromptStage, Variant[]> = {
  'mine.judge': [{ name: 'a task', messages: judgePrompt(TASK) }],
  'mine.topic': [
    { name: 'a task', messages: topicPrompt(TASK) },
    { name: 'a task of a Python run', messages: topicPrompt(TASK, 'python'), present: [PY] },
  ],
  'skeleton.state': [
    { name: 'mined from a task', messages: statePrompt(DESCRIPTION), present: ['Example task: '] },
    { name: 'a description without a task', messages: statePrompt({ summary: DESCRIPTION.summary, introduction: DESCRIPTION.introduction }) },
    { name: 'mined from a task, in Python', messages: statePrompt(DESCRIPTION, 'python'), present: ['Example task: ', PY] },
  ],
  'skeleton.operations': [
    { name: 'mined from a task', messages: operationsPrompt(DESCRIPTION, STATE), present: ['Example task: '] },
    { name: 'a description without a task', messages: operationsPrompt({ summary: DESCRIPTION.summary, introduction: DESCRIPTION.introduction }, STATE) },
    { name: 'a description without a task, in Python', messages: operationsPrompt({ summary: DESCRIPTION.summary, introduction: DESCRIPTION.introduction }, STATE, 'python'), present: [PY] },
  ],
  'skeleton.method': [
    { name: 'the first request', messages: methodPrompt(DESCRIPTION, STATE, ENV.operations!, ENV.operations![1]!), present: ['Example task: '] },
    {
      name: 'skeleton.assemble asking again, without a task',
      messages: repairMethodPrompt(methodPrompt({ summary: DESCRIPTION.summary, introduction: DESCRIPTION.introduction }, STATE, ENV.operations!, ENV.operations![1]!), { source: METHOD, helpers: [] }, 'it does not load'),
      present: ['That method does not work: '],
    },
    { name: 'the first request, in Python', messages: methodPrompt(DESCRIPTION, STATE, ENV.operations!, ENV.operations![1]!, 'python'), present: ['Example task: ', PY] },
    {
      name: 'asking again in Python',
      messages: repairMethodPrompt(methodPrompt(DESCRIPTION, STATE, ENV.operations!, ENV.operations![1]!, 'python'), { source: 'def return_book(self, loan_id: str) -> dict:\n    return {}', helpers: ['def _helper(self):\n    return 1'] }, 'it does not load'),
      present: ['Example task: ', PY, 'That method does not work: '],
    },
  ],
  'check.config': [
    { name: 'an assembled environment', messages: configPrompt(ENV) },
    { name: 'an assembled Python environment', messages: configPrompt(PY_ENV), present: [PY] },
  ],
  'check.probe.tester': [{ name: 'a probe step', messages: testerPrompt(ENV, STATS, STATE.exampleState) }],
  'check.probe.checker': [
    { name: 'a call without a runtime error', messages: checkerPrompt(ENV, STEP, STATE.exampleState) },
    { name: 'a call that threw', messages: checkerPrompt(ENV, { ...STEP, runtimeError: 'METHOD_THREW' }, STATE.exampleState), present: ['Runtime error: '] },
  ],
  'check.repair': [
    { name: 'a failing tool', messages: repairPrompt(ENV, 'return_book', ['the loan stays open', 'no error for an unknown loan']) },
    { name: 'a failing Python tool', messages: repairPrompt(PY_ENV, 'return_book', ['the loan stays open']), present: [PY] },
  ],
  'scenario.state': [
    { name: 'state 2 of 3', messages: scenarioStatePrompt(ENV, 1, 3) },
    { name: 'state 2 of 3 of a synthesized Python environment', messages: scenarioStatePrompt(PY_ENV, 1, 3), present: [PY] },
    { name: 'state 1 of 3 of an imported EnvScaler environment', messages: scenarioStatePrompt(IMPORTED_ENV, 0, 3, PROBED), present: [PY, 'State shape', 'Class source (the attributes its methods read and change):'] },
  ],
  'scenario.task': [{ name: 'an initial state', messages: scenarioTaskPrompt(ENV, STATE.exampleState) }],
  'scenario.checklist': [{ name: 'a task', messages: scenarioChecklistPrompt(ENV, TASK, STATE.exampleState) }],
  'scenario.check': [
    { name: 'a checklist item', messages: scenarioCheckPrompt(ENV, TASK, STATE.exampleState, ITEM) },
    { name: 'a checklist item of a Python environment', messages: scenarioCheckPrompt(PY_ENV, TASK, STATE.exampleState, ITEM), present: [PY] },
  ],
};

/** Where `text` starts a line of `content` (the start counts), or -1. */
function lineStart(content: string, text: string): number {
  if (content.startsWith(text)) return 0;
  const at = content.indexOf(`\n${text}`);
  return at < 0 ? -1 : at + 1;
}

/** What a request lacks (or has that it should not) of a stage's markers, in words. */
function markerProblems(variant: Variant, markers: readonly PromptMarker[]): string[] {
  const problems: string[] = [];
  const last: Partial<Record<PromptMarker['in'], number>> = {};
  for (const marker of markers) {
    const text = variant.messages
      .filter(m => m.role === marker.in)
      .map(m => (typeof m.content === 'string' ? m.content : ''))
      .join('\n');
    const at = lineStart(text, marker.text);
    const expected = marker.when === undefined || (variant.present ?? []).includes(marker.text);
    if (!expected) {
      if (at >= 0) problems.push(`${JSON.stringify(marker.text)} is there, though it is documented only when ${marker.when}`);
      continue;
    }
    if (at < 0) {
      problems.push(`no ${marker.in} line starts with ${JSON.stringify(marker.text)}`);
      continue;
    }
    if (at < (last[marker.in] ?? 0)) problems.push(`${JSON.stringify(marker.text)} comes before a marker listed ahead of it`);
    last[marker.in] = at;
  }
  return problems;
}

function checkVariants(stage: ChatStage, variants: readonly Variant[]): void {
  expect(variants, stage).to.not.be.empty;
  for (const variant of variants) expect(markerProblems(variant, STAGE_MARKERS[stage]), `${stage}, ${variant.name}`).to.deep.equal([]);
  // A marker documented as conditional is seen both with and without its condition.
  for (const marker of STAGE_MARKERS[stage].filter(m => m.when !== undefined)) {
    const withIt = variants.filter(v => (v.present ?? []).includes(marker.text)).length;
    expect(withIt, `${stage}: a fixture where ${JSON.stringify(marker.text)} appears (${marker.when})`).to.be.greaterThan(0);
    expect(variants.length - withIt, `${stage}: a fixture where ${JSON.stringify(marker.text)} does not appear`).to.be.greaterThan(0);
  }
}

/** What one episode sends to rollout.policy and rollout.user, with a fake gateway and a fake sandbox. */
async function episodeRequests(mode: RolloutMode) {
  const sent = { policy: [] as ChatMessage[][], user: [] as ChatMessage[][], userSchema: null as z.ZodType | null };
  const userAnswers = [
    { thought: 'open', reply: `Please return loan L1. ${STOP_TOKEN}` },
    { thought: `all done, ${STOP_TOKEN}`, reply: `Thanks, that is all. ${STOP_TOKEN}` },
  ];
  const gateway: ModelGateway = {
    chat(ctx, request) {
      expect(ctx.stage).to.equal('rollout.policy');
      sent.policy.push(structuredClone([...request.messages]));
      const message =
        sent.policy.length === 1
          ? { role: 'assistant', content: null, refusal: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'return_book', arguments: '{"loan_id": "L1"}' } }] }
          : { role: 'assistant', content: 'Done: loan L1 is returned.', refusal: null };
      return Promise.resolve({ message, finishReason: 'stop', usage: { promptTokens: 1, completionTokens: 1 }, model: 'fake', cached: false, toolCallFormat: 'native' } as unknown as ChatResult);
    },
    structured<T>(ctx: Parameters<ModelGateway['structured']>[0], request: StructuredRequest<T>): Promise<StructuredResult<T>> {
      expect(ctx.stage).to.equal('rollout.user');
      sent.user.push(structuredClone([...request.messages]));
      sent.userSchema = request.schema;
      const answer = userAnswers[sent.user.length - 1];
      return Promise.resolve({ value: request.schema.parse(answer), text: JSON.stringify(answer), calls: 1, usage: { promptTokens: 1, completionTokens: 1 } });
    },
    embed: () => Promise.reject(new Error('not used')),
  };
  const sandbox = {
    openSession: () =>
      Promise.resolve({ tools: ['get_member', 'return_book'], call: () => Promise.resolve({ result: { success: true, message: 'Returned L1' }, us: 1 }), snapshot: () => Promise.resolve({}), close: () => Promise.resolve() }),
    checks: (input: ChecksInput) => Promise.resolve({ results: input.checks.map(c => ({ item: c.item, passed: true })), reward: 1, solved: true }),
    probe: () => Promise.reject(new Error('not used')),
    close: () => Promise.resolve(),
  } as unknown as SandboxRunner;
  const scenario = {
    id: 's1',
    runId: 'r',
    environmentId: ENV.id,
    index: 0,
    status: 'ready',
    initialState: STATE.exampleState,
    task: TASK,
    userGoal: { goal: 'I want to return loan L1.', facts: ['my member id is M1', 'the loan is L1'] },
    checklist: [{ item: ITEM, check: 'function check() { return true; }' }],
    lineage: { runId: 'r', environmentId: ENV.id, models: {}, prompts: {}, createdAt: '2025-01-01T00:00:00.000Z' },
  } as unknown as ScenarioRecord;
  const trajectory: Trajectory = await runEpisode(
    { gateway, sandbox },
    { runId: 'r', scenario, env: ENV, mode, sample: 0, limits: { maxSteps: 5, maxTokens: 0, maxWallMs: 60_000 }, sandboxLimits: DEFAULT_SANDBOX_LIMITS, policyModel: null, userModel: null, sampling: { temperature: 1, maxTokens: 100 } },
  );
  return { ...sent, trajectory };
}

describe('the stage protocol of docs/stages.md', () => {
  it('has markers for every chat stage and a section for every model stage', () => {
    const doc = renderStageDoc();
    for (const stage of MODEL_STAGE_NAMES) {
      expect(doc).to.include(`### \`${stage}\``);
      if (MODEL_STAGES[stage].kind === 'chat') expect(STAGE_MARKERS[stage as ChatStage], stage).to.not.be.empty;
    }
  });

  for (const [stage, variants] of Object.entries(PROMPT_VARIANTS)) {
    it(`${stage}: every marker it documents starts a line of the prompt, in order`, () => checkVariants(stage as PromptStage, variants));
  }

  it('every synthesis and scenario prompt after mining names the environment (`Environment: <summary>`), as docs/scripted-model.md promises', () => {
    for (const [stage, variants] of Object.entries(PROMPT_VARIANTS)) {
      if (stage.startsWith('mine.')) continue;
      for (const v of variants) expect(v.messages.some(m => typeof m.content === 'string' && lineStart(m.content, `Environment: ${DESCRIPTION.summary}`) >= 0), `${stage}, ${v.name}`).to.equal(true);
    }
  });

  describe('rollout stages, as an episode sends them', () => {
    let conversational: Awaited<ReturnType<typeof episodeRequests>>;
    let nonConversational: Awaited<ReturnType<typeof episodeRequests>>;
    before(async () => {
      conversational = await episodeRequests('conversational');
      nonConversational = await episodeRequests('non-conversational');
    });

    it('rollout.policy: every marker it documents, in both modes; the task or the user reply as it is', () => {
      checkVariants('rollout.policy', [
        ...nonConversational.policy.map((messages, i) => ({ name: `non-conversational turn ${i + 1}`, messages, present: ['Complete the given task step by step.'] })),
        ...conversational.policy.map((messages, i) => ({ name: `conversational turn ${i + 1}`, messages, present: ['Help the user with their requests'] })),
      ]);
      expect(nonConversational.policy[0]!.slice(1)).to.deep.equal([{ role: 'user', content: TASK }]);
      // The answer to the greeting opens the agent's conversation, the stop token taken out.
      expect(conversational.policy[0]!.slice(1)).to.deep.equal([{ role: 'user', content: 'Please return loan L1.' }]);
      expect(nonConversational.trajectory.termination.reason).to.equal('agent-finished');
    });

    it('rollout.user: every marker it documents; the greeting first, then each agent message after the prefix', () => {
      checkVariants('rollout.user', conversational.user.map((messages, i) => ({ name: `request ${i + 1}`, messages })));
      expect(conversational.user[0]!.slice(1)).to.deep.equal([{ role: 'user', content: `${AGENT_PREFIX}${USER_GREETING}` }]);
      expect(conversational.user[1]!.at(-1)).to.deep.equal({ role: 'user', content: `${AGENT_PREFIX}Done: loan L1 is returned.` });
      expect(conversational.user[1]![2]).to.deep.include({ role: 'assistant' });
      // The stop token in the reply (not the thought) ends the episode; that reply is the agent's last user message.
      expect(conversational.trajectory.termination.reason).to.equal('user-stopped');
      expect(conversational.trajectory.messages.at(-1)).to.deep.equal({ role: 'user', content: `Thanks, that is all. ${STOP_TOKEN}` });
    });

    it('rollout.user: the answer documented is the one the episode parses', () => {
      const bare = (schema: z.ZodType) => JSON.parse(JSON.stringify(z.toJSONSchema(schema), (k, v: unknown) => (k === 'description' ? undefined : v))) as unknown;
      expect(bare(conversational.userSchema!)).to.deep.equal(bare(UserSimulatorAnswer));
      expect(STAGE_ANSWERS['rollout.user']).to.equal(UserSimulatorAnswer);
    });
  });

  describe('what the doc says of answers', () => {
    const reached: string[] = [];
    const sandbox = {
      checks: (input: ChecksInput) => {
        reached.push(input.checks[0]!.item);
        return Promise.resolve({ results: [{ item: input.checks[0]!.item, passed: true }], reward: 1, solved: true });
      },
    } as unknown as SandboxRunner;
    const REFUSED = 'the method must not use import, export or require: environments have no modules';

    it('skeleton.method / check.repair: import or export starting a line, or require( anywhere, is refused before the sandbox', async () => {
      expect(renderStageDoc()).to.include(REFUSED);
      for (const source of [
        "import fs from 'node:fs';\nf() { return { success: true }; }",
        '  export default 1;\nf() { return { success: true }; }',
        "f() { const fs = require('fs'); return { success: true }; }",
        'f() { const x = require ("x"); return { success: true }; }',
        'f() {\n  // require(nothing)\n  return { success: true };\n}',
        "f() { return { success: true, data: 'require(x)' }; }",
      ]) {
        expect(await checkMethodSource(sandbox, 'f', source, DEFAULT_SANDBOX_LIMITS), source).to.equal(REFUSED);
      }
      expect(reached).to.deep.equal([]);
      for (const source of [
        "f() { return { success: true, data: 'important imports, exports, required' }; }",
        'f() {\n  exports_seen = 1;\n  return { success: true };\n}',
        "f() {\n  return { success: true, data: 'see import (x)' };\n}",
      ]) {
        expect(await checkMethodSource(sandbox, 'f', source, DEFAULT_SANDBOX_LIMITS), source).to.equal(null);
      }
      expect(reached).to.have.length(3);
    });

    it('a structured answer that does not match comes back as a repair request that starts as documented', async () => {
      const server = await startModelServer({
        script: parseModelScript({ rules: [{ stage: 'mine.judge', responses: [{ json: { needsEnvironment: 'yes' } }, { json: { needsEnvironment: true, reason: 'It changes loans.' } }] }] }),
      });
      try {
        const config = loadConfig({}, { overrides: { OPENAI_BASE_URL: server.url } });
        const gateway = createModelGateway({ config, cache: createMemoryResponseCache(), limiter: createMemoryLimiter(), ledger: createMemoryLedger(), logger: pino({ level: 'silent' }) });
        const { value, calls } = await gateway.structured({ runId: 'r', stage: 'mine.judge' }, { messages: judgePrompt(TASK), schema: JudgeOutput });
        expect(value.needsEnvironment).to.equal(true);
        expect(calls).to.equal(2);
        const repair = server.log()[1]?.lastUserMessage ?? '';
        expect(repair.startsWith(REPAIR_PREFIX), repair).to.equal(true);
        expect(repair).to.match(/\n- at needsEnvironment: /);
        // matchAny still sees the prompt: its first user message is in the body.
        expect(JSON.stringify(server.log()[1]?.body)).to.include(`Task: ${TASK}`);
      } finally {
        await server.close();
      }
    });
  });
});
