import { hash, randomUUID } from 'node:crypto';
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import type {
  ChatCompletion,
  ChatCompletionCreateParamsNonStreaming,
  ChatCompletionMessage,
  ChatCompletionMessageParam,
  ChatCompletionTool,
  ChatCompletionToolChoiceOption,
} from 'openai/resources/chat/completions';
import type { z } from 'zod';
import { apiKeyFix, redactUrl, secretsOf, type AppConfig, type EndpointConfig, type ModelProfile, type ModelStage, type ToolCallFormat } from '../../config/index.js';
import { AppError, BudgetExceededError, EndpointUnreachableError, JobAbortedError, ModelError, ModelOutputError, RateLimitedError, RunCancelledError, RunPausedError, modelCodeOfStatus } from '../errors.js';
import type { Logger } from '../logger.js';
import { truncateForLog } from '../logger.js';
import { canonicalJson, deepFreeze } from '../util/canonical.js';
import { RawJson, stringifyJsonBytes } from '../util/raw-json.js';
import { createSecretMask } from '../util/secrets.js';
import { sharedRead } from '../util/shared-read.js';
import { sleep } from '../util/sleep.js';
import { cutText, wellFormed, withoutLoneSurrogates } from '../util/text.js';
import { chatRequestBase, postChatCompletion, type ChatRequestBase } from './chat-post.js';
import { AnswerCutError, createHttpSender, createNodeFetch } from './node-fetch.js';
import { parseStructured } from './json-output.js';
import { contentText, contentThinking, splitThinking } from './thinking.js';
import { defaultToolChoice, jsonSchemaResponseFormat, samplingOf, shapeChatRequest, tokenRecordOf, type TokenRecord } from './request-shape.js';
import { unlimitedEndpoint, type CoolDownCause, type EndpointLimiter, type Lease, type Ledger, type LedgerEntry, type LedgerTotals, type ResponseCache, type Usage } from './ports.js';
import { budgetReached, usedOf, type Budget, type RunBudgets, type RunGate } from '../runs/control.js';

/**
 * Connection failures that say the endpoint cannot be reached at all (nothing was sent): refused (a server
 * restarting, or gone), no route to its host or network, a temporary DNS failure. MODEL_UNREACHABLE: the fleet
 * waits. A reset after connecting, or a host name DNS says does not exist, stays MODEL_CONNECTION (retried).
 */
const UNREACHABLE: ReadonlySet<string> = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN', 'EAI_AGAIN']);

/**
 * Answers and failures that say either "this request" or "this endpoint serves nothing now" (a model server down
 * behind its proxy: 502/504; loading or overloaded: 503; dead engine: 500; hung: no answer; crashed mid-request: a
 * reset). Which one is told by the endpoint's other answers: with none since the request was sent, an outage
 * (MODEL_UNAVAILABLE, waited for, no attempt used); otherwise the request's own failure (attempts). Cloudflare in
 * front of a server answers its own 52x for the same: 520 (an empty or unknown answer from the origin), 521 (refused),
 * 522 (connect timed out), 523 (unreachable), 524 (no answer within 100 s), never a 502/504.
 */
const OUTAGE_STATUSES: ReadonlySet<number> = new Set([500, 502, 503, 504, 520, 521, 522, 523, 524]);
const RESETS: ReadonlySet<string> = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ETIMEDOUT']);
/**
 * A gateway's statuses for an upstream that is gone (bad gateway, unavailable, gateway timeout, Cloudflare's origin
 * errors). A gateway (LiteLLM, OpenRouter, a load balancer) answers GET /models itself while its model server is down,
 * so for these a run of GATEWAY_DOWN_STREAK of them in a row, with no other answer between, is an outage too.
 */
const GATEWAY_DOWN_STATUSES: ReadonlySet<number> = new Set([502, 503, 504, 520, 521, 522, 523, 524]);
const GATEWAY_DOWN_STREAK = 3;
/** The first wait before a model call is sent again after a failure of its own (ENVFLEET_MODEL_RETRIES); it doubles. */
const MODEL_RESEND_MS = 500;
/** A call that waited this long for a fleet-wide slot reads its run's budget and state again before it is sent. */
const RECHECK_AFTER_WAIT_MS = 100;

/** Every request names its pipeline stage in this header (scripted servers route on it). */
export const STAGE_HEADER = 'X-Envfleet-Stage';
/**
 * Version of the cache-key layout; bump to invalidate every cached response. 2: the request's tools and messages are
 * hashed as the SHA-256 of each one's canonical JSON (version 1 hashed the canonical JSON of the whole request).
 */
const CACHE_KEY_VERSION = 2;

export type ChatMessage = ChatCompletionMessageParam;
export type ChatTool = ChatCompletionTool;

export interface CallContext {
  readonly runId: string;
  readonly stage: ModelStage;
  readonly signal?: AbortSignal | undefined;
  readonly logger?: Logger | undefined;
  /** Distinguishes otherwise identical requests that must not share a cached answer (e.g. sample k). */
  readonly cacheSalt?: string | undefined;
  /** Overrides the configured per-run budgets (e.g. budgets frozen into a run). */
  readonly budgets?: { readonly usd: number; readonly tokens: number } | undefined;
}

export interface ChatRequest {
  readonly messages: readonly ChatMessage[];
  /** Overrides the stage profile's model (same endpoint), e.g. the policy under training of one run. */
  readonly model?: string | undefined;
  readonly tools?: readonly ChatTool[] | undefined;
  readonly toolChoice?: ChatCompletionToolChoiceOption | undefined;
  readonly temperature?: number | undefined;
  readonly maxTokens?: number | undefined;
  readonly responseFormat?: ChatCompletionCreateParamsNonStreaming['response_format'] | undefined;
  /** A seed, sent when the profile's request shape has `seed: true`. */
  readonly seed?: number | undefined;
}

export interface ChatResult {
  readonly message: ChatCompletionMessage & { reasoning_content?: string | null };
  readonly finishReason: string;
  readonly usage: Usage;
  readonly model: string;
  readonly cached: boolean;
  /** How the profile says this model writes tool calls (native, or a text format to parse: src/llm/text-tool-calls.ts). */
  readonly toolCallFormat: ToolCallFormat;
  /** Log-probabilities and token ids, when the profile asked for them and the endpoint returned them. */
  readonly tokens: TokenRecord | null;
  /** The sampling parameters the request carried (temperature only where the profile sends it, seed, top_k…). */
  readonly sampling: Readonly<Record<string, unknown>>;
}

export interface StructuredRequest<T> extends ChatRequest {
  readonly schema: z.ZodType<T>;
  /**
   * Checks beyond the schema (e.g. the code loads in the sandbox, the state matches its JSON
   * Schema). Returns null when the value is acceptable, or a description of what is wrong, which
   * goes back to the model like a schema error. `text`: the JSON text the value was read from, as the model wrote it.
   */
  readonly check?: ((value: T, text: string) => Promise<string | null>) | undefined;
}

export interface StructuredResult<T> {
  readonly value: T;
  /**
   * The JSON text `value` was read from, as the model wrote it (its numbers as spelt: what a Python environment's
   * state is read from). Keys the schema does not know are still in it.
   */
  readonly text: string;
  /** Model calls made: 1 + repair rounds. */
  readonly calls: number;
  readonly usage: Usage;
}

