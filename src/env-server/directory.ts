import { isCluster, tag, type Redis } from '../redis/connection.js';
import type { SessionResult } from './sessions.js';
import { jsonMemberText } from '../util/json-member.js';
import { RawJson } from '../util/raw-json.js';

/**
 * The directory of live sessions that several `envfleet serve` processes share through one Redis: which
 * process holds which session, where each process answers, and the results of ended sessions. A request
 * that lands on a process that does not hold its session is forwarded to the one that does
 * (http/env-server/forward.ts), so a trainer needs no routing of its own.
 */

/** One serving process as its heartbeat describes it. */
export interface ServerEntry {
  readonly id: string;
  /** Where the other processes reach it (--advertise-url). */
  readonly url: string;
  /** What it serves (a run name, or the export it was started from). */
  readonly serves: string;
  /**
   * What it serves, exactly: `run:NAME` for a run in Redis, `export:sha256:…` for an export's files (their served
   * lines and the limits). A new session goes to a peer only when this is equal: an export served under a run's name
   * (edited, or older than the run) is not the run. Absent in the entries of processes older than this field.
   */
  readonly content?: string;
  readonly active: number;
  readonly max: number;
}

/** Where a session is, as the directory knows it. */
export type SessionWhere =
  | { readonly kind: 'held'; readonly server: ServerEntry }
  | { readonly kind: 'ended'; readonly result: SessionResult }
  /** Its process stopped without ending it (killed, or its Redis entry expired): the environment is gone. */
  | { readonly kind: 'lost'; readonly serverId: string }
  | { readonly kind: 'unknown' };

export interface SessionDirectory {
  /** This process's id in the directory. */
  readonly serverId: string;
  /** Records that this process holds the session. */
  claim(sessionId: string): Promise<void>;
  /** Records the result of a session this process ended (`json`: the result as JSON text; kept for the result TTL) and drops its holder. */
  release(sessionId: string, json: string): Promise<void>;
  locate(sessionId: string): Promise<SessionWhere>;
  /** Says this process is alive, where it answers and how full it is; the entry expires unless renewed. */
  heartbeat(load: { readonly active: number; readonly max: number }): Promise<void>;
  /** The other live processes. */
  peers(): Promise<ServerEntry[]>;
  /**
   * The other live processes serving exactly the same as this one (ServerEntry.content) with room for a session, the
   * roomiest first; with `exceptSaidFull`, not those that answered an open with OVER_CAPACITY within a heartbeat's
   * interval (noteFull): for the places an OVER_CAPACITY answer names, while an open still asks each in turn.
   */
  peersWithRoom(exceptSaidFull?: boolean): Promise<ServerEntry[]>;
  /** A peer answered an open with OVER_CAPACITY: its heartbeat's room is out of date until it beats again (a third of the heartbeat TTL). */
  noteFull(peer: ServerEntry): void;
  /** Removes this process's entry (at shutdown, after its sessions have been released). */
  leave(): Promise<void>;
}

export interface RedisDirectoryOptions {
  readonly serverId: string;
  readonly url: string;
  readonly serves: string;
  /** What it serves, exactly (ServerEntry.content). */
  readonly content: string;
  /** A process whose heartbeat is older than this is gone (its sessions are lost). */
  readonly heartbeatTtlMs: number;
  /** How long an ended session's result stays readable from every process. */
  readonly resultTtlMs: number;
}

/** Sessions outlive no process, but a killed process leaves its entries behind: they expire after this. */
const HOLDER_TTL_S = 7 * 24 * 3600;

const isServerEntry = (v: unknown): v is ServerEntry => {
  const e = v as Partial<ServerEntry> | null;
  return typeof e === 'object' && e !== null && typeof e.id === 'string' && typeof e.url === 'string' && typeof e.active === 'number' && typeof e.max === 'number';
};

/**
 * A result read back with its final state as the text the ending process wrote (parsing the whole result made it a
 * value: a Python state's 1.0 would be written 1). A result an earlier version wrote kept that text beside the value,
 * as `finalStateJson`, where the two differed.
 */
function withStateText(result: SessionResult & { finalStateJson?: string }, text: string): SessionResult {
  const { finalStateJson, ...rest } = result;
  const state = typeof finalStateJson === 'string' ? finalStateJson : result.finalState === null || result.finalState === undefined ? undefined : jsonMemberText(text, 'finalState');
  return { ...rest, finalState: state === undefined || state === 'null' ? null : new RawJson(state) };
}

const parse = (text: string | null): unknown => {
  if (text === null) return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
};

