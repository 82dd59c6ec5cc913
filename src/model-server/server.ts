/**
 * The scripted model server: a node:http server that speaks enough of the
 * OpenAI protocol (chat completions, embeddings, models) for the official
 * `openai` client, answering from a {@link ModelScript} instead of a model.
 *
 * Endpoints, fixture format and faults are documented in docs/scripted-model.md.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import {
  DEFAULT_EMBEDDING_DIMENSIONS,
  embeddingToBase64,
  hashEmbedding,
} from './embedder.js';
import { parseModelScript, type FaultType, type ModelScript, type ScriptedFault, type ScriptedResponse, type ScriptRule } from './fixtures.js';
import { logprobOf, messagePieces, tokenIds } from './tokens.js';
import { BodyTooLargeError, headerValue, readBody, sendJson, sleep, waitForAbort } from './http.js';
import {
  buildChoice,
  ChatRequest,
  completionUsage,
  EmbeddingsRequest,
  estimateTokens,
  invalidRequest,
  lastMessageText,
  lastUserMessage,
  listModels,
  openAIError,
  type ChatCompletion,
  type EmbeddingsResponse,
  type OpenAIErrorBody,
  type TokenUsage,
} from './protocol.js';
import { responseFor, RuleBook, type RulePick, type RuleQuery } from './rules.js';
import { cutText } from '../util/text.js';

/** Request header carrying the pipeline stage name. */
export const STAGE_HEADER = 'x-envfleet-stage';

/** How many characters of the last user message the log keeps. */
const LOGGED_MESSAGE_CHARS = 500;
/** How many characters of the last user message a no-rule-matched error quotes. */
const QUOTED_MESSAGE_CHARS = 120;

export interface ModelServerOptions {
  script: ModelScript;
  /** TCP port; 0 (default) picks a free one. */
  port?: number | undefined;
  /** Interface to bind; default 127.0.0.1. */
  host?: string | undefined;
  /** When set, every request except `GET /_envfleet/health` must send `Authorization: Bearer <apiKey>`. */
  apiKey?: string | undefined;
  /** Appends every finished log entry to this file as one JSON line. */
  logFile?: string | undefined;
  /** Called with every finished log entry (after the response was sent or the client went away). */
  onLog?: ((entry: ReceivedRequest) => void) | undefined;
  /**
   * Answer a chat request identical to one already answered (same stage, same body, one choice) with
   * the same completion again, as a deterministic model would, without using a rule. Scripted
   * sequences (`responses`) then advance once per distinct request: a client that dies after the
   * server answered and sends the same request again gets the same answer, not the sequence's next
   * one. A fault rule that matches still fails the request (faults are never replayed).
   */
  replay?: boolean | undefined;
}

/** One request received on `/v1/*`. */
export interface ReceivedRequest {
  /** 1-based arrival number (restarts after reset). */
  seq: number;
  /** ISO time of arrival. */
  at: string;
  method: string;
  /** URL path without the query string. */
  path: string;
  /** `X-Envfleet-Stage` header. */
  stage: string | null;
  model: string | null;
  /** Name (or `#index`) of the rule(s) used, comma-separated when several answered (n > 1, several inputs). */
  rule: string | null;
  fault: FaultType | null;
  /** HTTP status sent; null while pending or when the client went away before an answer. */
  status: number | null;
  /** Usage exactly as sent back (embeddings: completion_tokens is 0); null for errors and faults. */
  usage: TokenUsage | null;
  /** First 500 characters of the last user message (chat only). */
  lastUserMessage: string | null;
  /** Whether an Authorization header was present (the key itself is never logged). */
  authorization: boolean;
  /** The parsed JSON request body (null when there was none or it was not JSON). */
  body: unknown;
  /** With `replay`: true when the answer repeated that of an identical earlier request (`rule` names the rule that first answered it). */
  replayed: boolean;
}

