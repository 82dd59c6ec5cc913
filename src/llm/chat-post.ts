import type OpenAI from 'openai';
import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import type { ChatCompletion, ChatCompletionCreateParamsNonStreaming } from 'openai/resources/chat/completions';
import type { HttpSender } from './node-fetch.js';
import { deltaContent } from './thinking.js';

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
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A body's text: UTF-8, as JSON is (RFC 8259; a charset on application/json has no effect), unless its bytes are not
 * UTF-8 and its Content-Type names another charset (a proxy that re-encodes as ISO-8859-1 and says so: read as UTF-8,
 * its "é" became U+FFFD in every trajectory and export). A label TextDecoder does not know is read as UTF-8.
 */
function bodyText(bytes: Uint8Array, rawHeaders: readonly string[]): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
      if (rawHeaders[i]!.toLowerCase() !== 'content-type') continue;
      const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(rawHeaders[i + 1]!)?.[1];
      if (!charset || /^utf-?8$/i.test(charset)) break;
      try {
        return new TextDecoder(charset).decode(bytes);
      } catch {
        break; // (a label TextDecoder does not know)
      }
    }
    return utf8.decode(bytes);
  }
}

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
  const text = bodyText(answer.bytes, answer.rawHeaders);
  if (answer.status < 200 || answer.status >= 300) {
    const json = errorBody(safeJSON(text));
    const responseHeaders = new Headers();
    const raw = answer.rawHeaders;
    for (let i = 0; i + 1 < raw.length; i += 2) responseHeaders.append(raw[i]!, raw[i + 1]!);
    throw APIError.generate(answer.status, json, json ? undefined : text, responseHeaders);
  }
  // A server (or a proxy such as LiteLLM set to stream) that answers an event stream though none was asked for:
  // its chunks are put together into the completion they make, as a streaming client would.
  if (isEventStream(answer.rawHeaders, text)) return completionFromEventStream(text);
  return JSON.parse(text) as ChatCompletion;
}

/**
 * An error body as the openai client reads it (its `error` member): vLLM, SGLang and FastChat answer
 * `{"object":"error","message":…,"type":…,"code":…}` and FastAPI servers `{"detail":…}`, with no `error`
 * member, which the client then reads as a body without a message ("400 status code (no body)").
 */
function errorBody(json: object | undefined): object | undefined {
  if (!json || typeof json !== 'object' || Array.isArray(json) || 'error' in json) return json;
  const o = json as Record<string, unknown>;
  const said = typeof o['message'] === 'string' ? o['message'] : o['detail'] !== undefined ? (typeof o['detail'] === 'string' ? o['detail'] : JSON.stringify(o['detail'])) : undefined;
  return said === undefined ? json : { error: { ...o, message: said } };
}

function isEventStream(rawHeaders: readonly string[], text: string): boolean {
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === 'content-type' && /^\s*text\/event-stream/i.test(rawHeaders[i + 1]!)) return true;
  }
  return /^\s*data:/.test(text);
}

/** One tool call's part in a chunk's delta. */
interface StreamToolCall {
  index?: number;
  id?: string;
  type?: string;
  function?: { name?: string; arguments?: unknown };
}

/** A chunk of a streamed chat completion, as far as it is read here. */
interface StreamChunk {
  id?: string;
  prompt_token_ids?: number[] | null;
  created?: number;
  model?: string;
  system_fingerprint?: string;
  usage?: ChatCompletion['usage'];
  choices?: {
    index?: number;
    finish_reason?: string | null;
    logprobs?: { content?: unknown[] | null } | null;
    token_ids?: number[] | null;
    delta?: { role?: string; content?: unknown; reasoning_content?: string | null; reasoning?: string | null; tool_calls?: StreamToolCall[] | StreamToolCall };
  }[];
}

/**
 * The completion an event stream of chat chunks makes: each choice's text, reasoning and tool calls (by index, their
 * arguments joined) put together, its last finish reason, the usage of the chunk that carries it. A stream that is not
 * chunks (an `error` event, text that does not parse) throws the SyntaxError or the error it says, as a body that is
 * not JSON does.
 */
