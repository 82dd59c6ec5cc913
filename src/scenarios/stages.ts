import type { ModelStage } from '../../config/index.js';
import { LowerIndexPendingError, ModelOutputError, type ErrorCode } from '../errors.js';
import type { CallContext } from '../llm/gateway.js';
import type { EnvironmentRecord } from '../synthesis/types.js';
import { hashOf } from '../util/canonical.js';
import { pythonMemberWhereLost } from '../util/python-json.js';
import { RawJson } from '../util/raw-json.js';
import { compileJsonSchema, describeAjvErrors } from '../util/json-schema.js';
import { scenarioCheckPrompt, scenarioChecklistPrompt, scenarioPromptVersionsFor, scenarioStatePrompt, scenarioTaskPrompt, schemaDescribesState, type ProbedShape } from './prompts.js';
import { unfence } from '../synthesis/assemble.js';
import type { SandboxLimits } from '../sandbox/limits.js';
import { ScenarioCheckOutput, ScenarioChecklistOutput, ScenarioStateOutput, ScenarioTaskOutput } from './schemas.js';
import type { ScenarioDropReason, ScenarioRecord, ScenarioValidation } from './types.js';
import { runEpisode } from '../rollouts/episode.js';
import { scenarioIdOf } from '../runs/ids.js';
import { changeDoc, type FunnelCount } from '../runs/store.js';
import { endingItemOnInvalidOutput, type StageDeps } from '../stage-deps.js';

export type ScenarioDeps = StageDeps;

export interface ScenarioOutcome {
  readonly ok: boolean;
  readonly scenarioId: string;
  readonly reason?: string;
  /** The scenario waits for the solvability gate. */
  readonly verify?: boolean;
}

const ctx = (deps: ScenarioDeps, runId: string, stage: ModelStage, salt?: string): CallContext => ({ runId, stage, signal: deps.signal, logger: deps.logger, cacheSalt: salt });

async function limitsOf(deps: ScenarioDeps, runId: string) {
  const run = await deps.store.getRun(runId);
  if (!run) throw new Error(`run "${runId}" does not exist`);
  return run.options.limits;
}

async function load(deps: ScenarioDeps, runId: string, scenarioId: string) {
  const scenario = await deps.store.getDoc(runId, 'scenario', scenarioId);
  if (!scenario) throw new Error(`scenario ${scenarioId} of run ${runId} not found`);
  const env = await deps.store.getDoc(runId, 'env', scenario.environmentId);
  if (!env?.source) throw new Error(`environment ${scenario.environmentId} of run ${runId} not found or not built`);
  return { scenario, env };
}

const codeOf = (env: EnvironmentRecord) => ({ name: env.description.summary, className: env.className!, source: env.source!, tools: env.tools ?? [], ...(env.language ? { language: env.language } : {}) });

/**
 * The state of a Python environment whose schema says nothing (imported from EnvScaler): the class
 * instantiated with an empty config, in the sandbox. Null for every other environment (the schema says it).
 */
export async function probedShape(deps: Pick<ScenarioDeps, 'sandbox'>, env: EnvironmentRecord, limits: SandboxLimits): Promise<ProbedShape | null> {
  if (env.language !== 'python' || schemaDescribesState(env)) return null;
  const probe = await deps.sandbox.probe({ code: codeOf(env), initialState: {}, calls: [], limits });
  if (probe.createError) return { state: null, error: `${probe.createError.code}: ${probe.createError.message}` };
  const state = probe.finalState;
  return state && typeof state === 'object' && !Array.isArray(state) ? { state: state as Record<string, unknown>, error: null } : { state: null, error: probe.finalStateError?.message ?? 'no state' };
}

/**
 * The state a scenario's checks see at the start: for a Python environment, `vars(instance)` once the
 * class is built on the scenario's initial state (what the runtime hands check_func as initial_state:
 * the constructor's own attributes, an EnvScaler class's `init_config`, included); for JavaScript, the
 * initial state itself.
 */
