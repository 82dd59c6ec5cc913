import type OpenAI from 'openai';
import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import type { ChatCompletion, ChatCompletionCreateParamsNonStreaming } from 'openai/resources/chat/completions';
import type { HttpSender } from './node-fetch.js';

/**
 * What every chat request to an endpoint carries but its body: the URL and the headers, as the endpoint's
 * openai client builds them (`buildRequest`): its base URL and path, `Authorization`, the organization and
 * project, `OPENAI_CUSTOM_HEADERS`, its `User-Agent` and `X-Stainless-*` headers, with retries off and the
 * endpoint's timeout. Made once per endpoint.
 */
export interface ChatRequestBase {
  readonly url: URL;
  readonly headers: Readonly<Record<string, string>>;
}

export async function chatRequestBase(client: OpenAI, timeoutMs: number): Promise<ChatRequestBase> {
  const { req, url } = await client.buildRequest({ method: 'post', path: '/chat/completions', body: {}, timeout: timeoutMs, maxRetries: 0 }, { retryCount: 0 });
  const headers: Record<string, string> = {};
  new Headers(req.headers).forEach((value, name) => {
    // The body's length is set per request by the sender.
    if (name !== 'content-length') headers[name] = value;
  });
  return { url: new URL(url), headers };
}

/** What one request adds: the caller's headers (the stage header), its abort signal, the endpoint's timeout. */
export interface ChatPostOptions {
  readonly headers: Readonly<Record<string, string>>;
  readonly signal: AbortSignal | null;
  readonly timeoutMs: number;
}

/** UTF-8 as fetch's Response.text() decodes it: a byte-order mark is dropped. */
const utf8 = new TextDecoder();

/**
 * One chat completion, `POST {baseURL}/chat/completions`, straight over the gateway's keep-alive sender
 * (src/llm/node-fetch.ts) instead of through the openai client's request machinery, which cost about as
 * much CPU again as the request itself on a worker's main thread (docs/benchmarks.md). It sends what the
 * client sends for a non-streaming `chat.completions.create` with retries off (`base`, then the caller's
 * headers, then the JSON body: `body`'s bytes as they are, or JSON.stringify of the parameters), and fails the way the client fails, with the client's own error classes, so
 * the gateway translates both alike: a status outside 2xx is `APIError.generate` of the body (as JSON when
 * it parses, else its text as the message) and the headers; no answer within the timeout, or a connection
 * error that says it timed out, is `APIConnectionTimeoutError`; the caller's abort `APIUserAbortError`; any
 * other failed connection `APIConnectionError` with the socket's error as its cause. One difference, on
 * purpose: a 2xx body is read as JSON whatever its content type (the client hands a body not labelled JSON
 * back as a string, which no caller can use); one that is not JSON throws the parse's SyntaxError (the
 * gateway's "unreadable response"). Not carried over: the client's own request log (`OPENAI_LOG`).
 */
export async function postChatCompletion(sender: HttpSender, base: ChatRequestBase, body: ChatCompletionCreateParamsNonStreaming | Uint8Array, o: ChatPostOptions): Promise<ChatCompletion> {
  const headers: Record<string, string> = { ...base.headers };
  for (const [k, v] of Object.entries(o.headers)) headers[k.toLowerCase()] = v;
  if (o.signal?.aborted) throw new APIUserAbortError();
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, o.timeoutMs);
  const onAbort = () => controller.abort();
  o.signal?.addEventListener('abort', onAbort, { once: true });
  let answer;
  try {
    answer = await sender.send(base.url, { method: 'POST', headers, body: body instanceof Uint8Array ? body : JSON.stringify(body), signal: controller.signal });
  } catch (err) {
    if (o.signal?.aborted) throw new APIUserAbortError();
    const cause = err instanceof Error ? err : new Error(String(err));
    // As the client tells a timeout from another connection failure (an OS-level ETIMEDOUT included).
    if (timedOut || /timed? ?out/i.test(String(cause) + ('cause' in cause ? String(cause.cause) : ''))) throw new APIConnectionTimeoutError();
    throw new APIConnectionError({ cause });
  } finally {
    clearTimeout(timer);
    o.signal?.removeEventListener('abort', onAbort);
  }
  const text = utf8.decode(answer.bytes);
  if (answer.status < 200 || answer.status >= 300) {
    const json = safeJSON(text);
    const responseHeaders = new Headers();
    const raw = answer.rawHeaders;
    for (let i = 0; i + 1 < raw.length; i += 2) responseHeaders.append(raw[i]!, raw[i + 1]!);
    throw APIError.generate(answer.status, json, json ? undefined : text, responseHeaders);
  }
  return JSON.parse(text) as ChatCompletion;
}

/** Any JSON value, as the openai client takes an error body (a falsy one makes the text the message). */
function safeJSON(text: string): object | undefined {
  try {
    return JSON.parse(text) as object;
  } catch {
    return undefined;
  }
}
