import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { Queue } from 'bullmq';
import express, { type NextFunction, type Request, type Response } from 'express';
import { Counter, Gauge, Registry } from 'prom-client';
import { ConfigError, type AppConfig } from '../config/index.js';
import { QUEUE_NAMES } from '../queues/index.js';
import { createRedisLedger } from '../src/llm/redis-ledger.js';
import type { Logger } from '../src/logger.js';
import { createRedisConnection, waitForRedis } from '../src/redis/connection.js';
import { createRedisRunControl } from '../src/runs/control.js';
import { createRedisMetrics, type HistogramSnapshot } from '../src/runs/metrics.js';
import { createRedisSynthesisStore } from '../src/synthesis/store.js';
import { listRuns } from './run-commands.js';
import { runStatus, type RunStatus } from './run-status.js';

export interface DashboardOptions {
  readonly port: number;
  readonly host: string;
  /** Required unless the server binds to loopback only. */
  readonly token: string | null;
}

export interface Dashboard {
  readonly url: string;
  readonly server: Server;
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

const esc = (v: unknown) => String(v).replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/**
 * `envfleet dashboard`: bull-board for every queue (/queues), a run overview of our own (/ and
 * /runs/NAME), Prometheus metrics (/metrics) and a health check (/healthz). Anything but loopback
 * needs a token (ENVFLEET_DASHBOARD_TOKEN), sent as `Authorization: Bearer …` or once as `?token=…`
 * (then kept in a cookie).
 */
export async function startDashboard(config: AppConfig, logger: Logger, options: DashboardOptions): Promise<Dashboard> {
  if (!LOOPBACK.has(options.host) && !options.token) {
    throw new ConfigError(
      `the dashboard would listen on ${options.host} without a token: anyone who can reach it could see and change the queues. ` +
        'Set ENVFLEET_DASHBOARD_TOKEN, or bind to 127.0.0.1.',
    );
  }
  const redis = createRedisConnection(config.redis.url, 'worker');
  await waitForRedis(redis, config.redis.url);
  const prefix = config.redis.prefix;
  const store = createRedisSynthesisStore(redis, prefix);
  const control = createRedisRunControl(redis, prefix);
  const ledger = createRedisLedger(redis, prefix);
  const metrics = createRedisMetrics(redis, prefix);
  const queues = QUEUE_NAMES.map(name => new Queue(name, { connection: redis, prefix }));
  for (const q of queues) q.on('error', err => logger.warn({ err }, 'dashboard queue error'));

  const app = express();
  app.disable('x-powered-by');
  app.get('/healthz', (_req, res) => {
    redis.ping().then(
      () => res.json({ ok: true }),
      (err: unknown) => res.status(503).json({ ok: false, error: String(err) }),
    );
  });
  if (options.token) app.use(requireToken(options.token));

  const boardAdapter = new ExpressAdapter();
  boardAdapter.setBasePath('/queues');
  createBullBoard({ queues: queues.map(q => new BullMQAdapter(q)), serverAdapter: boardAdapter, options: { uiConfig: { boardTitle: 'envfleet' } } });
  app.use('/queues', boardAdapter.getRouter() as express.Router);

  const statusDeps = { redis, prefix, store, ledger, control };
  app.get('/', (_req, res, next) => {
    void (async () => {
      const runs = await listRuns(store, control);
      const statuses = (await Promise.all(runs.map(r => runStatus(statusDeps, r.id)))).filter((s): s is RunStatus => s !== null);
      res.type('html').send(page('envfleet runs', overview(statuses)));
    })().catch(next);
  });
  app.get('/runs/:id', (req, res, next) => {
    void (async () => {
      const status = await runStatus(statusDeps, String(req.params['id']));
      if (!status) {
        res.status(404).type('html').send(page('not found', `<p>No run named ${esc(req.params['id'])}.</p><p><a href="/">All runs</a></p>`));
        return;
      }
      res.type('html').send(page(`run ${status.id}`, runPage(status)));
    })().catch(next);
  });
  app.get('/metrics', (_req, res, next) => {
    void (async () => {
      const text = await renderMetrics({ store, ledger, control, queues, metrics, statusDeps });
      res.type('text/plain; version=0.0.4').send(text);
    })().catch(next);
  });
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    logger.error({ err }, 'dashboard request failed');
    res.status(500).type('text/plain').send('internal error; see the dashboard log');
  });

  const server = app.listen(options.port, options.host);
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  logger.info({ url, token: options.token ? 'required' : 'not required (loopback only)' }, 'dashboard listening');
  return {
    url,
    server,
    async close() {
      server.closeAllConnections();
      await new Promise<void>(resolve => server.close(() => resolve()));
      for (const q of queues) await q.close();
      redis.disconnect();
    },
  };
}

