import type { Redis } from 'ioredis';
import { RequestError } from '../errors.js';

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

export interface RunControlState {
  readonly state: RunState;
  readonly reason: string | null;
  readonly since: string | null;
}

/**
 * Pause, resume and cancel a run, and its budgets. Workers consult it before starting a job of
 * the run; the model gateway consults the budgets before every request.
 */
export interface RunControl {
  get(runId: string): Promise<RunControlState>;
  pause(runId: string, reason: string): Promise<void>;
  resume(runId: string): Promise<void>;
  cancel(runId: string, reason: string): Promise<void>;
  budgets(runId: string): Promise<RunBudgets | null>;
  setBudgets(runId: string, budgets: RunBudgets): Promise<void>;
}

export function createRedisRunControl(redis: Redis, prefix: string): RunControl {
  const key = (runId: string) => `${prefix}:run:${runId}:control`;
  const set = async (runId: string, state: RunState, reason: string | null) => {
    await redis.hset(key(runId), { state, reason: reason ?? '', since: new Date().toISOString() });
  };
  return {
    async get(runId) {
      const h = await redis.hgetall(key(runId));
      return { state: (h['state'] as RunState | undefined) ?? 'running', reason: h['reason'] || null, since: h['since'] || null };
    },
    pause: (runId, reason) => set(runId, 'paused', reason),
    async resume(runId) {
      const current = await redis.hget(key(runId), 'state');
      if (current === 'cancelled') throw new RequestError(`run "${runId}" was cancelled; a cancelled run cannot be resumed`);
      await set(runId, 'running', null);
    },
    cancel: (runId, reason) => set(runId, 'cancelled', reason),
    async budgets(runId) {
      const raw = await redis.hget(key(runId), 'budgets');
      return raw ? (JSON.parse(raw) as RunBudgets) : null;
    },
    async setBudgets(runId, budgets) {
      await redis.hset(key(runId), 'budgets', JSON.stringify(budgets));
    },
  };
}
