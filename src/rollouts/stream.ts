import { createHash } from 'node:crypto';
import { isCluster, type Redis } from '../redis/connection.js';
import { runKeys } from '../runs/keys.js';
import type { TrajectorySummary } from './types.js';

/**
 * Finished trajectories flow through a Redis stream per run to the sink, which writes them to
 * disk. Entries carry the trajectory id (field `id`) and, from the worker that has just stored the
 * whole trajectory, its summary as JSON text (field `summary`: `trajectorySummary`) with the SHA-1 of
 * the document it stored (field `sha1`, `storedDigest`) and its size in bytes (field `bytes`: the sink reads and
 * writes at most so many bytes of them at once). The sink keeps that summary in Redis once the
 * line is on disk instead of parsing the whole document to make it, but only when the bytes it read
 * are that document: a job that ran twice (stalled, then run again elsewhere) may have stored another
 * trajectory under the same id since, and its summary must not stand for that one's line. The record
 * itself is in the run's store.
 */
export interface TrajectoryStream {
  /** `stored`: the trajectory's summary and the exact JSON text stored for it, or its UTF-8 bytes (absent: the id alone). */
  publish(runId: string, trajectoryId: string, stored?: { readonly summary: TrajectorySummary; readonly text: string | Buffer }): Promise<void>;
}

export const trajectoryStreamKey = (prefix: string, runId: string, cluster = false) => runKeys(prefix, runId, cluster).trajectories;

/** The digest a stream entry carries of the stored document: SHA-1 of its UTF-8 bytes, base64. */
export function storedDigest(stored: string | Buffer): string {
  return createHash('sha1').update(stored).digest('base64');
}

export function createRedisTrajectoryStream(redis: Redis, prefix: string): TrajectoryStream {
  return {
    async publish(runId, trajectoryId, stored) {
      const key = trajectoryStreamKey(prefix, runId, isCluster(redis));
      if (stored === undefined) await redis.xadd(key, '*', 'id', trajectoryId);
      else await redis.xadd(key, '*', 'id', trajectoryId, 'summary', JSON.stringify(stored.summary), 'sha1', storedDigest(stored.text), 'bytes', String(Buffer.byteLength(stored.text)));
    },
  };
}
