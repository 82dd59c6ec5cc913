import { isCluster, type Redis } from '../redis/connection.js';
import { redisScript } from '../redis/scripts.js';
import { runKeys } from '../runs/keys.js';
import type { CachedResponse, ResponseCache } from './ports.js';

/**
 * Stores a response and counts its bytes, as one command, less those of the entry it replaces (a twin of a job, or a
 * request asked again once the run's cache was off, stored the same slot twice and it was counted twice). KEYS: the
 * entry, the run's byte counters. ARGV: text, TTL s, counter. A large response (embeddings: tens of KB per input) goes
 * on its own, as bytes (redisScript's largeValues). (An entry that expires is not taken off: the counter is an upper
 * bound of what the cache holds.)
 */
const CACHE_SET = redisScript(
  'cache_set',
  "local old = redis.call('STRLEN', KEYS[1]) redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) redis.call('HINCRBY', KEYS[2], ARGV[3], string.len(ARGV[1]) - old) return 1",
  2,
  { largeValues: true },
);

/**
 * Response cache in Redis: one string key per request hash, under its run (so deleting the run
 * deletes its cache), with a TTL; the bytes it keeps are counted in the run's byte counters by stage.
 */
export function createRedisResponseCache(redis: Redis, prefix: string): ResponseCache {
  return {
    async get(slot) {
      const key = runKeys(prefix, slot.runId, isCluster(redis)).cache(slot.key);
      const raw = await redis.get(key);
      if (raw === null) return null;
      try {
        return JSON.parse(raw) as CachedResponse;
      } catch {
        await redis.del(key); // a damaged entry is dropped and the request paid again
        return null;
      }
    },
    async set(slot, value, ttlSeconds) {
      const keys = runKeys(prefix, slot.runId, isCluster(redis));
      await CACHE_SET(redis, [keys.cache(slot.key), keys.bytes], [JSON.stringify(value), ttlSeconds, `cache:${slot.stage}`]);
    },
  };
}
