import type { StageName } from '../../config/index.js';
import { ModelOutputError, type ErrorCode } from '../errors.js';
import type { CallContext } from '../llm/gateway.js';
import { diffStates } from '../sandbox/diff.js';
import type { EnvSession } from '../sandbox/runner.js';
import { compileJsonSchema, describeAjvErrors } from '../util/json-schema.js';
import { assembleSource, checkMethodSource, toolsOf } from './assemble.js';
import type { RunOptions } from '../runs/options.js';
import {
  PROMPT_VERSIONS,
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
  type ToolStats,
} from './prompts.js';
import { CheckerOutput, ConfigOutput, JudgeOutput, MethodOutput, OperationsOutput, StateOutput, TesterOutput, TopicOutput, type Operation } from './schemas.js';
import { envIdOf } from '../runs/ids.js';
import type { RunStore } from '../runs/store.js';
import type { DedupDecision, EnvDescription, EnvironmentRecord, MethodDoc, ProbeStepRecord, QualityReport, ToolQuality, TopicRecord } from './types.js';
import { endingItemOnInvalidOutput, type StageDeps } from '../stage-deps.js';

export type SynthesisDeps = StageDeps;

/** An item that cannot be made valid ends here with its reason; the run goes on. */
export interface ItemOutcome {
  readonly ok: boolean;
  readonly reason?: string;
}

const ctx = (deps: SynthesisDeps, runId: string, stage: StageName, cacheSalt?: string): CallContext => ({
  runId,
  stage,
  signal: deps.signal,
  logger: deps.logger,
  cacheSalt,
});

async function options(deps: SynthesisDeps, runId: string): Promise<RunOptions> {
  const run = await deps.store.getRun(runId);
  if (!run) throw new Error(`run "${runId}" does not exist`);
  return run.options;
}

async function loadEnv(deps: SynthesisDeps, runId: string, envId: string): Promise<EnvironmentRecord> {
  const env = await deps.store.getDoc(runId, 'env', envId);
  if (!env) throw new Error(`environment ${envId} of run ${runId} not found`);
  return env;
}

/** Records an item-level failure: the environment ends with its stage, code and reason. */
export async function failEnv(deps: Pick<SynthesisDeps, 'store'>, runId: string, envId: string, stage: string, code: ErrorCode, message: string): Promise<void> {
  const env = await deps.store.getDoc(runId, 'env', envId);
  if (!env || env.status === 'kept' || env.status === 'rejected' || env.status === 'failed') return;
  await deps.store.putDoc(runId, 'env', envId, { ...env, status: 'failed', failure: { stage, code, message } });
  await deps.store.count(runId, stage, `failed:${code}`);
}

/** Runs `fn`; output still invalid after the repair rounds fails the environment instead of the job. */
const orFail = (deps: SynthesisDeps, runId: string, envId: string, stage: string, fn: () => Promise<ItemOutcome>): Promise<ItemOutcome> =>
  endingItemOnInvalidOutput(fn, async err => {
    await failEnv(deps, runId, envId, stage, err.code, err.message);
    return { ok: false, reason: err.message };
  });

// ---------------------------------------------------------------- mining

export async function judgeTask(deps: SynthesisDeps, runId: string, taskId: string): Promise<{ needsEnvironment: boolean }> {
  const existing = await deps.store.getDoc(runId, 'judge', taskId);
  if (existing) return { needsEnvironment: existing.needsEnvironment };
  const task = await deps.store.getDoc(runId, 'task', taskId);
  if (!task) throw new Error(`task ${taskId} not found`);
  try {
    const { value } = await deps.gateway.structured(ctx(deps, runId, 'mine.judge'), { messages: judgePrompt(task.task), schema: JudgeOutput });
    await deps.store.putDoc(runId, 'judge', taskId, value);
    await deps.store.count(runId, 'mine.judge', value.needsEnvironment ? 'needs-environment' : 'no-environment');
    return { needsEnvironment: value.needsEnvironment };
  } catch (err) {
    if (!(err instanceof ModelOutputError)) throw err;
    await deps.store.putDoc(runId, 'judge', taskId, { needsEnvironment: false, reason: `unusable model output: ${err.message}`, failed: true });
    await deps.store.count(runId, 'mine.judge', 'failed:MODEL_OUTPUT_INVALID');
    return { needsEnvironment: false };
  }
}

