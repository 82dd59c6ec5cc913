import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ListToolsRequestSchema, type CallToolResult, type Tool } from '@modelcontextprotocol/sdk/types.js';
import { randomBytes } from 'node:crypto';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { EnvServerError } from '../../src/env-server/errors.js';
import { scoredResult, type SessionInfo, type SessionRegistry, type SessionResult } from '../../src/env-server/sessions.js';
import type { Logger } from '../../src/logger.js';
import { SANDBOX_ERROR_CODES } from '../../src/sandbox/errors.js';
import { firstHeader } from './forward.js';
import { sendJson } from './reply.js';
import { bodyOf, bodyText, isObject, rpcArgumentsText } from './request-body.js';

/** What the MCP surface needs from server.ts (passed in, so the two files do not import each other). */
export interface McpSurfaceHelpers {
  /** The scenario a request body names (`{"scenario_id": …}`, a dataset row, or the id as a JSON string). */
  scenarioIdOf(body: unknown): string;
  /** An ended session's result as the server reports it. */
  resultBody(r: SessionResult): Record<string, unknown>;
}

/**
 * The URL a client reaches `path` at: the address it used (behind a proxy or another serve process that
 * forwarded the request: X-Forwarded-Host and -Proto), with the path token when it came with one.
 */
export function publicUrl(req: Request, path: string): string {
  const host = firstHeader(req.headers['x-forwarded-host']) ?? req.get('host') ?? 'localhost';
  const proto = firstHeader(req.headers['x-forwarded-proto']) ?? req.protocol;
  const token = /^\/t\/[^/?#]+/.exec(req.originalUrl)?.[0] ?? '';
  return `${proto}://${host}${token}${path}`;
}


/** JSON-RPC error codes of this surface (server-defined range): the session in the URL is unknown, or has ended. */
export const MCP_UNKNOWN_SESSION = -32001;
export const MCP_SESSION_CLOSED = -32002;


export const jsonRpcError = (res: Response, status: number, code: number, message: string, data?: Record<string, unknown>) => {
  res.status(status).json({ jsonrpc: '2.0', error: { code, message, ...(data ? { data } : {}) }, id: null });
};

/** A session's tools as MCP lists them: name, description and the JSON Schema of the arguments (always an object schema). */
export function mcpTools(info: SessionInfo): Tool[] {
  const defs = new Map(info.toolDefs.map(t => [t.function.name, t.function]));
  return info.tools.map(name => {
    const def = defs.get(name);
    return {
      name,
      ...(def?.description ? { description: def.description } : {}),
      inputSchema: { properties: {}, ...(def?.parameters ?? {}), type: 'object' },
    };
  });
}

const textResult = (value: unknown, isError: boolean, structured: Record<string, unknown> | null, text?: string): CallToolResult => ({
  content: [{ type: 'text', text: text ?? (typeof value === 'string' ? value : JSON.stringify(value)) }],
  ...(structured ? { structuredContent: structured } : {}),
  isError,
});

/**
 * JSON texts to put into one response in place of placeholders: the SDK validates a tools/call result and writes it
 * with JSON.stringify, so a Python tool's `structuredContent` would go out as the parsed value written again (1.0 as 1,
 * 2**64 + 1 rounded). It goes out as `{"<key>":"<n>"}` instead (an object, as the SDK's schema asks; the key holds
 * random bytes of this process, so no result can spell it), and the response's body has each placeholder replaced
 * by the text the runtime wrote (`spliceRawJson`).
 */
class RawSlots {
  static readonly KEY = `envfleet-raw-json-${randomBytes(12).toString('hex')}`;
  static readonly PATTERN = new RegExp(`\\{"${RawSlots.KEY}":"(\\d+)"\\}`, 'g');
  readonly texts: string[] = [];
  /** The placeholder object standing for `json` (a JSON object's text) in this response. */
  hold(json: string): Record<string, unknown> {
    this.texts.push(json);
    return { [RawSlots.KEY]: String(this.texts.length - 1) };
  }
  splice(body: string): string {
    return body.replace(RawSlots.PATTERN, (whole, n: string) => this.texts[Number(n)] ?? whole);
  }
}

/**
 * Holds back `res`'s head and body until it ends, then writes them with the placeholders of `slots` replaced (and
 * the content length made right). The MCP route answers with one JSON body (enableJsonResponse), so nothing streams.
 */
function spliceRawJson(res: Response, slots: RawSlots): { begun(): boolean } {
  const writeHead = res.writeHead.bind(res) as (...args: unknown[]) => Response;
  const end = res.end.bind(res) as (...args: unknown[]) => Response;
  let head: unknown[] | null = null;
  const chunks: Buffer[] = [];
  const keep = (chunk: unknown, encoding?: unknown) => {
    if (chunk === undefined || chunk === null || typeof chunk === 'function') return;
    chunks.push(typeof chunk === 'string' ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8') : Buffer.from(chunk as Uint8Array));
  };
  res.writeHead = ((...args: unknown[]) => {
    head = args;
    return res;
  }) as typeof res.writeHead;
  res.write = ((chunk: unknown, encoding?: unknown, callback?: unknown) => {
    keep(chunk, encoding);
    const done = typeof encoding === 'function' ? encoding : callback;
    if (typeof done === 'function') queueMicrotask(() => (done as () => void)());
    return true;
  }) as typeof res.write;
  res.end = ((chunk?: unknown, encoding?: unknown, callback?: unknown) => {
    keep(chunk, encoding);
    let body: Buffer = Buffer.concat(chunks);
    if (slots.texts.length) body = Buffer.from(slots.splice(body.toString('utf8')), 'utf8');
    if (head) {
      const [status, ...rest] = head;
      // writeHead(status[, message][, headers]): the headers are the last argument when they are an object.
      const headers = rest.at(-1);
      if (headers && typeof headers === 'object' && !Array.isArray(headers)) {
        for (const name of Object.keys(headers)) if (name.toLowerCase() === 'content-length') (headers as Record<string, unknown>)[name] = String(body.length);
      }
      if (res.hasHeader('content-length')) res.setHeader('content-length', String(body.length));
      writeHead(status, ...rest);
    } else if (res.hasHeader('content-length')) res.setHeader('content-length', String(body.length));
    const done = [chunk, encoding, callback].find(a => typeof a === 'function');
    return done ? end(body, done) : end(body);
  }) as typeof res.end;
  return { begun: () => head !== null || chunks.length > 0 || res.headersSent };
}

/** One MCP server for one request on one session: tools/list and tools/call against the registry. */
function sessionServer(registry: SessionRegistry, sessionId: string, info: SessionInfo, requestText: string, slots: RawSlots): Server {
  const server = new Server({ name: 'envfleet', version: '0.1.0' }, { capabilities: { tools: {} }, ...(info.task ? { instructions: info.task } : {}) });
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: mcpTools(registry.info(sessionId)) }));
  server.setRequestHandler(CallToolRequestSchema, async request => {
    const { name, arguments: args } = request.params;
    try {
      const live = registry.info(sessionId);
      if (!live.tools.includes(name)) {
        const message = `no tool "${name}" in this session's environment; the tools are: ${live.tools.join(', ')}`;
        return textResult({ success: false, error: message }, true, { success: false, error: message, code: 'UNKNOWN_TOOL', tools: live.tools });
      }
      // The arguments as the client wrote them in the request (one message per request), so a Python tool reads 2.0 as
      // a float; only where they hold what the SDK parsed.
      const outcome = await registry.call(sessionId, name, args ?? {}, rpcArgumentsText(requestText, args));
      if (outcome.runtimeError) {
        const result = outcome.result as { error?: unknown } | null;
        const message = typeof result?.error === 'string' ? result.error : SANDBOX_ERROR_CODES[outcome.runtimeError];
        return textResult(outcome.result, true, { success: false, error: message, code: outcome.runtimeError, session_ended: registry.result(sessionId) !== null });
      }
      // The text is exactly what an episode gives the model; an environment's own error result ({success: false}) is an error too.
      const value = outcome.result;
      // A Python tool's value as the runtime wrote it (an integer past 2^53, 1.0); a string as it is, as before.
      // structuredContent likewise: the runtime's text, put into the response's body in place of a placeholder.
      const structured = !isObject(value) ? null : outcome.resultJson === undefined ? value : slots.hold(outcome.resultJson);
      return textResult(value, isObject(value) && value['success'] === false, structured, typeof value === 'string' ? undefined : outcome.resultJson);
    } catch (err) {
      // The session ended meanwhile, or its environment failed: an error result the model can read.
      if (err instanceof EnvServerError) return textResult({ success: false, error: err.message }, true, { success: false, error: err.message, code: err.code, ...err.details });
      throw err;
    }
  });
  return server;
}