export interface ModelGateway {
  chat(ctx: CallContext, request: ChatRequest): Promise<ChatResult>;
  structured<T>(ctx: CallContext, request: StructuredRequest<T>): Promise<StructuredResult<T>>;
  embed(ctx: CallContext, inputs: readonly string[]): Promise<{ vectors: number[][]; usage: Usage; cached: boolean }>;
  /**
   * Throws as a model call of the run would, without one (RUN_CANCELLED, RUN_PAUSED: the gate), for work that waits
   * between model calls (an episode whose environment waits for room in a full sandbox). Absent: no gate to ask.
   */
  checkRun?(runId: string): Promise<void>;
}

export interface GatewayDeps {
  readonly config: Pick<AppConfig, 'endpoints' | 'profiles' | 'prices' | 'gateway' | 'budgets'>;
  readonly cache: ResponseCache;
  readonly limiter: EndpointLimiter;
  readonly ledger: Ledger;
  readonly logger: Logger;
  /** Longest a request waits for a fleet-wide slot before its job is put back in the queue. */
  readonly limitWaitMs?: number;
  /** For tests: build the client for an endpoint. */
  readonly clientFor?: (endpoint: EndpointConfig) => OpenAI;
  /** Per-run budgets (set with the run); the configured budgets apply when it returns null. */
  readonly budgets?: (runId: string) => Promise<RunBudgets | null>;
  /**
   * The run's budgets and whether it was cancelled, read before each call the cache does not answer (instead of
   * `budgets`): a call of a cancelled run is not sent (RUN_CANCELLED), so a long job (an environment's probe, an
   * episode) stops paying at its next model call instead of running to its end on results a cancel threw away.
   */
  readonly gate?: (runId: string) => Promise<RunGate>;
  /** Observes each model request's latency (metrics). */
  readonly observe?: (stage: string, seconds: number, ok: boolean) => void;
}

/** Writes of a model call's ledger entry before its error is the caller's (each after 100 ms × the attempt). */
const LEDGER_ATTEMPTS = 4;

/**
 * How endpoints say a request is longer than the model's context: vLLM ("This model's maximum context length is 2048
 * tokens. However, you requested …"), OpenAI (context_length_exceeded), SGLang, TGI ("Input validation error: `inputs`
 * tokens + `max_new_tokens` must be <= …"), llama.cpp ("the request exceeds the available context size"), Anthropic's
 * compatible API ("prompt is too long").
 */
const CONTEXT_TOO_LONG = /maximum context length|context[_ ]length[_ ]exceeded|context window|exceeds the (?:available )?context|prompt is too long|max_new_tokens. must be <=|longer than the model's context|input is too long/i;

/**
 * The model gateway: the only path from envfleet to a model. It owns the profile lookup, the
 * stage header, the fleet-wide limits, the response cache, the ledger, the budgets, structured
 * output with a bounded repair loop, and the translation of every transport failure into an
 * AppError that `classifyError` understands. It never retries by itself: a failed request is
 * retried by its job (one retry owner).
 */
