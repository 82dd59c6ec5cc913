import { RUN_OPTION_SOURCES, type AppConfig } from '../config/index.js';
import { readEnvironmentsFile } from '../src/datasets/environments-file.js';
import { RequestError, isErrorCode, isOutsideFailure } from '../src/errors.js';
import { InputFileError } from '../src/sandbox/files.js';
import { canonicalJson } from '../src/util/canonical.js';
import type { Redis } from '../src/redis/connection.js';
import type { RolloutConfig, RolloutMode } from '../src/rollouts/types.js';
import { SYNTH_LANGUAGES, synthLanguageOf, type RunOptions } from '../src/runs/options.js';
import type { CodeLanguage } from '../src/sandbox/bundle.js';
import { checkRunName, policyKeyOf } from '../src/runs/ids.js';
import { createRedisRunControl } from '../src/runs/control.js';
import { createRedisRunStore, type RunDocuments, type RunStore } from '../src/runs/store.js';
import type { ScenarioConfig } from '../src/scenarios/types.js';
import { readDescriptionsFile, readTasksFile, type LineProblem } from '../src/synthesis/inputs.js';
import type { EnvDescription, SourceTask } from '../src/synthesis/types.js';
import { reopenScenario } from '../src/scenarios/stages.js';
import { createEnvironment, reopenEnv } from '../src/synthesis/environments.js';
import { createRunEnqueuer, type ReopenItem, type RunEnqueuer } from './enqueuer.js';
import { PIPELINE, STAGES, isPipelineStage, type EntryInputs, type PipelineStage, type StageData, type StageOutputs } from './pipeline.js';

/**
 * The producers: each validates a request, creates or finds its run, and submits work to an entry
 * point of the pipeline (`entries` of PIPELINE in queues/pipeline.ts). All of them are idempotent:
 * submitting the same request again adds no job.
 */

export interface SynthRequest {
  readonly runId: string;
  readonly tasks?: string;
  readonly descriptions?: string;
  readonly maxEnvs?: number;
  readonly probeSteps?: number;
  /** The language of the environments (default js); frozen with the run's options. */
  readonly language?: string;
}

export interface Submission {
  readonly runId: string;
  readonly created: boolean;
  readonly items: number;
  readonly problems: readonly LineProblem[];
  readonly jobsAdded: number;
  /** Jobs of the entry that had failed for good and run again (their items reopened: see reopenItem). */
  readonly jobsRetried: number;
  /** envfleet synth: the language of the run's environments (as frozen). */
  readonly language?: CodeLanguage;
}

/** The options a new run freezes, from the configuration and the request. */
export function runOptionsFrom(config: AppConfig, request: Pick<SynthRequest, 'maxEnvs' | 'probeSteps' | 'language'> = {}): RunOptions {
  const language = synthLanguage(request.language);
  return {
    ...config.synthesis,
    probeSteps: request.probeSteps ?? config.synthesis.probeSteps,
    maxEnvs: request.maxEnvs ?? 0,
    limits: config.sandbox,
    // JavaScript stays absent: a run created before the option existed resumes with the same frozen options.
    ...(language === 'python' ? { language } : {}),
    models: Object.fromEntries(Object.entries(config.profiles).map(([stage, p]) => [stage, p.model])),
  };
}

/**
 * Takes back how an item ended when its job failed for good (workers/item-endings.ts, in reverse), so
 * that the job can run again: a task's or the mining's failure count, an environment's failure, a
 * scenario's drop. An episode that failed is recorded as a trajectory (reward null, model-error or
 * environment-error) that may already be on the run's stream and in the sink's files: it stays, and
 * its job is not retried; one cancelled, or whose record was never written (Redis refused the writes), is.
 */
export function reopenItem(store: RunStore): ReopenItem {
  return async (name, raw, code) => {
    if (!isPipelineStage(name) || !isErrorCode(code)) return false;
    const stage: PipelineStage = name;
    const data = raw as StageData<PipelineStage>;
    const id = (STAGES[stage].item as { id(d: StageData<PipelineStage>): string }).id(data);
    switch (STAGES[stage].item.kind) {
      case 'run':
      case 'task':
        await store.count(data.runId, stage, `failed:${code}`, -1);
        return true;
      case 'environment':
        await reopenEnv(store, data.runId, id, stage, code);
        return true;
      case 'scenario':
        await reopenScenario(store, data.runId, id, stage, code);
        return true;
      case 'episode':
        // An episode that failed for good is recorded (model-error, environment-error) and stays so; one whose record was
        // never written (Redis refused the writes: a stranger's probe filled Redis mid-run, and 599 episodes failed with no
        // trajectory) has nothing recorded, and is retried like a cancelled one.
        return code === 'RUN_CANCELLED' || (await store.getDocText(data.runId, 'trajectory', id)) === null;
      case 'group':
        return true;
    }
  };
}

