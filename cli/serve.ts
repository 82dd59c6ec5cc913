import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { basename, dirname, resolve } from 'node:path';
import type { AppConfig } from '../config/index.js';
import { ConfigError, loadConfig } from '../config/index.js';
import { HEADER_SAFE_TOKEN, HEADER_SAFE_TOKEN_PROBLEM } from '../config/env.js';
import { LOOPBACK_HOSTS, startEnvServer, type EnvServer } from '../http/env-server/server.js';
import { createRedisSessionDirectory, type SessionDirectory } from '../src/env-server/directory.js';
import { loadExportScenarioSource } from '../src/env-server/file-source.js';
import { createSessionRegistry, runScenarioSource, type ScenarioSource, type SessionRegistry } from '../src/env-server/sessions.js';
import { RequestError } from '../src/errors.js';
import { createLogger, type Logger } from '../src/logger.js';
import { createRedisConnection, describeRedis, waitForRedis, type Redis } from '../src/redis/connection.js';
import { createRedisRunStore } from '../src/runs/store.js';
import { createSandboxPool, SANDBOX_THREAD_FILE } from '../workers/sandbox-pool.js';
import { onTerminationSignals } from '../workers/shutdown.js';
import { createLanguageRouter } from '../src/sandbox/language-router.js';
import { createPythonSandboxRunner } from '../src/sandbox/python/python-runner.js';
import { runNameProblem } from '../src/runs/ids.js';

export interface ServeOptions {
  /** The run whose ready scenarios are served (from its Redis); or, instead, an export's two files: */
  readonly run?: string | undefined;
  /** environments.jsonl of an export (`envfleet export`). */
  readonly environments?: string | undefined;
  /** scenarios.jsonl of the same export. */
  readonly scenarios?: string | undefined;
  readonly port: number;
  readonly host: string;
  readonly maxSessions: number;
  readonly idleTimeout: number;
  readonly token?: string | undefined;
  /** Where the other serve processes reach this one (default: http://HOST:PORT, the machine's name for 0.0.0.0). */
  readonly advertiseUrl?: string | undefined;
  /** Seconds an ended session's result stays readable through every serve process. */
  readonly resultTtl?: number | undefined;
}

/** A process whose heartbeat is older than this is gone; it beats every third of it. */
export const HEARTBEAT_TTL_MS = 10_000;
export const DEFAULT_RESULT_TTL_S = 600;

export interface Serving {
  readonly url: string;
  readonly registry: SessionRegistry;
  readonly server: EnvServer;
  /** Null when the server runs alone (an export served without Redis). */
  readonly directory: SessionDirectory | null;
  /** What it serves: the run's name (from an export, the run its scenarios name). */
  readonly serves: string;
  /** Stops listening, ends every session (their results are then gone with the process), closes the pool and Redis. */
  close(): Promise<void>;
}