export interface ModelServer {
  /** Base URL for OpenAI clients, e.g. `http://127.0.0.1:PORT/v1`. */
  readonly url: string;
  readonly port: number;
  readonly host: string;
  /** Snapshot of the request log, in arrival order. */
  log(): ReceivedRequest[];
  /** Clears the log and every rule's use counter (and, with `replay`, the answers remembered). */
  reset(): void;
  /** Validates and installs a new script (rule counters start over; the log is kept). */
  setScript(script: ModelScript): void;
  /**
   * Validates rules and puts them ahead of the script's, keeping every rule's use counter (faults
   * injected while a run goes on, e.g. `{ stage: 'rollout.*', times: 500, fault: { type: 'rate_limit' } }`).
   */
  inject(rules: readonly ScriptRule[]): void;
  /** Stops listening, destroys open connections (hanging ones included) and flushes the log file. */
  close(): Promise<void>;
}

/** What to send back; decided by the route handlers, written by `deliver`. */
type Outcome =
  | { kind: 'json'; status: number; body: unknown; headers?: Record<string, string>; usage?: TokenUsage }
  | { kind: 'malformed' }
  | { kind: 'truncated'; body: unknown }
  /** The client went away: nothing to send. */
  | { kind: 'gone' };

/** Rules chosen for one request: one pick per chat choice or embeddings input. */
interface Selection {
  picks: (RulePick | undefined)[];
  /** First non-delay fault among the picks (selection stops there). */
  fault: ScriptedFault | undefined;
  /** Whether any pick was a delay fault, and the longest delay. */
  delayed: boolean;
  delayMs: number;
}

const NOT_JSON_BODY = 'We could not parse the JSON body of your request. (HINT: This likely means you aren\'t using your HTTP library correctly. The OpenAI API expects a JSON payload.)';
const MALFORMED_BODY = '{"id":"chatcmpl-malformed","object":"chat.completion","choices":[{ <scripted fault: malformed JSON body>';
/** Stand-in message for picks without a scripted response (bodies of truncated faults). */
const EMPTY_RESPONSE: ScriptedResponse = { content: '' };

function json(status: number, body: unknown, extra: { headers?: Record<string, string>; usage?: TokenUsage } = {}): Outcome {
  return { kind: 'json', status, body, ...extra };
}

