import { randomUUID } from 'node:crypto';
import { isCluster, tag, type Redis } from '../redis/connection.js';
import { redisScript } from '../redis/scripts.js';
import type { EndpointConfig } from '../../config/index.js';
import { RateLimitedError } from '../errors.js';
import { hashOf } from '../util/canonical.js';
import { sharedRead } from '../util/shared-read.js';
import { sleep } from '../util/sleep.js';
import { coolingDownError, unlimitedEndpoint, type EndpointLimiter, type Lease } from './ports.js';

/**
 * One atomic step of the fleet-wide limiter, on Redis time (so machine clocks do not matter).
 * KEYS: cooldown, inflight (zset lease -> expiry), window (zset request -> time)
 * ARGV: maxConcurrency, rpm, leaseId, leaseTtlMs, maxPollMs
 * Returns {0, 0} when a slot was taken, else {reason, waitMs} with reason 1 = cool-down (and its cause, the
 * cool-down key's value), 2 = concurrency, 3 = requests per minute.
 */
const ACQUIRE = redisScript(
  'limiter_acquire',
  `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cool = redis.call('PTTL', KEYS[1])
if cool > 0 then return {1, cool, redis.call('GET', KEYS[1])} end
local maxc = tonumber(ARGV[1])
local rpm = tonumber(ARGV[2])
if maxc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= maxc then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    return {2, math.min(tonumber(ARGV[5]), math.max(10, tonumber(first[2]) - now))}
  end
end
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 60000)
  if redis.call('ZCARD', KEYS[3]) >= rpm then
    local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    return {3, math.max(10, tonumber(first[2]) + 60000 - now)}
  end
  redis.call('ZADD', KEYS[3], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[3], 61000)
end
if maxc > 0 then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]) + 1000)
end
return {0, 0}
`,
  3,
);

/**
 * Renews leases of this process on Redis time: KEYS[1] inflight; ARGV[1] lease ms, then the lease ids. Only leases still
 * there are renewed (XX): one that expired or was released stays gone.
 */
const RENEW = redisScript(
  'limiter_renew',
  `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[i]) end
if redis.call('PTTL', KEYS[1]) < ttl + 1000 then redis.call('PEXPIRE', KEYS[1], ttl + 1000) end
return 1
`,
  1,
);

/**
 * Sets an endpoint's cool-down (KEYS[1]) to ARGV[1] (why: coolingDownError) for ARGV[2] ms, unless one at least as long
 * is set: only ever lengthened, in one step (read and set apart, two processes that both read none set theirs in turn,
 * and an hour's Retry-After was cut to the 5 s another 429 asked for, in a storm of them). Returns 1 when it set it.
 */
const COOL_DOWN = redisScript(
  'limiter_cool_down',
  `
if redis.call('PTTL', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`,
  1,
);

const REASONS = ['', 'is cooling down', 'is at its fleet-wide concurrency limit', 'is at its requests-per-minute limit'];

export interface RedisLimiterOptions {
  /**
   * Longest a request waiting for a concurrency slot sleeps before it asks Redis again (default
   * 250 ms). A slot freed in the same process wakes its longest waiter at once, and so does one
   * freed by another process when `subscriber` is given; this bounds the wait when a wake-up is
   * missed (no subscriber, a message lost in a reconnect, a lease that expired).
   */
  readonly maxPollMs?: number;
  /**
   * A connection of its own for Redis pub/sub (it can run nothing else once subscribed; the caller
   * closes it). Every release is announced to the fleet; with a subscriber, an announcement from
   * another process wakes the longest waiter here for that endpoint.
   */
  readonly subscriber?: Redis;
  /**
   * How long a concurrency slot is held without a word from its process (default 30 s): each process renews its leases
   * every third of it while their requests run (one script per endpoint, not per request), so a process killed with
   * its requests in flight frees their slots this long after, not after the request timeout + 30 s (with 60 episodes in
   * flight, a kill -9 stalled every worker of the fleet for 150 s). A lease is renewed at most until the request
   * timeout + 30 s, as long as it lasted before.
   */
  readonly leaseMs?: number;
}

