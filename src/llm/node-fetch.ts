import http from 'node:http';
import https from 'node:https';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';

/**
 * HTTP to model endpoints on node:http / node:https with keep-alive agents, instead of Node's global
 * fetch (undici): the gateway posts chat completions over `createHttpSender` (src/llm/chat-post.ts), and
 * `createNodeFetch` over the same sender is the `fetch` of its openai clients for everything else
 * (`new OpenAI({ fetch: createNodeFetch({ sender }) })`).
 * In a micro-benchmark on the loaded 2-core machine (200 at a time, a hotel-sized chat request), the openai
 * client cost ≈ 0.85–0.94 ms of CPU per request over the global fetch, ≈ 0.45–0.49 ms over this fetch, and a
 * bare request over the sender ≈ 0.23 ms (docs/benchmarks.md, "main thread and sink after the HTTP client change").
 *
 * What it keeps of the global fetch's behaviour: request bodies of text or bytes (createNodeFetch hands
 * anything else, such as a stream or form data, to the global fetch), `accept-encoding: gzip, deflate, br`
 * unless the caller sets one, and gzip / deflate / br answers decompressed; an abort rejects with an
 * `AbortError`; an idle connection is closed after undici's 4 s, or a second before the server's
 * `Keep-Alive: timeout=N` hint. Not kept: redirects are not followed (a 3xx is an answer like any other), and
 * answers are read whole (the gateway never streams). Added: a request that a reused keep-alive connection lost
 * within RESENT_WITHIN_MS of going out, before any answer (the server had closed the connection while idle), is
 * sent once more on a new connection, as Node's documentation of `request.reusedSocket` suggests (undici fails it).
 */
/** An answer read whole: status, headers and the body's bytes (decoded when the server compressed them). */
export interface HttpAnswer {
  readonly status: number;
  readonly statusText: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly rawHeaders: readonly string[];
  readonly bytes: Buffer;
}

export interface HttpSender {
  /**
   * One request; rejects with the signal's `AbortError` when it is aborted, with a `TypeError('fetch failed')`
   * (its cause the socket's error, or an AnswerCutError when the connection closed mid-answer) when the connection fails.
   */
  send(url: URL, init: { readonly method: string; readonly headers: Record<string, string>; readonly body?: string | Uint8Array | undefined; readonly signal?: AbortSignal | null | undefined }): Promise<HttpAnswer>;
}

/** How long an idle keep-alive connection is kept at most (undici's default keep-alive timeout). */
export const IDLE_MS = 4_000;
/**
 * A request lost on a reused connection is sent again only when the loss came this soon after it went out: a
 * connection the server had closed fails within a round trip (and the event loop's delay), while a server that read
 * the request, worked on it and then dropped the connection (a restart, a proxy) must not get it, and bill it, twice.
 */
export const RESENT_WITHIN_MS = 1_000;
/** The errors of a request on a reused connection that the server had closed before it read the request. */
const LOST_ON_REUSE = new Set(['ECONNRESET', 'EPIPE']);

