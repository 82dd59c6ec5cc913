import { JobTakenOverError, ModelOutputError } from '../errors.js';
import { ENDS_SESSION, FATAL_CODES, SANDBOX_ERROR_CODES, type SandboxErrorCode } from '../sandbox/errors.js';
import { diffStates } from '../sandbox/diff.js';
import type { EnvSession } from '../sandbox/runner.js';
import { assembleFor, checkMethodFor, codeOf, unfence } from './assemble.js';
import { checkStateSchema, ctx, dedupeHelpers, loadEnv, options, orFail, writeEnv, type ItemOutcome, type SynthesisDeps } from './environments.js';
import { checkerPrompt, configPrompt, repairPrompt, testerPrompt, type ToolStats } from './prompts.js';
import { CheckerOutput, ConfigOutput, MethodOutput, TesterOutput } from './schemas.js';
import type { EnvironmentRecord, ProbeStepRecord, QualityReport, ToolQuality } from './types.js';
import { jsonMemberHolding } from '../util/json-member.js';
import { pythonMemberWhereLost } from '../util/python-json.js';
import { RawJson } from '../util/raw-json.js';

/** The dual-agent check: a test state (check.config), the probe (check.probe), the verdict with its repair round (check.verdict). */

export async function makeTestConfig(deps: SynthesisDeps, runId: string, envId: string): Promise<ItemOutcome> {
  return orFail(deps, runId, envId, 'check.config', async () => {
    const env = await loadEnv(deps, runId, envId);
    if (env.testState) return { ok: true };
    if (!env.source) return { ok: false, reason: 'not assembled' };
    const opts = await options(deps, runId);
    // A Python environment is tested on the state as the model wrote it, as the seed's json.loads reads it (5.0 a float).
    const exact = (state: unknown, text: string) => (env.language === 'python' ? pythonMemberWhereLost(text, 'state', state) : undefined);
    const { value, text } = await deps.gateway.structured(ctx(deps, runId, 'check.config'), {
      messages: configPrompt(env),
      schema: ConfigOutput,
      check: async (v, answer) => {
        const problem = checkStateSchema(env.state!.stateSchema, v.state, 'state');
        if (problem) return problem;
        const json = exact(v.state, answer);
        const probe = await deps.sandbox.probe({ code: codeOf(env, env.source!), initialState: v.state, ...(json === undefined ? {} : { initialStateJson: json }), calls: [], limits: opts.limits });
        return probe.createError ? `the environment does not instantiate on it: ${probe.createError.message}` : null;
      },
    });
    const testStateJson = exact(value.state, text);
    const stale = await writeEnv(deps, runId, env, { ...env, testState: value.state, ...(testStateJson === undefined ? {} : { testStateJson }), status: 'probing', probeRound: 1 }, [
      { stage: 'check.config', outcome: 'done', n: 1 },
    ]);
    return stale ?? { ok: true };
  });
}

/** Runtime errors that fail a probe step by rule, without the checker: the sandbox's limits, and a method that broke its result or its state. */
const RUNTIME_FAILURES: ReadonlySet<string> = new Set<string>([...FATAL_CODES, 'NON_JSON_RESULT', 'RESULT_TOO_LARGE', 'STATE_TOO_LARGE', 'STATE_INVALID']);

