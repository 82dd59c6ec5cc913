/**
 * The first `max` UTF-16 code units of `text` at most, one fewer when the cut would fall between the two
 * halves of a surrogate pair (an emoji, a rare CJK character): a lone half is no character, and a request
 * body carrying one (`"\ud83d"`) is refused by servers that encode the text as UTF-8 (vLLM's tokenizers,
 * Python's `str.encode`), and written to a file it is no UTF-8 at all.
 */
export function cutText(text: string, max: number): string {
  if (text.length <= max) return text;
  if (max <= 0) return '';
  const last = text.charCodeAt(max - 1);
  return text.slice(0, last >= 0xd800 && last <= 0xdbff ? max - 1 : max);
}

/** How many characters `text` holds as Python counts them (code points: an emoji is one, where `length` counts two). */
export function charCount(text: string): number {
  let n = text.length;
  for (let i = 0; i < text.length - 1; i++) {
    if ((text.charCodeAt(i) & 0xfc00) === 0xd800 && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n -= 1;
      i += 1;
    }
  }
  return n;
}

/**
 * The longest start of `text` whose UTF-8 encoding fits in `maxBytes`, cut between characters (never inside a
 * character's two to four bytes, nor between the halves of a surrogate pair): for fields limited in bytes, such as a
 * WebSocket close reason (123 bytes), which a peer refuses when it is not valid UTF-8.
 */
export function cutUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text, 'utf8') <= maxBytes) return text;
  let bytes = 0;
  let end = 0;
  for (const ch of text) {
    // A lone surrogate is encoded as U+FFFD (3 bytes), as Buffer writes it.
    bytes += Buffer.byteLength(ch, 'utf8');
    if (bytes > maxBytes) break;
    end += ch.length;
  }
  return text.slice(0, end);
}

/** Each escape of a JSON text (`\\` and `\"` included, so an escaped backslash is never read as the start of one). */
const ESCAPE = /\\(?:u([dD][89abAB][0-9a-fA-F]{2})(\\u[dD][c-fC-F][0-9a-fA-F]{2})?|u[dD][c-fC-F][0-9a-fA-F]{2}|[^])/g;

/**
 * A JSON text with every lone surrogate escape (`\ud800` without its pair: a model's output cut inside a character,
 * or its tokenizer's odd bytes) written as U+FFFD. JSON allows them, and Python's json.loads reads them, but the string
 * cannot be encoded as UTF-8 afterwards: pyarrow and Hugging Face datasets fail on the line ("surrogates not allowed").
 */
export function withoutLoneSurrogates(json: string): string {
  if (!/\\u[dD][89a-fA-F]/.test(json)) return json;
  return json.replace(ESCAPE, (escape: string, high: string | undefined, low: string | undefined) => {
    if (high !== undefined) return low === undefined ? '\\ufffd' : escape;
    return /^\\u[dD][c-fC-F]/.test(escape) ? '\\ufffd' : escape;
  });
}

type WellFormable = { isWellFormed(): boolean; toWellFormed(): string };

/**
 * `value` with each string holding a lone surrogate (a model's output cut inside a character: `"\ud83d"` in its JSON)
 * written with U+FFFD in its place, in keys too; copied only where something changes. What a model answered goes into
 * later requests (servers that encode text as UTF-8 refuse a body carrying a lone half), stored documents, the
 * sink's shards and served tasks, which pyarrow and Hugging Face datasets cannot read with one.
 */
export function wellFormed<T>(value: T): T {
  if (typeof value === 'string') return ((value as unknown as WellFormable).isWellFormed() ? value : (value as unknown as WellFormable).toWellFormed()) as T;
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    let copy: unknown[] | null = null;
    value.forEach((item: unknown, i) => {
      const clean = wellFormed(item);
      if (clean !== item) (copy ??= [...(value as unknown[])])[i] = clean;
    });
    return (copy ?? value) as T;
  }
  let copy: Record<string, unknown> | null = null;
  for (const [key, item] of Object.entries(value) as [string, unknown][]) {
    const cleanKey = wellFormed(key);
    const clean = wellFormed(item);
    if (clean === item && cleanKey === key) continue;
    copy ??= { ...(value as Record<string, unknown>) };
    if (cleanKey !== key) delete copy[key];
    copy[cleanKey] = clean;
  }
  return (copy ?? value) as T;
}

/** Control characters (C0 but tab, DEL, C1) and the invisible marks that reorder a line (bidirectional embeddings, overrides, isolates). */
// eslint-disable-next-line no-control-regex -- control characters are what it finds
const UNPRINTABLE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/**
 * `text` as one line fit for a terminal and a page: line breaks and tabs as spaces, each control character (an ANSI
 * escape's ESC, which a terminal obeys) and each bidirectional override (which reverses what follows it on the line)
 * as U+FFFD, and at most `max` UTF-16 units (cut between whole characters). For text a user or an endpoint gave that
 * status lines and the dashboard show, such as a pause's reason.
 */
export function oneLineText(text: string, max = 1000): string {
  return cutText(wellFormed(text).replace(/[\r\n\t]+/g, ' ').replace(UNPRINTABLE, '\ufffd'), max);
}
