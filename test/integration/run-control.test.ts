import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Queue, Worker } from 'bullmq';
import { expect } from 'chai';
import { parsePendingKey } from '../../queues/enqueuer.js';
import { cancelRun, resumeRun } from '../../queues/run-jobs.js';
import { runStatus } from '../../queues/run-status.js';
import { formatStatus } from '../../cli/runs.js';
import { createRedisLedger } from '../../src/llm/redis-ledger.js';
import { clearCoolDowns, createRedisLimiter } from '../../src/llm/redis-limiter.js';
import { submitRollouts, submitScenarios, submitSynthesis } from '../../queues/submit.js';
import { rejection } from '../helpers/assert.js';
import { loadModelScript, parseModelScript, type ModelServer } from '../../src/model-server/index.js';
import { createRedisRunControl, type RunControl } from '../../src/runs/control.js';
import { startWorkerProcess, type RunningWorker } from '../../workers/main.js';
import { DEMO, ENVFLEET_BIN, childEnv, silentLogger, until, useFleet, type Fleet } from '../helpers/integration.js';

const execFileAsync = promisify(execFile);

const LIBRARY = {
  summary: 'Library circulation system',
  introduction: 'A public library circulation system that tracks members, the book catalogue with copies on the shelf, and loans with their due days. Staff and members look up members and books, lend and take back copies, and settle overdue fines. It enforces loan limits and blocks lending to members with unpaid fines.',
};

async function descriptions(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'envfleet-control-'));
  await writeFile(join(dir, 'd.jsonl'), `${JSON.stringify(LIBRARY)}\n`);
  return join(dir, 'd.jsonl');
}

/** A file of `n` distinct source tasks. */
async function tasks(n: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'envfleet-control-'));
  const lines = Array.from({ length: n }, (_, i) => JSON.stringify({ id: `t${i}`, task: `Task ${i}: move booking number ${1000 + i} to the next free day and tell me the new date.`, source: 'test' }));
  await writeFile(join(dir, 'tasks.jsonl'), `${lines.join('\n')}\n`);
  return join(dir, 'tasks.jsonl');
}

/**
 * A run of three stages that costs little: every task is judged (mine.judge) and given a topic
 * (mine.topic) whose low scores keep it from becoming an environment, then mine.dedup runs once.
 * The delays keep jobs of both model stages waiting at the same time.
 */
const miningScript = (judgeMs: number, topicMs: number) =>
  parseModelScript(
    {
      rules: [
        { stage: 'mine.judge', fault: { type: 'delay', ms: judgeMs }, respond: { json: { needsEnvironment: true, reason: 'It reads and changes stored bookings.' } } },
        {
          stage: 'mine.topic',
          fault: { type: 'delay', ms: topicMs },
          respond: { json: { summary: 'Booking records', introduction: 'A store of bookings with their days that staff look up and move every day.', usefulness: 2, modelability: 2 } },
        },
      ],
    },
    'mining script',
  );

/** Request bodies the server received, in a comparable form (stage + messages). */
const bodies = (server: ModelServer) => server.log().filter(e => e.path.endsWith('/chat/completions')).map(e => `${e.stage} ${JSON.stringify((e.body as { messages: unknown }).messages)}`);

/**
 * Counts how often the fleet looks at whether `runId` is paused. Under the old re-check every look
 * was a start of one waiting job (each job looked on every start); parked jobs do not look at all,
 * only the workers' recheck does, once per run.
 */
function countLooks(control: RunControl, runId: string): () => number {
  let looks = 0;
  const get = control.get.bind(control);
  control.get = async id => {
    if (id === runId) looks += 1;
    return get(id);
  };
  return () => looks;
}

interface Outstanding {
  readonly key: string;
  readonly queue: string;
  readonly state: string;
  readonly attemptsStarted: number;
}