/** Whether a probe step ran the tool's method: not an unusable tester answer, not arguments the tool's schema refused. */
const methodRan = (s: ProbeStepRecord) => s.judgedBy !== 'tester' && s.runtimeError !== 'INVALID_ARGUMENTS';

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
    const code = codeOf(env, env.source);
    const steps = await deps.store.steps(runId, envId, round);
    // The class keeps all its state in this.state and its constructor copies the initial state in,
    // so a checkpointed state restores the environment exactly: no call is replayed.
    // `json`: the state's text where a Python environment reads it differently (the test state as the model wrote it, a
    // state the session wrote, one resumed from a checkpoint as it was recorded).
    const open = (state: unknown, json?: string): Promise<EnvSession> => deps.sandbox.openSession(code, state, opts.limits, json);
    let session: EnvSession;
    if (steps.length > 0) {
      const resumed = await resumeState(deps, runId, envId, round, steps);
      session = await open(resumed.state, resumed.json);
    } else session = await open(env.testState, env.testStateJson);
    const toolNames = (env.tools ?? []).map(t => t.function.name);
    // The state after the last step, which is the next step's state before: read once.
    let known: SessionState | undefined;
    try {
      for (let index = steps.length; ; index += 1) {
        // Every tool's method runs at least once before the verdict: once the steps left are no more than
        // the tools never called, the tester is told which one to call; past the planned steps, extra
        // steps (at most one per tool) call the ones still missing.
        const uncalled = toolNames.filter(name => !steps.some(s => s.tool === name && methodRan(s)));
        const left = opts.probeSteps - index;
        if (left <= 0 && (uncalled.length === 0 || index >= opts.probeSteps + toolNames.length)) break;
        const mustTest = uncalled.length > 0 && uncalled.length >= left ? uncalled[0] : undefined;
        deps.signal?.throwIfAborted();
        // A Python session's state as it wrote it, to reopen from it exactly after a call that ends the session.
        const before = known ?? (await stateOf(session));
        const { state: stateBefore, json: stateBeforeJson } = before;
        const stats = statsOf(env, steps);
        let tester: TesterOutput | undefined;
        let testerText = '';
        let unusable: ModelOutputError | undefined;
        try {
          ({ value: tester, text: testerText } = await deps.gateway.structured(ctx(deps, runId, 'check.probe.tester', `${round}:${index}`), {
            messages: testerPrompt(env, stats, stateBefore, mustTest),
            schema: TesterOutput,
            check: v => Promise.resolve(testerProblem(env, v, mustTest)),
          }));
        } catch (err) {
          if (!(err instanceof ModelOutputError)) throw err;
          unusable = err;
        }
        if (!tester) {
          const step: ProbeStepRecord = { index, tool: '', arguments: null, caseType: 'positive', thought: '', result: null, runtimeError: null, diff: diffStates(stateBefore, stateBefore), verdict: 'not-judged', judgedBy: 'tester', checker: { analysis: '', reason: `tester output unusable: ${unusable?.message ?? 'no answer'}` } };
          if (!(await deps.store.appendStep(runId, envId, round, index, step, recorded(stateBefore, stateBeforeJson)))) {
            throw new JobTakenOverError(`probe step ${index} of ${envId} was recorded by another worker, which took this job over; it goes on there from the checkpoint`);
          }
          steps.push(step);
          known = before; // no call ran
          continue;
        }
        // The arguments as the tester wrote them: a Python method reads 2.0 as a float, as in the seed.
        const outcome = await session.call(tester.tool, tester.arguments, jsonMemberHolding(testerText, 'arguments', tester.arguments));
        let after: SessionState;
        if (outcome.runtimeError && ENDS_SESSION.has(outcome.runtimeError)) {
          await session.close();
          session = await open(stateBefore, stateBeforeJson);
          after = before;
        } else {
          after = await stateOf(session);
        }
        const { state: stateAfter, json: stateAfterJson } = after;
        const base = {
          index,
          tool: tester.tool,
          arguments: tester.arguments,
          caseType: tester.caseType,
          thought: tester.thought,
          result: outcome.result,
          runtimeError: outcome.runtimeError ?? null,
          diff: diffStates(stateBefore, stateAfter),
        };
        let step: ProbeStepRecord;
        if (outcome.runtimeError === 'INVALID_ARGUMENTS') {
          // The method did not run: the step says nothing about it (it does count as the tool called).
          step = tester.caseType === 'negative'
            ? { ...base, verdict: 'not-judged', judgedBy: 'schema', checker: { analysis: 'The tool schema refused the invalid arguments before the method ran.', reason: 'the method did not run' } }
            : { ...base, verdict: 'not-judged', judgedBy: 'tester', checker: { analysis: '', reason: 'a positive case with arguments the tool schema refuses: a tester error' } };
        } else if (outcome.runtimeError && RUNTIME_FAILURES.has(outcome.runtimeError)) {
          // A method that hits a sandbox limit or breaks its state fails by rule: no checker can keep it.
          step = { ...base, verdict: 'fail', judgedBy: 'runtime', checker: { analysis: '', reason: `${outcome.runtimeError}: ${SANDBOX_ERROR_CODES[outcome.runtimeError as SandboxErrorCode]}` } };
        } else {
          try {
            const { value } = await deps.gateway.structured(ctx(deps, runId, 'check.probe.checker', `${round}:${index}`), { messages: checkerPrompt(env, base, stateBefore), schema: CheckerOutput });
            step = { ...base, verdict: value.verdict, judgedBy: 'checker', checker: { analysis: value.analysis, reason: value.reason } };
          } catch (err) {
            if (!(err instanceof ModelOutputError)) throw err;
            step = { ...base, verdict: 'not-judged', judgedBy: 'checker', checker: { analysis: '', reason: `checker output unusable: ${err.message}` } };
          }
        }
        // The runtime error is counted in the step's own write: a step another worker recorded first is
        // neither written nor counted again.
        const counts = step.runtimeError ? [{ stage: 'sandbox', outcome: step.runtimeError, n: 1 }] : [];
        if (!(await deps.store.appendStep(runId, envId, round, index, step, recorded(stateAfter, stateAfterJson), counts))) {
          throw new JobTakenOverError(`probe step ${index} of ${envId} was recorded by another worker, which took this job over; it goes on there from the checkpoint`);
        }
        steps.push(step);
        known = after;
      }
    } finally {
      await session.close().catch(() => undefined);
    }
    // No document is written at the end of a round (its steps are the checkpoint list), so these counts
    // stand alone: a crash after them and before the job ends counts the round again when it resumes.
    await deps.store.count(runId, 'check.probe', 'done');
    await deps.store.count(runId, 'check.probe', `round-${round}`);
    return { ok: true };
  });
}

