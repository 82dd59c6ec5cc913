import { createReadStream } from 'node:fs';
import { InputFileError } from '../sandbox/files.js';
import { stripBom } from '../util/bom.js';
import { cutText } from '../util/text.js';
import { firstInvalidUtf8, notUtf8ByteProblem, utf16Of } from '../util/utf8.js';

/**
 * Reads the records of a JSON data file one at a time, in any of the shapes other projects publish
 * their data in: a JSON array of records, a JSON object keyed by id (each member a record), JSON
 * Lines (one record per line, whatever the file's extension), or records one after another each over
 * several lines (one pretty-printed record, or jq's stream of them). The file is streamed: the text is
 * decoded as UTF-8 across chunk boundaries (no character is cut) and each record is parsed on its own,
 * so a malformed record is reported with its position and the others are still read. Nothing is
 * evaluated: records are parsed with JSON.parse.
 */

/** One record of a file: its value, or why it could not be parsed. */
export interface JsonRecord {
  /** 0-based position among the file's records. */
  readonly index: number;
  /** The member name, in a JSON object keyed by id. */
  readonly key?: string;
  /** 1-based line on which the record starts. */
  readonly line: number;
  readonly value?: unknown;
  /** The record's JSON text, when it is valid (for a reader that needs what JSON.parse loses: numbers as written). */
  readonly text?: string;
  /** Set when the record is not valid JSON (value is then absent). */
  readonly error?: string;
}

/**
 * `values`: top-level JSON objects one after another, each a record that may span lines: one pretty-printed
 * record (`jq '.["env_7_rl"]' 191_env_metadata.json > one.json`), or jq's stream of them (`jq '.[]'`).
 */
export type JsonFileShape = 'array' | 'object' | 'lines' | 'values' | 'empty';

/** How a file ended: its shape, and a problem with the file as a whole (truncated, trailing text) that is not one record's. */
export interface JsonFileEnd {
  readonly shape: JsonFileShape;
  readonly problem: string | null;
}

const BOM = 0xfeff;
const isSpace = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
const KEY_AT_START = /^\s*"((?:[^"\\]|\\.)*)"\s*:/;
/** A record's value, or why it is not JSON. */
function parsed(text: string): { value: unknown; text: string } | { error: string } {
  try {
    return { value: JSON.parse(text) as unknown, text };
  } catch (err) {
    return { error: `not valid JSON (${(err as Error).message})` };
  }
}
const firstLineOf = (text: string) => (text.length > 80 ? `${cutText(text, 80)}…` : text);

/**
 * The splitter: fed text chunks, emits records. A top-level `{` is a JSON object keyed by id unless
 * its first member is a field of a record (`rowKeys`) or not an object: then the file is JSON Lines
 * of records, and the text read so far is read again as lines.
 */
class RecordSplitter {
  shape: JsonFileShape | 'detect' | 'none' = 'none';
  /** In `values`: the 0-based line of the current record's start (for its `line`), and its text so far. */
  private valueLine = 0;
  private valueParts: string[] = [];
  problem: string | null = null;
  readonly out: JsonRecord[] = [];
  private depth = 0;
  private inString = false;
  private escape = false;
  private closed = false;
  private parts: string[] = [];
  private line = 1;
  private elementLine = 1;
  private index = 0;
  /** The text read while the shape of a top-level `{` is not known yet (to read it again as lines). */
  private seen: string[] | null = [];
  private carry = '';
  private lineNo = 0;

  constructor(private readonly rowKeys: ReadonlySet<string>) {}

  feed(chunk: string): void {
    if (this.problem !== null && this.shape !== 'lines') return;
    if (this.shape === 'lines') return this.feedLines(chunk);
    if (this.shape === 'values') return this.feedValues(chunk);
    this.seen?.push(chunk);
    let seg = 0;
    for (let i = 0; i < chunk.length; i += 1) {
      const c = chunk.charCodeAt(i);
      if (this.inStringAfter(c)) continue;
      if (this.depth === 0) {
        if (isSpace(c) || (c === BOM && this.shape === 'none')) continue;
        if (this.closed) {
          this.problem = `unexpected text after the end of the top-level JSON value, at line ${this.line}: ${firstLineOf(chunk.slice(i).split('\n')[0] ?? '')}`;
          return;
        }
        if (c === 0x5b || c === 0x7b) {
          this.shape = c === 0x5b ? 'array' : 'detect';
          if (this.shape === 'array') this.seen = null;
          this.depth = 1;
          seg = i + 1;
          this.parts = [];
          this.elementLine = this.line;
          continue;
        }
        // Neither an array nor an object: the file can only be JSON Lines (of records that are not objects).
        this.shape = 'lines';
        const text = this.seen!.join('');
        this.seen = null;
        this.line = 1;
        return this.feedLines(text);
      }
      if (c === 0x22) this.inString = true;
      else if (c === 0x7b || c === 0x5b) this.depth += 1;
      else if (c === 0x7d || c === 0x5d) {
        if (this.depth === 1) {
          this.parts.push(chunk.slice(seg, i));
          this.depth = 0;
          this.closed = true;
          if (!this.element(true)) return;
          seg = i + 1;
        } else this.depth -= 1;
      } else if (c === 0x2c && this.depth === 1) {
        this.parts.push(chunk.slice(seg, i));
        if (!this.element(false)) return;
        seg = i + 1;
      }
    }
    if (this.depth >= 1) this.parts.push(chunk.slice(seg));
  }