export async function inferTopic(deps: SynthesisDeps, runId: string, taskId: string): Promise<{ candidate: boolean }> {
  const existing = await deps.store.getDoc(runId, 'topic', taskId);
  if (existing) return { candidate: existing.candidate };
  const judged = await deps.store.getDoc(runId, 'judge', taskId);
  if (!judged?.needsEnvironment) return { candidate: false };
  const task = await deps.store.getDoc(runId, 'task', taskId);
  if (!task) throw new Error(`task ${taskId} of run ${runId} not found`);
  const opts = await options(deps, runId);
  try {
    const { value } = await deps.gateway.structured(ctx(deps, runId, 'mine.topic'), { messages: topicPrompt(task.task), schema: TopicOutput });
    const low = value.usefulness < opts.minUsefulness || value.modelability < opts.minModelability;
    const record: TopicRecord = {
      ...value,
      taskId,
      index: task.index,
      candidate: !low,
      reason: low
        ? `scores below the thresholds (usefulness ${value.usefulness} ≥ ${opts.minUsefulness}, modelability ${value.modelability} ≥ ${opts.minModelability} required)`
        : 'scores meet the thresholds',
    };
    await deps.store.putDoc(runId, 'topic', taskId, record);
    await deps.store.count(runId, 'mine.topic', record.candidate ? 'candidate' : 'low-scores');
    return { candidate: record.candidate };
  } catch (err) {
    if (!(err instanceof ModelOutputError)) throw err;
    await deps.store.count(runId, 'mine.topic', 'failed:MODEL_OUTPUT_INVALID');
    return { candidate: false };
  }
}

function cosine(a: readonly number[], b: readonly number[]): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i += 1) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return na && nb ? dot / Math.sqrt(na * nb) : 0;
}

/**
 * Drops a description whose embedding's cosine similarity to an already kept one reaches the
 * threshold. Order is deterministic: best scores first (modelability, then usefulness), then input
 * order; each decision records its nearest kept neighbour. Kept descriptions become environments.
 */
export async function dedupDescriptions(deps: SynthesisDeps, runId: string): Promise<{ envIds: string[] }> {
  const opts = await options(deps, runId);
  const topics: TopicRecord[] = [];
  for (const id of await deps.store.listDocIds(runId, 'topic')) {
    const t = await deps.store.getDoc(runId, 'topic', id);
    if (t?.candidate) topics.push(t);
  }
  topics.sort((a, b) => b.modelability - a.modelability || b.usefulness - a.usefulness || a.index - b.index);
  const vectors: number[][] = [];
  for (let i = 0; i < topics.length; i += 64) {
    const batch = topics.slice(i, i + 64).map(t => `${t.summary}: ${t.introduction}`);
    const { vectors: v } = await deps.gateway.embed(ctx(deps, runId, 'mine.dedup', String(i)), batch);
    vectors.push(...v);
  }
  const kept: { topic: TopicRecord; vector: number[] }[] = [];
  const envIds: string[] = [];
  for (const [i, topic] of topics.entries()) {
    let nearest: DedupDecision['nearest'] = null;
    for (const k of kept) {
      const similarity = cosine(vectors[i]!, k.vector);
      if (!nearest || similarity > nearest.similarity) nearest = { taskId: k.topic.taskId, summary: k.topic.summary, similarity: Math.round(similarity * 1e4) / 1e4 };
    }
    const duplicate = nearest !== null && nearest.similarity >= opts.dedupThreshold;
    const overLimit = !duplicate && opts.maxEnvs > 0 && kept.length >= opts.maxEnvs;
    let envId: string | null = null;
    if (!duplicate && !overLimit) {
      kept.push({ topic, vector: vectors[i]! });
      const task = await deps.store.getDoc(runId, 'task', topic.taskId);
      envId = await createEnvironment(deps.store, runId, opts, { summary: topic.summary, introduction: topic.introduction, task: task?.task, sourceTaskId: topic.taskId, source: task?.source });
      envIds.push(envId);
    }
    const decision: DedupDecision = {
      taskId: topic.taskId,
      summary: topic.summary,
      kept: envId !== null,
      nearest,
      envId,
      reason: duplicate
        ? `duplicate of "${nearest!.summary}" (cosine ${nearest!.similarity} ≥ ${opts.dedupThreshold})`
        : overLimit
          ? `over the limit of ${opts.maxEnvs} environments`
          : 'distinct',
    };
    await deps.store.putDoc(runId, 'dedup', topic.taskId, decision);
    await deps.store.count(runId, 'mine.dedup', decision.kept ? 'kept' : duplicate ? 'duplicate' : 'over-limit');
  }
  return { envIds };
}

