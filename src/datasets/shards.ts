import { createReadStream } from 'node:fs';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';
import { AppError, ArchivedTrajectoryMissingError } from '../errors.js';
import type { RunStore } from '../runs/store.js';
import { isArchived, type Trajectory } from '../rollouts/types.js';

/**
 * Calls `fn` with each line of a shard file (`trajectories/part-NNNNN.jsonl`) whose trajectory id is
 * in `ids`, reading line by line. Throws ArchivedTrajectoryMissingError if the file cannot be read
 * or lacks one of the ids.
 */
async function eachShardLine(path: string, ids: ReadonlySet<string>, fn: (id: string, line: string, lineNumber: number) => Promise<void> | void): Promise<void> {
  const seen = new Set<string>();
  let n = 0;
  // What `fn` threw goes as it is (a full disk while the export writes is not an unreadable shard).
  let fromFn: unknown;
  try {
    // A missing or unreadable file surfaces as the stream's error, in the loop.
    for await (const line of createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity })) {
      n += 1;
      if (!line) continue;
      // The id is the first field the sink writes; parse the whole line only when it is not.
      const match = /^\{"id":"((?:[^"\\]|\\.)*)"/.exec(line);
      let id: string | undefined;
      try {
        id = match ? (JSON.parse(`"${match[1]}"`) as string) : (JSON.parse(line) as { id?: string }).id;
      } catch (err) {
        throw damagedLine([...ids].filter(i => !seen.has(i)), path, n, err);
      }
      if (id === undefined || !ids.has(id) || seen.has(id)) continue;
      seen.add(id);
      try {
        await fn(id, line, n);
      } catch (err) {
        fromFn = err;
        throw err;
      }
    }
  } catch (err) {
    // A file that cannot be read (its errno code); a damaged line or anything `fn` threw goes as it is.
    if (err !== fromFn && !(err instanceof AppError) && (err as NodeJS.ErrnoException).code) throw new ArchivedTrajectoryMissingError([...ids].filter(id => !seen.has(id)), path, err);
    throw err;
  }
  const missing = [...ids].filter(id => !seen.has(id));
  if (missing.length) throw new ArchivedTrajectoryMissingError(missing, path);
}

/** A line of a shard that is not whole JSON (cut in the middle, a character cut in two): which file, which line, what to do. */
const damagedLine = (ids: readonly string[], path: string, line: number, err: unknown) =>
  new ArchivedTrajectoryMissingError(ids, path, err, { line, problem: (err as Error).message });

/** The lines of the given trajectory ids in a shard file (see eachShardLine). */
export async function readTrajectoryLines(path: string, ids: ReadonlySet<string>): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  await eachShardLine(path, ids, (id, line) => {
    found.set(id, line);
  });
  return found;
}

/** Maps a recorded shard path to the same shard file in `dir` (the sink's output was moved). */
export const shardsMovedTo = (dir: string) => (path: string) => join(dir, basename(path));

/**
 * Calls `visit` with each of the run's trajectories in full, one at a time (memory stays flat):
 * first those still whole in Redis, in the order of `ids`, as they are read, then those the sink
 * has written (Redis keeps only their summary), from its shard files in shard and line order.
 * ArchivedTrajectoryMissingError if a shard cannot be read or lacks a trajectory (the caller drops
 * what it wrote). `relocate` maps a recorded shard path to where the file is now. Returns how many
 * were visited.
 */
export async function forEachFullTrajectory(
  store: RunStore,
  runId: string,
  ids: readonly string[],
  options: { readonly relocate?: ((path: string) => string) | undefined },
  visit: (t: Trajectory) => Promise<void> | void,
): Promise<number> {
  const where = options.relocate ?? ((path: string) => path);
  const byShard = new Map<string, Set<string>>();
  let visited = 0;
  for (const id of ids) {
    const t = await store.getDoc(runId, 'trajectory', id);
    if (!t) continue;
    if (isArchived(t)) {
      const path = where(t.archived.path);
      byShard.set(path, (byShard.get(path) ?? new Set<string>()).add(t.id));
    } else {
      await visit(t);
      visited += 1;
    }
  }
  for (const path of [...byShard.keys()].sort()) {
    const wanted = byShard.get(path)!;
    await eachShardLine(path, wanted, async (id, line, n) => {
      let t: Trajectory;
      try {
        t = JSON.parse(line) as Trajectory;
      } catch (err) {
        throw damagedLine([id], path, n, err);
      }
      await visit(t);
      visited += 1;
    });
  }
  return visited;
}
