import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { submitSynthesis } from '../../queues/submit.js';
import { createRedisRunStore } from '../../src/runs/store.js';
import { DEMO, ENVFLEET_BIN, dropPrefix, requireRedis, testConfig } from '../helpers/integration.js';

const execFileAsync = promisify(execFile);

describe('envfleet demo on a Redis other runs use (real Redis, the command line)', function () {
  this.timeout(300_000);

  it("refuses to start its workers while another run has jobs to do under the prefix (they would take them and answer with the demo's script), and leaves that run's jobs as they were", async () => {
    await requireRedis();
    const config = testConfig(null);
    const redis = new Redis(config.redis.url);
    try {
      // A run submitted with no worker running: its jobs wait.
      await submitSynthesis(config, redis, { runId: 'waiting-run', tasks: join(DEMO, 'source-tasks.jsonl') });
      // And an earlier demo's run stopped part way (its default name): the demo's own, not named.
      await submitSynthesis(config, redis, { runId: 'demo-20261207T000000-4242', tasks: join(DEMO, 'source-tasks.jsonl') });
      const store = createRedisRunStore(redis, config.redis.prefix);
      const before = await store.pendingCount('waiting-run');
      expect(before).to.be.greaterThan(0);
      const env: NodeJS.ProcessEnv = { ...process.env, REDIS_URL: config.redis.url, ENVFLEET_REDIS_PREFIX: config.redis.prefix, LOG_LEVEL: 'silent' };
      delete env['OPENAI_BASE_URL'];
      const failed = await execFileAsync(process.execPath, [ENVFLEET_BIN, 'demo', '--run', 'demo-here'], { env, cwd: join(DEMO, '..', '..') }).then(
        () => null,
        (err: unknown) => err as { code: number; stdout: string; stderr: string },
      );
      expect(failed, 'the demo refused').to.not.equal(null);
      expect(failed!.code, failed!.stderr).to.equal(1);
      expect(failed!.stderr, failed!.stderr).to.include(`holds runs with jobs to do under the key prefix "${config.redis.prefix}" (waiting-run: ${before} jobs)`).and.include('ENVFLEET_REDIS_PREFIX=envfleet-demo');
      expect(await store.pendingCount('waiting-run')).to.equal(before);
      expect(await store.getRun('demo-here')).to.equal(null);
    } finally {
      redis.disconnect();
      await dropPrefix(config.redis.prefix);
    }
  });
});
