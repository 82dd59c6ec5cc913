import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { ArchivedTrajectoryMissingError } from '../errors.js';
import type { SynthesisStore } from '../synthesis/store.js';
import { isArchived, type StoredTrajectory, type Trajectory } from './types.js';

/**
 * The lines of the given trajectory ids in a shard file (`trajectories/part-NNNNN.jsonl`), read
 * line by line. Throws ArchivedTrajectoryMissingError if the file cannot be read or lacks an id.
 */
export async function readTrajectoryLines(path: string, ids: ReadonlySet<string>): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  try {
    const lines = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
    for await (const line of lines) {
      if (!line) continue;
      // The id is the first field the sink writes; parse only lines that can hold a wanted id.
      const match = /^\{"id":"((?:[^"\\]|\\.)*)"/.exec(line);
      const id = match ? (JSON.parse(`"${match[1]}"`) as string) : (JSON.parse(line) as { id?: string }).id;
      if (id !== undefined && ids.has(id)) found.set(id, line);
    }
  } catch (err) {
    throw new ArchivedTrajectoryMissingError([...ids], path, err);
  }
  const missing = [...ids].filter(id => !found.has(id));
  if (missing.length) throw new ArchivedTrajectoryMissingError(missing, path);
  return found;
}

/**
 * The run's trajectories in full, in the order of `ids`: from Redis while the sink has not written
 * them, from the sink's shard files once it has (Redis then keeps only their summary).
 */
export async function loadFullTrajectories(store: SynthesisStore, runId: string, ids: readonly string[]): Promise<Trajectory[]> {
  const docs: StoredTrajectory[] = [];
  const byShard = new Map<string, Set<string>>();
  for (const id of ids) {
    const t = await store.getDoc<StoredTrajectory>(runId, 'trajectory', id);
    if (!t) continue;
    docs.push(t);
    if (isArchived(t)) byShard.set(t.archived.path, (byShard.get(t.archived.path) ?? new Set<string>()).add(t.id));
  }
  const fromShards = new Map<string, Trajectory>();
  for (const [path, wanted] of byShard) {
    for (const [id, line] of await readTrajectoryLines(path, wanted)) fromShards.set(id, JSON.parse(line) as Trajectory);
  }
  return docs.map(t => (isArchived(t) ? fromShards.get(t.id)! : t));
}