/** Creates the environment record of a description (idempotent: returns the existing id). */
export async function createEnvironment(store: RunStore, runId: string, opts: RunOptions, desc: EnvDescription): Promise<string> {
  const id = envIdOf(runId, desc);
  if (await store.getDoc(runId, 'env', id)) return id;
  const record: EnvironmentRecord = {
    id,
    runId,
    status: 'building',
    description: desc,
    failure: null,
    lineage: { runId, sourceTaskId: desc.sourceTaskId ?? null, models: { ...opts.models }, prompts: { ...PROMPT_VERSIONS }, createdAt: new Date().toISOString() },
  };
  await store.putDoc(runId, 'env', id, record);
  await store.count(runId, 'environments', 'created');
  return id;
}

// ---------------------------------------------------------------- skeleton

export async function buildState(deps: SynthesisDeps, runId: string, envId: string): Promise<ItemOutcome> {
  return orFail(deps, runId, envId, 'skeleton.state', async () => {
    const env = await loadEnv(deps, runId, envId);
    if (env.state) return { ok: true };
    const { value } = await deps.gateway.structured(ctx(deps, runId, 'skeleton.state'), {
      messages: statePrompt(env.description),
      schema: StateOutput,
      check: v => Promise.resolve(checkStateSchema(v.stateSchema, v.exampleState, 'exampleState')),
    });
    await deps.store.putDoc(runId, 'env', envId, { ...env, state: value, className: value.className });
    await deps.store.count(runId, 'skeleton.state', 'done');
    return { ok: true };
  });
}

/** null when the schema compiles and the state matches it, else the problem. */
function checkStateSchema(schema: Record<string, unknown>, state: unknown, what: string): string | null {
  let validate;
  try {
    validate = compileJsonSchema(schema);
  } catch (err) {
    return `stateSchema is not a valid JSON Schema: ${(err as Error).message}`;
  }
  return validate(state) ? null : `${what} does not match stateSchema:\n${describeAjvErrors(validate.errors)}`;
}

export async function buildOperations(deps: SynthesisDeps, runId: string, envId: string): Promise<ItemOutcome & { operations?: string[] }> {
  return orFail(deps, runId, envId, 'skeleton.operations', async () => {
    const env = await loadEnv(deps, runId, envId);
    if (env.operations) return { ok: true, operations: env.operations.map(o => o.name) };
    if (!env.state) return { ok: false, reason: 'no state definition' };
    const { value } = await deps.gateway.structured(ctx(deps, runId, 'skeleton.operations'), {
      messages: operationsPrompt(env.description, env.state),
      schema: OperationsOutput,
      check: v => {
        for (const op of v.operations) {
          try {
            compileJsonSchema(op.parameters);
          } catch (err) {
            return Promise.resolve(`the parameters of ${op.name} are not a valid JSON Schema: ${(err as Error).message}`);
          }
        }
        return Promise.resolve(null);
      },
    });
    await deps.store.putDoc(runId, 'env', envId, { ...env, operations: value.operations, tools: toolsOf(value.operations) });
    await deps.store.count(runId, 'skeleton.operations', 'done');
    await deps.store.count(runId, 'skeleton.operations', 'operations', value.operations.length);
    return { ok: true, operations: value.operations.map(o => o.name) };
  });
}

async function generateMethod(deps: SynthesisDeps, runId: string, env: EnvironmentRecord, op: Operation, opts: RunOptions, problem?: { previous: string; message: string }) {
  const base = methodPrompt(env.description, env.state!, env.operations!, op);
  const messages = problem ? repairMethodPrompt(base, problem.previous, problem.message) : base;
  const { value } = await deps.gateway.structured(ctx(deps, runId, 'skeleton.method', op.name), {
    messages,
    schema: MethodOutput,
    check: v => checkMethodSource(deps.sandbox, op.name, v.source, opts.limits),
  });
  return value;
}

