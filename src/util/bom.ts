import { readFile } from 'node:fs/promises';

/**
 * A text file's content without its leading byte order mark. Windows editors and Excel start a
 * UTF-8 file with U+FEFF, which `readFile(path, 'utf8')` keeps and JSON.parse refuses as an
 * invisible "Unexpected token". Every reader of a user's JSON, JSON Lines or YAML file calls this, and so do
 * the importers for the Python sources of a checkout (Python refuses U+FEFF in a source string, though CPython
 * skips it at the start of a .py file).
 */
export function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** A text file read as UTF-8, without its leading byte order mark (stripBom). */
export async function readTextFile(path: string): Promise<string> {
  return stripBom(await readFile(path, 'utf8'));
}