/**
 * The MCP surface: `POST /sessions` opens a session (`{session_id, mcp_url, …}`), `/sessions/{id}/mcp` is a
 * stateless Streamable HTTP MCP endpoint on it (a new transport per request, so clients may reconnect per
 * call), `POST /sessions/{id}/verify` ends it with the reward, `DELETE /sessions/{id}` ends it too.
 * Mounted by server.ts after the token check.
 */
export function mcpRouter(registry: SessionRegistry, logger: Logger, helpers: McpSurfaceHelpers): Router {
  const router = express.Router();
  const route = (handler: (req: Request, res: Response) => Promise<void>) => (req: Request, res: Response, next: NextFunction) => {
    handler(req, res).catch(next);
  };

  router.post(
    '/sessions',
    route(async (req, res) => {
      const info = await registry.open(helpers.scenarioIdOf(bodyOf(req)));
      const path = `/sessions/${encodeURIComponent(info.id)}/mcp`;
      res.status(201).json({
        session_id: info.id,
        scenario_id: info.scenarioId,
        environment_id: info.environmentId,
        tools: info.tools,
        task: info.task,
        mcp_url: publicUrl(req, path),
        mcp_path: path,
      });
    }),
  );
  router.post(
    '/sessions/:id/verify',
    route(async (req, res) => {
      const result = scoredResult(await registry.finish(String(req.params['id']), 'finished'));
      sendJson(res, {
        reward: result.reward ?? 0,
        reward_components: Object.fromEntries(result.checks.map(c => [c.item, c.passed ? 1 : 0])),
        envfleet: helpers.resultBody(result),
      });
    }),
  );
  router.delete(
    '/sessions/:id',
    route(async (req, res) => {
      sendJson(res, helpers.resultBody(await registry.finish(String(req.params['id']), 'closed')));
    }),
  );
  router.all(
    '/sessions/:id/mcp',
    route(async (req, res) => {
      const id = String(req.params['id']);
      if (req.method !== 'POST') {
        res.setHeader('Allow', 'POST');
        jsonRpcError(res, 405, -32000, `${req.method} is not served: this endpoint is stateless, POST each JSON-RPC message (the session is in the URL; POST /sessions/${id}/verify or DELETE /sessions/${id} ends it)`);
        return;
      }
      let info: SessionInfo;
      try {
        info = registry.info(id);
      } catch (err) {
        if (!(err instanceof EnvServerError)) throw err;
        const closed = err.code === 'SESSION_CLOSED';
        const lost = err.code === 'SESSION_LOST';
        jsonRpcError(res, closed || lost ? 410 : 404, closed ? MCP_SESSION_CLOSED : MCP_UNKNOWN_SESSION, closed || lost ? err.message : `no session ${id} on this server; open one with POST /sessions {"scenario_id": …}`, { code: err.code, ...err.details });
        return;
      }
      let body: unknown;
      try {
        body = bodyOf(req);
      } catch (err) {
        jsonRpcError(res, 400, -32700, (err as Error).message);
        return;
      }
      // tools/call with params the SDK's schema refuses (arguments that are no object, a name that is no string): the
      // SDK answers those -32603 with its schema's dump, which says "the server failed" (open a new session): -32602
      // saying what is wrong instead, as OpenEnv's POST /mcp answers, and the session goes on.
      // (A notification, without an id, gets no answer: it goes to the SDK as it came.)
      const badCall = isObject(body) && body['method'] === 'tools/call' && 'id' in body ? toolsCallProblem(body['params']) : null;
      if (badCall !== null) {
        res.status(200).json({ jsonrpc: '2.0', id: (body as Record<string, unknown>)['id'] ?? null, error: { code: -32602, message: badCall } });
        return;
      }
      // A batch (an array) is not one message: its arguments go parsed.
      const slots = new RawSlots();
      let answer: { begun(): boolean } | undefined;
      const server = sessionServer(registry, id, info, isObject(body) ? bodyText(req) : '{}', slots);
      const transport = new StreamableHTTPServerTransport({ enableJsonResponse: true }) // no sessionIdGenerator: stateless;
      res.on('close', () => {
        void transport.close().catch(() => undefined);
        void server.close().catch(() => undefined);
      });
      try {
        await server.connect(transport);
        answer = spliceRawJson(res, slots);
        await transport.handleRequest(req, res, body);
      } catch (err) {
        logger.error({ err, session: id }, 'MCP request failed');
        if (!(answer?.begun() ?? res.headersSent)) jsonRpcError(res, 500, -32603, 'the server failed on this request; see its log');
      }
    }),
  );
  return router;
}

/** What is wrong with a tools/call's params (MCP: `{name: string, arguments?: object}`), or null. */
function toolsCallProblem(params: unknown): string | null {
  if (!isObject(params)) return 'tools/call needs params, an object {"name": TOOL, "arguments": {...}}';
  if (typeof params['name'] !== 'string') return `tools/call needs params.name, a tool's name (a string; got ${params['name'] === undefined ? 'none' : JSON.stringify(params['name'])})`;
  const args = params['arguments'];
  if (args !== undefined && !isObject(args)) return `tools/call needs params.arguments to be an object of named arguments (got ${Array.isArray(args) ? 'an array' : args === null ? 'null' : `a ${typeof args}`}), as the tool's inputSchema from tools/list describes`;
  return null;
}
