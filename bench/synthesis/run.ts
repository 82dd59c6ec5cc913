/**
 * One configuration of bench/synthesis.ts: a fresh scripted model server (every rule answers after
 * a fixed delay), a fresh worker process context under a unique Redis prefix, the demo source
 * tasks submitted once, the run followed to its end, then the raw material for the report
 * collected (server log with answer times, BullMQ jobs, environment records) and the prefix's
 * keys deleted.
 */
import { deletePrefix } from '../redis-keys.js';
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { loadConfig } from '../../config/index.js';
import { loadModelScript, parseModelScript, startModelServer, type ModelScript, type ReceivedRequest } from '../../src/model-server/index.js';
import type { EnvironmentRecord, SourceTask } from '../../src/synthesis/types.js';
import { submitSynthesis } from '../../queues/submit.js';
import { startBenchWorker, type BenchWorker, type LimiterWait } from './worker.js';

export interface RunSettings {
  readonly label: string;
  /** Redis key prefix of this configuration (unique per run; deleted at the end). */
  readonly prefix: string;
  readonly redisUrl: string;
  readonly fixtures: string;
  readonly tasksFile: string;
  readonly delayMs: number;
  /** ENVFLEET_MODEL_MAX_CONCURRENCY: fleet-wide cap of requests in flight to the endpoint. */
  readonly modelCap: number;
  /** BullMQ worker concurrency per queue. */
  readonly workerConcurrency: number;
  readonly probeSteps: number;
  /** Gives up on the run after this long (the run is then reported as unfinished). */
  readonly timeoutMs: number;
  readonly progress: (line: string) => void;
}

/** A server log entry with the time its answer was finished (the log itself only has arrival). */
export interface LoggedCall {
  readonly seq: number;
  readonly path: string;
  readonly stage: string | null;
  readonly status: number | null;
  readonly fault: string | null;
  readonly rule: string | null;
  readonly startMs: number;
  readonly endMs: number;
  readonly body: unknown;
}

export interface JobRecord {
  readonly queue: string;
  readonly id: string;
  readonly state: 'completed' | 'failed';
  readonly data: { readonly runId?: string; readonly taskId?: string; readonly envId?: string; readonly op?: string; readonly round?: number };
  readonly timestamp: number;
  readonly processedOn: number;
  readonly finishedOn: number;
  readonly attemptsStarted: number;
  readonly attemptsMade: number;
  /** Id of the flow parent, when the job is a flow child. */
  readonly parentId: string | null;
}

export interface RunData {
  readonly settings: Omit<RunSettings, 'progress'>;
  readonly prefix: string;
  readonly runId: string;
  /** Epoch ms just before submitSynthesis. */
  readonly t0: number;
  /** Epoch ms when the run's outstanding-job set was first seen empty (polled every 20 ms). */
  readonly tDone: number;
  readonly finished: boolean;
  readonly calls: readonly LoggedCall[];
  readonly jobs: readonly JobRecord[];
  readonly envs: readonly EnvironmentRecord[];
  readonly tasks: readonly SourceTask[];
  readonly funnel: Record<string, Record<string, number>>;
  readonly ledger: { readonly requests: number; readonly cachedRequests: number };
  /** Retry-After of the injected 429 rule(s), in ms, from the script. */
  readonly retryAfterMs: readonly number[];
  /** Every endpoint-slot acquisition by the gateway's limiter, timed. */
  readonly limiterWaits: readonly LimiterWait[];
  readonly cpu: CpuUse;
  readonly keysLeft: number;
  readonly configEcho: Record<string, string | number>;
}

export interface CpuUse {
  readonly wallS: number;
  /** Cores used by this process (main thread, sandbox threads), Redis, and everything else. */
  readonly selfCores: number;
  readonly redisCores: number;
  readonly otherCores: number;
}

