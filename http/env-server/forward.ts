import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { ServerEntry, SessionDirectory } from '../../src/env-server/directory.js';
import { EnvServerError } from '../../src/env-server/errors.js';
import type { SessionRegistry } from '../../src/env-server/sessions.js';
import type { Logger } from '../../src/logger.js';

/**
 * Several `envfleet serve` processes behind one address (a load balancer, DNS round robin): a request about
 * a session another process holds is forwarded to it, found in the shared directory (src/env-server/directory.ts),
 * and its answer relayed unchanged; a request that opens a session on a full process goes to a peer with room.
 * The WebSocket `/ws` needs no forwarding: its session lives and dies with the connection, on the process that
 * accepted it (the session's MCP endpoint, `/sessions/{id}/mcp`, is forwarded like any other request).
 */

/** Set on a forwarded request: the receiver answers itself and never forwards it again (no loops). */
export const FORWARDED_BY_HEADER = 'x-envfleet-forwarded-by';
/** Set on every response: the process that answered. */
export const SERVED_BY_HEADER = 'x-envfleet-server';

/** Request headers that go along (the token, the session cookie, MCP's own headers). */
const FORWARDED_REQUEST_HEADERS = ['authorization', 'cookie', 'content-type', 'accept', 'mcp-protocol-version', 'mcp-session-id', 'last-event-id', 'user-agent'];
/** Response headers that come back. */
const RELAYED_RESPONSE_HEADERS = ['content-type', 'retry-after', 'mcp-session-id', SERVED_BY_HEADER];

export interface ForwardingOptions {
  readonly directory: SessionDirectory;
  readonly registry: SessionRegistry;
  readonly logger: Logger;
  /** What this process serves: sessions are opened on a peer only when it serves the same. */
  readonly serves: string;
  /** The session cookie's name (the NeMo Gym surface). */
  readonly cookieName: string;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The OpenEnv JSON-RPC body of `POST /mcp`, when it parses. */
const rpcOf = (req: Request): Record<string, unknown> | null => {
  if (req.method !== 'POST' || req.path !== '/mcp' || typeof req.body !== 'string') return null;
  try {
    const body = JSON.parse(req.body) as unknown;
    return isObject(body) ? body : null;
  } catch {
    return null;
  }
};

/** The session a request is about: in the path (`/sessions/{id}/…`), in OpenEnv's `POST /mcp` params, or the cookie. */
export function sessionIdOfRequest(req: Request, cookieName: string): string | null {
  const path = /^\/sessions\/([^/]+)(?:\/|$)/.exec(req.path);
  if (path) return decodeURIComponent(path[1]!);
  const rpc = rpcOf(req);
  if (rpc) {
    const params = rpc['params'];
    return isObject(params) && typeof params['session_id'] === 'string' && params['session_id'] ? params['session_id'] : null;
  }
  if (req.path === '/sessions') return null;
  const m = new RegExp(`(?:^|;\\s*)${cookieName}=([^;]+)`).exec(req.headers.cookie ?? '');
  return m ? decodeURIComponent(m[1]!) : null;
}

/** Whether the request opens a session (the ones sent to a peer with room when this process is full). */
function opensSession(req: Request): boolean {
  if (req.method !== 'POST') return false;
  if (req.path === '/seed_session' || req.path === '/sessions') return true;
  return rpcOf(req)?.['method'] === 'openenv/session/create';
}

/** Sends the request to another process and relays its answer. */
async function forward(req: Request, res: Response, to: ServerEntry, selfId: string): Promise<void> {
  const headers = new Headers();
  for (const name of FORWARDED_REQUEST_HEADERS) {
    const v = req.headers[name];
    if (typeof v === 'string') headers.set(name, v);
  }
  headers.set(FORWARDED_BY_HEADER, selfId);
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
  let answer: globalThis.Response;
  try {
    answer = await fetch(new URL(req.originalUrl, to.url), { method: req.method, headers, ...(hasBody ? { body: typeof req.body === 'string' ? req.body : '' } : {}), redirect: 'manual' });
  } catch (err) {
    const why = (err as { cause?: { message?: string } }).cause?.message ?? (err as Error).message;
    throw new EnvServerError('SESSION_LOST', `the serve process holding this session (${to.url}) did not answer (${why}); if it stopped, the session is lost: open a new one`, { server: to.url });
  }
  const body = Buffer.from(await answer.arrayBuffer());
  res.status(answer.status);
  for (const name of RELAYED_RESPONSE_HEADERS) {
    const v = answer.headers.get(name);
    if (v !== null) res.setHeader(name, v);
  }
  const cookies = answer.headers.getSetCookie();
  if (cookies.length) res.setHeader('Set-Cookie', cookies);
  res.end(body);
}

/**
 * The middleware: runs after the token check and before the routes (the body is already read as text).
 * A session this process does not know is looked up in the directory: held by another live process →
 * forwarded; ended → its kept result is remembered here, so verify and the error of each surface answer
 * as for a local session; held by a process that stopped → SESSION_LOST. A failure of Redis itself leaves
 * the request to this process (which then knows only its own sessions).
 */
export function forwardingMiddleware(options: ForwardingOptions): RequestHandler {
  const { directory, registry, logger } = options;
  return (req: Request, res: Response, next: NextFunction) => {
    if (req.headers[FORWARDED_BY_HEADER]) return next();
    void (async () => {
      const id = sessionIdOfRequest(req, options.cookieName);
      if (id && !registry.knows(id)) {
        let where: Awaited<ReturnType<SessionDirectory['locate']>>;
        try {
          where = await directory.locate(id);
        } catch (err) {
          logger.warn({ err, session: id }, 'the session directory did not answer; answering from this process alone');
          return next();
        }
        switch (where.kind) {
          case 'held':
            return forward(req, res, where.server, directory.serverId);
          case 'ended':
            registry.remember(where.result);
            break;
          case 'lost':
            registry.markLost(id, `the serve process that held it (${where.serverId}) stopped without ending it`);
            break;
          case 'unknown':
            break;
        }
        return next();
      }
      // A seed on the cookie of a live session here replaces it here (the slot it frees is this process's).
      const replacesHere = id !== null && registry.knows(id) && registry.result(id) === null;
      if (opensSession(req) && !replacesHere) {
        const { active, max } = registry.stats();
        if (active >= max) {
          const peers = await directory.peers().catch(() => [] as ServerEntry[]);
          const roomiest = peers.filter(p => p.serves === options.serves && p.active < p.max).sort((a, b) => b.max - b.active - (a.max - a.active))[0];
          if (roomiest) return forward(req, res, roomiest, directory.serverId);
        }
      }
      return next();
    })().catch(next);
  };
}
