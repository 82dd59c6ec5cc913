import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import type { ChatCompletion, ChatCompletionCreateParamsNonStreaming } from 'openai/resources/chat/completions';
import type { HttpSender } from './node-fetch.js';

/** What a chat request sends besides its body. */
export interface ChatPostOptions {
  readonly apiKey: string;
  /** `OpenAI-Organization` / `OpenAI-Project`, as the endpoint's openai client has them (null: not sent). */
  readonly organization: string | null;
  readonly project: string | null;
  /** Extra headers (the stage header). */
  readonly headers: Readonly<Record<string, string>>;
  readonly signal: AbortSignal | null;
  readonly timeoutMs: number;
}

const USER_AGENT = 'envfleet (openai-compatible chat)';

/**
 * One chat completion, `POST {baseURL}/chat/completions`, straight over the gateway's keep-alive sender
 * (src/llm/node-fetch.ts) instead of through the openai client's request machinery, which cost about as
 * much CPU again as the request itself on a worker's main thread (docs/benchmarks.md). It sends what the
 * client sends for a non-streaming `chat.completions.create` with retries off: the same URL (the base URL
 * and the path joined as the client joins them), the JSON body, `Authorization: Bearer`, the organization
 * and project headers, and the caller's headers. It fails the way the client fails, with the client's own
 * error classes, so the gateway translates both alike: a status outside 2xx is `APIError.generate` of the
 * body (as JSON when it parses, else its text as the message) and the headers; a timeout is
 * `APIConnectionTimeoutError`, the caller's abort `APIUserAbortError`, a failed connection
 * `APIConnectionError` with the socket's error as its cause; a 2xx body that is not JSON throws the parse's
 * SyntaxError (the gateway's "unreadable response").
 */
export async function postChatCompletion(sender: HttpSender, baseURL: string, params: ChatCompletionCreateParamsNonStreaming, o: ChatPostOptions): Promise<ChatCompletion> {
  const url = chatURL(baseURL);
  const headers: Record<string, string> = {
    accept: 'application/json',
    'content-type': 'application/json',
    'user-agent': USER_AGENT,
    authorization: `Bearer ${o.apiKey}`,
  };
  if (o.organization) headers['openai-organization'] = o.organization;
  if (o.project) headers['openai-project'] = o.project;
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
    answer = await sender.send(url, { method: 'POST', headers, body: JSON.stringify(params), signal: controller.signal });
  } catch (err) {
    if (o.signal?.aborted) throw new APIUserAbortError();
    if (timedOut) throw new APIConnectionTimeoutError();
    throw new APIConnectionError({ cause: err instanceof Error ? err : new Error(String(err)) });
  } finally {
    clearTimeout(timer);
    o.signal?.removeEventListener('abort', onAbort);
  }
  const text = answer.bytes.toString('utf8');
  if (answer.status < 200 || answer.status >= 300) {
    const json = safeJSON(text);
    const responseHeaders = new Headers();
    const raw = answer.rawHeaders;
    for (let i = 0; i + 1 < raw.length; i += 2) responseHeaders.append(raw[i]!, raw[i + 1]!);
    throw APIError.generate(answer.status, json, json ? undefined : text, responseHeaders);
  }
  return JSON.parse(text) as ChatCompletion;
}

const urls = new Map<string, URL>();

/** `{baseURL}/chat/completions` as the openai client joins them (one slash between), made once per base URL. */
function chatURL(baseURL: string): URL {
  let url = urls.get(baseURL);
  if (!url) {
    url = new URL(baseURL + (baseURL.endsWith('/') ? 'chat/completions' : '/chat/completions'));
    urls.set(baseURL, url);
  }
  return url;
}

function safeJSON(text: string): object | undefined {
  // Any JSON value, as the openai client takes it (a falsy one makes the text the message).
  try {
    return JSON.parse(text) as object;
  } catch {
    return undefined;
  }
}
