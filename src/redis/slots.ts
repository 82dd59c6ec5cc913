import type { Cluster } from 'ioredis';

/**
 * Hash slots of a Redis Cluster. A cluster stores a key on the node that owns its slot, and a Lua
 * script, a MULTI or a command with several keys must keep to the keys of one slot (CROSSSLOT
 * otherwise). The slot of a key is that of its hash tag, the first `{…}` in it, when it has one.
 */

/** True for a Redis Cluster connection (any value: BullMQ connection options, a client, …). */
export function isCluster(connection: unknown): connection is Cluster {
  return typeof connection === 'object' && connection !== null && (connection as { isCluster?: unknown }).isCluster === true;
}

/**
 * A hash tag for a part of a key on a cluster connection: `{part}`, so the keys that share it share a
 * slot (and other parts spread over the nodes). On one server the part is returned as it is, so the
 * key layout there is what it always was.
 */
export const tag = (cluster: boolean, part: string): string => (cluster ? `{${part}}` : part);
