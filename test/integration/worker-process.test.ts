import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { loadConfig } from '../../config/index.js';
import { modelCallQueue } from '../../queues/model-call.queue.js';
import type { ModelServer } from '../../src/model-server/index.js';
import { startWorkerProcess } from '../../workers/main.js';
import { freePort } from '../../workers/private-redis.js';
import { formatChecks, runDoctor } from '../../workers/doctor.js';
import { REDIS_URL, dropPrefix, finished, requireRedis, scriptedServer, silentLogger, testConfig, until } from '../helpers/integration.js';

const GOOD = { ok: true };
const SCHEMA = { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] };

async function privateRedis(args: string[]): Promise<{ url: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'envfleet-test-redis-'));
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', ...args], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  const probe = async () => {
    const { Redis } = await import('ioredis');
    const r = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    r.on('error', () => undefined);
    try {
      await r.connect();
      return (await r.ping()) === 'PONG';
    } catch {
      return false;
    } finally {
      r.disconnect();
    }
  };
  await until(probe, 'private redis-server');
  return {
    url,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise(resolve => child.once('exit', resolve));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

describe('worker process', function () {
  this.timeout(60_000);
  before(requireRedis);

  it('refuses to start against a Redis whose maxmemory-policy is allkeys-lru', async () => {
    const redis = await privateRedis(['--maxmemory-policy', 'allkeys-lru', '--appendonly', 'yes']);
    try {
      const config = testConfig(null, { REDIS_URL: redis.url });
      let error: unknown;
      try {
        const running = await startWorkerProcess(config, silentLogger());
        await running.stop();
      } catch (err) {
        error = err;
      }
      expect(error).to.have.property('code', 'REDIS_UNSAFE');
      expect(String(error)).to.match(/allkeys-lru/).and.to.match(/noeviction/).and.to.match(/CONFIG SET maxmemory-policy noeviction/);
    } finally {
      await redis.stop();
    }
  });

  it('exits 0 on SIGTERM during a long job and leaves the job to be finished by another worker', async () => {
    let server: ModelServer | undefined;
    let child: ChildProcess | undefined;
    const config = testConfig(null);
    try {
      server = await scriptedServer({
        rules: [
          { stage: 'mine.judge', times: 1, fault: { type: 'delay', ms: 60_000 }, respond: { json: GOOD } },
          { stage: 'mine.judge', respond: { json: GOOD } },
        ],
      });
      const env = {
        ...process.env,
        REDIS_URL,
        ENVFLEET_REDIS_PREFIX: config.redis.prefix,
        OPENAI_BASE_URL: server.url,
        OPENAI_API_KEY: 'k',
        ENVFLEET_SHUTDOWN_TIMEOUT_MS: '500',
        ENVFLEET_LOCK_DURATION_MS: '2000',
        ENVFLEET_STALLED_INTERVAL_MS: '1000',
        LOG_LEVEL: 'warn',
      };
      child = spawn(process.execPath, ['bin/envfleet.js', 'worker', '--queues', 'model.call'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>(resolve => child!.once('exit', code => resolve(code)));

      const queue = modelCallQueue.create({ url: REDIS_URL }, { prefix: config.redis.prefix, jobs: config.jobs });
      const { jobId } = await modelCallQueue.enqueue(queue, {
        runId: 'r',
        stage: 'mine.judge',
        key: 'long',
        messages: [{ role: 'user', content: 'long job' }],
        output: { type: 'json', schema: SCHEMA },
      });
      await until(async () => (await queue.getJob(jobId))?.getState().then(s => s === 'active') ?? false, 'the job to become active');
      await until(() => Promise.resolve(server!.log().length > 0), 'the model request to arrive');
      child.kill('SIGTERM');
      expect(await exited, stderr).to.equal(0);

      const after = await queue.getJob(jobId);
      expect(['waiting', 'delayed', 'wait']).to.include(await after!.getState());
      expect(after!.attemptsMade).to.equal(0);

      const running = await startWorkerProcess(testConfig(server, { ENVFLEET_REDIS_PREFIX: config.redis.prefix }), silentLogger(), {
        queues: [modelCallQueue.name],
      });
      try {
        const job = await finished(queue, jobId);
        expect(await job.getState(), job.failedReason).to.equal('completed');
      } finally {
        await running.stop();
        await queue.close();
      }
    } finally {
      if (child && child.exitCode === null) child.kill('SIGKILL');
      await server?.close();
      await dropPrefix(config.redis.prefix);
    }
  });
});

describe('envfleet doctor', function () {
  this.timeout(30_000);
  before(requireRedis);

  it('reports a rejected API key', async () => {
    const server = await scriptedServer({ rules: [] }, { apiKey: 'right-key' });
    try {
      const checks = await runDoctor(() => loadConfig({ REDIS_URL, OPENAI_BASE_URL: server.url, OPENAI_API_KEY: 'wrong-key' }));
      const text = formatChecks(checks);
      expect(checks.find(c => c.name === 'endpoint default')?.status).to.equal('fail');
      expect(text).to.match(/rejected the API key \(401\)/).and.to.match(/OPENAI_API_KEY/);
      expect(text).not.to.include('wrong-key');
    } finally {
      await server.close();
    }
  });

  it('reports a dead endpoint', async () => {
    const port = await freePort();
    const checks = await runDoctor(() => loadConfig({ REDIS_URL, OPENAI_BASE_URL: `http://127.0.0.1:${port}/v1` }));
    const endpoint = checks.find(c => c.name === 'endpoint default');
    expect(endpoint?.status).to.equal('fail');
    expect(endpoint?.detail).to.match(/cannot reach http:\/\/127\.0\.0\.1:\d+\/v1/);
  });

  it('reports a dead Redis and a healthy endpoint', async () => {
    const server = await scriptedServer({ models: ['gpt-4o-mini', 'text-embedding-3-small'], rules: [] });
    const port = await freePort();
    try {
      const checks = await runDoctor(() => loadConfig({ REDIS_URL: `redis://127.0.0.1:${port}`, OPENAI_BASE_URL: server.url }));
      expect(checks.find(c => c.name === 'redis')).to.deep.include({ status: 'fail' });
      expect(checks.find(c => c.name === 'redis')!.detail).to.match(/cannot reach Redis at redis:\/\/127\.0\.0\.1/).and.to.match(/REDIS_URL/);
      expect(checks.find(c => c.name === 'endpoint default')?.status).to.equal('ok');
    } finally {
      await server.close();
    }
  });

  it('reports an invalid configuration by variable, and exits 1 from the command line', async () => {
    const child = spawn(process.execPath, ['bin/envfleet.js', 'doctor'], {
      env: { ...process.env, ENVFLEET_POOL_THREADS: 'many' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const code = await new Promise<number | null>(resolve => child.once('exit', resolve));
    expect(code).to.equal(1);
    expect(stdout).to.match(/✗ configuration/).and.to.match(/ENVFLEET_POOL_THREADS="many"/);
  });
});

