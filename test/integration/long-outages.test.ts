import { mkdtemp, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { expect } from 'chai';
import { submitRollouts, submitScenarios, submitSynthesis } from '../../queues/submit.js';
import { STAGE_QUEUES } from '../../queues/pipeline.js';
import { resumeRun } from '../../queues/run-jobs.js';
import { loadModelScript, parseModelScript, startModelServer, type ModelServer } from '../../src/model-server/index.js';
import { DEMO, testConfig, until, useFleet, type Fleet } from '../helpers/integration.js';

/**
 * What a long outage at hour six costs a run: nothing. The waits that are hours long in production are made
 * long here in the unit that matters (attempts and backoff used up, starts counted), never by sleeping.
 */
describe('long outages (real Redis, real workers, scripted server)', function () {
  const fleet = useFleet();
  let f: Fleet;
  let revived: ModelServer | undefined;
  afterEach(async () => {
    await revived?.close();
    revived = undefined;
  });

  async function prepare(runId: string) {
    await submitSynthesis(f.config, f.redis, { runId, tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
    await f.waitForRun(runId);
    await submitScenarios(f.config, f.redis, { runId, perEnv: 3 });
    await f.waitForRun(runId);
    return (await f.store.statusCounts(runId, 'scenario'))['ready'] ?? 0;
  }

  it('keeps every episode when the model endpoint refuses connections for longer than the attempts last, and runs them all once it is back', async () => {
    f = await fleet();
    const ready = await prepare('outage');
    expect(ready).to.be.greaterThan(0);

    // The endpoint goes away (nothing listens on its port: connection refused) while rollouts run.
    await f.stopWorkers();
    const port = f.server.port;
    await f.server.close();
    await f.startWorkers();
    await submitRollouts(f.config, f.redis, { runId: 'outage', samples: 2, modes: ['non-conversational'] });
    const queue = new Queue('rollout.run', { connection: f.redis, prefix: f.config.redis.prefix });
    try {
      const attempts = f.config.jobs.attempts;
      // Long in the unit that matters: every episode's job has been taken more times than it has attempts (or,
      // before the fix, the run ended: every episode failed for good).
      await until(async () => {
        if ((await f.store.pendingCount('outage')) === 0) return true;
        const jobs = await queue.getJobs(['wait', 'active', 'delayed', 'prioritized', 'waiting-children', 'failed', 'completed']);
        const rollouts = jobs.filter(j => j.name !== undefined && j.data && (j.data as { runId?: string }).runId === 'outage');
        return rollouts.length === ready * 2 && rollouts.every(j => j.attemptsStarted > attempts + 1);
      }, 'the outage to outlast every job of the run');
      expect(await f.store.listDocIds('outage', 'trajectory'), 'episodes recorded while the endpoint was unreachable').to.deep.equal([]);
      expect((await f.workers.ctx.runControl.get('outage')).state).to.equal('running');

      // The endpoint comes back on the same address.
      revived = await startModelServer({ script: await loadModelScript(DEMO), port });
      await f.waitForRun('outage');
      const counts = (await f.store.counters('outage'))['rollout.run'] ?? {};
      expect(counts['model-error'] ?? 0, JSON.stringify(counts)).to.equal(0);
      expect(Object.values(counts).reduce((a, b) => a + b, 0)).to.equal(ready * 2);
      expect(await queue.getFailedCount()).to.equal(0);
    } finally {
      await queue.close();
    }
  });

  /**
   * An ingress in front of the model server: while `down()` gives an answer (its upstream down) it answers every path
   * (GET /models too) with it, as nginx or Envoy do; otherwise it forwards to the server. `url`: its /v1 base URL.
   */
  async function proxyTo(server: ModelServer, down: (req: http.IncomingMessage) => { status: number; headers: Record<string, string>; body: string } | null) {
    const target = new URL(server.url);
    const proxy = http.createServer((req, res) => {
      const answer = down(req);
      if (answer) {
        req.resume();
        res.writeHead(answer.status, answer.headers);
        res.end(answer.body);
        return;
      }
      const forward = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, upstream => {
        res.writeHead(upstream.statusCode ?? 502, upstream.headers);
        upstream.pipe(res);
      });
      forward.on('error', () => res.destroy());
      req.pipe(forward);
    });
    await new Promise<void>(resolve => proxy.listen(0, '127.0.0.1', resolve));
    return {
      url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}/v1`,
      close: async () => {
        proxy.closeAllConnections();
        await new Promise<void>(resolve => proxy.close(() => resolve()));
      },
    };
  }

  it('keeps every episode when a proxy in front of the model server answers 503 (its upstream down) for longer than the attempts last, and runs them all once it forwards again', async () => {
    f = await fleet();
    const ready = await prepare('proxied');
    expect(ready).to.be.greaterThan(0);

    // An ingress in front of the model server: while its upstream is down it answers every path (GET /models too) with
    // its own 503 page, as nginx does; then it forwards again.
    let up = false;
    const page = '<html><head><title>503 Service Temporarily Unavailable</title></head><body><center><h1>503 Service Temporarily Unavailable</h1></center><hr><center>nginx</center></body></html>';
    const proxy = await proxyTo(f.server, () => (up ? null : { status: 503, headers: { 'content-type': 'text/html' }, body: page }));
    const queue = new Queue('rollout.run', { connection: f.redis, prefix: f.config.redis.prefix });
    try {
      await f.stopWorkers();
      const viaProxy = testConfig(null, { OPENAI_BASE_URL: proxy.url, ENVFLEET_REDIS_PREFIX: f.config.redis.prefix });
      await f.startWorkers({ config: viaProxy });
      await submitRollouts(f.config, f.redis, { runId: 'proxied', samples: 2, modes: ['non-conversational'] });
      const attempts = f.config.jobs.attempts;
      // Long in the unit that matters: every episode's job taken more times than it has attempts (before the fix, each
      // 503 used an attempt, and every episode ended as model-error for good).
      await until(async () => {
        if ((await f.store.pendingCount('proxied')) === 0) return true;
        const jobs = await queue.getJobs(['wait', 'active', 'delayed', 'prioritized', 'waiting-children', 'failed', 'completed']);
        const rollouts = jobs.filter(j => (j.data as { runId?: string } | undefined)?.runId === 'proxied');
        return rollouts.length === ready * 2 && rollouts.every(j => j.attemptsStarted > attempts + 1);
      }, 'the outage to outlast every job of the run');
      expect(await f.store.listDocIds('proxied', 'trajectory'), 'episodes recorded while the upstream was down').to.deep.equal([]);
      expect((await f.workers.ctx.runControl.get('proxied')).state).to.equal('running');

      up = true;
      await f.waitForRun('proxied');
      const counts = (await f.store.counters('proxied'))['rollout.run'] ?? {};
      expect(counts['model-error'] ?? 0, JSON.stringify(counts)).to.equal(0);
      expect(Object.values(counts).reduce((a, b) => a + b, 0)).to.equal(ready * 2);
      expect(await queue.getFailedCount()).to.equal(0);
    } finally {
      await queue.close();
      await proxy.close();
    }
  });

  /** A one-task synthesis run (mine.judge only) submitted to in-process workers with `overrides` (their endpoint, OPENAI_BASE_URL), until the run pauses: its reason. */
  async function judgeOne(runId: string, overrides: Record<string, string>) {
    const script = parseModelScript({ rules: [{ stage: 'mine.judge', respond: { json: { needsEnvironment: true, reason: 'stateful bookings' } } }] }, 'test script');
    f = await fleet({ script, workers: false });
    await f.startWorkers({ queues: ['mine.judge'], config: testConfig(null, { OPENAI_BASE_URL: f.server.url, ...overrides, ENVFLEET_REDIS_PREFIX: f.config.redis.prefix }) });
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-outage-'));
    await writeFile(join(dir, 'tasks.jsonl'), `${JSON.stringify({ id: 't0', task: 'book a room' })}\n`);
    await submitSynthesis(f.config, f.redis, { runId, tasks: join(dir, 'tasks.jsonl') });
    const control = f.workers.ctx.runControl;
    await until(async () => (await control.get(runId)).state === 'paused', 'the run to pause');
    return (await control.get(runId)).reason ?? '';
  }

  it('pauses the run at once when a proxy whose upstream is down answers 503 with a Retry-After of 40 days, saying the endpoint asked for it and that a day is kept', async () => {
    const proxy = http.createServer((req, res) => {
      req.resume();
      res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': String(40 * 86_400) });
      res.end('upstream down for maintenance');
    });
    await new Promise<void>(resolve => proxy.listen(0, '127.0.0.1', resolve));
    try {
      const reason = await judgeOne('maintenance', { OPENAI_BASE_URL: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}/v1` });
      expect(reason).to.match(/^the model endpoint serves nothing .* would wait 24 h \(until 20\d\d-/).and.to.match(/ENVFLEET_RATE_LIMIT_PAUSE_MS 3600000/);
      expect(reason).to.match(/Retry-After asked for 3456000000 ms; at most a day is kept/);
    } finally {
      proxy.closeAllConnections();
      await new Promise<void>(resolve => proxy.close(() => resolve()));
    }
  });

  it('waits for a proxy whose upstream is down answering 503 with Retry-After: 0, no attempt used, and completes the job once it forwards again', async () => {
    const script = parseModelScript({ rules: [{ stage: 'mine.judge', respond: { json: { needsEnvironment: true, reason: 'stateful bookings' } } }] }, 'test script');
    f = await fleet({ script, workers: false });
    let up = false;
    let refused = 0;
    const proxy = await proxyTo(f.server, req => {
      if (up) return null;
      if (req.url?.endsWith('/chat/completions')) refused += 1;
      return { status: 503, headers: { 'content-type': 'text/plain', 'retry-after': '0' }, body: 'no healthy upstream' };
    });
    const queue = new Queue('mine.judge', { connection: f.redis, prefix: f.config.redis.prefix });
    try {
      await f.startWorkers({ queues: ['mine.judge'], config: testConfig(null, { OPENAI_BASE_URL: proxy.url, ENVFLEET_REDIS_PREFIX: f.config.redis.prefix }) });
      const dir = await mkdtemp(join(tmpdir(), 'envfleet-outage-'));
      await writeFile(join(dir, 'tasks.jsonl'), `${JSON.stringify({ id: 't0', task: 'book a room' })}\n`);
      await submitSynthesis(f.config, f.redis, { runId: 'zero', tasks: join(dir, 'tasks.jsonl') });
      const jobId = STAGE_QUEUES['mine.judge'].jobId({ runId: 'zero', taskId: 't0' });
      await until(async () => refused > f.config.jobs.attempts + 1 || (await queue.getJobState(jobId)) === 'failed', 'more 503s than the job has attempts');
      up = true;
      await until(async () => ['completed', 'failed'].includes(await queue.getJobState(jobId)), 'the job to end');
      const job = (await queue.getJob(jobId))!;
      expect(await job.getState(), job.failedReason).to.equal('completed');
      expect(job.attemptsMade).to.equal(1);
    } finally {
      await queue.close();
      await proxy.close();
    }
  });

  it('pauses the run at once when the endpoint cannot be reached and ENVFLEET_RATE_LIMIT_FALLBACK_MS is an hour or more, naming that setting', async () => {
    const reason = await judgeOne('refused', { OPENAI_BASE_URL: 'http://127.0.0.1:1/v1', ENVFLEET_RATE_LIMIT_FALLBACK_MS: '7200000' });
    expect(reason).to.match(/^the model endpoint cannot be reached and the fleet would wait 2 h \(until 20\d\d-[^)]*\) before trying it again \(ENVFLEET_RATE_LIMIT_FALLBACK_MS\), at least ENVFLEET_RATE_LIMIT_PAUSE_MS 3600000: cannot reach endpoint "default"/);
  });

  it('pauses the run, saying the endpoint cannot be reached, once it has been unreachable for ENVFLEET_RATE_LIMIT_PAUSE_MS; resumed when it is back, the job completes with no attempt used', async () => {
    const script = parseModelScript({ rules: [{ stage: 'mine.judge', respond: { json: { needsEnvironment: true, reason: 'stateful bookings' } } }] }, 'test script');
    // Any wait of two refusals is "too long" here.
    f = await fleet({ script, overrides: { ENVFLEET_RATE_LIMIT_PAUSE_MS: '1' }, workers: false });
    const port = f.server.port;
    await f.server.close();
    await f.startWorkers({ queues: ['mine.judge'] });
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-outage-'));
    await writeFile(join(dir, 'tasks.jsonl'), `${JSON.stringify({ id: 't0', task: 'book a room' })}\n`);
    await submitSynthesis(f.config, f.redis, { runId: 'down', tasks: join(dir, 'tasks.jsonl') });
    const control = f.workers.ctx.runControl;
    await until(async () => (await control.get('down')).state === 'paused', 'the run to pause');
    expect((await control.get('down')).reason).to.match(/^the model endpoint cannot be reached without a break for \d+ s \(ENVFLEET_RATE_LIMIT_PAUSE_MS 1\): cannot reach endpoint "default" .*connect ECONNREFUSED 127\.0\.0\.1:\d+.*; resume once the endpoint answers again$/);
    const queue = new Queue('mine.judge', { connection: f.redis, prefix: f.config.redis.prefix });
    try {
      const jobId = STAGE_QUEUES['mine.judge'].jobId({ runId: 'down', taskId: 't0' });
      await until(async () => (await queue.getJobState(jobId)) === 'delayed', 'the job to be parked');
      revived = await startModelServer({ script, port });
      await resumeRun({ connection: f.redis, prefix: f.config.redis.prefix }, control, 'down');
      await until(async () => (await queue.getJobState(jobId)) === 'completed', 'the job to complete');
      const job = (await queue.getJob(jobId))!;
      // The one attempt that completed it (BullMQ counts it): the refusals used none.
      expect(job.attemptsMade).to.equal(1);
      expect(await f.store.getDoc('down', 'judge', 't0')).to.deep.equal({ needsEnvironment: true, reason: 'stateful bookings' });
    } finally {
      await queue.close();
    }
  });
});