function requireToken(token: string) {
  const expected = Buffer.from(token);
  const ok = (given: string | undefined) => {
    if (!given) return false;
    const b = Buffer.from(given);
    return b.length === expected.length && timingSafeEqual(b, expected);
  };
  return (req: Request, res: Response, next: NextFunction) => {
    const header = req.headers.authorization?.replace(/^Bearer\s+/i, '');
    const query = typeof req.query['token'] === 'string' ? req.query['token'] : undefined;
    const cookie = /(?:^|;\s*)envfleet_token=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
    if (ok(header) || ok(cookie ? decodeURIComponent(cookie) : undefined)) return next();
    if (ok(query)) {
      res.cookie('envfleet_token', token, { httpOnly: true, sameSite: 'strict' });
      return next();
    }
    res.status(401).type('text/plain').send('envfleet dashboard: a valid token is required (Authorization: Bearer TOKEN, or ?token=TOKEN once)');
  };
}

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2433;background:#f7f8fa}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
a{color:#2457c5} table{border-collapse:collapse;background:#fff;margin:6px 0}
th,td{border:1px solid #dde1e8;padding:4px 8px;text-align:left;vertical-align:top} th{background:#eef1f6;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:20px}.state-running{color:#1a7f37}.state-paused{color:#9a6700}.state-cancelled{color:#cf222e}
.muted{color:#667085}
</style></head><body><p class="muted"><a href="/">runs</a> · <a href="/queues">queues (bull-board)</a> · <a href="/metrics">metrics</a></p>${body}</body></html>`;
}

const money = (x: number) => `$${x.toFixed(4)}`;
/** "2 kept, 1 rejected": counts by status, in a stable (alphabetical) order. */
const counts = (byStatus: Record<string, number>) =>
  Object.entries(byStatus)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `${n} ${k}`)
    .join(', ') || '–';
const pct = (x: number | null) => (x === null ? '–' : `${(x * 100).toFixed(1)}%`);

function overview(runs: readonly RunStatus[]): string {
  if (!runs.length) return '<h1>envfleet</h1><p>No runs yet. Start one with <code>envfleet synth</code>.</p>';
  const rows = runs
    .map(
      r => `<tr><td><a href="/runs/${encodeURIComponent(r.id)}">${esc(r.id)}</a></td><td class="state-${r.control.state}">${r.control.state}</td>
<td class="n">${r.outstanding}</td><td>${esc(counts(r.environments))}</td><td>${esc(counts(r.scenarios))}</td>
<td class="n">${r.trajectories.count}</td><td class="n">${r.trajectories.meanReward === null ? '–' : r.trajectories.meanReward.toFixed(3)}</td>
<td class="n">${pct(r.trajectories.solvedRate)}</td><td class="n">${r.ledger.promptTokens + r.ledger.completionTokens}</td><td class="n">${money(r.ledger.costUsd)}</td></tr>`,
    )
    .join('');
  return `<h1>envfleet runs</h1><table><tr><th>run</th><th>state</th><th>outstanding</th><th>environments</th><th>scenarios</th><th>trajectories</th><th>mean reward</th><th>solved</th><th>tokens</th><th>cost</th></tr>${rows}</table>`;
}

function chart(points: readonly { minute: string; count: number }[]): string {
  if (!points.length) return '<p class="muted">No finished jobs yet.</p>';
  const w = 640;
  const h = 120;
  const max = Math.max(...points.map(p => p.count), 1);
  const bw = Math.min(24, Math.max(2, Math.floor(w / Math.max(points.length, 1)) - 2));
  const bars = points
    .map((p, i) => {
      const bh = Math.round((p.count / max) * (h - 20));
      return `<rect x="${i * (bw + 2)}" y="${h - bh}" width="${bw}" height="${bh}" fill="#2457c5"><title>${esc(p.minute)}: ${p.count} jobs</title></rect>`;
    })
    .join('');
  return `<svg width="${w}" height="${h}" role="img" aria-label="jobs finished per minute"><text x="0" y="12" font-size="11" fill="#667085">max ${max} jobs/min</text>${bars}</svg>`;
}

function runPage(s: RunStatus): string {
  const stages = s.stages
    .map(st => {
      const waiting = Object.entries(st.jobs).filter(([k]) => k !== 'active').reduce((a, [, n]) => a + n, 0);
      const why = Object.entries(st.left).map(([k, n]) => `${n} ${esc(k)}`).join('<br>') || '–';
      const queueLink = QUEUE_NAMES.includes(st.stage) ? `<a href="/queues/queue/${encodeURIComponent(st.stage)}">${esc(st.stage)}</a>` : esc(st.stage);
      return `<tr><td>${queueLink}</td><td class="n">${waiting}</td><td class="n">${st.jobs['active'] ?? 0}</td><td class="n">${st.done}</td><td>${why}</td><td class="n">${st.tokens}</td><td class="n">${money(st.costUsd)}</td></tr>`;
    })
    .join('');
  const terminations = Object.entries(s.trajectories.byTermination).map(([k, n]) => `${esc(k)} ${n}`).join(', ') || '–';
  return `<h1>run ${esc(s.id)}</h1>
<p>state <b class="state-${s.control.state}">${s.control.state}</b>${s.control.reason ? ` — ${esc(s.control.reason)}` : ''}; created ${esc(s.createdAt)}; input ${esc(s.input)}</p>
<div class="cards">
<div class="card">outstanding jobs<b id="outstanding">${s.outstanding}</b></div>
<div class="card">environments<b id="environments">${esc(counts(s.environments))}</b></div>
<div class="card">scenarios<b id="scenarios">${esc(counts(s.scenarios))}</b></div>
<div class="card">trajectories<b id="trajectories">${s.trajectories.count}</b></div>
<div class="card">mean reward<b id="mean-reward">${s.trajectories.meanReward === null ? '–' : s.trajectories.meanReward.toFixed(3)}</b></div>
<div class="card">solved<b id="solved">${pct(s.trajectories.solvedRate)}</b></div>
<div class="card">tokens<b id="tokens">${s.ledger.promptTokens + s.ledger.completionTokens}</b></div>
<div class="card">cost<b id="cost">${money(s.ledger.costUsd)}</b></div>
</div>
<p>${s.ledger.requests} model requests (${s.ledger.cachedRequests} answered from the cache, saving ${money(s.ledger.savedCostUsd)}); rate ${s.ratePerMinute.toFixed(1)} jobs/min; ${s.etaMinutes === null ? 'time left unknown' : `about ${s.etaMinutes.toFixed(1)} min left`}${s.budgets ? `; budget ${esc(JSON.stringify(s.budgets))}` : ''}</p>
<h2>Stages</h2><table><tr><th>stage</th><th>waiting</th><th>active</th><th>done</th><th>left (why)</th><th>tokens</th><th>cost</th></tr>${stages}</table>
<h2>Rollouts</h2><p>by termination: ${terminations}</p>
<h2>Throughput (jobs finished per minute)</h2>${chart(s.throughput)}`;
}

function histogramText(name: string, help: string, series: readonly HistogramSnapshot[]): string {
  const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} histogram`];
  const fmt = (labels: Record<string, string>) => Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, '_')}"`).join(',');
  for (const s of series) {
    for (const b of s.buckets) lines.push(`${name}_bucket{${fmt({ ...s.labels, le: b.le })}} ${b.count}`);
    lines.push(`${name}_sum{${fmt(s.labels)}} ${s.sum}`, `${name}_count{${fmt(s.labels)}} ${s.count}`);
  }
  return `${lines.join('\n')}\n`;
}

