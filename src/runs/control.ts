import { randomUUID } from 'node:crypto';
import { duplicateConnection, isCluster, type Redis } from '../redis/connection.js';
import { redisScript } from '../redis/scripts.js';
import { runKeys } from './keys.js';
import { RequestError } from '../errors.js';
import { oneLineText } from '../util/text.js';

export type RunState = 'running' | 'paused' | 'cancelled';

export interface Budget {
  /** US dollars; 0 = no limit. */
  readonly usd: number;
  /** Prompt + completion tokens; 0 = no limit. */
  readonly tokens: number;
}

export interface RunBudgets extends Budget {
  /** Optional limits per stage (same units). */
  readonly byStage: Readonly<Record<string, Budget>>;
}

/** What a ledger holds of a run's spending, all stages and by stage (a LedgerTotals is one). */
export interface Spent {
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly costUsd: number;
  readonly byStage: Readonly<Record<string, { readonly promptTokens: number; readonly completionTokens: number; readonly costUsd: number }>>;
}

/**
 * The budgets of `budgets` that `spent` has reached, each as a phrase ("1263383 tokens used of 1100000 (all stages)"):
 * the same test the gateway makes before each call (a limit of 0 is none), so a run with one of these pauses again at
 * its next call.
 */
export function reachedBudgets(budgets: RunBudgets, spent: Spent): string[] {
  const out: string[] = [];
  const test = (scope: string, used: Budget, limit: Budget) => {
    for (const r of budgetReached(used, limit)) out.push(r.unit === 'tokens' ? `${r.used} tokens used of ${r.limit} (${scope})` : `$${r.used.toFixed(4)} spent of $${r.limit} (${scope})`);
  };
  test('all stages', usedOf(spent), budgets);
  for (const [stage, limit] of Object.entries(budgets.byStage)) test(`stage ${stage}`, usedOf(spent.byStage[stage]), limit);
  return out;
}

/** What ledger counters amount to against a budget: prompt + completion tokens, and dollars (nothing counted: 0). */
export const usedOf = (c: { readonly promptTokens: number; readonly completionTokens: number; readonly costUsd: number } | undefined): Budget => ({
  tokens: (c?.promptTokens ?? 0) + (c?.completionTokens ?? 0),
  usd: c?.costUsd ?? 0,
});

/** The limits of `limit` that `used` has reached, tokens first (a limit of 0 is none): the one test of a budget, before a call and on resume. */
export function budgetReached(used: Budget, limit: Budget): { readonly unit: 'tokens' | 'usd'; readonly used: number; readonly limit: number }[] {
  const out: { unit: 'tokens' | 'usd'; used: number; limit: number }[] = [];
  if (limit.tokens > 0 && used.tokens >= limit.tokens) out.push({ unit: 'tokens', used: used.tokens, limit: limit.tokens });
  if (limit.usd > 0 && used.usd >= limit.usd) out.push({ unit: 'usd', used: used.usd, limit: limit.usd });
  return out;
}

/** What paused a run at a budget: a stage's own budget (`stage`), or the whole run's (null). */
export interface BudgetPause {
  readonly stage: string | null;
}

/**
 * What lets a run paused at a budget go on: for the whole run's budget, a higher one set as it resumes; for a stage's
 * (which `resume --budget-*` does not raise: the run paused again at once), that stage's, then the resume.
 */
export function budgetAdvice(runId: string, budget: BudgetPause): string {
  return budget.stage
    ? `envfleet budget --run ${runId} --stage ${budget.stage} --tokens N (or --usd X), above what that stage used, then envfleet resume --run ${runId}`
    : `envfleet resume --run ${runId} --budget-tokens N --budget-usd X, above what is used`;
}

/**
 * The run's budgets, stored first when it has none: KEYS[1] the control hash, KEYS[2] the run record (one slot: the
 * run's hash tag); ARGV[1] the budgets' JSON. Nothing is written for a run whose record is gone (deleted while a job of
 * it ran: a key of it made again would be found by a new run of its name). Returns the budgets kept, or nil.
 */
