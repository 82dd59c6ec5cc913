import { isCluster, type Redis } from '../redis/connection.js';
import { runKeys } from '../runs/keys.js';
import type { CachedResponse, ResponseCache } from './ports.js';

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
      await redis.multi().set(keys.cache(slot.key), text, 'EX', ttlSeconds).hincrby(keys.bytes, `cache:${slot.stage}`, Buffer.byteLength(text)).exec();
    },
  };
}
