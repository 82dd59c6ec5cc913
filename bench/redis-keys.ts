import type { Redis } from 'ioredis';

/** SCAN + DEL of `${prefix}:*`; returns how many keys are left afterwards (should be 0). */
export async function deletePrefix(redis: Redis, prefix: string): Promise<number> {
  const match = `${prefix}:*`;
  const scan = async (): Promise<string[]> => {
    const found: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 1000);
      cursor = next;
      found.push(...keys);
    } while (cursor !== '0');
    return found;
  };
  const keys = await scan();
  for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
  return (await scan()).length;
}
