import type { Redis } from 'ioredis';

/** Kinds of document a run keeps, one JSON document per id. */
export type DocKind = 'task' | 'judge' | 'topic' | 'dedup' | 'env' | 'method' | 'scenario' | 'trajectory' | 'group' | 'rollout-config' | 'scenario-config';

export interface RunRecord {
  readonly id: string;
  readonly createdAt: string;
  readonly input: 'tasks' | 'descriptions';
  /** Options frozen at creation (thresholds, limits, probe steps, models and prompt versions). */
  readonly options: Readonly<Record<string, unknown>>;
}

/** An addition to a run's funnel counters (see SynthesisStore.count). */
export interface FunnelCount {
  readonly stage: string;
  readonly outcome: string;
  readonly n: number;
}

/**
 * Everything a synthesis run stores: its record, per-item documents, the dual-agent probe's
 * step checkpoints, the funnel counters, and the set of jobs still outstanding (the run is done
 * when it is empty). Redis in production, memory in unit tests.
 */
export interface SynthesisStore {
  /** Creates the run; returns false (and changes nothing) when it exists already. */
  createRun(run: RunRecord): Promise<boolean>;
  getRun(runId: string): Promise<RunRecord | null>;
  /**
   * Stores a document; `counts` are added to the run's funnel counters in the same atomic step, so a
   * crash cannot store the document without counting it (or count it without storing it).
   */
  putDoc(runId: string, kind: DocKind, id: string, value: unknown, counts?: readonly FunnelCount[]): Promise<void>;
  getDoc<T>(runId: string, kind: DocKind, id: string): Promise<T | null>;
  /** Ids of a kind in the order they were first stored. */
  listDocIds(runId: string, kind: DocKind): Promise<string[]>;
  /** Appends step `index` of a probe round unless it is there already (idempotent on resume). */
  appendStep(runId: string, envId: string, round: number, index: number, step: unknown): Promise<boolean>;
  steps<T>(runId: string, envId: string, round: number): Promise<T[]>;
  /** Funnel: how many items entered / left a stage, and why. */
  count(runId: string, stage: string, outcome: string, n?: number): Promise<void>;
  funnel(runId: string): Promise<Record<string, Record<string, number>>>;
  /** Counts a finished job in the run's per-minute throughput. */
  tick(runId: string): Promise<void>;
  /** Finished jobs per minute (minute as ISO time → count), oldest first. */
  throughput(runId: string): Promise<{ minute: string; count: number }[]>;
  listRuns(): Promise<string[]>;
  /** Claims `key` for `owner` unless someone claimed it first; returns the owner (for dedup). */
  claim(runId: string, key: string, owner: string): Promise<string>;
  addPending(runId: string, keys: readonly string[]): Promise<void>;
  donePending(runId: string, key: string): Promise<void>;
  pendingCount(runId: string): Promise<number>;
}

const APPEND_STEP = `
if redis.call('LLEN', KEYS[1]) == tonumber(ARGV[1]) then
  redis.call('RPUSH', KEYS[1], ARGV[2])
  return 1
end
return 0
`;

export function createRedisSynthesisStore(redis: Redis, prefix: string): SynthesisStore {
  const run = (runId: string) => `${prefix}:run:${runId}`;
  return {
    async createRun(record) {
      const created = await redis.set(run(record.id), JSON.stringify(record), 'NX');
      if (created) await redis.sadd(`${prefix}:runs`, record.id);
      return created === 'OK';
    },
    async getRun(runId) {
      const raw = await redis.get(run(runId));
      return raw === null ? null : (JSON.parse(raw) as RunRecord);
    },
    async putDoc(runId, kind, id, value, counts = []) {
      const tx = redis
        .multi()
        .set(`${run(runId)}:doc:${kind}:${id}`, JSON.stringify(value))
        .zadd(`${run(runId)}:ids:${kind}`, 'NX', Date.now(), id);
      for (const c of counts) tx.hincrby(`${run(runId)}:funnel`, `${c.stage}|${c.outcome}`, c.n);
      await tx.exec();
    },
    async getDoc<T>(runId: string, kind: DocKind, id: string) {
      const raw = await redis.get(`${run(runId)}:doc:${kind}:${id}`);
      return raw === null ? null : (JSON.parse(raw) as T);
    },
    listDocIds: (runId, kind) => redis.zrange(`${run(runId)}:ids:${kind}`, '0', '-1'),
    async appendStep(runId, envId, round, index, step) {
      const added = await redis.eval(APPEND_STEP, 1, `${run(runId)}:steps:${envId}:${round}`, String(index), JSON.stringify(step));
      return added === 1;
    },
    async steps<T>(runId: string, envId: string, round: number) {
      const raw = await redis.lrange(`${run(runId)}:steps:${envId}:${round}`, 0, -1);
      return raw.map(r => JSON.parse(r) as T);
    },
    async count(runId, stage, outcome, n = 1) {
      await redis.hincrby(`${run(runId)}:funnel`, `${stage}|${outcome}`, n);
    },
    async funnel(runId) {
      const hash = await redis.hgetall(`${run(runId)}:funnel`);
      const out: Record<string, Record<string, number>> = {};
      for (const [field, value] of Object.entries(hash)) {
        const [stage, outcome] = field.split('|') as [string, string];
        (out[stage] ??= {})[outcome] = Number(value);
      }
      return out;
    },
    async tick(runId) {
      const minute = new Date(Math.floor(Date.now() / 60_000) * 60_000).toISOString();
      await redis.hincrby(`${run(runId)}:throughput`, minute, 1);
    },
    async throughput(runId) {
      const h = await redis.hgetall(`${run(runId)}:throughput`);
      return Object.entries(h)
        .map(([minute, count]) => ({ minute, count: Number(count) }))
        .sort((a, b) => a.minute.localeCompare(b.minute));
    },
    listRuns: () => redis.smembers(`${prefix}:runs`),
    async claim(runId, key, owner) {
      const k = `${run(runId)}:claim:${key}`;
      const set = await redis.set(k, owner, 'NX');
      return set === 'OK' ? owner : ((await redis.get(k)) ?? owner);
    },
    async addPending(runId, keys) {
      if (keys.length) await redis.sadd(`${run(runId)}:pending`, ...keys);
    },
    async donePending(runId, key) {
      await redis.srem(`${run(runId)}:pending`, key);
    },
    pendingCount: runId => redis.scard(`${run(runId)}:pending`),
  };
}

