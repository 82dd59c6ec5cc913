import { isCluster, type Redis } from '../redis/connection.js';
import { redisScript } from '../redis/scripts.js';
import { runKeys } from '../runs/keys.js';
import type { CachedResponse, ResponseCache } from './ports.js';

/** Stores a response and counts its bytes, as one command. KEYS: the entry, the run's byte counters. ARGV: text, TTL s, counter. */
const CACHE_SET_LUA = "redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) redis.call('HINCRBY', KEYS[2], ARGV[3], string.len(ARGV[1])) return 1";
const CACHE_SET = redisScript('cache_set', CACHE_SET_LUA, 2);
/** The same for a large response (embeddings: tens of KB per input), sent as bytes on its own rather than copied into a batch. */
const CACHE_SET_LARGE = redisScript('cache_set_large', CACHE_SET_LUA, 2, { largeValues: true });
/** Responses longer than this (UTF-16 characters) are large. */
const LARGE_RESPONSE_CHARS = 16_384;

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
      const text = JSON.stringify(value);
      const large = text.length > LARGE_RESPONSE_CHARS;
      await (large ? CACHE_SET_LARGE : CACHE_SET)(redis, [keys.cache(slot.key), keys.bytes], [large ? Buffer.from(text, 'utf8') : text, ttlSeconds, `cache:${slot.stage}`]);
    },
  };
}
