import { Cluster, Redis as SingleRedis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { AppError, RedisUnsafeError } from '../errors.js';
import { scriptDefinitions, unbatchedCommands } from './scripts.js';
import { isCluster } from './slots.js';

/**
 * A connection to the fleet's Redis: one server (ioredis `Redis`) or a Redis Cluster (ioredis
 * `Cluster`, when ENVFLEET_REDIS_CLUSTER_NODES is set). Both speak the same commands; what differs is
 * that in a cluster every Lua script, MULTI and multi-key command must touch keys of one hash slot
 * (see `tag` and docs/scaling.md).
 */
export type Redis = SingleRedis | Cluster;
export type { Cluster } from 'ioredis';

/** Where the fleet's Redis is: `config.redis` satisfies this. */
export interface RedisTarget {
  readonly url: string;
  /** `host:port` of some nodes of a Redis Cluster; empty for one server at `url`. */
  readonly clusterNodes: readonly string[];
}

export { isCluster, tag } from './slots.js';

/**
 * `worker`: blocking BullMQ connections; commands wait through reconnects (`maxRetriesPerRequest: null`,
 * as BullMQ requires). `producer`: the CLI and anything that enqueues; commands fail at once while
 * Redis is down (`enableOfflineQueue: false`) so a user gets an error instead of a hang.
 */
export type RedisRole = 'worker' | 'producer';

const ROLE_OPTIONS: Record<RedisRole, RedisOptions> = {
  worker: { maxRetriesPerRequest: null, enableReadyCheck: true },
  producer: {
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    connectTimeout: 5_000,
    // Keep reconnecting in the background, but commands issued while down fail fast.
    retryStrategy: (times: number) => Math.min(times * 200, 2_000),
  },
};

export function createRedisConnection(target: string | RedisTarget, role: RedisRole, extra: RedisOptions = {}): Redis {
  const { url, clusterNodes } = typeof target === 'string' ? { url: target, clusterNodes: [] } : target;
  // The Lua scripts (src/redis/scripts.ts) are commands of the connection from its start: run by their SHA, and
  // batched like any other command on an auto-pipelined connection.
  // A script that carries large values goes out on its own even then (unbatchedCommands).
  const options: RedisOptions = {
    ...ROLE_OPTIONS[role],
    lazyConnect: true,
    ...extra,
    scripts: { ...scriptDefinitions(), ...extra.scripts },
    ...(extra.enableAutoPipelining ? { autoPipeliningIgnoredCommands: [...unbatchedCommands(), ...(extra.autoPipeliningIgnoredCommands ?? [])] } : {}),
  };
  const redis: Redis = clusterNodes.length ? createCluster(url, clusterNodes, options) : new SingleRedis(url, options as never);
  watchErrors(redis);
  return redis;
}

/**
 * Why Redis refused a connection (wrong credentials, a database it does not have), kept for the
 * message of `waitForRedis`: ioredis reports these only as an 'error' event, and its commands then
 * fail with "Connection is closed." (or, for a failed SELECT, go on to database 0).
 */
const refusals = new WeakMap<Redis, Error>();

/** ioredis's messages for a refused AUTH / HELLO: NOAUTH (a password is needed), WRONGPASS, and older servers' "invalid password". */
const isAuthError = (message: string): boolean => /^(NOAUTH|WRONGPASS)\b|^ERR (invalid (username-)?password|AUTH <password> called without any password)/.test(message);

/**
 * Connection errors surface through commands and `waitForRedis`; an unhandled 'error' event would
 * otherwise crash the process. A refused SELECT (a database number beyond the server's `databases`)
 * closes the connection for good: ioredis would otherwise go on to database 0, silently.
 */
function watchErrors(redis: Redis): void {
  redis.on('error', (err: unknown) => {
    const e = err as { message?: unknown; command?: { name?: unknown } } | null;
    const message = typeof e?.message === 'string' ? e.message : '';
    if (e?.command?.name === 'select') {
      refusals.set(redis, err as Error);
      redis.disconnect();
    } else if (isAuthError(message)) {
      refusals.set(redis, err as Error);
    }
  });
}

/**
 * A Cluster client seeded with `nodes`; the credentials and TLS of `url` (rediss://) apply to every
 * node. The role's options go to each node's connection, except those a Cluster takes itself.
 */
function createCluster(url: string, nodes: readonly string[], options: RedisOptions): Cluster {
  const parsed = new URL(url);
  // The reply mapping stays the Cluster's default (as for one server).
  const { retryStrategy, enableOfflineQueue, lazyConnect, enableReadyCheck, enableAutoPipelining, autoPipeliningIgnoredCommands, scripts, replyMapping: _replyMapping, ...nodeOptions } = options;
  const redisOptions: Omit<NonNullable<ClusterOptions['redisOptions']>, 'replyMapping'> = {
    ...nodeOptions,
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(parsed.protocol === 'rediss:' ? { tls: {} } : {}),
  };
  const clusterOptions: Omit<ClusterOptions, 'redisOptions'> = {
    lazyConnect: lazyConnect ?? true,
    ...(enableOfflineQueue === undefined ? {} : { enableOfflineQueue }),
    ...(enableReadyCheck === undefined ? {} : { enableReadyCheck }),
    ...(enableAutoPipelining === undefined ? {} : { enableAutoPipelining }),
    ...(autoPipeliningIgnoredCommands === undefined ? {} : { autoPipeliningIgnoredCommands }),
    ...(scripts === undefined ? {} : { scripts: scripts as NonNullable<ClusterOptions['scripts']> }),
    ...(retryStrategy ? { clusterRetryStrategy: (times: number) => retryStrategy(times) ?? null } : {}),
  };
  return new Cluster(
    nodes.map(node => {
      const at = node.lastIndexOf(':');
      // An IPv6 address is written in brackets in the setting ([::1]:7000); the socket wants it bare.
      return { host: node.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port: Number(node.slice(at + 1)) };
    }),
    { ...clusterOptions, redisOptions },
  );
}

/** A new connection like `redis` (same server or cluster, same options), e.g. for a subscriber. */
export function duplicateConnection(redis: Redis): Redis {
  const copy: Redis = isCluster(redis) ? redis.duplicate() : redis.duplicate();
  watchErrors(copy);
  return copy;
}

/**
 * Every key that matches `match`, in batches: on one server, or on every master of a cluster (a SCAN
 * sees one node's keys only).
 */
export async function* scanKeys(redis: Redis, match: string, count = 1_000): AsyncGenerator<string[]> {
  const servers = isCluster(redis) ? redis.nodes('master') : [redis];
  for (const server of servers) {
    let cursor = '0';
    do {
      const [next, keys] = await server.scan(cursor, 'MATCH', match, 'COUNT', count);
      cursor = next;
      if (keys.length) yield keys;
    } while (cursor !== '0');
  }
}

/** The URL with its password hidden, for messages and logs. */
export function redactRedisUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable REDIS_URL)';
  }
}