/** Checks the settings of `envfleet serve`; the message says what to fix. */
export function validateServeOptions(opts: ServeOptions): void {
  const problems: string[] = [];
  const fromExport = opts.environments !== undefined || opts.scenarios !== undefined;
  if (opts.run !== undefined && fromExport) problems.push('give either --run NAME (a run in Redis) or --environments FILE --scenarios FILE (an export), not both');
  else if (opts.run === undefined && !fromExport) problems.push('say what to serve: --run NAME (a run in Redis), or --environments DIR/environments.jsonl --scenarios DIR/scenarios.jsonl (an export made by envfleet export)');
  else if (fromExport && (!opts.environments || !opts.scenarios)) problems.push(`an export is served from two files: give both --environments DIR/environments.jsonl and --scenarios DIR/scenarios.jsonl (missing: ${opts.environments ? '--scenarios' : '--environments'})`);
  if (opts.run !== undefined && runNameProblem(opts.run)) problems.push(`--run: ${runNameProblem(opts.run)}; envfleet runs lists the runs`);
  if (!Number.isInteger(opts.maxSessions) || opts.maxSessions < 1) problems.push(`--max-sessions must be a whole number ≥ 1 (got ${opts.maxSessions})`);
  if (!Number.isInteger(opts.idleTimeout) || opts.idleTimeout < 0) problems.push(`--idle-timeout must be milliseconds, a whole number ≥ 0 (0: never; got ${opts.idleTimeout})`);
  if (opts.idleTimeout > 0 && opts.idleTimeout < 1_000) problems.push(`--idle-timeout ${opts.idleTimeout} ms would end sessions between a model's turns: give at least 1000 ms (or 0 for never)`);
  if (opts.resultTtl !== undefined && (!Number.isInteger(opts.resultTtl) || opts.resultTtl < 1)) problems.push(`--result-ttl must be seconds, a whole number ≥ 1 (got ${opts.resultTtl})`);
  if (opts.advertiseUrl !== undefined) {
    let ok: boolean;
    try {
      const u = new URL(opts.advertiseUrl);
      ok = (u.protocol === 'http:' || u.protocol === 'https:') && u.pathname === '/' && !u.search && !u.username;
    } catch {
      ok = false;
    }
    if (!ok) problems.push(`--advertise-url "${opts.advertiseUrl}" is not a base URL such as http://10.0.0.5:8090 (http or https, no path, no credentials): the other serve processes forward requests there`);
  }
  if (opts.token !== undefined && opts.token.trim().length < 8) problems.push('--token must be at least 8 characters');
  else if (opts.token !== undefined && !HEADER_SAFE_TOKEN.test(opts.token)) problems.push(`--token: ${HEADER_SAFE_TOKEN_PROBLEM}`);
  if (!LOOPBACK_HOSTS.has(opts.host) && !opts.token) problems.push(`--host ${opts.host} is not loopback: anyone who can reach it could run environments; set ENVFLEET_SERVE_TOKEN (or pass --token TOKEN; clients send Authorization: Bearer TOKEN), or bind to 127.0.0.1`);
  if (problems.length) throw new ConfigError(`serve settings: ${problems.join('; ')}`);
}

/**
 * Each session holds one task of the sandbox pool for its whole life, and the pool runs at most
 * threads × tasks per thread: a session opened beyond that would wait in the pool's queue, unanswered,
 * instead of being refused with OVER_CAPACITY. So --max-sessions may not exceed it.
 */
export function validateCapacity(config: Pick<AppConfig, 'pool'>, opts: Pick<ServeOptions, 'maxSessions'>): void {
  const capacity = config.pool.threads * config.pool.tasksPerThread;
  if (opts.maxSessions > capacity) {
    throw new ConfigError(
      `serve settings: --max-sessions ${opts.maxSessions} is more than the sandbox pool holds (${config.pool.threads} threads × ${config.pool.tasksPerThread} tasks per thread = ${capacity}); ` +
        'sessions past it would wait unanswered. Lower --max-sessions, or raise ENVFLEET_POOL_TASKS_PER_THREAD (or ENVFLEET_POOL_THREADS); each thread also bounds its environments\' memory (ENVFLEET_SANDBOX_HEAP_MB).',
    );
  }
}

/** The URL other processes reach a server at: its own, with the machine's name for a wildcard address. */
export function advertisedUrl(listening: string, host: string): string {
  const u = new URL(listening);
  if (host === '0.0.0.0' || host === '::' || host === '') u.hostname = hostname();
  return u.origin;
}