type Enqueuer = RunEnqueuer<typeof STAGES, StageOutputs, EntryInputs>;

/**
 * The jobs past the entry whose items ended for a cause outside them (src/errors.ts isOutsideFailure):
 * an environment failed, or a scenario dropped, at a later stage. Their job's data is the item's
 * reference (and, in the probe's stages, its round), so the failed job is found by its id and retried
 * as the entry's own are. Returns how many were retried.
 */
async function retryFailedItems(store: RunStore, enqueuer: Enqueuer, runId: string, kind: 'env' | 'scenario'): Promise<number> {
  let retried = 0;
  const reopen = reopenItem(store);
  if (kind === 'env') {
    for (const envId of await store.idsWithStatus(runId, 'env', ['failed'])) {
      const env = await store.getDoc(runId, 'env', envId);
      const stage = env?.failure?.stage;
      if (env?.status !== 'failed' || !stage || !isOutsideFailure(env.failure.code) || !isPipelineStage(stage) || STAGES[stage].item.kind !== 'environment') continue;
      if (stage === 'skeleton.method') continue; // its item goes on: an environment never ends there
      const data = stage === 'check.probe' || stage === 'check.verdict' ? { runId, envId, round: env.probeRound ?? 1 } : { runId, envId };
      // The data of the stage's queue (its schema checks it again before the job is looked up).
      if (await enqueuer.retryFailedJob(stage, data, reopen)) retried += 1;
    }
    return retried;
  }
  for (const scenarioId of await store.idsWithStatus(runId, 'scenario', ['dropped'])) {
    const scenario = await store.getDoc(runId, 'scenario', scenarioId);
    const stage = scenario?.dropReason?.stage;
    // scenario.state is the entry's own stage (resubmit retries it, with the data it was entered with).
    if (scenario?.status !== 'dropped' || !stage || stage === 'scenario.state' || !isOutsideFailure(scenario.dropReason.code) || !isPipelineStage(stage) || STAGES[stage].item.kind !== 'scenario') continue;
    if (await enqueuer.retryFailedJob(stage, { runId, scenarioId }, reopen)) retried += 1;
  }
  return retried;
}

/**
 * A cancelled run takes no new work (its workers would end every job at once as RUN_CANCELLED, and
 * a cancel cannot be undone): refused, with where its results are and what to do instead.
 */
async function refuseCancelled(config: AppConfig, redis: Redis, runId: string, command: string): Promise<void> {
  const control = await createRedisRunControl(redis, config.redis.prefix).get(runId);
  if (control.state !== 'cancelled') return;
  const why = [control.reason, control.since ? `since ${control.since}` : null].filter(Boolean).join(', ');
  throw new RequestError(
    `run "${runId}" is cancelled${why ? ` (${why})` : ''}: it takes no new work, and nothing was submitted. ` +
      `What it made so far is kept (envfleet status --run ${runId}; envfleet export --run ${runId} --out DIR). To go on, run ${command} under another run name.`,
  );
}

/**
 * The configured budgets (ENVFLEET_BUDGET_USD / _TOKENS), stored as the run's when it has none: what the run may spend
 * is then one figure for every worker, command and the dashboard (a worker's own setting used to apply unseen, and
 * `envfleet budget` run elsewhere replaced it with its own). Nothing when both are 0 (no limit).
 */
async function keepConfiguredBudgets(config: AppConfig, redis: Redis, runId: string): Promise<void> {
  if (config.budgets.usd <= 0 && config.budgets.tokens <= 0) return;
  await createRedisRunControl(redis, config.redis.prefix).keepBudgets(runId, { ...config.budgets, byStage: {} });
}

