import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { QueueEvents, type Job, type Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { chooseRedis } from '../../cli/private-redis.js';
import { loadConfig, type AppConfig, type EnvVarName } from '../../config/index.js';
import { waitForRun, type RunProgress } from '../../queues/run-jobs.js';
import { submitScenarios, submitSynthesis } from '../../queues/submit.js';
import type { Logger } from '../../src/logger.js';
import { createRedisConnection, type Redis as RedisConnection } from '../../src/redis/connection.js';
import { loadModelScript, mergeModelScripts, parseModelScript, startModelServer, type ModelScript, type ModelServer } from '../../src/model-server/index.js';
import { createRedisRunStore, type RunStore } from '../../src/runs/store.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import { fixturesPath } from '../../src/util/package-root.js';
import { startWorkerProcess, type RunningWorker } from '../../workers/main.js';

/** The tests' Redis: REDIS_URL, or the default, or a private redis-server when neither answers (see requireRedis). */
export let REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
/**
 * A new connection to the tests' Redis that records every command it sends (ioredis sends each one through
 * `sendCommand`), under the name `label` gives it: the command's own name unless told otherwise.
 */
export function recordingRedis(label: (command: Parameters<Redis['sendCommand']>[0]) => string = command => command.name): { readonly redis: Redis; readonly sent: string[] } {
  const redis = new Redis(REDIS_URL);
  const sent: string[] = [];
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = (command, stream) => {
    sent.push(label(command));
    return send(command, stream);
  };
  return { redis, sent };
}

/** The `envfleet` command, as a user runs it (from the build). */
export const ENVFLEET_BIN = fileURLToPath(new URL('../../bin/envfleet.js', import.meta.url));
/** The demo's fixture scripts and source tasks. */
export const DEMO = fixturesPath('demo');

let redisReady: Promise<void> | undefined;

/**
 * Makes sure the integration tests have a Redis: the one at REDIS_URL when it answers, otherwise a
 * private redis-server on a free port, started once for the whole test run and stopped when it ends
 * (as `envfleet demo` does), so `npm test` passes by itself on a fresh machine. When neither is
 * possible, the suite fails with one line saying what to install.
 */
export function requireRedis(): Promise<void> {
  redisReady ??= (async () => {
    const choice = await chooseRedis(REDIS_URL, () => undefined);
    if (!choice.private) return;
    process.stderr.write(`integration tests: no Redis answers at ${REDIS_URL}; using a private redis-server at ${choice.url} for this run\n`);
    REDIS_URL = choice.url;
    process.once('exit', () => choice.stopNow());
  })();
  return redisReady;
}

export type Overrides = Partial<Record<EnvVarName, string>>;

/** A configuration isolated under its own key prefix, with fast lock/stall settings for tests. */
export function testConfig(server: ModelServer | null, overrides: Overrides = {}): AppConfig {
  return loadConfig({}, {
    overrides: {
      REDIS_URL,
      ENVFLEET_REDIS_PREFIX: `envfleet-test-${randomUUID().slice(0, 8)}`,
      ...(server ? { OPENAI_BASE_URL: server.url } : {}),
      OPENAI_API_KEY: 'test-key',
      ENVFLEET_JOB_BACKOFF_MS: '100',
      ENVFLEET_LOCK_DURATION_MS: '2000',
      ENVFLEET_STALLED_INTERVAL_MS: '1000',
      ENVFLEET_SHUTDOWN_TIMEOUT_MS: '2000',
      ENVFLEET_RATE_LIMIT_FALLBACK_MS: '200',
      LOG_LEVEL: 'silent',
      ...overrides,
    },
  });
}

/** The environment of an `envfleet` child process that joins `config`'s fleet. */
export function childEnv(config: AppConfig, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    REDIS_URL: config.redis.url,
    ENVFLEET_REDIS_PREFIX: config.redis.prefix,
    OPENAI_BASE_URL: config.endpoints['default']!.baseURL,
    OPENAI_API_KEY: 'test-key',
    ENVFLEET_LOCK_DURATION_MS: String(config.worker.lockDurationMs),
    ENVFLEET_STALLED_INTERVAL_MS: String(config.worker.stalledIntervalMs),
    LOG_LEVEL: 'silent',
    ...extra,
  };
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

export async function scriptedServer(script: unknown, options: { apiKey?: string } = {}): Promise<ModelServer> {
  return startModelServer({ script: parseModelScript(script, 'test script'), ...options });
}

/**
 * A run store on an auto-pipelined connection (the worker's kind) under a fresh key prefix, for the tests of one
 * describe block: opened before them, its keys deleted after. Read `redis` and `store` inside the tests.
 */
export function useRunStore(name: string): { readonly prefix: string; readonly redis: RedisConnection; readonly store: RunStore } {
  const prefix = `envfleet-test-${name}-${randomUUID().slice(0, 8)}`;
  let redis: RedisConnection | undefined;
  let store: RunStore | undefined;
  before(async () => {
    await requireRedis();
    redis = createRedisConnection(REDIS_URL, 'worker', { enableAutoPipelining: true });
    store = createRedisRunStore(redis, prefix);
    await redis.ping();
  });
  after(async () => {
    await dropPrefix(prefix);
    redis?.disconnect();
  });
  return {
    prefix,
    get redis() {
      if (!redis) throw new Error('useRunStore: the connection opens before the tests');
      return redis;
    },
    get store() {
      if (!store) throw new Error('useRunStore: the store opens before the tests');
      return store;
    },
  };
}

/** Deletes every key under a test prefix. */
export async function dropPrefix(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

/** Waits for a job to finish through the queue's events stream; resolves with the job. */
export async function finished(queue: Queue, jobId: string, timeoutMs = 300_000): Promise<Job> {
  const events = new QueueEvents(queue.name, { connection: { url: REDIS_URL }, prefix: queue.opts.prefix! });
  try {
    await events.waitUntilReady();
    const job = await queue.getJob(jobId);
    if (!job) throw new Error(`job ${jobId} not found`);
    await job.waitUntilFinished(events, timeoutMs).catch(() => undefined);
    const final = await queue.getJob(jobId);
    return final!;
  } finally {
    await events.close();
  }
}

/** Polls until `predicate` holds (for states with no event, e.g. "active"); never asserts on time. */
export async function until(predicate: () => Promise<boolean>, what: string, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise(resolve => setTimeout(resolve, 50));
  }
}

/** Resolves when a child process has exited. */
export const exited = (child: ChildProcess) => (child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>(resolve => child.once('exit', () => resolve())));

export interface FleetOptions {
  /** Rules tried before the demo fixtures (the scripted model answers everything else from them). */
  readonly extra?: ModelScript;
  /** A script instead of the demo fixtures. */
  readonly script?: ModelScript;
  readonly overrides?: Overrides;
  /** In-process workers for every queue (default), for some queues, or none yet. */
  readonly workers?: boolean | { readonly queues?: readonly string[]; readonly concurrency?: number };
}

/** One integration test's fleet: a scripted model server, a configuration under its own key prefix, workers. */
export interface Fleet {
  readonly server: ModelServer;
  readonly config: AppConfig;
  /** A producer connection of the test, and the run store on it. */
  readonly redis: Redis;
  readonly store: RunStore;
  /** The in-process workers (throws when none run). */
  readonly workers: RunningWorker;
  /** Starts in-process workers (the first time, or again after stopWorkers). */
  startWorkers(options?: { readonly queues?: readonly string[]; readonly concurrency?: number; readonly config?: AppConfig }): Promise<RunningWorker>;
  stopWorkers(): Promise<void>;
  /** Runs `envfleet worker` as a child process in this fleet (killed at teardown), from `cwd` (default: the checkout). */
  spawnWorker(extraEnv?: Record<string, string>, cwd?: string): ChildProcess;
  /** Waits until the run has no outstanding job. */
  waitForRun(runId: string): Promise<RunProgress>;
  /** Replaces the scripted server by a fresh one (empty log) with the same script; returns a configuration pointing at it, under the same prefix. */
  restartServer(): Promise<AppConfig>;
  /** Child processes of the test (killed at teardown). */
  readonly children: ChildProcess[];
}

/**
 * Registers the hooks of an integration suite (Redis must answer; after each test, or after the suite
 * with `scope: 'suite'`, every process the fleet started is stopped and its Redis keys deleted) and
 * returns the function that starts a fleet.
 */
export function useFleet(scope: 'test' | 'suite' = 'test'): (options?: FleetOptions) => Promise<Fleet> {
  let current: { stop(): Promise<void> } | undefined;
  before(requireRedis);
  (scope === 'test' ? afterEach : after)(async () => {
    await current?.stop();
    current = undefined;
  });
  return async (options = {}) => {
    const demo = await loadModelScript(DEMO);
    const script = options.script ?? (options.extra ? mergeModelScripts([options.extra, demo]) : demo);
    let server = await startModelServer({ script });
    const config = testConfig(server, options.overrides);
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    const store = createRedisRunStore(redis, config.redis.prefix);
    const children: ChildProcess[] = [];
    let running: RunningWorker | undefined;
    const fleet: Fleet = {
      get server() {
        return server;
      },
      config,
      redis,
      store,
      get workers() {
        if (!running) throw new Error('no in-process workers are running in this test');
        return running;
      },
      async startWorkers(o = {}) {
        running = await startWorkerProcess(o.config ?? config, silentLogger(), { ...(o.queues ? { queues: o.queues } : {}), ...(o.concurrency ? { concurrency: o.concurrency } : {}) });
        return running;
      },
      async stopWorkers() {
        await running?.stop();
        running = undefined;
      },
      spawnWorker(extraEnv = {}, cwd) {
        const child = spawn(process.execPath, [ENVFLEET_BIN, 'worker'], { env: childEnv(config, extraEnv), stdio: 'ignore', ...(cwd ? { cwd } : {}) });
        children.push(child);
        return child;
      },
      waitForRun: runId => waitForRun(store, runId, () => undefined, { queues: { connection: redis, prefix: config.redis.prefix } }),
      async restartServer() {
        await server.close();
        server = await startModelServer({ script });
        return testConfig(server, { ...options.overrides, ENVFLEET_REDIS_PREFIX: config.redis.prefix });
      },
      children,
    };
    current = {
      async stop() {
        for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
        await running?.stop();
        await server.close();
        redis.disconnect();
        await dropPrefix(config.redis.prefix);
      },
    };
    const workers = options.workers ?? true;
    if (workers) await fleet.startWorkers(workers === true ? {} : workers);
    return fleet;
  };
}

/** Builds the demo run `runId` in a fleet (synthesis, then 3 scenarios per kept environment) and returns its ready scenarios. */
export async function buildDemoRun(f: Fleet, runId: string): Promise<ScenarioRecord[]> {
  await submitSynthesis(f.config, f.redis, { runId, tasks: `${DEMO}/source-tasks.jsonl`, probeSteps: 8 });
  await f.waitForRun(runId);
  await submitScenarios(f.config, f.redis, { runId, perEnv: 3 });
  await f.waitForRun(runId);
  const ready: ScenarioRecord[] = [];
  for (const id of await f.store.listDocIds(runId, 'scenario')) {
    const s = (await f.store.getDoc(runId, 'scenario', id))!;
    if (s.status === 'ready') ready.push(s);
  }
  return ready;
}

/** An `envfleet serve` process of a test, its address and its server id. */
export interface ServeProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly id: string;
}

/** Starts `envfleet serve ARGS` as its own process (killed with the fleet) and reads its address and server id from its first line. */
export async function spawnServe(f: Fleet, args: readonly string[]): Promise<ServeProcess> {
  const child = spawn(process.execPath, [ENVFLEET_BIN, 'serve', ...args], { env: childEnv(f.config, { LOG_LEVEL: 'warn' }), stdio: ['ignore', 'pipe', 'pipe'] });
  f.children.push(child);
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = / at (http:\/\/\S+) .*server id (\S+)\n/.exec(out);
      if (m) resolve({ child, url: m[1]!, id: m[2]! });
    });
    child.once('exit', code => reject(new Error(`envfleet serve exited ${code} before listening: ${err}`)));
  });
}
