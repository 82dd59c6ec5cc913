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

/**
 * Uses the Redis at `url` if it answers; otherwise starts a private `redis-server` on a free port
 * in a temporary directory (stopped and deleted by `stop`); otherwise says how to get Redis.
 */
export async function chooseRedis(url: string, log: (line: string) => void): Promise<RedisChoice> {
  if (await answers(url, 1_500)) {
    log(`using Redis at ${redactRedisUrl(url)}`);
    return { url, private: false, stop: () => Promise.resolve(), stopNow: () => undefined };
  }
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'envfleet-redis-'));
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--maxmemory-policy', 'noeviction'],
    { stdio: 'ignore' },
  );
  const spawnError = new Promise<Error>(resolve => child.once('error', resolve));
  const privateUrl = `redis://127.0.0.1:${port}`;
  const stopNow = () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  };
  const stop = async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await Promise.race([new Promise(resolve => child.once('exit', resolve)), sleep(3_000)]);
    }
    await rm(dir, { recursive: true, force: true });
  };
  for (let i = 0; i < 50; i += 1) {
    const failed = await Promise.race([spawnError, sleep(100).then(() => null)]);
    if (failed) {
      await rm(dir, { recursive: true, force: true });
      throw new Error(
        `no Redis answers at ${redactRedisUrl(url)} and redis-server could not be started (${failed.message}). ` +
          'Install Redis (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis), ' +
          'or run `docker compose up -d redis`, or set REDIS_URL to a running Redis.',
      );
    }
    if (await answers(privateUrl, 500)) {
      log(`no Redis at ${redactRedisUrl(url)}; started a private redis-server on port ${port} (removed when the demo ends)`);
      return { url: privateUrl, private: true, stop, stopNow };
    }
  }
  await stop();
  throw new Error(`started redis-server on port ${port} but it never answered; run it by hand to see why`);
}