/** A run store and an enqueuer on the producer's connection, closed after `fn`. */
async function producing<T>(config: AppConfig, redis: Redis, fn: (store: RunStore, enqueuer: RunEnqueuer<typeof STAGES, StageOutputs, EntryInputs>) => Promise<T>): Promise<T> {
  const store = createRedisRunStore(redis, config.redis.prefix);
  const enqueuer = createRunEnqueuer(PIPELINE, redis, { prefix: config.redis.prefix, jobs: config.jobs, store });
  try {
    return await fn(store, enqueuer);
  } finally {
    await enqueuer.close();
  }
}


/** `--language`: js (the default) or python; anything else is refused with what to write instead. */
export function synthLanguage(value: string | undefined): CodeLanguage {
  if (value === undefined) return 'js';
  const v = value.trim().toLowerCase();
  if ((SYNTH_LANGUAGES as readonly string[]).includes(v)) return v as CodeLanguage;
  throw new RequestError(`--language ${JSON.stringify(value)} is not a language envfleet synthesizes: use js (JavaScript classes, the default) or python (EnvScaler-style Python classes)`);
}

/** Each field (one level down into objects) whose value differs, as `name: frozen → asked`. */
function differences(frozen: object, asked: object, sources: Readonly<Record<string, string>>, path = ''): string[] {
  const out: string[] = [];
  const a = frozen as Record<string, unknown>;
  const b = asked as Record<string, unknown>;
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const [x, y] = [a[key], b[key]];
    if (canonicalJson(x) === canonicalJson(y)) continue;
    if (!path && x && y && typeof x === 'object' && typeof y === 'object' && !Array.isArray(x)) out.push(...differences(x, y, sources, `${key}.`));
    else {
      // The flag or variable that sets it, so the user knows what to change back.
      const source = sources[`${path}${key}`] ?? sources[path.slice(0, -1)];
      out.push(`${path}${key}: ${canonicalJson(x) ?? 'unset'} → ${canonicalJson(y) ?? 'unset'}${source ? ` (${source})` : ''}`);
    }
  }
  return out;
}

/** The flags that set a run's scenario settings and rollout settings (RUN_OPTION_SOURCES names its options'). */
const SCENARIO_SOURCES: Readonly<Record<string, string>> = { perEnv: '--per-env', verifyWith: '--verify-with', tries: '--tries' };
const ROLLOUT_SOURCES: Readonly<Record<string, string>> = {
  samples: '--samples',
  modes: '--mode',
  limits: '--max-steps, --max-tokens, --max-wall-ms',
  policyModel: '--model',
  userModel: '--user-model',
  policyVersion: '--policy-version',
};

/**
 * Freezes `asked` as the run's settings of `kind` unless some are frozen already, in one step (read and written apart,
 * two submissions at once both read none, and the last write won: the first one's jobs then ran on the other's
 * settings, and the dataset mixed them). What is frozen, and whether this request froze it.
 */
async function freeze<K extends 'scenario-config' | 'rollout-config'>(store: RunStore, runId: string, kind: K, id: string, asked: RunDocuments[K]): Promise<{ frozen: RunDocuments[K]; mine: boolean }> {
  if (await store.addDocText(runId, kind, id, JSON.stringify(asked))) return { frozen: asked, mine: true };
  const frozen = await store.getDoc(runId, kind, id);
  if (!frozen) throw new Error(`run ${runId}: its ${kind} ${id} was neither written nor found`);
  return { frozen, mine: false };
}

/**
 * A run's settings are frozen when first given: asking again with other settings would otherwise be
 * silently ignored (and, as ids do not name the settings, count old work as done). Refuses with each
 * difference and what to do.
 */
function refuseChanged(runId: string, what: string, frozen: object, asked: object, instead: string, sources: Readonly<Record<string, string>>): void {
  const diff = differences(frozen, asked, sources);
  if (diff.length) throw new RequestError(`run "${runId}" already has its ${what}, and this request differs: ${diff.join('; ')}. ${instead}`);
}