/** Where Redis is, for messages: the URL without its password, or the cluster's nodes. */
export function describeRedis(target: string | RedisTarget): string {
  if (typeof target === 'string' || target.clusterNodes.length === 0) return redactRedisUrl(typeof target === 'string' ? target : target.url);
  return `the Redis Cluster at ${target.clusterNodes.join(',')}`;
}

/**
 * Connects and PINGs within `timeoutMs`, or throws REDIS_UNAVAILABLE with a message that says what to do.
 */
export async function waitForRedis(redis: Redis, where: string | RedisTarget, timeoutMs = 5_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    if (redis.status === 'wait') await Promise.race([redis.connect(), timeout]);
    await Promise.race([redis.ping(), timeout]);
    if (redis.isCluster) {
      // A cluster answers PING while its slots are still being assigned or a master is down.
      const info = String(await Promise.race([redis.cluster('INFO'), timeout]));
      const state = /cluster_state:(\w+)/.exec(info)?.[1] ?? 'unknown';
      if (state !== 'ok') throw new Error(`the cluster answers but its cluster_state is ${state}`);
    }
    const refused = refusals.get(redis);
    if (refused) throw refusal(where, refused);
  } catch (err) {
    if (err instanceof AppError) throw err;
    const refused = refusals.get(redis) ?? authErrorOf(err);
    throw refused ? refusal(where, refused) : unavailable(where, err);
  } finally {
    clearTimeout(timer);
  }
}

