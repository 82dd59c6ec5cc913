import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { ServerEntry, SessionDirectory } from '../../src/env-server/directory.js';
import { EnvServerError } from '../../src/env-server/errors.js';
import type { SessionRegistry } from '../../src/env-server/sessions.js';
import type { Logger } from '../../src/logger.js';
import { bodyBytes, bodyObjectOrNull, isObject } from './request-body.js';

/**
 * Several `envfleet serve` processes behind one address (a load balancer, DNS round robin): a request about
 * a session another process holds is forwarded to it, found in the shared directory (src/env-server/directory.ts),
 * and its answer relayed unchanged; a request that opens a session on a full process goes to a peer with room.
 * The WebSocket `/ws` needs no forwarding: its session lives and dies with the connection, on the process that
 * accepted it (the session's MCP endpoint, `/sessions/{id}/mcp`, is forwarded like any other request).
 */

/** The form of a session id (randomUUID). */
const SESSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

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
  /** The session cookie's name (the NeMo Gym surface). */
  readonly cookieName: string;
}

/** The OpenEnv JSON-RPC body of `POST /mcp`, when it parses. */
const rpcOf = (req: Request): Record<string, unknown> | null => (req.method === 'POST' && req.path === '/mcp' ? bodyObjectOrNull(req) : null);

/** The session a request is about: in the path (`/sessions/{id}/…`), in OpenEnv's `POST /mcp` params, or the cookie. */
export function sessionIdOfRequest(req: Request, cookieName: string): string | null {
  const path = /^\/sessions\/([^/]+)(?:\/|$)/.exec(req.path);
  if (path) return safeDecode(path[1]!);
  const rpc = rpcOf(req);
  if (rpc) {
    const params = rpc['params'];
    return isObject(params) && typeof params['session_id'] === 'string' && params['session_id'] ? params['session_id'] : null;
  }
  if (req.path === '/sessions') return null;
  const m = new RegExp(`(?:^|;\\s*)${cookieName}=([^;]+)`).exec(req.headers.cookie ?? '');
  return m ? safeDecode(m[1]!) : null;
}

/** A URL-encoded id, or the raw text when its escapes are broken (then no session has that id). */
export const safeDecode = (text: string): string => {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
};

/** Whether the request opens a session (the ones sent to a peer with room when this process is full). */
function opensSession(req: Request): boolean {
  if (req.method !== 'POST') return false;
  if (req.path === '/seed_session' || req.path === '/sessions') return true;
  return rpcOf(req)?.['method'] === 'openenv/session/create';
}

/** A forwarded request not answered by then is given up on (PEER_UNREACHABLE): longer than any tool call's deadline. */
export const FORWARD_TIMEOUT_MS = 120_000;

/** Thrown when a peer does not answer a forwarded request. */
class PeerUnreachable extends EnvServerError {
  constructor(to: ServerEntry, why: string) {
    super('PEER_UNREACHABLE', `the serve process holding this session (${to.url}) did not answer (${why}); retry in a few seconds (if it was killed, the session is then SESSION_LOST)`, { server: to.url });
  }
}

/**
 * The target of a forwarded request: the peer's origin and the request's own path. Only an origin-form
 * target (one `/`, not `//host…` nor `http://host…`) is forwarded, and never to another origin.
 */
export function forwardTarget(originalUrl: string, peerUrl: string): URL | null {
  if (!originalUrl.startsWith('/') || originalUrl.startsWith('//') || originalUrl.includes('\\')) return null;
  const origin = new URL(peerUrl).origin;
  const target = new URL(origin + originalUrl);
  return target.origin === origin ? target : null;
}

/** Sends the request to another process and relays its answer. */
async function forward(req: Request, res: Response, to: ServerEntry, selfId: string): Promise<void> {
  relay(res, await send(req, res, to, selfId));
}

/** A peer's answer, read whole. */
interface PeerAnswer {
  readonly answer: globalThis.Response;
  readonly body: Buffer;
}