async function checkedInitialState(deps: Pick<ScenarioDeps, 'sandbox'>, env: EnvironmentRecord, scenario: Pick<ScenarioRecord, 'initialState' | 'initialStateJson'>, limits: SandboxLimits): Promise<unknown> {
  if (env.language !== 'python') return scenario.initialState;
  const probe = await deps.sandbox.probe({ code: codeOf(env), initialState: scenario.initialState, ...exactState(scenario.initialStateJson), calls: [], limits });
  if (probe.createError) throw new Error(`the environment ${env.id} does not instantiate on the scenario's initial state: ${probe.createError.code}: ${probe.createError.message}`);
  // As the runtime wrote it (RawJson), which the Python checks read: 5.0 stays a float.
  return probe.finalStateJson === undefined ? probe.finalState : new RawJson(probe.finalStateJson);
}

const exactState = (initialStateJson: string | undefined) => (initialStateJson === undefined ? {} : { initialStateJson });

/** What a stage knows when it drops a scenario, besides the reason. */
export interface DropDetails {
  /**
   * The scenario as the stage holds it, with what it produced that is not stored yet (a state, a task,
   * the checks so far and their repairs): the dropped record keeps it. Without it, the stored record is
   * dropped as it is.
   */
  readonly produced?: ScenarioRecord;
  /** The checklist item whose check function failed. */
  readonly item?: string;
}

/**
 * Writes what a job made of a scenario, only while it is still building, as every stage read it before its work: a
 * cancel drops a scenario being built while a job is at a model call, a probe or a reference rollout, and a write of
 * what the job read would set it back to building, for ever, in a run whose jobs end. null when written, or when
 * another copy of the job (one taken over past its lock) made it ready first: the caller goes on as if it had. Else
 * the job ends here: as cancelled when its run is (RUN_CANCELLED, counted where it stopped), or with the status the
 * scenario has now.
 */
async function writeScenario(deps: ScenarioDeps, runId: string, value: ScenarioRecord, counts?: readonly FunnelCount[]): Promise<ScenarioOutcome | null> {
  if (await deps.store.putDocIf(runId, 'scenario', value.id, value, 'building', counts)) return null;
  const now = await deps.store.getDoc(runId, 'scenario', value.id);
  // (before the run's gate, as writeEnv)
  if (now?.status === 'ready' && value.status === 'ready') return null;
  await deps.gateway.checkRun?.(runId);
  return { ok: false, scenarioId: value.id, reason: `the scenario is ${now?.status ?? 'missing'}: it was no longer building when this job was done` };
}

/**
 * Drops a scenario still building with `dropReason`, as `produced` (else as stored), and `counts` in the same write,
 * over what is stored as it is read: one that ended meanwhile (made ready, dropped by a cancel or another job) stays
 * as it is and is not counted twice. Whether it dropped it.
 */
const endScenario = (store: ScenarioDeps['store'], runId: string, scenarioId: string, dropReason: ScenarioDropReason, counts?: readonly FunnelCount[], produced?: ScenarioRecord) =>
  changeDoc(store, runId, 'scenario', scenarioId, stored => (stored.status === 'building' ? { ...(produced ?? stored), status: 'dropped', dropReason } : null), counts);

/**
 * Drops a scenario still building as cancelled: the cancel's mark, RUN_CANCELLED at the stage "run" with the cancel's
 * `message` (RunCancelledError's), counted where its job stopped, not here.
 */
export async function dropScenarioCancelled(store: ScenarioDeps['store'], runId: string, scenarioId: string, message: string): Promise<void> {
  await endScenario(store, runId, scenarioId, { stage: 'run', code: 'RUN_CANCELLED', message });
}

/** Drops a scenario with its stage and reason (the run goes on), counted in the same write. */
export async function dropScenario(deps: Pick<ScenarioDeps, 'store'>, runId: string, scenarioId: string, stage: string, code: ErrorCode, message: string, details: DropDetails = {}): Promise<void> {
  const dropReason: ScenarioDropReason = { stage, code, message, ...(details.item === undefined ? {} : { item: details.item }) };
  if (await endScenario(deps.store, runId, scenarioId, dropReason, [{ stage, outcome: `dropped:${code}`, n: 1 }], details.produced)) await deps.store.noteReason(runId, stage, `dropped:${code}`, message);
}

/**
 * Undoes `dropScenario` for a job that is about to run again (`envfleet scenarios` run again after a
 * failure whose cause was fixed): a scenario dropped at `stage` with `code` is building again, its
 * drop reason forgotten and its count taken back in the same write. Anything else is left as it is.
 */
