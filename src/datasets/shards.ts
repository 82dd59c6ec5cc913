import { createReadStream } from 'node:fs';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';
import { AppError, ArchivedTrajectoryMissingError } from '../errors.js';
import type { RunStore } from '../runs/store.js';
import { isArchived, type Trajectory } from '../rollouts/types.js';

/**
 * Calls `fn` with each line of a shard file (`trajectories/part-NNNNN.jsonl`) whose trajectory id is
 * in `ids`, and the line parsed, reading line by line. A line that is not whole JSON is passed over: a
 * torn write left in the middle of a shard (a sink that died mid-write, with lines of another run's sink
 * after it: sink.ts keeps those) holds no trajectory, and the whole copy of its trajectory, written again
 * by the next sink, comes later. Throws ArchivedTrajectoryMissingError if the file cannot be read or
 * lacks a whole line of one of the ids (naming the first damaged line that had one of them).
 */
async function eachShardLine(
  path: string,
  ids: ReadonlySet<string>,
  fn: (id: string, line: string, parsed: unknown) => Promise<void> | void,
  onMissing?: (lost: ArchivedTrajectoryMissingError) => void,
): Promise<void> {
  // Given `onMissing`, trajectories the file does not give (it is gone, unreadable, or lacks them) are handed to it
  // and the rest are read; else they are thrown.
  const lost = (e: ArchivedTrajectoryMissingError): void => {
    if (!onMissing) throw e;
    onMissing(e);
  };
  const seen = new Set<string>();
  let n = 0;
  /** The first line that was not whole JSON, and why. */
  let damaged: { line: number; err: unknown } | null = null;
  // What `fn` threw goes as it is (a full disk while the export writes is not an unreadable shard).
  let fromFn: unknown;
  try {
    // A missing or unreadable file surfaces as the stream's error, in the loop.
    for await (const line of createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity })) {
      n += 1;
      if (!line) continue;
      // The id is the first field the sink writes: a line of another id is not parsed.
      const match = /^\{"id":"((?:[^"\\]|\\.)*)"/.exec(line);
      let wanted: string | undefined;
      try {
        if (match) wanted = JSON.parse(`"${match[1]}"`) as string;
      } catch {
        wanted = undefined;
      }
      if (wanted !== undefined && (!ids.has(wanted) || seen.has(wanted))) continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch (err) {
        damaged ??= { line: n, err };
        continue;
      }
      const id = (parsed as { id?: unknown } | null)?.id;
      if (typeof id !== 'string' || !ids.has(id) || seen.has(id)) continue;
      seen.add(id);
      try {
        await fn(id, line, parsed);
      } catch (err) {
        fromFn = err;
        throw err;
      }
    }
  } catch (err) {
    // A file that cannot be read (its errno code); anything `fn` threw goes as it is.
    if (err !== fromFn && !(err instanceof AppError) && (err as NodeJS.ErrnoException).code) return lost(new ArchivedTrajectoryMissingError([...ids].filter(id => !seen.has(id)), path, err));
    throw err;
  }
  const missing = [...ids].filter(id => !seen.has(id));
  if (missing.length) lost(damaged ? damagedLine(missing, path, damaged.line, damaged.err) : new ArchivedTrajectoryMissingError(missing, path));
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
 * what it wrote), or, with `onMissing`, that error handed to it and the others visited. `relocate` maps a recorded shard path to where the file is now. Returns how many
 * were visited.
 */
export async function forEachFullTrajectory(
  store: RunStore,
  runId: string,
  ids: readonly string[],
  options: { readonly relocate?: ((path: string) => string) | undefined; readonly onMissing?: ((lost: ArchivedTrajectoryMissingError) => void) | undefined },
  visit: (t: Trajectory) => Promise<void> | void,
): Promise<number> {
  const byShard = new Map<string, Set<string>>();
  let visited = 0;
  for (const id of ids) {
    const t = await store.getDoc(runId, 'trajectory', id);
    if (!t) continue;
    if (isArchived(t)) {
      const path = t.archived.path;
      byShard.set(path, (byShard.get(path) ?? new Set<string>()).add(t.id));
    } else {
      await visit(t);
      visited += 1;
    }
  }
  // With `relocate`, a shard is read where the sink wrote it, then, for what it does not give there, where relocate
  // says: a run the sink wrote into several folders (one --out filled its disk, the next went elsewhere) has a
  // part-00000.jsonl in each, and only the moved one's are in the new place; and a file made at the old place later
  // (another run's sink) does not hide the moved one (a stranger's probe, then a reviewer's).
  for (const path of [...byShard.keys()].sort()) {
    let wanted = byShard.get(path)!;
    const places = options.relocate ? [...new Set([path, options.relocate(path)])] : [path];
    for (const [i, place] of places.entries()) {
      const last = i === places.length - 1;
      const missed: string[] = [];
      await eachShardLine(
        place,
        wanted,
        async (_id, _line, parsed) => {
          await visit(parsed as Trajectory);
          visited += 1;
        },
        last ? options.onMissing : lost => void missed.push(...lost.ids),
      );
      if (!missed.length) break;
      wanted = new Set(missed);
    }
  }
  return visited;
}
