import { createHash } from 'node:crypto';
import { RequestError } from '../errors.js';
import { isCluster, type Redis } from '../redis/connection.js';
import { redisScript } from '../redis/scripts.js';
import type { GroupStats } from '../rollouts/groups.js';
import type { RolloutConfig, StoredTrajectory } from '../rollouts/types.js';
import type { ScenarioConfig, ScenarioRecord } from '../scenarios/types.js';
import type { DedupDecision, EnvironmentRecord, JudgeRecord, MethodDoc, ProbeStepRecord, SourceTask, TopicRecord } from '../synthesis/types.js';
import { stringifyJson } from '../util/raw-json.js';
import { cutText } from '../util/text.js';
import { runKeys, runsKey } from './keys.js';
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
  /** A scenario's group statistics in one mode (id: `<scenarioId>.<mode>`, `.<policy>` added for a later policy generation). */
  readonly group: GroupStats;
  /** The run's frozen rollout settings (id: `current` for its first policy generation, the generation's key for the others). */
  readonly 'rollout-config': RolloutConfig;
  /** The run's frozen scenario settings (id: `current`). */
  readonly 'scenario-config': ScenarioConfig;
}

export type DocKind = keyof RunDocuments;

export interface RunRecord {
  readonly id: string;
  readonly createdAt: string;
  /** What the run was made from: synthesis input, or the files of another project (`envfleet import envscaler`). */
  readonly input: 'tasks' | 'descriptions' | 'envscaler' | 'bfcl' | 'tau-bench';
  /** Options frozen at creation (thresholds, limits, probe steps, models). */
  readonly options: RunOptions;
}

/** An addition to a run's counters (see RunStore.count). */
export interface FunnelCount {
  readonly stage: string;
  readonly outcome: string;
  readonly n: number;
  /**
   * Counted only when the write creates the document: a job that is retried after its write (a crash
   * before it completed) and writes the same document again does not count it twice.
   */
  readonly once?: boolean;
}

/**
 * A small record kept beside a document in a hash of the run (`group` names the hash, the document's id is the
 * field), written in the same atomic step as the document and only with it, and not once the group's statistics
 * (the `group` document of the same id) are stored: a group job reads its members' outcomes from one hash instead of
 * every trajectory whole (≈ 100 KB each until the sink replaces it), then lets the hash go. A group job of a worker
 * from before outcomes never lets it go (a rolling upgrade): such a hash stays until the run is deleted.
 */
export interface DocOutcome {
  readonly group: string;
  readonly json: string;
}

/** Kinds whose documents carry a `status` the store counts (status does not read every document). */
const COUNTED_STATUS: ReadonlySet<DocKind> = new Set<DocKind>(['env', 'scenario']);

/**
 * Everything a run stores: its record, its documents by kind, the dual-agent probe's step
 * checkpoints, the counters of its funnel, its throughput, claims (for dedup), and the set of jobs
 * still outstanding (the run is done when it is empty). Documents are values: a stage that changes
 * one writes a new value with `putDoc`.
 *
 * What status and progress read is kept as counters, updated in the same atomic step as the data
 * they count — documents by status, outstanding and running jobs per stage, bytes per area — so
 * reading them costs the same for ten items or a million.
 */
