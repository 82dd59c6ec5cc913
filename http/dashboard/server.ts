import { timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBullBoard } from '@bull-board/api';
import type { Queue } from 'bullmq';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import express, { type NextFunction, type Request, type Response } from 'express';
import { ConfigError, type AppConfig } from '../../config/index.js';
import { PIPELINE_STAGES } from '../../queues/pipeline.js';
import { queueAt, workersCount } from '../../queues/run-jobs.js';
import { listRuns, runStatus, type RunStatus, type StatusDeps } from '../../queues/run-status.js';
import { createRedisLedger } from '../../src/llm/redis-ledger.js';
import type { Logger } from '../../src/logger.js';
import { isRedisConnectionError } from '../../src/redis/connection-errors.js';
import { createRedisConnection, waitForRedis } from '../../src/redis/connection.js';
import { createRedisRunControl } from '../../src/runs/control.js';
import { createRedisMetrics } from '../../src/runs/metrics.js';
import { createRedisRunStore } from '../../src/runs/store.js';
import { renderMetrics } from './metrics.js';
import { esc, overview, page, runPage } from './pages.js';
import { nowAndThen } from '../../src/util/now-and-then.js';

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
  // bull-board's queues on a connection that rides out a Redis restart; the pages, /metrics and /healthz read through
  // one whose commands fail at once while Redis is away (on the other, /healthz gave no answer for minutes).
  const redis = createRedisConnection(config.redis, 'worker');
  const reads = createRedisConnection(config.redis, 'producer');
  await waitForRedis(redis, config.redis);
  await waitForRedis(reads, config.redis);
  const prefix = config.redis.prefix;
  const store = createRedisRunStore(reads, prefix);
  const control = createRedisRunControl(reads, prefix);
  const ledger = createRedisLedger(reads, prefix);
  const metrics = createRedisMetrics(reads, prefix);
  const queues = PIPELINE_STAGES.map(name => queueAt({ connection: redis, prefix }, name));
  const readQueues = PIPELINE_STAGES.map(name => queueAt({ connection: reads, prefix }, name));
  // One warning per 30 s with how many errors it stands for: a Redis away made every queue say it, 1,462 times in 2 min.
  const queueErrorWord = nowAndThen(30_000);
  const queueError = (err: Error) => {
    const errors = queueErrorWord.take();
    if (errors > 0) logger.warn({ err, ...(errors > 1 ? { alsoSince: errors - 1 } : {}) }, 'dashboard queue error (said at most every 30 s)');
  };
  for (const q of [...queues, ...readQueues]) q.on('error', queueError);

  const app = express();
  app.disable('x-powered-by');
  // Loopback without a token: only requests addressed to a loopback name (a page of another site that rebinds its name
  // to 127.0.0.1 would otherwise read and change everything), and no cross-site write (any page could post a job).
  if (!options.token) app.use(loopbackOnly);
  app.use(sameSiteWrites);
  app.get('/healthz', (_req, res) => {
    reads.ping().then(
      () => res.json({ ok: true }),
      (err: unknown) => res.status(503).json({ ok: false, error: String(err) }),
    );
  });
  if (options.token) app.use(requireToken(options.token));

  const boardAdapter = new ExpressAdapter();
  boardAdapter.setBasePath('/queues');
  createBullBoard({ queues: queues.map(q => new BullMQAdapter(q)), serverAdapter: boardAdapter, options: { uiConfig: { boardTitle: 'envfleet' } } });
  app.use('/queues', keepOutstandingJobs(new Map(PIPELINE_STAGES.map((name, i) => [name, readQueues[i]!]))));
  app.use('/queues', boardAdapter.getRouter() as express.Router);

  const statusDeps: StatusDeps = { store, ledger, control, workersOf: stage => workersCount(readQueues[PIPELINE_STAGES.indexOf(stage)]!), pausedOf: stage => readQueues[PIPELINE_STAGES.indexOf(stage)]!.isPaused() };
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
      const text = await renderMetrics({ store, ledger, control, queues: readQueues, metrics });
      res.type('text/plain; version=0.0.4').send(text);
    })().catch(next);
  });
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    // A request the client got wrong (Express marks it: a path like /runs/%ZZ that is not percent-encoding is 400)
    // is answered as such, without a stack in the log: it is not the dashboard's failure.
    const status = (err as { status?: unknown } | null)?.status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      logger.debug({ path: req.path, status }, 'dashboard request refused');
      const why = err instanceof URIError ? 'its address is not valid percent-encoding (a % must be followed by two hex digits, as in %20)' : 'it cannot be answered';
      res.status(status).type('text/plain').send(`envfleet dashboard: request refused (${status}): ${why}. Open / for the list of runs.`);
      return;
    }
    if (isRedisConnectionError(err)) {
      res.status(503).type('text/plain').send(`envfleet dashboard: Redis does not answer (${(err as Error).message}); this page comes back when it does.`);
      return;
    }
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
      for (const q of [...queues, ...readQueues]) await q.close();
      redis.disconnect();
      reads.disconnect();
    },
  };
}

