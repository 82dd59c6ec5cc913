import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { Queue } from 'bullmq';
import { createRunEnqueuer } from '../../queues/enqueuer.js';
import { PIPELINE, STAGE_QUEUES } from '../../queues/pipeline.js';
import { submitSynthesis } from '../../queues/submit.js';
import { parseModelScript } from '../../src/model-server/index.js';
import { rejection } from '../helpers/assert.js';
import { finished, until, useFleet, type Fleet, type Overrides } from '../helpers/integration.js';

const GOOD = { needsEnvironment: true, reason: 'stateful bookings' };

/**
 * The model gateway inside real jobs: `mine.judge` jobs (the first stage of a run) consumed by a real
 * worker, against the scripted server's faults. Only the mine.judge queue is consumed, so each test
 * watches exactly the judge calls.
 */
describe('model calls in jobs: repair, retries, rate limits, cache (real Redis, real workers, scripted server)', function () {
  const fleet = useFleet();
  let f: Fleet;
  let queue: Queue;

  async function start(rules: unknown[], overrides: Overrides = {}, concurrency = 4) {
    f = await fleet({ script: parseModelScript({ rules }, 'test script'), overrides, workers: { queues: ['mine.judge'], concurrency } });
    queue = new Queue('mine.judge', { connection: f.redis, prefix: f.config.redis.prefix });
  }
  afterEach(async () => {
    await queue?.close();
  });

  /** Submits a run of source tasks; returns the ids of their mine.judge jobs. */
  async function judge(runId: string, tasks: readonly string[]): Promise<string[]> {
    await submitSynthesis(f.config, f.redis, { runId, tasks: await tasksFile(tasks) });
    return tasks.map((_, i) => STAGE_QUEUES['mine.judge'].jobId({ runId, taskId: `t${i}` }));
  }

  const chatRequests = () => f.server.log().filter(e => e.path.endsWith('/chat/completions'));

  it('accepts valid structured output and stores the decision in the run', async () => {
    await start([{ stage: 'mine.judge', respond: { json: GOOD } }]);
    const [jobId] = await judge('r', ['Book a room']);
    const job = await finished(queue, jobId!);
    expect(await job.getState()).to.equal('completed');
    expect(STAGE_QUEUES['mine.judge'].parseResult(job.returnvalue)).to.deep.equal({ ok: true, detail: { needsEnvironment: true } });
    expect(await f.store.getDoc('r', 'judge', 't0')).to.deep.equal(GOOD);
    expect(chatRequests()[0]!.stage).to.equal('mine.judge');
  });

  it('sends malformed output back to the model and accepts the repaired answer', async () => {
    await start([{ stage: 'mine.judge', responses: [{ content: 'I think it does need one.' }, { json: { needsEnvironment: 'yes' } }, { json: GOOD }] }]);
    const [jobId] = await judge('r', ['Book a room']);
    const job = await finished(queue, jobId!);
    expect(await job.getState()).to.equal('completed');
    expect(await f.store.getDoc('r', 'judge', 't0')).to.deep.equal(GOOD);
    const requests = chatRequests();
    expect(requests).to.have.length(3);
    // The second and third requests carry the model's bad reply and the validation error.
    const repair = (requests[2]!.body as { messages: { role: string; content: string }[] }).messages;
    expect(repair.at(-2)).to.deep.include({ role: 'assistant' });
    expect(repair.at(-1)!.content).to.match(/needsEnvironment/).and.to.match(/reason/);
  });

  it('ends the item after the repair bound, with the reason recorded, and no retries', async () => {
    await start([{ stage: 'mine.judge', respond: { content: 'never JSON' } }], { ENVFLEET_REPAIR_ATTEMPTS: '2' });
    const [jobId] = await judge('r', ['Book a room']);
    const job = await finished(queue, jobId!);
    expect(await job.getState()).to.equal('completed');
    expect(job.attemptsMade).to.equal(1);
    expect(chatRequests()).to.have.length(3);
    const decision = await f.store.getDoc('r', 'judge', 't0');
    expect(decision).to.deep.include({ needsEnvironment: false, failed: true });
    expect(decision!.reason).to.match(/MODEL_OUTPUT_INVALID|after 3 calls/).and.to.match(/not valid JSON/);
    expect((await f.store.counters('r'))['mine.judge']).to.deep.equal({ 'failed:MODEL_OUTPUT_INVALID': 1 });
  });

  it('rate-limits the queue on a 429 storm without using attempts', async () => {
    await start(
      [
        { stage: 'mine.judge', times: 6, fault: { type: 'rate_limit', retryAfterS: 0.2 } },
        { stage: 'mine.judge', respond: { json: GOOD } },
      ],
      { ENVFLEET_JOB_ATTEMPTS: '2' },
    );
    const ids = await judge('r', ['task a', 'task b', 'task c']);
    for (const jobId of ids) {
      const job = await finished(queue, jobId);
      // Six 429s against two attempts per job: had they used attempts, jobs would have failed.
      expect(await job.getState(), job.failedReason).to.equal('completed');
      expect(job.attemptsMade).to.equal(1);
    }
    const statuses = chatRequests().map(e => e.status);
    expect(statuses.filter(s => s === 429)).to.have.length(6);
    expect(statuses.filter(s => s === 200)).to.have.length(3);
  });

  it('retries a 500 with exponential backoff (a job whose call is not sent again at once: ENVFLEET_MODEL_RETRIES 0)', async () => {
    await start([{ stage: 'mine.judge', times: 2, fault: { type: 'server_error' } }, { stage: 'mine.judge', respond: { json: GOOD } }], { ENVFLEET_JOB_ATTEMPTS: '3', ENVFLEET_JOB_BACKOFF_MS: '200', ENVFLEET_MODEL_RETRIES: '0' });
    const [jobId] = await judge('r', ['task']);
    const job = await finished(queue, jobId!);
    expect(await job.getState()).to.equal('completed');
    expect(job.attemptsMade).to.equal(3);
    expect(job.opts.backoff).to.deep.include({ type: 'exponential', delay: 200 });
    const at = chatRequests().map(e => Date.parse(e.at));
    // Backoff waits at least half the delay (jitter 0.5) before each retry.
    expect(at[1]! - at[0]!).to.be.at.least(100);
    expect(at[2]! - at[1]!).to.be.at.least(200);
  });

  it('fails with the server error recorded once attempts run out, and counts the task as failed at its stage', async () => {
    // (A 503 is not sent again within the call, with the default ENVFLEET_MODEL_RETRIES: a run of them is the outage rule's to judge.)
    await start([{ stage: 'mine.judge', fault: { type: 'server_error', status: 503 } }], { ENVFLEET_JOB_ATTEMPTS: '2' });
    const [jobId] = await judge('r', ['task']);
    const job = await finished(queue, jobId!);
    expect(await job.getState()).to.equal('failed');
    expect(job.attemptsMade).to.equal(2);
    expect(job.failedReason).to.match(/\[MODEL_SERVER_ERROR\] 503/);
    await until(async () => (await f.store.counters('r'))['mine.judge']?.['failed:MODEL_SERVER_ERROR'] === 1, 'the failed task to be counted');
  });

  it('retries a request that times out', async () => {
    await start(
      [
        { stage: 'mine.judge', times: 1, fault: { type: 'delay', ms: 3000 }, respond: { json: GOOD } },
        { stage: 'mine.judge', respond: { json: GOOD } },
      ],
      { ENVFLEET_MODEL_TIMEOUT_MS: '300', ENVFLEET_JOB_ATTEMPTS: '3' },
    );
    const [jobId] = await judge('r', ['task']);
    const job = await finished(queue, jobId!);
    expect(await job.getState(), job.failedReason).to.equal('completed');
    expect(job.attemptsMade).to.equal(2);
  });

  for (const type of ['truncated', 'malformed'] as const) {
    it(`retries after a ${type} response body`, async () => {
      await start([{ stage: 'mine.judge', times: 1, fault: { type } }, { stage: 'mine.judge', respond: { json: GOOD } }], { ENVFLEET_JOB_ATTEMPTS: '2' });
      const [jobId] = await judge('r', ['task']);
      const job = await finished(queue, jobId!);
      expect(await job.getState(), job.failedReason).to.equal('completed');
      expect(job.attemptsMade).to.equal(2);
      expect(chatRequests().map(e => e.fault)).to.deep.equal([type, null]);
    });
  }

  it('serves a repeated request of the same run from the cache, and the ledger matches the server usage', async () => {
    // One job at a time, so the second (another task with the same text) finds the first's answer.
    await start([{ stage: 'mine.judge', respond: { json: GOOD } }], {}, 1);
    const ids = await judge('run-1', ['same task', ' same task ']);
    for (const jobId of ids) expect(await (await finished(queue, jobId)).getState()).to.equal('completed');
    expect(chatRequests()).to.have.length(1);

    const totals = await f.workers.ctx.ledger.totals('run-1');
    const sent = chatRequests()[0]!.usage!;
    expect(totals.requests).to.equal(1);
    expect(totals.cachedRequests).to.equal(1);
    expect(totals.promptTokens).to.equal(sent.prompt_tokens);
    expect(totals.completionTokens).to.equal(sent.completion_tokens);
    expect(totals.savedPromptTokens).to.equal(sent.prompt_tokens);
    expect(totals.byStage['mine.judge']?.promptTokens).to.equal(sent.prompt_tokens);
    expect(totals.costUsd).to.be.greaterThan(0);
  });

  it('does not add a job twice for the same inputs', async () => {
    await start([{ stage: 'mine.judge', respond: { json: GOOD } }]);
    const [jobId] = await judge('r', ['task']);
    await finished(queue, jobId!);
    const again = await submitSynthesis(f.config, f.redis, { runId: 'r', tasks: await tasksFile(['task']) });
    expect(again).to.deep.include({ created: false, jobsAdded: 0 });
    expect(chatRequests()).to.have.length(1);
  });

  it('refuses job data that does not match the stage schema, at enqueue and in the worker', async () => {
    await start([]);
    const enqueuer = createRunEnqueuer(PIPELINE, f.redis, { prefix: f.config.redis.prefix, jobs: f.config.jobs, store: f.store });
    const error = await rejection(enqueuer.enter('tasks', { runId: 'r', taskIds: [''] }).finally(() => enqueuer.close()));
    expect(error).to.have.property('code', 'INVALID_JOB_DATA');
    expect(String(error)).to.match(/taskId/);
    // Data that reached Redis some other way fails for good in the worker, without a retry.
    await queue.add('mine.judge', { runId: 'r' }, { jobId: 'bad-data', attempts: 3 });
    const job = await finished(queue, 'bad-data');
    expect(await job.getState()).to.equal('failed');
    expect(job.attemptsMade).to.equal(1);
    expect(job.failedReason).to.match(/^\[INVALID_JOB_DATA\].*taskId/);
  });
});

async function tasksFile(tasks: readonly string[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'envfleet-judge-'));
  await writeFile(join(dir, 'tasks.jsonl'), tasks.map((task, i) => JSON.stringify({ id: `t${i}`, task })).join('\n'));
  return join(dir, 'tasks.jsonl');
}
