import { Queue } from 'bullmq';
import { expect } from 'chai';
import { z } from 'zod';
import { baseJobOptions, defineQueue, SANDBOX_FULL_WAITS_FIELD } from '../../queues/define-queue.js';
import { InterpreterLostError } from '../../src/sandbox/errors.js';
import { startQueueWorker, type QueueWorker } from '../../workers/bootstrap.js';
import { dropPrefix, finished, REDIS_URL, requireRedis, silentLogger, testConfig } from '../helpers/integration.js';

/**
 * A job whose episode lost its Python interpreter to another environment (InterpreterLostError), through the real
 * worker loop (BullMQ, real Redis): it comes back without using an attempt, its waits counted in its hash as a full
 * sandbox's and reported to the run (status's "waits for sandbox room"), and past ENVFLEET_SANDBOX_FULL_WAITS it uses
 * its attempts, its last recorded as the last. Long in the unit that matters (starts of the job), not in wall time.
 */
describe('a job whose environment was lost with a Python interpreter another environment took down (real Redis and BullMQ worker)', function () {
  this.timeout(120_000);
  before(requireRedis);

  const Data = z.object({ runId: z.string(), label: z.string(), losses: z.number().int() });
  const lostQueue = defineQueue({
    name: 'test-lost-waits',
    data: Data,
    result: z.object({ label: z.string() }),
    description: 'a job that loses its interpreter `losses` times, then ends',
    jobOptions: baseJobOptions,
    identity: d => d,
  });

  let worker: QueueWorker | null = null;
  let queue: Queue | null = null;
  let prefix = '';
  afterEach(async () => {
    await worker?.worker.close();
    await queue?.close();
    worker = null;
    queue = null;
    if (prefix) await dropPrefix(prefix);
  });

  async function run(losses: number, overrides: Record<string, string>) {
    const config = testConfig(null, { ENVFLEET_JOB_ATTEMPTS: '1', ENVFLEET_JOB_BACKOFF_MS: '1', ...overrides });
    prefix = config.redis.prefix;
    const starts: number[] = [];
    const waited: string[] = [];
    const settled: { status: string; message?: string }[] = [];
    worker = startQueueWorker(
      lostQueue,
      data => {
        starts.push(starts.length);
        if (starts.length <= data.losses) return Promise.reject(InterpreterLostError.at('the final state could not be read', 'the interpreter holding this environment was recycled'));
        return Promise.resolve({ label: data.label });
      },
      {
        config,
        connection: { url: REDIS_URL },
        logger: silentLogger(),
        concurrency: 1,
        onWaited: (_data, _id, code) => {
          waited.push(code);
          return Promise.resolve();
        },
        onSettled: (_data, _id, outcome) => {
          settled.push(outcome.status === 'failed' ? { status: outcome.status, message: outcome.message } : { status: outcome.status });
          return Promise.resolve();
        },
      },
    );
    queue = new Queue(lostQueue.name, { connection: { url: REDIS_URL }, prefix });
    const data = { runId: 'r', label: 'épisode 東京 🧳', losses };
    const id = lostQueue.jobId(data);
    await queue.add(lostQueue.name, data, { ...lostQueue.jobOptions(config.jobs), jobId: id });
    const job = await finished(queue, id);
    return { job, starts, waited, settled, waits: Number(await (await queue.getBackend().client).hget(queue.toKey(id), SANDBOX_FULL_WAITS_FIELD)) };
  }

  it('comes back without using an attempt, each wait counted, and ends once an interpreter serves it (one attempt was all it had)', async () => {
    const r = await run(4, { ENVFLEET_SANDBOX_FULL_WAITS: '10' });
    expect(await r.job.getState()).to.equal('completed');
    expect(r.job.returnvalue).to.deep.equal({ label: 'épisode 東京 🧳' });
    expect(r.starts).to.have.length(5);
    // Five starts, one attempt made: the one that ended it (BullMQ counts a completion as an attempt made).
    expect(r.job.attemptsStarted).to.equal(5);
    expect(r.job.attemptsMade).to.equal(1);
    expect(r.waits).to.equal(4);
    expect(r.waited).to.deep.equal(['ENV_DISPOSED', 'ENV_DISPOSED', 'ENV_DISPOSED', 'ENV_DISPOSED']);
    expect(r.settled).to.deep.equal([{ status: 'completed' }]);
  });

  it('uses its attempts past ENVFLEET_SANDBOX_FULL_WAITS, and what its last attempt records says so', async () => {
    const r = await run(100, { ENVFLEET_SANDBOX_FULL_WAITS: '2' });
    expect(await r.job.getState()).to.equal('failed');
    expect(r.starts).to.have.length(3);
    expect(r.waits).to.equal(2);
    expect(r.settled).to.have.length(1);
    expect(r.settled[0]!.message).to.include('interpreters kept being taken down, so this used an attempt').and.include('(this was the last of its 1 attempt, ENVFLEET_JOB_ATTEMPTS: it is not run again)');
  });
});