export interface RunStore {
  /** Creates the run; returns false (and changes nothing) when it exists already. */
  createRun(run: RunRecord): Promise<boolean>;
  getRun(runId: string): Promise<RunRecord | null>;
  listRuns(): Promise<string[]>;
  /**
   * Stores a document; `counts` are added to the run's counters in the same atomic step, so a crash
   * cannot store the document without counting it (or count it without storing it). The status counts
   * of environments and scenarios and the run's byte counters move in the same step.
   */
  putDoc<K extends DocKind>(runId: string, kind: K, id: string, value: RunDocuments[K], counts?: readonly FunnelCount[]): Promise<void>;
  /**
   * `putDoc` for an environment or a scenario, only while the stored one is as its writer read it: its status
   * `expect` (the status read before its work), or its very text (`{ textSha1 }`: the SHA-1 of the stored bytes
   * read, for a mark made over what was read, which a job's write of the same status in between would lose), or none
   * at all (`null`: a document made once, whose counts a twin of its job would add again). False,
   * and nothing written or counted, when it has moved meanwhile (a cancel marks what is being built failed or dropped
   * while a job is at a model call or a probe; a write of what the job read would set it back to building). A write
   * of the value already stored is true, whatever status or text is expected; with `null`, false (one is stored).
   */
  putDocIf<K extends 'env' | 'scenario'>(runId: string, kind: K, id: string, value: RunDocuments[K], expect: string | { readonly textSha1: string } | null, counts?: readonly FunnelCount[]): Promise<boolean>;
  /**
   * Stores a document given as its JSON text, or as that text's UTF-8 bytes (the sink's trajectory summaries,
   * made without a parse; a worker's trajectory, encoded once for the store and its digest); for kinds whose
   * documents carry a counted status (environments, scenarios) use `putDoc`.
   */
  putDocText(runId: string, kind: Exclude<DocKind, 'env' | 'scenario'>, id: string, text: string | Buffer, counts?: readonly FunnelCount[]): Promise<void>;
  /**
   * putDocText where no document `id` is stored yet: the first write wins, with its counts; a later one (the same
   * job run twice at once, a stalled job taken again while its first run went on) writes and counts nothing and
   * gets false.
   */
  addDocText(runId: string, kind: Exclude<DocKind, 'env' | 'scenario'>, id: string, text: string | Buffer, counts?: readonly FunnelCount[], outcome?: DocOutcome): Promise<boolean>;
  /**
   * The outcomes kept beside the trajectories of `group` (addDocText's `outcome`), for `ids`, in order: each one's
   * JSON text, or null where none is kept (a trajectory stored by an older worker, or not stored).
   */
  groupOutcomes(runId: string, group: string, ids: readonly string[]): Promise<(string | null)[]>;
  /** Lets go of a group's outcomes once its statistics are stored (a later read of the group reads the trajectories). */
  dropGroupOutcomes(runId: string, group: string): Promise<void>;
  getDoc<K extends DocKind>(runId: string, kind: K, id: string): Promise<RunDocuments[K] | null>;
  /** A document's JSON text exactly as stored (a trajectory's final state as the sandbox wrote it: `1.0` stays `1.0`). */
  getDocText(runId: string, kind: DocKind, id: string): Promise<string | null>;
  /** The same as its bytes (UTF-8), not decoded: the sink writes them to its shard as they are. */
  getDocBuffer(runId: string, kind: DocKind, id: string): Promise<Buffer | null>;
  /** Ids of a kind in the order they were first stored. */
  listDocIds(runId: string, kind: DocKind): Promise<string[]>;
  /** How many environments (or scenarios) have each status. */
  statusCounts(runId: string, kind: 'env' | 'scenario'): Promise<Record<string, number>>;
  /**
   * Ids of the environments (or scenarios) whose status is one of `statuses`, in the order they were first stored,
   * read from the status kept beside each document (one read for the kind, not one per document: a scenario
   * carries its initial state, 1 MB for a τ-bench retail task). A document stored without that entry is read.
   */
  idsWithStatus(runId: string, kind: 'env' | 'scenario', statuses: readonly string[]): Promise<string[]>;
  /**
   * Appends step `index` of a probe round unless it is there already (idempotent on resume), with the
   * state after it (replacing the previous step's) and `counts`, in one atomic step. False when the
   * step was there already (nothing is written or counted).
   */
  appendStep(runId: string, envId: string, round: number, index: number, step: ProbeStepRecord, stateAfter: unknown, counts?: readonly FunnelCount[]): Promise<boolean>;
  steps(runId: string, envId: string, round: number): Promise<ProbeStepRecord[]>;
  /** The state after the latest recorded step of a probe round, as its JSON text was recorded (a Python session's as the session wrote it: 1.0 stays a float); undefined when no step is recorded. */
  probeStateJson(runId: string, envId: string, round: number): Promise<string | undefined>;
  /** Adds to a counter: how many items entered / left a stage and why, or a run event (queues/pipeline.ts names them). */
  count(runId: string, stage: string, outcome: string, n?: number): Promise<void>;
  /** Keeps `reason` as the example of `stage|outcome` (a failure's or a drop's) unless one is kept already. */
  noteReason(runId: string, stage: string, outcome: string, reason: string): Promise<void>;
  /** The example reasons: `stage|outcome` → reason. */
  reasons(runId: string): Promise<Record<string, string>>;
  counters(runId: string): Promise<Record<string, Record<string, number>>>;
  /** Bytes the run keeps in Redis, by area: `doc:KIND`, `outcomes`, `steps`, `cache:STAGE` (kept by the response cache). */
  bytes(runId: string): Promise<Record<string, number>>;
  /**
   * A job of the run finished: out of its outstanding jobs and counted in its per-minute throughput, together (a
   * job already out, or of a run that is gone, counts nothing: that would make the run's keys again).
   */
  finishPending(runId: string, key: string): Promise<void>;
  /** Finished jobs per minute (minute as ISO time → count), oldest first. */
  throughput(runId: string): Promise<{ minute: string; count: number }[]>;
  /** Claims `key` for `owner` unless someone claimed it first; returns the owner (for dedup). */
  claim(runId: string, key: string, owner: string): Promise<string>;
  /** The run's outstanding jobs, as `queue|jobId` entries (see queues/enqueuer.ts). */
  addPending(runId: string, keys: readonly string[]): Promise<void>;
  /** Takes `key` out of the run's outstanding jobs (a job removed, not finished: finishPending counts a finish). */
  /** Removes an outstanding job; true when it was outstanding (this call took it out). */
  donePending(runId: string, key: string): Promise<boolean>;
  pending(runId: string): Promise<string[]>;
  pendingCount(runId: string): Promise<number>;
  /** Outstanding jobs per queue. */
  pendingByStage(runId: string): Promise<Record<string, number>>;
  /** When the run last ran out of outstanding jobs (null while it has some, or never had). */
  finishedAt(runId: string): Promise<string | null>;
  /** A job of the run started (`true`) or stopped running (`false`) in a worker. */
  running(runId: string, stage: string, jobId: string, now: boolean): Promise<void>;
  /** Jobs running now, for each of `stages`. */
  runningByStage(runId: string, stages: readonly string[]): Promise<Record<string, number>>;
}