/** The host name of a Host header (`127.0.0.1:8080`, `[::1]:80`, `localhost`), lower case. */
function hostName(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') > 0 ? h.indexOf(']') : undefined);
  return h.replace(/:\d*$/, '');
}

/** Requests to a dashboard bound to loopback without a token must name a loopback host (DNS rebinding). */
function loopbackOnly(req: Request, res: Response, next: NextFunction): void {
  const host = req.headers.host;
  if (host !== undefined && LOOPBACK.has(hostName(host))) return next();
  res.status(403).type('text/plain').send(`envfleet dashboard: refused: it listens on loopback without a token and answers only requests addressed to 127.0.0.1, localhost or [::1], not ${JSON.stringify(host ?? '')}. Open it at one of those, or set ENVFLEET_DASHBOARD_TOKEN.`);
}

/**
 * A request that changes something (bull-board's retry, clean, add, pause) comes from the dashboard's own pages or
 * from a tool: one a browser sends from another site (its Origin another host, or Sec-Fetch-Site cross-site) is refused.
 */
function sameSiteWrites(req: Request, res: Response, next: NextFunction): void {
  if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS') return next();
  const origin = req.headers.origin;
  let foreign = req.headers['sec-fetch-site'] === 'cross-site';
  if (typeof origin === 'string') {
    // Behind a reverse proxy that rewrites Host, the address the browser used is in X-Forwarded-Host.
    // (a default port, :80 or :443, written or not, is the same host: URL drops it)
    const hosts = [req.headers.host, ...String(req.headers['x-forwarded-host'] ?? '').split(',')].map(h => String(h ?? '').trim().toLowerCase().replace(/:(80|443)$/, '')).filter(Boolean);
    try {
      foreign ||= !hosts.includes(new URL(origin).host.toLowerCase());
    } catch {
      foreign = true; // "null" (a sandboxed frame, a file:// page) or no URL at all
    }
  }
  if (!foreign) return next();
  res.status(403).type('text/plain').send(`envfleet dashboard: refused: a ${req.method} from another site (Origin ${JSON.stringify(origin ?? '')}); changes are made from the dashboard's own pages or a tool that sends no Origin.`);
}

/** BullMQ states of a job its run still counts as outstanding (removing it would leave the run waiting for ever). */
const OUTSTANDING = new Set(['waiting', 'wait', 'delayed', 'prioritized', 'waiting-children', 'paused', 'active']);

/**
 * bull-board's removals of jobs a run still waits for (clean of waiting or delayed jobs, empty, obliterate, removing one
 * such job) are refused: the run kept them outstanding for ever (a paused run whose parked jobs were cleaned stayed
 * "running" with nothing to run). Completed and failed jobs may be cleaned.
 */
function keepOutstandingJobs(queues: ReadonlyMap<string, Queue>) {
  const refuse = (res: Response, what: string) =>
    res.status(403).type('text/plain').send(`envfleet dashboard: refused: ${what} would remove jobs their runs still count as outstanding, so those runs would never finish. End a run with envfleet cancel --run NAME (then envfleet runs delete), or clean completed and failed jobs only.`);
  return (req: Request, res: Response, next: NextFunction): void => {
    if (req.method !== 'PUT' && req.method !== 'DELETE' && req.method !== 'POST') return next();
    // (case-insensitive, as Express's router matches bull-board's routes)
    const m = /^\/api\/queues\/([^/]+)\/(?:(clean)\/([^/]+)|(empty|obliterate)|([^/]+)\/(clean|remove-unprocessed-children))\/?$/i.exec(req.path);
    if (!m) return next();
    const [, queueName, clean, status, whole, jobId, jobAction] = m;
    if (clean) return OUTSTANDING.has(String(status).toLowerCase()) ? void refuse(res, `cleaning the ${status} jobs of ${queueName}`) : next();
    if (whole) return void refuse(res, `${whole.toLowerCase() === 'empty' ? 'emptying' : 'obliterating'} ${queueName}`);
    // (a flow parent's waiting children are outstanding jobs of its run)
    if (jobAction!.toLowerCase() !== 'clean') return void refuse(res, `removing the unprocessed children of job ${jobId} of ${queueName}`);
    let name: string;
    let id: string;
    try {
      [name, id] = [decodeURIComponent(queueName!), decodeURIComponent(jobId!)];
    } catch {
      return next(); // not percent-encoding: bull-board's router says so (400)
    }
    const queue = queues.get(name);
    if (!queue) return next();
    void (async () => {
      const job = await queue.getJob(id);
      const state = job ? await job.getState() : 'unknown';
      if (OUTSTANDING.has(state)) refuse(res, `removing ${state} job ${jobId} of ${queueName}`);
      else next();
    })().catch(next);
  };
}

/** A cookie value that is not percent-encoding is no token (decodeURIComponent would throw, a 500). */
function decodedOrUndefined(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
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
    if (ok(header) || ok(cookie ? decodedOrUndefined(cookie) : undefined)) return next();
    if (ok(query)) {
      res.cookie('envfleet_token', token, { httpOnly: true, sameSite: 'strict' });
      return next();
    }
    res.status(401).type('text/plain').send('envfleet dashboard: a valid token is required (Authorization: Bearer TOKEN, or ?token=TOKEN once)');
  };
}