/** What a server serves: a run in Redis, or an export's files. */
async function openSource(config: AppConfig, opts: ServeOptions, redis: Redis | null, logger: Logger): Promise<{ source: ScenarioSource; serves: string; content: string }> {
  if (opts.run) {
    if (!redis) throw new RequestError(`serving run "${opts.run}" needs its Redis (${describeRedis(config.redis)}), which does not answer: start it, or serve an export with --environments and --scenarios`);
    const store = createRedisRunStore(redis, config.redis.prefix);
    if (!(await store.getRun(opts.run))) throw new RequestError(`run "${opts.run}" does not exist (envfleet runs lists the runs under this ENVFLEET_REDIS_PREFIX)`);
    const ready = (await store.statusCounts(opts.run, 'scenario'))['ready'] ?? 0;
    if (ready === 0) throw new RequestError(`run "${opts.run}" has no ready scenario to serve: make some with envfleet scenarios --run ${opts.run}`);
    return { source: runScenarioSource(store, opts.run), serves: opts.run, content: `run:${opts.run}` };
  }
  // An export: the limits a run freezes at submission are the configured ones (ENVFLEET_SANDBOX_*).
  const loaded = await loadExportScenarioSource({ environments: opts.environments!, scenarios: opts.scenarios! }, config.sandbox);
  if (loaded.ready === 0) {
    throw new RequestError(`${opts.scenarios} has no scenario to serve (${loaded.unservable} whose environment is missing from ${opts.environments} or not kept): pass the environments.jsonl and scenarios.jsonl of one export`);
  }
  logger.info({ ready: loaded.ready, unservable: loaded.unservable, environments: loaded.environments, run: loaded.runName }, 'serving an export');
  return { source: loaded.source, serves: loaded.runName ?? `export:${basename(dirname(resolve(opts.scenarios!)))}`, content: loaded.content };
}

/**
 * Starts the environment server: the sandbox pool, the session registry, the HTTP surface, and its entry in
 * the session directory that the serve processes sharing its Redis use to forward requests to each other.
 * From an export, a Redis that does not answer leaves the server on its own (no directory).
 */
