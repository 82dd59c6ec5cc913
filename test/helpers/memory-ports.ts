import { coolingDownError, emptyCounters, type EndpointLimiter, type Ledger, type LedgerCounters, type LedgerTotals, type ResponseCache } from '../../src/llm/ports.js';

/** In-process implementations of the gateway's ports: test doubles for the gateway's unit tests (the fleet uses the Redis ones). */
export function createMemoryResponseCache(): ResponseCache & { size(): number } {
  const store = new Map<string, { value: Parameters<ResponseCache['set']>[1]; expires: number }>();
  return {
    get(slot) {
      const hit = store.get(`${slot.runId}/${slot.key}`);
      return Promise.resolve(hit && hit.expires > Date.now() ? hit.value : null);
    },
    set(slot, value, ttlSeconds) {
      store.set(`${slot.runId}/${slot.key}`, { value, expires: Date.now() + ttlSeconds * 1000 });
      return Promise.resolve();
    },
    size: () => store.size,
  };
}

export function createMemoryLedger(): Ledger {
  const runs = new Map<string, LedgerTotals>();
  const add = (target: LedgerCounters, entry: Parameters<Ledger['record']>[0]) => {
    if (entry.cached) {
      target.cachedRequests += 1;
      target.savedPromptTokens += entry.usage.promptTokens;
      target.savedCompletionTokens += entry.usage.completionTokens;
      target.savedCostUsd += entry.costUsd;
    } else {
      target.requests += 1;
      target.promptTokens += entry.usage.promptTokens;
      target.completionTokens += entry.usage.completionTokens;
      target.costUsd += entry.costUsd;
      if (!entry.priced) target.unpricedRequests += 1;
    }
  };
  const seen = new Set<string>();
  return {
    record(entry) {
      if (seen.has(entry.id)) return Promise.resolve();
      seen.add(entry.id);
      let run = runs.get(entry.runId);
      if (!run) {
        run = { runId: entry.runId, ...emptyCounters(), byStage: {}, byModel: {} };
        runs.set(entry.runId, run);
      }
      add(run, entry);
      add((run.byStage[entry.stage] ??= emptyCounters()), entry);
      add((run.byModel[entry.model] ??= emptyCounters()), entry);
      return Promise.resolve();
    },
    totals(runId) {
      return Promise.resolve(
        structuredClone(runs.get(runId) ?? { runId, ...emptyCounters(), byStage: {}, byModel: {} }),
      );
    },
  };
}

/** A limiter with no limits except the 429 cool-down, for one process. */
export function createMemoryLimiter(): EndpointLimiter {
  const cooldownUntil = new Map<string, number>();
  const causes = new Map<string, string>();
  return {
    acquire(endpoint) {
      const until = cooldownUntil.get(endpoint.baseURL) ?? 0;
      const wait = until - Date.now();
      if (wait > 0) return Promise.reject(coolingDownError(endpoint, wait, causes.get(endpoint.baseURL) ?? null));
      return Promise.resolve({ release: () => Promise.resolve() });
    },
    coolDown(endpoint, ms, cause = 'MODEL_RATE_LIMITED') {
      const until = Date.now() + ms;
      if (until > (cooldownUntil.get(endpoint.baseURL) ?? 0)) {
        cooldownUntil.set(endpoint.baseURL, until);
        causes.set(endpoint.baseURL, cause);
      }
      return Promise.resolve();
    },
  };
}