export function createModelGateway(deps: GatewayDeps): ModelGateway {
  const clients = new Map<string, OpenAI>();
  // One set of node:http keep-alive agents for every request (src/llm/node-fetch.ts): chat completions go over it
  // directly (postChatCompletion), everything else through the openai client on a fetch over it (half the
  // main-thread CPU per request of Node's global fetch).
  const sender = createHttpSender();
  let nodeFetch: typeof fetch | undefined;
  const clientFor =
    deps.clientFor ??
    ((endpoint: EndpointConfig) =>
      new OpenAI({ baseURL: endpoint.baseURL, apiKey: endpoint.apiKey, maxRetries: 0, timeout: endpoint.timeoutMs, fetch: (nodeFetch ??= createNodeFetch({ sender })) }));
  const client = (endpoint: EndpointConfig) => {
    let c = clients.get(endpoint.name);
    if (!c) {
      c = clientFor(endpoint);
      clients.set(endpoint.name, c);
    }
    return c;
  };

  // Per endpoint: the URL and headers of its chat requests, as its client builds them (chatRequestBase).
  const chatBases = new Map<string, Promise<ChatRequestBase>>();
  const chatBase = (c: OpenAI, endpoint: EndpointConfig): Promise<ChatRequestBase> => {
    let base = chatBases.get(endpoint.name);
    if (!base) {
      base = chatRequestBase(c, endpoint.timeoutMs);
      chatBases.set(endpoint.name, base);
      base.catch(() => chatBases.delete(endpoint.name));
    }
    return base;
  };

  const profileOf = (stage: ModelStage): ModelProfile => deps.config.profiles[stage];
  // An endpoint's error text may echo the request's key ("bad request for key sk-…"): masked before it goes into an
  // error's message, which is stored with the item, the job and the datasets.
  const masked = createSecretMask(secretsOf(deps.config));

  // Per endpoint: when this process last had an answer from it that shows it serving (any answer but a 5xx of
  // OUTAGE_STATUSES). A failure of a request sent after that is taken for an outage (translate).
  const lastAnswerAt = new Map<string, number>();
  /** Per endpoint, the GATEWAY_DOWN_STATUSES answers since its last other answer. */
  const gatewayDown = new Map<string, number>();
  const answered = (endpoint: EndpointConfig) => {
    lastAnswerAt.set(endpoint.name, Date.now());
    gatewayDown.delete(endpoint.name);
  };

  // Per endpoint: whether it answers a request of its own (GET {baseURL}/models), asked once for every failure of the
  // next ENVFLEET_RATE_LIMIT_FALLBACK_MS. Tells a lone request's own failure (one a server fails every time: the last
  // job of a run has nothing else to compare with) from an outage.
  const probes = new Map<string, { readonly until: number; readonly serving: Promise<{ readonly serves: boolean; readonly said: string }> }>();
  function endpointServes(endpoint: EndpointConfig): Promise<{ readonly serves: boolean; readonly said: string }> {
    const known = probes.get(endpoint.name);
    if (known && known.until > Date.now()) return known.serving;
    const timeout = Math.min(endpoint.timeoutMs, PROBE_TIMEOUT_MS);
    const serving = (async () => {
      try {
        await client(endpoint).models.list({ timeout, maxRetries: 0, headers: { [STAGE_HEADER]: 'probe' } });
        return { serves: true, said: '200' };
      } catch (err) {
        // Any HTTP answer but an outage status is a server answering (a proxy without /models says 404: it serves).
        const status = err instanceof APIError ? ((err.status as number | undefined) ?? 0) : 0;
        const said = status ? String(status) : err instanceof APIConnectionTimeoutError ? `no answer within ${timeout} ms` : 'no answer';
        return { serves: status !== 0 && !OUTAGE_STATUSES.has(status), said };
      }
    })();
    probes.set(endpoint.name, { until: Date.now() + deps.config.gateway.rateLimitFallbackMs, serving });
    return serving;
  }

  // Per endpoint: until when this process knows it to be cooling down (a 429, found down, or the fleet-wide limiter
  // said so), so that a profile's other endpoints take its requests meanwhile.
  const coolingUntil = new Map<string, number>();
  /** This process passes over `endpoint` for `ms` (a later, shorter wait does not shorten an earlier one). */
  const markCooling = (endpoint: EndpointConfig, ms: number) => coolingUntil.set(endpoint.name, Math.max(coolingUntil.get(endpoint.name) ?? 0, Date.now() + ms));
  async function coolDown(endpoint: EndpointConfig, ms: number, cause: CoolDownCause = 'MODEL_RATE_LIMITED'): Promise<void> {
    markCooling(endpoint, ms);
    await deps.limiter.coolDown(endpoint, ms, cause);
  }

  /**
   * One of the profile's endpoints at random in proportion to the weights, among those not `tried` by this request
   * and not known to be cooling down; when every untried one is cooling, among the untried; null when all were tried.
   */
  function pickEndpoint(profile: ModelProfile, tried: ReadonlySet<string> = new Set()): EndpointConfig | null {
    const untried = profile.endpoints.filter(e => !tried.has(e.name));
    if (!untried.length) return null;
    const now = Date.now();
    const ready = untried.filter(e => (coolingUntil.get(e.name) ?? 0) <= now);
    const from = ready.length ? ready : untried;
    const total = from.reduce((sum, e) => sum + e.weight, 0);
    let r = Math.random() * total;
    for (const e of from) {
      r -= e.weight;
      if (r <= 0) return deps.config.endpoints[e.name]!;
    }
    return deps.config.endpoints[from[0]!.name]!;
  }

  function priceOf(model: string, usage: Usage): { costUsd: number; priced: boolean } {
    const price = deps.config.prices[model];
    if (!price) return { costUsd: 0, priced: false };
    return {
      costUsd: (usage.promptTokens * price.inputPerMTok + usage.completionTokens * price.outputPerMTok) / 1_000_000,
      priced: true,
    };
  }

  // Per run: the reads of its budgets and of its ledger's totals that are on their way. A call that checks the run's
  // budget meanwhile takes that read's answer instead of sending its own (sharedRead): under a burst of a thousand
  // episodes a turn's calls arrive together, and each read of the totals is a whole ledger hash (a field per counter,
  // stage and model) parsed into objects. The answer is at most one round trip older than the call's own would be;
  // the check was never exact for calls in flight together (none of them is in the ledger before its answer).
  const budgetReads = new Map<string, Promise<RunBudgets | null>>();
  const gateReads = new Map<string, Promise<RunGate>>();
  /** Endpoints whose answers without usage this process has warned about. */
  const unmeteredSaid = new Set<string>();
  const totalsReads = new Map<string, Promise<LedgerTotals>>();

  /** The run's gate (null: none to ask); throws for a cancelled or paused run. */
  async function openGate(runId: string): Promise<RunGate | null> {
    const gate = deps.gate ? await sharedRead(gateReads, runId, deps.gate) : null;
    if (gate?.cancelled) throw new RunCancelledError(runId, gate.cancelled.reason);
    if (gate?.paused) throw new RunPausedError(runId, gate.paused.reason);
    return gate;
  }

  async function checkBudget(ctx: CallContext) {
    const gate = await openGate(ctx.runId);
    const runBudgets = ctx.budgets ?? (gate ? gate.budgets : deps.budgets ? await sharedRead(budgetReads, ctx.runId, deps.budgets) : null);
    const budgets: RunBudgets = { byStage: {}, ...(runBudgets ?? deps.config.budgets) };
    const stageBudget = budgets.byStage[ctx.stage];
    if (budgets.usd <= 0 && budgets.tokens <= 0 && !stageBudget) return;
    const totals = await sharedRead(totalsReads, ctx.runId, runId => deps.ledger.totals(runId));
    const over = (stage: string | null, spent: Budget, limit: Budget) => {
      const [r] = budgetReached(spent, limit);
      if (!r) return;
      const scope = stage === null ? '(all stages)' : `stage ${stage}`;
      if (r.unit === 'tokens') throw new BudgetExceededError(`run "${ctx.runId}" ${scope} used ${r.used} tokens, its budget is ${r.limit}`, { runId: ctx.runId, scope, stage, tokens: r.used, budget: r.limit });
      throw new BudgetExceededError(`run "${ctx.runId}" ${scope} spent $${r.used.toFixed(4)}, its budget is $${r.limit}`, { runId: ctx.runId, scope, stage, costUsd: r.used, budget: r.limit });
    };
    over(null, usedOf(totals), budgets);
    if (stageBudget) over(ctx.stage, usedOf(totals.byStage[ctx.stage]), stageBudget);
  }

  // What each tool and message object a request carried stands as in its cache key: the SHA-256 of the object's
  // canonical JSON, kept per object. An episode sends its environment's tools (from the stored record, never changed
  // once loaded) and its whole conversation so far with every turn; sorting their keys again for every request's key
  // was a fifth of a worker main thread's allocations (a sampling heap profile at C = 1,000, docs/benchmarks.md), and
  // hashing their text again, piece by piece, grew with each turn. Only the digest is kept per object, not its text.
  // A remembered object is frozen, deeply: a caller that changed it in place afterwards would otherwise get the
  // cached answer to the request as it was (a TypeError at the change instead).
  const canonicalDigests = new WeakMap<object, string>();

  /** The text `write` gives for `item`, written once per object, which is frozen deeply then (so the text stays true). */
  function rememberedText(texts: WeakMap<object, string>, item: object, write: (value: object) => string): string {
    let text = texts.get(item);
    if (text === undefined) {
      text = write(item);
      texts.set(deepFreeze(item), text);
    }
    return text;
  }

  /** The digest of a tool or message: kept for an object (frozen then), made for anything else. */
  function itemDigest(item: unknown): string {
    // Not an object (a request the endpoint will refuse): its JSON, or `undefined` for a hole.
    if (!item || typeof item !== 'object') return hash('sha256', String(canonicalJson(item)), 'hex');
    return rememberedText(canonicalDigests, item, value => hash('sha256', canonicalJson(value), 'hex'));
  }

  /**
   * The response cache's key of a request: SHA-256 of one line of canonical JSON (the layout's version, run, stage,
   * salt and the request, its tools and messages as their counts), then the digest of each tool, then of each message.
   * The line holds no line break (JSON writes them escaped) and the digests have one length, so no two requests share
   * a text.
   */
  function cacheKey(ctx: CallContext, keyMaterial: unknown): string {
    const req = { ...(keyMaterial as Record<string, unknown>) };
    const digests: string[] = [];
    for (const name of ['tools', 'messages'] as const) {
      const list = req[name];
      if (!Array.isArray(list)) continue;
      req[name] = list.length;
      for (const item of list as unknown[]) digests.push(itemDigest(item));
    }
    const head = canonicalJson({ v: CACHE_KEY_VERSION, run: ctx.runId, stage: ctx.stage, salt: ctx.cacheSalt ?? null, req });
    return hash('sha256', `${head}\n${digests.join('')}`, 'hex');
  }

  // The JSON text of each tool and message object as a request body writes it (JSON.stringify's own key order), for
  // the same reason: the body of an episode's n-th request is its first n − 1 requests' messages again, and the tools.
  const bodyTexts = new WeakMap<object, string>();

  /** A chat request's body as UTF-8 bytes: the text JSON.stringify(params) gives, with remembered tools and messages copied in (frozen as above). */
  function chatBody(params: ChatCompletionCreateParamsNonStreaming): Buffer {
    const remembered = (list: readonly unknown[] | undefined) =>
      list?.map(item => {
        if (!item || typeof item !== 'object' || Array.isArray(item)) return item;
        return new RawJson(rememberedText(bodyTexts, item, value => JSON.stringify(value)));
      });
    const body = stringifyJsonBytes({ ...params, messages: remembered(params.messages), ...(params.tools ? { tools: remembered(params.tools) } : {}) });
    if (body === undefined) throw new TypeError('the chat request has no JSON text');
    return body;
  }

  /** Sends one request through limits, cache, ledger and error translation. */
  async function send<T>(
    ctx: CallContext,
    profile: ModelProfile,
    keyMaterial: unknown,
    usageOf: (body: T) => Usage,
    perform: (c: OpenAI, endpoint: EndpointConfig, options: OpenAI.RequestOptions) => Promise<T>,
    usable: (body: T) => boolean = () => true,
  ): Promise<{ body: T; cached: boolean }> {
    const useCache = deps.config.gateway.cacheEnabled && (profile.cache === 'salted' ? ctx.cacheSalt !== undefined : profile.cache);
    const cacheSlot = useCache ? { runId: ctx.runId, stage: ctx.stage, key: cacheKey(ctx, keyMaterial) } : null;
    // The budget's reads and the cache's go out together (one round trip); a cached answer is served even over budget.
    const budget = checkBudget(ctx);
    budget.catch(() => undefined); // awaited below unless the cache answers
    // An endpoint without fleet-wide limits takes no slot: asking the limiter only reads whether it is cooling down. So
    // when the cache is looked up, that read goes out with the cache's, and a call the cache cannot answer does not wait
    // for another round trip before it is sent (under a burst of a thousand episodes, each one waits its turn on the
    // event loop). A limited endpoint's slot is taken only once the cache has missed, as before: a replay answered from
    // the cache takes none.
    const acquire = (e: EndpointConfig) => deps.limiter.acquire(e, { signal: ctx.signal, maxWaitMs: deps.limitWaitMs ?? 10_000 });
    const tried = new Set<string>();
    const first = cacheSlot ? pickEndpoint(profile, tried) : null;
    let early = first && unlimitedEndpoint(first) ? acquire(first) : null;
    early?.catch(() => undefined); // awaited below unless the cache answers
    /** Lets go of the early ask when the call does not use it (the limiter's contract: a lease is given back). */
    const dropEarly = () => {
      const asked = early;
      early = null;
      asked?.then(lease => lease.release()).catch(() => undefined);
    };
    try {
      if (cacheSlot) {
        const hit = await deps.cache.get(cacheSlot);
        // An answer the caller cannot use is never stored; one stored before that rule (or by an older worker) is passed over.
        if (hit && usable(hit.body as T)) {
          dropEarly();
          const body = hit.body as T;
          const usage = usageOf(body);
          await recordOnce({ id: randomUUID(), runId: ctx.runId, stage: ctx.stage, model: profile.model, usage, cached: true, ...priceOf(profile.model, usage) });
          return { body, cached: true };
        }
      }
      await budget;
    } catch (err) {
      dropEarly();
      throw err;
    }
    // The endpoint picked before the lookup (one pick per call, so a profile's replicas keep their shares), unless this
    // process has learnt meanwhile (a 429 to another call, an outage) that it is cooling down: then the call picks as it
    // would have without the early pick.
    let endpoint: EndpointConfig;
    if (first && (coolingUntil.get(first.name) ?? 0) <= Date.now()) endpoint = first;
    else {
      dropEarly();
      endpoint = pickEndpoint(profile, tried)!;
    }
    // A profile with several endpoints (replicas): one that is cooling down (429), down, or at its fleet-wide limit
    // hands the request to another, untried one; only when every endpoint of the profile says so does the job wait
    // (the error of the last one tried). A failure that is the request's own is not sent elsewhere.
    let lease: Lease;
    let started: number;
    let limiterWaitMs: number;
    let body: T;
    /** Sends again of this call after failures that were its own (ENVFLEET_MODEL_RETRIES). */
    let resent = 0;
    for (;;) {
      tried.add(endpoint.name);
      const waitStarted = Date.now();
      const other = () => (ctx.signal?.aborted ? null : pickEndpoint(profile, tried));
      const asked = early;
      early = null;
      try {
        lease = await (asked ?? acquire(endpoint));
      } catch (err) {
        ctx.logger?.debug({ stage: ctx.stage, cacheSalt: ctx.cacheSalt ?? null, endpoint: endpoint.name, limiterWaitMs: Date.now() - waitStarted, err }, 'model call found no fleet-wide slot');
        if (!(err instanceof RateLimitedError)) throw err;
        const next = other();
        if (!next) throw err;
        markCooling(endpoint, Math.min(err.retryAfterMs, deps.config.gateway.rateLimitFallbackMs));
        endpoint = next;
        continue;
      }
      started = Date.now();
      // In the debug line of every call: time spent waiting for a fleet-wide slot of the endpoint.
      limiterWaitMs = started - waitStarted;
      if (limiterWaitMs >= RECHECK_AFTER_WAIT_MS) {
        // The run was read before the wait for a slot (up to seconds, as others' calls were answered and spent): read
        // again, so a budget reached, or a pause or cancel, meanwhile stops this call too. Every call that waited was sent
        // before, and a budget was overshot by the whole queue of them (a stranger's probe: 20,200 tokens left, 45,600 spent).
        try {
          await checkBudget(ctx);
        } catch (err) {
          await giveBack(lease, endpoint, ctx);
          throw err;
        }
      }
      try {
        body = await perform(client(endpoint), endpoint, {
          headers: { [STAGE_HEADER]: ctx.stage },
          signal: ctx.signal ?? null,
          timeout: endpoint.timeoutMs,
          maxRetries: 0,
        });
        break;
      } catch (err) {
        let failure: Error;
        try {
          deps.observe?.(ctx.stage, (Date.now() - started) / 1000, false);
          failure = await translate(err, endpoint, profile, ctx, started);
          // The endpoint answered, but nothing of it can be read (a body that is not JSON, one cut mid-way), or gave no
          // answer in time (it goes on generating, and billing, after this side stops waiting): the request was made,
          // and maybe paid for, so the ledger counts it, as one without token usage (status shows those). Every retry
          // of it is counted too, which is what a budget needs to see.
          const code = (failure as AppError).code;
          if (code === 'MODEL_RESPONSE_MALFORMED' || code === 'MODEL_TIMEOUT') {
            const none = { promptTokens: 0, completionTokens: 0 };
            await recordOnce({ id: randomUUID(), runId: ctx.runId, stage: ctx.stage, model: profile.model, usage: none, cached: false, ...priceOf(profile.model, none) }).catch((recordErr: unknown) =>
              (ctx.logger ?? deps.logger).warn({ err: recordErr, stage: ctx.stage }, 'could not record an unreadable or late answer in the ledger'),
            );
          }
        } finally {
          await giveBack(lease, endpoint, ctx);
        }
        // A 5xx or a reset connection of this request's own (the endpoint answers others) is sent again here a few
        // times: as a job's failure it costs an attempt, and a job of many calls fails for good at a few percent of them.
        // Not a gateway's "upstream gone" (502, 503, 504, 52x): a run of those is judged an outage by the streak, and the
        // call's own resends would make one of a single request's answers.
        const code = (failure as Partial<AppError>).code;
        const status = (failure as { cause?: { status?: unknown } }).cause?.status;
        const own = code === 'MODEL_CONNECTION' || (code === 'MODEL_SERVER_ERROR' && !(typeof status === 'number' && GATEWAY_DOWN_STATUSES.has(status)));
        if (own && resent < deps.config.gateway.modelRetries && !ctx.signal?.aborted) {
          resent += 1;
          const waitMs = Math.round(MODEL_RESEND_MS * 2 ** (resent - 1) * (0.75 + Math.random() / 2));
          (ctx.logger ?? deps.logger).warn({ stage: ctx.stage, endpoint: endpoint.name, code, reason: failure.message, resent, waitMs }, 'model call failed on its own; sent again (ENVFLEET_MODEL_RETRIES)');
          // (an abort meanwhile ends the call as any abort does)
          await sleep(waitMs, ctx.signal);
          // The run may have been paused, cancelled or reached its budget meanwhile: read again before sending.
          await checkBudget(ctx);
          continue;
        }
        const next = failure instanceof RateLimitedError ? other() : null;
        if (!next) throw failure;
        (ctx.logger ?? deps.logger).warn({ stage: ctx.stage, endpoint: endpoint.name, next: next.name, code: (failure as AppError).code, reason: failure.message }, 'model endpoint cooling down or down; the request goes to another endpoint of its profile');
        endpoint = next;
      }
    }
    answered(endpoint);
    // The slot goes back at once (its release travels with the ledger's entry), and whatever happens below.
    const released = giveBack(lease, endpoint, ctx);
    let usage: Usage;
    try {
      deps.observe?.(ctx.stage, (Date.now() - started) / 1000, true);
      usage = usageOf(body);
      await recordOnce({ id: randomUUID(), runId: ctx.runId, stage: ctx.stage, model: profile.model, usage, cached: false, ...priceOf(profile.model, usage) });
      if (usage.promptTokens === 0 && usage.completionTokens === 0 && !unmeteredSaid.has(endpoint.name)) {
        // Said once per endpoint and process; the ledger counts every such request (status shows them).
        unmeteredSaid.add(endpoint.name);
        deps.logger.warn(
          { endpoint: endpoint.name, model: profile.model, stage: ctx.stage },
          'the endpoint answered without token usage: its requests count no tokens, so token budgets and costs do not see them (envfleet status counts such requests); turn usage reporting on in the server or proxy if it can',
        );
      }
      // Only once the call is in the ledger (a cached answer is replayed as free), and only an answer the caller can use
      // (one without a choice would be served again to every retry until it expired). The answer is paid for: a
      // cache that cannot take it (Redis gone) costs a replay its saving, not the caller its answer. So the caller does
      // not wait for the write: it is sent now, ahead of anything the caller sends next on the connection (a request
      // made again reads it), and a round trip is taken off every model call's way (under a burst of a thousand
      // episodes, a round trip waited ≈ 40 ms for the event loop: docs/benchmarks.md).
      if (cacheSlot && usable(body)) {
        void deps.cache.set(cacheSlot, { body, storedAt: new Date().toISOString() }, deps.config.gateway.cacheTtlSeconds).catch((err: unknown) => {
          (ctx.logger ?? deps.logger).warn({ err, stage: ctx.stage }, 'could not cache a model answer; a replay of this call will ask the model again');
        });
      }
    } finally {
      await released;
    }
    ctx.logger?.debug({ stage: ctx.stage, cacheSalt: ctx.cacheSalt ?? null, model: profile.model, endpoint: endpoint.name, limiterWaitMs, ms: Date.now() - started, usage }, 'model call');
    return { body, cached: false };
  }

  /**
   * Records a ledger entry (with its id: counted once however often it is sent), trying again when a write
   * fails, as one that a dropped connection cut off does (Redis may have run it: the id keeps it from counting
   * twice). The call is paid for by then, so its record should not be lost to a moment without Redis.
   */
  async function recordOnce(entry: LedgerEntry): Promise<void> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        await deps.ledger.record(entry);
        return;
      } catch (err) {
        if (attempt >= LEDGER_ATTEMPTS) throw err;
        deps.logger.warn({ err, stage: entry.stage, attempt }, 'could not record a model call in the ledger; trying again');
        await new Promise(resolve => setTimeout(resolve, 100 * attempt));
      }
    }
  }

  /**
   * Gives a slot back. A release that fails (Redis gone while it answered) is logged, never thrown: the
   * call's outcome stands, and the slot is free again when its lease expires (the request timeout + 30 s).
   * It must not reject while the caller is still awaiting other work: an unhandled rejection ends the process.
   */
  function giveBack(lease: Lease, endpoint: EndpointConfig, ctx: CallContext): Promise<void> {
    return lease.release().catch((err: unknown) => {
      (ctx.logger ?? deps.logger).warn({ err, endpoint: endpoint.name, stage: ctx.stage }, 'could not give a model slot back; it is free again when its lease expires');
    });
  }

  /**
   * `sentAt`: when the request went out. A failure that may be an outage (OUTAGE_STATUSES, no answer, a reset) is one
   * when the endpoint has given this process no serving answer since then: the endpoint is cooled down and the job waits
   * as for a 429 (MODEL_UNAVAILABLE); otherwise it is this request's own (null: the caller's code, attempts used).
   */
  async function translate(err: unknown, endpoint: EndpointConfig, profile: ModelProfile, ctx: CallContext, sentAt: number): Promise<Error> {
    const where = `endpoint "${endpoint.name}" (${redactUrl(endpoint.baseURL)}), model "${profile.model}", stage ${ctx.stage}`;
    const details = { endpoint: endpoint.name, model: profile.model, stage: ctx.stage };
    const outage = async (what: string, retryAfter: number | null, status = 0): Promise<Error | null> => {
      const last = lastAnswerAt.get(endpoint.name);
      if (last !== undefined && last >= sentAt) return null;
      const streak = GATEWAY_DOWN_STATUSES.has(status) ? (gatewayDown.get(endpoint.name) ?? 0) + 1 : 0;
      if (streak) gatewayDown.set(endpoint.name, streak);
      const probe = await endpointServes(endpoint);
      // GET /models answered: this request's own failure, unless the gateway has answered nothing but "upstream gone"
      // several times in a row (a stranger's probe: a 45 s outage behind LiteLLM ended every episode for good).
      if (probe.serves && streak < GATEWAY_DOWN_STREAK) return null;
      const said = probe.serves ? `${probe.said}, but ${streak} requests in a row were answered ${status} or the like and none otherwise: a gateway that lists its models itself while the server behind it is down` : probe.said;
      const ms = Math.min(retryAfter ?? deps.config.gateway.rateLimitFallbackMs, MAX_COOL_DOWN_MS);
      await coolDown(endpoint, ms, 'MODEL_UNAVAILABLE');
      const since = last === undefined ? 'no answer from it yet in this worker process' : `no other answer from it since ${new Date(last).toISOString()}`;
      // Where the wait comes from, as a 429's message says it: a run paused for it names the endpoint's ask or the setting.
      const from = retryAfter === null ? 'ENVFLEET_RATE_LIMIT_FALLBACK_MS' : ms < retryAfter ? `its Retry-After asked for ${retryAfter} ms; at most a day is kept` : 'its Retry-After';
      return new EndpointUnreachableError(`${where}: ${what}, and ${since} (GET /models: ${said}): the endpoint looks down; the fleet waits ${ms} ms (${from}) and tries again`, ms, { cause: err, details }, 'MODEL_UNAVAILABLE');
    };
    if (err instanceof APIUserAbortError || (ctx.signal?.aborted ?? false)) return new JobAbortedError(`model call aborted (${where})`);
    if (err instanceof APIConnectionTimeoutError) {
      return (
        (await outage(`no answer within ${endpoint.timeoutMs} ms`, null)) ??
        new ModelError('MODEL_TIMEOUT', `no answer within ${endpoint.timeoutMs} ms (${endpoint.timeoutFrom ?? 'ENVFLEET_MODEL_TIMEOUT_MS'}) from ${where}: raise it for a model that takes longer (long outputs, reasoning), or lower the stage's max tokens`, { cause: err, details })
      );
    }
    if (err instanceof APIConnectionError) {
      // The client says only "Connection error."; what happened is in its causes (refused, no such host, reset, cut mid-answer).
      const causes: Error[] = [];
      for (let c: unknown = err.cause; c instanceof Error && causes.length < 5; c = c.cause) causes.push(c);
      const cut = causes.find(c => c instanceof AnswerCutError);
      if (cut) return new ModelError('MODEL_RESPONSE_MALFORMED', `incomplete answer from ${where}: ${masked(cut.message)}`, { cause: err, details });
      const root = causes.at(-1);
      const errno = (root as NodeJS.ErrnoException | undefined)?.code;
      const why = masked(root ? `${errno && !root.message.includes(String(errno)) ? `${errno} ` : ''}${root.message}` : err.message);
      if (errno !== undefined && UNREACHABLE.has(errno)) {
        // Nothing was sent: the endpoint is down or restarting. The fleet waits for it as for a 429 (no attempt used)
        // instead of using up every job's attempts within a minute and ending its items for good.
        const ms = deps.config.gateway.rateLimitFallbackMs;
        await coolDown(endpoint, ms, 'MODEL_UNREACHABLE');
        return new EndpointUnreachableError(`cannot reach ${where}: ${why}; the fleet waits ${ms} ms and tries again`, ms, { cause: err, details });
      }
      return (
        (errno !== undefined && RESETS.has(errno) ? await outage(`connection lost: ${why}`, null) : null) ??
        new ModelError('MODEL_CONNECTION', `cannot reach ${where}: ${why}`, { cause: err, details })
      );
    }
    if (err instanceof APIError) {
      const status: number = (err.status as number | undefined) ?? 0;
      const code = modelCodeOfStatus(status);
      if (OUTAGE_STATUSES.has(status)) {
        const down = await outage(errorBodyText(masked(err.message)), retryAfterMs(err.headers as Headers | undefined), status);
        if (down) return down;
      } else if (status !== 0) answered(endpoint);
      if (code === 'MODEL_RATE_LIMITED') {
        const hinted = retryAfterMs(err.headers as Headers | undefined);
        const asked = hinted ?? deps.config.gateway.rateLimitFallbackMs;
        // A Retry-After of weeks (a date in the wrong year, seconds sent as milliseconds) would cool the endpoint for
        // every run that long, with no way back short of deleting the key: a day at most, and the endpoint is asked again.
        const ms = Math.min(asked, MAX_COOL_DOWN_MS);
        await coolDown(endpoint, ms);
        // What the endpoint said goes with it ("You exceeded your current quota": waiting does not fix that one), to the
        // logs and to the reason of a run paused for being rate limited too long.
        const said = errorBodyText(masked(err.message)).replace(/^429\s*/, '').replace(/^status code \(no body\)$/, '');
        return new RateLimitedError(
          `429 from ${where}${said ? `: ${cutText(said, 300)}` : ''}; the fleet waits ${ms} ms${ms < asked ? ` (its Retry-After asked for ${asked} ms; at most a day is kept)` : hinted === null ? ' (ENVFLEET_RATE_LIMIT_FALLBACK_MS: it gave no Retry-After, or one of no wait)' : ''}`,
          ms,
          { cause: err, details },
        );
      }
      const body = errorBodyText(masked(err.message));
      const hint =
        code === 'MODEL_AUTH'
          ? ` The API key was refused: ${apiKeyFix(endpoint)}`
          : code === 'MODEL_NOT_FOUND'
            ? ' Check the base URL and the model name.'
            : code === 'MODEL_BAD_REQUEST' && CONTEXT_TOO_LONG.test(body)
              ? ` The conversation and the answer asked for do not fit the model's context: lower the maxTokens of the ${ctx.stage} profile (ENVFLEET_MODELS_FILE), ${ctx.stage.startsWith('rollout.') ? "cut an episode's length (envfleet rollouts --max-steps, --max-tokens), " : ''}or serve the model with a longer context (vLLM: --max-model-len).`
              : '';
      // The hint is a sentence of its own after the body's (which may or may not end with a period).
      return new ModelError(code, `${status} from ${where}: ${hint && !/[.!?。]$/.test(body) ? `${body}.` : body}${hint}`, { cause: err, details });
    }
    if (err instanceof AppError) return err;
    // A body that is not JSON, a cut connection mid-body, and the like: another attempt may work.
    return new ModelError('MODEL_RESPONSE_MALFORMED', `unreadable response from ${where}: ${masked((err as Error).message)}`, { cause: err, details });
  }

  // An endpoint may answer 2xx with a body that is no completion (null, a string, an error object): no usage, no choice.
  const chatUsage = (body: ChatCompletion | null): Usage => ({
    promptTokens: tokenCount(body?.usage?.prompt_tokens),
    completionTokens: tokenCount(body?.usage?.completion_tokens),
  });
  const hasChoice = (body: ChatCompletion | null): boolean => Boolean((body as { choices?: { message?: unknown }[] } | null)?.choices?.[0]?.message);

  async function chat(ctx: CallContext, request: ChatRequest): Promise<ChatResult> {
    const base = profileOf(ctx.stage);
    const profile = request.model ? { ...base, model: request.model } : base;
    const params = shapeChatRequest(profile, {
      model: profile.model,
      messages: request.messages,
      temperature: request.temperature ?? profile.temperature,
      maxTokens: request.maxTokens ?? profile.maxTokens,
      tools: request.tools,
      toolChoice: request.toolChoice ?? defaultToolChoice(profile.request, Boolean(request.tools?.length)),
      responseFormat: request.responseFormat,
      seed: request.seed,
    });
    const { body, cached } = await send<ChatCompletion>(ctx, profile, params, chatUsage, (c, endpoint, options) =>
      // A client given by the caller (tests, embedders) is used as it is; the gateway's own posts without one.
      deps.clientFor
        ? c.chat.completions.create(params, options)
        : chatBase(c, endpoint).then(base =>
            postChatCompletion(sender, base, chatBody(params), { headers: options.headers as Record<string, string>, signal: options.signal ?? null, timeoutMs: endpoint.timeoutMs }),
          ),
      hasChoice,
    );
    const choice = (body as ChatCompletion | null)?.choices?.[0];
    if (!choice?.message) {
      // Some gateways answer 200 with an error object (an overloaded upstream, a context too long): say what it said.
      const said = errorSaid(body);
      throw new ModelError('MODEL_RESPONSE_MALFORMED', masked(`response without a choice from model "${profile.model}" (stage ${ctx.stage})${said === null ? '' : `; the endpoint answered with an error: ${said}`}`));
    }
    // Content as text: some servers answer with an array of parts (Mistral's reasoning chunks).
    const raw = choice.message as ChatCompletionMessage & { content: unknown; reasoning?: unknown; reasoning_content?: unknown };
    // (Magistral's thinking parts are its reasoning, as a reasoning parser's field would be.)
    const partsThinking = Array.isArray(raw.content) && typeof raw.reasoning_content !== 'string' ? contentThinking(raw.content) : null;
    const texted = Array.isArray(raw.content) ? { ...choice.message, content: contentText(raw.content), ...(partsThinking !== null ? { reasoning_content: partsThinking } : {}) } : choice.message;
    // vLLM's reasoning parsers write `reasoning` (newer releases) or `reasoning_content` (older ones, DeepSeek, SGLang): one field here.
    const withText = typeof raw.reasoning === 'string' && typeof raw.reasoning_content !== 'string' && partsThinking === null ? { ...texted, reasoning_content: raw.reasoning } : texted;
    // A lone surrogate in what the model said (its output cut inside a character) goes no further: U+FFFD, in its
    // text and in the JSON text of its calls' arguments (an escape there is read as one when the call is made).
    // (A call without a function, or with arguments that are no text, is left as it came: what reads it says so.)
    const said = wellFormed(withToolCallsAsOpenAI(withText));
    const calls = said.tool_calls?.map((c): typeof c => {
      const args = c.type === 'function' ? (c.function as { arguments?: unknown } | null)?.arguments : undefined;
      const clean = typeof args === 'string' ? withoutLoneSurrogates(args) : args;
      return clean === args || c.type !== 'function' ? c : { ...c, function: { ...c.function, arguments: clean as string } };
    });
    const message = calls?.some((c, i) => c !== said.tool_calls![i]) ? { ...said, tool_calls: calls } : said;
    return { message, finishReason: choice.finish_reason ?? 'stop', usage: chatUsage(body), model: body.model ?? profile.model, cached, toolCallFormat: profile.request.toolCallFormat, tokens: tokenRecordOf(body), sampling: samplingOf(params) };
  }

  /** emptyReplyError as a failed parse. */
  const emptyOf = (message: ChatCompletionMessage): { ok: false; error: string } | null => {
    const error = emptyReplyError(message);
    return error === null ? null : { ok: false, error };
  };

  async function structured<T>(ctx: CallContext, request: StructuredRequest<T>): Promise<StructuredResult<T>> {
    const messages: ChatMessage[] = [...request.messages];
    const maxCalls = 1 + deps.config.gateway.repairAttempts;
    let promptTokens = 0;
    let completionTokens = 0;
    const errors: string[] = [];
    let cutCalls = 0;
    // Where the endpoint enforces a JSON Schema, the model cannot answer off-schema; elsewhere the prompt and the repair loop hold it to the schema.
    const responseFormat = request.responseFormat ?? (profileOf(ctx.stage).request.structuredOutput === 'json_schema' ? (jsonSchemaResponseFormat(ctx.stage, request.schema) ?? undefined) : undefined);
    for (let call = 1; call <= maxCalls; call += 1) {
      const result = await chat(ctx, { ...request, messages, responseFormat });
      promptTokens += result.usage.promptTokens;
      completionTokens += result.usage.completionTokens;
      const content = result.message.content ?? '';
      if (result.finishReason === 'length') cutCalls += 1;
      let parsed = result.finishReason === 'length'
        ? { ok: false as const, error: `the reply was cut off at the token limit (${request.maxTokens ?? profileOf(ctx.stage).maxTokens} tokens); answer more briefly` }
        : result.finishReason === 'content_filter'
          ? { ok: false as const, error: `the endpoint's content filter withheld or cut the reply (finish_reason "content_filter"); answer again` }
          : emptyOf(result.message) ?? parseStructured(content, request.schema);
      if (parsed.ok && request.check) {
        const problem = await request.check(parsed.value, parsed.text);
        if (problem !== null) parsed = { ok: false as const, error: problem };
      }
      if (parsed.ok) return { value: parsed.value, text: parsed.text, calls: call, usage: { promptTokens, completionTokens } };
      errors.push(parsed.error);
      ctx.logger?.warn({ stage: ctx.stage, call, problem: truncateForLog(parsed.error, 300) }, 'model output rejected');
      messages.push(
        { role: 'assistant', content },
        {
          role: 'user',
          content:
            `Your previous reply could not be used: ${parsed.error}\n` +
            'Reply again with only the corrected JSON, in exactly the format described above, and nothing else.',
        },
      );
    }
    const last = truncateForLog(errors.at(-1) ?? '', 400);
    throw new ModelOutputError(
      `model output for stage ${ctx.stage} was still invalid after ${maxCalls} calls (${deps.config.gateway.repairAttempts} repair rounds): ${last}` +
        // What the operator can change (the message above is what the model was told); one full stop between them.
        (cutCalls
          ? `${last.endsWith('.') ? '' : '.'} ${cutCalls} of the ${maxCalls} replies were cut off at the token limit: raise the maxTokens of the ${ctx.stage} profile in ENVFLEET_MODELS_FILE (now ${request.maxTokens ?? profileOf(ctx.stage).maxTokens}), or use a model that answers more briefly`
          : ''),
      { stage: ctx.stage, calls: maxCalls, errors: errors.map(e => truncateForLog(e, 400)) },
    );
  }

  async function embed(ctx: CallContext, inputs: readonly string[]) {
    const profile = profileOf(ctx.stage);
    const params = { model: profile.model, input: [...inputs], encoding_format: 'float' as const };
    // An endpoint may answer 2xx with a body that is no list of embeddings (an error object, a page labelled as text,
    // too few vectors): such an answer is never cached, or every retry of the job would be served it again.
    const usageOf = (body: OpenAI.CreateEmbeddingResponse | null): Usage => ({ promptTokens: isRecord(body) ? tokenCount(body.usage?.prompt_tokens) : 0, completionTokens: 0 });
    const { body, cached } = await send(ctx, profile, params, usageOf, (c, _e, options) => c.embeddings.create(params, options), b => embeddingsProblem(b, inputs.length) === null);
    const problem = embeddingsProblem(body, inputs.length);
    if (problem !== null) {
      throw new ModelError('MODEL_RESPONSE_MALFORMED', masked(`unusable embeddings answer from model "${profile.model}" (stage ${ctx.stage}): ${problem}`), { details: { stage: ctx.stage, model: profile.model } });
    }
    const vectors = [...body.data].sort((a, b) => a.index - b.index).map(d => d.embedding);
    return { vectors, usage: usageOf(body), cached };
  }

  async function checkRun(runId: string): Promise<void> {
    await openGate(runId);
  }

  return { chat, structured, embed, checkRun };
}

