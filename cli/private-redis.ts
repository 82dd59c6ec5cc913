import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRedisConnection, redactRedisUrl, waitForRedis } from '../src/redis/connection.js';
import { sleep } from '../src/util/sleep.js';

export interface RedisChoice {
  readonly url: string;
  /** True when the demo started its own redis-server. */
  readonly private: boolean;
  stop(): Promise<void>;
  /** Stops a private redis-server at once (from a process 'exit' handler, where nothing can be awaited). */
  stopNow(): void;
}

async function answers(url: string, timeoutMs: number): Promise<boolean> {
  const redis = createRedisConnection(url, 'producer', { retryStrategy: () => null });
  try {
    await waitForRedis(redis, url, timeoutMs);
    return true;
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** Resolves when the child has exited (at once when it already has). */
const exitOf = (child: ChildProcess): Promise<void> =>
  child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>(resolve => child.once('exit', () => resolve()));

export interface RedisServerOptions {
  /** Arguments after `--port P --bind 127.0.0.1 --dir DIR --save ''` (e.g. `--appendonly yes`). */
  readonly args?: readonly string[];
  /** The data directory (kept); default: a new temporary one, deleted by `remove`. */
  readonly dir?: string;
  /** The port; default: a free one. */
  readonly port?: number;
  /** Called with every redis-server child started (to register it for a kill-all on exit). */
  readonly onSpawn?: (child: ChildProcess) => void;
  /** How long to wait for it to answer (and finish loading its data). */
  readonly startTimeoutMs?: number;
}

/**
 * A redis-server of our own on loopback (the demo without a Redis, tests and benchmarks that kill or
 * configure Redis): started and waited for until it answers and has loaded its data; killed, stopped,
 * or started again on the same port and directory (it then loads what it persisted).
 */
export class RedisServerProcess {
  private child: ChildProcess | null = null;
  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly ownDir: boolean,
    private readonly options: RedisServerOptions,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(options: RedisServerOptions = {}): Promise<RedisServerProcess> {
    const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'envfleet-redis-')));
    const server = new RedisServerProcess(options.port ?? (await freePort()), dir, options.dir === undefined, options);
    try {
      await server.spawn();
    } catch (err) {
      await server.remove();
      throw err;
    }
    return server;
  }

  /** Starts it (again) on its port and directory. */
  async spawn(): Promise<void> {
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', '', ...(this.options.args ?? [])], { stdio: 'ignore' });
    this.child = child;
    this.options.onSpawn?.(child);
    const failed = new Promise<Error>(resolve => child.once('error', resolve));
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 30_000);
    while (Date.now() < deadline) {
      const error = await Promise.race([failed, sleep(100).then(() => null)]);
      if (error) throw new Error(`redis-server could not be started (${error.message}): install Redis (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)`);
      if (child.exitCode !== null) throw new Error(`redis-server on port ${this.port} exited with code ${child.exitCode} at start (its directory: ${this.dir})`);
      if (await this.answers()) return;
    }
    throw new Error(`redis-server on port ${this.port} never answered; run it by hand to see why`);
  }

  /** PING answered, and any persisted data loaded. */
  private async answers(): Promise<boolean> {
    const redis = createRedisConnection(this.url, 'producer', { retryStrategy: () => null });
    try {
      await waitForRedis(redis, this.url, 500);
      return /loading:0/.test(await redis.info('persistence'));
    } catch {
      return false;
    } finally {
      redis.disconnect();
    }
  }

  /** SIGKILL: nothing is flushed at exit. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await exitOf(child);
  }

  /** SIGKILL, a pause, then the same port and directory again. Returns how long it was down. */
  async killAndRestart(downMs: number): Promise<number> {
    const started = Date.now();
    await this.kill();
    await sleep(downMs);
    await this.spawn();
    return Date.now() - started;
  }

  /** SIGTERM (SIGKILL after `graceMs`). */
  async stop(graceMs = 5_000): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    await Promise.race([exitOf(child), sleep(graceMs)]);
    if (child.exitCode === null && child.signalCode === null) await this.kill();
  }

  /** Stops it and deletes its directory when it made that directory. */
  async remove(): Promise<void> {
    await this.stop(3_000);
    if (this.ownDir) await rm(this.dir, { recursive: true, force: true });
  }

  /** From a process 'exit' handler, where nothing can be awaited. */
  stopNow(): void {
    if (this.child && this.child.exitCode === null) this.child.kill('SIGTERM');
    if (this.ownDir) rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Uses the Redis at `url` if it answers; otherwise starts a private `redis-server` on a free port
 * in a temporary directory (stopped and deleted by `stop`); otherwise says how to get Redis.
 */
export async function chooseRedis(url: string, log: (line: string) => void): Promise<RedisChoice> {
  if (await answers(url, 1_500)) {
    log(`using Redis at ${redactRedisUrl(url)}`);
    return { url, private: false, stop: () => Promise.resolve(), stopNow: () => undefined };
  }
  let server: RedisServerProcess;
  try {
    server = await RedisServerProcess.start({ args: ['--appendonly', 'yes', '--maxmemory-policy', 'noeviction'], startTimeoutMs: 5_000 });
  } catch (err) {
    throw new Error(`no Redis answers at ${redactRedisUrl(url)}, and a private one could not be started: ${(err as Error).message}. Or run \`docker compose up -d redis\`, or set REDIS_URL to a running Redis.`, { cause: err });
  }
  log(`no Redis at ${redactRedisUrl(url)}; started a private redis-server on port ${server.port} (removed when the demo ends)`);
  return { url: server.url, private: true, stop: () => server.remove(), stopNow: () => server.stopNow() };
}
