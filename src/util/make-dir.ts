import { randomUUID } from 'node:crypto';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { AppError } from '../errors.js';

/** Why a folder cannot be made, in words, by the system's code. */
const WHY: Readonly<Record<string, string>> = {
  EROFS: 'the file system is read-only',
  EACCES: 'permission denied',
  EPERM: 'the system does not permit it there',
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is used up',
  ENOTDIR: 'a part of the path is a file, not a folder',
  EEXIST: 'a file of that name is in the way',
  ENOENT: 'its parent folder exists but takes no new folders (a virtual file system such as /proc or /sys)',
  ENAMETOOLONG: 'the path is too long',
  EFBIG: 'the file grew past the largest this process may write (ulimit -f) or the file system takes',
  EIO: 'the disk failed to write',
};

/** The codes of a folder that takes no writes (read-only, permissions), where room is not what is missing. */
const NOT_WRITABLE: ReadonlySet<string> = new Set(['EROFS', 'EACCES', 'EPERM']);

/** An output folder that cannot be made: which folder, why (with the system's code) and what to do. */
export class OutputFolderError extends AppError {
  constructor(path: string, what: string, cause: unknown) {
    const code = (cause as NodeJS.ErrnoException | null)?.code ?? '';
    const why = WHY[code] ?? (cause as Error | null)?.message ?? String(cause);
    super('OUTPUT_NOT_WRITABLE', `cannot create ${what} ${resolve(path)}: ${why}${code ? ` (${code})` : ''}. Choose a folder on a disk you can write to.`, { cause, details: { path, code } });
  }
}

/** An output file that could not be written: which file, why (with the system's code) and what to do. */
export class OutputFileError extends AppError {
  constructor(path: string, cause: unknown) {
    const code = (cause as NodeJS.ErrnoException | null)?.code ?? '';
    const why = WHY[code] ?? (cause as Error | null)?.message ?? String(cause);
    const what =
      code === 'EFBIG'
        ? 'Raise the limit (ulimit -f), or write to a file system that takes larger files'
        : NOT_WRITABLE.has(code)
          ? 'Make the folder writable for this user, or write to another folder'
          : 'Free room there, or write to a folder on a disk with room';
    super('OUTPUT_NOT_WRITABLE', `cannot write ${resolve(path)}: ${why}${code ? ` (${code})` : ''}. ${what}; nothing half-written is left under the file's name.`, { cause, details: { path, code } });
  }
}

/** A sink's shard that could not be written: which file, why, and that the batch stays in Redis. */
export class ShardWriteError extends AppError {
  constructor(path: string, cause: unknown) {
    const code = (cause as NodeJS.ErrnoException | null)?.code ?? '';
    const why = WHY[code] ?? (cause as Error | null)?.message ?? String(cause);
    const what =
      code === 'EFBIG'
        ? 'Raise the limit (ulimit -f), or give the sink another --out on a file system that takes larger files'
        : NOT_WRITABLE.has(code)
          ? 'Make the folder writable for this user (or give the sink another --out)'
          : 'Free room on that disk (or give the sink another --out)';
    super(
      'OUTPUT_NOT_WRITABLE',
      `cannot write the sink's shard ${resolve(path)}: ${why}${code ? ` (${code})` : ''}. The trajectories of the batch being written are not acknowledged and stay in Redis, and everything acknowledged before is on disk. ${what}, then run the sink again: it cuts a half-written last line and writes those trajectories.`,
      { cause, details: { path, code } },
    );
  }
}

/**
 * Writes `text` to `path` whole or not at all: into a partial file beside it, then renamed. A write that fails (a full disk, a
 * file-size limit) leaves no partial file and is an OutputFileError naming the file.
 */
export async function writeWholeFile(path: string, text: string): Promise<void> {
  // A name of its own: two writers of one file at once (two exports into one folder) must not rename each other's.
  const partial = `${path}.${randomUUID().slice(0, 8)}.partial`;
  try {
    await writeFile(partial, text, 'utf8');
    await rename(partial, path);
  } catch (err) {
    await rm(partial, { force: true });
    throw new OutputFileError(path, err);
  }
}

/**
 * `mkdir -p`, failing with the first real reason. Node 20's `mkdir(path, { recursive: true })` spins at
 * 100 % CPU forever under /proc (creating the folder says ENOENT although its parent exists, and Node
 * takes ENOENT to mean "make the parent first"), and on a read-only mount it can report ENOENT instead
 * of EROFS. Here a folder is made once its parent is there, and a second ENOENT is the answer.
 * `what` names the folder in the message ("the output folder (export --out)").
 */
export async function makeFolder(path: string, what: string): Promise<void> {
  try {
    await makeFolderIn(resolve(path));
  } catch (err) {
    throw new OutputFolderError(path, what, err);
  }
}

async function makeFolderIn(dir: string): Promise<void> {
  for (let attempt = 0; ; attempt += 1) {
    try {
      await mkdir(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') {
        // A folder made meanwhile (another process) is fine; a file of that name is not.
        if ((await stat(dir)).isDirectory()) return;
        throw err;
      }
      const parent = dirname(dir);
      if (code !== 'ENOENT' || attempt > 0 || parent === dir) throw err;
      await makeFolderIn(parent);
    }
  }
}
