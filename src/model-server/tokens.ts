/**
 * Token data for the scripted server, as vLLM returns it when asked (`logprobs: true`,
 * `return_token_ids: true`): a deterministic stand-in tokenizer that renders each message on its own
 * (role marker, content, tool calls as name and arguments) and cuts the text into pieces of up to four
 * code points. Because messages are tokenized one by one, the prompt of the next turn starts with the
 * tokens of this turn's prompt and completion, as with a real chat template that re-renders the
 * conversation unchanged.
 */

const VOCABULARY = 151_643;

/** FNV-1a over UTF-16 code units, folded into the vocabulary. */
function idOf(piece: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < piece.length; i += 1) {
    h ^= piece.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % VOCABULARY;
}

/** The pieces of a text: up to four code points each (emoji and CJK are never split inside a code point). */
export function pieces(text: string): string[] {
  const points = [...text];
  const out: string[] = [];
  for (let i = 0; i < points.length; i += 4) out.push(points.slice(i, i + 4).join(''));
  return out;
}

interface RenderableMessage {
  readonly role?: unknown;
  readonly content?: unknown;
  readonly tool_calls?: unknown;
}

function render(message: RenderableMessage): string {
  const content = typeof message.content === 'string' ? message.content : Array.isArray(message.content) ? JSON.stringify(message.content) : '';
  const calls = Array.isArray(message.tool_calls)
    ? JSON.stringify((message.tool_calls as { function?: { name?: unknown; arguments?: unknown } }[]).map(c => [c.function?.name, c.function?.arguments]))
    : '';
  return `<|${String(message.role)}|>${content}${calls}`;
}

/** Token pieces of a message list, message by message. */
export function messagePieces(messages: readonly RenderableMessage[]): string[] {
  return messages.flatMap(m => pieces(render(m)));
}

export const tokenIds = (ps: readonly string[]): number[] => ps.map(idOf);

/** A deterministic log-probability per piece, in (-1, 0]. */
export const logprobOf = (piece: string): number => -(idOf(piece) % 97) / 100;