/**
 * Writes a document: its value, first-write order, byte count, status counts and funnel counts,
 * atomically. Writing the value a document already has changes nothing and counts nothing: the
 * client sends a command again when Redis went away before it answered (ioredis resends what was
 * not answered once it reconnects, and a Redis with an append-only file kept the first one), and a
 * retried job may write the same value again. With ARGV[6] = '1' (addDocText) nothing is written or counted
 * where a document is stored already. With ARGV[7] not empty, field ARGV[7] of the hash KEYS[7] is set to ARGV[8]
 * when the document is written (an outcome beside its trajectory), counted in the bytes as `outcomes`, unless
 * KEYS[8] (the group's statistics) exists: its group job ran already and would never let the outcome go. With
 * ARGV[9] not empty (putDocIf), nothing is written or counted unless the document's status (KEYS[5], else the stored
 * document's) is ARGV[9] ("s:" and the status), or the SHA-1 of its stored text is ARGV[9] ("t:" and the hex): -1.
 * Returns 1 when it wrote.
 */
const PUT_DOC = redisScript(
  'put_doc',
  `
if redis.call('STRLEN', KEYS[1]) == string.len(ARGV[2]) and redis.call('GET', KEYS[1]) == ARGV[2] then return 0 end
local old = redis.call('STRLEN', KEYS[1])
if ARGV[6] == '1' and old > 0 then return 0 end
if ARGV[9] ~= '' then
  local kind, want = string.sub(ARGV[9], 1, 2), string.sub(ARGV[9], 3)
  if kind == 't:' then
    if old == 0 or redis.sha1hex(redis.call('GET', KEYS[1])) ~= want then return -1 end
  else
    local now = redis.call('HGET', KEYS[5], ARGV[1])
    if not now and old > 0 then now = cjson.decode(redis.call('GET', KEYS[1])).status end
    if now ~= want then return -1 end
  end
end
redis.call('SET', KEYS[1], ARGV[2])
if redis.call('ZSCORE', KEYS[2], ARGV[1]) == false then
  -- First-write order, exactly: Redis's clock in microseconds, and past the last one stored (two writes in one
  -- tick, a clock stepped back), written out whole ("%.0f": below 2^53 every integer is exact).
  local t = redis.call('TIME')
  local score = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  if last[2] ~= nil and tonumber(last[2]) >= score then score = tonumber(last[2]) + 1 end
  redis.call('ZADD', KEYS[2], string.format('%.0f', score), ARGV[1])
end
redis.call('HINCRBY', KEYS[4], 'doc:' .. ARGV[4], string.len(ARGV[2]) - old)
if ARGV[7] ~= '' and redis.call('EXISTS', KEYS[8]) == 0 then
  local was = redis.call('HSTRLEN', KEYS[7], ARGV[7])
  redis.call('HSET', KEYS[7], ARGV[7], ARGV[8])
  redis.call('HINCRBY', KEYS[4], 'outcomes', string.len(ARGV[8]) - was + (was == 0 and string.len(ARGV[7]) or 0))
end
if ARGV[5] ~= '' then
  local was = redis.call('HGET', KEYS[5], ARGV[1])
  if was ~= ARGV[5] then
    if was then redis.call('HINCRBY', KEYS[6], was, -1) end
    redis.call('HINCRBY', KEYS[6], ARGV[5], 1)
    redis.call('HSET', KEYS[5], ARGV[1], ARGV[5])
  end
end
for i = 10, #ARGV, 3 do
  if ARGV[i + 2] == '0' or old == 0 then redis.call('HINCRBY', KEYS[3], ARGV[i], ARGV[i + 1]) end
end
return 1
`,
  8,
  { largeValues: true },
);

