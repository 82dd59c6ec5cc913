import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { pino } from 'pino';
import { expect } from 'chai';
import { formatChecks, runDoctor } from '../../cli/doctor.js';
import { freePort, RedisServerProcess } from '../../cli/private-redis.js';
import { loadConfig } from '../../config/index.js';
import { STAGE_QUEUES } from '../../queues/pipeline.js';
import { submitSynthesis } from '../../queues/submit.js';
import { parseModelScript } from '../../src/model-server/index.js';
import { startWorkerProcess } from '../../workers/main.js';
import { ENVFLEET_BIN, REDIS_URL, childEnv, exited, requireRedis, scriptedServer, silentLogger, testConfig, until, useFleet } from '../helpers/integration.js';


describe('worker process', function () {
  before(requireRedis);

  it('refuses to start against a Redis whose maxmemory-policy is allkeys-lru', async () => {
    const redis = await RedisServerProcess.start({ args: ['--maxmemory-policy', 'allkeys-lru', '--appendonly', 'yes'] });
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
      await redis.remove();
    }
  });

  it('waits for a Redis that is not up yet when it starts, and gives up after ENVFLEET_REDIS_STARTUP_WAIT_MS', async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    const gaveUp = await startWorkerProcess(testConfig(null, { REDIS_URL: url, ENVFLEET_REDIS_STARTUP_WAIT_MS: '0' }), silentLogger()).then(
      async running => (await running.stop(), null),
      (err: unknown) => err,
    );
    expect(gaveUp).to.have.property('code', 'REDIS_UNAVAILABLE');
    expect(String(gaveUp)).to.match(/cannot reach Redis at redis:\/\/127\.0\.0\.1/);

    const warnings: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
    const starting = startWorkerProcess(testConfig(null, { REDIS_URL: url, ENVFLEET_REDIS_STARTUP_WAIT_MS: '600000' }), logger);
    let settled = false;
    void starting.then(() => (settled = true), () => (settled = true));
    await until(() => Promise.resolve(warnings.some(w => /Redis does not answer yet; waiting for it/.test(w))), 'the worker to say it waits for Redis');
    expect(settled).to.equal(false);
    const redis = await RedisServerProcess.start({ args: ['--appendonly', 'yes'], port });
    try {
      const running = await starting;
      await running.stop();
    } finally {
      await redis.remove();
    }
  });

  it('waits for Redis once, for ENVFLEET_REDIS_STARTUP_WAIT_MS in all, not once more per start it tries (6 s took 12.9)', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [ENVFLEET_BIN, 'worker'], { env: { ...process.env, REDIS_URL: `redis://127.0.0.1:${port}`, ENVFLEET_REDIS_STARTUP_WAIT_MS: '6000', LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>(resolve => child.once('exit', c => resolve(c)));
    expect(code, output).to.equal(1);
    expect(output).to.match(/cannot reach Redis at redis:\/\/127\.0\.0\.1/);
    // One start, one wait: a start whose wait ended before the whole (its last try gives up after 5 s) started
    // again and waited the whole length once more.
    expect(output.match(/Redis does not answer yet; waiting for it/g) ?? [], output).to.have.length(1);
    expect(output, output).to.not.match(/starting again/);
  });

  const fleet = useFleet();

  it('exits 0 on SIGTERM during a long job and leaves the job to be finished by another worker', async () => {
    const slow = parseModelScript({ rules: [{ name: 'slow-judge', stage: 'mine.judge', times: 1, fault: { type: 'delay', ms: 60_000 }, respond: { json: { needsEnvironment: true, reason: 'stateful loans' } } }] });
    const f = await fleet({ extra: slow, workers: false });
    const child = spawn(process.execPath, [ENVFLEET_BIN, 'worker', '--queues', 'mine.judge'], { env: childEnv(f.config, { ENVFLEET_SHUTDOWN_TIMEOUT_MS: '500', LOG_LEVEL: 'warn' }), stdio: ['ignore', 'pipe', 'pipe'] });
    f.children.push(child);
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exitCode = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)));

    const dir = await mkdtemp(join(tmpdir(), 'envfleet-sigterm-'));
    await writeFile(join(dir, 'tasks.jsonl'), `${JSON.stringify({ id: 't1', task: 'A library member wants to return two overdue books and pay the fine.' })}\n`);
    await submitSynthesis(f.config, f.redis, { runId: 'long', tasks: join(dir, 'tasks.jsonl'), probeSteps: 8 });
    const queue = new Queue('mine.judge', { connection: f.redis, prefix: f.config.redis.prefix });
    try {
      const jobId = STAGE_QUEUES['mine.judge'].jobId({ runId: 'long', taskId: 't1' });
      await until(async () => (await queue.getJob(jobId))?.getState().then(s => s === 'active') ?? false, 'the job to become active');
      await until(() => Promise.resolve(f.server.log().some(e => e.rule === 'slow-judge')), 'the model request to arrive');
      child.kill('SIGTERM');
      expect(await exitCode, stderr).to.equal(0);
      await exited(child);

      const after = await queue.getJob(jobId);
      expect(['waiting', 'delayed', 'wait']).to.include(await after!.getState());
      expect(after!.attemptsMade).to.equal(0);

      await f.startWorkers();
      await f.waitForRun('long');
      const judged = await queue.getJob(jobId);
      expect(await judged!.getState(), judged!.failedReason).to.equal('completed');
      expect(await f.store.getDoc('long', 'judge', 't1')).to.deep.include({ needsEnvironment: true });
    } finally {
      await queue.close();
    }
  });

  it('keeps a job whose workers were SIGKILLed while running it, three times over (stalls are not failures)', async () => {
    // Each of the first 4 answers hangs: the worker holding the job is SIGKILLed while it waits.
    const hang = parseModelScript({ rules: [{ name: 'hang', stage: 'mine.judge', times: 4, fault: { type: 'delay', ms: 600_000 }, respond: { json: { needsEnvironment: true, reason: 'stateful loans' } } }] });
    const f = await fleet({ extra: hang, workers: false });
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-stalls-'));
    await writeFile(join(dir, 'tasks.jsonl'), `${JSON.stringify({ id: 't1', task: 'A library member wants to return two overdue books and pay the fine.' })}\n`);
    await submitSynthesis(f.config, f.redis, { runId: 'stalls', tasks: join(dir, 'tasks.jsonl'), probeSteps: 8 });
    const queue = new Queue('mine.judge', { connection: f.redis, prefix: f.config.redis.prefix });
    try {
      const jobId = STAGE_QUEUES['mine.judge'].jobId({ runId: 'stalls', taskId: 't1' });
      for (let kill = 1; kill <= 4; kill += 1) {
        const child = f.spawnWorker({ LOG_LEVEL: 'warn' });
        await until(() => Promise.resolve(f.server.log().filter(e => e.rule === 'hang').length >= kill), `the model request of worker ${kill} to arrive`);
        child.kill('SIGKILL');
        await exited(child);
      }
      // Four deaths: the job stalled (at least) three times, which used to fail it (maxStalledCount 2).
      await f.startWorkers();
      await f.waitForRun('stalls');
      const job = await queue.getJob(jobId);
      expect(await job!.getState(), job!.failedReason).to.equal('completed');
      expect(job!.stalledCounter).to.be.at.least(3);
      expect(job!.attemptsMade).to.equal(1);
      expect(await f.store.getDoc('stalls', 'judge', 't1')).to.deep.include({ needsEnvironment: true });
    } finally {
      await queue.close();
    }
  });
});