export function createMemorySynthesisStore(): SynthesisStore {
  const runs = new Map<string, RunRecord>();
  const docs = new Map<string, string>();
  const ids = new Map<string, string[]>();
  const steps = new Map<string, string[]>();
  const funnels = new Map<string, Map<string, number>>();
  const pending = new Map<string, Set<string>>();
  const claims = new Map<string, string>();
  const ticks = new Map<string, Map<string, number>>();
  const count = (runId: string, stage: string, outcome: string, n = 1) => {
    const f = funnels.get(runId) ?? new Map<string, number>();
    f.set(`${stage}|${outcome}`, (f.get(`${stage}|${outcome}`) ?? 0) + n);
    funnels.set(runId, f);
  };
  return {
    tick(runId) {
      const minute = new Date(Math.floor(Date.now() / 60_000) * 60_000).toISOString();
      const m = ticks.get(runId) ?? new Map<string, number>();
      m.set(minute, (m.get(minute) ?? 0) + 1);
      ticks.set(runId, m);
      return Promise.resolve();
    },
    throughput: runId => Promise.resolve([...(ticks.get(runId) ?? [])].map(([minute, count]) => ({ minute, count })).sort((a, b) => a.minute.localeCompare(b.minute))),
    listRuns: () => Promise.resolve([...runs.keys()]),
    claim(runId, key, owner) {
      const k = `${runId}/${key}`;
      if (!claims.has(k)) claims.set(k, owner);
      return Promise.resolve(claims.get(k)!);
    },
    createRun(record) {
      if (runs.has(record.id)) return Promise.resolve(false);
      runs.set(record.id, record);
      return Promise.resolve(true);
    },
    getRun: runId => Promise.resolve(runs.get(runId) ?? null),
    putDoc(runId, kind, id, value, counts = []) {
      for (const c of counts) count(runId, c.stage, c.outcome, c.n);
      docs.set(`${runId}/${kind}/${id}`, JSON.stringify(value));
      const list = ids.get(`${runId}/${kind}`) ?? [];
      if (!list.includes(id)) list.push(id);
      ids.set(`${runId}/${kind}`, list);
      return Promise.resolve();
    },
    getDoc<T>(runId: string, kind: DocKind, id: string) {
      const raw = docs.get(`${runId}/${kind}/${id}`);
      return Promise.resolve(raw === undefined ? null : (JSON.parse(raw) as T));
    },
    listDocIds: (runId, kind) => Promise.resolve([...(ids.get(`${runId}/${kind}`) ?? [])]),
    appendStep(runId, envId, round, index, step) {
      const key = `${runId}/${envId}/${round}`;
      const list = steps.get(key) ?? [];
      steps.set(key, list);
      if (list.length !== index) return Promise.resolve(false);
      list.push(JSON.stringify(step));
      return Promise.resolve(true);
    },
    steps<T>(runId: string, envId: string, round: number) {
      return Promise.resolve((steps.get(`${runId}/${envId}/${round}`) ?? []).map(s => JSON.parse(s) as T));
    },
    count(runId, stage, outcome, n = 1) {
      count(runId, stage, outcome, n);
      return Promise.resolve();
    },
    funnel(runId) {
      const out: Record<string, Record<string, number>> = {};
      for (const [field, value] of funnels.get(runId) ?? []) {
        const [stage, outcome] = field.split('|') as [string, string];
        (out[stage] ??= {})[outcome] = value;
      }
      return Promise.resolve(out);
    },
    addPending(runId, keys) {
      const set = pending.get(runId) ?? new Set<string>();
      for (const k of keys) set.add(k);
      pending.set(runId, set);
      return Promise.resolve();
    },
    donePending(runId, key) {
      pending.get(runId)?.delete(key);
      return Promise.resolve();
    },
    pendingCount: runId => Promise.resolve(pending.get(runId)?.size ?? 0),
  };
}
