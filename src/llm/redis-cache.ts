import type { Redis } from 'ioredis';
import type { CachedResponse, ResponseCache } from './ports.js';

/** Response cache in Redis: one string key per request hash, with a TTL. */
export function createRedisResponseCache(redis: Redis, prefix: string): ResponseCache {
  const key = (k: string) => `${prefix}:llm-cache:${k}`;
  return {
    async get(k) {
      const raw = await redis.get(key(k));
      if (raw === null) return null;
      try {
        return JSON.parse(raw) as CachedResponse;
      } catch {
        await redis.del(key(k)); // a damaged entry is dropped and the request paid again
        return null;
      }
    },
    async set(k, value, ttlSeconds) {
      await redis.set(key(k), JSON.stringify(value), 'EX', ttlSeconds);
    },
  };
}
