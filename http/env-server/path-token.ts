/**
 * The token in the path, for clients that cannot set headers (OpenEnv's Python clients append `/ws` to the
 * base URL and send no headers): `BASE/t/TOKEN/…` is `BASE/…` with `Authorization: Bearer TOKEN`.
 */
export const PATH_TOKEN_PREFIX = '/t/';

/** Splits `/t/TOKEN/rest?query` into the token and `/rest?query`; null for any other path. */
export function pathToken(url: string): { token: string; rest: string } | null {
  const m = /^\/t\/([^/?#]+)(\/[^?#]*)?(\?[^#]*)?$/.exec(url);
  if (!m) return null;
  let token: string;
  try {
    token = decodeURIComponent(m[1]!);
  } catch {
    return null;
  }
  return { token, rest: `${m[2] ?? '/'}${m[3] ?? ''}` };
}
