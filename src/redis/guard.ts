import { RedisUnsafeError } from '../errors.js';
import { isCluster, type Cluster, type Redis } from './connection.js';

export interface RedisFacts {
  readonly version: string;
  readonly maxmemoryPolicy: string;
  readonly aofEnabled: boolean;
  /** RDB snapshots configured (`save` not empty); null when CONFIG is not allowed on this server. */
  readonly rdbEnabled: boolean | null;
}

export interface RedisVerdict {
  readonly ok: boolean;
  readonly errors: readonly string[];
  readonly warnings: readonly string[];
  readonly facts: RedisFacts;
}

function infoField(info: string, field: string): string | undefined {
  const line = info.split(/\r?\n/).find(l => l.startsWith(`${field}:`));
  return line?.slice(field.length + 1).trim();
}

/**
 * Reads what matters about a Redis server for running a fleet on it. Works where CONFIG is disabled.
 * On a cluster, every master is read and the worst answer counts (one evicting node loses jobs too).
 */
export async function inspectRedis(redis: Redis): Promise<RedisFacts> {
  if (!isCluster(redis)) return inspectServer(redis);
  const all = await Promise.all(redis.nodes('master').map(inspectServer));
  if (all.length === 0) throw new RedisUnsafeError('REDIS_UNAVAILABLE', 'the Redis Cluster has no reachable master');
  return {
    version: all.map(f => f.version).sort()[0]!,
    maxmemoryPolicy: all.find(f => f.maxmemoryPolicy !== 'noeviction')?.maxmemoryPolicy ?? 'noeviction',
    aofEnabled: all.every(f => f.aofEnabled),
    rdbEnabled: all.some(f => f.rdbEnabled === null) ? null : all.every(f => f.rdbEnabled === true),
  };
}

async function inspectServer(redis: Exclude<Redis, Cluster>): Promise<RedisFacts> {
  const [server, memory, persistence] = await Promise.all([
    redis.info('server'),
    redis.info('memory'),
    redis.info('persistence'),
  ]);
  let rdbEnabled: boolean | null;
  try {
    const save = await redis.config('GET', 'save');
    rdbEnabled = String(save[1] ?? '').trim() !== '';
  } catch {
    rdbEnabled = null; // managed Redis services often rename or block CONFIG
  }
  return {
    version: infoField(server, 'redis_version') ?? 'unknown',
    maxmemoryPolicy: infoField(memory, 'maxmemory_policy') ?? 'unknown',
    aofEnabled: infoField(persistence, 'aof_enabled') === '1',
    rdbEnabled,
  };
}

/**
 * The rules a worker applies before it takes a job: eviction would silently delete job and lock
 * keys (lost jobs, "Missing lock" errors), so anything but `noeviction` is refused. Without
 * persistence a Redis restart loses every queued job, so that is a warning (or an error when the
 * configuration requires persistence).
 */
export function judgeRedis(facts: RedisFacts, options: { requirePersistence: boolean }): RedisVerdict {
  const errors: string[] = [];
  const warnings: string[] = [];
  if (facts.maxmemoryPolicy !== 'noeviction') {
    errors.push(
      `Redis maxmemory-policy is "${facts.maxmemoryPolicy}"; envfleet needs "noeviction". ` +
        'With any eviction policy Redis deletes queue, lock and result keys when memory runs low, and jobs are lost or run twice. ' +
        'Fix: `redis-cli CONFIG SET maxmemory-policy noeviction` (and `maxmemory-policy noeviction` in redis.conf), ' +
        'or choose the noeviction policy in your managed Redis settings.',
    );
  }
  const [major] = facts.version.split('.').map(Number);
  if (major !== undefined && Number.isFinite(major) && major < 6) {
    errors.push(`Redis ${facts.version} is too old; BullMQ needs 6.2 or newer. Upgrade Redis.`);
  }
  if (!facts.aofEnabled && facts.rdbEnabled !== true) {
    const message =
      'Redis persistence is off (no AOF, no RDB snapshots): a Redis restart loses every queued job, run and ledger. ' +
      'Fix: `redis-cli CONFIG SET appendonly yes` (and `appendonly yes` in redis.conf; the docker-compose file does this).';
    if (options.requirePersistence) errors.push(message);
    else warnings.push(message);
  }
  return { ok: errors.length === 0, errors, warnings, facts };
}

/** Inspects and throws REDIS_UNSAFE when a worker must not run here; returns the warnings otherwise. */
export async function assertRedisSafeForWorkers(
  redis: Redis,
  options: { requirePersistence: boolean },
): Promise<RedisVerdict> {
  const verdict = judgeRedis(await inspectRedis(redis), options);
  if (!verdict.ok) {
    throw new RedisUnsafeError('REDIS_UNSAFE', `refusing to start a worker: ${verdict.errors.join(' ')}`, {
      details: { facts: verdict.facts },
    });
  }
  return verdict;
}