/** Deletes a group's outcomes (KEYS[1]) and takes their bytes off the run's `outcomes` count (KEYS[2]). Returns those bytes. */
const DROP_OUTCOMES = redisScript(
  'drop_outcomes',
  `
local fields = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #fields, 2 do n = n + string.len(fields[i]) + string.len(fields[i + 1]) end
if n > 0 then redis.call('HINCRBY', KEYS[2], 'outcomes', -n) end
redis.call('DEL', KEYS[1])
return n
`,
  2,
);

/**
 * Creates a run's record (KEYS[1]) unless it exists (0), or unless keys of a run of that name are there without it
 * (KEYS[2..]: its counters, ledger, ids and byte counts; -1): data of an earlier run of the name whose record is gone (a
 * Redis restarted without persistence while that run's workers kept writing), which a new run would take for its own.
 */
const CREATE_RUN = redisScript(
  'create_run',
  `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return -1 end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
`,
  8,
);

const APPEND_STEP = redisScript(
  'append_step',
  `
if redis.call('LLEN', KEYS[1]) == tonumber(ARGV[1]) then
  local old = redis.call('STRLEN', KEYS[3])
  redis.call('RPUSH', KEYS[1], ARGV[2])
  redis.call('SET', KEYS[3], ARGV[3])
  redis.call('HINCRBY', KEYS[2], 'steps', string.len(ARGV[2]) + string.len(ARGV[3]) - old)
  for i = 4, #ARGV, 2 do redis.call('HINCRBY', KEYS[4], ARGV[i], ARGV[i + 1]) end
  return 1
end
return 0
`,
  4,
);

/** Adds outstanding jobs: each new one counts for its queue (the part of its key before '|'), and the run is not finished. */
const ADD_PENDING = redisScript(
  'add_pending',
  `
for i = 1, #ARGV do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    redis.call('HINCRBY', KEYS[2], string.match(ARGV[i], '^[^|]*'), 1)
  end
end
redis.call('DEL', KEYS[3])
return 1
`,
  3,
);

/**
 * Removes an outstanding job; the last one out marks when the run finished. With `counted`, a job that finished: also
 * counted in the minute's throughput (KEYS[4], ARGV[3]), only if it was outstanding.
 */
