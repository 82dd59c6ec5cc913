import { isCluster, scanKeys, type Redis } from '../src/redis/connection.js';

/** SCAN + DEL of `${prefix}:*` (on every master of a cluster); returns how many keys are left afterwards (should be 0). */
export async function deletePrefix(redis: Redis, prefix: string): Promise<number> {
  const match = `${prefix}:*`;
  const scan = async (): Promise<string[]> => {
    const found: string[] = [];
    for await (const keys of scanKeys(redis, match)) found.push(...keys);
    return found;
  };
  const keys = await scan();
  if (isCluster(redis)) {
    // Keys of different slots cannot go in one DEL on a cluster.
    for (let i = 0; i < keys.length; i += 500) await Promise.all(keys.slice(i, i + 500).map(k => redis.del(k)));
  } else {
    for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
  }
  return (await scan()).length;
}