async function renderMetrics(d: {
  store: ReturnType<typeof createRedisSynthesisStore>;
  ledger: ReturnType<typeof createRedisLedger>;
  control: ReturnType<typeof createRedisRunControl>;
  queues: readonly Queue[];
  metrics: ReturnType<typeof createRedisMetrics>;
  statusDeps: Parameters<typeof runStatus>[0];
}): Promise<string> {
  const registry = new Registry();
  const queueJobs = new Gauge({ name: 'envfleet_queue_jobs', help: 'Jobs in each queue by state', labelNames: ['queue', 'state'], registers: [registry] });
  const runsByState = new Gauge({ name: 'envfleet_runs', help: 'Runs by state', labelNames: ['state'], registers: [registry] });
  const outstanding = new Gauge({ name: 'envfleet_run_outstanding_jobs', help: 'Jobs of a run not finished yet', labelNames: ['run'], registers: [registry] });
  const tokens = new Counter({ name: 'envfleet_tokens_total', help: 'Model tokens paid, by run, stage and kind', labelNames: ['run', 'stage', 'kind'], registers: [registry] });
  const cost = new Counter({ name: 'envfleet_cost_usd_total', help: 'Model cost in US dollars, by run and stage', labelNames: ['run', 'stage'], registers: [registry] });
  const requests = new Counter({ name: 'envfleet_model_requests_total', help: 'Model requests by run, stage and whether the cache answered', labelNames: ['run', 'stage', 'cached'], registers: [registry] });
  const rollouts = new Counter({ name: 'envfleet_rollouts_total', help: 'Finished rollouts by run and termination reason', labelNames: ['run', 'termination'], registers: [registry] });
  const sandboxErrors = new Counter({ name: 'envfleet_sandbox_errors_total', help: 'Tool calls the sandbox stopped, by run and error code', labelNames: ['run', 'code'], registers: [registry] });
  const environments = new Gauge({ name: 'envfleet_environments', help: 'Environments by run and status', labelNames: ['run', 'status'], registers: [registry] });
  const scenarios = new Gauge({ name: 'envfleet_scenarios', help: 'Scenarios by run and status', labelNames: ['run', 'status'], registers: [registry] });

  for (const q of d.queues) {
    const counts = await q.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed', 'waiting-children', 'prioritized');
    for (const [state, n] of Object.entries(counts)) queueJobs.set({ queue: q.name, state }, n);
  }
  const states: Record<string, number> = { running: 0, paused: 0, cancelled: 0 };
  for (const runId of await d.store.listRuns()) {
    const c = await d.control.get(runId);
    states[c.state] = (states[c.state] ?? 0) + 1;
    outstanding.set({ run: runId }, await d.store.pendingCount(runId));
    const totals = await d.ledger.totals(runId);
    for (const [stage, t] of Object.entries(totals.byStage)) {
      if (t.promptTokens) tokens.inc({ run: runId, stage, kind: 'prompt' }, t.promptTokens);
      if (t.completionTokens) tokens.inc({ run: runId, stage, kind: 'completion' }, t.completionTokens);
      if (t.costUsd) cost.inc({ run: runId, stage }, t.costUsd);
      if (t.requests) requests.inc({ run: runId, stage, cached: 'false' }, t.requests);
      if (t.cachedRequests) requests.inc({ run: runId, stage, cached: 'true' }, t.cachedRequests);
    }
    const funnel = await d.store.funnel(runId);
    for (const [reason, n] of Object.entries(funnel['rollout.run'] ?? {})) rollouts.inc({ run: runId, termination: reason }, n);
    for (const [code, n] of Object.entries(funnel['sandbox'] ?? {})) sandboxErrors.inc({ run: runId, code }, n);
    const status = await runStatus(d.statusDeps, runId);
    for (const [s, n] of Object.entries(status?.environments ?? {})) environments.set({ run: runId, status: s }, n);
    for (const [s, n] of Object.entries(status?.scenarios ?? {})) scenarios.set({ run: runId, status: s }, n);
  }
  for (const [state, n] of Object.entries(states)) runsByState.set({ state }, n);
  return (
    (await registry.metrics()) +
    histogramText('envfleet_job_duration_seconds', 'Duration of finished jobs by queue and status', await d.metrics.read('job')) +
    histogramText('envfleet_model_request_duration_seconds', 'Latency of model requests by stage and outcome', await d.metrics.read('model_request'))
  );
}
