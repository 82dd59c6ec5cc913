import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import type { HttpSender } from './node-fetch.js';

export interface PostOptions {
  readonly headers: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal | null | undefined;
  readonly timeout: number;
}

/**
 * A JSON POST to an OpenAI-compatible endpoint, as the openai client makes it with `maxRetries: 0`
 * (`client.post(path, { body })`): `baseURL + path`, `Authorization: Bearer <key>`, a JSON body, the
 * answer parsed when it is JSON (its text otherwise, null for a 204), and the client's own errors
 * (`APIError.generate` for a status ≥ 400, with the error body and the headers; `APIConnectionError`,
 * `APIConnectionTimeoutError` after `timeout` ms, `APIUserAbortError` when the caller's signal aborts),
 * so the gateway translates them exactly as before. It skips what the client adds per request that
 * the gateway does not use (its platform headers, logging, retry bookkeeping, the web Request/Response
 * objects): ≈ 0.25 ms of main-thread CPU per request on this machine (docs/benchmarks.md).
 */
export function createOpenAIPost(sender: HttpSender, endpoint: { readonly baseURL: string; readonly apiKey: string }) {
  const base = endpoint.baseURL.replace(/\/+$/, '');
  return async function post<T>(path: string, body: unknown, options: PostOptions): Promise<T> {
    const url = new URL(`${base}${path}`);
    const headers: Record<string, string> = {
      accept: 'application/json',
      'content-type': 'application/json',
      'user-agent': 'envfleet (OpenAI-compatible client)',
      ...(endpoint.apiKey ? { authorization: `Bearer ${endpoint.apiKey}` } : {}),
    };
    for (const [k, v] of Object.entries(options.headers)) headers[k.toLowerCase()] = v;
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, options.timeout);
    const outer = options.signal ?? null;
    const onAbort = () => controller.abort();
    if (outer?.aborted) controller.abort();
    else outer?.addEventListener('abort', onAbort, { once: true });
    let answer;
    try {
      answer = await sender.send(url, { method: 'POST', headers, body: JSON.stringify(body), signal: controller.signal });
    } catch (err) {
      if (outer?.aborted) throw new APIUserAbortError();
      if (timedOut) throw new APIConnectionTimeoutError();
      throw new APIConnectionError({ cause: err instanceof Error ? err : new Error(String(err)) });
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener('abort', onAbort);
    }
    if (answer.status < 200 || answer.status > 299) {
      const text = answer.bytes.toString('utf8');
      let json: unknown;
      try {
        json = JSON.parse(text) as unknown;
      } catch {
        json = undefined;
      }
      const h = new Headers();
      for (let i = 0; i < answer.rawHeaders.length; i += 2) h.append(answer.rawHeaders[i]!, answer.rawHeaders[i + 1]!);
      throw APIError.generate(answer.status, json as object | undefined, json ? undefined : text, h);
    }
    if (answer.status === 204) return null as T;
    const mediaType = String(answer.headers['content-type'] ?? '').split(';')[0]?.trim() ?? '';
    if (mediaType.includes('application/json') || mediaType.endsWith('+json')) {
      if (answer.headers['content-length'] === '0') return undefined as T;
      return JSON.parse(answer.bytes.toString('utf8')) as T;
    }
    return answer.bytes.toString('utf8') as T;
  };
}

export type OpenAIPost = ReturnType<typeof createOpenAIPost>;
