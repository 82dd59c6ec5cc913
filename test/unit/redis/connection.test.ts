import { expect } from 'chai';
import { RedisServerProcess } from '../../../cli/private-redis.js';
import { createRedisConnection, waitForRedis, waitForRedisToStart, type Redis } from '../../../src/redis/connection.js';

/** What `waitForRedis` threw (or null). */
async function refusal(url: string, role: 'producer' | 'worker' = 'producer'): Promise<{ code?: string; message: string }> {
  const redis = createRedisConnection(url, role);
  try {
    await waitForRedis(redis, url, 3_000);
    throw new Error(`waitForRedis accepted ${url}`);
  } catch (err) {
    return err as { code?: string; message: string };
  } finally {
    redis.disconnect();
  }
}

describe('connecting to Redis (src/redis/connection.ts): a refusal says what Redis refused, on a Redis of its own', () => {
  let server: RedisServerProcess;
  before(async () => {
    server = await RedisServerProcess.start({ args: ['--appendonly', 'no', '--databases', '4'] });
  });
  after(async () => {
    await server?.remove();
  });

  it('a database the server does not have fails the connection (not db 0), naming the URL without its password and what to do', async () => {
    const url = `${server.url}/20`;
    for (const role of ['producer', 'worker'] as const) {
      const err = await refusal(url, role);
      expect(err.code).to.equal('REDIS_REFUSED');
      expect(err.message).to.include(`redis://127.0.0.1:${server.port}/20`).and.to.include('database 20').and.to.include('DB index is out of range');
      expect(err.message).to.include('REDIS_URL').and.to.include('databases').and.to.include(`for example ${server.url}/0`);
    }
    // A command sent on such a connection fails: nothing lands in database 0.
    const redis: Redis = createRedisConnection(url, 'producer');
    await redis.connect().catch(() => undefined);
    const wrote = await redis.set('envfleet-test:select:probe', '1').then(() => true, () => false);
    redis.disconnect();
    expect(wrote).to.equal(false);
    const db0 = createRedisConnection(server.url, 'producer');
    await waitForRedis(db0, server.url);
    expect(await db0.dbsize()).to.equal(0);
    db0.disconnect();
  });

  it('a database it has is used', async () => {
    const url = `${server.url}/3`;
    const redis = createRedisConnection(url, 'producer');
    await waitForRedis(redis, url);
    await redis.set('envfleet-test:select:in-3', '1');
    redis.disconnect();
    const db3 = createRedisConnection(url, 'producer');
    await waitForRedis(db3, url);
    expect(await db3.get('envfleet-test:select:in-3')).to.equal('1');
    await db3.flushdb();
    db3.disconnect();
  });

  it('wrong credentials are reported as such (WRONGPASS), not as a Redis to start, with the password hidden', async () => {
    const url = `redis://bob:hunter2-secret@127.0.0.1:${server.port}`;
    const err = await refusal(url);
    expect(err.code).to.equal('REDIS_REFUSED');
    expect(err.message).to.include('WRONGPASS').and.to.include('credentials').and.to.include('REDIS_URL');
    expect(err.message).not.to.include('hunter2-secret');
    expect(err.message).not.to.match(/start redis/i);
  });

  it('a missing password is reported as such (NOAUTH), and a process that waits for Redis to start does not wait for it', async () => {
    const admin = createRedisConnection(server.url, 'producer');
    await waitForRedis(admin, server.url);
    await admin.config('SET', 'requirepass', 'pw-for-test');
    admin.disconnect();
    try {
      const err = await refusal(server.url);
      expect(err.code).to.equal('REDIS_REFUSED');
      expect(err.message).to.include('NOAUTH').and.to.include('needs a password');
      const redis = createRedisConnection(server.url, 'worker');
      // Refused is not "not up yet": thrown at once, well before the 60 s given.
      const thrown = await waitForRedisToStart(redis, server.url, 60_000).then(() => null, (e: unknown) => e as { code?: string });
      redis.disconnect();
      expect(thrown?.code).to.equal('REDIS_REFUSED');
    } finally {
      const back = createRedisConnection(`redis://:pw-for-test@127.0.0.1:${server.port}`, 'producer');
      await waitForRedis(back, server.url);
      await back.config('SET', 'requirepass', '');
      back.disconnect();
    }
  });
});
