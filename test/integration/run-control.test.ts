import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { cancelRun } from '../../queues/run-jobs.js';
import { submitSynthesis } from '../../queues/submit.js';
import type { ModelServer } from '../../src/model-server/index.js';
import { until, useFleet } from '../helpers/integration.js';

const LIBRARY = {
  summary: 'Library circulation system',
  introduction: 'A public library circulation system that tracks members, the book catalogue with copies on the shelf, and loans with their due days. Staff and members look up members and books, lend and take back copies, and settle overdue fines. It enforces loan limits and blocks lending to members with unpaid fines.',
};

async function descriptions(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'envfleet-control-'));
  await writeFile(join(dir, 'd.jsonl'), `${JSON.stringify(LIBRARY)}\n`);
  return join(dir, 'd.jsonl');
}

/** Request bodies the server received, in a comparable form (stage + messages). */
const bodies = (server: ModelServer) => server.log().filter(e => e.path.endsWith('/chat/completions')).map(e => `${e.stage} ${JSON.stringify((e.body as { messages: unknown }).messages)}`);

describe('run control: budgets, pause, resume, cancel (real Redis, real workers)', function () {
  this.timeout(180_000);
  const fleet = useFleet();

  it('pauses a run at its token budget with nothing lost, and after the budget is raised resumes without repeating a request', async () => {
    const f = await fleet();
    const ctx = f.workers.ctx;
    const file = await descriptions();
    // Reference: the same run without a budget.
    await submitSynthesis(f.config, f.redis, { runId: 'reference', descriptions: file, probeSteps: 8 });
    await f.waitForRun('reference');
    const reference = bodies(f.server);
    f.server.reset();

    await ctx.runControl.setBudgets('budget', { usd: 0, tokens: 8_000, byStage: {} });
    await submitSynthesis(f.config, f.redis, { runId: 'budget', descriptions: file, probeSteps: 8 });
    await until(async () => (await ctx.runControl.get('budget')).state === 'paused', 'the budget pause', 60_000);
    expect((await ctx.runControl.get('budget')).reason).to.match(/budget reached: .*tokens, its budget is 8000/);
    // In-flight requests finish; after that nothing is sent while the run is paused.
    const spent = await ctx.ledger.totals('budget');
    expect(spent.promptTokens + spent.completionTokens).to.be.at.least(8_000);
    await new Promise(resolve => setTimeout(resolve, 500));
    const atPause = f.server.log().length;
    await new Promise(resolve => setTimeout(resolve, 3_000)); // longer than a paused job's re-check
    expect(f.server.log().length).to.equal(atPause);
    expect(await ctx.store.pendingCount('budget')).to.be.greaterThan(0);

    await ctx.runControl.setBudgets('budget', { usd: 0, tokens: 0, byStage: {} });
    await ctx.runControl.resume('budget');
    await f.waitForRun('budget');
    const [env] = await Promise.all((await ctx.store.listDocIds('budget', 'env')).map(id => ctx.store.getDoc('budget', 'env', id)));
    expect(env!.status).to.equal('kept');
    // The same requests as without a budget: none lost, none sent twice.
    expect(bodies(f.server).sort()).to.deep.equal(reference.sort());
  });

  it('holds a paused run back entirely, and runs it after resume', async () => {
    const f = await fleet();
    const ctx = f.workers.ctx;
    const file = await descriptions();
    await ctx.runControl.pause('held', 'held for the test');
    await submitSynthesis(f.config, f.redis, { runId: 'held', descriptions: file, probeSteps: 8 });
    await new Promise(resolve => setTimeout(resolve, 3_000));
    expect(f.server.log()).to.have.length(0);
    await ctx.runControl.resume('held');
    await f.waitForRun('held');
    expect(f.server.log().length).to.be.greaterThan(10);
  });

  it('cancels a run: waiting jobs removed, nothing new starts, the run ends', async () => {
    const f = await fleet();
    const ctx = f.workers.ctx;
    const file = await descriptions();
    await ctx.runControl.pause('cancel', 'so that jobs wait');
    await submitSynthesis(f.config, f.redis, { runId: 'cancel', descriptions: file, probeSteps: 8 });
    const result = await cancelRun({ connection: f.redis, prefix: f.config.redis.prefix }, ctx.store, ctx.runControl, 'cancel', 'not needed');
    expect(result.removed + result.running).to.be.greaterThan(0);
    await f.waitForRun('cancel');
    expect((await ctx.runControl.get('cancel')).state).to.equal('cancelled');
    expect(f.server.log()).to.have.length(0);
    const envs = await Promise.all((await ctx.store.listDocIds('cancel', 'env')).map(id => ctx.store.getDoc('cancel', 'env', id)));
    expect(envs.map(e => [e!.status, e!.failure?.code])).to.deep.equal([['failed', 'RUN_CANCELLED']]);
    let error: unknown;
    try {
      await ctx.runControl.resume('cancel');
    } catch (err) {
      error = err;
    }
    expect(String(error)).to.match(/cancelled run cannot be resumed/);
  });
});