/** Every rule without a fault answers after `delayMs`; rules that already have one keep it. */
export function delayedScript(script: ModelScript, delayMs: number): ModelScript {
  return parseModelScript(
    { ...script, rules: (script.rules ?? []).map(rule => (rule.fault ? rule : { ...rule, fault: { type: 'delay' as const, ms: delayMs } })) },
    '<delayed demo fixtures>',
  );
}

const TICKS = 100;

function machineBusyS(): number {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    return ((cpu[0] ?? 0) + (cpu[1] ?? 0) + (cpu[2] ?? 0) + (cpu[5] ?? 0) + (cpu[6] ?? 0) + (cpu[7] ?? 0)) / TICKS;
  } catch {
    return NaN;
  }
}

async function redisCpuS(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const field = (name: string) => Number(/^(\S+):(\S+)$/m.exec(info.split('\n').find(l => l.startsWith(`${name}:`)) ?? '')?.[2] ?? NaN);
  return field('used_cpu_sys') + field('used_cpu_user');
}


function toCall(entry: ReceivedRequest, endMs: number | undefined): LoggedCall {
  const startMs = Date.parse(entry.at);
  return {
    seq: entry.seq,
    path: entry.path,
    stage: entry.stage,
    status: entry.status,
    fault: entry.fault,
    rule: entry.rule,
    startMs,
    endMs: endMs ?? startMs,
    body: entry.body,
  };
}

/** Stops the configuration in progress (for Ctrl-C): server first, so in-flight requests fail fast, then the workers. */
let interruptActive: (() => Promise<void>) | null = null;
export async function interruptRun(): Promise<void> {
  await interruptActive?.();
}

