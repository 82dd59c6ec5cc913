import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';

/** Visits every outstanding job of a run (its `queue|jobId` entries), with a Queue to inspect or change it. */
export async function forEachPendingJob(
  redis: Redis,
  prefix: string,
  runId: string,
  visit: (entry: { key: string; queue: Queue; jobId: string }) => Promise<void>,
): Promise<void> {
  const queues = new Map<string, Queue>();
  try {
    for (const key of await redis.smembers(`${prefix}:run:${runId}:pending`)) {
      const [name, jobId] = key.split('|') as [string, string];
      let queue = queues.get(name);
      if (!queue) {
        queue = new Queue(name, { connection: redis, prefix });
        queues.set(name, queue);
      }
      await visit({ key, queue, jobId });
    }
  } finally {
    for (const q of queues.values()) await q.close();
  }
}
