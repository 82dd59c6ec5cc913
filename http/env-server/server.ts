import { timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import { ConfigError } from '../../config/index.js';
import { ENV_SERVER_ERROR_CODES, ENV_SERVER_HTTP_STATUS, EnvServerError } from '../../src/env-server/errors.js';
import { isRedisConnectionError } from '../../src/redis/connection-errors.js';
import { scoredResult, type SessionRegistry, type SessionResult } from '../../src/env-server/sessions.js';
import type { Logger } from '../../src/logger.js';
import { SANDBOX_ERROR_CODES } from '../../src/sandbox/errors.js';
import type { SessionDirectory } from '../../src/env-server/directory.js';
import { forwardingMiddleware, safeDecode, SERVED_BY_HEADER } from './forward.js';
import { pathToken } from './path-token.js';
import { bodyOf, bodyText, isObject, keepBody } from './request-body.js';
import { sendJson } from './reply.js';
import { jsonRpcError, mcpRouter } from './mcp.js';
import { attachOpenEnvWebSocket, mountOpenEnvPublic, mountOpenEnvStateless } from './openenv.js';

export interface EnvServerOptions {
  readonly port: number;
  readonly host: string;
  /** Required unless the server binds to loopback only. */
  readonly token: string | null;
  /** The served run, for /health. */
  readonly runId: string;
  /** Shared with other serve processes on the same Redis: requests about their sessions are forwarded to them. */
  readonly directory?: SessionDirectory | null;
  /** How often each `/ws` client is pinged (ENVFLEET_SERVE_WS_PING_MS), one that missed the previous ping being dropped; 0 or absent: never. */
  readonly wsPingIntervalMs?: number;
}

export interface EnvServer {
  readonly url: string;
  readonly server: Server;
  /** Stops listening (the registry's sessions are the caller's to close). */
  close(): Promise<void>;
}

export const LOOPBACK_HOSTS: ReadonlySet<string> = new Set(['127.0.0.1', 'localhost', '::1']);

/** The cookie that carries a NeMo Gym session; every response re-sends it. */
export const SESSION_COOKIE = 'envfleet_session';

/** The most bytes a request's body may carry (4 MB). */
export const MAX_BODY_BYTES = 4 * 1024 * 1024;

/** Routes of the server itself: no tool is served under these names. */
export const RESERVED_ROUTES: ReadonlySet<string> = new Set(['seed_session', 'verify', 'health', 'session', 'aggregate_metrics', 'mcp', 'sessions', 'reset', 'step', 'state', 'metadata', 'schema', 'openapi.json', 'ws']);


/** The one error shape of this surface: `{ error: { code, message, …details } }`. */
function sendError(res: Response, code: string, message: string, details: Readonly<Record<string, unknown>> = {}, status?: number): void {
  const s = status ?? ENV_SERVER_HTTP_STATUS[code as keyof typeof ENV_SERVER_HTTP_STATUS] ?? 422;
  if (code === 'OVER_CAPACITY') res.setHeader('Retry-After', '1');
  if (code === 'PEER_UNREACHABLE') res.setHeader('Retry-After', '2');
  res.status(s).json({ error: { code, message, ...details } });
}


/**
 * The scenario a seed_session body names: a scenario id as a JSON string, `{ "scenario_id": … }`, a row
 * of rl-prompts.jsonl (`scenario_id`, or inside `info`), or a row of rl-verl.json (`extra_info.scenario_id`).
 */
export function scenarioIdOf(body: unknown): string {
  if (typeof body === 'string' && body) return body;
  if (isObject(body)) {
    const candidates: unknown[] = [body['scenario_id'], isObject(body['extra_info']) ? body['extra_info']['scenario_id'] : undefined];
    const info = body['info'];
    if (isObject(info)) candidates.push(info['scenario_id']);
    else if (typeof info === 'string') {
      try {
        const parsed = JSON.parse(info) as unknown;
        if (isObject(parsed)) candidates.push(parsed['scenario_id']);
      } catch {
        // not JSON: no id there
      }
    }
    for (const c of candidates) if (typeof c === 'string' && c) return c;
  }
  throw new EnvServerError('INVALID_REQUEST_BODY', 'seed_session needs a scenario: send {"scenario_id": "ID"}, or a row of rl-verl.json (extra_info.scenario_id) or rl-prompts.jsonl (scenario_id)');
}

const sessionOf = (req: Request): string | null => {
  const m = new RegExp(`(?:^|;\\s*)${SESSION_COOKIE}=([^;]+)`).exec(req.headers.cookie ?? '');
  return m ? safeDecode(m[1]!) : null;
};

const setSession = (res: Response, id: string) => res.setHeader('Set-Cookie', `${SESSION_COOKIE}=${encodeURIComponent(id)}; Path=/; HttpOnly; SameSite=Lax`);

/** An ended session's result as the server reports it. */
export function resultBody(r: SessionResult) {
  return {
    session_id: r.sessionId,
    scenario_id: r.scenarioId,
    environment_id: r.environmentId,
    reward: r.reward,
    solved: r.solved,
    checks: r.checks,
    checks_error: r.checksError,
    ended_by: r.endedBy,
    detail: r.detail,
    calls: r.calls,
    final_state: r.finalState,
  };
}

/**
 * The environment server's HTTP surface, NeMo Gym style: `POST /seed_session` opens a session (the cookie
 * `envfleet_session`, re-sent by every response), `POST /{tool}` calls a tool with the raw JSON arguments
 * (the body is the tool's result, as an episode gives it to the model), `POST /verify` ends the session and
 * returns the request body with `reward` (the checks' fraction), `reward_components` and `envfleet` (the
 * checks, the final state). `DELETE /session` ends it too; `GET /health`. Anything but loopback needs a token.
 */
export async function startEnvServer(registry: SessionRegistry, logger: Logger, options: EnvServerOptions): Promise<EnvServer> {
  if (!LOOPBACK_HOSTS.has(options.host) && !options.token) {
    throw new ConfigError(`envfleet serve would listen on ${options.host} without a token: anyone who can reach it could run environments. Pass --token TOKEN, or bind to 127.0.0.1.`);
  }
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.use((req, _res, next) => {
    const inPath = pathToken(req.url);
    if (inPath) {
      req.url = inPath.rest;
      req.headers.authorization = `Bearer ${inPath.token}`;
    }
    next();
  });
  app.use(express.text({ type: () => true, limit: MAX_BODY_BYTES, defaultCharset: 'utf-8', verify: keepBody }));
  const directory = options.directory ?? null;
  if (directory) {
    app.use((_req, res, next) => {
      res.setHeader(SERVED_BY_HEADER, directory.serverId);
      next();
    });
  }
  // Every response re-sends the session cookie the request carried (NeMo Gym keeps only the latest response's cookies).
  app.use((req, res, next) => {
    const id = sessionOf(req);
    if (id) setSession(res, id);
    next();
  });
  app.get('/health', (_req, res) => {
    res.json({ status: 'healthy', run: options.runId, sessions: registry.stats(), ...(directory ? { server_id: directory.serverId } : {}) });
  });
  // OpenEnv: /metadata, /schema, /openapi.json (no token, like /health); /reset, /step, /state and WS /ws (http/env-server/openenv.ts).
  mountOpenEnvPublic(app, { token: options.token, runId: options.runId });
  if (options.token) app.use(requireToken(options.token));
  // Sessions held by another serve process: forwarded there (http/env-server/forward.ts).
  if (directory) app.use(forwardingMiddleware({ directory, registry, logger, cookieName: SESSION_COOKIE }));
  mountOpenEnvStateless(app, registry, { token: options.token, runId: options.runId });
  // MCP: POST /sessions, /sessions/{id}/mcp (Streamable HTTP), /sessions/{id}/verify (http/env-server/mcp.ts).
  app.use(mcpRouter(registry, logger, { scenarioIdOf, resultBody }));

  const route = (handler: (req: Request, res: Response) => Promise<void>) => (req: Request, res: Response, next: NextFunction) => {
    handler(req, res).catch(next);
  };
  const requireSession = (req: Request): string => {
    const id = sessionOf(req);
    if (!id) throw new EnvServerError('NO_SESSION', `the request carries no ${SESSION_COOKIE} cookie: POST /seed_session first and send back the cookie of the latest response`);
    return id;
  };

  app.post(
    '/seed_session',
    route(async (req, res) => {
      const scenarioId = scenarioIdOf(bodyOf(req));
      // A new seed on the same cookie replaces the session it named, once the new one is open: a seed that is refused
      // (an unknown scenario) leaves it as it was. Only where the server is full is it ended first, for the room.
      const previous = sessionOf(req);
      const replace = () => (previous && !registry.result(previous) ? registry.finish(previous, 'replaced').then(() => undefined, () => undefined) : Promise.resolve());
      let info;
      try {
        info = await registry.open(scenarioId);
      } catch (err) {
        if ((err as { code?: unknown }).code !== 'OVER_CAPACITY' || !previous || registry.result(previous)) throw err;
        await replace();
        info = await registry.open(scenarioId);
      }
      await replace();
      setSession(res, info.id);
      // Tools named like a route of the server cannot be called here (MCP and OpenEnv call them by name).
      const shadowed = info.tools.filter(t => RESERVED_ROUTES.has(t));
      res.json({ session_id: info.id, scenario_id: info.scenarioId, environment_id: info.environmentId, tools: info.tools, task: info.task, ...(shadowed.length ? { shadowed_tools: shadowed } : {}) });
    }),
  );
  app.post(
    '/verify',
    route(async (req, res) => {
      const body = bodyOf(req);
      const id = requireSession(req);
      // A session the server ended (evicted by its load, cut by its stop) has no reward: SESSION_EVICTED /
      // SESSION_INTERRUPTED, not a 0 to train on.
      const result = scoredResult(await registry.finish(id, 'finished'));
      sendJson(res, {
        ...(isObject(body) ? body : {}),
        reward: result.reward ?? 0,
        reward_components: Object.fromEntries(result.checks.map(c => [c.item, c.passed ? 1 : 0])),
        envfleet: resultBody(result),
      });
    }),
  );
  app.delete(
    '/session',
    route(async (req, res) => {
      const result = await registry.finish(requireSession(req), 'closed');
      sendJson(res, resultBody(result));
    }),
  );
  app.post(
    '/:tool',
    route(async (req, res) => {
      const tool = String(req.params['tool']);
      const id = requireSession(req);
      const info = registry.info(id);
      if (!info.tools.includes(tool)) {
        sendError(res, 'UNKNOWN_TOOL', `no tool "${tool}" in this session's environment; the tools are: ${info.tools.join(', ')}`, { tools: info.tools });
        return;
      }
      const args = bodyOf(req);
      if (!isObject(args)) {
        sendError(res, 'INVALID_ARGUMENTS', `the arguments of ${tool} must be one JSON object of named arguments, not ${Array.isArray(args) ? 'an array' : typeof args}`);
        return;
      }
      // The body's own text too: a Python tool reads its arguments from it, as Python parses them (2.0 a float).
      const outcome = await registry.call(id, tool, args, bodyText(req).trim() === '' ? undefined : bodyText(req));
      if (outcome.runtimeError) {
        const result = outcome.result as { error?: unknown } | null;
        const message = typeof result?.error === 'string' ? result.error : SANDBOX_ERROR_CODES[outcome.runtimeError];
        sendError(res, outcome.runtimeError, message, { session_ended: registry.result(id) !== null });
        return;
      }
      res.type('application/json').send(outcome.resultJson ?? JSON.stringify(outcome.result));
    }),
  );
  app.use((_req, res) => {
    sendError(res, 'NOT_FOUND', 'no such route: POST /seed_session, POST /{tool}, POST /verify, DELETE /session, GET /health');
  });
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    if (err instanceof EnvServerError) return sendError(res, err.code, err.message, err.details);
    const e = err as { type?: unknown; status?: unknown };
    if (e.type === 'entity.too.large') {
      // On an MCP endpoint, a JSON-RPC error, as it answers everything else.
      if (_req.path === '/mcp' || _req.path.endsWith('/mcp')) {
        jsonRpcError(res, 413, -32600, `the request body is larger than 4 MB (${MAX_BODY_BYTES} bytes), the most one request may carry: send the tool's arguments in smaller pieces (or keep large data in the environment's state, not in one call)`, { code: 'INVALID_REQUEST_BODY', max_bytes: MAX_BODY_BYTES });
        return;
      }
      return sendError(res, 'INVALID_REQUEST_BODY', `the request body is larger than 4 MB (${MAX_BODY_BYTES} bytes), the most one request may carry: send the tool's arguments in smaller pieces (or keep large data in the environment's state, not in one call)`, { max_bytes: MAX_BODY_BYTES }, 413);
    }
    // A path whose percent-escapes are not UTF-8 (`/%FF`): no route can be named so.
    if (err instanceof URIError || (err as Error | null)?.message?.startsWith('Failed to decode param')) {
      return sendError(res, 'NOT_FOUND', `no such route: the path ${JSON.stringify(_req.originalUrl.slice(0, 200))} is not percent-encoded UTF-8; a tool's route is its name as seed_session lists it in \`tools\``, {}, 404);
    }
    if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) return sendError(res, 'INVALID_REQUEST_BODY', `the request could not be read: ${String((err as Error).message)}`, {}, e.status);
    // Redis away (a scenario not read yet, the directory): said at once, to be retried, not a defect; nothing is held.
    if (isRedisConnectionError(err)) {
      res.setHeader('Retry-After', '2');
      return sendError(res, 'INTERNAL', `the server's Redis does not answer (${String((err as Error).message)}): nothing was started; retry in a moment`, { redis_unavailable: true }, 503);
    }
    logger.error({ err }, 'env-server request failed');
    sendError(res, 'INTERNAL', 'the server failed on this request; see its log', {}, 500);
  });

  const server = app.listen(options.port, options.host);
  const openEnvWs = attachOpenEnvWebSocket(server, registry, logger, { token: options.token, runId: options.runId, pingIntervalMs: options.wsPingIntervalMs ?? 0 });
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  logger.info({ url, run: options.runId, token: options.token ? 'required' : 'not required (loopback only)' }, 'env server listening');
  return {
    url,
    server,
    /** Stops accepting; requests in flight get up to 5 s to be answered; WebSocket clients get their episode's end (SESSION_INTERRUPTED when the stop cut it). */
    async close() {
      const closed = new Promise<void>(resolve => server.close(() => resolve()));
      server.closeIdleConnections();
      await openEnvWs.close();
      await Promise.race([closed, new Promise(resolve => setTimeout(resolve, 5_000).unref())]);
      server.closeAllConnections();
      await closed;
    },
  };
}

function requireToken(token: string) {
  const expected = Buffer.from(token);
  return (req: Request, res: Response, next: NextFunction) => {
    const given = req.headers.authorization?.replace(/^Bearer\s+/i, '');
    const b = Buffer.from(given ?? '');
    if (given && b.length === expected.length && timingSafeEqual(b, expected)) return next();
    sendError(res, 'UNAUTHORIZED', ENV_SERVER_ERROR_CODES.UNAUTHORIZED);
  };
}