export function completionFromEventStream(text: string): ChatCompletion {
  const chunks: StreamChunk[] = [];
  let done = false;
  for (const line of text.split(/\r?\n/)) {
    const data = /^data:\s?(.*)$/.exec(line)?.[1]!.trim();
    if (data === '[DONE]') done = true;
    if (!data || data === '[DONE]') continue;
    const chunk = JSON.parse(data) as (StreamChunk & { error?: { message?: string } }) | null;
    if (chunk === null || typeof chunk !== 'object') throw new SyntaxError(`the endpoint's event stream held ${data.slice(0, 40)} where a chunk was due`);
    if (chunk.error) throw new SyntaxError(`the endpoint's event stream said: ${chunk.error.message ?? JSON.stringify(chunk.error)}`);
    chunks.push(chunk);
  }
  if (!chunks.length) throw new SyntaxError('the endpoint answered an event stream (text/event-stream) with no chunk in it, though the request did not ask to stream');
  type Call = { id: string; type: 'function'; function: { name: string; arguments: string } };
  const choices = new Map<number, { content: string | null; reasoning: string | null; calls: Map<number, Call>; finish: string | null; logprobs: unknown[] | null; tokenIds: number[] | null }>();
  let usage: ChatCompletion['usage'];
  for (const chunk of chunks) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices ?? []) {
      const index = c.index ?? 0;
      const choice = choices.get(index) ?? { content: null, reasoning: null, calls: new Map<number, Call>(), finish: null, logprobs: null, tokenIds: null };
      choices.set(index, choice);
      const d = c.delta ?? {};
      // (Magistral's deltas hold lists of thinking and text parts: the thinking is its reasoning, as in a whole answer)
      const parts = deltaContent(d.content);
      if (parts.text !== null) choice.content = (choice.content ?? '') + parts.text;
      const thought = d.reasoning_content ?? d.reasoning ?? parts.thinking;
      if (typeof thought === 'string') choice.reasoning = (choice.reasoning ?? '') + thought;
      // (pushed one by one: a long answer comes as tens of thousands of chunks)
      if (Array.isArray(c.logprobs?.content)) for (const lp of c.logprobs.content) (choice.logprobs ??= []).push(lp);
      if (Array.isArray(c.token_ids)) for (const id of c.token_ids) (choice.tokenIds ??= []).push(id);
      // (TGI streams each delta's tool call as one object, not in an array.)
      const deltaCalls: readonly StreamToolCall[] = Array.isArray(d.tool_calls) ? d.tool_calls : d.tool_calls && typeof d.tool_calls === 'object' ? [d.tool_calls] : [];
      for (const t of deltaCalls) {
        // A delta without an index goes on the call of its id, or on the call before it unless it starts one (a new
        // id, or a name); its name replaces the call's (some servers repeat it on every delta), its arguments add on.
        let at = t.index;
        if (at === undefined) {
          const byId = t.id ? [...choice.calls.entries()].find(([, known]) => known.id === t.id)?.[0] : undefined;
          at = byId ?? (t.id || t.function?.name || choice.calls.size === 0 ? choice.calls.size : choice.calls.size - 1);
        }
        const call = choice.calls.get(at) ?? { id: '', type: 'function' as const, function: { name: '', arguments: '' } };
        choice.calls.set(at, call);
        if (t.id) call.id = t.id;
        if (t.function?.name) call.function.name = t.function.name;
        const args: unknown = t.function?.arguments;
        // (a server that sends a call's arguments whole, as an object)
        if (args) call.function.arguments += typeof args === 'string' ? args : JSON.stringify(args);
      }
      if (c.finish_reason) choice.finish = c.finish_reason;
    }
  }
  // A stream cut short (a proxy's timeout, a dropped upstream) has neither a finish reason nor [DONE]: no answer, as a
  // body cut mid-way is none.
  if (!done && (choices.size === 0 || [...choices.values()].some(c => c.finish === null))) {
    throw new SyntaxError('the endpoint answered an event stream (text/event-stream) that ended before its end (no finish_reason and no [DONE]), though the request did not ask to stream');
  }
  const first = chunks[0]!;
  const promptIds = chunks.find(c => Array.isArray(c.prompt_token_ids))?.prompt_token_ids ?? null;
  return {
    id: first.id ?? '',
    object: 'chat.completion',
    created: first.created ?? 0,
    model: first.model ?? '',
    ...(first.system_fingerprint ? { system_fingerprint: first.system_fingerprint } : {}),
    choices: [...choices.entries()]
      .sort(([a], [b]) => a - b)
      .map(([index, c]) => ({
        index,
        finish_reason: (c.finish ?? 'stop') as ChatCompletion['choices'][number]['finish_reason'],
        logprobs: c.logprobs ? ({ content: c.logprobs, refusal: null } as ChatCompletion['choices'][number]['logprobs']) : null,
        ...(c.tokenIds ? { token_ids: c.tokenIds } : {}),
        message: {
          role: 'assistant' as const,
          content: c.content,
          refusal: null,
          ...(c.reasoning !== null ? { reasoning_content: c.reasoning } : {}),
          ...(c.calls.size ? { tool_calls: [...c.calls.entries()].sort(([a], [b]) => a - b).map(([, call]) => call) } : {}),
        },
      })),
    ...(usage ? { usage } : {}),
    // vLLM's return_token_ids puts the prompt's ids on the first chunk.
    ...(promptIds ? ({ prompt_token_ids: promptIds } as object) : {}),
  };
}

/** Any JSON value, as the openai client takes an error body (a falsy one makes the text the message). */
function safeJSON(text: string): object | undefined {
  try {
    return JSON.parse(text) as object;
  } catch {
    return undefined;
  }
}
