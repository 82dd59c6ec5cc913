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