export async function startServing(config: AppConfig, logger: Logger, given: ServeOptions): Promise<Serving> {
  // The token from --token, else ENVFLEET_SERVE_TOKEN (kept out of the process list).
  const token = given.token ?? config.serve.token ?? undefined;
  const opts: ServeOptions = { ...given, token };
  validateServeOptions(opts);
  validateCapacity(config, opts);
  const closers: (() => Promise<void> | void)[] = [];
  const closeAll = async () => {
    for (const close of closers.splice(0).reverse()) await Promise.resolve(close()).catch(() => undefined);
  };
  try {
    // Failing fast while Redis is away, as the directory's connection does: a seed reading a scenario then waited for it
    // with no end, holding its session slot (a stranger's probe filled --max-sessions so), and ran for a client long gone.
    let redis: Redis | null = createRedisConnection(config.redis, 'producer');
    const r = redis;
    closers.push(() => r.disconnect());
    try {
      await waitForRedis(redis, config.redis);
    } catch (err) {
      if (opts.run) throw err;
      logger.warn({ err }, 'Redis does not answer: serving the export from this process alone (no session directory, no forwarding)');
      redis.disconnect();
      redis = null;
    }
    const { source, serves, content } = await openSource(config, opts, redis, logger);
    const pool = createSandboxPool(config, logger, SANDBOX_THREAD_FILE);
    closers.push(() => pool.close());
    await pool.started();
    // Python environments (language "python") go to the Pyodide runtime, forked on the first one.
    const python = createPythonSandboxRunner({ ...config.python, logger: logger.child({ component: 'python-sandbox' }) });
    closers.push(() => python.close());
    const sandbox = createLanguageRouter({ js: pool, python });
    // The directory's address is known once the port is: the URL is filled in before the first heartbeat.
    let advertised = opts.advertiseUrl ?? '';
    let directory: SessionDirectory | null = null;
    if (redis) {
      // Its own connection, failing fast: a request waiting on the directory while Redis is down would hang.
      const directoryRedis = createRedisConnection(config.redis, 'producer');
      closers.push(() => directoryRedis.disconnect());
      await directoryRedis.connect().catch(() => undefined);
      directory = createRedisSessionDirectory(directoryRedis, config.redis.prefix, {
        serverId: `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`,
        get url() {
          return advertised;
        },
        serves,
        content,
        heartbeatTtlMs: HEARTBEAT_TTL_MS,
        resultTtlMs: (opts.resultTtl ?? DEFAULT_RESULT_TTL_S) * 1000,
      });
    }
    const resultTtlMs = (opts.resultTtl ?? DEFAULT_RESULT_TTL_S) * 1000;
    const registry = createSessionRegistry(
      { sandbox, scenarios: source, logger, ...(directory ? { directory } : {}) },
      { maxSessions: opts.maxSessions, idleTimeoutMs: opts.idleTimeout, keepResultsForMs: resultTtlMs },
    );
    const server = await startEnvServer(registry, logger, { port: opts.port, host: opts.host, token: opts.token ?? null, runId: serves, directory, wsPingIntervalMs: config.serve.wsPingIntervalMs });
    // Closed in reverse: the process says it has no room (no peer sends it new sessions), ends its sessions
    // (`shutdown`, not scored: the stop cut them; their results go to the directory, where every peer finds them;
    // requests meanwhile get SESSION_CLOSED and verify SESSION_INTERRUPTED, new sessions OVER_CAPACITY), stops
    // listening (a /ws client whose episode it cut is first told so, SESSION_INTERRUPTED), then leaves the directory.
    if (directory) {
      const d = directory;
      closers.push(() => d.leave().catch(err => logger.warn({ err }, 'leaving the session directory failed; the entry expires by itself')));
    }
    closers.push(() => server.close());
    closers.push(() => registry.closeAll());
    if (directory) {
      const d = directory;
      if (!advertised) advertised = advertisedUrl(server.url, opts.host);
      // Redis down at the start (or gone since the connect): the process serves alone, as it does when Redis stops later;
      // the beats below register it once Redis answers.
      let registered = await d.heartbeat(registry.stats()).then(
        () => true,
        (err: unknown) => {
          logger.warn({ err }, "the session directory did not take this process's entry; it serves its own sessions alone until Redis answers");
          return false;
        },
      );
      const beat = setInterval(() => {
        d.heartbeat(registry.stats()).then(
          () => {
            // Registered late (Redis refused the first beat): said when it happens, as the start says it.
            if (!registered) logger.info({ server: d.serverId, advertised }, 'env server registered in the session directory (its first heartbeats failed)');
            registered = true;
          },
          (err: unknown) => logger.warn({ err }, 'the session directory heartbeat failed; other serve processes may count this one gone'),
        );
      }, HEARTBEAT_TTL_MS / 3);
      beat.unref();
      closers.push(async () => {
        clearInterval(beat);
        await d.heartbeat({ active: registry.stats().active, max: 0 }).catch(() => undefined);
      });
      if (registered) logger.info({ server: d.serverId, advertised }, 'env server registered in the session directory');
      // (Later, `registered` is the beats' to set.)
    }
    return { url: server.url, registry, server, directory, serves, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** `envfleet serve`. */
export async function serveCommand(opts: ServeOptions): Promise<void> {
  const config = loadConfig();
  const token = opts.token ?? config.serve.token ?? undefined;
  validateServeOptions({ ...opts, token });
  validateCapacity(config, opts);
  const logger = createLogger(config);
  const serving = await startServing(config, logger, opts);
  const what = opts.run ? `run ${opts.run}` : `the export ${opts.scenarios} (run ${serving.serves})`;
  process.stdout.write(`envfleet environment server for ${what} at ${serving.url} (NeMo Gym style: POST /seed_session, POST /{tool}, POST /verify; MCP: POST /sessions, /sessions/{id}/mcp; OpenEnv: /ws; ${token ? 'token required' : 'no token: loopback only'}); ${serving.directory ? `server id ${serving.directory.serverId}` : 'alone: no Redis, no forwarding between serve processes'}\n`);
  onTerminationSignals(() => serving.close(), logger, {
    stopping: () => {
      const { active } = serving.registry.stats();
      return `stopping: ${active} open session${active === 1 ? '' : 's'} end as shutdown (not scored); new sessions are refused`;
    },
    stopped: 'env server stopped',
    failed: 'the env server did not stop cleanly',
  });
}