const pendingOut = (counted: boolean) => `
local removed = redis.call('SREM', KEYS[1], ARGV[1])
if removed == 1 then
  redis.call('HINCRBY', KEYS[2], string.match(ARGV[1], '^[^|]*'), -1)
  if redis.call('SCARD', KEYS[1]) == 0 then redis.call('SET', KEYS[3], ARGV[2]) end${counted ? "\n  redis.call('HINCRBY', KEYS[4], ARGV[3], 1)" : ''}
end
return removed
`;
const DONE_PENDING = redisScript('done_pending', pendingOut(false), 3);
const FINISH_PENDING = redisScript('finish_pending', pendingOut(true), 4);

/** A hash of counters as numbers, without the zeros (a status nobody has any more). */
function toCounts(hash: Record<string, string>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(hash)) if (Number(v) !== 0) out[k] = Number(v);
  return out;
}

/** Tries of changeDoc before it gives up: each refused one means another write to the document came in between. */
const CHANGE_TRIES = 50;

/**
 * Changes a stored environment or scenario by `change` (null: leaves it as it is), written over its very text as
 * read: a write made in between (a job's report that keeps the status) is read again and changed in turn instead of
 * being written over by the copy read before it. `counts` go with the write. False when `change` left it, or it is
 * not stored.
 */
export async function changeDoc<K extends 'env' | 'scenario'>(
  store: Pick<RunStore, 'getDocBuffer' | 'putDocIf'>,
  runId: string,
  kind: K,
  id: string,
  change: (doc: RunDocuments[K]) => RunDocuments[K] | null,
  counts?: readonly FunnelCount[],
): Promise<boolean> {
  for (let i = 0; i < CHANGE_TRIES; i += 1) {
    const bytes = await store.getDocBuffer(runId, kind, id);
    if (!bytes) return false;
    const next = change(JSON.parse(bytes.toString('utf8')) as RunDocuments[K]);
    if (!next) return false;
    if (await store.putDocIf(runId, kind, id, next, { textSha1: createHash('sha1').update(bytes).digest('hex') }, counts)) return true;
  }
  throw new Error(`${kind} ${id} of run ${runId}: written by others ${CHANGE_TRIES} times while it was being changed`);
}

