import { mkdir, writeFile } from 'node:fs/promises';
import { forEachPendingJob } from './pending-jobs.js';
import { join } from 'node:path';
import type { AppConfig } from '../config/index.js';
import { createRunEnqueuer } from '../queues/run-enqueuer.js';
import { skeletonStateQueue } from '../queues/skeleton-state.queue.js';
import { scenarioStateQueue } from '../queues/scenario-state.queue.js';
import { readEnvironmentsFile } from '../src/scenarios/import.js';
import type { ScenarioConfig, ScenarioRecord } from '../src/scenarios/types.js';
import { passesFilter, toLlamaFactory, toOpenAI, toRLGroup, toRLScenario, toShareGPT, type SftFilter } from '../src/rollouts/exports.js';
import type { GroupStats } from '../src/rollouts/groups.js';
import { OUTCOME_COUNTERS, type RolloutConfig } from '../src/rollouts/stages.js';
import { forEachFullTrajectory, shardsMovedTo } from '../src/rollouts/shards.js';
import { JsonlWriter } from '../src/util/jsonl-writer.js';
import type { RolloutMode, Trajectory } from '../src/rollouts/types.js';
import { createRedisConnection, waitForRedis, type Redis } from '../src/redis/connection.js';
import { readDescriptionsFile, readTasksFile, type LineProblem } from '../src/synthesis/inputs.js';
import type { SynthOptions } from '../src/synthesis/options.js';
import { PROMPT_VERSIONS } from '../src/synthesis/prompts.js';
import { createEnvironment } from '../src/synthesis/stages.js';
import { createRedisSynthesisStore, type SynthesisStore } from '../src/synthesis/store.js';
import type { EnvironmentRecord } from '../src/synthesis/types.js';
import { sleep } from '../src/util/sleep.js';

export interface SynthRequest {
  readonly runId: string;
  readonly tasks?: string;
  readonly descriptions?: string;
  readonly maxEnvs?: number;
  readonly probeSteps?: number;
}

export interface SynthSubmission {
  readonly runId: string;
  readonly created: boolean;
  readonly items: number;
  readonly problems: readonly LineProblem[];
  readonly jobsAdded: number;
}

export function synthOptionsFrom(config: AppConfig, request: SynthRequest): SynthOptions {
  return {
    ...config.synthesis,
    probeSteps: request.probeSteps ?? config.synthesis.probeSteps,
    maxEnvs: request.maxEnvs ?? 0,
    limits: config.sandbox,
    models: Object.fromEntries(Object.entries(config.profiles).map(([stage, p]) => [stage, p.model])),
  };
}