/** Sends the request to another process; its answer. Throws PeerUnreachable. */
async function send(req: Request, res: Response, to: ServerEntry, selfId: string): Promise<PeerAnswer> {
  const target = forwardTarget(req.originalUrl, to.url);
  if (!target) throw new EnvServerError('INVALID_REQUEST_BODY', 'the request target is not a path on this server (it must start with a single /)');
  const headers = new Headers();
  for (const name of FORWARDED_REQUEST_HEADERS) {
    const v = req.headers[name];
    if (typeof v === 'string') headers.set(name, v);
  }
  headers.set(FORWARDED_BY_HEADER, selfId);
  // Addresses the peer puts in its answers (mcp_url) are the ones the client used.
  headers.set('x-forwarded-host', firstHeader(req.headers['x-forwarded-host']) ?? req.headers.host ?? '');
  headers.set('x-forwarded-proto', firstHeader(req.headers['x-forwarded-proto']) ?? req.protocol);
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
  const gone = new AbortController();
  const onClose = () => {
    if (!res.writableEnded) gone.abort(new Error('the client went away'));
  };
  res.once('close', onClose);
  let answer: globalThis.Response;
  let body: Buffer;
  try {
    answer = await fetch(target, {
      method: req.method,
      headers,
      // The bytes as they came, with their Content-Type: the peer reads them as this process would have.
      ...(hasBody ? { body: bodyBytes(req) } : {}),
      redirect: 'manual',
      signal: AbortSignal.any([gone.signal, AbortSignal.timeout(FORWARD_TIMEOUT_MS)]),
    });
    body = Buffer.from(await answer.arrayBuffer());
  } catch (err) {
    const e = err as { name?: string; cause?: { message?: string }; message?: string };
    throw new PeerUnreachable(to, e.name === 'TimeoutError' ? `no answer within ${FORWARD_TIMEOUT_MS / 1000} s` : (e.cause?.message ?? e.message ?? String(err)));
  } finally {
    res.off('close', onClose);
  }
  return { answer, body };
}

/** Relays a peer's answer unchanged (status, the headers that matter, cookies, body). */
function relay(res: Response, { answer, body }: PeerAnswer): void {
  res.status(answer.status);
  for (const name of RELAYED_RESPONSE_HEADERS) {
    const v = answer.headers.get(name);
    if (v !== null) res.setHeader(name, v);
  }
  const cookies = answer.headers.getSetCookie();
  if (cookies.length) res.setHeader('Set-Cookie', cookies);
  res.end(body);
}

/** SESSION_LOST for a session whose process stopped without ending it. */
const lostError = (id: string, serverId: string): EnvServerError =>
  new EnvServerError('SESSION_LOST', `session ${id} is lost: the serve process that held it (${serverId}) stopped without ending it; open a new session`);

/** Whether a peer's answer to an open is OVER_CAPACITY, in any surface's shape (`error.code`, or JSON-RPC's `error.data.code`). */
function isOverCapacity(body: Buffer): boolean {
  if (body.length > 64 * 1024) return false;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return false;
  }
  const error = isObject(parsed) ? parsed['error'] : null;
  if (!isObject(error)) return false;
  const data = error['data'];
  return error['code'] === 'OVER_CAPACITY' || (isObject(data) && data['code'] === 'OVER_CAPACITY');
}

/** The first value of a header that proxies may have appended to (`a, b`). */
export const firstHeader = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v)?.split(',')[0]?.trim() || undefined;

/** Which protocol's error shape a request expects. */
function surfaceOf(req: Request): 'mcp-endpoint' | 'openenv-rpc' | 'http' {
  if (/^\/sessions\/[^/]+\/mcp$/.test(req.path)) return 'mcp-endpoint';
  if (req.method === 'POST' && req.path === '/mcp') return 'openenv-rpc';
  return 'http';
}