/** `envfleet synth`: creates the run (options frozen) and submits its source tasks or descriptions. */
export async function submitSynthesis(config: AppConfig, redis: Redis, request: SynthRequest): Promise<Submission> {
  checkRunName(request.runId);
  if (!!request.tasks === !!request.descriptions) throw new RequestError('give exactly one of --tasks FILE or --descriptions FILE');
  await refuseCancelled(config, redis, request.runId, 'envfleet synth');
  // The file is read and checked before the run is created: a command that fails on its input leaves
  // nothing behind (no run whose options would then be frozen for the corrected command).
  const input = request.tasks ? await readTasksFile(request.tasks) : await readDescriptionsFile(request.descriptions!);
  if (!input.items.length) {
    throw noValidLine(request.tasks ?? request.descriptions!, request.tasks ? 'task, {"task": TEXT, "id"?, "source"?}' : 'description, {"summary": TEXT, "introduction": TEXT}', input.problems, request.runId);
  }
  return producing(config, redis, async (store, enqueuer) => {
    const { runId } = request;
    const asked = runOptionsFrom(config, request);
    const created = await store.createRun({ id: runId, createdAt: new Date().toISOString(), input: request.tasks ? 'tasks' : 'descriptions', options: asked });
    const existing = (await store.getRun(runId))!;
    const frozen = existing.options;
    if (existing.input !== 'tasks' && existing.input !== 'descriptions') {
      throw new RequestError(`run "${runId}" holds environments imported with envfleet import ${existing.input}, not synthesized ones: nothing was submitted. Synthesize into another run name (envfleet synth --run NEW …); the imported run goes on with envfleet scenarios / rollouts.`);
    }
    if (synthLanguageOf(frozen) !== synthLanguageOf(asked)) {
      throw new RequestError(`run "${runId}" synthesizes ${synthLanguageOf(frozen) === 'python' ? 'Python' : 'JavaScript'} environments (--language ${synthLanguageOf(frozen)}, frozen when it was created), and this request asks for --language ${synthLanguageOf(asked)}: a run synthesizes in one language. Submit again with --language ${synthLanguageOf(frozen)} to resume it, or use another run name.`);
    }
    refuseChanged(runId, 'options (frozen when it was created)', frozen, asked, 'Submit again with the same settings to resume it, or use another run name for other settings.', RUN_OPTION_SOURCES);
    await keepConfiguredBudgets(config, redis, runId);
    const { problems } = input;
    if (request.tasks) {
      const items = input.items as SourceTask[];
      for (const task of items) if (!(await store.getDoc(runId, 'task', task.id))) await store.putDoc(runId, 'task', task.id, task);
      const { added: jobsAdded, retried } = await enqueuer.resubmit('tasks', { runId, taskIds: items.map(t => t.id) }, reopenItem(store));
      const jobsRetried = retried + (await retryFailedItems(store, enqueuer, runId, 'env'));
      if (created) await store.count(runId, 'input', 'tasks', items.length);
      return { runId, created, items: items.length, problems, jobsAdded, jobsRetried, language: synthLanguageOf(frozen) };
    }
    const items = input.items as EnvDescription[];
    const chosen = frozen.maxEnvs > 0 ? items.slice(0, frozen.maxEnvs) : items;
    const envIds: string[] = [];
    for (const desc of chosen) envIds.push(await createEnvironment(store, runId, frozen, desc));
    const { added: jobsAdded, retried } = await enqueuer.resubmit('descriptions', { runId, envIds }, reopenItem(store));
    const jobsRetried = retried + (await retryFailedItems(store, enqueuer, runId, 'env'));
    if (created) await store.count(runId, 'input', 'descriptions', items.length);
    return { runId, created, items: chosen.length, problems, jobsAdded, jobsRetried, language: synthLanguageOf(frozen) };
  });
}

/** An input file with no usable line: what was wrong with its lines (the first few), and that nothing was submitted. */
function noValidLine(file: string, expected: string, problems: readonly LineProblem[], runId: string): InputFileError {
  const shown = problems.slice(0, 3).map(p => `line ${p.line}: ${p.problem}`);
  const more = problems.length > shown.length ? `; and ${problems.length - shown.length} more` : '';
  const why = problems.length ? ` (${shown.join('; ')}${more})` : ' (the file is empty)';
  return new InputFileError(`${file}: no valid line${why}; nothing was submitted and run "${runId}" was not created or changed. Expected one ${expected} per line: fix the file (or give the right one) and run the command again.`);
}

export interface ScenarioRequest {
  readonly runId: string;
  readonly perEnv: number;
  /** Solvability gate: reference policy model, and how many tries it gets. */
  readonly verifyWith?: string;
  readonly tries?: number;
  /** environments.jsonl to import into the run (otherwise the run's own kept environments). */
  readonly environments?: string;
}