  /** Why the record the file ends in is not read. */
  private cutRecord(): string {
    return `the file ends inside this record (${this.inString ? 'in a string' : 'an unclosed bracket'}): the file is truncated, or a bracket or quote is unbalanced; the records before it were read`;
  }

  /** Counts the lines and follows strings and their escapes: true when `c` is (or closes) string text, nothing else to do with it. */
  private inStringAfter(c: number): boolean {
    if (c === 0x0a) this.line += 1;
    if (!this.inString) return false;
    if (this.escape) this.escape = false;
    else if (c === 0x5c) this.escape = true;
    else if (c === 0x22) this.inString = false;
    return true;
  }

  /** One element of the top-level array or object is complete; false when the file turned out to be JSON Lines (read again). */
  private element(last: boolean): boolean {
    const raw = this.parts.join('');
    this.parts = [];
    const leading = raw.length - raw.trimStart().length;
    const line = this.elementLine + (raw.slice(0, leading).match(/\n/g)?.length ?? 0);
    this.elementLine = this.line;
    const text = raw.trim();
    if (!text) {
      // `[]`, `{}` or a trailing comma: nothing to read; `,,` is an empty record.
      if (!last) this.out.push({ index: this.index++, line, error: 'an empty record (two commas in a row)' });
      return true;
    }
    if (this.shape === 'array') {
      this.out.push({ index: this.index++, line, ...parsed(text) });
      return true;
    }
    let key: string | undefined;
    let value: unknown;
    let error: string | undefined;
    try {
      const entries = Object.entries(JSON.parse(`{${text}}`) as Record<string, unknown>);
      if (entries.length !== 1) error = 'expected one "key": value member';
      else [key, value] = entries[0]!;
    } catch (err) {
      const m = KEY_AT_START.exec(text);
      if (m) {
        try {
          key = JSON.parse(`"${m[1]!}"`) as string;
        } catch {
          key = m[1];
        }
      }
      error = `not valid JSON (${(err as Error).message})`;
    }
    if (this.shape === 'detect') {
      const isRow = (key !== undefined && this.rowKeys.has(key)) || (error === undefined && (typeof value !== 'object' || value === null || Array.isArray(value)));
      if (isRow) {
        const seen = this.seen!.join('');
        this.seen = null;
        this.depth = 0;
        this.inString = false;
        this.escape = false;
        // The first member is a field of a record. A first line that is only "{" is a record written over several
        // lines (pretty-printed, as jq and json.dump(indent=...) write one), never a line of JSON Lines: the
        // file is records one after another. Otherwise it is JSON Lines of records. Read it again either way.
        if (stripBom(seen).trimStart().split('\n', 1)[0]!.trim() === '{') {
          this.shape = 'values';
          this.line = 1;
          this.feedValues(seen);
        } else {
          this.shape = 'lines';
          this.feedLines(seen);
        }
        return false;
      }
      this.shape = 'object';
      this.seen = null;
    }
    this.out.push({ index: this.index++, line, ...(key !== undefined ? { key } : {}), ...(error ? { error } : { value, text: text.slice(KEY_AT_START.exec(text)![0].length).trim() }) });
    return true;
  }