export function createRedisRunStore(redis: Redis, prefix: string): RunStore {
  const cluster = isCluster(redis);
  const keys = (runId: string) => runKeys(prefix, runId, cluster);
  /**
   * Writes a document and its counts in one script; with `onlyNew`, only where none is stored yet; with `ifStatus`, only
   * as putDocIf expects. 1 when it wrote, 0 when it did not (the value stored already, or one stored with `onlyNew`), -1
   * when the expectation failed.
   */
  const put = async (runId: string, kind: DocKind, id: string, text: string | Buffer, status: string, counts: readonly FunnelCount[], onlyNew = false, outcome?: DocOutcome, ifStatus = '') => {
    const k = keys(runId);
    // A large document (a trajectory) goes as bytes, on its own; a small one joins the connection's batch (redisScript).
    // Without an outcome, KEYS[7] and KEYS[8] are only keys of the run's slot that the script does not touch.
    const wrote = await PUT_DOC(
      redis,
      [k.doc(kind, id), k.ids(kind), k.funnel, k.bytes, k.statusOf(kind), k.statuses(kind), outcome ? k.outcomes(outcome.group) : k.funnel, outcome ? k.doc('group', outcome.group) : k.funnel],
      [id, text, String(Date.now()), kind, status, onlyNew ? '1' : '0', outcome ? id : '', outcome?.json ?? '', ifStatus, ...counts.flatMap(c => [`${c.stage}|${c.outcome}`, String(c.n), c.once ? '1' : '0'])],
    );
    return Number(wrote);
  };
  /** A document's text and its counted status, as putDoc writes it. */
  const docText = (kind: DocKind, id: string, value: unknown) => {
    // A trajectory's final state arrives as JSON text (RawJson) and is written as it is.
    const text = stringifyJson(value);
    if (text === undefined) throw new Error(`${kind} ${id}: the document is not JSON`);
    return { text, status: COUNTED_STATUS.has(kind) ? ((value as { status?: string }).status ?? '') : '' };
  };
  return {
    async createRun(record) {
      const k = keys(record.id);
      const created = Number(await CREATE_RUN(redis, [k.record, k.funnel, k.ledger, k.ids('trajectory'), k.ids('env'), k.ids('scenario'), k.bytes, k.pending], [JSON.stringify(record)]));
      if (created === -1) {
        throw new RequestError(
          `Redis holds data of an earlier run named "${record.id}" (its counters, ledger or documents) but not its record: Redis lost the run (a restart without persistence) while workers kept writing for it. A new run of that name would count that data as its own. Stop the workers of the old run, delete what is left with envfleet runs delete --run ${record.id}, then start again; or give another --run name.`,
        );
      }
      if (created === 1) await redis.sadd(runsKey(prefix), record.id);
      return created === 1;
    },
    async getRun(runId) {
      const raw = await redis.get(keys(runId).record);
      return raw === null ? null : (JSON.parse(raw) as RunRecord);
    },
    listRuns: () => redis.smembers(runsKey(prefix)),
    async putDoc(runId, kind, id, value, counts = []) {
      const { text, status } = docText(kind, id, value);
      await put(runId, kind, id, text, status, counts);
    },
    async putDocIf(runId, kind, id, value, expect, counts = []) {
      const { text, status } = docText(kind, id, value);
      if (expect === null) return (await put(runId, kind, id, text, status, counts, true)) === 1;
      const ifStatus = typeof expect === 'string' ? `s:${expect}` : `t:${expect.textSha1}`;
      if (ifStatus.length === 2) throw new Error(`${kind} ${id}: putDocIf needs the status (or the text's SHA-1) the document is expected to have`);
      return (await put(runId, kind, id, text, status, counts, false, undefined, ifStatus)) !== -1;
    },
    async putDocText(runId, kind, id, text, counts = []) {
      if (COUNTED_STATUS.has(kind)) throw new Error(`${kind} ${id}: a ${kind} document carries a counted status; store it with putDoc`);
      await put(runId, kind, id, text, '', counts);
    },
    async addDocText(runId, kind, id, text, counts = [], outcome) {
      if (COUNTED_STATUS.has(kind)) throw new Error(`${kind} ${id}: a ${kind} document carries a counted status; store it with putDoc`);
      return (await put(runId, kind, id, text, '', counts, true, outcome)) === 1;
    },
    async groupOutcomes(runId, group, ids) {
      return ids.length ? redis.hmget(keys(runId).outcomes(group), ...ids) : [];
    },
    async dropGroupOutcomes(runId, group) {
      const k = keys(runId);
      await DROP_OUTCOMES(redis, [k.outcomes(group), k.bytes], []);
    },
    async getDoc<K extends DocKind>(runId: string, kind: K, id: string) {
      const raw = await redis.get(keys(runId).doc(kind, id));
      return raw === null ? null : (JSON.parse(raw) as RunDocuments[K]);
    },
    getDocText: (runId, kind, id) => redis.get(keys(runId).doc(kind, id)),
    getDocBuffer: (runId, kind, id) => redis.getBuffer(keys(runId).doc(kind, id)),
    listDocIds: (runId, kind) => redis.zrange(keys(runId).ids(kind), '0', '-1'),
    async statusCounts(runId, kind) {
      return toCounts(await redis.hgetall(keys(runId).statuses(kind)));
    },
    async idsWithStatus(runId, kind, statuses) {
      const k = keys(runId);
      const [ids, statusOf] = await Promise.all([redis.zrange(k.ids(kind), '0', '-1'), redis.hgetall(k.statusOf(kind))]);
      const out: string[] = [];
      for (const id of ids) {
        let status = statusOf[id];
        if (status === undefined) {
          const raw = await redis.get(k.doc(kind, id));
          status = raw === null ? undefined : (JSON.parse(raw) as { status?: string }).status;
        }
        if (status !== undefined && statuses.includes(status)) out.push(id);
      }
      return out;
    },
    async appendStep(runId, envId, round, index, step, stateAfter, counts = []) {
      const k = keys(runId);
      // A Python session's state arrives as the text it wrote (RawJson) and is kept as it is.
      const state = stringifyJson(stateAfter);
      if (state === undefined) throw new Error(`probe step ${index} of ${envId}: the state after it is not JSON`);
      const added = await APPEND_STEP(
        redis,
        [k.steps(envId, round), k.bytes, k.probeState(envId, round), k.funnel],
        [String(index), JSON.stringify(step), state, ...counts.flatMap(c => [`${c.stage}|${c.outcome}`, String(c.n)])],
      );
      return added === 1;
    },
    async probeStateJson(runId, envId, round) {
      return (await redis.get(keys(runId).probeState(envId, round))) ?? undefined;
    },
    async steps(runId, envId, round) {
      const raw = await redis.lrange(keys(runId).steps(envId, round), 0, -1);
      return raw.map(r => JSON.parse(r) as ProbeStepRecord);
    },
    async count(runId, stage, outcome, n = 1) {
      await redis.hincrby(keys(runId).funnel, `${stage}|${outcome}`, n);
    },
    async noteReason(runId, stage, outcome, reason) {
      // (an example, not the record: every item's whole reason is in its document or the log; status shows 1,000 units)
      await redis.hsetnx(keys(runId).reasons, `${stage}|${outcome}`, cutText(reason, 1000));
    },
    async reasons(runId) {
      return redis.hgetall(keys(runId).reasons);
    },
    async counters(runId) {
      const hash = await redis.hgetall(keys(runId).funnel);
      const out: Record<string, Record<string, number>> = {};
      for (const [field, value] of Object.entries(hash)) {
        const [stage, outcome] = field.split('|') as [string, string];
        (out[stage] ??= {})[outcome] = Number(value);
      }
      return out;
    },
    async bytes(runId) {
      return toCounts(await redis.hgetall(keys(runId).bytes));
    },
    async finishPending(runId, key) {
      const k = keys(runId);
      const now = Date.now();
      const minute = new Date(Math.floor(now / 60_000) * 60_000).toISOString();
      await FINISH_PENDING(redis, [k.pending, k.pendingByStage, k.finishedAt, k.throughput], [key, new Date(now).toISOString(), minute]);
    },
    async throughput(runId) {
      const h = await redis.hgetall(keys(runId).throughput);
      return Object.entries(h)
        .map(([minute, count]) => ({ minute, count: Number(count) }))
        .sort((a, b) => a.minute.localeCompare(b.minute));
    },
    async claim(runId, key, owner) {
      const k = keys(runId).claim(key);
      const set = await redis.set(k, owner, 'NX');
      return set === 'OK' ? owner : ((await redis.get(k)) ?? owner);
    },
    async addPending(runId, entries) {
      const k = keys(runId);
      if (entries.length) await ADD_PENDING(redis, [k.pending, k.pendingByStage, k.finishedAt], entries);
    },
    async donePending(runId, key) {
      const k = keys(runId);
      return Number(await DONE_PENDING(redis, [k.pending, k.pendingByStage, k.finishedAt], [key, new Date().toISOString()])) === 1;
    },
    pending: runId => redis.smembers(keys(runId).pending),
    pendingCount: runId => redis.scard(keys(runId).pending),
    async pendingByStage(runId) {
      return toCounts(await redis.hgetall(keys(runId).pendingByStage));
    },
    finishedAt: runId => redis.get(keys(runId).finishedAt),
    async running(runId, stage, jobId, now) {
      const key = keys(runId).active(stage);
      if (now) await redis.sadd(key, jobId);
      else await redis.srem(key, jobId);
    },
    async runningByStage(runId, stages) {
      const pipeline = redis.pipeline();
      for (const s of stages) pipeline.scard(keys(runId).active(s));
      const replies = (await pipeline.exec()) ?? [];
      const out: Record<string, number> = {};
      stages.forEach((s, i) => {
        const n = Number(replies[i]?.[1] ?? 0);
        if (n) out[s] = n;
      });
      return out;
    },
  };
}