const KEEP_BUDGETS = redisScript(
  'keep_budgets',
  `
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
redis.call('HSETNX', KEYS[1], 'budgets', ARGV[1])
return redis.call('HGET', KEYS[1], 'budgets')
`,
  2,
);

/**
 * Writes a run's budgets (KEYS[1]: its control hash) as ARGV[2] only while they are still as read: ARGV[1] the text
 * read, or none stored when ARGV[3] is '1'; and only while the run's record (KEYS[2]) is there (-1: a run deleted
 * meanwhile is not brought back as its control hash). 1 when written, 0 when they changed in between.
 */
const SWAP_BUDGETS = redisScript(
  'swap_budgets',
  `
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
local now = redis.call('HGET', KEYS[1], 'budgets')
if ARGV[3] == '1' then
  if now then return 0 end
elseif now ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'budgets', ARGV[2])
return 1
`,
  2,
);

/** Tries of patchBudgets before it gives up: each refused one means budgets written by another in between. */
const PATCH_TRIES = 50;

/**
 * Cancels a run (KEYS[1]: its control hash) with ARGV[1] as the reason since ARGV[2], unless it is cancelled already
 * (then its first reason and time stay: 0); either way its rate-limit streak (KEYS[2]) goes and the cancel is announced
 * on ARGV[3] (ARGV[4], the run). (Read and written apart, two cancels at once both wrote, and the second one's reason
 * replaced the first one's.)
 */
const CANCEL = redisScript(
  'cancel',
  `
local first = redis.call('HGET', KEYS[1], 'state') ~= 'cancelled'
if first then redis.call('HSET', KEYS[1], 'state', 'cancelled', 'reason', ARGV[1], 'since', ARGV[2]) end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return first and 1 or 0
`,
  2,
);

export interface RunControlState {
  readonly state: RunState;
  readonly reason: string | null;
  readonly since: string | null;
  /**
   * Set while the run is paused at a budget (by the workers, as the gateway refused a call): which one. Kept apart from
   * the reason, which a user writes too (`envfleet pause --reason "budget review"` is no budget pause).
   */
  readonly budget: BudgetPause | null;
}

/**
 * A job parked while its run is paused: its key (`queue|jobId`, as in the run's outstanding set) and
 * the token of this parking. A job brought back and parked again gets a new token, so whoever ends a
 * parking forgets exactly that one and never a newer one.
 */
export interface ParkedJob {
  readonly key: string;
  readonly token: string;
}

/**
 * Pause, resume and cancel a run, and its budgets. Workers consult it before starting a job of
 * the run; the model gateway consults the budgets before every request.
 *
 * A job that finds its run paused is parked: it waits in its queue's delayed set, far in the
 * future (no start, no CPU), and is recorded in the run's parked jobs here, so that whoever resumes
 * the run can bring it back (the promotion itself is BullMQ's: queues/run-jobs.ts
 * `releaseParkedJobs`). Resume and cancel are announced on a channel the workers listen to.
 */
/** A run's budgets (null: the configured ones) and, when it was cancelled, why. */
export interface RunGate {
  readonly budgets: RunBudgets | null;
  readonly cancelled: { readonly reason: string | null } | null;
  /** Set while the run is paused: a running job sends no model request then (RUN_PAUSED: it is parked). Absent: running. */
  readonly paused?: { readonly reason: string | null } | null;
}

