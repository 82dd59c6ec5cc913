import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AppConfig } from '../config/index.js';
import { createRunEnqueuer } from '../queues/run-enqueuer.js';
import { skeletonStateQueue } from '../queues/skeleton-state.queue.js';
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

export interface RunProgress {
  readonly outstanding: number;
  readonly environments: Record<string, number>;
}

export async function runProgress(store: SynthesisStore, runId: string): Promise<RunProgress> {
  const environments: Record<string, number> = {};
  for (const id of await store.listDocIds(runId, 'env')) {
    const env = await store.getDoc<EnvironmentRecord>(runId, 'env', id);
    if (env) environments[env.status] = (environments[env.status] ?? 0) + 1;
  }
  return { outstanding: await store.pendingCount(runId), environments };
}

/** Waits until the run has no outstanding job, reporting progress when it changes. */
export async function waitForRun(store: SynthesisStore, runId: string, report: (p: RunProgress) => void, signal?: AbortSignal): Promise<RunProgress> {
  let last = '';
  for (;;) {
    const progress = await runProgress(store, runId);
    const line = JSON.stringify(progress);
    if (line !== last) report(progress);
    last = line;
    if (progress.outstanding === 0) return progress;
    await sleep(500, signal);
  }
}

/** Writes DIR/environments.jsonl: every environment of the run, kept, rejected and failed, by id. */
export async function exportRun(store: SynthesisStore, runId: string, dir: string): Promise<{ path: string; count: number; byStatus: Record<string, number> }> {
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
  return { path, count: lines.length, byStatus };
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
