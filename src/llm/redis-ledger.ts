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
 * Counts a batch of model calls of one run: KEYS[1] the ledger hash, KEYS[2] the ids counted lately (a sorted set,
 * scored by when each was counted, in ms of Redis's clock). ARGV[1]: how long an id is remembered (ms); then per
 * entry its id, its number of (field, increment) pairs n, and the 2n values. An entry whose id is in the set is not
 * counted again (a write sent again after a lost reply, or a batch tried again); the others' increments are summed
 * per field and added with one HINCRBY per field of the batch. Ids older than ARGV[1] leave the set, and the set
 * itself expires ARGV[1] after the last batch. A ledger key that is not a hash refuses the batch before anything is
 * written (a script's writes are not undone by a later error: ids kept without their counts would be lost to a retry).
 * Returns how many entries were counted.
 */
const COUNT_ONCE = redisScript(
  'ledger_count_once',
  `local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'none' and kind ~= 'hash' then return redis.error_reply('WRONGTYPE the ledger ' .. KEYS[1] .. ' is a ' .. kind .. ', not a hash') end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl)
local sums, order, counted = {}, {}, 0
local i = 2
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
  /** Records waiting for the next batch, by run. */
  let queued = new Map<string, Waiting[]>();
  let flushing = false;
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
  /** Writes batches until none waits; `write` settles each record and never throws. */
  const flush = async (): Promise<void> => {
    try {
      await new Promise(resolve => setImmediate(resolve));
      while (queued.size) {
        const batch = queued;
        queued = new Map();
        const writes: Promise<void>[] = [];
        for (const [runId, items] of batch) {
          for (let i = 0; i < items.length; i += BATCH_ENTRIES) writes.push(write(runId, items.slice(i, i + BATCH_ENTRIES)));
        }
        await Promise.all(writes);
      }
    } finally {
      flushing = false;
    }
  };
  return {
    record(entry) {
      const inc = increments(entry);
      const pairs: string[] = [];
      for (const scope of ['all', `stage:${entry.stage}`, `model:${entry.model}`]) {
        for (const [counter, value] of Object.entries(inc)) {
          if (value !== 0) pairs.push(`${scope}|${counter}`, String(value));
        }
      }
      if (!pairs.length) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const items = queued.get(entry.runId);
        const w = { id: entry.id, pairs, resolve, reject };
        if (items) items.push(w);
        else queued.set(entry.runId, [w]);
        if (!flushing) {
          flushing = true;
          void flush();
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