/** How to wake one request of this process that waits for a concurrency slot of an endpoint. */
type Waiter = () => void;

/**
 * Limits shared by every process through Redis, keyed by the endpoint's base URL (two runs that
 * use the same provider share its limits). A lease expires by itself unless its process renews it (leaseMs), so a
 * crashed process cannot keep a slot. Requests waiting for a concurrency slot queue in
 * arrival order per endpoint within a process: a release wakes the longest waiter at once.
 */
/**
 * An endpoint's limiter keys: its cool-down, its requests in flight and its window. On a Redis Cluster the endpoint's
 * id is the hash tag: the ACQUIRE script and the release's MULTI touch its three keys together.
 */
function limiterKeys(prefix: string, cluster: boolean, baseURL: string): readonly [string, string, string] {
  const id = tag(cluster, hashOf(baseURL, 16));
  return [`${prefix}:limit:${id}:cooldown`, `${prefix}:limit:${id}:inflight`, `${prefix}:limit:${id}:window`] as const;
}

/**
 * Ends the fleet-wide cool-down of each endpoint (a 429's Retry-After, an outage's wait), for `envfleet resume`: the user
 * says the endpoint answers again, and a Retry-After of hours (kept up to a day) would otherwise park every job of every
 * run that uses it until then, with nothing to show why. The endpoints that were cooling, with the milliseconds left.
 */
export async function clearCoolDowns(redis: Redis, prefix: string, endpoints: readonly EndpointConfig[]): Promise<{ name: string; leftMs: number }[]> {
  const cluster = isCluster(redis);
  const cleared: { name: string; leftMs: number }[] = [];
  for (const endpoint of endpoints) {
    const [cooldown] = limiterKeys(prefix, cluster, endpoint.baseURL);
    const leftMs = await redis.pttl(cooldown);
    if (leftMs > 0 && (await redis.del(cooldown)) === 1) cleared.push({ name: endpoint.name, leftMs });
  }
  return cleared;
}