/**
 * Why a reply holds no answer, where it says more than "empty": the model's refusal (OpenAI's `refusal`), or only
 * reasoning (in `reasoning_content`, or a <think> block with nothing after it: a reasoning model that spent its turn
 * thinking). Null where the reply has an answer to parse, or nothing at all (the parser says so).
 */
export function emptyReplyError(message: ChatCompletionMessage & { reasoning_content?: string | null }): string | null {
  const content = typeof message.content === 'string' ? message.content : '';
  const split = splitThinking(content);
  if (split.answer !== '') return null;
  const refusal = typeof message.refusal === 'string' ? message.refusal.trim() : '';
  if (refusal) return `the model refused to answer ("${truncateForLog(refusal, 300)}"); a JSON value was expected`;
  const reasoning = (typeof message.reasoning_content === 'string' ? message.reasoning_content : '') + (split.reasoning ?? '');
  if (reasoning.trim()) return `the reply held only reasoning (${reasoning.length} characters) and no answer after it; write the JSON value itself after reasoning`;
  return null;
}

/**
 * A token count an endpoint reported, as the ledger counts it: a whole number ≥ 0 (a numeric string such as "12"
 * counts as its number, a fraction is rounded); anything else (missing, "n/a", NaN, a negative or an absurd number)
 * counts as 0, so an odd usage block never fails the call it came with, nor the ledger's batch of other calls.
 */
