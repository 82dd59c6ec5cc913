import { isCluster, type Redis } from '../redis/connection.js';
import { redisScript } from '../redis/scripts.js';
import { runKeys } from '../runs/keys.js';
import { emptyCounters, type Ledger, type LedgerCounters, type LedgerEntry, type LedgerTotals } from './ports.js';

const MICRO = 1_000_000;

/** Counters that are stored as integers (dollars are stored in micro-dollars so sums stay exact). */
function increments(entry: LedgerEntry): Record<keyof LedgerCounters, number> {
  const micro = Math.round(entry.costUsd * MICRO);
  const c = emptyCounters();
  c.requests = entry.cached ? 0 : 1;
  c.cachedRequests = entry.cached ? 1 : 0;
  c.unpricedRequests = !entry.cached && !entry.priced ? 1 : 0;
  if (entry.cached) {
    c.savedPromptTokens = entry.usage.promptTokens;
    c.savedCompletionTokens = entry.usage.completionTokens;
    c.savedCostUsd = micro;
  } else {
    c.promptTokens = entry.usage.promptTokens;
    c.completionTokens = entry.usage.completionTokens;
    c.costUsd = micro;
  }
  return c;
}

/**
 * Adds each (field, value) pair of ARGV[2..] to the hash KEYS[1] (all the counters of a model call in one command),
 * only if KEYS[2] (the entry's id) was not set yet; it is set for ARGV[1] seconds. Returns 1 if counted, 0 if the
 * id had been counted before.
 */
const HINCRBY_PAIRS_ONCE = redisScript(
  'hincrby_pairs_once',
  `if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return 0 end
for i = 2, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1`,
  2,
);

/**
 * How long the ledger remembers an entry's id (seconds): longer than a write can be in flight or sent again
 * after a reconnect. At 500 model calls per second that is ≈ 150,000 small keys (≈ 25 MB).
 */
export const LEDGER_ENTRY_TTL_S = 300;

/**
 * Ledger in one Redis hash per run (under the run's keys, src/runs/keys.ts), fields
 * `<scope>|<counter>` with scope `all`, `stage:<name>` or `model:<name>`. Increments are atomic
 * (one script per model call), so every process of the fleet can record into the same run.
 */
export function createRedisLedger(redis: Redis, prefix: string): Ledger {
  const keys = (runId: string) => runKeys(prefix, runId, isCluster(redis));
  return {
    async record(entry) {
      const inc = increments(entry);
      const pairs: string[] = [];
      for (const scope of ['all', `stage:${entry.stage}`, `model:${entry.model}`]) {
        for (const [counter, value] of Object.entries(inc)) {
          if (value !== 0) pairs.push(`${scope}|${counter}`, String(value));
        }
      }
      if (!pairs.length) return;
      const k = keys(entry.runId);
      await HINCRBY_PAIRS_ONCE(redis, [k.ledger, k.ledgerEntry(entry.id)], [String(LEDGER_ENTRY_TTL_S), ...pairs]);
    },
    async totals(runId) {
      const hash = await redis.hgetall(keys(runId).ledger);
      const all = emptyCounters();
      const byStage: Record<string, LedgerCounters> = {};
      const byModel: Record<string, LedgerCounters> = {};
      for (const [field, raw] of Object.entries(hash)) {
        const sep = field.lastIndexOf('|');
        const scope = field.slice(0, sep);
        const counter = field.slice(sep + 1) as keyof LedgerCounters;
        const value = counter === 'costUsd' || counter === 'savedCostUsd' ? Number(raw) / MICRO : Number(raw);
        let target: LedgerCounters;
        if (scope === 'all') target = all;
        else if (scope.startsWith('stage:')) target = byStage[scope.slice(6)] ??= emptyCounters();
        else target = byModel[scope.slice(6)] ??= emptyCounters();
        if (counter in target) target[counter] = value;
      }
      const totals: LedgerTotals = { runId, ...all, byStage, byModel };
      return totals;
    },
  };
}