/**
 * The state to resume a probe round from: the one stored with its latest step. Steps recorded before
 * states were kept apart (an older version) carry their own `stateAfter`.
 */
async function resumeState(deps: SynthesisDeps, runId: string, envId: string, round: number, steps: readonly ProbeStepRecord[]): Promise<{ state: unknown; json?: string }> {
  const json = await deps.store.probeStateJson(runId, envId, round);
  if (json !== undefined) return { state: JSON.parse(json) as unknown, json };
  const legacy = steps.at(-1) as { stateAfter?: unknown } | undefined;
  if (legacy?.stateAfter !== undefined) return { state: legacy.stateAfter };
  throw new Error(`probe round ${round} of ${envId} has ${steps.length} steps but no stored state to resume from`);
}

/** A session's state, with its text as the session wrote it where there is one (a Python session's). */
interface SessionState {
  readonly state: unknown;
  readonly json: string | undefined;
}

async function stateOf(session: EnvSession): Promise<SessionState> {
  if (!session.snapshotJson) return { state: await session.snapshot(), json: undefined };
  const json = await session.snapshotJson();
  return { state: JSON.parse(json) as unknown, json };
}

/** A state to record with a step: its text as the session wrote it, where there is one (a Python session's), else the value. */
function recorded(state: unknown, json: string | undefined): unknown {
  return json === undefined ? state : new RawJson(json);
}