export function tokenCount(value: unknown): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
  const whole = Math.round(n);
  return Number.isSafeInteger(whole) && whole >= 0 ? whole : 0;
}

const isRecord = (v: unknown): v is Record<string, unknown> & { usage?: { prompt_tokens?: number } } => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * What is wrong with an embeddings answer for `count` inputs, or null when it has one vector of numbers per input
 * (with distinct indexes 0…count-1 where it gives them). An error object's message is quoted; a body that is not JSON (the client hands
 * it back as a string) is said to be one.
 */
export function embeddingsProblem(body: unknown, count: number): string | null {
  if (typeof body === 'string') return `the body is not JSON (${body.length} characters, starting ${JSON.stringify(cutText(body.trim(), 80))})`;
  if (!isRecord(body)) return `the body is ${body === null ? 'null' : Array.isArray(body) ? 'an array' : typeof body}, not an object with "data"`;
  const { data } = body as { data?: unknown };
  if (!Array.isArray(data)) {
    const said = errorSaid(body);
    return said !== null ? `the endpoint answered with an error: ${said}` : `it has no "data" list (its keys: ${Object.keys(body).slice(0, 10).join(', ') || 'none'})`;
  }
  if (data.length !== count) return `asked for ${count} embeddings, got ${data.length}`;
  const seen = new Set<number>();
  for (const d of data as unknown[]) {
    const { embedding, index } = (isRecord(d) ? d : {}) as { embedding?: unknown; index?: unknown };
    if (!Array.isArray(embedding) || !embedding.every(x => typeof x === 'number')) return 'an item of "data" has no "embedding" list of numbers';
    // Without indexes (some servers leave them out) the vectors are in the inputs' order.
    if (index === undefined) continue;
    if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= count || seen.has(index)) return `an item of "data" has index ${JSON.stringify(index)}; each of 0…${count - 1} once was expected`;
    seen.add(index);
  }
  return null;
}

