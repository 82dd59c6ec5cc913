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
  return /^(Stream isn't writeable|Connection is closed|Reached the max retries per request|None of startup nodes is available|LOADING |connect ECONNREFUSED|connect ETIMEDOUT|read ECONNRESET|write EPIPE)/.test(message);
}
