/**
 * Masks known secret values (API keys, tokens, passwords) in text that leaves the process: an endpoint that echoes
 * the request's key in its error body ("bad request for key sk-…") would otherwise carry it into the stored failure,
 * the job's failed reason, the datasets and the logs, where redaction by path never looks.
 */

/** Secrets shorter than this are not searched for: a short value would mask ordinary words. */
const MIN_SECRET_CHARS = 8;

/**
 * Whether a value is searched for: 8 characters or more, and not a plain word (a Redis password `password` would
 * have turned "This Redis needs a password" into "… needs a [redacted]"): 16 or more, or with a digit or a sign.
 */
const searched = (s: string) => s.length >= MIN_SECRET_CHARS && (s.length >= 16 || /[^A-Za-z]/.test(s));

export const SECRET_MASK = '[redacted]';

/** A function that replaces every occurrence of any of `secrets` in a text with [redacted]. */
export function createSecretMask(secrets: readonly (string | null | undefined)[]): (text: string) => string {
  const known = [...new Set(secrets.filter((s): s is string => typeof s === 'string' && searched(s)))]
    // The longest first: a secret that contains another is masked whole.
    .sort((a, b) => b.length - a.length);
  if (!known.length) return text => text;
  return text => {
    let out = text;
    for (const secret of known) if (out.includes(secret)) out = out.split(secret).join(SECRET_MASK);
    return out;
  };
}
