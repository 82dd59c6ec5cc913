import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { expect } from 'chai';
import { STAGE_QUEUES } from '../../queues/pipeline.js';
import { resumeRun } from '../../queues/run-jobs.js';
import { submitSynthesis } from '../../queues/submit.js';
import { parseModelScript } from '../../src/model-server/index.js';
import { finished, until, useFleet, type Fleet, type Overrides } from '../helpers/integration.js';

const GOOD = { needsEnvironment: true, reason: 'stateful bookings' };

async function tasksFile(tasks: readonly string[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'envfleet-storm-'));
  const file = join(dir, 'tasks.jsonl');
  await writeFile(file, tasks.map((task, i) => JSON.stringify({ id: `t${i}`, task })).join('\n'));
  return file;
}

/**
 * Long 429 storms against real `mine.judge` jobs (only that queue is consumed). A rate-limited job
 * goes back to its queue without using an attempt; each time it is taken again is a start, and
 * starts are no longer capped (the old cap, 100, failed jobs of long storms before they ran).
 */
describe('long rate limits: 429 storms use no start budget (real Redis, real workers, scripted server)', function () {
  const fleet = useFleet();
  let f: Fleet;
  let queue: Queue | undefined;

  async function start(rules: unknown[], overrides: Overrides = {}) {
    f = await fleet({ script: parseModelScript({ rules }, 'test script'), overrides, workers: { queues: ['mine.judge'], concurrency: 2 } });
    queue = new Queue('mine.judge', { connection: f.redis, prefix: f.config.redis.prefix });
  }
  afterEach(async () => {
    await queue?.close();
    queue = undefined;
  });

  async function judge(runId: string, tasks: readonly string[]): Promise<string[]> {
    await submitSynthesis(f.config, f.redis, { runId, tasks: await tasksFile(tasks) });
    return tasks.map((_, i) => STAGE_QUEUES['mine.judge'].jobId({ runId, taskId: `t${i}` }));
  }

  const statuses = () => f.server.log().filter(e => e.path.endsWith('/chat/completions')).map(e => e.status);

  it('rides out a 429 storm longer than the old start cap with nothing failed', async () => {
    // 250 429s shared by two jobs: at least one of them is rate limited (and started) over 125 times.
    await start([
      { stage: 'mine.judge', times: 250, fault: { type: 'rate_limit', retryAfterS: 0.002 } },
      { stage: 'mine.judge', respond: { json: GOOD } },
    ]);
    const ids = await judge('storm', ['task a', 'task b']);
    const jobs = [];
    for (const jobId of ids) jobs.push(await finished(queue!, jobId, 150_000));
    for (const job of jobs) {
      expect(await job.getState(), job.failedReason).to.equal('completed');
      expect(job.attemptsMade).to.equal(1);
    }
    // The storm was long in starts: over the old cap of 100 for one job at least.
    expect(Math.max(...jobs.map(j => j.attemptsStarted))).to.be.greaterThan(100);
    expect(statuses().filter(s => s === 429)).to.have.length(250);
    expect(statuses().filter(s => s === 200)).to.have.length(2);
    expect(await queue!.getFailedCount()).to.equal(0);
    expect((await f.workers.ctx.runControl.get('storm')).state).to.equal('running');
  });

  it('pauses the run when a job stays rate limited too long (ENVFLEET_RATE_LIMIT_PAUSE_MS), parks it, and finishes it after resume', async () => {
    await start(
      [
        { stage: 'mine.judge', times: 2, fault: { type: 'rate_limit', retryAfterS: 0.01 } },
        { stage: 'mine.judge', respond: { json: GOOD } },
      ],
      // Any streak of two rate limits is "too long" here.
      { ENVFLEET_RATE_LIMIT_PAUSE_MS: '1' },
    );
    const control = f.workers.ctx.runControl;
    const [jobId] = await judge('limited', ['task a']);
    await until(async () => (await control.get('limited')).state === 'paused', 'the run to pause');
    expect((await control.get('limited')).reason).to.match(/rate limited without a break/).and.to.match(/429/);
    // Parked, not failed: delayed in its queue and recorded with the run.
    await until(async () => (await queue!.getJobState(jobId!)) === 'delayed', 'the job to be parked');
    const parked: string[] = [];
    for await (const batch of control.parked('limited')) parked.push(...batch.map(p => p.key));
    expect(parked).to.deep.equal([`mine.judge|${jobId!}`]);

    await resumeRun({ connection: f.redis, prefix: f.config.redis.prefix }, control, 'limited');
    const job = await finished(queue!, jobId!);
    expect(await job.getState(), job.failedReason).to.equal('completed');
    expect(job.attemptsMade).to.equal(1);
    expect(statuses().filter(s => s === 429)).to.have.length(2);
    expect(statuses().filter(s => s === 200)).to.have.length(1);
    expect(await f.store.getDoc('limited', 'judge', 't0')).to.deep.equal(GOOD);
  });

  it('pauses the run at once, saying until when, when the endpoint asks to wait longer than a run waits rate limited (Retry-After: 40 days)', async () => {
    // Before: the queue was rate limited for 40 days (a Node timer past 2^31 - 1 ms fires at once) and the run never paused.
    await start([
      { stage: 'mine.judge', times: 1, fault: { type: 'rate_limit', retryAfterS: 40 * 86_400 } },
      { stage: 'mine.judge', respond: { json: GOOD } },
    ]);
    const control = f.workers.ctx.runControl;
    const [jobId] = await judge('asked-long', ['task a']);
    await until(async () => (await control.get('asked-long')).state === 'paused', 'the run to pause');
    const { reason } = await control.get('asked-long');
    expect(reason).to.match(/asks to wait 24 h \(until 20\d\d-\d\d-\d\dT/).and.to.match(/ENVFLEET_RATE_LIMIT_PAUSE_MS 3600000/).and.to.match(/at most a day is kept/);
    await until(async () => (await queue!.getJobState(jobId!)) === 'delayed', 'the job to be parked');
    // One request reached the endpoint; the queue itself is not held (another run's jobs on it are not blocked): at most
    // the worker's own one-second job-count window, not the endpoint's wait.
    expect(statuses()).to.deep.equal([429]);
    expect(await queue!.getRateLimitTtl()).to.be.lessThan(2_000);
  });

  it('waits at most an hour at a time in the queue when runs never pause for rate limits (ENVFLEET_RATE_LIMIT_PAUSE_MS 0)', async () => {
    await start([{ stage: 'mine.judge', times: 1, fault: { type: 'rate_limit', retryAfterS: 3 * 3_600 } }], { ENVFLEET_RATE_LIMIT_PAUSE_MS: '0' });
    const [jobId] = await judge('waits', ['task a']);
    await until(async () => statuses().length === 1 && (await queue!.getRateLimitTtl()) > 60_000, 'the queue to wait for the endpoint');
    const ttl = await queue!.getRateLimitTtl();
    expect(ttl).to.be.greaterThan(3_000_000).and.at.most(3_600_000);
    expect((await f.workers.ctx.runControl.get('waits')).state).to.equal('running');
    expect(await queue!.getJobState(jobId!)).to.be.oneOf(['waiting', 'prioritized', 'active']);
  });
});