describe('envfleet doctor', function () {
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

  it('masks the API key and credential headers (OPENAI_CUSTOM_HEADERS) that an endpoint echoes in its error body', async () => {
    // A gateway that lists its models itself and answers chat requests 400, with the request's credentials in the body.
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (req.url?.endsWith('/models')) {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'list', data: [{ id: 'gpt-4o-mini', object: 'model' }, { id: 'text-embedding-3-small', object: 'model' }] }));
          return;
        }
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: `bad request — from key=${req.headers.authorization} hdr=${String(req.headers['api-key'])} tenant=${String(req.headers['x-tenant'])}` } }));
      });
    });
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
    // The openai client reads OPENAI_CUSTOM_HEADERS from the process's environment, as a user sets it.
    const before = process.env['OPENAI_CUSTOM_HEADERS'];
    const headers = 'api-key: gw-CUSTOMHDR-SECRET-999\nx-tenant: team-42';
    process.env['OPENAI_CUSTOM_HEADERS'] = headers;
    try {
      const checks = await runDoctor(() => loadConfig({ REDIS_URL, OPENAI_BASE_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, OPENAI_API_KEY: 'sk-probe-SECRETKEY-1234567890', OPENAI_CUSTOM_HEADERS: headers }));
      const text = formatChecks(checks);
      expect(text, text).to.include('bad request — from key=Bearer [redacted] hdr=[redacted] tenant=team-42');
      expect(text).not.to.include('SECRETKEY').and.not.to.include('CUSTOMHDR');
    } finally {
      if (before === undefined) delete process.env['OPENAI_CUSTOM_HEADERS'];
      else process.env['OPENAI_CUSTOM_HEADERS'] = before;
      server.close();
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
    const child = spawn(process.execPath, [ENVFLEET_BIN, 'doctor'], {
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

