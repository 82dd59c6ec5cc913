import type { Redis } from 'ioredis';

/**
 * Large results (model outputs, environments, scenarios) never travel in job data, return values
 * or the events stream: they are written here and jobs pass their reference.
 */
export interface ArtifactStore {
  /** Stores a JSON value and returns its reference. Writing the same reference twice overwrites it. */
  put(kind: string, id: string, value: unknown): Promise<string>;
  get<T = unknown>(ref: string): Promise<T | null>;
}

export function createRedisArtifactStore(redis: Redis, prefix: string): ArtifactStore {
  return {
    async put(kind, id, value) {
      const ref = `${kind}/${id}`;
      await redis.set(`${prefix}:artifact:${ref}`, JSON.stringify(value));
      return ref;
    },
    async get<T>(ref: string) {
      const raw = await redis.get(`${prefix}:artifact:${ref}`);
      return raw === null ? null : (JSON.parse(raw) as T);
    },
  };
}

export function createMemoryArtifactStore(): ArtifactStore {
  const store = new Map<string, string>();
  return {
    put(kind, id, value) {
      const ref = `${kind}/${id}`;
      store.set(ref, JSON.stringify(value));
      return Promise.resolve(ref);
    },
    get<T>(ref: string) {
      const raw = store.get(ref);
      return Promise.resolve(raw === undefined ? null : (JSON.parse(raw) as T));
    },
  };
}