/** Validates a request, creates the run (options frozen) and enqueues its root jobs. Idempotent. */
export async function submitSynthesis(config: AppConfig, redis: Redis, request: SynthRequest): Promise<SynthSubmission> {
  if (!/^[A-Za-z0-9_.-]{1,100}$/.test(request.runId)) {
    throw new Error(`run name "${request.runId}" may only contain letters, digits, _ . - (at most 100 characters)`);
  }
  if (!!request.tasks === !!request.descriptions) throw new Error('give exactly one of --tasks FILE or --descriptions FILE');
  const store = createRedisSynthesisStore(redis, config.redis.prefix);
  const enqueuer = createRunEnqueuer(redis, { prefix: config.redis.prefix, jobs: config.jobs, store });
  try {
    const options = synthOptionsFrom(config, request);
    const created = await store.createRun({ id: request.runId, createdAt: new Date().toISOString(), input: request.tasks ? 'tasks' : 'descriptions', options: options as unknown as Record<string, unknown> });
    const run = (await store.getRun(request.runId))!;
    const frozen = run.options as unknown as SynthOptions;
    let jobsAdded = 0;
    if (request.tasks) {
      const { items, problems } = await readTasksFile(request.tasks);
      for (const task of items) if (!(await store.getDoc(request.runId, 'task', task.id))) await store.putDoc(request.runId, 'task', task.id, task);
      if (items.length && (await enqueuer.miningFlow(request.runId, items.map(t => t.id)))) jobsAdded += 1 + items.length * 2;
      if (created) await store.count(request.runId, 'input', 'tasks', items.length);
      return { runId: request.runId, created, items: items.length, problems, jobsAdded };
    }
    const { items, problems } = await readDescriptionsFile(request.descriptions!);
    const chosen = frozen.maxEnvs > 0 ? items.slice(0, frozen.maxEnvs) : items;
    for (const desc of chosen) {
      const envId = await createEnvironment(store, request.runId, frozen, desc);
      if ((await enqueuer.add(skeletonStateQueue, { runId: request.runId, envId })).added) jobsAdded += 1;
    }
    if (created) await store.count(request.runId, 'input', 'descriptions', items.length);
    return { runId: request.runId, created, items: chosen.length, problems, jobsAdded };
  } finally {
    await enqueuer.close();
  }
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

/** Enqueues M scenario.state jobs per kept environment of the run (importing environments first if given). Idempotent. */
export async function submitScenarios(config: AppConfig, redis: Redis, request: ScenarioRequest): Promise<SynthSubmission> {
  const store = createRedisSynthesisStore(redis, config.redis.prefix);
  const enqueuer = createRunEnqueuer(redis, { prefix: config.redis.prefix, jobs: config.jobs, store });
  try {
    let created = false;
    let problems: LineProblem[] = [];
    if (request.environments) {
      created = await store.createRun({ id: request.runId, createdAt: new Date().toISOString(), input: 'descriptions', options: synthOptionsFrom(config, { runId: request.runId }) as unknown as Record<string, unknown> });
      const imported = await readEnvironmentsFile(request.environments, request.runId);
      problems = imported.problems;
      for (const env of imported.items) if (!(await store.getDoc(request.runId, 'env', env.id))) await store.putDoc(request.runId, 'env', env.id, env);
    } else if (!(await store.getRun(request.runId))) {
      throw new Error(`run "${request.runId}" does not exist; synthesize it first (envfleet synth) or pass --environments FILE.jsonl`);
    }
    if (!(await store.getDoc(request.runId, 'scenario-config', 'current'))) {
      await store.putDoc(request.runId, 'scenario-config', 'current', { perEnv: request.perEnv, verifyWith: request.verifyWith ?? null, tries: request.tries ?? 3 } satisfies ScenarioConfig);
    }
    let jobsAdded = 0;
    let items = 0;
    for (const envId of await store.listDocIds(request.runId, 'env')) {
      const env = await store.getDoc<EnvironmentRecord>(request.runId, 'env', envId);
      if (env?.status !== 'kept') continue;
      items += 1;
      for (let index = 0; index < request.perEnv; index += 1) {
        if ((await enqueuer.add(scenarioStateQueue, { runId: request.runId, envId, index, total: request.perEnv })).added) jobsAdded += 1;
      }
    }
    if (jobsAdded) await store.count(request.runId, 'scenario.state', 'requested', jobsAdded);
    return { runId: request.runId, created, items, problems, jobsAdded };
  } finally {
    await enqueuer.close();
  }
}

export interface RunProgress {
  readonly outstanding: number;
  readonly environments: Record<string, number>;
  readonly scenarios: Record<string, number>;
}

export async function runProgress(store: SynthesisStore, runId: string): Promise<RunProgress> {
  const environments: Record<string, number> = {};
  for (const id of await store.listDocIds(runId, 'env')) {
    const env = await store.getDoc<EnvironmentRecord>(runId, 'env', id);
    if (env) environments[env.status] = (environments[env.status] ?? 0) + 1;
  }
  const scenarios: Record<string, number> = {};
  for (const id of await store.listDocIds(runId, 'scenario')) {
    const scenario = await store.getDoc<ScenarioRecord>(runId, 'scenario', id);
    if (scenario) scenarios[scenario.status] = (scenarios[scenario.status] ?? 0) + 1;
  }
  return { outstanding: await store.pendingCount(runId), environments, scenarios };
}

/**
 * Forgets outstanding entries whose job has ended (or is gone) without being settled, as happens
 * when a worker dies in the instant between finishing a job and recording it.
 */
export async function reconcilePending(redis: Redis, prefix: string, store: SynthesisStore, runId: string): Promise<number> {
  let fixed = 0;
  await forEachPendingJob(redis, prefix, runId, async ({ key, queue, jobId }) => {
    const state = await queue.getJobState(jobId);
    if (state === 'completed' || state === 'failed' || state === 'unknown') {
      await store.donePending(runId, key);
      fixed += 1;
    }
  });
  return fixed;
}

/** Waits until the run has no outstanding job, reporting progress when it changes. */
export async function waitForRun(
  store: SynthesisStore,
  runId: string,
  report: (p: RunProgress) => void,
  signal?: AbortSignal,
  reconcile?: { readonly redis: Redis; readonly prefix: string },
): Promise<RunProgress> {
  let last = '';
  let polls = 0;
  for (;;) {
    polls += 1;
    if (reconcile && polls % 20 === 0) await reconcilePending(reconcile.redis, reconcile.prefix, store, runId);
    const progress = await runProgress(store, runId);
    const line = JSON.stringify(progress);
    if (line !== last) report(progress);
    last = line;
    if (progress.outstanding === 0) return progress;
    await sleep(500, signal);
  }
}

/**
 * Writes DIR/environments.jsonl (every environment of the run, kept, rejected and failed, by id),
 * and, when the run has scenarios, DIR/scenarios.jsonl (ready ones) and DIR/scenarios-dropped.jsonl
 * (with the reason each was dropped).
 */
export type DatasetFormat = 'openai' | 'sharegpt' | 'llamafactory' | 'rl';
export const DATASET_FORMATS: readonly DatasetFormat[] = ['openai', 'sharegpt', 'llamafactory', 'rl'];

export interface ExportOptions {
  readonly formats?: readonly DatasetFormat[];
  readonly filter?: SftFilter;
  /** Where the sink's shard files are now, if its output directory was moved. */
  readonly trajectoriesDir?: string;
}

export async function exportRun(
  store: SynthesisStore,
  runId: string,
  dir: string,
  options: ExportOptions = {},
): Promise<{ path: string; count: number; byStatus: Record<string, number>; scenarios: { ready: number; dropped: number; path: string | null }; datasets: Record<string, number> }> {
  if (!(await store.getRun(runId))) throw new Error(`run "${runId}" does not exist (check --run and REDIS_URL / ENVFLEET_REDIS_PREFIX)`);
  const ids = (await store.listDocIds(runId, 'env')).sort();
  await mkdir(dir, { recursive: true });
  const lines: string[] = [];
  const byStatus: Record<string, number> = {};
  for (const id of ids) {
    const env = await store.getDoc<EnvironmentRecord>(runId, 'env', id);
    if (!env) continue;
    byStatus[env.status] = (byStatus[env.status] ?? 0) + 1;
    lines.push(JSON.stringify(environmentLine(env)));
  }
  const path = join(dir, 'environments.jsonl');
  await writeFile(path, lines.length ? `${lines.join('\n')}\n` : '');
  const ready: string[] = [];
  const dropped: string[] = [];
  for (const id of (await store.listDocIds(runId, 'scenario')).sort()) {
    const scenario = await store.getDoc<ScenarioRecord>(runId, 'scenario', id);
    if (scenario?.status === 'ready') ready.push(JSON.stringify(scenarioLine(scenario)));
    else if (scenario?.status === 'dropped') dropped.push(JSON.stringify(droppedScenarioLine(scenario)));
  }
  let scenariosPath: string | null = null;
  if (ready.length || dropped.length) {
    scenariosPath = join(dir, 'scenarios.jsonl');
    await writeFile(scenariosPath, ready.length ? `${ready.join('\n')}\n` : '');
    await writeFile(join(dir, 'scenarios-dropped.jsonl'), dropped.length ? `${dropped.join('\n')}\n` : '');
  }
  const datasets = await exportDatasets(store, runId, dir, options);
  return { path, count: lines.length, byStatus, scenarios: { ready: ready.length, dropped: dropped.length, path: scenariosPath }, datasets };
}

async function writeJsonl(path: string, records: readonly unknown[]): Promise<number> {
  await writeFile(path, records.length ? `${records.map(r => JSON.stringify(r)).join('\n')}\n` : '');
  return records.length;
}

/**
 * The SFT and RL datasets of a run's trajectories (written only when the run has trajectories),
 * one trajectory at a time: those still whole in Redis first (by id), then those the sink wrote,
 * in its shard order.
 */
async function exportDatasets(store: SynthesisStore, runId: string, dir: string, options: ExportOptions): Promise<Record<string, number>> {
  const ids = (await store.listDocIds(runId, 'trajectory')).sort();
  if (!ids.length) return {};
  const formats = new Set(options.formats ?? DATASET_FORMATS);
  const filter = options.filter ?? { solvedOnly: false, minReward: null };
  // Each SFT format: its file, and the records one trajectory gives (none when it has no assistant turn).
  const sft: readonly [DatasetFormat, string, (t: Trajectory) => readonly unknown[]][] = [
    ['openai', 'sft-openai.jsonl', t => [toOpenAI(t)].filter(x => x !== null)],
    ['sharegpt', 'sft-sharegpt.jsonl', t => [toShareGPT(t)].filter(x => x !== null)],
    ['llamafactory', 'sft-llamafactory.jsonl', toLlamaFactory],
  ];
  const writers = sft.filter(([format]) => formats.has(format)).map(([, file, records]) => ({ writer: new JsonlWriter(join(dir, file)), file, records }));
  try {
    const relocate = options.trajectoriesDir ? shardsMovedTo(options.trajectoriesDir) : undefined;
    await forEachFullTrajectory(store, runId, ids, { relocate }, async t => {
      if (!passesFilter(t, filter)) return;
      for (const { writer, records } of writers) for (const record of records(t)) await writer.write(record);
    });
  } catch (err) {
    await Promise.all(writers.map(w => w.writer.abort()));
    throw err;
  }
  const out: Record<string, number> = {};
  for (const { writer, file } of writers) out[file] = await writer.close();
  if (formats.has('rl')) {
    const scenarios: unknown[] = [];
    for (const id of (await store.listDocIds(runId, 'scenario')).sort()) {
      const s = await store.getDoc<ScenarioRecord>(runId, 'scenario', id);
      const env = s && (await store.getDoc<EnvironmentRecord>(runId, 'env', s.environmentId));
      if (s?.status === 'ready' && env) scenarios.push(toRLScenario(s, env));
    }
    out['rl-scenarios.jsonl'] = await writeJsonl(join(dir, 'rl-scenarios.jsonl'), scenarios);
    const groups: unknown[] = [];
    for (const id of (await store.listDocIds(runId, 'group')).sort()) {
      const g = await store.getDoc<GroupStats>(runId, 'group', id);
      if (g) groups.push(toRLGroup(g));
    }
    out['rl-groups.jsonl'] = await writeJsonl(join(dir, 'rl-groups.jsonl'), groups);
  }
  return out;
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
}

/** Freezes the run's rollout settings (first call wins) and enqueues one group flow per (ready scenario, mode). Idempotent. */
export async function submitRollouts(config: AppConfig, redis: Redis, request: RolloutRequest): Promise<{ scenarios: number; groupsAdded: number; config: RolloutConfig }> {
  const store = createRedisSynthesisStore(redis, config.redis.prefix);
  const enqueuer = createRunEnqueuer(redis, { prefix: config.redis.prefix, jobs: config.jobs, store });
  try {
    if (!(await store.getRun(request.runId))) throw new Error(`run "${request.runId}" does not exist; synthesize it and generate scenarios first`);
    let frozen = await store.getDoc<RolloutConfig>(request.runId, 'rollout-config', 'current');
    if (!frozen) {
      const limits = (mode: RolloutMode, steps: number) => ({ maxSteps: request.maxSteps?.[mode] ?? steps, maxTokens: request.maxTokens ?? 0, maxWallMs: request.maxWallMs ?? 600_000 });
      frozen = {
        samples: request.samples,
        modes: request.modes,
        limits: { 'non-conversational': limits('non-conversational', 30), conversational: limits('conversational', 40) },
        policyModel: request.policyModel ?? null,
        userModel: request.userModel ?? null,
        temperature: request.temperature ?? config.profiles['rollout.policy'].temperature,
        maxTokensPerTurn: config.profiles['rollout.policy'].maxTokens,
      };
      await store.putDoc(request.runId, 'rollout-config', 'current', frozen);
    }
    let scenarios = 0;
    let groupsAdded = 0;
    for (const id of await store.listDocIds(request.runId, 'scenario')) {
      const s = await store.getDoc<ScenarioRecord>(request.runId, 'scenario', id);
      if (s?.status !== 'ready') continue;
      scenarios += 1;
      for (const mode of frozen.modes) if (await enqueuer.rolloutFlow(request.runId, id, mode, frozen.samples)) groupsAdded += 1;
    }
    return { scenarios, groupsAdded, config: frozen };
  } finally {
    await enqueuer.close();
  }
}

/** One line of scenarios.jsonl (docs/formats.md). */
export function scenarioLine(s: ScenarioRecord) {
  return {
    id: s.id,
    environmentId: s.environmentId,
    index: s.index,
    initialState: s.initialState,
    task: s.task,
    userGoal: s.userGoal,
    expectedTools: s.expectedTools ?? [],
    checklist: s.checklist ?? [],
    validation: s.validation ?? null,
    lineage: s.lineage,
  };
}

export function droppedScenarioLine(s: ScenarioRecord) {
  return {
    id: s.id,
    environmentId: s.environmentId,
    index: s.index,
    reason: s.dropReason ?? null,
    task: s.task ?? null,
    checklist: s.checklist ?? null,
    validation: s.validation ?? null,
    lineage: s.lineage,
  };
}

/** Outcomes after which an item leaves the pipeline at that stage. */
const LEAVING = new Set(['no-environment', 'low-scores', 'duplicate', 'over-limit', 'rejected', 'rejected-after-repair']);
/** Counters that are measures, not item outcomes. */
const MEASURES = new Set(['items', 'operations', 'tasks', 'descriptions', 'requested', 'invalid', 'repair-round']);
/** Funnel rows that count events, not items of a stage. */
const NOT_STAGES = new Set(['sandbox', 'run', OUTCOME_COUNTERS]);

export interface FunnelRow {
  readonly stage: string;
  readonly entered: number;
  readonly passed: number;
  readonly left: Record<string, number>;
  readonly measures: Record<string, number>;
}

/** The funnel of a run: per stage how many items entered, went on, and left (and why). */
export async function funnelReport(store: SynthesisStore, runId: string): Promise<FunnelRow[]> {
  const funnel = await store.funnel(runId);
  const rows: FunnelRow[] = [];
  for (const [stage, outcomes] of Object.entries(funnel)) {
    if (NOT_STAGES.has(stage)) continue;
    const left: Record<string, number> = {};
    const measures: Record<string, number> = {};
    let passed = 0;
    for (const [outcome, n] of Object.entries(outcomes)) {
      if (MEASURES.has(outcome) || outcome.startsWith('round-')) measures[outcome] = n;
      else if (LEAVING.has(outcome) || outcome.startsWith('dropped:') || outcome.startsWith('failed:')) left[outcome] = n;
      else passed += n;
    }
    const entered = passed + Object.values(left).reduce((a, b) => a + b, 0);
    rows.push({ stage, entered, passed, left, measures });
  }
  return rows;
}

export function formatFunnel(rows: readonly FunnelRow[]): string {
  const lines = ['stage                  entered  passed  left (why)'];
  for (const r of rows) {
    const why = Object.entries(r.left).map(([k, n]) => `${n} ${k}`).join(', ');
    const measures = Object.entries(r.measures).map(([k, n]) => `${k} ${n}`).join(', ');
    lines.push(`${r.stage.padEnd(22)} ${String(r.entered).padStart(7)} ${String(r.passed).padStart(7)}  ${why || '-'}${measures ? `   [${measures}]` : ''}`);
  }
  return lines.join('\n');
}

/** One line of environments.jsonl (documented field by field in docs/formats.md). */
export function environmentLine(env: EnvironmentRecord) {
  return {
    id: env.id,
    status: env.status,
    name: env.className ?? null,
    summary: env.description.summary,
    introduction: env.description.introduction,
    exampleTask: env.description.task ?? null,
    entities: env.state?.entities ?? null,
    stateSchema: env.state?.stateSchema ?? null,
    rules: env.state?.rules ?? null,
    operations: env.operations?.map(o => ({ name: o.name, kind: o.kind })) ?? null,
    tools: env.tools ?? null,
    className: env.className ?? null,
    source: env.source ?? null,
    exampleState: env.state?.exampleState ?? null,
    testState: env.testState ?? null,
    quality: env.quality
      ? { ...env.quality, history: (env.qualityHistory ?? []).map(q => ({ round: q.round, verdict: q.verdict, notFailRate: q.notFailRate, passRate: q.passRate })) }
      : null,
    assembleRepairs: env.assembleRepairs ?? [],
    failure: env.failure ?? null,
    lineage: env.lineage,
  };
}

export async function withProducerRedis<T>(config: AppConfig, fn: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = createRedisConnection(config.redis.url, 'producer');
  try {
    await waitForRedis(redis, config.redis.url);
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

export { PROMPT_VERSIONS };