export async function runConfiguration(s: RunSettings): Promise<RunData> {
  const { progress, ...settings } = s;
  const script = await loadModelScript(s.fixtures);
  const retryAfterMs = (script.rules ?? []).flatMap(r => (r.fault?.type === 'rate_limit' ? [(r.fault.retryAfterS ?? 0) * 1000] : []));
  const ended = new Map<number, number>();
  const server = await startModelServer({ script: delayedScript(script, s.delayMs), port: 0, onLog: e => ended.set(e.seq, Date.now()) });
  const prefix = s.prefix;
  const admin = new Redis(s.redisUrl, { maxRetriesPerRequest: 3 });
  const overrides = {
    REDIS_URL: s.redisUrl,
    ENVFLEET_REDIS_PREFIX: prefix,
    OPENAI_BASE_URL: server.url,
    OPENAI_API_KEY: 'envfleet-local',
    ENVFLEET_MODEL_MAX_CONCURRENCY: String(s.modelCap),
    ENVFLEET_WORKER_CONCURRENCY: String(s.workerConcurrency),
    ENVFLEET_SHUTDOWN_TIMEOUT_MS: '5000',
    LOG_LEVEL: 'silent',
  } as const;
  const config = loadConfig({}, { overrides });
  const configEcho: Record<string, string | number> = {
    'worker concurrency per queue': config.worker.concurrency,
    'endpoint concurrency cap': config.endpoints['default']!.maxConcurrency,
    'job attempts': config.jobs.attempts,
    'job backoff (ms, exponential)': config.jobs.backoffMs,
    'structured-output repair attempts': config.gateway.repairAttempts,
    'assemble repair rounds': config.synthesis.assembleRounds,
    'verdict repair rounds': config.synthesis.verdictRepairRounds,
    'sandbox pool threads': config.pool.threads,
    'response cache': config.gateway.cacheEnabled ? 'on (per run)' : 'off',
  };
  let running: BenchWorker | undefined;
  try {
    running = await startBenchWorker(config, s.workerConcurrency);
    const worker = running;
    interruptActive = async () => {
      await server.close().catch(() => undefined);
      await worker.stop().catch(() => undefined);
    };
    const { store } = running.ctx;
    const runId = `bench-synth-cap${s.modelCap}`;
    const cpuStart = { at: performance.now(), machine: machineBusyS(), self: process.cpuUsage(), redis: await redisCpuS(admin) };
    const t0 = Date.now();
    const submission = await submitSynthesis(config, running.ctx.redis, { runId, tasks: s.tasksFile, probeSteps: s.probeSteps });
    progress(`[${s.label}] run ${runId}: ${submission.items} source tasks, ${submission.jobsAdded} jobs enqueued`);
    let tDone = 0;
    let finished = false;
    let lastReport = 0;
    for (;;) {
      const pending = await store.pendingCount(runId);
      const now = Date.now();
      if (pending === 0) {
        tDone = now;
        finished = true;
        break;
      }
      if (now - t0 > s.timeoutMs) {
        tDone = now;
        break;
      }
      if (now - lastReport > 2000) {
        progress(`[${s.label}] ${((now - t0) / 1000).toFixed(1)} s: ${pending} jobs outstanding, ${server.log().length} model requests so far`);
        lastReport = now;
      }
      await new Promise(resolve => setTimeout(resolve, 20));
    }
    const cpuEnd = { at: performance.now(), machine: machineBusyS(), self: process.cpuUsage(cpuStart.self), redis: await redisCpuS(admin) };
    const wallS = (cpuEnd.at - cpuStart.at) / 1000;
    const selfS = (cpuEnd.self.user + cpuEnd.self.system) / 1e6;
    const redisS = cpuEnd.redis - cpuStart.redis;
    const cpu: CpuUse = {
      wallS,
      selfCores: selfS / wallS,
      redisCores: redisS / wallS,
      otherCores: Math.max(0, (cpuEnd.machine - cpuStart.machine - selfS - redisS) / wallS),
    };
    progress(`[${s.label}] run ${finished ? 'finished' : 'NOT finished'} after ${((tDone - t0) / 1000).toFixed(2)} s`);

    const jobs: JobRecord[] = [];
    for (const w of running.workers) {
      for (const state of ['completed', 'failed'] as const) {
        for (const job of await w.queue.getJobs([state], 0, -1)) {
          if (!job.id) continue;
          jobs.push({
            queue: w.name,
            id: job.id,
            state,
            data: job.data as JobRecord['data'],
            timestamp: job.timestamp,
            processedOn: job.processedOn ?? job.timestamp,
            finishedOn: job.finishedOn ?? job.processedOn ?? job.timestamp,
            attemptsStarted: job.attemptsStarted,
            attemptsMade: job.attemptsMade,
            parentId: job.parent?.id ?? null,
          });
        }
      }
    }
    const envs: EnvironmentRecord[] = [];
    for (const id of await store.listDocIds(runId, 'env')) {
      const env = await store.getDoc(runId, 'env', id);
      if (env) envs.push(env);
    }
    const tasks: SourceTask[] = [];
    for (const id of await store.listDocIds(runId, 'task')) {
      const task = await store.getDoc(runId, 'task', id);
      if (task) tasks.push(task);
    }
    const funnel = await store.counters(runId);
    const totals = await running.ctx.ledger.totals(runId);
    // Let the last answers' 'close' handlers run before the log is read.
    await new Promise(resolve => setTimeout(resolve, 50));
    const calls = server
      .log()
      .filter(e => e.path === '/v1/chat/completions' || e.path === '/v1/embeddings')
      .map(e => toCall(e, ended.get(e.seq)));
    const limiterWaits = [...running.waits];
    await running.stop();
    running = undefined;
    const keysLeft = await deletePrefix(admin, prefix);
    return {
      settings,
      prefix,
      runId,
      t0,
      tDone,
      finished,
      calls,
      jobs,
      envs,
      tasks,
      funnel,
      ledger: { requests: totals.requests, cachedRequests: totals.cachedRequests },
      retryAfterMs,
      limiterWaits,
      cpu,
      keysLeft,
      configEcho,
    };
  } finally {
    interruptActive = null;
    if (running) await running.stop().catch(() => undefined);
    await server.close().catch(() => undefined);
    await deletePrefix(admin, prefix).catch(() => undefined);
    admin.disconnect();
  }
}

export { deletePrefix };
