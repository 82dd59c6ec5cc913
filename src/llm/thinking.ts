/**
 * Reasoning that a model writes in its text (`<think>…</think>`, as Qwen3, DeepSeek-R1 and QwQ do when
 * the server has no reasoning parser), split from the answer. Found with indexOf: linear in the text.
 */
const OPEN = '<think>';
const CLOSE = '</think>';

/**
 * `reasoning`: the text of every `<think>` block, of everything before a leading `</think>` whose
 * `<think>` was in the prompt (Qwen3 thinking templates), and of a `<think>` never closed (a reply cut
 * off while thinking); null when there is none. `answer`: the rest, trimmed.
 */
export function splitThinking(text: string): { reasoning: string | null; answer: string } {
  if (!text.includes(OPEN) && !text.includes(CLOSE)) return { reasoning: null, answer: text.trim() };
  const thoughts: string[] = [];
  let answer = '';
  let pos = 0;
  const firstClose = text.indexOf(CLOSE);
  const firstOpen = text.indexOf(OPEN);
  if (firstClose !== -1 && (firstOpen === -1 || firstClose < firstOpen)) {
    thoughts.push(text.slice(0, firstClose));
    pos = firstClose + CLOSE.length;
  }
  for (;;) {
    const open = text.indexOf(OPEN, pos);
    if (open === -1) {
      answer += text.slice(pos);
      break;
    }
    answer += text.slice(pos, open);
    const close = text.indexOf(CLOSE, open + OPEN.length);
    if (close === -1) {
      thoughts.push(text.slice(open + OPEN.length));
      break;
    }
    thoughts.push(text.slice(open + OPEN.length, close));
    pos = close + CLOSE.length;
  }
  const reasoning = thoughts.map(t => t.trim()).filter(Boolean).join('\n\n');
  return { reasoning: reasoning || null, answer: answer.trim() };
}

/**
 * The reasoning a message's content holds as parts of its own, or null: Mistral's reasoning models (Magistral) answer
 * with content `[{type: "thinking", thinking: [{type: "text", text}]}, {type: "text", text}]`, the thinking beside the
 * answer's text parts; each thinking part's text, joined.
 */
export function contentThinking(content: unknown): string | null {
  if (!Array.isArray(content)) return null;
  const thoughts: string[] = [];
  for (const part of content) {
    if (!part || typeof part !== 'object' || (part as { type?: unknown }).type !== 'thinking') continue;
    const thinking = (part as { thinking?: unknown }).thinking;
    // (its text parts are pieces of one text: joined as they are)
    const text = typeof thinking === 'string' ? thinking : Array.isArray(thinking) ? textParts(thinking).join('') : '';
    if (text) thoughts.push(text);
  }
  return thoughts.length ? thoughts.join('\n\n') : null;
}

/**
 * A streamed delta's content as its answer text and its thinking: a string is text; Magistral streams a list of parts
 * (`{type: "thinking", thinking: [{type: "text", text}]}` while it thinks, then text parts), each delta a piece of one
 * text, so the pieces are joined as they are (no separator: the next delta goes on where this one stopped).
 */
export function deltaContent(content: unknown): { text: string | null; thinking: string | null } {
  if (typeof content === 'string') return { text: content, thinking: null };
  if (!Array.isArray(content)) return { text: null, thinking: null };
  let text: string | null = null;
  let thinking: string | null = null;
  for (const part of content) {
    if (!part || typeof part !== 'object') continue;
    const type = (part as { type?: unknown }).type;
    if (type === 'text' && typeof (part as { text?: unknown }).text === 'string') text = (text ?? '') + (part as { text: string }).text;
    if (type !== 'thinking') continue;
    const inner = (part as { thinking?: unknown }).thinking;
    thinking = (thinking ?? '') + (typeof inner === 'string' ? inner : Array.isArray(inner) ? textParts(inner).join('') : '');
  }
  return { text, thinking };
}

/** A message's content as text: a string as it is, an array of parts as its text parts joined (other parts dropped), else ''. */
export function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return textParts(content).join('\n');
}

/** The texts of the `{type: "text", text}` parts of a list of parts, in order, empty ones left out. */
function textParts(parts: readonly unknown[]): string[] {
  return parts
    .map(part => (part && typeof part === 'object' && (part as { type?: unknown }).type === 'text' && typeof (part as { text?: unknown }).text === 'string' ? (part as { text: string }).text : ''))
    .filter(Boolean);
}