/** Answers an error of the forwarding step in the shape of the request's protocol (http: the server's error handler). */
function answerError(req: Request, res: Response, next: NextFunction, err: EnvServerError): void {
  const surface = surfaceOf(req);
  if (surface === 'http') return next(err);
  if (err.code === 'PEER_UNREACHABLE') res.setHeader('Retry-After', '2');
  const rpc = bodyObjectOrNull(req);
  const id = rpc && (typeof rpc['id'] === 'string' || typeof rpc['id'] === 'number') ? rpc['id'] : null;
  const failed = err.code === 'PEER_UNREACHABLE' || err.code === 'ENVIRONMENT_FAILED' || err.code === 'INTERNAL';
  if (surface === 'openenv-rpc') {
    res.status(200).json({ jsonrpc: '2.0', id, error: { code: failed ? -32603 : -32602, message: err.message, data: { code: err.code, ...err.details } } });
    return;
  }
  const status = err.code === 'PEER_UNREACHABLE' ? 502 : err.code === 'SESSION_LOST' ? 410 : 400;
  res.status(status).json({ jsonrpc: '2.0', id, error: { code: failed ? -32603 : err.code === 'SESSION_LOST' ? -32001 : -32600, message: err.message, data: { code: err.code, ...err.details } } });
}

/**
 * The middleware: runs after the token check and before the routes (the body is already read as text).
 * A session this process does not know is looked up in the directory: held by another live process →
 * forwarded (a peer that does not answer: PEER_UNREACHABLE, retryable); ended → its kept result is
 * remembered here, so verify and the error of each surface answer as for a local session; held by a
 * process whose heartbeat has expired → SESSION_LOST (looked up again on every request, so a process
 * that stalled and came back is found again). A failure of Redis itself leaves the request to this
 * process, which then knows only its own sessions. A request that opens a session on a full process
 * goes to the peer with the most room (the next one if it does not answer; this process's OVER_CAPACITY
 * when none does).
 */
export function forwardingMiddleware(options: ForwardingOptions): RequestHandler {
  const { directory, registry, logger } = options;
  return (req: Request, res: Response, next: NextFunction) => {
    void (async () => {
      const id = sessionIdOfRequest(req, options.cookieName);
      if (req.headers[FORWARDED_BY_HEADER]) {
        // Forwarded here: answered here, never forwarded again. A peer forwards a session of the process this one
        // replaced at its address (killed and restarted on the same port) until that one's heartbeat expires: the
        // directory says lost, as it does to a client that asks this process itself.
        if (id && SESSION_ID.test(id) && !registry.knows(id)) {
          const where = await directory.locate(id).catch(() => null);
          if (where?.kind === 'lost') throw lostError(id, where.serverId);
          if (where?.kind === 'ended') registry.remember(where.result);
        }
        return next();
      }
      // Only an id of the form this server gives (a UUID) is looked up: any other is unknown here and everywhere.
      if (id && SESSION_ID.test(id) && !registry.knows(id)) {
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
            return next();
          case 'lost':
            throw lostError(id, where.serverId);
          case 'unknown':
            return next();
        }
      }
      // A seed on the cookie of a live session here replaces it here (the slot it frees is this process's).
      const replacesHere = id !== null && registry.knows(id) && registry.result(id) === null;
      if (opensSession(req) && !replacesHere) {
        const { active, max } = registry.stats();
        if (active >= max) {
          // The heartbeats that say who has room are up to a third of their TTL old: a peer that filled up since says
          // OVER_CAPACITY, and the next one is asked, as for one that does not answer.
          const withRoom = await directory.peersWithRoom().catch(() => [] as ServerEntry[]);
          for (const peer of withRoom) {
            let answered: PeerAnswer;
            try {
              answered = await send(req, res, peer, directory.serverId);
            } catch (err) {
              if (!(err instanceof PeerUnreachable) || res.headersSent) throw err;
              logger.warn({ err, peer: peer.url }, 'a peer with room did not answer; trying the next');
              continue;
            }
            if (res.headersSent) return;
            if (isOverCapacity(answered.body)) {
              // (and not named as having room by this process's own OVER_CAPACITY, until it beats again)
              directory.noteFull(peer);
              continue;
            }
            return relay(res, answered);
          }
        }
      }
      return next();
    })().catch((err: unknown) => (err instanceof EnvServerError && !res.headersSent ? answerError(req, res, next, err) : next(err)));
  };
}
