// No imports: the command line's error handler (cli/main.ts) loads this without ioredis.

/**
 * Whether a command failed because Redis did not answer (down, restarting, still loading its files, the
 * connection cut), as opposed to Redis answering with an error: what a long wait rides out. ioredis says
 * so in its messages only.
 */
export function isRedisConnectionError(err: unknown): boolean {
  const e = err as { name?: unknown; message?: unknown; code?: unknown } | null;
  if (e?.name === 'MaxRetriesPerRequestError' || e?.name === 'ClusterAllFailedError') return true;
  if (typeof e?.code === 'string' && /^(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ECONNABORTED)$/.test(e.code)) return true;
  const message = typeof e?.message === 'string' ? e.message : '';
  // A Redis Cluster says the same its own way while a node is down or slots move: its slots not served (CLUSTERDOWN), a
  // command on keys of a slot being moved (TRYAGAIN), ioredis following MOVED/ASK until it gave up, or its slot map
  // not refreshed, or a connection made meanwhile not ready. Each passes once the cluster is whole again (a failover, a restarted node, the move done).
  return /^(Stream isn't writeable|Connection is closed|Reached the max retries per request|None of startup nodes is available|LOADING |connect ECONNREFUSED|connect ETIMEDOUT|read ECONNRESET|write EPIPE|Too many Cluster redirections|CLUSTERDOWN|TRYAGAIN|Failed to refresh slots cache|Cluster isn't ready)/.test(
    message,
  );
}