export async function buildMethod(deps: SynthesisDeps, runId: string, envId: string, opName: string): Promise<ItemOutcome> {
  const docId = `${envId}.${opName}`;
  if (await deps.store.getDoc(runId, 'method', docId)) return { ok: true };
  const env = await loadEnv(deps, runId, envId);
  const op = env.operations?.find(o => o.name === opName);
  if (!op || !env.state) return { ok: false, reason: `operation ${opName} not found` };
  try {
    const value = await generateMethod(deps, runId, env, op, await options(deps, runId));
    await deps.store.putDoc(runId, 'method', docId, { source: value.source, helpers: value.helpers } satisfies MethodDoc);
    await deps.store.count(runId, 'skeleton.method', 'done');
    return { ok: true };
  } catch (err) {
    // A method that stays invalid is regenerated by skeleton.assemble (with its own bound).
    if (!(err instanceof ModelOutputError)) throw err;
    await deps.store.count(runId, 'skeleton.method', 'invalid');
    return { ok: false, reason: err.message };
  }
}

/**
 * Fan-in: every operation must have a method that loads; the class must load in the sandbox and
 * instantiate on the example state. A missing or broken method goes back to the model with the
 * error, for a bounded number of rounds.
 */
export async function assembleEnvironment(deps: SynthesisDeps, runId: string, envId: string): Promise<ItemOutcome> {
  return orFail(deps, runId, envId, 'skeleton.assemble', async () => {
    const env = await loadEnv(deps, runId, envId);
    if (env.source) return { ok: true };
    if (env.status === 'failed') return { ok: false, reason: env.failure?.message ?? 'failed' };
    const opts = await options(deps, runId);
    const operations = env.operations ?? [];
    const methods: Record<string, MethodDoc | null> = {};
    for (const op of operations) methods[op.name] = await deps.store.getDoc(runId, 'method', `${envId}.${op.name}`);
    const assembleRepairs: NonNullable<EnvironmentRecord['assembleRepairs']>[number][] = [];
    for (let round = 0; ; round += 1) {
      const problems: Record<string, { previous: string; message: string }> = {};
      for (const op of operations) {
        const m = methods[op.name];
        if (!m) problems[op.name] = { previous: '', message: 'the method is missing' };
        else {
          const issue = await checkMethodSource(deps.sandbox, op.name, m.source, opts.limits);
          if (issue) problems[op.name] = { previous: m.source, message: issue };
        }
      }
      let classProblem: string | null = null;
      if (Object.keys(problems).length === 0) {
        const helpers = dedupeHelpers(operations.flatMap(op => methods[op.name]!.helpers));
        const source = assembleSource(env.className!, operations.map(op => methods[op.name]!.source), helpers);
        const tools = toolsOf(operations);
        const probe = await deps.sandbox.probe({ code: { name: env.description.summary, className: env.className!, source, tools }, initialState: env.state!.exampleState, calls: [], limits: opts.limits });
        if (!probe.createError) {
          const methodSources = Object.fromEntries(operations.map(op => [op.name, methods[op.name]!.source]));
          await deps.store.putDoc(runId, 'env', envId, { ...env, assembleRepairs, methods: methodSources, helpers, source, tools });
          await deps.store.count(runId, 'skeleton.assemble', round === 0 ? 'assembled' : 'assembled-after-repair');
          return { ok: true };
        }
        classProblem = `${probe.createError.code}: ${probe.createError.message}`;
      }
      if (round >= opts.assembleRounds) {
        const message = classProblem ?? Object.entries(problems).map(([n, p]) => `${n}: ${p.message}`).join('; ');
        await failEnv(deps, runId, envId, 'skeleton.assemble', classProblem ? 'CLASS_DOES_NOT_LOAD' : 'METHODS_INVALID', `after ${round} repair round(s): ${message}`);
        return { ok: false, reason: message };
      }
      if (classProblem) {
        // The whole class fails while each method loads alone: regenerate every method with the error.
        for (const op of operations) problems[op.name] = { previous: methods[op.name]!.source, message: `the assembled class does not load or instantiate: ${classProblem}` };
      }
      assembleRepairs.push({ round: round + 1, methods: Object.keys(problems), problems: Object.entries(problems).map(([n, p]) => `${n}: ${p.message}`) });
      for (const [name, problem] of Object.entries(problems)) {
        const op = operations.find(o => o.name === name)!;
        try {
          const value = await generateMethod(deps, runId, env, op, opts, problem);
          methods[name] = { source: value.source, helpers: value.helpers };
          await deps.store.putDoc(runId, 'method', `${envId}.${name}`, methods[name]);
        } catch (err) {
          if (!(err instanceof ModelOutputError)) throw err;
        }
      }
    }
  });
}