/**
 * The directory in Redis, under `PREFIX:serve:` (keys: `srv:ID`, `servers`, `sess:SID`, `res:SID`).
 * On a Redis Cluster the servers' keys share the hash tag `{servers}` (one MULTI and one MGET touch
 * several of them) and a session's two keys share its id as tag (`sess:{SID}`, `res:{SID}`), so
 * sessions spread over the nodes.
 */
export function createRedisSessionDirectory(redis: Redis, prefix: string, options: RedisDirectoryOptions): SessionDirectory {
  const cluster = isCluster(redis);
  const servers = `${prefix}:serve:${tag(cluster, 'servers')}`;
  const k = {
    servers: cluster ? servers : `${prefix}:serve:servers`,
    server: (id: string) => (cluster ? `${servers}:srv:${id}` : `${prefix}:serve:srv:${id}`),
    holder: (sid: string) => `${prefix}:serve:sess:${tag(cluster, sid)}`,
    result: (sid: string) => `${prefix}:serve:res:${tag(cluster, sid)}`,
  };
  const self = options.serverId;
  let left = false;

  const entries = async (ids: string[]): Promise<Map<string, ServerEntry>> => {
    const out = new Map<string, ServerEntry>();
    if (!ids.length) return out;
    const texts = await redis.mget(ids.map(k.server));
    ids.forEach((id, i) => {
      const e = parse(texts[i] ?? null);
      if (isServerEntry(e)) out.set(id, e);
    });
    return out;
  };

  // Peers that said OVER_CAPACITY, by id, with when: left out of the places an OVER_CAPACITY names for a heartbeat's
  // interval (a third of its TTL, as serve beats), after which their entry says how full they are since.
  const saidFull = new Map<string, number>();
  const fullForMs = options.heartbeatTtlMs / 3;

  return {
    serverId: self,
    async claim(sessionId) {
      await redis.set(k.holder(sessionId), self, 'EX', HOLDER_TTL_S);
    },
    async release(sessionId, json) {
      await redis.multi().set(k.result(sessionId), json, 'PX', options.resultTtlMs).del(k.holder(sessionId)).exec();
    },
    async locate(sessionId) {
      const [holder, resultText] = await redis.mget(k.holder(sessionId), k.result(sessionId));
      const result = parse(resultText ?? null);
      if (result && typeof result === 'object') return { kind: 'ended', result: withStateText(result as SessionResult & { finalStateJson?: string }, resultText!) };
      if (!holder) return { kind: 'unknown' };
      const server = (await entries([holder])).get(holder);
      // This process's own entry naming a session it does not hold cannot happen: ids are new per process.
      if (!server || holder === self) return { kind: 'lost', serverId: holder };
      // Another id at this process's own address: the process this one replaced there (killed and restarted on the
      // same port), its heartbeat not yet expired. Two live processes cannot listen at one address, so its sessions
      // are gone now; forwarding there would only reach this process again (UNKNOWN_SESSION for the first 10 s).
      if (server.url === options.url) return { kind: 'lost', serverId: holder };
      return { kind: 'held', server };
    },
    async heartbeat(load) {
      // A beat already on its way when the process leaves must not bring its entry back.
      if (left) return;
      const entry: ServerEntry = { id: self, url: options.url, serves: options.serves, content: options.content, active: load.active, max: load.max };
      // The set of ids outlives no process by long: renewed by every beat, and cleaned of dead ids by peers().
      await redis.multi().set(k.server(self), JSON.stringify(entry), 'PX', options.heartbeatTtlMs).sadd(k.servers, self).pexpire(k.servers, options.heartbeatTtlMs * 6).exec();
      if (left) await redis.multi().del(k.server(self)).srem(k.servers, self).exec();
      else await this.peers();
    },
    async peers() {
      const ids = (await redis.smembers(k.servers)).filter(id => id !== self);
      const live = await entries(ids);
      const gone = ids.filter(id => !live.has(id));
      if (gone.length) await redis.srem(k.servers, ...gone);
      // An entry at this process's own address is the process it replaced there (see locate), not a peer.
      return [...live.values()].filter(e => e.url !== options.url);
    },
    async peersWithRoom(exceptSaidFull = false) {
      const now = Date.now();
      for (const [id, at] of saidFull) if (now - at >= fullForMs) saidFull.delete(id);
      return (await this.peers()).filter(p => p.content === options.content && p.active < p.max && !(exceptSaidFull && saidFull.has(p.id))).sort((a, b) => b.max - b.active - (a.max - a.active));
    },
    noteFull(peer) {
      saidFull.set(peer.id, Date.now());
    },
    async leave() {
      left = true;
      await redis.multi().del(k.server(self)).srem(k.servers, self).exec();
    },
  };
}
