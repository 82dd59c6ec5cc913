import { isCluster, type Redis } from '../redis/connection.js';
import { runKeys } from '../runs/keys.js';
import type { TrajectorySummary } from './types.js';

/**
 * Finished trajectories flow through a Redis stream per run to the sink, which writes them to
 * disk. Entries carry the trajectory id (field `id`) and, from the worker that has just stored the
 * whole trajectory, its summary as JSON text (field `summary`: `trajectorySummary`), which the sink
 * keeps in Redis once the line is on disk instead of parsing the whole document to make it. The record
 * itself is in the run's store.
 */
export interface TrajectoryStream {
  publish(runId: string, trajectoryId: string, summary?: TrajectorySummary): Promise<void>;
}

export const trajectoryStreamKey = (prefix: string, runId: string, cluster = false) => runKeys(prefix, runId, cluster).trajectories;

export function createRedisTrajectoryStream(redis: Redis, prefix: string): TrajectoryStream {
  return {
    async publish(runId, trajectoryId, summary) {
      const key = trajectoryStreamKey(prefix, runId, isCluster(redis));
      if (summary === undefined) await redis.xadd(key, '*', 'id', trajectoryId);
      else await redis.xadd(key, '*', 'id', trajectoryId, 'summary', JSON.stringify(summary));
    },
  };
}
