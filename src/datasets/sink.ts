import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { mkdir, open, readdir, readFile, truncate } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { isCluster, type Redis } from '../redis/connection.js';
import { redisScript } from '../redis/scripts.js';
import { runKeys } from '../runs/keys.js';
import type { RunStore } from '../runs/store.js';
import { sleep } from '../util/sleep.js';
import { readTrajectoryLines } from './shards.js';
import { archivedTrajectory, isArchived, type StoredTrajectory } from '../rollouts/types.js';

export interface SinkOptions {
  readonly redis: Redis;
  readonly prefix: string;
  readonly store: RunStore;
  readonly runId: string;
  readonly dir: string;
  /** Keep waiting for trajectories after the run has no outstanding job. */
  readonly follow?: boolean;
  readonly shardLines?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (written: number) => void;
}

export interface SinkResult {
  readonly written: number;
  readonly skippedDuplicates: number;
  readonly shards: readonly string[];
}

const GROUP = 'sink';
const LOCK_MS = 5_000;

/** The sink's lock, kept (PEXPIRE) or let go (DEL) only by the sink holding it. KEYS: lock. ARGV: token[, ms]. */
const RENEW_LOCK = redisScript('sink_renew_lock', "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0", 1);
const RELEASE_LOCK = redisScript('sink_release_lock', "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0", 1);

/**
 * Writes a run's finished trajectories from its Redis stream to `DIR/trajectories/part-NNNNN.jsonl`,
 * exactly once: an entry is acknowledged only after its line is on disk (fsync), ids already on
 * disk are skipped (a crash between the write and the acknowledgement, or a job that published
 * twice, writes nothing twice), a torn last line is cut off at start, and entries a crashed sink
 * had read but not acknowledged are claimed again. One sink per run (a lock in Redis).
 *
 * Once a line is on disk, the trajectory's document in Redis is replaced by its summary (everything but
 * the transcript, steps and final state) with the shard's path, and its stream entry is deleted, so a
 * long run's Redis holds what is still in flight rather than every trajectory ever made. A trajectory
 * archived into another directory is copied from there (ArchivedTrajectoryMissingError if it is gone).
 */
export async function runSink(o: SinkOptions): Promise<SinkResult> {
  const keys = runKeys(o.prefix, o.runId, isCluster(o.redis));
  const key = keys.trajectories;
  const lockKey = keys.sinkLock;
  const token = randomUUID();
  const consumer = `${hostname()}-${process.pid}`;
  const shardLines = o.shardLines ?? 5_000;
  const dir = join(o.dir, 'trajectories');
  await mkdir(dir, { recursive: true });

  for (let waited = 0; ; waited += 250) {
    if ((await o.redis.set(lockKey, token, 'PX', LOCK_MS, 'NX')) === 'OK') break;
    if (waited > LOCK_MS * 3) throw new Error(`another sink is writing run "${o.runId}" (lock ${lockKey}); stop it first`);
    await sleep(250, o.signal);
  }
  const renew = setInterval(() => {
    void RENEW_LOCK(o.redis, [lockKey], [token, String(LOCK_MS)]);
  }, LOCK_MS / 3);

  try {
    try {
      await o.redis.xgroup('CREATE', key, GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!String(err).includes('BUSYGROUP')) throw err;
    }
    const { written, shard } = await scanShards(dir);
    let shardIndex = shard.index;
    let shardCount = shard.lines;
    let handle = await open(join(dir, shardName(shardIndex)), 'a');
    const shards = new Set<string>([shardName(shardIndex)]);
    let wrote = 0;
    let skipped = 0;

    const handleEntries = async (entries: [string, string[]][]) => {
      if (!entries.length) return;
      const acks: string[] = [];
      const done: { doc: StoredTrajectory; path: string }[] = [];
      let lines = '';
      const elsewhere = new Map<string, Set<string>>();
      const docs = new Map<string, StoredTrajectory | null>();
      // Each document's text as stored: the line written is that text, not a re-serialization of its parse
      // (which would also turn a final state's 1.0 into 1, and cost a stringify per trajectory).
      const texts = new Map<string, string>();
      for (const [, fields] of entries) {
        const trajectoryId = fields[fields.indexOf('id') + 1];
        if (!trajectoryId || written.has(trajectoryId) || docs.has(trajectoryId)) continue;
        const text = await o.store.getDocText(o.runId, 'trajectory', trajectoryId);
        const doc = text === null ? null : (JSON.parse(text) as StoredTrajectory);
        docs.set(trajectoryId, doc);
        if (text !== null) texts.set(trajectoryId, text);
        // Written to a shard of another directory: its line is copied from there.
        if (doc && isArchived(doc)) elsewhere.set(doc.archived.path, (elsewhere.get(doc.archived.path) ?? new Set<string>()).add(trajectoryId));
      }
      const copied = new Map<string, string>();
      for (const [path, ids] of elsewhere) for (const [id, line] of await readTrajectoryLines(path, ids)) copied.set(id, line);
      for (const [entryId, fields] of entries) {
        const trajectoryId = fields[fields.indexOf('id') + 1];
        if (!trajectoryId || written.has(trajectoryId)) {
          skipped += trajectoryId ? 1 : 0;
          acks.push(entryId);
          // On disk, but a crash may have come before its summary replaced the document.
          const stored = trajectoryId ? await o.store.getDoc(o.runId, 'trajectory', trajectoryId) : null;
          if (stored && !isArchived(stored)) done.push({ doc: stored, path: resolve(dir, written.get(trajectoryId!)!) });
          continue;
        }
        const doc = docs.get(trajectoryId);
        if (!doc) continue; // not stored yet: left pending, retried later
        lines += `${copied.get(trajectoryId) ?? oneLine(texts.get(trajectoryId)!)}\n`;
        written.set(trajectoryId, shardName(shardIndex));
        done.push({ doc, path: resolve(dir, shardName(shardIndex)) });
        acks.push(entryId);
        wrote += 1;
        shardCount += 1;
        if (shardCount >= shardLines) {
          await handle.write(lines);
          lines = '';
          await handle.sync();
          await handle.close();
          shardIndex += 1;
          shardCount = 0;
          handle = await open(join(dir, shardName(shardIndex)), 'a');
          shards.add(shardName(shardIndex));
        }
      }
      if (lines) await handle.write(lines);
      await handle.sync();
      // Only now that the lines are on disk: keep the summaries in Redis, then let go of the entries
      // (a crash in between re-reads entries whose ids are already on disk, and skips them).
      for (const { doc, path } of done) await o.store.putDoc(o.runId, 'trajectory', doc.id, archivedTrajectory(doc, path));
      if (acks.length) await o.redis.multi().xack(key, GROUP, ...acks).xdel(key, ...acks).exec();
      o.onProgress?.(wrote);
    };

    try {
      // Entries a crashed sink read but never acknowledged.
      let cursor = '0-0';
      do {
        const [next, entries] = (await o.redis.xautoclaim(key, GROUP, consumer, 0, cursor, 'COUNT', 200)) as [string, [string, string[]][], unknown];
        await handleEntries(entries);
        cursor = next;
      } while (cursor !== '0-0');
      for (;;) {
        o.signal?.throwIfAborted();
        const res = (await o.redis.xreadgroup('GROUP', GROUP, consumer, 'COUNT', 200, 'BLOCK', 500, 'STREAMS', key, '>')) as [string, [string, string[]][]][] | null;
        const entries = res?.[0]?.[1] ?? [];
        await handleEntries(entries);
        if (entries.length) continue;
        // Pending entries of ours whose document was missing a moment ago.
        const mine = (await o.redis.xreadgroup('GROUP', GROUP, consumer, 'COUNT', 200, 'STREAMS', key, '0')) as [string, [string, string[]][]][] | null;
        await handleEntries(mine?.[0]?.[1] ?? []);
        if (o.follow) continue;
        const outstanding = await o.store.pendingCount(o.runId);
        const pending = (await o.redis.xpending(key, GROUP)) as [number, ...unknown[]];
        if (outstanding === 0 && Number(pending[0]) === 0) {
          const more = (await o.redis.xreadgroup('GROUP', GROUP, consumer, 'COUNT', 1, 'STREAMS', key, '>')) as [string, [string, string[]][]][] | null;
          if (!more?.[0]?.[1].length) break;
          await handleEntries(more[0][1]);
        }
      }
    } finally {
      await handle.close();
    }
    return { written: wrote, skippedDuplicates: skipped, shards: [...shards].sort() };
  } finally {
    clearInterval(renew);
    await RELEASE_LOCK(o.redis, [lockKey], [token]);
  }
}