export async function reopenScenario(store: ScenarioDeps['store'], runId: string, scenarioId: string, stage: string, code: ErrorCode): Promise<void> {
  await changeDoc(
    store,
    runId,
    'scenario',
    scenarioId,
    stored => {
      if (stored.status !== 'dropped' || stored.dropReason?.stage !== stage || stored.dropReason.code !== code) return null;
      const { dropReason: _dropped, ...rest } = stored;
      return { ...rest, status: 'building' };
    },
    [{ stage, outcome: `dropped:${code}`, n: -1 }],
  );
}

/** Runs `fn`; output still invalid after the repair rounds drops the scenario instead of failing the job. */
const orDrop = (deps: ScenarioDeps, runId: string, scenarioId: string, stage: string, fn: () => Promise<ScenarioOutcome>): Promise<ScenarioOutcome> =>
  endingItemOnInvalidOutput(fn, async err => {
    await dropScenario(deps, runId, scenarioId, stage, err.code, err.message);
    return { ok: false, scenarioId, reason: err.message };
  });

/**
 * Duplicates are decided in index order, the lower index kept: a scenario claims its initial state
 * (or its task) only once every scenario of its environment with a lower index has claimed its own
 * or was dropped. Claims used to go to whichever job got there first, so with several workers (or a
 * killed worker's job coming back late) the same run kept a different one of two equal scenarios
 * from one time to the next. Until then the job comes back a moment later (LowerIndexPendingError,
 * no attempt used); its model answers come from the cache.
 */
async function lowerIndexesClaimed(deps: ScenarioDeps, runId: string, envId: string, index: number, what: 'initialState' | 'task'): Promise<void> {
  for (let i = 0; i < index; i += 1) {
    const id = scenarioIdOf(runId, envId, i);
    const sibling = await deps.store.getDoc(runId, 'scenario', id);
    if (!sibling || (sibling.status === 'building' && sibling[what] === undefined)) {
      throw new LowerIndexPendingError(`scenario ${index} of ${envId} decides whether its ${what === 'task' ? 'task' : 'initial state'} is a duplicate after scenario ${i} (${id}) has claimed its own`);
    }
  }
}

