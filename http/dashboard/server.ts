import { timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import express, { type NextFunction, type Request, type Response } from 'express';
import { ConfigError, type AppConfig } from '../../config/index.js';
import { PIPELINE_STAGES } from '../../queues/pipeline.js';
import { queueAt, workersCount } from '../../queues/run-jobs.js';
import { listRuns, runStatus, type RunStatus, type StatusDeps } from '../../queues/run-status.js';
import { createRedisLedger } from '../../src/llm/redis-ledger.js';
import type { Logger } from '../../src/logger.js';
import { createRedisConnection, waitForRedis } from '../../src/redis/connection.js';
import { createRedisRunControl } from '../../src/runs/control.js';
import { createRedisMetrics } from '../../src/runs/metrics.js';
import { createRedisRunStore } from '../../src/runs/store.js';
import { renderMetrics } from './metrics.js';
import { esc, overview, page, runPage } from './pages.js';

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
  const redis = createRedisConnection(config.redis, 'worker');
  await waitForRedis(redis, config.redis);
  const prefix = config.redis.prefix;
  const store = createRedisRunStore(redis, prefix);
  const control = createRedisRunControl(redis, prefix);
  const ledger = createRedisLedger(redis, prefix);
  const metrics = createRedisMetrics(redis, prefix);
  const queues = PIPELINE_STAGES.map(name => queueAt({ connection: redis, prefix }, name));
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

  const statusDeps: StatusDeps = { store, ledger, control, workersOf: stage => workersCount(queues[PIPELINE_STAGES.indexOf(stage)]!) };
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
      const text = await renderMetrics({ store, ledger, control, queues, metrics });
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