  /** Records one after another at the top level (shape `values`): each object, whatever its lines, is one record. */
  private feedValues(chunk: string): void {
    let seg = 0;
    for (let i = 0; i < chunk.length; i += 1) {
      const c = chunk.charCodeAt(i);
      if (this.inStringAfter(c)) continue;
      if (this.depth === 0) {
        if (isSpace(c) || c === BOM) continue;
        if (c !== 0x7b) {
          this.problem = `unexpected text between the records, at line ${this.line}: ${firstLineOf(chunk.slice(i).split('\n')[0] ?? '')} (the file holds records one after another, each a JSON object)`;
          return;
        }
        this.depth = 1;
        seg = i;
        this.valueLine = this.line;
        this.valueParts = [];
        continue;
      }
      if (c === 0x22) this.inString = true;
      else if (c === 0x7b || c === 0x5b) this.depth += 1;
      else if (c === 0x7d || c === 0x5d) {
        this.depth -= 1;
        if (this.depth === 0) {
          this.valueParts.push(chunk.slice(seg, i + 1));
          this.out.push({ index: this.index++, line: this.valueLine, ...parsed(this.valueParts.join('')) });
          this.valueParts = [];
        }
      }
    }
    if (this.depth >= 1) this.valueParts.push(chunk.slice(seg));
  }

  private feedLines(text: string): void {
    const lines = (this.carry + text).split('\n');
    this.carry = lines.pop()!;
    for (const l of lines) this.lineRecord(l);
  }

  private lineRecord(raw: string): void {
    this.lineNo += 1;
    let text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (this.lineNo === 1) text = stripBom(text);
    if (!text.trim()) return;
    this.out.push({ index: this.index++, line: this.lineNo, ...parsed(text) });
  }

  end(): JsonFileEnd {
    if (this.shape === 'lines') {
      if (this.carry) this.lineRecord(this.carry);
      this.carry = '';
      return { shape: 'lines', problem: this.problem };
    }
    if (this.shape === 'none') return { shape: 'empty', problem: null };
    if (this.shape === 'values') {
      if (this.depth > 0 && this.problem === null) {
        this.out.push({ index: this.index++, line: this.valueLine, error: this.cutRecord() });
        this.problem = 'the file ends inside a record (truncated?)';
      }
      return { shape: 'values', problem: this.problem };
    }
    if (this.depth > 0 && this.problem === null) {
      const partial = this.parts.join('');
      const m = this.shape !== 'array' ? KEY_AT_START.exec(partial) : null;
      const leading = partial.length - partial.trimStart().length;
      this.out.push({
        index: this.index++,
        line: this.elementLine + (partial.slice(0, leading).match(/\n/g)?.length ?? 0),
        ...(m ? { key: m[1]! } : {}),
        error: this.cutRecord(),
      });
      this.problem = `the file ends before its top-level ${this.shape === 'array' ? 'array' : 'object'} is closed (truncated?)`;
    }
    return { shape: this.shape === 'detect' ? 'object' : this.shape, problem: this.problem };
  }
}

/** Fields of a record: a top-level object whose first member has one of these names is a JSON Lines file of records. */
export async function* readJsonRecords(path: string, rowKeys: ReadonlySet<string>): AsyncGenerator<JsonRecord, JsonFileEnd, undefined> {
  const splitter = new RecordSplitter(rowKeys);
  // Bytes, decoded strictly: a file that is not UTF-8 (Latin-1, UTF-16) is refused saying so, where `encoding: 'utf8'`
  // turned its accented letters into U+FFFD unnoticed. A byte-order mark stays in the text (the splitter skips it).
  const input = createReadStream(path, { highWaterMark: 1 << 16 });
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  let offset = 0;
  let lines = 1;
  const decoded = (chunk: Buffer | undefined): string => {
    try {
      return chunk ? decoder.decode(chunk, { stream: true }) : decoder.decode();
    } catch {
      const at = chunk ? Math.max(0, firstInvalidUtf8(chunk)) : 0;
      const line = lines + (chunk ? chunk.subarray(0, at).filter(b => b === 0x0a).length : 0);
      const byte = chunk?.[at];
      const problem = byte !== undefined ? notUtf8ByteProblem(byte, `byte ${offset + at + 1} of the file`) : 'not UTF-8 text (it ends inside a character); save the file as UTF-8';
      throw new InputFileError(`${path} line ${line}: ${problem} and run the command again`);
    }
  };
  try {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      if (offset === 0) {
        const utf16 = utf16Of(chunk);
        if (utf16) throw new InputFileError(`${path}: the file is ${utf16} text; save it as UTF-8 and run the command again`);
      }
      const text = decoded(chunk);
      offset += chunk.length;
      for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) lines += 1;
      splitter.feed(text);
      while (splitter.out.length) yield splitter.out.shift()!;
    }
    splitter.feed(decoded(undefined));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!code || err instanceof InputFileError) throw err;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw InputFileError.unreadable(path, `${code}: ${why}`);
  } finally {
    input.destroy();
  }
  const end = splitter.end();
  while (splitter.out.length) yield splitter.out.shift()!;
  return end;
}