/** The message of an error object in a body (`{"error": {"message"}}`, `{"error": "…"}`, `{"message"}` beside `error`), cut short, or null. */
export function errorSaid(body: unknown): string | null {
  if (!isRecord(body)) return null;
  const { error } = body as { error?: unknown };
  const said = isRecord(error) && typeof error['message'] === 'string' ? error['message'] : typeof error === 'string' ? error : null;
  return said === null ? null : cutText(said, 300);
}

/** Characters of an error answer's text kept in a failure's message. */
const ERROR_TEXT_CHARS = 300;

/**
 * An error answer's message as the person reading the failure needs it: the openai client makes a body that is not
 * JSON its message whole (`503 <html>…`, a proxy's or load balancer's page of kilobytes, stored with every failed
 * item). An HTML page is shown by its title (else its text without tags), any text cut to ERROR_TEXT_CHARS
 * characters, with how long the body was.
 */
export function errorBodyText(message: string): string {
  const html = /<(?:!doctype|html|head|body|title)\b/i.test(message);
  if (!html && message.length <= ERROR_TEXT_CHARS) return message;
  let text = message;
  if (html) {
    const title = /<title[^>]*>([\s\S]*?)<\/title>/i.exec(message)?.[1];
    const status = /^\d{3}\s/.exec(message)?.[0] ?? '';
    const words = (title ?? message.replace(/<(script|style)\b[\s\S]*?<\/\1>/gi, ' ').replace(/<[^>]*>/g, ' ')).replace(/&nbsp;/g, ' ').replace(/&amp;/g, '&').replace(/\s+/g, ' ').trim();
    text = `${status}${words.startsWith(status.trim()) ? words.slice(status.trim().length).trim() : words}`;
  }
  // The client's message is the status, a space and the body.
  const bodyLength = message.length - (/^\d{3} /.exec(message)?.[0].length ?? 0);
  const shown = cutText(text, ERROR_TEXT_CHARS);
  return `${shown}${shown.length < text.length ? '…' : ''}${html ? ` (an HTML page of ${bodyLength} characters)` : shown.length < text.length ? ` (${bodyLength} characters)` : ''}`;
}

