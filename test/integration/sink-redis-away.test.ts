import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { RedisServerProcess } from '../../cli/private-redis.js';
import { loadConfig } from '../../config/index.js';
import { runOptionsFrom } from '../../queues/submit.js';
import { createRedisConnection, waitForRedis, type Redis } from '../../src/redis/connection.js';
import { createRedisRunStore } from '../../src/runs/store.js';
import { ENVFLEET_BIN, until } from '../helpers/integration.js';

/**
 * `envfleet sink --follow` (the build in dist/) while its Redis goes away and comes back with its data (a private
 * redis-server with AOF, killed and started again): it says so on standard error, once each way, instead of nothing
 * (a stranger's probe: silent through 50–95 s outages), and stops on Ctrl-C saying what is on disk.
 */
describe('envfleet sink --follow across a Redis restart (private redis-server, build in dist/)', function () {
  this.timeout(180_000);
  let server: RedisServerProcess | undefined;
  let redis: Redis | undefined;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'envfleet-sink-away-'));
  });
  after(async () => {
    redis?.disconnect();
    await server?.remove();
    await rm(dir, { recursive: true, force: true });
  });

  it('says Redis is away and back, and stops on SIGINT saying what it wrote', async () => {
    server = await RedisServerProcess.start({ args: ['--appendonly', 'yes', '--appendfsync', 'always'] });
    const env = { ...process.env, REDIS_URL: server.url, ENVFLEET_REDIS_PREFIX: 'sink-away' };
    const config = loadConfig(env);
    redis = createRedisConnection(config.redis, 'producer');
    await waitForRedis(redis, config.redis);
    // A run with an outstanding job: a following sink waits for it.
    const store = createRedisRunStore(redis, config.redis.prefix);
    await store.createRun({ id: 'suivi', createdAt: new Date().toISOString(), input: 'tasks', options: runOptionsFrom(config) });
    await store.addPending('suivi', ['rollout.run|r-1']);

    const sink = spawn(process.execPath, [ENVFLEET_BIN, 'sink', '--run', 'suivi', '--out', join(dir, 'données — 数据'), '--follow'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    sink.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    sink.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>(resolve => sink.once('exit', code => resolve(code)));
    try {
      // Following: its consumer group is made once it reads the stream.
      await until(async () => (await redis!.keys('sink-away:*')).some(k => k.includes('traj')), 'the sink reading its stream');
      await server.killAndRestart(3_000);
      await until(() => Promise.resolve(/answers again/.test(stderr)), 'the sink saying Redis is back', 60_000);
      expect(stderr).to.match(/envfleet sink: Redis at redis:\/\/127\.0\.0\.1:\d+ does not answer \(.+\); waiting for it to come back/);
      expect(stderr.match(/does not answer/g)).to.have.length(1);
      expect(stderr).to.match(/envfleet sink: Redis at redis:\/\/127\.0\.0\.1:\d+ answers again; the sink goes on\n/);
      sink.kill('SIGINT');
      expect(await exited).to.equal(0);
      expect(stdout).to.include('sink stopped: 0 trajectories written');
    } finally {
      sink.kill('SIGKILL');
    }
  });
});
