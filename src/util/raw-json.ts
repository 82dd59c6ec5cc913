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
  const outer = collecting;
  const texts: string[] = [];
  collecting = texts;
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } finally {
    collecting = outer;
  }
  if (text === undefined || texts.length === 0) return text;
  return text.replace(PLACEHOLDER, (_, i: string) => texts[Number(i)]!);
}
