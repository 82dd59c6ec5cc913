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