/** Unknown tools and argument keys the tool does not have are tester errors (sent back to the tester). */
function testerProblem(env: EnvironmentRecord, v: TesterOutput, mustTest?: string): string | null {
  if (mustTest !== undefined && v.tool !== mustTest) return `this round must call ${mustTest}, which has not been called yet (every tool is called at least once); you chose ${v.tool}`;
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
  // A tool that failed every judged call sinks the environment whatever the average; so does a tool whose method never ran.
  const allFailed = Object.entries(perTool).filter(([, t]) => t.total > 0 && t.fail === t.total).map(([name]) => name);
  const neverCalled = Object.keys(perTool).filter(name => !steps.some(s => s.tool === name && methodRan(s)));
  const rateOk = counts.total > 0 && notFailRate >= threshold;
  const kept = rateOk && allFailed.length === 0 && neverCalled.length === 0;
  const reasons: string[] = [];
  if (counts.total === 0) reasons.push('no probe step could be judged');
  else if (!rateOk) {
    reasons.push(`not-fail rate ${(notFailRate * 100).toFixed(1)}% is below ${(threshold * 100).toFixed(1)}% (${counts.fail} of ${counts.total} judged calls failed: ${Object.entries(perTool).filter(([, t]) => t.fail > 0).map(([n, t]) => `${n} ×${t.fail}`).join(', ')})`);
  }
  if (allFailed.length) reasons.push(`every judged call of ${allFailed.join(', ')} failed`);
  if (neverCalled.length) reasons.push(`never called: ${neverCalled.join(', ')}`);
  return {
    round,
    verdict: kept ? 'kept' : 'rejected',
    notFailRate: Math.round(notFailRate * 1e4) / 1e4,
    passRate: Math.round(passRate * 1e4) / 1e4,
    threshold,
    counts,
    perTool,
    testerErrors: steps.filter(s => s.verdict === 'not-judged' && s.judgedBy !== 'schema').length,
    schemaRefusals: steps.filter(s => s.judgedBy === 'schema').length,
    runtimeFailures: steps.filter(s => s.judgedBy === 'runtime').length,
    rejectionReason: kept ? null : reasons.join('; '),
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
    const steps = await deps.store.steps(runId, envId, round);
    const quality = qualityOf(env, steps, round, opts.notFailThreshold);
    // Reports of earlier rounds only: a retried job of this round may find its own report stored already.
    const earlier = (env.qualityHistory ?? []).filter(q => q.round < round);
    const previous = earlier.at(-1);
    const qualityHistory = [...earlier, quality];
    // The repair round that led to this one: what it regenerated, and whether that saved the environment.
    const repair = previous ? { attempted: true, methods: env.quality?.repair?.methods ?? [], saved: quality.verdict === 'kept', before: { notFailRate: previous.notFailRate } } : undefined;
    const report = repair ? { ...quality, repair } : quality;
    // Helpers of regenerated methods are kept even when the repair round does not go ahead.
    let helpers = env.helpers;
    if (quality.verdict === 'rejected' && round <= opts.verdictRepairRounds && quality.counts.total > 0) {
      // The round's report is stored before the repair: a repair whose model call or sandbox fails the
      // job for good ends the environment failed (failEnv reads the store), and its line must still say
      // how the environment did.
      const stale = await writeEnv(deps, runId, env, { ...env, qualityHistory, quality: report });
      if (stale) return stale;
      const failing = [...new Set(steps.filter(s => s.verdict === 'fail').map(s => s.tool))];
      const regenerated: string[] = [];
      const methods = { ...env.methods };
      for (const tool of failing) {
        const reasons = steps.filter(s => s.tool === tool && s.verdict === 'fail').map(s => s.checker?.reason ?? '').filter(Boolean).slice(0, 5);
        try {
          const { value } = await deps.gateway.structured(ctx(deps, runId, 'check.repair', `${round}:${tool}`), {
            messages: repairPrompt(env, tool, reasons),
            schema: MethodOutput,
            check: v => checkMethodFor(env.language, deps.sandbox, env.operations?.find(o => o.name === tool) ?? { name: tool, parameters: {} }, v.source, opts.limits),
          });
          methods[tool] = unfence(value.source);
          helpers = dedupeHelpers([...(helpers ?? []), ...value.helpers.map(unfence)]);
          regenerated.push(tool);
        } catch (err) {
          if (!(err instanceof ModelOutputError)) throw err;
        }
      }
      const source = assembleFor(env, (env.operations ?? []).map(o => methods[o.name]!), helpers ?? []);
      const loads = await deps.sandbox.probe({ code: codeOf(env, source), initialState: env.testState, ...(env.testStateJson === undefined ? {} : { initialStateJson: env.testStateJson }), calls: [], limits: opts.limits });
      if (regenerated.length > 0 && !loads.createError) {
        const repairing = { attempted: true, methods: regenerated, saved: false, before: { notFailRate: quality.notFailRate } };
        const stale = await writeEnv(deps, runId, env, { ...env, qualityHistory, ...(helpers ? { helpers } : {}), methods, source, probeRound: round + 1, quality: { ...quality, repair: repairing } }, [
          { stage: 'check.verdict', outcome: 'repair-round', n: 1 },
        ]);
        return stale ?? { ok: true, nextRound: round + 1 };
      }
    }
    const stale = await writeEnv(deps, runId, env, { ...env, qualityHistory, ...(helpers ? { helpers } : {}), quality: report, status: quality.verdict }, [
      { stage: 'check.verdict', outcome: repair ? `${quality.verdict}-after-repair` : quality.verdict, n: 1 },
    ]);
    return stale ?? { ok: quality.verdict === 'kept' };
  });
}
