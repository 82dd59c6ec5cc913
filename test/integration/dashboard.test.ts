import { join } from 'node:path';
import { expect } from 'chai';
import { chromium, type Browser } from 'playwright-core';
import { startDashboard, type Dashboard } from '../../http/dashboard/server.js';
import { submitRollouts, submitScenarios, submitSynthesis } from '../../queues/submit.js';
import { chromiumPath } from '../helpers/browser.js';
import { DEMO, silentLogger, useFleet, type Fleet } from '../helpers/integration.js';

const TOKEN = 'test-dashboard-token-0123456789';

/** Sums the samples of one metric family in Prometheus text (optionally filtered by a label substring). */
function metricSum(text: string, name: string, filter = ''): number {
  return text
    .split('\n')
    .filter(l => l.startsWith(`${name}{`) && l.includes(filter))
    .reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

describe('dashboard (real run, real browser)', function () {
  let chromiumExecutable: string;
  before(function () {
    this.timeout(600_000); // installing Chromium on a fresh machine takes a while
    chromiumExecutable = chromiumPath();
  });
  const fleet = useFleet('suite');
  let f: Fleet;
  let dashboard: Dashboard | undefined;
  let browser: Browser | undefined;

  after(async () => {
    await browser?.close();
    await dashboard?.close();
  });

  before(async () => {
    f = await fleet();
    await submitSynthesis(f.config, f.redis, { runId: 'dash', tasks: join(DEMO, 'source-tasks.jsonl'), probeSteps: 8 });
    await f.waitForRun('dash');
    await submitScenarios(f.config, f.redis, { runId: 'dash', perEnv: 3 });
    await f.waitForRun('dash');
    await submitRollouts(f.config, f.redis, { runId: 'dash', samples: 1, modes: ['non-conversational'] });
    await f.waitForRun('dash');
    dashboard = await startDashboard(f.config, silentLogger(), { port: 0, host: '127.0.0.1', token: TOKEN });
  });

  it('refuses to listen beyond loopback without a token', async () => {
    let error: unknown;
    try {
      await startDashboard(f.config, silentLogger(), { port: 0, host: '0.0.0.0', token: null });
    } catch (err) {
      error = err;
    }
    expect(String(error)).to.match(/without a token/).and.to.match(/ENVFLEET_DASHBOARD_TOKEN/);
  });

  it('serves /metrics with the run’s numbers', async () => {
    const res = await fetch(`${dashboard!.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).to.equal(200);
    const text = await res.text();
    const totals = await f.workers.ctx.ledger.totals('dash');
    expect(metricSum(text, 'envfleet_tokens_total', 'run="dash"')).to.equal(totals.promptTokens + totals.completionTokens);
    expect(metricSum(text, 'envfleet_cost_usd_total', 'run="dash"')).to.be.closeTo(totals.costUsd, 1e-9);
    expect(metricSum(text, 'envfleet_model_requests_total', 'run="dash"')).to.equal(totals.requests + totals.cachedRequests);
    expect(metricSum(text, 'envfleet_rollouts_total', 'run="dash"')).to.equal(4);
    expect(metricSum(text, 'envfleet_environments', 'status="kept"')).to.be.at.least(2);
    expect(text).to.match(/envfleet_queue_jobs\{queue="rollout\.run",state="completed"\} 4/);
    expect(text).to.match(/envfleet_job_duration_seconds_count\{queue="rollout\.run",status="completed"\} \d+/);
    expect(text).to.match(/envfleet_model_request_duration_seconds_bucket\{outcome="ok",stage="mine\.judge",le="\+Inf"\} \d+/);
    expect(metricSum(text, 'envfleet_sandbox_errors_total', 'code="INVALID_ARGUMENTS"')).to.be.greaterThan(0);
  });

  it('shows the run in a real browser, lists the queues in bull-board, and refuses a wrong token', async () => {
    browser = await chromium.launch({ executablePath: chromiumExecutable, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
    const page = await browser.newPage();
    const denied = await page.goto(`${dashboard!.url}/runs/dash?token=wrong-token-wrong-token`);
    expect(denied!.status()).to.equal(401);
    expect(await page.textContent('body')).to.match(/a valid token is required/);

    await page.goto(`${dashboard!.url}/runs/dash?token=${TOKEN}`);
    const totals = await f.workers.ctx.ledger.totals('dash');
    expect(await page.textContent('#trajectories')).to.equal('4');
    expect(await page.textContent('#environments')).to.equal('2 kept, 1 rejected');
    expect(await page.textContent('#tokens')).to.equal(String(totals.promptTokens + totals.completionTokens));
    expect(await page.textContent('#cost')).to.equal(`$${totals.costUsd.toFixed(4)}`);
    expect(await page.textContent('body')).to.include('1 dropped:DUPLICATE_STATE');

    // The cookie set by ?token= carries on to bull-board.
    await page.goto(`${dashboard!.url}/queues`);
    await page.waitForSelector('text=rollout.run', { timeout: 120_000 });
    for (const q of ['mine.judge', 'skeleton.method', 'check.probe', 'scenario.check']) expect(await page.textContent('body')).to.include(q);

    await page.goto(`${dashboard!.url}/`);
    expect(await page.textContent('body')).to.include('dash');
  });
});