/** scenario.state: the index-th initial state of a kept environment, valid against its schema and instantiating; duplicates dropped. */
export async function generateScenarioState(deps: ScenarioDeps, runId: string, envId: string, index: number, total: number): Promise<ScenarioOutcome> {
  const scenarioId = scenarioIdOf(runId, envId, index);
  const existing = await deps.store.getDoc(runId, 'scenario', scenarioId);
  if (existing?.initialState || existing?.status === 'dropped') return { ok: existing.status !== 'dropped', scenarioId };
  const env = await deps.store.getDoc(runId, 'env', envId);
  if (!env || env.status !== 'kept' || !env.source) return { ok: false, scenarioId, reason: `environment ${envId} is not a kept environment` };
  const run = await deps.store.getRun(runId);
  if (!run) throw new Error(`run "${runId}" does not exist`);
  const opts = run.options;
  const scenario: ScenarioRecord = existing ?? {
    id: scenarioId,
    runId,
    environmentId: envId,
    index,
    status: 'building',
    dropReason: null,
    lineage: { runId, environmentId: envId, models: { ...opts.models }, prompts: { ...scenarioPromptVersionsFor(env) }, createdAt: new Date().toISOString() },
  };
  // (made once: written again, a scenario read before a cancel's drop was set back to building)
  if (!existing) await deps.store.putDoc(runId, 'scenario', scenarioId, scenario);
  const limits = opts.limits;
  return orDrop(deps, runId, scenarioId, 'scenario.state', async () => {
    const validate = compileJsonSchema(env.state!.stateSchema);
    const shape = await probedShape(deps, env, limits);
    const attributes = shape?.state ? Object.keys(shape.state) : [];
    // A Python environment is made from the state as the model wrote it, as EnvScaler's json.loads reads it (5.0 a
    // float, an integer past 2^53 exact); initialState and stateHash stay JavaScript's reading.
    const pythonState = (state: unknown, answer: string) => (env.language === 'python' ? pythonMemberWhereLost(answer, 'state', state) : undefined);
    const { value, text } = await deps.gateway.structured(ctx(deps, runId, 'scenario.state', `${envId}:${index}`), {
      messages: scenarioStatePrompt(env, index, total, shape),
      schema: ScenarioStateOutput,
      check: async (v, text) => {
        if (!validate(v.state)) return `the state does not match the state schema:\n${describeAjvErrors(validate.errors)}`;
        // With no schema, the attributes the class makes are what a state may set (EnvScaler sets any key it is given, so a typo would go unnoticed).
        const unknown = attributes.length ? Object.keys(v.state).filter(k => !attributes.includes(k)) : [];
        if (unknown.length) return `the state sets ${unknown.map(k => JSON.stringify(k)).join(', ')}, which the class does not have as instance attributes; its attributes are: ${attributes.join(', ')}`;
        const probe = await deps.sandbox.probe({ code: codeOf(env), initialState: v.state, ...exactState(pythonState(v.state, text)), calls: [], limits });
        return probe.createError ? `the environment does not instantiate on it: ${probe.createError.message}` : null;
      },
    });
    const initialStateJson = pythonState(value.state, text);
    const stateHash = hashOf(value.state, 32);
    await lowerIndexesClaimed(deps, runId, envId, index, 'initialState');
    const owner = await deps.store.claim(runId, `state:${envId}:${stateHash}`, scenarioId);
    const withState: ScenarioRecord = { ...scenario, initialState: value.state, ...exactState(initialStateJson), stateHash };
    // One write either way: a crash cannot leave a duplicate stored with its state but not dropped
    // (a retried job would take the stored state and go on).
    if (owner !== scenarioId) {
      await dropScenario(deps, runId, scenarioId, 'scenario.state', 'DUPLICATE_STATE', `the same initial state as scenario ${owner}`, { produced: withState });
      return { ok: false, scenarioId, reason: 'duplicate state' };
    }
    return (await writeScenario(deps, runId, withState, [{ stage: 'scenario.state', outcome: 'done', n: 1 }])) ?? { ok: true, scenarioId };
  });
}

const normalize = (text: string) => text.toLowerCase().replace(/\s+/g, ' ').replace(/[^\p{L}\p{N} ]/gu, '').trim();

/** scenario.task: the task in both forms; it must need a state change; duplicate tasks of the environment dropped. */
export async function generateScenarioTask(deps: ScenarioDeps, runId: string, scenarioId: string): Promise<ScenarioOutcome> {
  const { scenario, env } = await load(deps, runId, scenarioId);
  if (scenario.status !== 'building') return { ok: scenario.status === 'ready', scenarioId };
  if (scenario.task) return { ok: true, scenarioId };
  return orDrop(deps, runId, scenarioId, 'scenario.task', async () => {
    const changing = new Set((env.operations ?? []).filter(o => o.kind === 'state_change').map(o => o.name));
    const tools = new Set((env.tools ?? []).map(t => t.function.name));
    const { value } = await deps.gateway.structured(ctx(deps, runId, 'scenario.task', scenarioId), {
      messages: scenarioTaskPrompt(env, scenario.initialState),
      schema: ScenarioTaskOutput,
      check: v => {
        const unknown = v.expectedTools.filter(t => !tools.has(t));
        if (unknown.length) return Promise.resolve(`expectedTools names tools that do not exist: ${unknown.join(', ')}; the tools are: ${[...tools].join(', ')}`);
        if (!v.expectedTools.some(t => changing.has(t))) {
          return Promise.resolve(`the task must change the state: expectedTools has no state-changing tool (${[...changing].join(', ')})`);
        }
        return Promise.resolve(null);
      },
    });
    await lowerIndexesClaimed(deps, runId, scenario.environmentId, scenario.index, 'task');
    const owner = await deps.store.claim(runId, `task:${scenario.environmentId}:${hashOf(normalize(value.instruction), 32)}`, scenarioId);
    const withTask: ScenarioRecord = { ...scenario, task: value.instruction, userGoal: value.userGoal, expectedTools: value.expectedTools };
    // One write either way (see scenario.state).
    if (owner !== scenarioId) {
      await dropScenario(deps, runId, scenarioId, 'scenario.task', 'DUPLICATE_TASK', `the same task as scenario ${owner}`, { produced: withTask });
      return { ok: false, scenarioId, reason: 'duplicate task' };
    }
    return (await writeScenario(deps, runId, withTask, [{ stage: 'scenario.task', outcome: 'done', n: 1 }])) ?? { ok: true, scenarioId };
  });
}

