import { tag } from '../redis/slots.js';

/**
 * Where a run's data lives in Redis: every key a run owns starts with `runKey(prefix, runId)`, so
 * deleting a run is deleting that key and the keys under it (plus its jobs in the queues). The store,
 * the response cache, the ledger, the trajectory stream and run control all take their keys from here.
 *
 * On a Redis Cluster (`cluster` true) the run's id is the hash tag (`PREFIX:run:{RUN}:…`): every key
 * of one run is in one slot, so the run's scripts and MULTIs stay atomic, and different runs spread
 * over the nodes. On one Redis the layout is the one it always was (`PREFIX:run:RUN:…`).
 */
export const runKey = (prefix: string, runId: string, cluster = false) => `${prefix}:run:${tag(cluster, runId)}`;

/** The set of every run's id. */
export const runsKey = (prefix: string) => `${prefix}:runs`;

/** The keys of recently used runs (the store, the cache, the ledger and the stream ask for them on every command). */
const recent = new Map<string, RunKeys>();
const RECENT_RUNS = 256;

/** The keys of one run. */
export function runKeys(prefix: string, runId: string, cluster = false): RunKeys {
  const id = `${cluster ? 'c' : 's'}${prefix}\u0000${runId}`;
  let keys = recent.get(id);
  if (!keys) {
    if (recent.size >= RECENT_RUNS) recent.delete(recent.keys().next().value!);
    recent.set(id, (keys = keysOf(runKey(prefix, runId, cluster))));
  }
  return keys;
}

function keysOf(r: string) {
  return {
    /** The run record (JSON). */
    record: r,
    doc: (kind: string, id: string) => `${r}:doc:${kind}:${id}`,
    /** Ids of a kind, scored by first write. */
    ids: (kind: string) => `${r}:ids:${kind}`,
    /** Counters: `stage|outcome` → n. */
    funnel: `${r}:funnel`,
    /** For failures and drops: `stage|outcome` → the first item's reason (status shows one example of each). */
    reasons: `${r}:reasons`,
    /** Id → status of the documents that have one (environments, scenarios). */
    statusOf: (kind: string) => `${r}:status-of:${kind}`,
    /** Status → how many documents of the kind have it. */
    statuses: (kind: string) => `${r}:statuses:${kind}`,
    /** Bytes the run keeps, by area (`doc:KIND`, `steps`, `cache:STAGE`). */
    bytes: `${r}:bytes`,
    steps: (envId: string, round: number) => `${r}:steps:${envId}:${round}`,
    /** The environment's state after the latest recorded step of a probe round (JSON). */
    probeState: (envId: string, round: number) => `${r}:probe-state:${envId}:${round}`,
    throughput: `${r}:throughput`,
    claim: (key: string) => `${r}:claim:${key}`,
    /** Outstanding jobs (`queue|jobId`), and how many per queue. */
    pending: `${r}:pending`,
    pendingByStage: `${r}:pending-by-stage`,
    /** Jobs running now, per queue. */
    active: (stage: string) => `${r}:active:${stage}`,
    /** When the run last had no outstanding job (ISO time), cleared when work is added. */
    finishedAt: `${r}:finished-at`,
    /** A cached model response of this run. */
    cache: (hash: string) => `${r}:cache:${hash}`,
    ledger: `${r}:ledger`,
    /** The model calls the ledger counted lately (their entries' ids, scored by when), kept LEDGER_ENTRY_TTL_S: a write sent again is not counted again. */
    ledgerIds: `${r}:ledger-ids`,
    trajectories: `${r}:trajectories`,
    /** A group's outcomes (trajectory id → its GroupMember as JSON), written with each trajectory (RunStore.addDocText). */
    outcomes: (groupId: string) => `${r}:outcomes:${groupId}`,
    sinkLock: `${r}:sink-lock`,
    control: `${r}:control`,
    /** Parked jobs of a paused run: job key → token. */
    parked: `${r}:parked`,
    /** Rate-limit streaks: job key → when the streak began. */
    rateLimited: `${r}:rate-limited`,
  };
}

export type RunKeys = Readonly<ReturnType<typeof keysOf>>;
