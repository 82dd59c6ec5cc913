import http from 'node:http';
import https from 'node:https';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';

/**
 * A `fetch` for the openai client on node:http / node:https with keep-alive agents, instead of Node's
 * global fetch (undici). The client, its errors, timeouts (it aborts the signal it passes), headers and
 * request shapes stay the SDK's; only the transport changes. On the scripted server one chat request cost
 * the worker's main thread ≈ 0.45 ms of CPU this way against ≈ 0.9 ms through the global fetch
 * (docs/benchmarks.md, "where the remaining milliseconds go").
 *
 * What it keeps of the global fetch's behaviour: request bodies of text or bytes (anything else, such as
 * a stream or form data, goes to the global fetch), `accept-encoding: gzip, deflate, br` unless the
 * caller sets one, and gzip / deflate / br answers decompressed; an abort rejects with an `AbortError`
 * (which the SDK turns into its abort or timeout error); a request that a reused keep-alive connection
 * lost before any answer (the server closed it while idle) is sent once more on a new connection, as
 * undici does. Answers are read whole (the gateway never streams).
 */
export function createNodeFetch(options: { readonly maxSockets?: number } = {}): typeof fetch {
  // Every idle connection is kept (Node's default keeps 256 and closes the rest, so a worker with a thousand
  // requests in flight opened and closed connections all the time); an idle one closes when the server's
  // Keep-Alive timeout hint says so, or when the server closes it.
  const agentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? Infinity, maxFreeSockets: Number.MAX_SAFE_INTEGER, scheduling: 'lifo' as const };
  const agents = { 'http:': new http.Agent(agentOptions), 'https:': new https.Agent(agentOptions) };

  const nodeFetch: typeof fetch = async (input, init = {}) => {
    const body = init.body;
    if (input instanceof Request || (body !== undefined && body !== null && typeof body !== 'string' && !(body instanceof Uint8Array))) {
      return fetch(input, init);
    }
    const url = typeof input === 'string' ? new URL(input) : input;
    const agent = url.protocol === 'https:' ? agents['https:'] : url.protocol === 'http:' ? agents['http:'] : null;
    if (!agent) return fetch(input, init);
    const headers = headerRecord(init.headers);
    if (!('accept-encoding' in headers)) headers['accept-encoding'] = 'gzip, deflate, br';
    if (body !== undefined && body !== null && !('content-length' in headers)) headers['content-length'] = String(typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength);
    const signal = init.signal ?? null;
    const send = (retried: boolean): Promise<Response> =>
      new Promise<Response>((resolve, reject) => {
        if (signal?.aborted) {
          reject(abortReason(signal));
          return;
        }
        const request = (url.protocol === 'https:' ? https : http).request(
          url,
          { method: init.method ?? 'GET', headers, agent },
          res => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('error', fail);
            res.on('end', () => {
              signal?.removeEventListener('abort', onAbort);
              try {
                resolve(responseOf(res, chunks));
              } catch (err) {
                reject(err instanceof Error ? err : new Error(String(err)));
              }
            });
          },
        );
        function fail(err: Error) {
          signal?.removeEventListener('abort', onAbort);
          if (signal?.aborted) reject(abortReason(signal));
          // The server closed an idle keep-alive connection as this request went out on it: once more, on a new one.
          else if (!retried && request.reusedSocket && (err as NodeJS.ErrnoException).code === 'ECONNRESET') resolve(send(true));
          else reject(new TypeError('fetch failed', { cause: err }));
        }
        function onAbort() {
          request.destroy();
          reject(abortReason(signal!));
        }
        signal?.addEventListener('abort', onAbort, { once: true });
        request.on('error', fail);
        request.end(body ?? undefined);
      });
    return send(false);
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

function responseOf(res: http.IncomingMessage, chunks: Buffer[]): Response {
  const status = res.statusCode ?? 0;
  const headers = new Headers();
  const raw = res.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
  let bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  const encoding = (res.headers['content-encoding'] ?? '').trim().toLowerCase();
  if (bytes.length && encoding) {
    if (encoding === 'gzip' || encoding === 'x-gzip') bytes = gunzipSync(bytes);
    else if (encoding === 'deflate') bytes = inflateSync(bytes);
    else if (encoding === 'br') bytes = brotliDecompressSync(bytes);
  }
  return new Response(NULL_BODY.has(status) ? null : bytes, { status, statusText: res.statusMessage ?? '', headers });
}
