import { randomBytes } from 'node:crypto';

/**
 * A JSON value kept as its text inside a larger value, so that writing the larger value with
 * `stringifyJson` copies the text instead of parsing it into objects and writing them out again
 * (an episode's final state: 65 KB of JSON text from the sandbox, stored as is with the trajectory).
 * Anything else that serializes it with JSON.stringify gets the parsed value (`toJSON`), so the
 * JSON written is the same value either way.
 */
export class RawJson {
  constructor(readonly json: string) {}

  /** The value itself, parsed (a plain JSON.stringify); a placeholder while stringifyJson runs. */
  toJSON(): unknown {
    if (!collecting) return JSON.parse(this.json) as unknown;
    collecting.push(this.json);
    return `${MARK}${collecting.length - 1}`;
  }

  /** The value, parsed. */
  value(): unknown {
    return JSON.parse(this.json) as unknown;
  }
}

/** Texts of the RawJson values met by the JSON.stringify that stringifyJson is running. */
let collecting: string[] | null = null;
/** A placeholder no other string can be taken for: a random tag per process. */
const MARK = `\u0000envfleet-raw-json:${randomBytes(12).toString('hex')}:`;
const MARK_WRITTEN = JSON.stringify(MARK).slice(1, -1);
const PLACEHOLDER = new RegExp(`"${MARK_WRITTEN.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&')}(\\d+)"`, 'g');

/** JSON.stringify, with every RawJson inside written as its text. Undefined where JSON.stringify gives undefined. */
export function stringifyJson(value: unknown): string | undefined {
  const pieces = jsonPieces(value);
  return pieces === undefined ? undefined : pieces.length === 1 ? pieces[0] : pieces.join('');
}

/**
 * stringifyJson's text as UTF-8 bytes, written piece by piece into one buffer: the text of the whole value
 * (a trajectory of ≈ 100 KB around a 65 KB final state) is never built as one string.
 */
export function stringifyJsonBytes(value: unknown): Buffer | undefined {
  const pieces = jsonPieces(value);
  if (pieces === undefined) return undefined;
  if (pieces.length === 1) return Buffer.from(pieces[0]!, 'utf8');
  let length = 0;
  for (const p of pieces) length += Buffer.byteLength(p, 'utf8');
  const bytes = Buffer.allocUnsafe(length);
  let at = 0;
  for (const p of pieces) at += bytes.write(p, at, 'utf8');
  return bytes;
}

/**
 * stringifyJson's text as the pieces it is made of, in order: the text JSON.stringify wrote around each
 * RawJson, and the RawJson's own text. Each piece is a whole string (a placeholder sits between two JSON
 * tokens), so a hash fed piece by piece equals the hash of the joined text. Undefined where JSON.stringify
 * gives undefined.
 */
export function jsonPieces(value: unknown): string[] | undefined {
  const outer = collecting;
  const texts: string[] = [];
  collecting = texts;
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } finally {
    collecting = outer;
  }
  if (text === undefined) return undefined;
  if (texts.length === 0) return [text];
  const pieces: string[] = [];
  let from = 0;
  PLACEHOLDER.lastIndex = 0;
  for (let m = PLACEHOLDER.exec(text); m !== null; m = PLACEHOLDER.exec(text)) {
    if (m.index > from) pieces.push(text.slice(from, m.index));
    pieces.push(texts[Number(m[1])]!);
    from = m.index + m[0].length;
  }
  if (from < text.length) pieces.push(text.slice(from));
  return pieces;
}