const shardName = (i: number) => `part-${String(i).padStart(5, '0')}.jsonl`;

/**
 * JSON text on one line: a line break can only be whitespace between tokens (JSON strings hold them
 * escaped), so it becomes a space; text without one (what envfleet writes) is returned as it is.
 */
export function oneLine(json: string): string {
  return /[\r\n]/.test(json) ? json.replace(/[\r\n]/g, ' ') : json;
}

/**
 * The complete lines at the start of a shard's bytes: `end`, the byte offset just past the last of them
 * (what the file is truncated to), how many there are, and the trajectory ids among them. A line is
 * complete when a newline follows it and it parses; the first that does not (a write cut short by a
 * crash) ends them. Everything is measured in bytes, as `truncate` takes it: a trajectory's model text
 * (emoji, CJK, accents) has more UTF-8 bytes than UTF-16 characters, and an offset in characters cuts
 * into an earlier line whose Redis copy is already only a summary.
 */
export function completeLines(buf: Buffer): { end: number; lines: number; ids: string[] } {
  const ids: string[] = [];
  let end = 0;
  let lines = 0;
  for (let newline = buf.indexOf(0x0a, end); newline !== -1; newline = buf.indexOf(0x0a, end)) {
    try {
      const id = (JSON.parse(buf.toString('utf8', end, newline)) as { id?: string }).id;
      if (id) ids.push(id);
    } catch {
      break;
    }
    end = newline + 1;
    lines += 1;
  }
  return { end, lines, ids };
}

/** Ids already on disk (with their shard's name), and where to go on writing; a torn last line (crash mid-write) is cut off. */
export async function scanShards(dir: string): Promise<{ written: Map<string, string>; shard: { index: number; lines: number } }> {
  const names = (await readdir(dir)).filter(n => /^part-\d{5}\.jsonl$/.test(n)).sort();
  const written = new Map<string, string>();
  let last = { index: 0, lines: 0 };
  for (const name of names) {
    const path = join(dir, name);
    const bytes = await readFile(path);
    const { end, lines, ids } = completeLines(bytes);
    for (const id of ids) written.set(id, name);
    if (end < bytes.length) await truncate(path, end);
    last = { index: Number(name.slice(5, 10)), lines };
  }
  return { written, shard: last };
}
