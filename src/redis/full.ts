/**
 * Redis's refusal of a write at its maxmemory ("OOM command not allowed when used memory > 'maxmemory'"), also inside
 * a transaction that was then discarded (EXECABORT, with the OOM among its previous errors).
 */
export function isRedisFull(err: unknown): boolean {
  const e = err as { name?: unknown; message?: unknown; previousErrors?: unknown } | null;
  if (e === null || typeof e !== 'object' || typeof e.message !== 'string') return false;
  if (e.message.startsWith('OOM ')) return true;
  return e.message.startsWith('EXECABORT') && Array.isArray(e.previousErrors) && e.previousErrors.some(p => typeof (p as { message?: unknown })?.message === 'string' && (p as { message: string }).message.startsWith('OOM '));
}

/** What a command says when Redis refused a write at its maxmemory (docs/errors.md REDIS_FULL). */
export const REDIS_FULL_ADVICE =
  "Redis refused a write: it has reached its maxmemory (OOM, under the noeviction policy envfleet requires). Nothing is lost: the fleet's jobs wait, no attempt used, and go on once Redis has room. Raise maxmemory (redis-cli CONFIG SET maxmemory …, and in the server's configuration) or free room (envfleet runs delete --run NAME for finished runs), then run this command again";
