import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { EndpointConfig } from '../../config/index.js';
import { RateLimitedError } from '../errors.js';
import { hashOf } from '../util/canonical.js';
import { sleep } from '../util/sleep.js';
import type { EndpointLimiter, Lease } from './ports.js';

/**
 * One atomic step of the fleet-wide limiter, on Redis time (so machine clocks do not matter).
 * KEYS: cooldown, inflight (zset lease -> expiry), window (zset request -> time)
 * ARGV: maxConcurrency, rpm, leaseId, leaseTtlMs
 * Returns {0, 0} when a slot was taken, else {reason, waitMs} with reason 1 = cool-down,
 * 2 = concurrency, 3 = requests per minute.
 */
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cool = redis.call('PTTL', KEYS[1])
if cool > 0 then return {1, cool} end
local maxc = tonumber(ARGV[1])
local rpm = tonumber(ARGV[2])
if maxc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= maxc then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    return {2, math.min(250, math.max(10, tonumber(first[2]) - now))}
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
`;

const REASONS = ['', 'is cooling down after a 429', 'is at its fleet-wide concurrency limit', 'is at its requests-per-minute limit'];

/**
 * Limits shared by every process through Redis, keyed by the endpoint's base URL (two runs that
 * use the same provider share its limits). A lease expires by itself after the request timeout,
 * so a crashed process cannot keep a slot.
 */
export function createRedisLimiter(redis: Redis, prefix: string): EndpointLimiter {
  const keys = (endpoint: EndpointConfig) => {
    const id = hashOf(endpoint.baseURL, 16);
    return [`${prefix}:limit:${id}:cooldown`, `${prefix}:limit:${id}:inflight`, `${prefix}:limit:${id}:window`] as const;
  };
  return {
    async acquire(endpoint, { signal, maxWaitMs }): Promise<Lease> {
      const [cooldown, inflight, window] = keys(endpoint);
      const leaseId = randomUUID();
      const leaseTtlMs = endpoint.timeoutMs + 30_000;
      let waited = 0;
      for (;;) {
        const [reason, waitMs] = (await redis.eval(
          ACQUIRE,
          3,
          cooldown,
          inflight,
          window,
          endpoint.maxConcurrency,
          endpoint.requestsPerMinute,
          leaseId,
          leaseTtlMs,
        )) as [number, number];
        if (reason === 0) {
          return {
            async release() {
              if (endpoint.maxConcurrency > 0) await redis.zrem(inflight, leaseId);
            },
          };
        }
        if (reason === 1 || waited + waitMs > maxWaitMs) {
          throw new RateLimitedError(
            `endpoint "${endpoint.name}" ${REASONS[reason] ?? 'is limited'}; the job waits ${waitMs} ms in its queue`,
            Math.max(waitMs, 50),
            { details: { endpoint: endpoint.name, reason: REASONS[reason] } },
          );
        }
        await sleep(waitMs, signal);
        waited += waitMs;
      }
    },
    async coolDown(endpoint, ms) {
      const [cooldown] = keys(endpoint);
      // Only ever lengthen a cool-down, never shorten one another process set.
      const current = await redis.pttl(cooldown);
      if (current < ms) await redis.set(cooldown, '1', 'PX', Math.max(1, Math.round(ms)));
    },
  };
}
