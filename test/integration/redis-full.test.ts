import { join } from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { RedisServerProcess } from '../../cli/private-redis.js';
import { submitSynthesis } from '../../queues/submit.js';
import { classifyError, isRedisFull, REDIS_FULL_WAIT_MS } from '../../src/errors.js';
import { loadModelScript, startModelServer } from '../../src/model-server/index.js';
import { createRedisRunStore } from '../../src/runs/store.js';
import { startWorkerProcess } from '../../workers/main.js';
import { DEMO, testConfig, until } from '../helpers/integration.js';

/**
 * Redis at its maxmemory (noeviction, as envfleet requires) refuses writes. A stranger's probe filled Redis mid-run:
 * the jobs used their five attempts within 30 s on "OOM command not allowed", 599 episodes were left without a
 * trajectory, and the waiting command died on a raw EXECABORT. Each shape of the refusal a worker meets (a command, a
 * transaction, a script: BullMQ's moves are scripts) is REDIS_FULL: the job comes back later, no attempt used.
 */
describe('Redis at its maxmemory (a private redis-server)', function () {
  this.timeout(240_000);
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

  it('stops a worker taking jobs while Redis is full, says so in a line or two (not a line per refusal), and goes on once it has room: the run ends with no job failed', async () => {
    // A stranger's fault: 88,000 'worker error' lines (260 MB) in 25 s, BullMQ's loop trying its next-job move again at once.
    const model = await startModelServer({ script: await loadModelScript(DEMO) });
    const config = testConfig(model, { REDIS_URL: server.url, LOG_LEVEL: 'info' });
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    const store = createRedisRunStore(redis, config.redis.prefix);
    let workers: Awaited<ReturnType<typeof startWorkerProcess>> | undefined;
    try {
      await submitSynthesis(config, redis, { runId: 'full', tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
      const used = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
      await redis.config('SET', 'maxmemory', String(used + 20_000));
      workers = await startWorkerProcess(config, logger);
      await until(() => Promise.resolve(lines.some(l => l.includes('the workers stop taking jobs until it has room'))), 'a worker that stopped for a full Redis', 60_000);
      await redis.config('SET', 'maxmemory', '0');
      await until(async () => (await store.pendingCount('full')) === 0, 'the run done', 120_000);
      const envs = await store.statusCounts('full', 'env');
      expect(Object.values(envs).reduce((a, b) => a + b, 0), JSON.stringify(envs)).to.equal(3);
      expect(lines.filter(l => l.includes('"msg":"worker error"'))).to.deep.equal([]);
      expect(lines.filter(l => l.includes('stop taking jobs until it has room')).length).to.be.within(1, 3);
      expect(lines.filter(l => l.includes('"level":50') && l.includes('job failed'))).to.deep.equal([]);
    } finally {
      await redis.config('SET', 'maxmemory', '0');
      await workers?.stop();
      await model.close();
    }
  });
});