/**
 * Tool calls as the OpenAI protocol writes them, from the shapes other servers answer with: a call without `type`
 * (Mistral's API) is a function call, arguments sent as a JSON object (some proxies and Ollama-style servers) are
 * its JSON text, and `tool_calls: null` is no call. Without this a call without `type` was dropped, so the reply
 * read as the agent's final answer, and object arguments failed the episode as an environment error.
 */
export function withToolCallsAsOpenAI(message: ChatCompletionMessage): ChatCompletionMessage {
  const calls = (message as { tool_calls?: unknown }).tool_calls;
  if (calls === null) {
    const { tool_calls: _none, ...rest } = message;
    return rest;
  }
  if (!Array.isArray(calls)) return message;
  type LooseCall = { type?: unknown; function?: { arguments?: unknown } };
  const fn = (c: LooseCall) => (isRecord(c.function) ? c.function : null);
  const usual = (c: unknown) => {
    if (!isRecord(c) || (c as LooseCall).type === undefined) return false;
    const f = fn(c as LooseCall);
    return f === null || typeof f.arguments === 'string';
  };
  if (calls.every(usual)) return message;
  const tool_calls = calls.map((c: unknown) => {
    const f = isRecord(c) ? fn(c as LooseCall) : null;
    if (!f) return c;
    const args = f.arguments;
    const text = typeof args === 'string' ? args : args === undefined || args === null ? '' : JSON.stringify(args);
    return { ...(c as object), type: (c as LooseCall).type ?? 'function', function: { ...f, arguments: text } };
  });
  return { ...message, tool_calls } as ChatCompletionMessage;
}

/** The longest the probe of an endpoint that may be down (GET /models) waits for its answer. */
const PROBE_TIMEOUT_MS = 10_000;

/** The longest an endpoint is cooled down for one 429 (its Retry-After may ask for more). */
export const MAX_COOL_DOWN_MS = 86_400_000;

/**
 * Milliseconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date); null when there is none, or
 * when it asks for no wait at all (0, a date past): taken at its word, a `Retry-After: 0` had the fleet send 674
 * requests in 20 s to an endpoint that kept answering 429 (a stranger's probe). The caller then waits its fallback.
 */
export function retryAfterMs(headers: Headers | undefined): number | null {
  const positive = (n: number) => (n > 0 ? n : null);
  const ms = headers?.get('retry-after-ms');
  // A retry-after-ms of no wait leaves the say to retry-after.
  if (ms && Number(ms) > 0 && Number.isFinite(Number(ms))) return Number(ms);
  const after = headers?.get('retry-after');
  if (!after) return null;
  if (Number.isFinite(Number(after))) return positive(Number(after) * 1000);
  const date = Date.parse(after);
  return Number.isFinite(date) ? positive(date - Date.now()) : null;
}