export async function generateScenarioChecklist(deps: ScenarioDeps, runId: string, scenarioId: string): Promise<ScenarioOutcome> {
  const { scenario, env } = await load(deps, runId, scenarioId);
  if (scenario.status !== 'building') return { ok: scenario.status === 'ready', scenarioId };
  if (scenario.checklistItems) return { ok: true, scenarioId };
  return orDrop(deps, runId, scenarioId, 'scenario.checklist', async () => {
    const { value } = await deps.gateway.structured(ctx(deps, runId, 'scenario.checklist', scenarioId), {
      messages: scenarioChecklistPrompt(env, scenario.task!, scenario.initialState),
      schema: ScenarioChecklistOutput,
    });
    const stale = await writeScenario(deps, runId, { ...scenario, checklistItems: value.items }, [
      { stage: 'scenario.checklist', outcome: 'done', n: 1 },
      { stage: 'scenario.checklist', outcome: 'items', n: value.items.length },
    ]);
    return stale ?? { ok: true, scenarioId };
  });
}

/**
 * scenario.check: one check function per item. Each must run on the initial state (as final and
 * initial) without error and return a boolean, else it goes back to the model with what happened;
 * the set must not already be all true on the initial state. Each item is checkpointed.
 */
export async function generateScenarioChecks(deps: ScenarioDeps, runId: string, scenarioId: string): Promise<ScenarioOutcome> {
  const { scenario, env } = await load(deps, runId, scenarioId);
  if (scenario.status !== 'building') return { ok: scenario.status === 'ready', scenarioId };
  const limits = await limitsOf(deps, runId);
  return orDrop(deps, runId, scenarioId, 'scenario.check', async () => {
    const items = scenario.checklistItems ?? [];
    const checklist = [...(scenario.checklist ?? [])];
    const validation: ScenarioValidation = scenario.validation ?? { onInitialState: [], repairs: [] };
    const repairs = [...validation.repairs];
    /** The scenario with the checks and repairs so far (each item is checkpointed). */
    const current = (onInitialState = validation.onInitialState): ScenarioRecord => ({ ...scenario, checklist: [...checklist], validation: { ...validation, onInitialState, repairs: [...repairs] } });
    // A Python environment's checks are Python (check_func(final_state)), run on the state as the runtime hands it to them.
    const python = env.language === 'python';
    const language = python ? ({ language: 'python' } as const) : {};
    const initial = await checkedInitialState(deps, env, scenario, limits);
    for (let i = checklist.length; i < items.length; i += 1) {
      const item = items[i]!;
      let check: string;
      try {
        const { value } = await deps.gateway.structured(ctx(deps, runId, 'scenario.check', `${scenarioId}:${i}`), {
          messages: scenarioCheckPrompt(env, scenario.task!, initial, item),
          schema: ScenarioCheckOutput,
          check: async v => {
            const { results } = await deps.sandbox.checks({ checks: [{ item, check: unfence(v.check), ...language }], finalState: initial, initialState: initial, limits });
            const r = results[0]!;
            if (!r.errorCode) return null;
            const problem = python
              ? `run on the initial state (as final_state, with initial_state the same) it failed with ${r.errorCode}: ${r.error ?? ''}. check_func must return True or False without raising.`
              : `run on the initial state (as both finalState and initialState) it failed with ${r.errorCode}: ${r.error ?? ''}. It must return true or false without throwing.`;
            repairs.push({ item, problem });
            return problem;
          },
        });
        check = unfence(value.check);
      } catch (err) {
        if (!(err instanceof ModelOutputError)) throw err;
        // Dropped here rather than by orDrop: the record keeps the checks written so far and this item's
        // repairs (only in memory until now), and the reason names the item.
        await dropScenario(deps, runId, scenarioId, 'scenario.check', err.code, `check function of checklist item ${i + 1} ("${item}"): ${err.message}`, { produced: current(), item });
        return { ok: false, scenarioId, reason: err.message };
      }
      checklist.push({ item, check, ...language });
      const stale = await writeScenario(deps, runId, current());
      if (stale) return stale;
    }
    const { results } = await deps.sandbox.checks({ checks: checklist, finalState: initial, initialState: initial, limits });
    const checked = current(results.map(r => ({ item: r.item, passed: r.passed })));
    const errored = results.filter(r => r.errorCode);
    if (errored.length) {
      const message = `${errored.length} check function(s) fail on the initial state: ${errored.map(r => `${r.item}: ${r.error ?? ''}`).join('; ')}`;
      await dropScenario(deps, runId, scenarioId, 'scenario.check', 'CHECK_INVALID', message, { produced: checked, item: errored[0]!.item });
      return { ok: false, scenarioId, reason: 'checks fail on the initial state' };
    }
    if (results.length > 0 && results.every(r => r.passed)) {
      await dropScenario(deps, runId, scenarioId, 'scenario.check', 'ALREADY_SOLVED', 'every check is already true on the initial state: the task would be solved by doing nothing', { produced: checked });
      return { ok: false, scenarioId, reason: 'already solved' };
    }
    const gate = await deps.store.getDoc(runId, 'scenario-config', 'current');
    const stale = await writeScenario(deps, runId, gate?.verifyWith ? checked : { ...checked, status: 'ready' }, [
      { stage: 'scenario.check', outcome: repairs.length ? 'ready-after-repair' : 'ready', n: 1 },
    ]);
    return stale ?? { ok: true, scenarioId, ...(gate?.verifyWith ? { verify: true } : {}) };
  });
}

