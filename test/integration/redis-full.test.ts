import { expect } from 'chai';
import { Redis } from 'ioredis';
import { RedisServerProcess } from '../../cli/private-redis.js';
import { classifyError, isRedisFull, REDIS_FULL_WAIT_MS } from '../../src/errors.js';

/**
 * Redis at its maxmemory (noeviction, as envfleet requires) refuses writes. A stranger's probe filled Redis mid-run:
 * the jobs used their five attempts within 30 s on "OOM command not allowed", 599 episodes were left without a
 * trajectory, and the waiting command died on a raw EXECABORT. Each shape of the refusal a worker meets (a command, a
 * transaction, a script: BullMQ's moves are scripts) is REDIS_FULL: the job comes back later, no attempt used.
 */
describe('Redis at its maxmemory (a private redis-server)', function () {
  this.timeout(60_000);
  let server: RedisServerProcess;
  let redis: Redis;

  before(async () => {
    server = await RedisServerProcess.start({ args: ['--maxmemory-policy', 'noeviction'] });
    redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
    await redis.set('fill', 'x'.repeat(1 << 20));
    const used = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
    await redis.config('SET', 'maxmemory', String(used + 10_000));
  });

  after(async () => {
    redis?.disconnect();
    await server?.remove();
  });

  it('reads every refusal as REDIS_FULL: a wait, no attempt used', async () => {
    const refusals: unknown[] = [];
    await redis.set('more', 'y'.repeat(1 << 20)).catch((e: unknown) => refusals.push(e));
    await redis.multi().set('a', 'z'.repeat(1 << 20)).set('b', '1').exec().catch((e: unknown) => refusals.push(e));
    await redis.eval("return redis.call('set', KEYS[1], ARGV[1])", 1, 'c', 'w'.repeat(1 << 20)).catch((e: unknown) => refusals.push(e));
    expect(refusals).to.have.length(3);
    expect(String((refusals[1] as Error).message)).to.match(/^EXECABORT/);
    for (const e of refusals) {
      expect(isRedisFull(e), String(e)).to.equal(true);
      expect(classifyError(e)).to.deep.equal({ action: 'wait', code: 'REDIS_FULL', delayMs: REDIS_FULL_WAIT_MS });
    }
    // Other refusals are not taken for it.
    await redis.call('NOSUCHCOMMAND').catch((e: unknown) => expect(isRedisFull(e)).to.equal(false));
    await redis.config('SET', 'maxmemory', '0');
    expect(await redis.set('more', 'y'.repeat(1 << 20))).to.equal('OK');
  });
});
