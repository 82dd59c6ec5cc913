import type { AppConfig } from '../config/index.js';
import { ConfigError, loadConfig } from '../config/index.js';
import { LOOPBACK_HOSTS, startEnvServer, type EnvServer } from '../http/env-server/server.js';
import { createSessionRegistry, runScenarioSource, type SessionRegistry } from '../src/env-server/sessions.js';
import { RequestError } from '../src/errors.js';
import { createLogger, type Logger } from '../src/logger.js';
import { createRedisConnection, waitForRedis } from '../src/redis/connection.js';
import { createRedisRunStore } from '../src/runs/store.js';
import { createSandboxPool, SANDBOX_THREAD_FILE } from '../workers/sandbox-pool.js';

export interface ServeOptions {
  readonly run: string;
  readonly port: number;
  readonly host: string;
  readonly maxSessions: number;
  readonly idleTimeout: number;
  readonly token?: string | undefined;
}

export interface Serving {
  readonly url: string;
  readonly registry: SessionRegistry;
  readonly server: EnvServer;
  /** Stops listening, ends every session (their results are then gone with the process), closes the pool and Redis. */
  close(): Promise<void>;
}

/** Checks the settings of `envfleet serve`; the message says what to fix. */
export function validateServeOptions(opts: ServeOptions): void {
  const problems: string[] = [];
  if (!/^[A-Za-z0-9_.-]{1,100}$/.test(opts.run)) problems.push(`--run "${opts.run}" is not a run name (letters, digits, . _ -): envfleet runs lists them`);
  if (!Number.isInteger(opts.maxSessions) || opts.maxSessions < 1) problems.push(`--max-sessions must be a whole number ≥ 1 (got ${opts.maxSessions})`);
  if (!Number.isInteger(opts.idleTimeout) || opts.idleTimeout < 0) problems.push(`--idle-timeout must be milliseconds, a whole number ≥ 0 (0: never; got ${opts.idleTimeout})`);
  if (opts.idleTimeout > 0 && opts.idleTimeout < 1_000) problems.push(`--idle-timeout ${opts.idleTimeout} ms would end sessions between a model's turns: give at least 1000 ms (or 0 for never)`);
  if (opts.token !== undefined && opts.token.trim().length < 8) problems.push('--token must be at least 8 characters');
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

/** Starts the environment server of a run: the sandbox pool, the session registry and the HTTP surface. */
export async function startServing(config: AppConfig, logger: Logger, given: ServeOptions): Promise<Serving> {
  // The token from --token, else ENVFLEET_SERVE_TOKEN (kept out of the process list).
  const token = given.token ?? config.serve.token ?? undefined;
  const opts: ServeOptions = { ...given, token };
  validateServeOptions(opts);
  validateCapacity(config, opts);
  const redis = createRedisConnection(config.redis.url, 'worker');
  try {
    await waitForRedis(redis, config.redis.url);
    const store = createRedisRunStore(redis, config.redis.prefix);
    if (!(await store.getRun(opts.run))) throw new RequestError(`run "${opts.run}" does not exist (envfleet runs lists the runs under this ENVFLEET_REDIS_PREFIX)`);
    const ready = (await store.statusCounts(opts.run, 'scenario'))['ready'] ?? 0;
    if (ready === 0) throw new RequestError(`run "${opts.run}" has no ready scenario to serve: make some with envfleet scenarios --run ${opts.run}`);
  } catch (err) {
    redis.disconnect();
    throw err;
  }
  const store = createRedisRunStore(redis, config.redis.prefix);
  const pool = createSandboxPool(config, logger, SANDBOX_THREAD_FILE);
  try {
    await pool.started();
  } catch (err) {
    await pool.close().catch(() => undefined);
    redis.disconnect();
    throw err;
  }
  const registry = createSessionRegistry({ sandbox: pool, scenarios: runScenarioSource(store, opts.run), logger }, { maxSessions: opts.maxSessions, idleTimeoutMs: opts.idleTimeout });
  let server: EnvServer;
  try {
    server = await startEnvServer(registry, logger, { port: opts.port, host: opts.host, token: opts.token ?? null, runId: opts.run });
  } catch (err) {
    await pool.close().catch(() => undefined);
    redis.disconnect();
    throw err;
  }
  return {
    url: server.url,
    registry,
    server,
    async close() {
      await server.close();
      await registry.closeAll();
      await pool.close();
      redis.disconnect();
    },
  };
}

/** `envfleet serve`. */
export async function serveCommand(opts: ServeOptions): Promise<void> {
  const config = loadConfig();
  const token = opts.token ?? config.serve.token ?? undefined;
  validateServeOptions({ ...opts, token });
  validateCapacity(config, opts);
  const logger = createLogger(config);
  const serving = await startServing(config, logger, opts);
  process.stdout.write(`envfleet environment server for run ${opts.run} at ${serving.url} (NeMo Gym style: POST /seed_session, POST /{tool}, POST /verify; ${token ? 'token required' : 'no token: loopback only'})\n`);
  let closing = false;
  const stop = () => {
    if (closing) return;
    closing = true;
    serving.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
