import { createReadStream } from 'node:fs';

/**
 * The encoding checks of a user's text file. `readFile(path, 'utf8')` turns every byte that is not UTF-8 into
 * U+FFFD without a word: a tasks file saved as Latin-1 or Windows-1252 ("R\xe9server") reached the model as
 * "R�server", and a file saved as UTF-16 (Windows Notepad, PowerShell's `>`) failed with JSON errors about
 * invisible characters.
 */

/** 'UTF-16LE' or 'UTF-16BE' when the bytes start with that byte-order mark, or look like ASCII text in UTF-16 (NUL bytes every other byte). */
export function utf16Of(bytes: Uint8Array): 'UTF-16LE' | 'UTF-16BE' | null {
  if (bytes.length >= 2 && bytes[0] === 0xff && bytes[1] === 0xfe) return 'UTF-16LE';
  if (bytes.length >= 2 && bytes[0] === 0xfe && bytes[1] === 0xff) return 'UTF-16BE';
  if (bytes.length >= 4 && bytes[0] !== 0 && bytes[1] === 0 && bytes[2] !== 0 && bytes[3] === 0) return 'UTF-16LE';
  if (bytes.length >= 4 && bytes[0] === 0 && bytes[1] !== 0 && bytes[2] === 0 && bytes[3] !== 0) return 'UTF-16BE';
  return null;
}

/** The offset of the first byte in `bytes[start, end)` that does not begin or continue a valid UTF-8 character, or -1. */
export function firstInvalidUtf8(bytes: Uint8Array, start = 0, end = bytes.length): number {
  for (let i = start; i < end; ) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i += 1;
      continue;
    }
    // The length of the sequence and the range of its second byte (overlong forms and surrogates excluded).
    let n: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) n = 2;
    else if (b >= 0xe0 && b <= 0xef) {
      n = 3;
      if (b === 0xe0) lo = 0xa0;
      if (b === 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      n = 4;
      if (b === 0xf0) lo = 0x90;
      if (b === 0xf4) hi = 0x8f;
    } else return i;
    if (i + n > end) return i;
    for (let k = 1; k < n; k += 1) {
      const c = bytes[i + k]!;
      if (k === 1 ? c < lo || c > hi : c < 0x80 || c > 0xbf) return i;
    }
    i += n;
  }
  return -1;
}

/** What to tell the person whose file is not UTF-8: where, which byte, and what to do. */
export function notUtf8Problem(bytes: Uint8Array, lineStart: number, at: number): string {
  const column = Buffer.from(bytes.subarray(lineStart, at)).toString('utf8').length + 1;
  const cut = cutCharacter(bytes, at);
  if (cut) {
    return `not UTF-8 text: the line ends in the middle of a character (byte 0x${bytes[at]!.toString(16).toUpperCase()} at column ${column} begins a character of ${cut.of} bytes, of which only ${cut.has} are there): the file was cut short, or the line cut by a tool that counts bytes; write it again whole`;
  }
  return notUtf8ByteProblem(bytes[at]!, `column ${column}`);
}

/**
 * Where the bytes at `at` begin a UTF-8 character that the line's (or the file's) end cuts: its length and the bytes of it
 * there. At least two of them (a lead byte and a continuation byte): a lone byte at a line's end is as likely a Latin-1
 * letter ("café" in Windows-1252), which is said as such.
 */
function cutCharacter(bytes: Uint8Array, at: number): { of: number; has: number } | null {
  const lead = bytes[at]!;
  const of = lead >= 0xc2 && lead <= 0xdf ? 2 : lead >= 0xe0 && lead <= 0xef ? 3 : lead >= 0xf0 && lead <= 0xf4 ? 4 : 0;
  if (!of) return null;
  let i = at + 1;
  while (i < bytes.length && i - at < of && (bytes[i]! & 0xc0) === 0x80) i += 1;
  if (i - at >= of || i - at < 2) return null;
  return i === bytes.length || bytes[i] === 0x0a || bytes[i] === 0x0d ? { of, has: i - at } : null;
}

/** The same for byte `byte` found `where` (a column, a position in the file). */
export function notUtf8ByteProblem(byte: number, where: string): string {
  const latin = byte >= 0xa0 ? ' (as Latin-1 / Windows-1252 writes accented letters)' : '';
  return `not UTF-8 text: byte 0x${byte.toString(16).toUpperCase().padStart(2, '0')} at ${where}${latin}; save the file as UTF-8`;
}

/** A line of a text file (its number from 1, without its line end), or the problem of a line that is not UTF-8. */
export type Utf8Line = { readonly line: number; readonly text: string } | { readonly line: number; readonly problem: string; readonly wholeFile?: true };

/**
 * The lines of a file read as bytes, streamed (a line may cross any number of reads): each line that is UTF-8 as its
 * text (CR of a CRLF end and the byte order mark of line 1 removed), each one that is not as a problem saying where and
 * what to do (notUtf8Problem), where `createReadStream(path, { encoding: 'utf8' })` turned its bytes into U+FFFD.
 * A UTF-16 file is one problem for the whole file (`wholeFile`, on line 1) and nothing more; the stream's own error (with
 * its `code`) is thrown when the file cannot be read.
 */
export async function* utf8Lines(path: string): AsyncGenerator<Utf8Line, void, undefined> {
  const input = createReadStream(path, { highWaterMark: 1 << 16 });
  let pending: Buffer[] = [];
  let line = 0;
  const lineOf = (bytes: Buffer): Utf8Line => {
    line += 1;
    const end = bytes.length > 0 && bytes[bytes.length - 1] === 0x0d ? bytes.length - 1 : bytes.length;
    const invalid = firstInvalidUtf8(bytes, 0, end);
    if (invalid !== -1) return { line, problem: notUtf8Problem(bytes, 0, invalid) };
    const text = bytes.toString('utf8', 0, end);
    return { line, text: line === 1 && text.charCodeAt(0) === 0xfeff ? text.slice(1) : text };
  };
  try {
    let first = true;
    for await (const chunk of input as AsyncIterable<Buffer>) {
      if (first) {
        first = false;
        const utf16 = utf16Of(chunk);
        if (utf16) {
          yield { line: 1, problem: `the file is ${utf16} text; save it as UTF-8`, wholeFile: true };
          return;
        }
      }
      let start = 0;
      for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, start)) {
        const piece = chunk.subarray(start, nl);
        yield lineOf(pending.length ? Buffer.concat([...pending, piece]) : piece);
        pending = [];
        start = nl + 1;
      }
      if (start < chunk.length) pending.push(chunk.subarray(start));
    }
    if (pending.length) yield lineOf(Buffer.concat(pending));
  } finally {
    input.destroy();
  }
}