/** `envfleet scenarios`: M initial states per kept environment of the run (importing environments first if given). */
export async function submitScenarios(config: AppConfig, redis: Redis, request: ScenarioRequest): Promise<Submission> {
  await refuseCancelled(config, redis, request.runId, 'envfleet scenarios (with --environments DIR/environments.jsonl from its export)');
  return producing(config, redis, async (store, enqueuer) => {
    const { runId } = request;
    let created = false;
    let problems: LineProblem[] = [];
    if (request.environments) {
      checkRunName(runId);
      // Read and checked before the run is created: a wrong file leaves nothing behind.
      const imported = await readEnvironmentsFile(request.environments, runId);
      if (!imported.items.length) {
        const why = imported.skipped ? `${imported.skipped} environments that are not kept, ` : '';
        throw noValidLine(request.environments, `kept environment (environments.jsonl as envfleet export writes it${why ? `; this file has ${why.slice(0, -2)}` : ''})`, imported.problems, runId);
      }
      created = await store.createRun({ id: runId, createdAt: new Date().toISOString(), input: 'descriptions', options: runOptionsFrom(config) });
      problems = imported.problems;
      for (const env of imported.items) if (!(await store.getDoc(runId, 'env', env.id))) await store.putDoc(runId, 'env', env.id, env);
    } else if (!(await store.getRun(runId))) {
      throw new RequestError(`run "${runId}" does not exist; synthesize it first (envfleet synth) or pass --environments FILE.jsonl`);
    }
    const envIds = await store.idsWithStatus(runId, 'env', ['kept']);
    // Nothing to do is not a success, and must not freeze the settings of the scenarios to come.
    if (!envIds.length) throw new RequestError(`run "${runId}" has no kept environment, so there is nothing to generate scenarios for (nothing submitted, no setting frozen). See why with envfleet status --run ${runId}; synthesize environments first (envfleet synth --run ${runId}, wait for it to finish) or import them (envfleet scenarios --run NEW --environments DIR/environments.jsonl).`);
    const asked: ScenarioConfig = { perEnv: request.perEnv, verifyWith: request.verifyWith ?? null, tries: request.tries ?? 3 };
    const { frozen, mine } = await freeze(store, runId, 'scenario-config', 'current', asked);
    if (!mine) refuseChanged(runId, 'scenario settings (frozen at its first envfleet scenarios)', frozen, asked, 'Submit again with the same settings to resume, or generate scenarios with other settings in another run (envfleet scenarios --run NEW --environments DIR/environments.jsonl).', SCENARIO_SOURCES);
    await keepConfiguredBudgets(config, redis, runId);
    const { added: jobsAdded, retried } = await enqueuer.resubmit('scenarios', { runId, envIds, perEnv: request.perEnv }, reopenItem(store));
    const jobsRetried = retried + (await retryFailedItems(store, enqueuer, runId, 'scenario'));
    if (jobsAdded) await store.count(runId, PIPELINE.firstStageOf('scenarios'), 'requested', jobsAdded);
    return { runId, created, items: envIds.length, problems, jobsAdded, jobsRetried };
  });
}

export interface RolloutRequest {
  readonly runId: string;
  readonly samples: number;
  readonly modes: readonly RolloutMode[];
  readonly policyModel?: string;
  readonly userModel?: string;
  readonly maxSteps?: Partial<Record<RolloutMode, number>>;
  readonly maxTokens?: number;
  readonly maxWallMs?: number;
  readonly temperature?: number;
  /** The policy's version (a checkpoint step, a tag): recorded with every trajectory; a new version on a run with rollouts is a policy generation of its own. */
  readonly policyVersion?: string;
}