export interface RunControl {
  get(runId: string): Promise<RunControlState>;
  /** Pauses the run, at `budget` when a budget paused it (a cancelled run stays cancelled: RequestError). */
  pause(runId: string, reason: string, budget?: BudgetPause): Promise<void>;
  /** Marks the run running and announces it; its parked jobs are brought back by the caller or the workers that hear it. */
  resume(runId: string): Promise<void>;
  cancel(runId: string, reason: string): Promise<void>;
  budgets(runId: string): Promise<RunBudgets | null>;
  /** What a model call reads of the run before it is sent: its budgets and whether it was cancelled or paused, in one read. */
  gate(runId: string): Promise<RunGate>;
  setBudgets(runId: string, budgets: RunBudgets): Promise<void>;
  /**
   * Sets the limits given of the run's budgets (of `stage`, or the whole run's), the others as stored (else as
   * `defaults`), in one step: what another command or a worker wrote meanwhile is kept. The budgets written.
   */
  patchBudgets(runId: string, limits: Partial<Budget>, defaults: RunBudgets, stage?: string): Promise<RunBudgets>;
  /**
   * Stores `budgets` as the run's unless it has some already (the configured defaults, ENVFLEET_BUDGET_*, written by the
   * first process that creates or spends for the run, so every worker, command and the dashboard sees one budget);
   * the run's budgets afterwards.
   */
  keepBudgets(runId: string, budgets: RunBudgets): Promise<RunBudgets>;
  /** Records a job of the run as parked (before it is moved to the delayed set, so a parked job is always recorded). */
  park(runId: string, key: string): Promise<ParkedJob>;
  /** The run's parked jobs, in batches (a job may show up twice; handling one is idempotent). */
  parked(runId: string): AsyncIterable<ParkedJob[]>;
  /** True while this parking is recorded (not yet ended by anyone). */
  isParked(runId: string, job: ParkedJob): Promise<boolean>;
  /** Forgets a parking, unless the job has been parked again since (another token). */
  unpark(runId: string, job: ParkedJob): Promise<void>;
  /** Forgets every parking of the run (its jobs are gone: cancel). */
  forgetParked(runId: string): Promise<void>;
  /** Runs with at least one parked job. */
  runsWithParkedJobs(): Promise<string[]>;
  /**
   * How long (ms, on Redis's clock) the job has been rate limited without a break; the first call of
   * a streak starts it at 0. A streak ends when the job is parked, or with `clearRateLimited`.
   */
  rateLimitedFor(runId: string, key: string): Promise<number>;
  clearRateLimited(runId: string, key: string): Promise<void>;
  /**
   * The run's jobs in a rate-limit streak now (429s, or the endpoint unreachable), and how long the longest has
   * lasted (ms, on Redis's clock); null when none is.
   */
  endpointWaits(runId: string): Promise<{ readonly jobs: number; readonly longestMs: number } | null>;
  /**
   * Calls `listener` with a run's id whenever a run is resumed or cancelled anywhere in the fleet,
   * on a connection of its own (a duplicate of this one). A message lost in a reconnect is missed:
   * listeners recheck now and then. Resolves with the function that stops listening.
   */
  watch(listener: (runId: string) => void): Promise<() => Promise<void>>;
}

/**
 * Sets the state unless the run is cancelled (returns 0 then), atomically, so a resume or a budget
 * pause racing with a cancel cannot bring a cancelled run back. Announces the change when told to.
 * KEYS: control hash. ARGV: state, reason, since, channel ('' = none), run id, the budget pause's JSON ('' = none).
 */
const SET_STATE = redisScript(
  'set_state',
  `
if redis.call('HGET', KEYS[1], 'state') == 'cancelled' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'reason', ARGV[2], 'since', ARGV[3], 'budgetPause', ARGV[6])
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return 1
`,
  1,
);

/**
 * Forgets a parking if its token still names it; returns how many parked jobs the run has left.
 * KEYS: parked hash. ARGV: key, token.
 *
 * The index of runs with parked jobs is a key of its own, in another hash slot than the run's keys on
 * a Redis Cluster, so no script or MULTI touches both. The order keeps it right: a parking writes the
 * run's hash first and the index after; leaving the index removes the run first and then looks at the
 * run's hash again, putting the run back if a job was parked meanwhile (see `leaveIndex`).
 */
const UNPARK = redisScript(
  'unpark',
  `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return redis.call('HLEN', KEYS[1])
`,
  1,
);

/** Starts a rate-limit streak unless one runs, on Redis time; returns its length in ms. KEYS: hash. ARGV: key, ttl ms. */
const RATE_LIMITED_FOR = redisScript(
  'rate_limited_for',
  `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSETNX', KEYS[1], ARGV[1], now)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return now - tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
`,
  1,
);

