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
  c.unmeteredRequests = !entry.cached && entry.usage.promptTokens === 0 && entry.usage.completionTokens === 0 ? 1 : 0;
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
 * Counts a batch of model calls of one run: KEYS[1] the ledger hash, KEYS[2] the ids counted lately (a sorted set,
 * scored by when each was counted, in ms of Redis's clock). ARGV[1]: how long an id is remembered (ms); then per
 * entry its id, its number of (field, increment) pairs n, and the 2n values. An entry whose id is in the set is not
 * counted again (a write sent again after a lost reply, or a batch tried again); the others' increments are summed
 * per field and added with one HINCRBY per field of the batch. Ids older than ARGV[1] leave the set, and the set
 * itself expires ARGV[1] after the last batch. A batch is checked before anything is written (a script's writes are not
 * undone by a later error: ids kept without their counts would be lost to a retry): a ledger key that is not a hash,
 * an increment that is not a whole number of at most 15 digits, or a field's sum past 2^53 (where Lua's numbers stop
 * being exact) refuses it whole. `record` keeps such values out of batches, so one call's odd usage fails only itself.
 * Returns how many entries were counted.
 */
const COUNT_ONCE = redisScript(
  'ledger_count_once',
  `local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'none' and kind ~= 'hash' then return redis.error_reply('WRONGTYPE the ledger ' .. KEYS[1] .. ' is a ' .. kind .. ', not a hash') end
local bound, i = {}, 2
while i <= #ARGV do
  local n = tonumber(ARGV[i + 1])
  for j = i + 2, i + 2 * n, 2 do
    local v = ARGV[j + 1]
    if not string.match(v, '^%d+$') or #v > 15 then return redis.error_reply('ERR ledger entry ' .. ARGV[i] .. ': ' .. ARGV[j] .. ' is ' .. v .. ', not a whole number') end
    bound[ARGV[j]] = (bound[ARGV[j]] or 0) + tonumber(v)
    if bound[ARGV[j]] > 9007199254740991 then return redis.error_reply('ERR ledger batch: the sum of ' .. ARGV[j] .. ' is past 2^53') end
  end
  i = i + 2 + 2 * n
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl)
local sums, order, counted = {}, {}, 0
i = 2
while i <= #ARGV do
  local n = tonumber(ARGV[i + 1])
  if redis.call('ZADD', KEYS[2], 'NX', now, ARGV[i]) == 1 then
    counted = counted + 1
    for j = i + 2, i + 2 * n, 2 do
      local f = ARGV[j]
      if sums[f] == nil then order[#order + 1] = f sums[f] = 0 end
      sums[f] = sums[f] + tonumber(ARGV[j + 1])
    end
  end
  i = i + 2 + 2 * n
end
for _, f in ipairs(order) do redis.call('HINCRBY', KEYS[1], f, string.format('%d', sums[f])) end
redis.call('PEXPIRE', KEYS[2], ttl)
return counted`,
  2,
);

/**
 * How long the ledger remembers an entry's id (seconds): longer than a write can be in flight or sent again
 * after a reconnect. At 500 model calls per second that is ≈ 150,000 ids (≈ 15 MB).
 */
export const LEDGER_ENTRY_TTL_S = 300;

/** The largest increment one entry may carry: 15 digits, as the script takes (a batch of 256 stays far below 2^53). */
const MAX_INCREMENT = 999_999_999_999_999;

/** At most this many entries go in one script call (a batch of more is split). */
const BATCH_ENTRIES = 256;

interface Waiting {
  readonly id: string;
  readonly pairs: readonly string[];
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

/**
 * Ledger in one Redis hash per run (under the run's keys, src/runs/keys.ts), fields
 * `<scope>|<counter>` with scope `all`, `stage:<name>` or `model:<name>`. Increments are atomic and
 * counted once per entry id, so every process of the fleet can record into the same run.
 *
 * Records are committed as a group: the first waits one turn of the event loop for others of the same moment,
 * and records made while a batch is on its way go together in the next one; `record` resolves when its entry is
 * in Redis. Under a burst of model answers (a thousand episodes in step) that is one script per run and batch
 * instead of one per call, and one HINCRBY per field of the batch instead of one per field of each call
 * (docs/scaling.md); a lone call waits only its own write, as before.
 */
export function createRedisLedger(redis: Redis, prefix: string): Ledger {
  const keys = (runId: string) => runKeys(prefix, runId, isCluster(redis));
  /** Records waiting for the next batch, by run; a run is here while its flush loop runs (one loop per run). */
  const queued = new Map<string, Waiting[]>();
  const write = async (runId: string, items: readonly Waiting[]): Promise<void> => {
    try {
      const k = keys(runId);
      const args: string[] = [String(LEDGER_ENTRY_TTL_S * 1000)];
      for (const w of items) args.push(w.id, String(w.pairs.length / 2), ...w.pairs);
      await COUNT_ONCE(redis, [k.ledger, k.ledgerIds], args);
      for (const w of items) w.resolve();
    } catch (err) {
      for (const w of items) w.reject(err);
    }
  };
  /** Writes the run's batches until none waits (a run's slow write, e.g. its cluster node failing over, holds up only that run). */
  const flush = async (runId: string): Promise<void> => {
    try {
      await new Promise(resolve => setImmediate(resolve));
      for (;;) {
        const items = queued.get(runId)!;
        if (!items.length) break;
        queued.set(runId, []);
        const writes: Promise<void>[] = [];
        for (let i = 0; i < items.length; i += BATCH_ENTRIES) writes.push(write(runId, items.slice(i, i + BATCH_ENTRIES)));
        await Promise.all(writes);
      }
    } catch (err) {
      for (const w of queued.get(runId) ?? []) w.reject(err);
    } finally {
      queued.delete(runId);
    }
  };
  return {
    record(entry) {
      const inc = increments(entry);
      const pairs: string[] = [];
      for (const [counter, value] of Object.entries(inc)) {
        // A value that is not a whole number (an endpoint's odd usage) is this record's fault alone: it never joins a batch.
        if (!Number.isSafeInteger(value) || value < 0 || value > MAX_INCREMENT) return Promise.reject(new TypeError(`ledger entry ${entry.id}: ${counter} is ${String(value)}, not a whole number from 0 to ${MAX_INCREMENT}`));
      }
      for (const scope of ['all', `stage:${entry.stage}`, `model:${entry.model}`]) {
        for (const [counter, value] of Object.entries(inc)) {
          if (value !== 0) pairs.push(`${scope}|${counter}`, String(value));
        }
      }
      if (!pairs.length) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const w = { id: entry.id, pairs, resolve, reject };
        const items = queued.get(entry.runId);
        if (items) items.push(w);
        else {
          queued.set(entry.runId, [w]);
          void flush(entry.runId);
        }
      });
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
