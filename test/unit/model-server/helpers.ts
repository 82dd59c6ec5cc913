/** Shared helpers for the model-server tests: plain `fetch` calls against a running server. */
import type { ModelServer } from '../../../src/model-server/index.js';

export interface JsonReply {
  status: number;
  headers: Headers;
  body: unknown;
}

/** Origin of the server (its url without `/v1`). */
export function origin(server: ModelServer): string {
  return server.url.replace(/\/v1$/, '');
}

/** POSTs `body` (JSON-serialized unless already a string) to `path` and parses the JSON reply. */
export async function post(server: ModelServer, path: string, body: unknown, headers: Record<string, string> = {}): Promise<JsonReply> {
  const res = await fetch(`${origin(server)}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: await res.json() };
}

export async function get(server: ModelServer, path: string, headers: Record<string, string> = {}): Promise<JsonReply> {
  const res = await fetch(`${origin(server)}${path}`, { headers });
  return { status: res.status, headers: res.headers, body: await res.json() };
}

/** A chat request whose last user message is `text`, optionally tagged with a stage. */
export async function chat(
  server: ModelServer,
  text: string,
  options: { stage?: string; model?: string; extra?: Record<string, unknown> } = {},
): Promise<JsonReply> {
  const headers: Record<string, string> = options.stage === undefined ? {} : { 'X-Envfleet-Stage': options.stage };
  const body = { model: options.model ?? 'scripted', messages: [{ role: 'user', content: text }], ...options.extra };
  return post(server, '/v1/chat/completions', body, headers);
}

/** Narrowing helper: the reply body as a record (fails the test otherwise). */
export function record(value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`expected an object, got ${JSON.stringify(value)}`);
  return value as Record<string, unknown>;
}

interface CompletionShape {
  choices: { index: number; message: { content: string | null; tool_calls?: { id: string; type: string; function: { name: string; arguments: string } }[]; reasoning_content?: string }; finish_reason: string }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  model: string;
  object: string;
  id: string;
}

/** The reply body viewed as a chat completion. */
export function completion(reply: JsonReply): CompletionShape {
  return reply.body as CompletionShape;
}

/** Content of the first choice. */
export function content(reply: JsonReply): string | null {
  return completion(reply).choices[0]?.message.content ?? null;
}

interface ErrorShape {
  error: { message: string; type: string; code: string | null; param: string | null };
}

export function apiError(reply: JsonReply): ErrorShape['error'] {
  return (reply.body as ErrorShape).error;
}

/** Resolves when `predicate` holds, polling every 5 ms (rejects after `timeoutMs`). */
export async function waitUntil(predicate: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
