import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { QueueEvents, type Job, type Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { loadConfig, type AppConfig, type EnvVarName } from '../../config/index.js';
import type { Logger } from '../../src/logger.js';
import { parseModelScript, startModelServer, type ModelServer } from '../../src/model-server/index.js';

export const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';

/** Fails the suite with a clear message when the test Redis is not up. */
export async function requireRedis(): Promise<void> {
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    throw new Error(`integration tests need Redis at ${REDIS_URL} (${(err as Error).message}); start redis-server or set REDIS_URL`, { cause: err });
  } finally {
    redis.disconnect();
  }
}

/** A configuration isolated under its own key prefix, with fast lock/stall settings for tests. */
export function testConfig(server: ModelServer | null, overrides: Partial<Record<EnvVarName, string>> = {}): AppConfig {
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

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

export async function scriptedServer(script: unknown, options: { apiKey?: string } = {}): Promise<ModelServer> {
  return startModelServer({ script: parseModelScript(script, 'test script'), ...options });
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
export async function finished(queue: Queue, jobId: string, timeoutMs = 30_000): Promise<Job> {
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
export async function until(predicate: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise(resolve => setTimeout(resolve, 50));
  }
}

/** Stops what an integration test started: child processes, in-process workers, the scripted server, the test's Redis keys. */
export async function tearDown(t: {
  readonly children: ChildProcess[];
  readonly running: { stop(): Promise<void> } | undefined;
  readonly server: ModelServer | undefined;
  readonly config: AppConfig | undefined;
}): Promise<void> {
  for (const c of t.children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  await t.running?.stop();
  await t.server?.close();
  if (t.config) await dropPrefix(t.config.redis.prefix);
}