export function createRedisLimiter(redis: Redis, prefix: string, options: RedisLimiterOptions = {}): EndpointLimiter {
  const maxPollMs = options.maxPollMs ?? 250;
  const leaseMs = options.leaseMs ?? 30_000;
  const waiting = new Map<string, Waiter[]>();
  // The leases this process holds, per inflight key: lease id → until when it may be renewed (Date.now() time).
  const held = new Map<string, Map<string, number>>();
  let renewer: NodeJS.Timeout | null = null;
  const renew = async () => {
    const now = Date.now();
    for (const [inflight, leases] of held) {
      const ids = [...leases].filter(([, until]) => until > now).map(([id]) => id);
      // (a failed renewal, Redis away, only shortens the leases to what they had)
      if (ids.length) await RENEW(redis, [inflight], [leaseMs, ...ids]).catch(() => undefined);
    }
  };
  const hold = (inflight: string, leaseId: string, untilMs: number) => {
    let leases = held.get(inflight);
    if (!leases) held.set(inflight, (leases = new Map<string, number>()));
    leases.set(leaseId, untilMs);
    if (!renewer) {
      renewer = setInterval(() => void renew(), Math.max(10, Math.floor(leaseMs / 3)));
      renewer.unref();
    }
  };
  const letGo = (inflight: string, leaseId: string) => {
    const leases = held.get(inflight);
    leases?.delete(leaseId);
    if (leases?.size === 0) held.delete(inflight);
    if (held.size === 0 && renewer) {
      clearInterval(renewer);
      renewer = null;
    }
  };
  // Releases are announced on `<inflight key>:freed` with this process's token, so a process
  // ignores its own announcements (it has woken its own waiter already).
  const token = randomUUID();
  const channelOf = (inflight: string) => `${inflight}:freed`;
  const subscribed = new Set<string>();
  const subscriber = options.subscriber;
  subscriber?.on('message', (channel: string, from: string) => {
    if (from === token || !channel.endsWith(':freed')) return;
    waiting.get(channel.slice(0, -':freed'.length))?.[0]?.();
  });
  const listen = (inflight: string) => {
    if (!subscriber || subscribed.has(inflight)) return;
    subscribed.add(inflight);
    // A failed subscription only costs the wake-ups: waiters still poll.
    subscriber.subscribe(channelOf(inflight)).catch(() => subscribed.delete(inflight));
  };
  const cluster = isCluster(redis);
  const keysByUrl = new Map<string, readonly [string, string, string]>();
  const keys = (endpoint: EndpointConfig) => {
    let found = keysByUrl.get(endpoint.baseURL);
    if (!found) {
      found = limiterKeys(prefix, cluster, endpoint.baseURL);
      keysByUrl.set(endpoint.baseURL, found);
    }
    return found;
  };
  // Per endpoint without fleet-wide limits: the step on its way. Such a step only reads the endpoint's cool-down, so the
  // requests that take one while a step is out share its answer (sharedRead: a turn's burst of calls sends one script).
  const coolDownReads = new Map<string, Promise<unknown>>();
  const step = (endpoint: EndpointConfig, keys: readonly [string, string, string], leaseId: string, leaseTtlMs: number): Promise<unknown> => {
    const run = () => ACQUIRE(redis, keys, [endpoint.maxConcurrency, endpoint.requestsPerMinute, leaseId, leaseTtlMs, maxPollMs]);
    return unlimitedEndpoint(endpoint) ? sharedRead(coolDownReads, keys[0], run) : run();
  };
  const queueOf = (inflight: string): Waiter[] => {
    let queue = waiting.get(inflight);
    if (!queue) waiting.set(inflight, (queue = []));
    return queue;
  };
  return {
    async acquire(endpoint, { signal, maxWaitMs }): Promise<Lease> {
      const endpointKeys = keys(endpoint);
      const inflight = endpointKeys[1];
      const leaseId = randomUUID();
      const longest = endpoint.timeoutMs + 30_000;
      const leaseTtlMs = Math.min(longest, leaseMs);
      const started = Date.now();
      for (;;) {
        const [reason, waitMs, cause] = (await step(endpoint, endpointKeys, leaseId, leaseTtlMs)) as [number, number, string | null | undefined];
        if (reason === 0) {
          let released = false;
          if (endpoint.maxConcurrency > 0 && leaseTtlMs < longest) hold(inflight, leaseId, Date.now() + longest - leaseTtlMs);
          return {
            async release() {
              if (released || endpoint.maxConcurrency <= 0) return;
              released = true;
              letGo(inflight, leaseId);
              await redis.multi().zrem(inflight, leaseId).publish(channelOf(inflight), token).exec();
              waiting.get(inflight)?.[0]?.();
            },
          };
        }
        const waited = Date.now() - started;
        if (reason === 1) throw coolingDownError(endpoint, waitMs, cause ?? null);
        if (waited + waitMs > maxWaitMs) {
          throw new RateLimitedError(
            `endpoint "${endpoint.name}" ${REASONS[reason] ?? 'is limited'}; the job waits ${waitMs} ms in its queue`,
            Math.max(waitMs, 50),
            { details: { endpoint: endpoint.name, reason: REASONS[reason] } },
          );
        }
        if (reason === 2) {
          listen(inflight);
          const queue = queueOf(inflight);
          try {
            await sleep(waitMs, signal, wake => {
              queue.push(wake);
              return () => {
                const i = queue.indexOf(wake);
                if (i >= 0) queue.splice(i, 1);
              };
            });
          } finally {
            if (queue.length === 0 && waiting.get(inflight) === queue) waiting.delete(inflight);
          }
        } else {
          await sleep(waitMs, signal);
        }
      }
    },
    async coolDown(endpoint, ms, cause = 'MODEL_RATE_LIMITED') {
      const [cooldown] = keys(endpoint);
      // Only ever lengthened, never shortened one another process set (COOL_DOWN). Its value says why (coolingDownError).
      await COOL_DOWN(redis, [cooldown], [cause, String(Math.max(1, Math.round(ms)))]);
    },
  };
}
