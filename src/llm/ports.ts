import type { EndpointConfig, ModelStage } from '../../config/index.js';
import { EndpointUnreachableError, RateLimitedError } from '../errors.js';

/**
 * What the model gateway needs from shared storage. The Redis implementations live beside these
 * (redis-*.ts); the gateway's unit tests use in-memory ones (test/helpers/memory-ports.ts).
 */

/** A stored model response, exactly as the endpoint returned it. */
export interface CachedResponse {
  readonly body: unknown;
  readonly storedAt: string;
}

/** Where a cached response belongs: its run (deleting the run deletes it) and the stage that asked. */
export interface CacheSlot {
  readonly runId: string;
  readonly stage: string;
  /** Hash of the request. */
  readonly key: string;
}

export interface ResponseCache {
  get(slot: CacheSlot): Promise<CachedResponse | null>;
  set(slot: CacheSlot, value: CachedResponse, ttlSeconds: number): Promise<void>;
}

export interface Lease {
  release(): Promise<void>;
}

/**
 * An endpoint without fleet-wide limits (no ENVFLEET_MODEL_MAX_CONCURRENCY, no requests per minute): a limiter gives it a
 * request without taking anything, only saying whether it is cooling down.
 */
export function unlimitedEndpoint(endpoint: Pick<EndpointConfig, 'maxConcurrency' | 'requestsPerMinute'>): boolean {
  return endpoint.maxConcurrency <= 0 && endpoint.requestsPerMinute <= 0;
}

/** Fleet-wide request and concurrency limits per endpoint, and the fleet-wide 429 cool-down. */
/** Why an endpoint cools down: a 429, or found down (cannot be reached; reached and serving nothing). */
export type CoolDownCause = 'MODEL_RATE_LIMITED' | 'MODEL_UNREACHABLE' | 'MODEL_UNAVAILABLE';

/** A refusal of the limiter while an endpoint cools down: the error its cause calls for (the fleet waits either way). */
export function coolingDownError(endpoint: EndpointConfig, waitMs: number, cause: string | null): RateLimitedError {
  const ms = Math.max(waitMs, 50);
  const details = { endpoint: endpoint.name, reason: 'cooling down', cause: cause ?? 'MODEL_RATE_LIMITED' };
  if (cause === 'MODEL_UNREACHABLE') return new EndpointUnreachableError(`endpoint "${endpoint.name}" is cooling down (found down: it cannot be reached); the job waits ${ms} ms in its queue`, ms, { details }, 'MODEL_UNREACHABLE');
  if (cause === 'MODEL_UNAVAILABLE') return new EndpointUnreachableError(`endpoint "${endpoint.name}" is cooling down (found down: it serves nothing); the job waits ${ms} ms in its queue`, ms, { details }, 'MODEL_UNAVAILABLE');
  return new RateLimitedError(`endpoint "${endpoint.name}" is cooling down (after a 429); the job waits ${ms} ms in its queue`, ms, { details });
}

export interface EndpointLimiter {
  /**
   * Takes a slot for one request, waiting up to `maxWaitMs`. Throws RateLimitedError when the
   * endpoint is cooling down after a 429 or the wait would be longer, so the job goes back to
   * its queue without using an attempt.
   */
  acquire(endpoint: EndpointConfig, options: { signal?: AbortSignal | undefined; maxWaitMs: number }): Promise<Lease>;
  /**
   * Every process stops sending to this endpoint for `ms`; `cause`: why (a 429 by default, or the endpoint found down),
   * which the refusals meanwhile carry as their code, so that a run paused by them says what happened.
   */
  coolDown(endpoint: EndpointConfig, ms: number, cause?: CoolDownCause): Promise<void>;
}

export interface Usage {
  readonly promptTokens: number;
  readonly completionTokens: number;
}

export interface LedgerEntry {
  readonly runId: string;
  readonly stage: ModelStage;
  readonly model: string;
  readonly usage: Usage;
  /** US dollars, 0 when the model has no price. */
  readonly costUsd: number;
  readonly priced: boolean;
  /** Served from the response cache: no tokens paid, `usage` is what was saved. */
  readonly cached: boolean;
  /**
   * The call's id (unique per call): a ledger counts an entry once, however often it is sent (a write that Redis
   * ran but whose answer a dropped connection lost is sent again, by the client or the gateway).
   */
  readonly id: string;
}

export interface LedgerCounters {
  requests: number;
  cachedRequests: number;
  promptTokens: number;
  completionTokens: number;
  costUsd: number;
  savedPromptTokens: number;
  savedCompletionTokens: number;
  savedCostUsd: number;
  unpricedRequests: number;
  /**
   * Requests whose answer reported no token usage (no `usage`, or zero tokens: some servers and proxies leave it
   * out): their tokens are in no count, so neither in the cost nor in a token budget.
   */
  unmeteredRequests: number;
}

export interface LedgerTotals extends LedgerCounters {
  readonly runId: string;
  readonly byStage: Record<string, LedgerCounters>;
  readonly byModel: Record<string, LedgerCounters>;
}

export interface Ledger {
  record(entry: LedgerEntry): Promise<void>;
  totals(runId: string): Promise<LedgerTotals>;
}

export function emptyCounters(): LedgerCounters {
  return {
    requests: 0,
    cachedRequests: 0,
    promptTokens: 0,
    completionTokens: 0,
    costUsd: 0,
    savedPromptTokens: 0,
    savedCompletionTokens: 0,
    savedCostUsd: 0,
    unpricedRequests: 0,
    unmeteredRequests: 0,
  };
}