/** node:http / node:https keep-alive agents and one request at a time over them (see createNodeFetch). */
export function createHttpSender(options: { readonly maxSockets?: number; readonly idleMs?: number; readonly resendWithinMs?: number } = {}): HttpSender {
  const resendWithinMs = options.resendWithinMs ?? RESENT_WITHIN_MS;
  // Every idle connection is kept (Node's default keeps 256 and closes the rest, so a worker with a thousand
  // requests in flight opened and closed connections all the time), for IDLE_MS at most: servers close idle
  // connections themselves (uvicorn, vLLM's server, after 5 s; Node's after 5 s), and a request that goes out on one
  // the server has just closed fails. The agent's `timeout` is also what makes Node honour the server's
  // `Keep-Alive: timeout=N` hint (it closes the connection a second before; without a `timeout` the hint is ignored).
  // A request in progress is not affected: the agent closes only idle connections on their timeout.
  const agentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? Infinity, maxFreeSockets: Number.MAX_SAFE_INTEGER, scheduling: 'lifo' as const, timeout: options.idleMs ?? IDLE_MS };
  const agents = { http: new http.Agent(agentOptions), https: new https.Agent(agentOptions) };
  return {
    send(url, init) {
      const https_ = url.protocol === 'https:';
      const headers = init.headers;
      if (!('accept-encoding' in headers)) headers['accept-encoding'] = 'gzip, deflate, br';
      const body = init.body;
      if (body !== undefined && !('content-length' in headers)) headers['content-length'] = String(typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength);
      // node:http writes the head with a string body in the body's encoding (UTF-8), but alone, before a byte body,
      // as Latin-1: a non-ASCII header value (OPENAI_CUSTOM_HEADERS: "x-tenant: équipe") goes out as its UTF-8
      // bytes either way, as the openai client's own requests send it.
      if (body instanceof Uint8Array) {
        for (const [name, value] of Object.entries(headers)) if (/[^ -~\t]/.test(value)) headers[name] = Buffer.from(value, 'utf8').toString('latin1');
      }
      const signal = init.signal ?? null;
      const attempt = (retried: boolean): Promise<HttpAnswer> =>
        new Promise<HttpAnswer>((resolve, reject) => {
          if (signal?.aborted) {
            reject(abortReason(signal));
            return;
          }
          // Sent again, it goes on a connection of its own (`agent: false`, outside `maxSockets`, `Connection: close`):
          // the agent would hand out the next idle connection, which the server has likely closed as well (several go
          // idle together and time out together).
          const agent = retried ? false : https_ ? agents.https : agents.http;
          // When the whole request was handed to the socket (before that, a loss is a refused write).
          let sentAt: number | null = null;
          const request = (https_ ? https : http).request(url, { method: init.method, headers, agent }, res => {
            const chunks: Buffer[] = [];
            let received = 0;
            res.on('data', (c: Buffer) => {
              chunks.push(c);
              received += c.length;
            });
            // The answer had begun: the request is never sent again (the server took it), and the error says where it broke.
            res.on('error', err => {
              const expected = res.headers['content-length'];
              const where = `${received} bytes of the body${expected === undefined ? '' : ` of ${expected}`}`;
              answerCut(new AnswerCutError(`the connection closed while the answer was read (status ${res.statusCode ?? '?'}, ${where}: ${err.message})`, { cause: err }));
            });
            res.on('end', () => {
              signal?.removeEventListener('abort', onAbort);
              try {
                resolve(answerOf(res, chunks));
              } catch (err) {
                reject(err instanceof Error ? err : new Error(String(err)));
              }
            });
          });
          function fail(err: Error) {
            signal?.removeEventListener('abort', onAbort);
            if (signal?.aborted) reject(abortReason(signal));
            // The server closed an idle keep-alive connection as this request went out on it (reset, or the write
            // refused), so it never read it: once more, on a new one. A loss later than RESENT_WITHIN_MS after the
            // request went out may be a server that read it, and fails as any other connection failure.
            else if (!retried && request.reusedSocket && LOST_ON_REUSE.has((err as NodeJS.ErrnoException).code ?? '') && (sentAt === null || performance.now() - sentAt < resendWithinMs)) resolve(attempt(true));
            else reject(new TypeError('fetch failed', { cause: err }));
          }
          function answerCut(err: AnswerCutError) {
            signal?.removeEventListener('abort', onAbort);
            if (signal?.aborted) reject(abortReason(signal));
            else reject(new TypeError('fetch failed', { cause: err }));
          }
          function onAbort() {
            request.destroy();
            reject(abortReason(signal!));
          }
          signal?.addEventListener('abort', onAbort, { once: true });
          request.on('error', fail);
          request.once('finish', () => (sentAt = performance.now()));
          request.end(body);
        });
      return attempt(false);
    },
  };
}

/** The connection closed after the answer began (its status and headers came, its body did not all come). */
export class AnswerCutError extends Error {
  override readonly name = 'AnswerCutError';
}

/** A fetch over `options.sender` (else a sender of its own, with `maxSockets`). */
export function createNodeFetch(options: { readonly maxSockets?: number; readonly idleMs?: number; readonly resendWithinMs?: number; readonly sender?: HttpSender } = {}): typeof fetch {
  const sender = options.sender ?? createHttpSender(options);
  const nodeFetch: typeof fetch = async (input, init = {}) => {
    const body = init.body;
    if (input instanceof Request || (body !== undefined && body !== null && typeof body !== 'string' && !(body instanceof Uint8Array))) {
      return fetch(input, init);
    }
    const url = typeof input === 'string' ? new URL(input) : input;
    if (url.protocol !== 'https:' && url.protocol !== 'http:') return fetch(input, init);
    const answer = await sender.send(url, { method: init.method ?? 'GET', headers: headerRecord(init.headers), body: body ?? undefined, signal: init.signal ?? null });
    const headers = new Headers();
    const raw = answer.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
    return new Response(NULL_BODY.has(answer.status) ? null : answer.bytes, { status: answer.status, statusText: answer.statusText, headers });
  };
  return nodeFetch;
}

function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error && reason.name === 'AbortError' ? reason : new DOMException('This operation was aborted', 'AbortError');
}

function headerRecord(h: RequestInit['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  if (!h) return out;
  if (h instanceof Headers) h.forEach((v, k) => (out[k] = v));
  else if (Array.isArray(h)) for (const [k, v] of h) out[k!.toLowerCase()] = v!;
  else for (const [k, v] of Object.entries(h)) if (v !== undefined) out[k.toLowerCase()] = String(v);
  return out;
}

/** Statuses whose Response must have a null body. */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

function answerOf(res: http.IncomingMessage, chunks: Buffer[]): HttpAnswer {
  let bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  const encoding = (res.headers['content-encoding'] ?? '').trim().toLowerCase();
  if (bytes.length && encoding) {
    if (encoding === 'gzip' || encoding === 'x-gzip') bytes = gunzipSync(bytes);
    else if (encoding === 'deflate') bytes = inflateSync(bytes);
    else if (encoding === 'br') bytes = brotliDecompressSync(bytes);
  }
  return { status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', headers: res.headers, rawHeaders: res.rawHeaders, bytes };
}
