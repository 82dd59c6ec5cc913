/**
 * `read(key)`, or the answer of the read of `key` still on its way: `inFlight` holds a read until it settles, so the
 * callers that ask meanwhile share it, and the first caller after it settles sends a new one. No answer outlives its
 * read: a caller gets one no older than a read that was still out when it asked. The callers get the same value:
 * none may change it.
 */
export function sharedRead<T>(inFlight: Map<string, Promise<T>>, key: string, read: (key: string) => Promise<T>): Promise<T> {
  const pending = inFlight.get(key);
  if (pending) return pending;
  const fresh = read(key);
  inFlight.set(key, fresh);
  const forget = () => {
    if (inFlight.get(key) === fresh) inFlight.delete(key);
  };
  fresh.then(forget, forget);
  return fresh;
}
