import { isCluster, type Redis } from '../redis/connection.js';
import { runKeys } from '../runs/keys.js';

/**
 * Finished trajectories flow through a Redis stream per run to the sink, which writes them to
 * disk. Entries carry the trajectory id only; the record itself is in the run's store.
 */
export interface TrajectoryStream {
  publish(runId: string, trajectoryId: string): Promise<void>;
}

export const trajectoryStreamKey = (prefix: string, runId: string, cluster = false) => runKeys(prefix, runId, cluster).trajectories;

export function createRedisTrajectoryStream(redis: Redis, prefix: string): TrajectoryStream {
  return {
    async publish(runId, trajectoryId) {
      await redis.xadd(trajectoryStreamKey(prefix, runId, isCluster(redis)), '*', 'id', trajectoryId);
    },
  };
}
