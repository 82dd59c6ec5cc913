import { readFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { RawJson } from '../util/raw-json.js';
import { stripBom } from '../util/bom.js';
import { firstInvalidUtf8, notUtf8Problem, utf16Of } from '../util/utf8.js';

/** A user's input file is wrong: the message names the file, the line and the problem. */
export class InputFileError extends Error {
  readonly code = 'INPUT_FILE_INVALID';
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }

  /**
   * A file that cannot be read: `${path}: cannot read the ${what} (${detail})${more}`. A path of `-` is said to be a
   * file name here: only envfleet sandbox run and check read standard input (`-: cannot read the file (ENOENT)` left a
   * user wondering).
   */
  static unreadable(path: string, detail: string, what = 'file', more = ''): InputFileError {
    const stdin = path === '-' ? "; standard input (-) is read only by envfleet sandbox run and check: give the file's path" : '';
    return new InputFileError(`${path}: cannot read the ${what} (${detail})${stdin}${more}`);
  }
}

function lineAndColumn(text: string, position: number): string {
  const before = text.slice(0, position);
  const line = before.split('\n').length;
  const column = position - before.lastIndexOf('\n');
  return `line ${line}, column ${column}`;
}

/**
 * Where a JSON syntax error is. Node 20's JSON.parse does not always say; JSON is YAML, so the
 * YAML parser, which reports line and column, locates it (when it also rejects the text).
 */
function locateJsonError(text: string, message: string): string {
  const position = /position (\d+)/.exec(message)?.[1];
  if (position !== undefined) return ` at ${lineAndColumn(text, Number(position))}`;
  const first = parseDocument(text).errors[0]?.linePos?.[0];
  return first ? ` at line ${first.line}, column ${first.col}` : '';
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map(i => `${i.path.length ? i.path.join('.') : '(top level)'}: ${i.message}`)
    .join('; ');
}

/** The path `-`: standard input (`--calls -`). */
export const STDIN_PATH = '-';

/** A path as messages name it. */
const named = (path: string): string => (path === STDIN_PATH ? 'standard input' : path);

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks);
}

async function readText(path: string): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = path === STDIN_PATH ? await readAll(process.stdin) : await readFile(path);
  } catch (err) {
    throw new InputFileError(`${named(path)}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const utf16 = utf16Of(bytes);
  if (utf16) throw new InputFileError(`${named(path)}: the file is ${utf16} text; save it as UTF-8 and run the command again`);
  const invalid = firstInvalidUtf8(bytes);
  if (invalid !== -1) {
    const lineStart = invalid === 0 ? 0 : bytes.lastIndexOf(0x0a, invalid - 1) + 1;
    const line = bytes.subarray(0, lineStart).filter(b => b === 0x0a).length + 1;
    throw new InputFileError(`${named(path)} line ${line}: ${notUtf8Problem(bytes, lineStart, invalid)}`);
  }
  return stripBom(bytes.toString('utf8'));
}

/** The JSON value of a file's text, or an InputFileError saying where it is not JSON. */
function parseJsonText(path: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    throw new InputFileError(`${named(path)}: not valid JSON${locateJsonError(text, message)}: ${message}`);
  }
}

/** Reads one JSON document; with a schema, validates it. */
export async function readJsonFile<T = unknown>(path: string, schema?: z.ZodType<T>): Promise<T> {
  const value = parseJsonText(path, await readText(path));
  if (!schema) return value as T;
  const result = schema.safeParse(value);
  if (!result.success) throw new InputFileError(`${named(path)}: ${describeIssues(result.error)}`);
  return result.data;
}

/**
 * Reads a JSON file and keeps its text (RawJson): a state given to a Python check reaches it as
 * written (`1.0` stays a float), as a session's final state does in a rollout.
 */
export async function readJsonFileAsText(path: string): Promise<RawJson> {
  const text = await readText(path);
  parseJsonText(path, text);
  return new RawJson(text.trim());
}

/** Reads a JSONL file (one JSON value per line; blank lines skipped), validating each line. */
export async function readJsonlFile<T>(path: string, schema: z.ZodType<T>): Promise<T[]> {
  return (await readJsonlLines(path, schema)).map(l => l.value);
}

/** readJsonlFile, with each value's line as written (its numbers as the file spells them, for Python). */
export async function readJsonlLines<T>(path: string, schema: z.ZodType<T>): Promise<{ readonly value: T; readonly text: string }[]> {
  const text = await readText(path);
  const out: { value: T; text: string }[] = [];
  for (const [index, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (!line) continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      throw new InputFileError(`${named(path)} line ${index + 1}: not valid JSON: ${(err as Error).message}`);
    }
    const result = schema.safeParse(value);
    if (!result.success) throw new InputFileError(`${named(path)} line ${index + 1}: ${describeIssues(result.error)}`);
    out.push({ value: result.data, text: line });
  }
  return out;
}