/** A streak record outlives its job only this long (a job removed mid-streak never clears its own). */
const RATE_LIMITED_TTL_MS = 7 * 24 * 3_600_000;

export function createRedisRunControl(redis: Redis, prefix: string): RunControl {
  const cluster = isCluster(redis);
  const key = (runId: string) => runKeys(prefix, runId, cluster).control;
  const parkedKey = (runId: string) => runKeys(prefix, runId, cluster).parked;
  const rateLimitedKey = (runId: string) => runKeys(prefix, runId, cluster).rateLimited;
  // Outside the runs' keys on purpose: the recheck must find parked jobs without visiting every run ever made.
  const index = `${prefix}:parked-runs`;
  const channel = `${prefix}:run-control`;
  /** Takes the run out of the index unless it has parked jobs (again); true if it still has some. */
  const leaveIndex = async (runId: string): Promise<boolean> => {
    await redis.srem(index, runId);
    if ((await redis.hlen(parkedKey(runId))) === 0) return false;
    await redis.sadd(index, runId);
    return true;
  };
  const setState = async (runId: string, state: RunState, reason: string | null, announce: boolean, budget?: BudgetPause): Promise<boolean> =>
    (await SET_STATE(redis, [key(runId)], [state, reason === null ? '' : oneLineText(reason), new Date().toISOString(), announce ? channel : '', runId, budget ? JSON.stringify({ stage: budget.stage }) : ''])) === 1;
  return {
    async get(runId) {
      const h = await redis.hgetall(key(runId));
      const state = (h['state'] as RunState | undefined) ?? 'running';
      const budget = state === 'paused' && h['budgetPause'] ? (JSON.parse(h['budgetPause']) as BudgetPause) : null;
      return { state, reason: h['reason'] || null, since: h['since'] || null, budget };
    },
    async pause(runId, reason, budget) {
      if (!(await setState(runId, 'paused', reason, false, budget))) throw new RequestError(`run "${runId}" was cancelled; a cancelled run cannot be paused`);
    },
    async resume(runId) {
      if (!(await setState(runId, 'running', null, true))) throw new RequestError(`run "${runId}" was cancelled; a cancelled run cannot be resumed`);
      // The run's waits for the endpoint start again from the resume: a streak begun before the pause counted the
      // pause, and the time its jobs were held (no job trying the endpoint), towards pausing the run again.
      await redis.del(rateLimitedKey(runId));
    },
    async cancel(runId, reason) {
      // Cancelled again: the first cancel's reason and time stay (a second `envfleet cancel` only removes jobs again).
      await CANCEL(redis, [key(runId), rateLimitedKey(runId)], [oneLineText(reason), new Date().toISOString(), channel, runId]);
    },
    async budgets(runId) {
      const raw = await redis.hget(key(runId), 'budgets');
      return raw ? (JSON.parse(raw) as RunBudgets) : null;
    },
    async gate(runId) {
      const [budgets, state, reason] = await redis.hmget(key(runId), 'budgets', 'state', 'reason');
      return {
        budgets: budgets ? (JSON.parse(budgets) as RunBudgets) : null,
        cancelled: state === 'cancelled' ? { reason: reason || null } : null,
        paused: state === 'paused' ? { reason: reason || null } : null,
      };
    },
    async setBudgets(runId, budgets) {
      await redis.hset(key(runId), 'budgets', JSON.stringify(budgets));
    },
    async patchBudgets(runId, limits, defaults, stage = '') {
      const k = runKeys(prefix, runId, cluster);
      for (let i = 0; i < PATCH_TRIES; i += 1) {
        const raw = await redis.hget(k.control, 'budgets');
        const current = raw ? (JSON.parse(raw) as RunBudgets) : defaults;
        const byStage = current.byStage ?? {};
        const next: RunBudgets = stage ? { ...current, byStage: { ...byStage, [stage]: { usd: 0, tokens: 0, ...byStage[stage], ...limits } } } : { ...current, ...limits, byStage };
        const wrote = Number(await SWAP_BUDGETS(redis, [k.control, k.record], [raw ?? '', JSON.stringify(next), raw === null ? '1' : '0']));
        if (wrote === 1) return next;
        if (wrote === -1) throw new RequestError(`run "${runId}" is gone (deleted meanwhile): no budget was set`);
      }
      throw new RequestError(`run "${runId}": its budgets were written by others ${PATCH_TRIES} times while this command set them; nothing was set: run the command again`);
    },
    async keepBudgets(runId, budgets) {
      const k = runKeys(prefix, runId, cluster);
      const raw = (await KEEP_BUDGETS(redis, [k.control, k.record], [JSON.stringify(budgets)])) as string | null;
      return raw ? (JSON.parse(raw) as RunBudgets) : budgets;
    },
    async park(runId, jobKey) {
      const token = randomUUID();
      // A new parking also ends the job's rate-limit streak: after a resume it starts afresh.
      // Into the index before (a process that dies after the parking still left it there) and after
      // (a concurrent `leaveIndex` may have taken it out in between).
      await redis.sadd(index, runId);
      await redis.multi().hset(parkedKey(runId), jobKey, token).hdel(rateLimitedKey(runId), jobKey).exec();
      await redis.sadd(index, runId);
      return { key: jobKey, token };
    },
    async *parked(runId) {
      let cursor = '0';
      do {
        const [next, flat] = await redis.hscan(parkedKey(runId), cursor, 'COUNT', 500);
        cursor = next;
        const batch: ParkedJob[] = [];
        for (let i = 0; i + 1 < flat.length; i += 2) batch.push({ key: flat[i]!, token: flat[i + 1]! });
        if (batch.length) yield batch;
      } while (cursor !== '0');
    },
    async isParked(runId, job) {
      return (await redis.hget(parkedKey(runId), job.key)) === job.token;
    },
    async unpark(runId, job) {
      if (Number(await UNPARK(redis, [parkedKey(runId)], [job.key, job.token])) === 0) await leaveIndex(runId);
    },
    async forgetParked(runId) {
      await redis.del(parkedKey(runId));
      await redis.srem(index, runId);
      // A job parked between the two (its HSET after our DEL, its last SADD before our SREM) must stay in the index.
      if ((await redis.hlen(parkedKey(runId))) > 0) await redis.sadd(index, runId);
    },
    async runsWithParkedJobs() {
      const runs: string[] = [];
      for (const runId of await redis.smembers(index)) {
        if ((await redis.hlen(parkedKey(runId))) > 0 || (await leaveIndex(runId))) runs.push(runId);
      }
      return runs;
    },
    async rateLimitedFor(runId, jobKey) {
      return Number(await RATE_LIMITED_FOR(redis, [rateLimitedKey(runId)], [jobKey, RATE_LIMITED_TTL_MS]));
    },
    async clearRateLimited(runId, jobKey) {
      await redis.hdel(rateLimitedKey(runId), jobKey);
    },
    async endpointWaits(runId) {
      const [time, starts] = (await redis.multi().time().hvals(rateLimitedKey(runId)).exec()) ?? [];
      const [seconds, micros] = (time?.[1] ?? []) as [string, string];
      const since = ((starts?.[1] ?? []) as string[]).map(Number).filter(Number.isFinite);
      if (!since.length || seconds === undefined) return null;
      return { jobs: since.length, longestMs: Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) - Math.min(...since) };
    },
    async watch(listener) {
      const subscriber = duplicateConnection(redis);
      // It reconnects and resubscribes by itself; what it misses meanwhile, the listeners' recheck finds.
      subscriber.on('error', () => undefined);
      subscriber.on('message', (from: string, runId: string) => {
        if (from === channel) listener(runId);
      });
      if (subscriber.status === 'wait') await subscriber.connect();
      await subscriber.subscribe(channel);
      return async () => {
        await subscriber.quit().catch(() => subscriber.disconnect());
      };
    },
  };
}