function dedupeHelpers(helpers: readonly string[]): string[] {
  const byName = new Map<string, string>();
  for (const h of helpers) {
    const name = /^\s*([A-Za-z_$][\w$]*)\s*\(/.exec(h)?.[1] ?? h;
    if (!byName.has(name)) byName.set(name, h);
  }
  return [...byName.values()];
}

// ---------------------------------------------------------------- check

export async function makeTestConfig(deps: SynthesisDeps, runId: string, envId: string): Promise<ItemOutcome> {
  return orFail(deps, runId, envId, 'check.config', async () => {
    const env = await loadEnv(deps, runId, envId);
    if (env.testState) return { ok: true };
    if (!env.source) return { ok: false, reason: 'not assembled' };
    const opts = await options(deps, runId);
    const { value } = await deps.gateway.structured(ctx(deps, runId, 'check.config'), {
      messages: configPrompt(env),
      schema: ConfigOutput,
      check: async v => {
        const problem = checkStateSchema(env.state!.stateSchema, v.state, 'state');
        if (problem) return problem;
        const probe = await deps.sandbox.probe({ code: { name: env.description.summary, className: env.className!, source: env.source!, tools: env.tools! }, initialState: v.state, calls: [], limits: opts.limits });
        return probe.createError ? `the environment does not instantiate on it: ${probe.createError.message}` : null;
      },
    });
    await deps.store.putDoc(runId, 'env', envId, { ...env, testState: value.state, status: 'probing', probeRound: 1 });
    await deps.store.count(runId, 'check.config', 'done');
    return { ok: true };
  });
}

const emptyStats = (): ToolQuality => ({ total: 0, positive: 0, negative: 0, pass: 0, warning: 0, fail: 0 });

function statsOf(env: EnvironmentRecord, steps: readonly ProbeStepRecord[]): Record<string, ToolStats> {
  const stats: Record<string, ToolStats> = Object.fromEntries((env.tools ?? []).map(t => [t.function.name, emptyStats()]));
  for (const s of steps) {
    if (s.verdict === 'not-judged' || !stats[s.tool]) continue;
    const t = stats[s.tool]!;
    t.total += 1;
    t[s.caseType] += 1;
    t[s.verdict] += 1;
  }
  return stats;
}

const FATAL = new Set(['DEADLINE_EXCEEDED', 'MEMORY_EXCEEDED', 'STACK_OVERFLOW', 'ENV_DISPOSED']);

/**
 * The dual-agent probe: a tester model picks a tool, arguments and a case type; the sandbox runs
 * the call; a checker model judges it from the method source, the arguments, the state before,
 * the result and the diff. Each step is checkpointed, so a resumed job replays the recorded calls
 * (no model call) to rebuild the state and goes on from the next step.
 */
export async function probeEnvironment(deps: SynthesisDeps, runId: string, envId: string, round: number): Promise<ItemOutcome> {
  return orFail(deps, runId, envId, 'check.probe', async () => {
    const env = await loadEnv(deps, runId, envId);
    if (env.status !== 'probing' || !env.source || !env.testState) return { ok: false, reason: `environment is ${env.status}` };
    const opts = await options(deps, runId);
    const code = { name: env.description.summary, className: env.className!, source: env.source, tools: env.tools! };
    const steps = await deps.store.steps<ProbeStepRecord>(runId, envId, round);
    // The class keeps all its state in this.state and its constructor copies the initial state in,
    // so a checkpointed state restores the environment exactly: no call is replayed.
    const open = (state: unknown): Promise<EnvSession> => deps.sandbox.openSession(code, state, opts.limits);
    let session = await open(steps.at(-1)?.stateAfter ?? env.testState);
    try {
      for (let index = steps.length; index < opts.probeSteps; index += 1) {
        deps.signal?.throwIfAborted();
        const stateBefore = await session.snapshot();
        const stats = statsOf(env, steps);
        let tester: TesterOutput;
        try {
          ({ value: tester } = await deps.gateway.structured(ctx(deps, runId, 'check.probe.tester', `${round}:${index}`), {
            messages: testerPrompt(env, stats, stateBefore),
            schema: TesterOutput,
            check: v => Promise.resolve(testerProblem(env, v)),
          }));
        } catch (err) {
          if (!(err instanceof ModelOutputError)) throw err;
          const step: ProbeStepRecord = { index, tool: '', arguments: null, caseType: 'positive', thought: '', result: null, runtimeError: null, stateBefore, stateAfter: stateBefore, diff: diffStates(stateBefore, stateBefore), verdict: 'not-judged', judgedBy: 'tester', checker: { analysis: '', reason: `tester output unusable: ${err.message}` } };
          await deps.store.appendStep(runId, envId, round, index, step);
          steps.push(step);
          continue;
        }
        const outcome = await session.call(tester.tool, tester.arguments);
        let stateAfter: unknown;
        if (outcome.runtimeError && FATAL.has(outcome.runtimeError)) {
          await session.close();
          session = await open(stateBefore);
          stateAfter = stateBefore;
        } else {
          stateAfter = await session.snapshot();
        }
        const base = {
          index,
          tool: tester.tool,
          arguments: tester.arguments,
          caseType: tester.caseType,
          thought: tester.thought,
          result: outcome.result,
          runtimeError: outcome.runtimeError ?? null,
          stateBefore,
          stateAfter,
          diff: diffStates(stateBefore, stateAfter),
        };
        let step: ProbeStepRecord;
        if (outcome.runtimeError === 'INVALID_ARGUMENTS') {
          step = tester.caseType === 'negative'
            ? { ...base, verdict: 'pass', judgedBy: 'schema', checker: { analysis: 'The tool schema refused the invalid arguments before the method ran.', reason: 'no error' } }
            : { ...base, verdict: 'not-judged', judgedBy: 'tester', checker: { analysis: '', reason: 'a positive case with arguments the tool schema refuses: a tester error' } };
        } else {
          try {
            const { value } = await deps.gateway.structured(ctx(deps, runId, 'check.probe.checker', `${round}:${index}`), { messages: checkerPrompt(env, base), schema: CheckerOutput });
            step = { ...base, verdict: value.verdict, judgedBy: 'checker', checker: { analysis: value.analysis, reason: value.reason } };
          } catch (err) {
            if (!(err instanceof ModelOutputError)) throw err;
            step = { ...base, verdict: 'not-judged', judgedBy: 'checker', checker: { analysis: '', reason: `checker output unusable: ${err.message}` } };
          }
        }
        if (step.runtimeError) await deps.store.count(runId, 'sandbox', step.runtimeError);
        if (!(await deps.store.appendStep(runId, envId, round, index, step))) {
          throw new Error(`probe step ${index} of ${envId} was recorded by another worker; retrying from the checkpoint`);
        }
        steps.push(step);
      }
    } finally {
      await session.close().catch(() => undefined);
    }
    await deps.store.count(runId, 'check.probe', 'done');
    await deps.store.count(runId, 'check.probe', `round-${round}`);
    return { ok: true };
  });
}

/** Unknown tools and argument keys the tool does not have are tester errors (sent back to the tester). */
function testerProblem(env: EnvironmentRecord, v: TesterOutput): string | null {
  const tool = env.tools?.find(t => t.function.name === v.tool);
  if (!tool) return `"${v.tool}" is not a tool of this environment; choose one of: ${(env.tools ?? []).map(t => t.function.name).join(', ')}`;
  const props = Object.keys(((tool.function.parameters ?? {}) as { properties?: Record<string, unknown> }).properties ?? {});
  const unknown = Object.keys(v.arguments).filter(k => !props.includes(k));
  return unknown.length ? `${v.tool} has no parameter(s) ${unknown.join(', ')}; its parameters are: ${props.join(', ') || '(none)'}` : null;
}

export function qualityOf(env: EnvironmentRecord, steps: readonly ProbeStepRecord[], round: number, threshold: number): QualityReport {
  const perTool = statsOf(env, steps);
  const counts = emptyStats();
  for (const t of Object.values(perTool)) for (const k of Object.keys(counts) as (keyof ToolQuality)[]) counts[k] += t[k];
  const notFailRate = counts.total ? (counts.pass + counts.warning) / counts.total : 0;
  const passRate = counts.total ? counts.pass / counts.total : 0;
  const kept = counts.total > 0 && notFailRate >= threshold;
  return {
    round,
    verdict: kept ? 'kept' : 'rejected',
    notFailRate: Math.round(notFailRate * 1e4) / 1e4,
    passRate: Math.round(passRate * 1e4) / 1e4,
    threshold,
    counts,
    perTool,
    testerErrors: steps.filter(s => s.verdict === 'not-judged').length,
    rejectionReason: kept
      ? null
      : counts.total === 0
        ? 'no probe step could be judged'
        : `not-fail rate ${(notFailRate * 100).toFixed(1)}% is below ${(threshold * 100).toFixed(1)}% (${counts.fail} of ${counts.total} judged calls failed: ${Object.entries(perTool).filter(([, t]) => t.fail > 0).map(([n, t]) => `${n} ×${t.fail}`).join(', ')})`,
  };
}

/**
 * Decides an environment after a probe round. Rejected with repair rounds left: the failing
 * methods are regenerated with the checker's reasons, the class re-validated, and a new probe
 * round starts (returns `nextRound`). The final report says whether the repair saved it.
 */
export async function decideEnvironment(deps: SynthesisDeps, runId: string, envId: string, round: number): Promise<ItemOutcome & { nextRound?: number }> {
  return orFail(deps, runId, envId, 'check.verdict', async () => {
    const env = await loadEnv(deps, runId, envId);
    if (env.status !== 'probing') return { ok: env.status === 'kept' };
    if ((env.probeRound ?? 1) > round) return { ok: true, nextRound: env.probeRound! };
    const opts = await options(deps, runId);
    const steps = await deps.store.steps<ProbeStepRecord>(runId, envId, round);
    const quality = qualityOf(env, steps, round, opts.notFailThreshold);
    const previous = env.qualityHistory?.at(-1);
    const qualityHistory = [...(env.qualityHistory ?? []), quality];
    // Helpers of regenerated methods are kept even when the repair round does not go ahead.
    let helpers = env.helpers;
    if (quality.verdict === 'rejected' && round <= opts.verdictRepairRounds && quality.counts.total > 0) {
      const failing = [...new Set(steps.filter(s => s.verdict === 'fail').map(s => s.tool))];
      const regenerated: string[] = [];
      const methods = { ...env.methods };
      for (const tool of failing) {
        const reasons = steps.filter(s => s.tool === tool && s.verdict === 'fail').map(s => s.checker?.reason ?? '').filter(Boolean).slice(0, 5);
        try {
          const { value } = await deps.gateway.structured(ctx(deps, runId, 'check.repair', `${round}:${tool}`), {
            messages: repairPrompt(env, tool, reasons),
            schema: MethodOutput,
            check: v => checkMethodSource(deps.sandbox, tool, v.source, opts.limits),
          });
          methods[tool] = value.source;
          helpers = dedupeHelpers([...(helpers ?? []), ...value.helpers]);
          regenerated.push(tool);
        } catch (err) {
          if (!(err instanceof ModelOutputError)) throw err;
        }
      }
      const source = assembleSource(env.className!, (env.operations ?? []).map(o => methods[o.name]!), helpers ?? []);
      const loads = await deps.sandbox.probe({ code: { name: env.description.summary, className: env.className!, source, tools: env.tools! }, initialState: env.testState, calls: [], limits: opts.limits });
      if (regenerated.length > 0 && !loads.createError) {
        const repairing = { attempted: true, methods: regenerated, saved: false, before: { notFailRate: quality.notFailRate } };
        await deps.store.putDoc(runId, 'env', envId, { ...env, qualityHistory, ...(helpers ? { helpers } : {}), methods, source, probeRound: round + 1, quality: { ...quality, repair: repairing } });
        await deps.store.count(runId, 'check.verdict', 'repair-round');
        return { ok: true, nextRound: round + 1 };
      }
    }
    const repair = previous ? { attempted: true, methods: env.quality?.repair?.methods ?? [], saved: quality.verdict === 'kept', before: { notFailRate: previous.notFailRate } } : undefined;
    await deps.store.putDoc(runId, 'env', envId, { ...env, qualityHistory, ...(helpers ? { helpers } : {}), quality: repair ? { ...quality, repair } : quality, status: quality.verdict });
    await deps.store.count(runId, 'check.verdict', repair ? `${quality.verdict}-after-repair` : quality.verdict);
    return { ok: quality.verdict === 'kept' };
  });
}
