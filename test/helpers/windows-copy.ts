import { cp, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A copy of a fixture folder as a checkout looks on Windows (git's autocrlf, an editor that saves UTF-8
 * with a byte order mark): every text file with CRLF line endings and a BOM at its start.
 */
export async function windowsCopy(from: string, to: string, extensions = ['.py', '.json', '.jsonl', '.md']): Promise<void> {
  await cp(from, to, { recursive: true });
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.isDirectory()) await walk(path);
      else if (extensions.some(x => e.name.endsWith(x))) {
        const text = (await readFile(path, 'utf8')).replace(/\r\n/g, '\n').replace(/\n/g, '\r\n');
        await writeFile(path, `\ufeff${text}`);
      }
    }
  };
  await walk(to);
}