/** A Cluster's auth error is on its lastNodeError (ioredis's own message says only that no node answered). */
const authErrorOf = (err: unknown): Error | undefined => {
  const last = (err as { lastNodeError?: unknown } | null)?.lastNodeError;
  return last instanceof Error && isAuthError(last.message) ? last : undefined;
};

/** Redis answered, and refused: the credentials of REDIS_URL, or the database it names. What, where, what to do. */
const refusal = (where: string | RedisTarget, err: Error) => {
  const at = describeRedis(where);
  if (isAuthError(err.message)) {
    return new RedisUnsafeError(
      'REDIS_REFUSED',
      `Redis at ${at} refused the credentials of REDIS_URL (${err.message}). ` +
        (err.message.startsWith('NOAUTH')
          ? 'This Redis needs a password: put it in REDIS_URL as redis://:PASSWORD@host:port (or redis://USER:PASSWORD@host:port for an ACL user).'
          : 'Fix the user and password in REDIS_URL (redis://USER:PASSWORD@host:port; percent-encode special characters), or create that user on the server (ACL SETUSER).'),
      { cause: err },
    );
  }
  const url = typeof where === 'string' ? where : where.url;
  const db = dbOf(url);
  return new RedisUnsafeError(
    'REDIS_REFUSED',
    `Redis at ${at} refused to select database ${db} (${err.message}): it has fewer databases than that (its \`databases\` setting, 16 by default, numbers them from 0). ` +
      `Name a database it has in REDIS_URL (for example ${withDb(url, 0)}), or raise \`databases\` in redis.conf and restart Redis.`,
    { cause: err },
  );
};

/** `url` naming database `db` instead, its password hidden. */
const withDb = (url: string, db: number): string => {
  try {
    const parsed = new URL(url);
    parsed.pathname = `/${db}`;
    return redactRedisUrl(parsed.toString());
  } catch {
    return `redis://HOST:PORT/${db}`;
  }
};

const dbOf = (url: string): string => {
  try {
    return new URL(url).pathname.replace(/^\//, '') || '0';
  } catch {
    return '?';
  }
};

/** ioredis's Cluster says only "None of startup nodes is available": the reason (NOAUTH, refused, …) is on lastNodeError. */
const lastNodeError = (err: unknown): string => {
  const last = (err as { lastNodeError?: { message?: unknown } } | null)?.lastNodeError;
  return last && typeof last.message === 'string' ? `: ${last.message}` : '';
};

const unavailable = (where: string | RedisTarget, err: unknown) =>
  new RedisUnsafeError(
    'REDIS_UNAVAILABLE',
    `cannot reach Redis at ${describeRedis(where)} (${(err as Error).message}${lastNodeError(err)}). ` +
      (typeof where !== 'string' && where.clusterNodes.length
        ? 'Check that the nodes of ENVFLEET_REDIS_CLUSTER_NODES run with --cluster-enabled yes and that the cluster is up (`redis-cli -p PORT cluster info` says cluster_state:ok).'
        : 'Start Redis (for example `redis-server --appendonly yes --maxmemory-policy noeviction`) or point REDIS_URL at a running one.'),
    { cause: err },
  );

/**
 * For a process that runs for hours (a worker, the sink): a Redis that is down or still loading its
 * files when the process starts (a restart, containers started in any order) is waited for, up to
 * `waitMs` (ENVFLEET_REDIS_STARTUP_WAIT_MS), trying again every `everyMs`; `onWaiting` is told once.
 * Then REDIS_UNAVAILABLE, as for a command.
 */
export async function waitForRedisToStart(redis: Redis, url: string | RedisTarget, waitMs: number, onWaiting?: (reason: string) => void, everyMs = 500): Promise<void> {
  const deadline = Date.now() + waitMs;
  let told = false;
  for (;;) {
    try {
      return await waitForRedis(redis, url, Math.max(1, Math.min(5_000, deadline - Date.now())));
    } catch (err) {
      // Refused credentials or database: waiting does not change them.
      if (Date.now() + everyMs >= deadline || (err as AppError).code === 'REDIS_REFUSED') throw err;
      if (!told) onWaiting?.((err as Error).message);
      told = true;
      await new Promise(resolve => setTimeout(resolve, everyMs));
    }
  }
}

export { isRedisConnectionError } from './connection-errors.js';