function error(status: number, body: OpenAIErrorBody, headers?: Record<string, string>): Outcome {
  return headers === undefined ? json(status, body) : json(status, body, { headers });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Constant-time comparison of the Authorization header with the expected one. */
function sameSecret(actual: string | null, expected: string): boolean {
  if (actual === null) return false;
  const a = Buffer.from(actual);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Picks rules for each query in turn, stopping at the first non-delay fault. */
function selectRules(rules: RuleBook, queries: readonly RuleQuery[]): Selection {
  const selection: Selection = { picks: [], fault: undefined, delayed: false, delayMs: 0 };
  for (const query of queries) {
    const pick = rules.pick(query);
    selection.picks.push(pick);
    const fault = pick?.rule.fault;
    if (fault?.type === 'delay') {
      selection.delayed = true;
      selection.delayMs = Math.max(selection.delayMs, fault.ms);
    } else if (fault !== undefined) {
      selection.fault = fault;
      break;
    }
  }
  return selection;
}

/** Distinct labels of the picks, comma-separated, or null. */
function ruleLabels(picks: readonly (RulePick | undefined)[]): string | null {
  const labels = [...new Set(picks.flatMap((pick) => (pick === undefined ? [] : [pick.label])))];
  return labels.length === 0 ? null : labels.join(',');
}

function rateLimitOutcome(fault: Extract<ScriptedFault, { type: 'rate_limit' }>): Outcome {
  const seconds = fault.retryAfterS ?? 1;
  const body = openAIError(
    fault.message ?? 'Rate limit reached for the scripted model (scripted fault). Please try again later.',
    'rate_limit_error',
    'rate_limit_exceeded',
  );
  // Retry-After must be whole seconds (RFC 9110), so round up; retry-after-ms carries the exact value.
  return error(429, body, { 'retry-after': String(Math.ceil(seconds)), 'retry-after-ms': String(Math.round(seconds * 1000)) });
}

function serverErrorOutcome(fault: Extract<ScriptedFault, { type: 'server_error' }>): Outcome {
  const message = fault.message ?? 'The scripted server had an error while processing your request (scripted fault).';
  return error(fault.status ?? 500, openAIError(message, 'server_error'));
}

class ScriptedModelServer implements ModelServer {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #options: ModelServerOptions;
  #script: ModelScript;
  #rules: RuleBook;
  #entries: ReceivedRequest[] = [];
  #seq = 0;
  /** Never reset, so completion and tool-call ids stay unique for the server's lifetime. */
  #completions = 0;
  /** With `replay`: the completion given to each distinct request (stage and body hash), and the rule that chose it. */
  readonly #answered = new Map<string, { completion: ChatCompletion; label: string }>();
  #logStream: WriteStream | undefined;
  #logStreamError: Error | undefined;
  #closing: Promise<void> | undefined;
  #address: AddressInfo | undefined;

  constructor(options: ModelServerOptions) {
    this.#options = options;
    this.#script = parseModelScript(options.script, '<options.script>');
    this.#rules = new RuleBook(this.#script);
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch(() => res.destroy());
    });
    this.#server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
  }

  get host(): string {
    return this.#options.host ?? '127.0.0.1';
  }

  get port(): number {
    if (this.#address === undefined) throw new Error('model server is not listening');
    return this.#address.port;
  }

  get url(): string {
    const host = this.#address?.address ?? this.host;
    const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
    const hostPart = reachable.includes(':') ? `[${reachable}]` : reachable;
    return `http://${hostPart}:${this.port}/v1`;
  }

  /** Opens the log file (if any) and starts listening. */
  async start(): Promise<void> {
    if (this.#options.logFile !== undefined) this.#logStream = await openLogFile(this.#options.logFile, this);
    this.#server.listen(this.#options.port ?? 0, this.host);
    try {
      await once(this.#server, 'listening');
    } catch (err) {
      this.#logStream?.end();
      throw err;
    }
    this.#address = this.#server.address() as AddressInfo;
  }

  /** Remembers the first log-file write error; `close()` rethrows it. */
  recordLogStreamError(err: Error): void {
    this.#logStreamError ??= err;
  }

  log(): ReceivedRequest[] {
    return this.#entries.map((entry) => ({ ...entry }));
  }

  reset(): void {
    this.#entries = [];
    this.#seq = 0;
    this.#rules.resetCounters();
    this.#answered.clear();
  }

  setScript(script: ModelScript): void {
    this.#script = parseModelScript(script, '<setScript>');
    this.#rules = new RuleBook(this.#script);
    this.#answered.clear();
  }

  inject(rules: readonly ScriptRule[]): void {
    const parsed = parseModelScript({ rules }, '<inject>').rules ?? [];
    this.#rules.prepend(parsed);
    this.#script = { ...this.#script, rules: [...parsed, ...(this.#script.rules ?? [])] };
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    const closed = new Promise<void>((resolve, reject) => this.#server.close((err) => (err ? reject(err) : resolve())));
    for (const socket of this.#sockets) socket.destroy();
    await closed;
    // Let 'close' handlers of the destroyed responses record their entries first.
    await new Promise<void>((resolve) => setImmediate(resolve));
    const stream = this.#logStream;
    if (stream !== undefined) await new Promise<void>((resolve) => stream.end(resolve));
    if (this.#logStreamError !== undefined) throw this.#logStreamError;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const controller = new AbortController();
    res.on('close', () => {
      if (!res.writableEnded) controller.abort();
    });
    const method = req.method ?? 'GET';
    const path = new URL(req.url ?? '/', 'http://scripted.invalid').pathname;
    if (!path.startsWith('/v1/')) {
      this.#deliver(res, await this.#safely(() => this.#routeOther(req, method, path)));
      return;
    }
    const entry = this.#beginEntry(req, method, path);
    res.on('close', () => this.#finishEntry(entry));
    const outcome = await this.#safely(() =>
      this.#authorized(req) ? this.#routeApi(req, method, path, entry, controller.signal) : Promise.resolve(this.#unauthorized()),
    );
    this.#deliver(res, outcome, entry);
  }

  /** Runs a route, turning unexpected exceptions into a 500 instead of a crashed request. */
  async #safely(route: () => Promise<Outcome> | Outcome): Promise<Outcome> {
    try {
      return await route();
    } catch (err) {
      return error(500, openAIError(`scripted server internal error: ${errorMessage(err)}`, 'server_error'));
    }
  }

  #authorized(req: IncomingMessage): boolean {
    const { apiKey } = this.#options;
    return apiKey === undefined || sameSecret(headerValue(req, 'authorization'), `Bearer ${apiKey}`);
  }

  #unauthorized(): Outcome {
    return error(401, openAIError('Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key'));
  }

  /** Admin endpoints (`/_envfleet/*`) and 404s outside `/v1`. */
  #routeOther(req: IncomingMessage, method: string, path: string): Outcome {
    if (method === 'GET' && path === '/_envfleet/health') return json(200, { ok: true });
    if (!this.#authorized(req)) return this.#unauthorized();
    if (method === 'GET' && path === '/_envfleet/log') return json(200, this.log());
    if (method === 'POST' && path === '/_envfleet/reset') {
      this.reset();
      return json(200, { ok: true });
    }
    return this.#notFound(method, path);
  }

  #notFound(method: string, path: string): Outcome {
    const message = `Unknown request URL: ${method} ${path}. The scripted server supports POST /v1/chat/completions, POST /v1/embeddings and GET /v1/models.`;
    return error(404, openAIError(message, 'invalid_request_error', 'unknown_url'));
  }

  async #routeApi(req: IncomingMessage, method: string, path: string, entry: ReceivedRequest, signal: AbortSignal): Promise<Outcome> {
    if (method === 'GET' && path === '/v1/models') return json(200, listModels(this.#script));
    if (method === 'GET' && path.startsWith('/v1/models/')) return this.#retrieveModel(decodeURIComponent(path.slice('/v1/models/'.length)));
    const isChat = method === 'POST' && path === '/v1/chat/completions';
    const isEmbeddings = method === 'POST' && path === '/v1/embeddings';
    if (!isChat && !isEmbeddings) return this.#notFound(method, path);
    const read = await this.#readJsonBody(req, entry);
    if (!('body' in read)) return read.outcome;
    return isChat ? this.#chat(read.body, entry, signal) : this.#embeddings(read.body, entry, signal);
  }

  #retrieveModel(id: string): Outcome {
    const model = listModels(this.#script).data.find((candidate) => candidate.id === id);
    if (model !== undefined) return json(200, model);
    return error(404, openAIError(`The model \`${id}\` does not exist.`, 'invalid_request_error', 'model_not_found', 'model'));
  }

  /** Reads and parses a JSON object body, recording it (and its model) in the log entry. */
  async #readJsonBody(req: IncomingMessage, entry: ReceivedRequest): Promise<{ body: Record<string, unknown> } | { outcome: Outcome }> {
    let text: string;
    try {
      text = await readBody(req);
    } catch (err) {
      if (err instanceof BodyTooLargeError) return { outcome: error(413, openAIError(err.message, 'invalid_request_error')) };
      return { outcome: { kind: 'gone' } };
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return { outcome: error(400, openAIError(NOT_JSON_BODY, 'invalid_request_error')) };
    }
    entry.body = body;
    if (!isRecord(body)) return { outcome: error(400, openAIError('The request body must be a JSON object.', 'invalid_request_error')) };
    if (typeof body['model'] === 'string') entry.model = body['model'];
    return { body };
  }

  async #chat(body: Record<string, unknown>, entry: ReceivedRequest, signal: AbortSignal): Promise<Outcome> {
    if (body['stream'] === true) {
      const message = 'stream: true was requested, but streaming is not supported by the scripted server; send a non-streaming request.';
      return error(400, openAIError(message, 'invalid_request_error', 'streaming_not_supported', 'stream'));
    }
    const parsed = ChatRequest.safeParse(body);
    if (!parsed.success) return error(400, invalidRequest(parsed.error));
    const request = parsed.data;
    const userText = lastUserMessage(request.messages);
    entry.lastUserMessage = userText === null ? null : cutText(userText, LOGGED_MESSAGE_CHARS);
    const query: RuleQuery = { endpoint: 'chat', stage: entry.stage, model: request.model, text: userText ?? '', serializedBody: JSON.stringify(body), last: lastMessageText(request.messages) };
    // Replay: an identical request already answered gets that answer, unless a fault rule takes it first.
    const replayKey = this.#options.replay && (request.n ?? 1) === 1 ? createHash('sha256').update(`${entry.stage ?? ''}\u0000${query.serializedBody}`).digest('hex') : null;
    const earlier = replayKey === null ? undefined : this.#answered.get(replayKey);
    const first = earlier === undefined ? undefined : this.#rules.peek(query);
    if (earlier !== undefined && (first?.fault === undefined || first.fault.type === 'delay')) {
      entry.rule = earlier.label;
      entry.replayed = true;
      return json(200, earlier.completion, { usage: earlier.completion.usage });
    }
    const selection = selectRules(this.#rules, new Array<RuleQuery>(request.n ?? 1).fill(query));
    this.#recordSelection(entry, selection);
    if (selection.picks.includes(undefined)) return this.#noRuleMatched(entry.stage, userText ?? '');
    const picks = selection.picks.filter((pick) => pick !== undefined);
    return this.#answer(selection, signal, () => {
      const completion = this.#completion(request, picks);
      // Only a normal answer is remembered (the success of a truncated fault was never delivered whole).
      if (replayKey !== null && selection.fault === undefined) this.#answered.set(replayKey, { completion, label: entry.rule ?? '' });
      return json(200, completion, { usage: completion.usage });
    });
  }

  #noRuleMatched(stage: string | null, userText: string): Outcome {
    const message = `no scripted rule matches stage "${stage ?? ''}" and last user message "${cutText(userText, QUOTED_MESSAGE_CHARS)}"`;
    return error(400, openAIError(message, 'invalid_request_error', 'no_rule_matched'));
  }

  #completion(request: ChatRequest, picks: readonly RulePick[]): ChatCompletion {
    const id = ++this.#completions;
    const choices = picks.map((pick, index) => {
      const response = responseFor(pick) ?? EMPTY_RESPONSE;
      return { response, choice: buildChoice(index, response, (call) => `call_${id}_${index}_${call}`) };
    });
    // Token data as vLLM gives it when asked: per choice, the completion's log-probabilities and ids; the prompt's ids once.
    const wantLogprobs = request['logprobs'] === true;
    const wantIds = request['return_token_ids'] === true;
    const withTokens = (choice: (typeof choices)[number]['choice']) => {
      if (!wantLogprobs && !wantIds) return choice;
      const completion = messagePieces([choice.message]);
      return {
        ...choice,
        ...(wantLogprobs ? { logprobs: { content: completion.map(token => ({ token, logprob: logprobOf(token), bytes: [...Buffer.from(token, 'utf8')], top_logprobs: [] })) } } : {}),
        ...(wantIds ? { token_ids: tokenIds(completion) } : {}),
      };
    };
    return {
      id: `chatcmpl-scripted-${id}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: request.model,
      choices: choices.map(({ choice }) => withTokens(choice)),
      usage: completionUsage(request, choices, this.#script.defaults),
      ...(wantIds ? { prompt_token_ids: tokenIds(messagePieces(request.messages)) } : {}),
    } as ChatCompletion;
  }

  async #embeddings(body: Record<string, unknown>, entry: ReceivedRequest, signal: AbortSignal): Promise<Outcome> {
    const parsed = EmbeddingsRequest.safeParse(body);
    if (!parsed.success) return error(400, invalidRequest(parsed.error));
    const request = parsed.data;
    const inputs = typeof request.input === 'string' ? [request.input] : request.input;
    const serializedBody = JSON.stringify(body);
    const queries = inputs.map((text): RuleQuery => ({ endpoint: 'embeddings', stage: entry.stage, model: request.model, text, serializedBody }));
    const selection = selectRules(this.#rules, queries);
    this.#recordSelection(entry, selection);
    return this.#answer(selection, signal, () => {
      const response = this.#embeddingsResponse(request, inputs, selection.picks);
      const { prompt_tokens, total_tokens } = response.usage;
      return json(200, response, { usage: { prompt_tokens, completion_tokens: 0, total_tokens } });
    });
  }

  #embeddingsResponse(request: EmbeddingsRequest, inputs: readonly string[], picks: readonly (RulePick | undefined)[]): EmbeddingsResponse {
    const dimensions = request.dimensions ?? DEFAULT_EMBEDDING_DIMENSIONS;
    const base64 = request.encoding_format === 'base64';
    const promptTokens = inputs.reduce((sum, text) => sum + estimateTokens(text), 0);
    return {
      object: 'list',
      data: inputs.map((text, index) => {
        const vector = picks[index]?.rule.embedding ?? hashEmbedding(text, dimensions);
        return { object: 'embedding', index, embedding: base64 ? embeddingToBase64(vector) : vector };
      }),
      model: request.model,
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
    };
  }

  #recordSelection(entry: ReceivedRequest, selection: Selection): void {
    entry.rule = ruleLabels(selection.picks);
    entry.fault = selection.fault?.type ?? (selection.delayed ? 'delay' : null);
  }

  /**
   * Applies the selection's delay, then either its fault or the normal answer.
   * `success` builds the normal answer (also the body of a truncated fault).
   */
  async #answer(selection: Selection, signal: AbortSignal, success: () => Outcome): Promise<Outcome> {
    if (selection.delayed && !(await sleep(selection.delayMs, signal))) return { kind: 'gone' };
    const { fault } = selection;
    switch (fault?.type) {
      case undefined:
      case 'delay':
        return success();
      case 'rate_limit':
        return rateLimitOutcome(fault);
      case 'server_error':
        return serverErrorOutcome(fault);
      case 'malformed':
        return { kind: 'malformed' };
      case 'truncated': {
        const outcome = success();
        return { kind: 'truncated', body: outcome.kind === 'json' ? outcome.body : null };
      }
      case 'hang':
        await waitForAbort(signal);
        return { kind: 'gone' };
    }
  }

  #beginEntry(req: IncomingMessage, method: string, path: string): ReceivedRequest {
    const entry: ReceivedRequest = {
      seq: ++this.#seq,
      at: new Date().toISOString(),
      method,
      path,
      stage: headerValue(req, STAGE_HEADER),
      model: null,
      rule: null,
      fault: null,
      status: null,
      usage: null,
      lastUserMessage: null,
      authorization: headerValue(req, 'authorization') !== null,
      body: null,
      replayed: false,
    };
    this.#entries.push(entry);
    return entry;
  }

  /** Called once per entry, when its connection's response is closed. */
  #finishEntry(entry: ReceivedRequest): void {
    const stream = this.#logStream;
    if (stream !== undefined && !stream.writableEnded) stream.write(`${JSON.stringify(entry)}\n`);
    try {
      this.#options.onLog?.({ ...entry });
    } catch {
      // A faulty observer must not take the server down.
    }
  }

  /** Writes an outcome to the response, recording status and usage in the entry. */
  #deliver(res: ServerResponse, outcome: Outcome, entry?: ReceivedRequest): void {
    if (outcome.kind === 'gone' || res.headersSent || res.destroyed) return;
    const headers: Record<string, string> = entry === undefined ? {} : { 'x-request-id': `req_scripted_${entry.seq}` };
    const status = outcome.kind === 'json' ? outcome.status : 200;
    if (entry !== undefined) {
      entry.status = status;
      entry.usage = outcome.kind === 'json' ? (outcome.usage ?? null) : null;
    }
    switch (outcome.kind) {
      case 'json':
        sendJson(res, status, outcome.body, { ...outcome.headers, ...headers });
        return;
      case 'malformed':
        res.writeHead(200, { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(MALFORMED_BODY)) });
        res.end(MALFORMED_BODY);
        return;
      case 'truncated': {
        const full = Buffer.from(JSON.stringify(outcome.body));
        res.writeHead(200, { ...headers, 'content-type': 'application/json', 'content-length': String(full.length) });
        res.write(full.subarray(0, Math.floor(full.length / 2)), () => res.destroy());
        return;
      }
    }
  }
}

/** Opens `path` for appending; write errors are reported by `close()`. */
async function openLogFile(path: string, server: ScriptedModelServer): Promise<WriteStream> {
  const stream = createWriteStream(path, { flags: 'a' });
  await once(stream, 'open');
  stream.on('error', (err) => server.recordLogStreamError(err));
  return stream;
}

/**
 * Starts a scripted OpenAI-compatible server.
 * @throws ModelScriptError when `options.script` is invalid; listen errors (e.g. EADDRINUSE).
 */
export async function startModelServer(options: ModelServerOptions): Promise<ModelServer> {
  const server = new ScriptedModelServer(options);
  await server.start();
  return server;
}

/** Alias of {@link startModelServer}. */
export const createModelServer = startModelServer;
