import type { Redis } from 'ioredis';
import type { GroupStats } from '../rollouts/groups.js';
import type { RolloutConfig, StoredTrajectory } from '../rollouts/types.js';
import type { ScenarioConfig, ScenarioRecord } from '../scenarios/types.js';
import type { DedupDecision, EnvironmentRecord, JudgeRecord, MethodDoc, ProbeStepRecord, SourceTask, TopicRecord } from '../synthesis/types.js';
import type { RunOptions } from './options.js';

/** The documents a run keeps, by kind: one JSON document per id. */
export interface RunDocuments {
  /** A source task of `synth --tasks` (id: task id). */
  readonly task: SourceTask;
  readonly judge: JudgeRecord;
  readonly topic: TopicRecord;
  readonly dedup: DedupDecision;
  /** An environment from description to verdict (id: env id). */
  readonly env: EnvironmentRecord;
  /** A generated method (id: `<envId>.<operation>`). */
  readonly method: MethodDoc;
  readonly scenario: ScenarioRecord;
  /** A trajectory: whole until the sink writes it, then its summary (id: trajectory id). */
  readonly trajectory: StoredTrajectory;
  /** A scenario's group statistics in one mode (id: `<scenarioId>.<mode>`). */
  readonly group: GroupStats;
  /** The run's frozen rollout settings (id: `current`). */
  readonly 'rollout-config': RolloutConfig;
  /** The run's frozen scenario settings (id: `current`). */
  readonly 'scenario-config': ScenarioConfig;
}

export type DocKind = keyof RunDocuments;

export interface RunRecord {
  readonly id: string;
  readonly createdAt: string;
  readonly input: 'tasks' | 'descriptions';
  /** Options frozen at creation (thresholds, limits, probe steps, models). */
  readonly options: RunOptions;
}

/** An addition to a run's counters (see RunStore.count). */
export interface FunnelCount {
  readonly stage: string;
  readonly outcome: string;
  readonly n: number;
}

/**
 * Everything a run stores: its record, its documents by kind, the dual-agent probe's step
 * checkpoints, the counters of its funnel, its throughput, claims (for dedup), and the set of jobs
 * still outstanding (the run is done when it is empty). Documents are values: a stage that changes
 * one writes a new value with `putDoc`.
 */
export interface RunStore {
  /** Creates the run; returns false (and changes nothing) when it exists already. */
  createRun(run: RunRecord): Promise<boolean>;
  getRun(runId: string): Promise<RunRecord | null>;
  listRuns(): Promise<string[]>;
  /**
   * Stores a document; `counts` are added to the run's counters in the same atomic step, so a crash
   * cannot store the document without counting it (or count it without storing it).
   */
  putDoc<K extends DocKind>(runId: string, kind: K, id: string, value: RunDocuments[K], counts?: readonly FunnelCount[]): Promise<void>;
  getDoc<K extends DocKind>(runId: string, kind: K, id: string): Promise<RunDocuments[K] | null>;
  /** Ids of a kind in the order they were first stored. */
  listDocIds(runId: string, kind: DocKind): Promise<string[]>;
  /** Appends step `index` of a probe round unless it is there already (idempotent on resume). */
  appendStep(runId: string, envId: string, round: number, index: number, step: ProbeStepRecord): Promise<boolean>;
  steps(runId: string, envId: string, round: number): Promise<ProbeStepRecord[]>;
  /** Adds to a counter: how many items entered / left a stage and why, or a run event (queues/pipeline.ts names them). */
  count(runId: string, stage: string, outcome: string, n?: number): Promise<void>;
  counters(runId: string): Promise<Record<string, Record<string, number>>>;
  /** Counts a finished job in the run's per-minute throughput. */
  tick(runId: string): Promise<void>;
  /** Finished jobs per minute (minute as ISO time → count), oldest first. */
  throughput(runId: string): Promise<{ minute: string; count: number }[]>;
  /** Claims `key` for `owner` unless someone claimed it first; returns the owner (for dedup). */
  claim(runId: string, key: string, owner: string): Promise<string>;
  /** The run's outstanding jobs, as `queue|jobId` entries (see queues/enqueuer.ts). */
  addPending(runId: string, keys: readonly string[]): Promise<void>;
  donePending(runId: string, key: string): Promise<void>;
  pending(runId: string): Promise<string[]>;
  pendingCount(runId: string): Promise<number>;
}

const APPEND_STEP = `
if redis.call('LLEN', KEYS[1]) == tonumber(ARGV[1]) then
  redis.call('RPUSH', KEYS[1], ARGV[2])
  return 1
end
return 0
`;

export function createRedisRunStore(redis: Redis, prefix: string): RunStore {
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
    listRuns: () => redis.smembers(`${prefix}:runs`),
    async putDoc(runId, kind, id, value, counts = []) {
      const tx = redis
        .multi()
        .set(`${run(runId)}:doc:${kind}:${id}`, JSON.stringify(value))
        .zadd(`${run(runId)}:ids:${kind}`, 'NX', Date.now(), id);
      for (const c of counts) tx.hincrby(`${run(runId)}:funnel`, `${c.stage}|${c.outcome}`, c.n);
      await tx.exec();
    },
    async getDoc<K extends DocKind>(runId: string, kind: K, id: string) {
      const raw = await redis.get(`${run(runId)}:doc:${kind}:${id}`);
      return raw === null ? null : (JSON.parse(raw) as RunDocuments[K]);
    },
    listDocIds: (runId, kind) => redis.zrange(`${run(runId)}:ids:${kind}`, '0', '-1'),
    async appendStep(runId, envId, round, index, step) {
      const added = await redis.eval(APPEND_STEP, 1, `${run(runId)}:steps:${envId}:${round}`, String(index), JSON.stringify(step));
      return added === 1;
    },
    async steps(runId, envId, round) {
      const raw = await redis.lrange(`${run(runId)}:steps:${envId}:${round}`, 0, -1);
      return raw.map(r => JSON.parse(r) as ProbeStepRecord);
    },
    async count(runId, stage, outcome, n = 1) {
      await redis.hincrby(`${run(runId)}:funnel`, `${stage}|${outcome}`, n);
    },
    async counters(runId) {
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
    pending: runId => redis.smembers(`${run(runId)}:pending`),
    pendingCount: runId => redis.scard(`${run(runId)}:pending`),
  };
}
