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

/**
 * INFO commandstats as calls and microseconds per command (Redis 7 names a subcommand `command|sub`, e.g. `config|set`;
 * a script's own commands are counted under their names as well as the script).
 */
export function commandStats(info: string): Map<string, { readonly calls: number; readonly usec: number }> {
  const stats = new Map<string, { calls: number; usec: number }>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) stats.set(m[1]!, { calls: Number(m[2]), usec: Number(m[3]) });
  return stats;
}