/** `envfleet rollouts`: freezes the run's rollout settings (first call wins) and submits one group per (ready scenario, mode). */
export async function submitRollouts(config: AppConfig, redis: Redis, request: RolloutRequest): Promise<{ scenarios: number; groupsAdded: number; jobsRetried: number; config: RolloutConfig; policy?: string }> {
  return producing(config, redis, async (store, enqueuer) => {
    const { runId } = request;
    if (!(await store.getRun(runId))) throw new RequestError(`run "${runId}" does not exist; synthesize it and generate scenarios first`);
    await refuseCancelled(config, redis, runId, 'envfleet scenarios --environments DIR/environments.jsonl (from its export), then envfleet rollouts,');
    const ready = await store.idsWithStatus(runId, 'scenario', ['ready']);
    // Nothing to roll out is not a success, and must not freeze the rollout settings (or claim the run's first policy).
    if (!ready.length) throw new RequestError(`run "${runId}" has no ready scenario, so there is nothing to roll out (nothing submitted, no setting frozen). See why with envfleet status --run ${runId}; generate scenarios first (envfleet scenarios --run ${runId}, wait for it to finish), then run this command again.`);
    const limits = (mode: RolloutMode, steps: number) => ({ maxSteps: request.maxSteps?.[mode] ?? steps, maxTokens: request.maxTokens ?? 0, maxWallMs: request.maxWallMs ?? 600_000 });
    const asked: RolloutConfig = {
      samples: request.samples,
      modes: request.modes,
      limits: { 'non-conversational': limits('non-conversational', 30), conversational: limits('conversational', 40) },
      policyModel: request.policyModel ?? null,
      userModel: request.userModel ?? null,
      temperature: request.temperature ?? config.profiles['rollout.policy'].temperature,
      maxTokensPerTurn: config.profiles['rollout.policy'].maxTokens,
      ...(request.policyVersion !== undefined ? { policyVersion: request.policyVersion } : {}),
    };
    // A policy generation: the run's first rollouts are 'current'; another policy (model or version) on
    // the same scenarios is a generation of its own, with its own settings, trajectories and groups
    // (their ids include its key), so one run compares policies without mistaking one's samples for another's.
    // Which policy is the run's first is decided once, atomically (two first submissions at once
    // must not both take 'current').
    /** A policy model as said to the user: none given (null) is the rollout.policy profile's model (it read "null"). */
    const modelName = (model: string | null) => (model === null ? `${JSON.stringify(config.profiles['rollout.policy'].model)} (the rollout.policy profile's, no --model given)` : JSON.stringify(model));
    const mine = policyKeyOf(asked.policyModel, asked.policyVersion ?? null);
    const existing = await store.getDoc(runId, 'rollout-config', 'current');
    const firstKey = existing ? policyKeyOf(existing.policyModel, existing.policyVersion ?? null) : await store.claim(runId, 'rollout-generation:first', mine);
    const generation = firstKey === mine ? 'current' : mine;
    if (generation !== 'current' && (await store.getDoc(runId, 'rollout-config', generation)) === null) {
      // A new generation costs a full set of rollouts: only on purpose, named by a version of its own.
      const first = existing ?? (await store.getDoc(runId, 'rollout-config', 'current'));
      const firstVersion = first?.policyVersion ?? null;
      if (asked.policyVersion === undefined || asked.policyVersion === firstVersion) {
        throw new RequestError(
          `run "${runId}" already has rollouts of ${first ? `policy model ${modelName(first.policyModel)}${firstVersion ? `, version ${JSON.stringify(firstVersion)}` : ''}` : 'another policy'}; this request asks for model ${modelName(asked.policyModel)}` +
            `${asked.policyVersion ? `, version ${JSON.stringify(asked.policyVersion)}` : ' without a version'}. To resume, submit with the same --model and --policy-version; to roll out another policy on these scenarios, give it a --policy-version of its own (a new generation: every scenario and mode again).`,
        );
      }
    }
    const { frozen, mine: froze } = await freeze(store, runId, 'rollout-config', generation, asked);
    if (!froze) {
      refuseChanged(
        runId,
        `rollout settings for ${asked.policyVersion ? `policy version "${asked.policyVersion}"` : 'this policy'} (frozen when it was first submitted)`,
        frozen,
        asked,
        'Submit again with the same settings to resume; for other settings, export the scenarios and start another run (envfleet export, then envfleet scenarios --run NEW --environments DIR/environments.jsonl).',
        ROLLOUT_SOURCES,
      );
    }
    await keepConfiguredBudgets(config, redis, runId);
    const policy = generation === 'current' ? undefined : generation;
    let scenarios = 0;
    let groupsAdded = 0;
    let jobsRetried = 0;
    for (const scenarioId of ready) {
      scenarios += 1;
      for (const mode of frozen.modes) {
        const { added, retried } = await enqueuer.resubmit('rollouts', { runId, scenarioId, mode, samples: frozen.samples, ...(policy ? { policy } : {}) }, reopenItem(store));
        if (added) groupsAdded += 1;
        jobsRetried += retried;
      }
    }
    return { scenarios, groupsAdded, jobsRetried, config: frozen, ...(policy ? { policy } : {}) };
  });
}
