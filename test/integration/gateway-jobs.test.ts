import { expect } from 'chai';
import type { Queue } from 'bullmq';
import type { AppConfig } from '../../config/index.js';
import { modelCallQueue } from '../../queues/model-call.queue.js';
import type { ModelServer } from '../../src/model-server/index.js';
import type { ModelCallInput } from '../../src/stages/model-call.js';
import { startWorkerProcess, type RunningWorker } from '../../workers/main.js';
import { dropPrefix, finished, requireRedis, scriptedServer, silentLogger, testConfig } from '../helpers/integration.js';
import { rejection } from '../helpers/assert.js';

const SCHEMA = {
  type: 'object',
  properties: { needsEnvironment: { type: 'boolean' }, reason: { type: 'string' } },
  required: ['needsEnvironment', 'reason'],
  additionalProperties: false,
};
const GOOD = { needsEnvironment: true, reason: 'stateful bookings' };

function input(key: string, text: string, runId = 'run-1'): ModelCallInput {
  return {
    runId,
    stage: 'mine.judge',
    key,
    messages: [
      { role: 'system', content: 'Answer with JSON {needsEnvironment, reason}.' },
      { role: 'user', content: text },
    ],
    output: { type: 'json', schema: SCHEMA },
  };
}

describe('model gateway jobs (real Redis, real workers, scripted server)', function () {
  this.timeout(60_000);
  let server: ModelServer | undefined;
  let config: AppConfig;
  let running: RunningWorker | undefined;
  let queue: Queue;

  before(requireRedis);

  async function start(script: unknown, overrides: Parameters<typeof testConfig>[1] = {}) {
    server = await scriptedServer(script);
    config = testConfig(server, overrides);
    running = await startWorkerProcess(config, silentLogger(), { queues: [modelCallQueue.name], concurrency: 4 });
    queue = running.workers[0]!.queue;
  }

  afterEach(async () => {
    await running?.stop();
    await server?.close();
    if (config) await dropPrefix(config.redis.prefix);
    running = undefined;
    server = undefined;
  });

  const chatRequests = () => server!.log().filter(e => e.path.endsWith('/chat/completions'));

  it('accepts valid structured output and stores it by reference', async () => {
    await start({ rules: [{ stage: 'mine.judge', respond: { json: GOOD } }] });
    const { jobId } = await modelCallQueue.enqueue(queue, input('a', 'Book a room'));
    const job = await finished(queue, jobId);
    expect(await job.getState()).to.equal('completed');
    const result = modelCallQueue.parseResult(job.returnvalue);
    expect(result.calls).to.equal(1);
    const artifact = await running!.ctx.artifacts.get<{ output: unknown }>(result.ref);
    expect(artifact?.output).to.deep.equal(GOOD);
    expect(chatRequests()[0]!.stage).to.equal('mine.judge');
  });

  it('sends malformed output back to the model and accepts the repaired answer', async () => {
    await start({
      rules: [{ stage: 'mine.judge', responses: [{ content: 'I think it does need one.' }, { json: { needsEnvironment: 'yes' } }, { json: GOOD }] }],
    });
    const { jobId } = await modelCallQueue.enqueue(queue, input('a', 'Book a room'));
    const job = await finished(queue, jobId);
    expect(await job.getState()).to.equal('completed');
    expect(modelCallQueue.parseResult(job.returnvalue).calls).to.equal(3);
    const requests = chatRequests();
    expect(requests).to.have.length(3);
    // The second and third requests carry the model's bad reply and the validation error.
    const repair = (requests[2]!.body as { messages: { role: string; content: string }[] }).messages;
    expect(repair.at(-2)).to.deep.include({ role: 'assistant' });
    expect(repair.at(-1)!.content).to.match(/needsEnvironment/).and.to.match(/reason/);
  });

  it('gives up after the repair bound with the reason recorded and no retries', async () => {
    await start({ rules: [{ stage: 'mine.judge', respond: { content: 'never JSON' } }] }, { ENVFLEET_REPAIR_ATTEMPTS: '2' });
    const { jobId } = await modelCallQueue.enqueue(queue, input('a', 'Book a room'));
    const job = await finished(queue, jobId);
    expect(await job.getState()).to.equal('failed');
    expect(job.failedReason).to.match(/^\[MODEL_OUTPUT_INVALID\]/).and.to.match(/after 3 calls/).and.to.match(/not valid JSON/);
    expect(job.attemptsMade).to.equal(1);
    expect(chatRequests()).to.have.length(3);
  });

  it('rate-limits the queue on a 429 storm without using attempts', async () => {
    await start(
      {
        rules: [
          { stage: 'mine.judge', times: 6, fault: { type: 'rate_limit', retryAfterS: 0.2 } },
          { stage: 'mine.judge', respond: { json: GOOD } },
        ],
      },
      { ENVFLEET_JOB_ATTEMPTS: '2' },
    );
    const ids = await Promise.all(['a', 'b', 'c'].map(k => modelCallQueue.enqueue(queue, input(k, `task ${k}`))));
    for (const { jobId } of ids) {
      const job = await finished(queue, jobId);
      // Six 429s against two attempts per job: had they used attempts, jobs would have failed.
      expect(await job.getState(), job.failedReason).to.equal('completed');
      expect(job.attemptsMade).to.equal(1);
    }
    const statuses = chatRequests().map(e => e.status);
    expect(statuses.filter(s => s === 429)).to.have.length(6);
    expect(statuses.filter(s => s === 200)).to.have.length(3);
  });

  it('retries a 500 with exponential backoff', async () => {
    await start(
      { rules: [{ stage: 'mine.judge', times: 2, fault: { type: 'server_error' } }, { stage: 'mine.judge', respond: { json: GOOD } }] },
      { ENVFLEET_JOB_ATTEMPTS: '3', ENVFLEET_JOB_BACKOFF_MS: '200' },
    );
    const { jobId } = await modelCallQueue.enqueue(queue, input('a', 'task'));
    const job = await finished(queue, jobId);
    expect(await job.getState()).to.equal('completed');
    expect(job.attemptsMade).to.equal(3);
    expect(job.opts.backoff).to.deep.include({ type: 'exponential', delay: 200 });
    const at = chatRequests().map(e => Date.parse(e.at));
    // Backoff waits at least half the delay (jitter 0.5) before each retry.
    expect(at[1]! - at[0]!).to.be.at.least(100);
    expect(at[2]! - at[1]!).to.be.at.least(200);
  });

  it('fails with the server error recorded once attempts run out', async () => {
    await start({ rules: [{ stage: 'mine.judge', fault: { type: 'server_error', status: 503 } }] }, { ENVFLEET_JOB_ATTEMPTS: '2' });
    const { jobId } = await modelCallQueue.enqueue(queue, input('a', 'task'));
    const job = await finished(queue, jobId);
    expect(await job.getState()).to.equal('failed');
    expect(job.attemptsMade).to.equal(2);
    expect(job.failedReason).to.match(/\[MODEL_SERVER_ERROR\] 503/);
  });

  it('retries a request that times out', async () => {
    await start(
      {
        rules: [
          { stage: 'mine.judge', times: 1, fault: { type: 'delay', ms: 3000 }, respond: { json: GOOD } },
          { stage: 'mine.judge', respond: { json: GOOD } },
        ],
      },
      { ENVFLEET_MODEL_TIMEOUT_MS: '300', ENVFLEET_JOB_ATTEMPTS: '3' },
    );
    const { jobId } = await modelCallQueue.enqueue(queue, input('a', 'task'));
    const job = await finished(queue, jobId);
    expect(await job.getState(), job.failedReason).to.equal('completed');
    expect(job.attemptsMade).to.equal(2);
  });

  for (const type of ['truncated', 'malformed'] as const) {
    it(`retries after a ${type} response body`, async () => {
      await start(
        { rules: [{ stage: 'mine.judge', times: 1, fault: { type } }, { stage: 'mine.judge', respond: { json: GOOD } }] },
        { ENVFLEET_JOB_ATTEMPTS: '2' },
      );
      const { jobId } = await modelCallQueue.enqueue(queue, input('a', 'task'));
      const job = await finished(queue, jobId);
      expect(await job.getState(), job.failedReason).to.equal('completed');
      expect(job.attemptsMade).to.equal(2);
      expect(chatRequests().map(e => e.fault)).to.deep.equal([type, null]);
    });
  }

  it('serves a repeated request of the same run from the cache, and the ledger matches the server usage', async () => {
    await start({ rules: [{ stage: 'mine.judge', respond: { json: GOOD } }] });
    const first = await modelCallQueue.enqueue(queue, input('a', 'same task'));
    await finished(queue, first.jobId);
    // A different job (another key) with an identical request: served from the cache.
    const second = await modelCallQueue.enqueue(queue, input('b', 'same task'));
    const job = await finished(queue, second.jobId);
    expect(await job.getState()).to.equal('completed');
    expect(chatRequests()).to.have.length(1);

    const totals = await running!.ctx.ledger.totals('run-1');
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
    await start({ rules: [{ stage: 'mine.judge', respond: { json: GOOD } }] });
    const a = await modelCallQueue.enqueue(queue, input('a', 'task'));
    await finished(queue, a.jobId);
    const again = await modelCallQueue.enqueue(queue, input('a', 'task'));
    expect(again).to.deep.equal({ jobId: a.jobId, added: false });
    expect(chatRequests()).to.have.length(1);
  });

  it('refuses job data that does not match the queue schema, at enqueue', async () => {
    await start({ rules: [] });
    const bad = { ...input('a', 'task'), stage: 'no.such.stage' } as unknown as ModelCallInput;
    const error = await rejection(modelCallQueue.enqueue(queue, bad));
    expect(error).to.have.property('code', 'INVALID_JOB_DATA');
    expect(String(error)).to.match(/stage/);
  });
});