describe('run control: budgets, pause, resume, cancel (real Redis, real workers)', function () {
  const fleet = useFleet();
  const queues = new Map<string, Queue>();
  afterEach(async () => {
    for (const q of queues.values()) await q.close();
    queues.clear();
  });

  /** Every outstanding job of the run, with its BullMQ state and how often it was started. */
  async function outstanding(f: Fleet, runId: string): Promise<Outstanding[]> {
    const out: Outstanding[] = [];
    for (const key of await f.store.pending(runId)) {
      const { queue: name, jobId } = parsePendingKey(key);
      let queue = queues.get(name);
      if (!queue) queues.set(name, (queue = new Queue(name, { connection: f.redis, prefix: f.config.redis.prefix })));
      const job = await queue.getJob(jobId);
      out.push({ key, queue: name, state: job ? await job.getState() : 'missing', attemptsStarted: job?.attemptsStarted ?? 0 });
    }
    return out;
  }

  /** True once nothing of the run runs or waits to be taken: every outstanding job is delayed (parked) or waits for its children. */
  async function held(f: Fleet, runId: string): Promise<boolean> {
    const jobs = await outstanding(f, runId);
    return jobs.some(j => j.state === 'delayed') && jobs.every(j => j.state === 'delayed' || j.state === 'waiting-children');
  }

  /** Items of the run that ended failed so far: tasks counted as failed at a stage, environments failed. */
  async function failures(f: Fleet, runId: string): Promise<string[]> {
    const out: string[] = [];
    for (const [stage, outcomes] of Object.entries(await f.store.counters(runId))) for (const outcome of Object.keys(outcomes)) if (outcome.startsWith('failed')) out.push(`${stage} ${outcome}`);
    for (const id of await f.store.listDocIds(runId, 'env')) {
      const env = await f.store.getDoc(runId, 'env', id);
      if (env?.status === 'failed') out.push(`env ${id} ${env.failure?.code ?? ''}`);
    }
    return out;
  }

  async function parkedKeys(control: RunControl, runId: string): Promise<string[]> {
    const keys = new Set<string>();
    for await (const batch of control.parked(runId)) for (const p of batch) keys.add(p.key);
    return [...keys].sort();
  }

  /**
   * Keeps the run paused until the fleet has looked at it 150 times as often as it has parked jobs:
   * under the old re-check every look was a start of a waiting job, so that is 150 starts of each,
   * and BullMQ failed a job at its 101st. Measured in looks, not in wall time (the recheck setting
   * is short). Stops early if a job of the paused run ends meanwhile (the checks that follow say how).
   */
  async function stayPaused(f: Fleet, runId: string, looks: () => number, jobs: number): Promise<void> {
    const from = looks();
    const outstandingBefore = await f.store.pendingCount(runId);
    await until(async () => looks() - from >= 150 * jobs || (await f.store.pendingCount(runId)) !== outstandingBefore, `${150 * jobs} looks at the paused run`, 300_000);
  }

  /** What the jobs of a paused run look like once they are all parked; checks nothing of it is taken or sent. */
  async function expectParked(f: Fleet, control: RunControl, runId: string): Promise<Outstanding[]> {
    const jobs = await outstanding(f, runId);
    const parked = jobs.filter(j => j.state === 'delayed');
    // Every delayed job is recorded as parked, so resume can find it.
    expect(await parkedKeys(control, runId)).to.include.members(parked.map(j => j.key));
    return parked;
  }

  it('parks a paused run’s jobs of several stages: no starts and no requests however long it stays paused, and after resume every item is done with no request repeated', async () => {
    const f = await fleet({ script: miningScript(200, 400), overrides: { ENVFLEET_PAUSED_RECHECK_MS: '5' }, workers: { concurrency: 1 } });
    const ctx = f.workers.ctx;
    const file = await tasks(8);
    // Reference: the same run, never paused.
    await submitSynthesis(f.config, f.redis, { runId: 'reference', tasks: file });
    await f.waitForRun('reference');
    const reference = bodies(f.server);
    const referenceCounters = await f.store.counters('reference');
    f.server.reset();

    await submitSynthesis(f.config, f.redis, { runId: 'paused', tasks: file });
    // Paused while judges still wait and topics start to queue up behind the slower topic worker.
    await until(() => Promise.resolve(f.server.log().some(e => e.stage === 'mine.topic')), 'the first topic request');
    await ctx.runControl.pause('paused', 'paused by the test');
    await until(() => held(f, 'paused'), 'every job of the paused run to be parked', 300_000);
    expect(await failures(f, 'paused')).to.deep.equal([]);
    const parked = await expectParked(f, ctx.runControl, 'paused');
    expect(new Set(parked.map(j => j.queue)).size, 'stages with parked jobs').to.be.at.least(2);
    const sentBeforeWait = f.server.log().length;

    await stayPaused(f, 'paused', countLooks(ctx.runControl, 'paused'), parked.length);
    expect(await failures(f, 'paused')).to.deep.equal([]);
    // Nothing was taken (starts) or sent (requests) while the run stayed paused.
    for (const job of await outstanding(f, 'paused')) {
      if (job.state === 'waiting-children') continue;
      expect(job.state, job.key).to.equal('delayed');
      expect(job.attemptsStarted, `starts of ${job.key}`).to.be.at.most(2);
    }
    expect(f.server.log().length).to.equal(sentBeforeWait);
    // `envfleet status` while it is paused: no time left estimated from the minutes before the pause, and the way on.
    const paused = (await runStatus({ store: f.store, ledger: createRedisLedger(f.redis, f.config.redis.prefix), control: ctx.runControl }, 'paused'))!;
    expect(paused).to.deep.include({ state: 'paused', etaMinutes: null });
    expect(formatStatus(paused)).to.include('no time left estimated while it is paused (envfleet resume --run paused)').and.not.to.match(/min left/);

    // `envfleet resume` (cli/runs.ts) does this: the run is marked running and its parked jobs are brought back.
    await resumeRun({ connection: f.redis, prefix: f.config.redis.prefix }, ctx.runControl, 'paused');
    await f.waitForRun('paused');
    // Every item went through every stage as without the pause: nothing failed, nothing lost, no request sent twice.
    expect(await f.store.counters('paused')).to.deep.equal(referenceCounters);
    expect(bodies(f.server).sort()).to.deep.equal(reference.sort());
    expect(await parkedKeys(ctx.runControl, 'paused')).to.deep.equal([]);
    expect(await ctx.runControl.runsWithParkedJobs()).to.not.include('paused');
  });

  it('pauses a run at its token budget with nothing lost and no starts used while paused, and after the budget is raised resumes without repeating a request', async () => {
    const f = await fleet({ overrides: { ENVFLEET_PAUSED_RECHECK_MS: '5' } });
    const ctx = f.workers.ctx;
    const file = await descriptions();
    // Reference: the same run without a budget.
    await submitSynthesis(f.config, f.redis, { runId: 'reference', descriptions: file, probeSteps: 8 });
    await f.waitForRun('reference');
    const reference = bodies(f.server);
    f.server.reset();

    await ctx.runControl.setBudgets('budget', { usd: 0, tokens: 8_000, byStage: {} });
    await submitSynthesis(f.config, f.redis, { runId: 'budget', descriptions: file, probeSteps: 8 });
    await until(async () => (await ctx.runControl.get('budget')).state === 'paused', 'the budget pause', 300_000);
    expect((await ctx.runControl.get('budget')).reason).to.match(/budget reached: .*tokens, its budget is 8000/);
    expect((await ctx.runControl.get('budget')).budget, 'the whole run\'s budget').to.deep.equal({ stage: null });
    const spent = await ctx.ledger.totals('budget');
    expect(spent.promptTokens + spent.completionTokens).to.be.at.least(8_000);
    // In-flight requests finish; then every job of the run is parked, and from then on nothing can be sent.
    await until(() => held(f, 'budget'), 'every job of the paused run to be parked', 300_000);
    expect(await failures(f, 'budget')).to.deep.equal([]);
    const parked = await expectParked(f, ctx.runControl, 'budget');
    const atPause = f.server.log().length;

    await stayPaused(f, 'budget', countLooks(ctx.runControl, 'budget'), parked.length);
    expect(await failures(f, 'budget')).to.deep.equal([]);
    expect(f.server.log().length).to.equal(atPause);
    for (const job of await outstanding(f, 'budget')) {
      if (job.state === 'waiting-children') continue;
      expect(job.state, job.key).to.equal('delayed');
      expect(job.attemptsStarted, `starts of ${job.key}`).to.be.at.most(2);
    }
    expect(await ctx.store.pendingCount('budget')).to.be.greaterThan(0);

    // `envfleet resume` without a higher budget (or with one still reached) refuses: the run would pause again at its next
    // call. It says what is used and which flag raises it, and leaves the run paused and its budget as it was.
    const cli = async (...args: string[]) => {
      try {
        const { stdout, stderr } = await execFileAsync(process.execPath, [ENVFLEET_BIN, ...args], { env: childEnv(f.config) });
        return { code: 0, stdout, stderr };
      } catch (err) {
        const e = err as { code: number; stdout: string; stderr: string };
        return { code: e.code, stdout: e.stdout, stderr: e.stderr };
      }
    };
    const refused = await cli('resume', '--run', 'budget');
    expect(refused.code, refused.stdout).to.not.equal(0);
    expect(refused.stderr).to.match(/is at its budget \(\d+ tokens used of 8000 \(all stages\)\)/).and.to.include('nothing was resumed').and.to.include('--budget-tokens N');
    const tooLow = await cli('resume', '--run', 'budget', '--budget-tokens', '8001');
    expect(tooLow.code).to.not.equal(0);
    expect(tooLow.stderr).to.include('even with the new one').and.to.include('the budget is unchanged');
    expect((await ctx.runControl.get('budget')).state).to.equal('paused');
    expect(await ctx.runControl.budgets('budget')).to.deep.include({ tokens: 8_000 });
    expect(formatStatus((await runStatus({ store: f.store, ledger: ctx.ledger, control: ctx.runControl }, 'budget'))!)).to.include('--budget-tokens N');
    // `envfleet budget` below what is used is allowed (a way to stop a run's spending), with a note saying so.
    const lowered = await cli('budget', '--run', 'budget', '--tokens', '7000');
    expect(lowered.code, lowered.stderr).to.equal(0);
    expect(lowered.stderr).to.include('is already at this budget').and.to.include('pauses at its next model call');
    expect(f.server.log().length).to.equal(atPause);

    // Raised later; resumed through run control alone: the workers hear it and bring the parked jobs back.
    await ctx.runControl.setBudgets('budget', { usd: 0, tokens: 0, byStage: {} });
    await ctx.runControl.resume('budget');
    await f.waitForRun('budget');
    const [env] = await Promise.all((await ctx.store.listDocIds('budget', 'env')).map(id => ctx.store.getDoc('budget', 'env', id)));
    expect(env!.status).to.equal('kept');
    // The same requests as without a budget: none lost, none sent twice.
    expect(bodies(f.server).sort()).to.deep.equal(reference.sort());
    expect(await parkedKeys(ctx.runControl, 'budget')).to.deep.equal([]);
    // A resume of a run that is not paused says so (it used to print "resumed; 0 parked jobs brought back"), and a budget
    // given with it is set and said.
    const notPaused = await cli('resume', '--run', 'budget', '--budget-usd', '40');
    expect(notPaused.code, notPaused.stderr).to.equal(0);
    expect(notPaused.stdout).to.equal('run budget is running, not paused, and has no parked job: nothing to resume; budget now $40\n');
    expect(await ctx.runControl.budgets('budget')).to.deep.include({ usd: 40 });
    // A 429 asked for two hours (Retry-After: 7200): the endpoint cools down for every run that long, and jobs brought
    // back are parked again at once. A resume says the endpoint answers again: it ends the cool-down, and says so.
    const endpoint = f.config.endpoints['default']!;
    await createRedisLimiter(f.redis, f.config.redis.prefix).coolDown(endpoint, 7_200_000);
    const cooled = await cli('resume', '--run', 'budget');
    expect(cooled.code, cooled.stderr).to.equal(0);
    // (The seconds left, counted down while the command starts.)
    expect(cooled.stdout, cooled.stdout).to.match(/^endpoint "default" was cooling down for (7200|71\d\d) s more \(a 429's Retry-After, or an outage\): ended\nrun budget is running/);
    expect(await clearCoolDowns(f.redis, f.config.redis.prefix, [endpoint])).to.deep.equal([]);
    // The queue's own wait that a worker set for the cool-down (BullMQ's rate limit: every job of the queue held, of every
    // run) ends with it: it held the fleet's episodes for an hour after a resume (a stranger's probe).
    const rollouts = new Queue('rollout.run', { connection: f.redis, prefix: f.config.redis.prefix });
    queues.set('rollout.run', rollouts);
    await createRedisLimiter(f.redis, f.config.redis.prefix).coolDown(endpoint, 3_600_000);
    // As a worker sets it for an endpoint's cool-down (workers/bootstrap.ts: queue.rateLimit).
    const limiting = new Worker('rollout.run', () => Promise.resolve(), { connection: f.redis, prefix: f.config.redis.prefix, autorun: false, limiter: { max: 1_000_000, duration: 1_000 } });
    await limiting.rateLimit(3_590_000);
    await limiting.close();
    expect(await rollouts.getRateLimitTtl()).to.be.greaterThan(3_500_000);
    const both = await cli('resume', '--run', 'budget');
    expect(both.stdout, both.stdout).to.match(/^endpoint "default" was cooling down for (3600|35\d\d) s more \(a 429's Retry-After, or an outage\): ended\nqueue rollout\.run was held for (3590|35\d\d) s more while the endpoint cooled down \(every run's jobs there\): ended\nrun budget is running/);
    expect(await rollouts.getRateLimitTtl()).to.be.lessThan(0);
  });

  it("keeps the workers' configured budget as the run's (status shows it, envfleet budget without a value only looks), and after a stage's budget pause says to raise that stage's", async () => {
    // The workers have ENVFLEET_BUDGET_TOKENS; the submitting process and the commands do not. The workers' budget
    // applied unseen (status: no budget), `envfleet budget --run R` wrote the command's (none), and the run spent 8×.
    const f = await fleet({ overrides: { ENVFLEET_BUDGET_TOKENS: '8000', ENVFLEET_PAUSED_RECHECK_MS: '5' } });
    const ctx = f.workers.ctx;
    const noBudget = { ...f.config, budgets: { usd: 0, tokens: 0 } };
    await submitSynthesis(noBudget, f.redis, { runId: 'wb', descriptions: await descriptions(), probeSteps: 8 });
    await until(async () => (await ctx.runControl.get('wb')).state === 'paused', 'the budget pause', 300_000);
    expect(await ctx.runControl.budgets('wb')).to.deep.equal({ usd: 0, tokens: 8_000, byStage: {} });
    const status = await runStatus({ store: f.store, ledger: ctx.ledger, control: ctx.runControl }, 'wb');
    expect(status!.budgets).to.deep.include({ tokens: 8_000 });
    const { ENVFLEET_BUDGET_TOKENS: _, ...env } = childEnv(f.config);
    const cli = async (...args: string[]) => {
      try {
        const { stdout, stderr } = await execFileAsync(process.execPath, [ENVFLEET_BIN, ...args], { env });
        return { code: 0, stdout, stderr };
      } catch (err) {
        const e = err as { code: number; stdout: string; stderr: string };
        return { code: e.code, stdout: e.stdout, stderr: e.stderr };
      }
    };
    const looked = await cli('budget', '--run', 'wb', '--json');
    expect(looked.code, looked.stderr).to.equal(0);
    expect(JSON.parse(looked.stdout)).to.deep.equal({ usd: 0, tokens: 8_000, byStage: {} });
    expect(await ctx.runControl.budgets('wb'), 'looking writes nothing').to.deep.equal({ usd: 0, tokens: 8_000, byStage: {} });
    expect((await cli('resume', '--run', 'wb')).stderr).to.include('is at its budget');
    const zeroUsd = await cli('resume', '--run', 'wb', '--budget-usd', '0');
    expect(zeroUsd.code).to.not.equal(0);
    expect(zeroUsd.stderr).to.include('Expected a cost above 0').and.to.include('envfleet budget --run NAME --usd 0');

    // A stage's budget: the pause names the stage, and only that stage's budget lets the run go on.
    const totals = await ctx.ledger.totals('wb');
    const [stage] = Object.entries(totals.byStage).sort(([, a], [, b]) => b.promptTokens + b.completionTokens - (a.promptTokens + a.completionTokens))[0]!;
    await ctx.runControl.setBudgets('wb', { usd: 0, tokens: 0, byStage: { [stage]: { usd: 0, tokens: 1 } } });
    await ctx.runControl.pause('wb', `budget reached: run "wb" stage ${stage} used 2 tokens, its budget is 1`, { stage });
    const runWide = await cli('resume', '--run', 'wb', '--budget-tokens', '9000000');
    expect(runWide.code, runWide.stdout).to.not.equal(0);
    expect(runWide.stderr).to.include(`paused at the budget of stage ${stage}`).and.to.include(`envfleet budget --run wb --stage ${stage} --tokens N`);
    expect((await ctx.runControl.get('wb')).state).to.equal('paused');
    const paused = await runStatus({ store: f.store, ledger: ctx.ledger, control: ctx.runControl }, 'wb');
    expect(formatStatus(paused!)).to.include(`envfleet budget --run wb --stage ${stage} --tokens N`);
    expect((await cli('budget', '--run', 'wb', '--stage', stage, '--tokens', '0')).code).to.equal(0);
    const resumed = await cli('resume', '--run', 'wb');
    expect(resumed.code, resumed.stderr).to.equal(0);
    await f.waitForRun('wb');
    const [envDoc] = await Promise.all((await f.store.listDocIds('wb', 'env')).map(id => f.store.getDoc('wb', 'env', id)));
    expect(envDoc!.status).to.equal('kept');
  });

  it("records the stage whose own budget paused a run, and the advice names that stage's budget; a user's pause whose reason speaks of a budget is a user's pause", async () => {
    // One job at a time, so that the judge's second call finds its first one counted.
    const f = await fleet({ script: miningScript(0, 0), workers: { concurrency: 1 } });
    const ctx = f.workers.ctx;
    await ctx.runControl.setBudgets('stage-paused', { usd: 0, tokens: 0, byStage: { 'mine.judge': { usd: 0, tokens: 1 } } });
    await submitSynthesis(f.config, f.redis, { runId: 'stage-paused', tasks: await tasks(6) });
    await until(async () => (await ctx.runControl.get('stage-paused')).state === 'paused', 'the stage budget pause', 300_000);
    const state = await ctx.runControl.get('stage-paused');
    expect(state.budget).to.deep.equal({ stage: 'mine.judge' });
    expect(state.reason).to.include('stage mine.judge');
    await until(() => held(f, 'stage-paused'), 'every job of the paused run to be parked', 300_000);
    const status = await runStatus({ store: f.store, ledger: ctx.ledger, control: ctx.runControl }, 'stage-paused');
    expect(formatStatus(status!)).to.include('envfleet budget --run stage-paused --stage mine.judge --tokens N');

    // Paused by a user with a reason that starts as a budget pause's: resumed as it is, not refused for a stage's budget.
    await submitSynthesis(f.config, f.redis, { runId: 'user-paused', tasks: await tasks(2) });
    await ctx.runControl.pause('user-paused', 'budget reached: run "x" stage mine.judge used 2 tokens, its budget is 1 (a note for the team)');
    expect((await ctx.runControl.get('user-paused')).budget).to.equal(null);
    const { stdout } = await execFileAsync(process.execPath, [ENVFLEET_BIN, 'resume', '--run', 'user-paused'], { env: childEnv(f.config) });
    expect(stdout).to.include('run user-paused resumed');
    await f.waitForRun('user-paused');
    await cancelRun({ connection: f.redis, prefix: f.config.redis.prefix }, f.store, ctx.runControl, 'stage-paused', 'done with the test');
  });

  it('clears the running mark a dead worker left on a job that is then parked by a pause or ended by a cancel (status showed it active for ever)', async () => {
    const f = await fleet();
    await f.stopWorkers();
    const control = createRedisRunControl(f.redis, f.config.redis.prefix);
    const file = await descriptions();
    for (const runId of ['stale-paused', 'stale-cancelled']) await submitSynthesis(f.config, f.redis, { runId, descriptions: file, probeSteps: 8 });
    // As a worker killed with -9 leaves them: marks of jobs it was running, which are back in their queue.
    for (const runId of ['stale-paused', 'stale-cancelled']) {
      for (const key of await f.store.pending(runId)) {
        const { queue, jobId } = parsePendingKey(key);
        await f.store.running(runId, queue, jobId, true);
      }
      expect(await f.store.runningByStage(runId, ['skeleton.state'])).to.deep.equal({ 'skeleton.state': 1 });
    }
    await control.pause('stale-paused', 'paused while the worker was dead');
    await control.cancel('stale-cancelled', 'cancelled while the worker was dead');
    await f.startWorkers();
    await until(() => held(f, 'stale-paused'), 'the paused run’s job to be parked');
    await until(async () => (await f.store.pendingCount('stale-cancelled')) === 0, 'the cancelled run’s job to end');
    for (const runId of ['stale-paused', 'stale-cancelled']) expect(await f.store.runningByStage(runId, ['skeleton.state']), runId).to.deep.equal({});
    const status = await runStatus({ store: f.store, ledger: createRedisLedger(f.redis, f.config.redis.prefix), control }, 'stale-paused');
    expect(status!.stages.find(s => s.stage === 'skeleton.state')).to.deep.include({ running: 0 });
  });

  it('holds a paused run back entirely, also with no worker running; a worker that starts after a missed resume brings its jobs back', async () => {
    const f = await fleet();
    const ctx = f.workers.ctx;
    const file = await descriptions();
    await ctx.runControl.pause('held', 'held for the test');
    await submitSynthesis(f.config, f.redis, { runId: 'held', descriptions: file, probeSteps: 8 });
    await until(() => held(f, 'held'), 'the run’s job to be parked');
    const parked = await expectParked(f, ctx.runControl, 'held');
    expect(parked.map(j => j.queue)).to.deep.equal(['skeleton.state']);
    expect(f.server.log()).to.have.length(0);

    // No worker runs, and the run is resumed by run control alone: nobody hears it, so the job stays parked.
    await f.stopWorkers();
    const control = createRedisRunControl(f.redis, f.config.redis.prefix);
    await control.resume('held');
    expect((await outstanding(f, 'held')).map(j => j.state)).to.deep.equal(['delayed']);
    // A worker looks for parked jobs of runs no longer paused as it starts (and every ENVFLEET_PAUSED_RECHECK_MS).
    await f.startWorkers();
    await f.waitForRun('held');
    expect(f.server.log().length).to.be.greaterThan(10);
    expect(await parkedKeys(control, 'held')).to.deep.equal([]);
  });

  it('brings every parked job back exactly once while two worker processes and several resumers race with parking', async () => {
    const f = await fleet({ script: miningScript(30, 60), workers: { concurrency: 2 } });
    const second: RunningWorker = await startWorkerProcess(f.config, silentLogger(), { concurrency: 2 });
    try {
      const file = await tasks(8);
      await submitSynthesis(f.config, f.redis, { runId: 'reference', tasks: file });
      await f.waitForRun('reference');
      const reference = bodies(f.server);
      const referenceCounters = await f.store.counters('reference');
      f.server.reset();

      // Pause and resume over and over while the run goes on, through each way of resuming: the
      // command's (resume and bring back at once), and run control alone (the workers bring back).
      const at = { connection: f.redis, prefix: f.config.redis.prefix };
      const control = createRedisRunControl(f.redis, f.config.redis.prefix);
      // It starts paused, so that its first jobs are parked for sure.
      await control.pause('flapping', 'flapping');
      await submitSynthesis(f.config, f.redis, { runId: 'flapping', tasks: file });
      await until(() => held(f, 'flapping'), 'the first jobs to be parked');
      expect(await parkedKeys(control, 'flapping')).to.not.be.empty;
      for (let i = 1; i < 400 && (await f.store.pendingCount('flapping')) > 0; i += 1) {
        if (i % 2 === 0) await control.pause('flapping', 'flapping');
        else if (i % 4 === 1) await resumeRun(at, control, 'flapping');
        else await control.resume('flapping');
        await new Promise(resolve => setTimeout(resolve, (i * 7) % 25));
      }
      await resumeRun(at, control, 'flapping');
      await f.waitForRun('flapping');
      expect(await f.store.counters('flapping')).to.deep.equal(referenceCounters);
      expect(bodies(f.server).sort()).to.deep.equal(reference.sort());
      expect(await parkedKeys(control, 'flapping')).to.deep.equal([]);
    } finally {
      await second.stop();
    }
  });

  it('a cancel stops a running job at its next model call: an environment\'s probe sends no step after the one in flight', async () => {
    const f = await fleet();
    const ctx = f.workers.ctx;
    // Every probe step of the library takes a while to answer, so the probe is running when the run is cancelled.
    const demo = await loadModelScript(DEMO);
    f.server.setScript({ ...demo, rules: (demo.rules ?? []).map(r => (r.stage === 'check.probe.tester' ? { ...r, fault: { type: 'delay' as const, ms: 400 } } : r)) });
    const steps = 8;
    await submitSynthesis(f.config, f.redis, { runId: 'cancel-probe', descriptions: await descriptions(), probeSteps: steps });
    const probes = () => f.server.log().filter(e => e.stage === 'check.probe.tester').length;
    await until(() => Promise.resolve(probes() >= 2), 'the probe to be running');
    await cancelRun({ connection: f.redis, prefix: f.config.redis.prefix }, ctx.store, ctx.runControl, 'cancel-probe', 'changed my mind — 取消 🛑');
    const atCancel = probes();
    await f.waitForRun('cancel-probe');
    // At most the step whose request was on its way when the run was cancelled; the probe had 8 to make.
    expect(probes() - atCancel).to.be.at.most(1);
    expect(probes()).to.be.lessThan(steps);
    const envs = await Promise.all((await ctx.store.listDocIds('cancel-probe', 'env')).map(id => ctx.store.getDoc('cancel-probe', 'env', id)));
    expect(envs.map(e => [e!.status, e!.failure?.code])).to.deep.equal([['failed', 'RUN_CANCELLED']]);
    expect(envs[0]!.failure!.message).to.include('changed my mind — 取消 🛑');
    // The stage table adds up: the probe's row is there with what it spent, and its job left as cancelled (the row was
    // missing, its tokens in no row, and the job counted nowhere).
    const status = (await runStatus({ store: ctx.store, ledger: ctx.ledger, control: ctx.runControl }, 'cancel-probe'))!;
    const probe = status.stages.find(s => s.stage === 'check.probe');
    expect(probe, JSON.stringify(status.stages)).to.not.equal(undefined);
    expect(probe!.left).to.deep.equal({ 'failed:RUN_CANCELLED': 1 });
    expect(probe!.tokens).to.be.greaterThan(0);
    expect(status.stages.reduce((a, s) => a + s.tokens, 0)).to.equal(status.ledger.promptTokens + status.ledger.completionTokens);
  });

  it('a cancel that comes while a job waits for its model answer ends the environment for good: the job does not write it back to probing after the answer', async () => {
    const f = await fleet();
    const ctx = f.workers.ctx;
    // The test state's answer takes a while, so the run is cancelled while check.config waits for it (and its gate was passed).
    const demo = await loadModelScript(DEMO);
    f.server.setScript({ ...demo, rules: (demo.rules ?? []).map(r => (r.stage === 'check.config' ? { ...r, fault: { type: 'delay' as const, ms: 5000 } } : r)) });
    await submitSynthesis(f.config, f.redis, { runId: 'cancel-answer', descriptions: await descriptions(), probeSteps: 8 });
    await until(() => Promise.resolve(f.server.log().some(e => e.stage === 'check.config')), 'check.config to ask for a test state');
    await cancelRun({ connection: f.redis, prefix: f.config.redis.prefix }, ctx.store, ctx.runControl, 'cancel-answer', 'assez — 够了 🛑');
    await f.waitForRun('cancel-answer');
    const envs = await Promise.all((await ctx.store.listDocIds('cancel-answer', 'env')).map(id => ctx.store.getDoc('cancel-answer', 'env', id)));
    // (the job's write after the answer set it back to probing, for ever: the run finished with an environment being probed)
    expect(envs.map(e => [e!.status, e!.failure?.code])).to.deep.equal([['failed', 'RUN_CANCELLED']]);
    expect(envs[0]!.testState, 'no test state written over the cancel').to.equal(undefined);
    expect(await ctx.store.statusCounts('cancel-answer', 'env')).to.deep.equal({ failed: 1 });
    const counters = await ctx.store.counters('cancel-answer');
    expect(counters['check.config'] ?? {}, 'the job counted where it stopped, not done').to.deep.equal({ 'failed:RUN_CANCELLED': 1 });
    expect(f.server.log().filter(e => e.stage === 'check.probe.tester')).to.have.length(0);
  });

  it("a cancel that comes while a scenario's job waits for its model answer leaves the scenario dropped: the job does not write it back to building", async () => {
    const f = await fleet();
    const ctx = f.workers.ctx;
    await submitSynthesis(f.config, f.redis, { runId: 'cancel-scenario', descriptions: await descriptions(), probeSteps: 8 });
    await f.waitForRun('cancel-scenario');
    const demo = await loadModelScript(DEMO);
    // Every checklist's answer takes long, so the run is cancelled while the first one is awaited and none is answered before.
    f.server.setScript({ ...demo, rules: (demo.rules ?? []).map(r => (r.stage === 'scenario.checklist' ? { ...r, fault: { type: 'delay' as const, ms: 5000 } } : r)) });
    await submitScenarios(f.config, f.redis, { runId: 'cancel-scenario', perEnv: 3 });
    await until(() => Promise.resolve(f.server.log().some(e => e.stage === 'scenario.checklist')), 'scenario.checklist to ask for a checklist');
    await cancelRun({ connection: f.redis, prefix: f.config.redis.prefix }, ctx.store, ctx.runControl, 'cancel-scenario', 'plus tard — 以后 ⏹');
    await f.waitForRun('cancel-scenario');
    const scenarios = await Promise.all((await ctx.store.listDocIds('cancel-scenario', 'scenario')).map(id => ctx.store.getDoc('cancel-scenario', 'scenario', id)));
    // (the job's write after the answer set it back to building, for ever)
    expect(scenarios.filter(s => s!.status !== 'dropped').map(s => [s!.id, s!.status])).to.deep.equal([]);
    const asked = scenarios.filter(s => s!.task !== undefined);
    expect(asked, 'scenarios that reached their checklist').to.not.be.empty;
    expect(asked.map(s => [s!.dropReason?.code, s!.checklistItems])).to.deep.equal(asked.map(() => ['RUN_CANCELLED', undefined]));
    expect(await ctx.store.statusCounts('cancel-scenario', 'scenario')).to.deep.equal({ dropped: scenarios.length });
    expect((await ctx.store.counters('cancel-scenario'))['scenario.checklist'] ?? {}, 'no checklist counted done').to.not.have.property('done');
  });

  it("a pause stops a running job at its next model call: an environment's probe sends no step after the one in flight, is parked there, and after resume goes on with no request sent twice", async () => {
    const f = await fleet();
    const ctx = f.workers.ctx;
    const demo = await loadModelScript(DEMO);
    f.server.setScript({ ...demo, rules: (demo.rules ?? []).map(r => (r.stage === 'check.probe.tester' ? { ...r, fault: { type: 'delay' as const, ms: 400 } } : r)) });
    const steps = 8;
    await submitSynthesis(f.config, f.redis, { runId: 'pause-probe', descriptions: await descriptions(), probeSteps: steps });
    const probes = () => f.server.log().filter(e => e.stage === 'check.probe.tester').length;
    await until(() => Promise.resolve(probes() >= 2), 'the probe to be running');
    await ctx.runControl.pause('pause-probe', 'week-end — 周末 🛑');
    const atPause = probes();
    // Parked at its next model call (it ran to its end before, spending all the while).
    await until(() => held(f, 'pause-probe'), 'the running probe to be parked');
    expect(probes() - atPause).to.be.at.most(1);
    expect(probes()).to.be.lessThan(steps);
    expect(await parkedKeys(ctx.runControl, 'pause-probe')).to.have.length(1);
    expect(await failures(f, 'pause-probe')).to.deep.equal([]);

    await resumeRun({ connection: f.redis, prefix: f.config.redis.prefix }, ctx.runControl, 'pause-probe');
    await f.waitForRun('pause-probe');
    const envs = await Promise.all((await ctx.store.listDocIds('pause-probe', 'env')).map(id => ctx.store.getDoc('pause-probe', 'env', id)));
    expect(envs.map(e => e!.status)).to.deep.equal(['kept']);
    // The steps before the pause came from the response cache: each request reached the endpoint once.
    const sent = bodies(f.server);
    expect(sent.length).to.equal(new Set(sent).size);
    expect(probes()).to.equal(steps);
  });

  it('a command waiting for a run that is cancelled meanwhile says it was cancelled and fails (it said the run finished, exit 0)', async () => {
    const f = await fleet();
    const ctx = f.workers.ctx;
    await ctx.runControl.pause('cancel-wait', 'so that jobs wait');
    const child = spawn(process.execPath, [ENVFLEET_BIN, 'synth', '--run', 'cancel-wait', '--descriptions', await descriptions()], { env: childEnv(f.config), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const closed = once(child, 'close');
    await until(() => held(f, 'cancel-wait'), 'the run’s job to be parked');
    await cancelRun({ connection: f.redis, prefix: f.config.redis.prefix }, ctx.store, ctx.runControl, 'cancel-wait', 'plus besoin — 不需要');
    const [code] = (await closed) as [number];
    expect(code, stdout).to.equal(1);
    expect(stdout).to.match(/run cancel-wait was cancelled at \S+ \(plus besoin — 不需要\): its outstanding jobs were removed and it takes no new work; what was done is kept/);
    expect(stdout).not.to.include('finished');
  });

  it('cancels a run: waiting jobs removed, nothing new starts, the run ends', async () => {
    const f = await fleet();
    const ctx = f.workers.ctx;
    const file = await descriptions();
    await ctx.runControl.pause('cancel', 'so that jobs wait');
    await submitSynthesis(f.config, f.redis, { runId: 'cancel', descriptions: file, probeSteps: 8 });
    await until(() => held(f, 'cancel'), 'the run’s job to be parked');
    // Paused again from the command line: the first pause's reason and time stay (a probe saw them replaced).
    const paused = await ctx.runControl.get('cancel');
    const pausedAgain = await execFileAsync(process.execPath, [ENVFLEET_BIN, 'pause', '--run', 'cancel', '--reason', 'encore une fois ⏸'], { env: childEnv(f.config) });
    expect(pausedAgain.stdout).to.equal(`run cancel is already paused since ${paused.since} (so that jobs wait): nothing changed (envfleet resume --run cancel goes on)\n`);
    expect(await ctx.runControl.get('cancel')).to.deep.equal(paused);
    const result = await cancelRun({ connection: f.redis, prefix: f.config.redis.prefix }, ctx.store, ctx.runControl, 'cancel', 'not needed');
    expect(result.removed + result.running).to.be.greaterThan(0);
    await f.waitForRun('cancel');
    expect((await ctx.runControl.get('cancel')).state).to.equal('cancelled');
    expect(f.server.log()).to.have.length(0);
    const envs = await Promise.all((await ctx.store.listDocIds('cancel', 'env')).map(id => ctx.store.getDoc('cancel', 'env', id)));
    expect(envs.map(e => [e!.status, e!.failure?.code])).to.deep.equal([['failed', 'RUN_CANCELLED']]);
    expect(await parkedKeys(ctx.runControl, 'cancel')).to.deep.equal([]);
    let error: unknown;
    try {
      await ctx.runControl.resume('cancel');
    } catch (err) {
      error = err;
    }
    expect(String(error)).to.match(/cancelled run cannot be resumed/);
    // `envfleet resume` refuses it before it touches its budget.
    const refused = await execFileAsync(process.execPath, [ENVFLEET_BIN, 'resume', '--run', 'cancel', '--budget-usd', '5'], { env: childEnv(f.config) }).then(
      () => null,
      (err: unknown) => err as { code: number; stderr: string },
    );
    expect(refused?.code).to.equal(1);
    expect(refused?.stderr).to.include('run "cancel" was cancelled, and a cancelled run takes no new work: nothing was resumed and no budget was set');
    expect((await ctx.runControl.budgets('cancel'))?.usd ?? 0).to.equal(0);
    // Nor can a budget (or anyone) pause it: it stays cancelled.
    error = undefined;
    try {
      await ctx.runControl.pause('cancel', 'budget reached');
    } catch (err) {
      error = err;
    }
    expect(String(error)).to.match(/cancelled run cannot be paused/);
    expect((await ctx.runControl.get('cancel')).state).to.equal('cancelled');
    // Cancelled again (envfleet cancel a second time): the first cancel's reason and time stay.
    const cancelled = await ctx.runControl.get('cancel');
    const again = await execFileAsync(process.execPath, [ENVFLEET_BIN, 'cancel', '--run', 'cancel'], { env: childEnv(f.config) });
    expect(again.stdout).to.equal(`run cancel cancelled (already since ${cancelled.since}: not needed; its reason stays): 0 waiting jobs removed, 0 running jobs end at their next model call\n`);
    expect(await ctx.runControl.get('cancel')).to.deep.equal(cancelled);
    // Nor does it take new work: every submission is refused, saying it is cancelled, and adds no job.
    for (const submit of [
      () => submitSynthesis(f.config, f.redis, { runId: 'cancel', descriptions: file, probeSteps: 8 }),
      () => submitScenarios(f.config, f.redis, { runId: 'cancel', perEnv: 5 }),
      () => submitRollouts(f.config, f.redis, { runId: 'cancel', samples: 2, modes: ['non-conversational'] }),
    ]) {
      const refused = await rejection(submit());
      expect(refused).to.have.property('code', 'INVALID_REQUEST');
      expect(String(refused)).to.include('run "cancel" is cancelled (not needed').and.to.include('nothing was submitted').and.to.include('another run name');
    }
    expect(await ctx.store.pendingCount('cancel')).to.equal(0);
    expect(await ctx.store.getDoc('cancel', 'scenario-config', 'current')).to.equal(null);
  });
});