/**
 * The solvability gate: up to `tries` reference rollouts (non-conversational, the reference model)
 * until one solves the scenario; a scenario none solves is dropped as UNSOLVABLE.
 */
export async function verifyScenario(deps: ScenarioDeps, runId: string, scenarioId: string): Promise<ScenarioOutcome> {
  const { scenario, env } = await load(deps, runId, scenarioId);
  if (scenario.status !== 'building') return { ok: scenario.status === 'ready', scenarioId };
  const gate = await deps.store.getDoc(runId, 'scenario-config', 'current');
  const limits = await limitsOf(deps, runId);
  if (!gate?.verifyWith) return { ok: false, scenarioId, reason: 'no solvability gate configured' };
  const validation: ScenarioValidation = scenario.validation ?? { onInitialState: [], repairs: [] };
  const model = validation.verification?.model ?? gate.verifyWith;
  const tries = [...(validation.verification?.tries ?? [])];
  let solved = validation.verification?.solved ?? false;
  const current = (): ScenarioRecord => ({ ...scenario, validation: { ...validation, verification: { model, tries: [...tries], solved } } });
  while (!solved && tries.length < gate.tries) {
    const t = await runEpisode(
      { gateway: deps.gateway, sandbox: deps.sandbox, logger: deps.logger, signal: deps.signal },
      {
        runId,
        scenario,
        env,
        mode: 'non-conversational',
        sample: 1_000_000 + tries.length,
        limits: { maxSteps: 30, maxTokens: 0, maxWallMs: 600_000 },
        sandboxLimits: limits,
        policyModel: gate.verifyWith,
        userModel: null,
        sampling: { temperature: 0.7, maxTokens: 4096 },
      },
    );
    tries.push({ reward: t.reward, termination: t.termination.reason });
    solved = t.solved;
    const stale = await writeScenario(deps, runId, current());
    if (stale) return stale;
  }
  if (!solved) {
    await dropScenario(deps, runId, scenarioId, 'scenario.verify', 'UNSOLVABLE', `no reference rollout by ${gate.verifyWith} solved it in ${tries.length} tries (rewards ${tries.map(x => x.reward ?? 'none').join(', ')})`, { produced: current() });
    return { ok: false, scenarioId, reason: 'unsolvable' };
  }
  return (await writeScenario(deps, runId, { ...current(), status: 'ready' }, [{ stage: 'scenario.verify', outcome: 'solvable', n: 1 }])) ?? { ok: true, scenarioId };
}
