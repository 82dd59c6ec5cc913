import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { open, readdir, readFile, rm, stat, truncate, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { isCluster, type Redis } from '../redis/connection.js';
import { redisScript } from '../redis/scripts.js';
import { runKeys } from '../runs/keys.js';
import type { RunStore } from '../runs/store.js';
import { sleep } from '../util/sleep.js';
import { readTrajectoryLines } from './shards.js';
import { storedDigest } from '../rollouts/stream.js';
import { archivedTrajectory, isArchived, type StoredTrajectory } from '../rollouts/types.js';
import { makeFolder, OutputFileError, ShardWriteError, writeWholeFile } from '../util/make-dir.js';
import { withoutLoneSurrogates } from '../util/text.js';
import { RequestError, RunGoneError, SinkLockLostError, SinkOutputGoneError } from '../errors.js';

export interface SinkOptions {
  readonly redis: Redis;
  readonly prefix: string;
  readonly store: RunStore;
  readonly runId: string;
  readonly dir: string;
  /** Keep waiting for trajectories after the run has no outstanding job. */
  readonly follow?: boolean;
  readonly shardLines?: number;
  /**
   * After a batch smaller than a full read, how long to let trajectories gather before reading again (default
   * 100 ms). Each batch costs a read of the stream, an fsync and a few round trips whatever its size; without the
   * wait, a sink keeping up with 100 episodes/s wrote batches of 2.3 trajectories on average.
   */
  readonly gatherMs?: number;
  /**
   * Bytes of trajectories read from Redis and written at once (default 64 MiB; at least one trajectory). A read of
   * the stream is cut into batches by the sizes the workers published: 200 trajectories of a careless environment
   * (≈ 10 MB each, results near their cap) held ≈ 2 GB at once, and more with larger caps.
   */
  readonly batchBytes?: number;
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
/** Stream entries read at once. */
const BATCH = 200;
const BATCH_BYTES = 64 << 20;
/** How long a stream missing while its run's record is there (a run being deleted) is waited for before it is made again. */
const STREAM_GONE_MS = 30_000;

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
 *
 * The documents are read and written as bytes: the line is the document's UTF-8 as stored. The summary
 * comes with the stream entry from the worker that stored the trajectory (`trajectorySummary`, with the
 * SHA-1 of the text it stored), so the ~100 KB document is not parsed when its bytes are that text; an
 * entry without one (an older worker's, a job that found its trajectory stored already) or whose
 * document is another has its document parsed for it, as before.
 */
export async function runSink(o: SinkOptions): Promise<SinkResult> {
  const keys = runKeys(o.prefix, o.runId, isCluster(o.redis));
  const key = keys.trajectories;
  const lockKey = keys.sinkLock;
  const token = randomUUID();
  const consumer = `${hostname()}-${process.pid}`;
  const shardLines = o.shardLines ?? 5_000;
  const gatherMs = o.gatherMs ?? 100;
  const dir = join(o.dir, 'trajectories');
  await makeFolder(dir, "the sink's folder (sink --out, and trajectories/ in it)");
  const run = await o.store.getRun(o.runId);
  if (run) await claimFolder(o.dir, o.runId, run.createdAt);

  for (let waited = 0; ; waited += 250) {
    if ((await o.redis.set(lockKey, token, 'PX', LOCK_MS, 'NX')) === 'OK') break;
    if (waited > LOCK_MS * 3) throw new Error(`another sink is writing run "${o.runId}" (lock ${lockKey}); stop it first`);
    await sleep(250, o.signal);
  }
  const renew = setInterval(() => {
    // A renewal that fails (Redis away a moment) is tried again at the next tick, within the lock's life; it must not
    // end the process as an unhandled rejection.
    RENEW_LOCK(o.redis, [lockKey], [token, String(LOCK_MS)]).catch(() => undefined);
  }, LOCK_MS / 3);
  /**
   * Makes sure this sink still holds the run's lock before it writes a batch (one read; a batch costs an fsync
   * anyway). Redis away for longer than the lock lives expires it, and a Redis that restarted without its data has
   * none: a free lock is taken again, and one another sink took meanwhile stops this one, since two sinks of one run
   * would each claim the other's entries and write them twice.
   */
  const holdLock = async (wroteAfter = 0): Promise<void> => {
    const holder = await o.redis.get(lockKey);
    if (holder === token) return;
    if (holder === null && (await o.redis.set(lockKey, token, 'PX', LOCK_MS, 'NX')) === 'OK') return;
    throw new SinkLockLostError(o.runId, lockKey, wroteAfter);
  };
  /** Whether the sink's connection was lost since it started: a run gone after that went with a Redis that restarted empty, not (only maybe) with a delete. */
  let connectionLost = false;
  const onClose = () => {
    connectionLost = true;
  };
  o.redis.on('close', onClose);
  /**
   * A read of the stream that Redis refuses with NOGROUP (or UNBLOCKED: the stream deleted while the read was
   * blocked): the stream's consumer group is gone. Either the run is gone with it (a Redis that restarted without
   * its data, or the run deleted: RUN_GONE, said as such), or only the group or the stream was: the group is made
   * again and the read tried once more (groupAgain).
   */
  const readGroup = async <T>(read: () => Promise<T>): Promise<T> => {
    try {
      return await read();
    } catch (err) {
      // A stream deleted under a blocked XREADGROUP (the run deleted while the sink follows it) answers UNBLOCKED instead.
      if (!/^(NOGROUP|UNBLOCKED)\b/.test(String((err as Error).message))) throw err;
      await groupAgain();
      return read();
    }
  };
  /**
   * Makes the group again once its run is known to be still there. `envfleet runs delete` unlinks the run's keys, its
   * stream among them, before its record: a stream missing while the record is there is most likely a run being
   * deleted, and making it again (MKSTREAM) would leave a stream of a deleted run behind, followed for ever. So the
   * stream is waited for (STREAM_GONE_MS, while the record stays) before it is made again.
   */
  const groupAgain = async (): Promise<void> => {
    for (const started = Date.now(); ; await sleep(250, o.signal)) {
      if (!(await o.store.getRun(o.runId))) throw new RunGoneError(o.runId, undefined, connectionLost);
      const mkstream = Date.now() - started >= STREAM_GONE_MS;
      if (mkstream || (await o.redis.exists(key))) {
        try {
          await createGroup(mkstream);
          return;
        } catch (err) {
          // Deleted between the look and the group.
          if (!/requires the key to exist/i.test(String(err))) throw err;
        }
      }
    }
  };
  const createGroup = async (mkstream = true): Promise<void> => {
    try {
      await (mkstream ? o.redis.xgroup('CREATE', key, GROUP, '0', 'MKSTREAM') : o.redis.xgroup('CREATE', key, GROUP, '0'));
    } catch (err) {
      if (!String(err).includes('BUSYGROUP')) throw err;
    }
  };

  try {
    await createGroup();
    const { written, shard } = await scanShards(dir);
    // A last shard that is full already (a sink that stopped between its last line and the next shard) is not added to.
    const full = shard.lines >= shardLines;
    let shardIndex = full ? shard.index + 1 : shard.index;
    let shardCount = full ? 0 : shard.lines;
    let handle = await open(join(dir, shardName(shardIndex)), 'a+');
    const shards = new Set<string>([shardName(shardIndex)]);
    let wrote = 0;
    let skipped = 0;

    /** Trajectories written by the batch being handled (for the messages of a failure). */
    let batchLines = 0;
    /**
     * Appends `chunks` to the current shard and syncs it, then makes sure the file written is still the one at the
     * shard's path (an output folder deleted under a running sink took every later line with it, and the sink went on
     * acknowledging them). A shard whose last line another run's sink left torn (runs may share a folder) gets a
     * newline first, so that the first line written is a line of its own.
     */
    const append = async (chunks: Buffer[]): Promise<void> => {
      const path = join(dir, shardName(shardIndex));
      if (chunks.length) {
        await holdLock();
        try {
          await writeAll(handle, (await endsInNewline(handle)) ? chunks : [NEWLINE, ...chunks]);
        } catch (err) {
          throw new ShardWriteError(path, err);
        }
      }
      try {
        await handle.sync();
      } catch (err) {
        throw new ShardWriteError(path, err);
      }
      const [held, there] = await Promise.all([handle.stat(), stat(path).catch(() => null)]);
      if (!there || there.ino !== held.ino || there.dev !== held.dev) throw new SinkOutputGoneError(o.runId, resolve(path), batchLines);
    };

    const handleEntries = async (entries: [string, string[]][]) => {
      if (!entries.length) return;
      batchLines = 0;
      await holdLock();
      const acks: string[] = [];
      /** What replaces each written document in Redis once the lines are on disk. */
      const done: { id: string; archived: (path: string) => StoredTrajectory | string }[] = [];
      let lines: Buffer[] = [];
      // The new trajectories of the batch, with the summary their worker published and the digest of the document
      // it stored (none from an older worker, or from a job that found its trajectory stored already).
      const fresh = new Map<string, { summary: string; sha1: string } | undefined>();
      for (const [, fields] of entries) {
        const trajectoryId = fieldOf(fields, 'id');
        if (!trajectoryId || written.has(trajectoryId)) continue;
        const summary = fieldOf(fields, 'summary');
        const sha1 = fieldOf(fields, 'sha1');
        if (fresh.get(trajectoryId) === undefined) fresh.set(trajectoryId, summary !== undefined && sha1 !== undefined ? { summary, sha1 } : undefined);
      }
      // Each document's bytes as stored, read all at once: the line written is those bytes, neither decoded nor
      // re-serialized (a parse would also turn a final state's 1.0 into 1, and cost a stringify per trajectory).
      const ids = [...fresh.keys()];
      const stored = await Promise.all(ids.map(id => o.store.getDocBuffer(o.runId, 'trajectory', id)));
      /** Per trajectory: its line, and its archived form for a path; null while it is not stored yet. */
      const ready = new Map<string, { line: Buffer; archived: (path: string) => StoredTrajectory | string } | null>();
      const elsewhere = new Map<string, Set<string>>();
      ids.forEach((id, i) => {
        const bytes = stored[i] ?? null;
        const published = fresh.get(id);
        if (bytes === null) ready.set(id, null);
        // The summary stands for these bytes only if they are the document its worker stored: not when a job run
        // twice stored another trajectory under the id since, nor when the document is archived already (the digest
        // is of the whole trajectory). Then the document is parsed, and its own summary kept.
        else if (published !== undefined && storedDigest(bytes) === published.sha1) {
          ready.set(id, { line: wellFormedLine(oneLine(bytes)), archived: path => archivedText(published.summary, path) });
        } else {
          // Without a summary (or already archived, or another document than the summary's): the document is parsed, as it always was.
          const doc = JSON.parse(bytes.toString('utf8')) as StoredTrajectory;
          // Written to a shard of another directory: its line is copied from there.
          if (isArchived(doc)) elsewhere.set(doc.archived.path, (elsewhere.get(doc.archived.path) ?? new Set<string>()).add(id));
          ready.set(id, { line: wellFormedLine(oneLine(bytes)), archived: path => archivedTrajectory(doc, path) });
        }
      });
      for (const [path, ids] of elsewhere) {
        for (const [id, line] of await readTrajectoryLines(path, ids)) ready.set(id, { ...ready.get(id)!, line: wellFormedLine(Buffer.from(line, 'utf8')) });
      }
      for (const [entryId, fields] of entries) {
        const trajectoryId = fieldOf(fields, 'id');
        if (!trajectoryId || written.has(trajectoryId)) {
          skipped += trajectoryId ? 1 : 0;
          acks.push(entryId);
          // On disk, but a crash may have come before its summary replaced the document.
          const doc = trajectoryId ? await o.store.getDoc(o.runId, 'trajectory', trajectoryId) : null;
          if (doc && !isArchived(doc)) done.push({ id: trajectoryId!, archived: path => archivedTrajectory(doc, path) });
          continue;
        }
        const trajectory = ready.get(trajectoryId);
        if (!trajectory) continue; // not stored yet: left pending, retried later
        lines.push(trajectory.line, NEWLINE);
        written.set(trajectoryId, shardName(shardIndex));
        done.push({ id: trajectoryId, archived: trajectory.archived });
        acks.push(entryId);
        wrote += 1;
        batchLines += 1;
        shardCount += 1;
        if (shardCount >= shardLines) {
          await append(lines);
          lines = [];
          await handle.close();
          shardIndex += 1;
          shardCount = 0;
          handle = await open(join(dir, shardName(shardIndex)), 'a+');
          shards.add(shardName(shardIndex));
        }
      }
      await append(lines);
      // Held all along? A sink stopped (SIGSTOP, a suspended machine) between its look at the lock and its write, for
      // longer than the lock lives, wrote lines that the sink which took over may write too: it says so, and leaves
      // the entries to that sink rather than acknowledge them.
      // (A lock that is simply gone, Redis having restarted empty, is taken again, as before the write.)
      await holdLock(batchLines);
      // Only now that the lines are on disk: keep the summaries in Redis (all at once), then let go of the
      // entries (a crash in between re-reads entries whose ids are already on disk, and skips them).
      await Promise.all(
        done.map(({ id, archived }) => {
          const path = resolve(dir, written.get(id)!);
          const value = archived(path);
          return typeof value === 'string' ? o.store.putDocText(o.runId, 'trajectory', id, value) : o.store.putDoc(o.runId, 'trajectory', id, value);
        }),
      );
      if (acks.length) await o.redis.multi().xack(key, GROUP, ...acks).xdel(key, ...acks).exec();
      o.onProgress?.(wrote);
    };
    /** The entries in batches of at most `batchBytes` of stored trajectories (by the size each entry names; 0 when it names none). */
    const handleBatches = async (entries: [string, string[]][]) => {
      const budget = o.batchBytes ?? BATCH_BYTES;
      for (let start = 0; start < entries.length; ) {
        let end = start;
        for (let bytes = 0; end < entries.length; end += 1) {
          const size = Number(fieldOf(entries[end]![1], 'bytes') ?? 0) || 0;
          if (end > start && bytes + size > budget) break;
          bytes += size;
        }
        await handleEntries(entries.slice(start, end));
        start = end;
      }
    };

    try {
      // Entries a crashed sink read but never acknowledged.
      let cursor = '0-0';
      do {
        const [next, entries] = (await readGroup(() => o.redis.xautoclaim(key, GROUP, consumer, 0, cursor, 'COUNT', BATCH))) as [string, [string, string[]][], unknown];
        await handleBatches(entries);
        cursor = next;
      } while (cursor !== '0-0');
      for (;;) {
        o.signal?.throwIfAborted();
        const res = (await readGroup(() => o.redis.xreadgroup('GROUP', GROUP, consumer, 'COUNT', BATCH, 'BLOCK', 500, 'STREAMS', key, '>'))) as [string, [string, string[]][]][] | null;
        const entries = res?.[0]?.[1] ?? [];
        await handleBatches(entries);
        if (entries.length) {
          if (entries.length < BATCH && gatherMs > 0) await sleep(gatherMs, o.signal);
          continue;
        }
        // Pending entries of ours whose document was missing a moment ago.
        const mine = (await readGroup(() => o.redis.xreadgroup('GROUP', GROUP, consumer, 'COUNT', BATCH, 'STREAMS', key, '0'))) as [string, [string, string[]][]][] | null;
        await handleBatches(mine?.[0]?.[1] ?? []);
        if (o.follow) continue;
        const outstanding = await o.store.pendingCount(o.runId);
        const pending = (await readGroup(() => o.redis.xpending(key, GROUP))) as [number, ...unknown[]];
        if (outstanding === 0 && Number(pending[0]) === 0) {
          const more = (await readGroup(() => o.redis.xreadgroup('GROUP', GROUP, consumer, 'COUNT', 1, 'STREAMS', key, '>'))) as [string, [string, string[]][]][] | null;
          if (!more?.[0]?.[1].length) break;
          await handleBatches(more[0][1]);
        }
      }
    } finally {
      await handle.close();
    }
    return { written: wrote, skippedDuplicates: skipped, shards: [...shards].sort() };
  } finally {
    clearInterval(renew);
    o.redis.off('close', onClose);
    await RELEASE_LOCK(o.redis, [lockKey], [token]);
  }
}

const shardName = (i: number) => `part-${String(i).padStart(5, '0')}.jsonl`;

const NEWLINE = Buffer.from('\n');

/** The value of `name` in a stream entry's fields (name, value, name, value…). */
function fieldOf(fields: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}

/**
 * The archived document's text from the summary's: `archivedTrajectory` puts `archived` last, so its JSON is
 * the summary's with `,"archived":{"path":…}` before the closing brace (a summary always has members: its id).
 */
const archivedText = (summary: string, path: string): string => `${summary.slice(0, -1)},"archived":${JSON.stringify({ path })}}`;

/** Whether the file is empty or its last byte is a newline. */
async function endsInNewline(handle: FileHandle): Promise<boolean> {
  const { size } = await handle.stat();
  if (size === 0) return true;
  const last = Buffer.alloc(1);
  const { bytesRead } = await handle.read(last, 0, 1, size - 1);
  return bytesRead === 1 && last[0] === 0x0a;
}

/** Writes every byte of `chunks` at the file's end (appending), one writev when the system takes it all. */
async function writeAll(handle: FileHandle, chunks: readonly Buffer[]): Promise<void> {
  let total = 0;
  for (const c of chunks) total += c.length;
  const { bytesWritten } = await handle.writev(chunks as Buffer[]);
  if (bytesWritten === total) return;
  const rest = Buffer.concat(chunks).subarray(bytesWritten);
  for (let offset = 0; offset < rest.length; ) offset += (await handle.write(rest, offset)).bytesWritten;
}

/**
 * A document's bytes with each lone surrogate escape (`\ud83d` without its pair: text an environment or a model cut
 * inside a character) written as U+FFFD (withoutLoneSurrogates), as the export's files have them: JSON allows them,
 * but pyarrow and Hugging Face datasets cannot read a line holding one. The bytes as they are when none is there
 * (two native searches).
 */
export function wellFormedLine(json: Buffer): Buffer {
  if (json.indexOf('\\ud') === -1 && json.indexOf('\\uD') === -1) return json;
  const text = json.toString('utf8');
  const clean = withoutLoneSurrogates(text);
  return clean === text ? json : Buffer.from(clean, 'utf8');
}

/**
 * JSON text on one line: a line break can only be whitespace between tokens (JSON strings hold them
 * escaped), so it becomes a space; text without one (what envfleet writes) is returned as it is. As
 * UTF-8 bytes the same: a CR or LF byte is never part of a longer character's encoding.
 */
export function oneLine(json: string): string;
export function oneLine(json: Buffer): Buffer;
export function oneLine(json: string | Buffer): string | Buffer {
  if (typeof json === 'string') return /[\r\n]/.test(json) ? json.replace(/[\r\n]/g, ' ') : json;
  if (json.indexOf(0x0a) === -1 && json.indexOf(0x0d) === -1) return json;
  const copy = Buffer.from(json);
  for (let i = 0; i < copy.length; i += 1) if (copy[i] === 0x0a || copy[i] === 0x0d) copy[i] = 0x20;
  return copy;
}

/** The id of a shard line's JSON (null without one), or false when the bytes are not a JSON line (torn, zeroed, too long for a string). */
function idOfLine(bytes: Buffer): string | null | false {
  try {
    return (JSON.parse(bytes.toString('utf8')) as { id?: string }).id ?? null;
  } catch {
    return false;
  }
}

/** How long a shard's torn tail must stay as it is before the scan cuts it (scanShards). */
const TAIL_SETTLE_MS = 300;

/** A line longer than this cannot be JSON text V8 parses (its longest string is ≈ 2^29 characters): not read whole. */
const MAX_LINE_BYTES = 1 << 30;

/** What the scan of a shard reads at once. */
const SCAN_CHUNK_BYTES = 8 << 20;

/**
 * The complete lines of a shard file: `end`, the byte offset just past the last of them (what the file is truncated
 * to), how many there are, the trajectory ids among them, the file's size, and `bad`, the lines before `end` that do not
 * parse. A line is complete when a newline follows it and it parses. What follows the last complete line (a write cut
 * short by a crash) is cut; a line that does not parse but has complete lines after it is left in place: runs that
 * share a folder append to the same shards, so the lines after a torn one may be another run's, acknowledged already
 * (a stranger's probe: a sink started again after a disk-full cut 319 lines of another run's). Everything is
 * measured in bytes, as `truncate` takes it: a trajectory's model text (emoji, CJK, accents) has more UTF-8 bytes
 * than UTF-16 characters, and an offset in characters cuts into an earlier line whose Redis copy is already only a
 * summary. Read a chunk at a time: a shard has no size bound (the sink starts a new one every `shardLines` lines, and
 * a trajectory of a careless environment is megabytes), and one read of the whole file failed past 2 GiB ("File size
 * is greater than 2 GiB", so the sink could not start again on its own output) and held it all in memory below
 * that. A line that crosses chunks is read again, alone, once its newline is found.
 */
export async function completeLinesOfFile(path: string): Promise<{ end: number; lines: number; ids: string[]; size: number; bad: number }> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    const ids: string[] = [];
    let end = 0;
    let lines = 0;
    let bad = 0;
    /** Where the line being read starts: past the last newline, good line or not. */
    let start = 0;
    const chunk = Buffer.allocUnsafe(Math.min(SCAN_CHUNK_BYTES, Math.max(size, 1)));
    for (let at = 0; at < size; ) {
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, at);
      if (bytesRead === 0) break;
      const data = chunk.subarray(0, bytesRead);
      for (let newline = data.indexOf(0x0a); newline !== -1; newline = data.indexOf(0x0a, newline + 1)) {
        const lineEnd = at + newline;
        let id: string | null | false = false;
        if (start >= at) id = idOfLine(data.subarray(start - at, newline));
        else if (lineEnd - start <= MAX_LINE_BYTES) {
          const bytes = Buffer.allocUnsafe(lineEnd - start);
          let got = 0;
          while (got < bytes.length) {
            const r = await handle.read(bytes, got, bytes.length - got, start + got);
            if (r.bytesRead === 0) break;
            got += r.bytesRead;
          }
          if (got === bytes.length) id = idOfLine(bytes);
        }
        start = lineEnd + 1;
        // A line that is not JSON (a torn write another sink's line was appended to: runs share a folder's shards) is
        // left where it is when complete lines follow it; only what follows the last complete line is cut.
        if (id === false) {
          bad += 1;
          continue;
        }
        if (id) ids.push(id);
        end = lineEnd + 1;
        lines += 1;
      }
      at += bytesRead;
    }
    return { end, lines, ids, size, bad };
  } finally {
    await handle.close();
  }
}

/** The file in a sink's folder that names the runs written there, each with its creation time. */
export const SINK_RUNS_FILE = '.envfleet-sink-runs.json';

/**
 * Records in `dir` that it holds trajectories of run `runId` created at `createdAt`, refusing a folder that holds an
 * earlier run of the same name (created at another time): ids are made from the run's name, so the sink would skip
 * this run's trajectories as written already and keep the other run's lines in their place. (A stranger's probe: a run
 * Redis lost, then started again under its name, into the same folder.) A folder written before this file existed is
 * taken as it is.
 */
export async function claimFolder(dir: string, runId: string, createdAt: string): Promise<void> {
  // Sinks of other runs starting into one folder at the same moment take turns at the file (a lock file made with
  // O_EXCL), so that neither drops the other's entry; a lock left by a sink killed in between is taken after 30 s.
  const lock = join(dir, `${SINK_RUNS_FILE}.lock`);
  for (let tries = 0; ; tries += 1) {
    try {
      await (await open(lock, 'wx')).close();
      break;
    } catch (err) {
      // A folder that exists and takes no files (read-only, another user's): said as a folder the sink cannot write.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new OutputFileError(lock, err);
      const age = await stat(lock).then(st => Date.now() - st.mtimeMs, () => 0);
      if (age > 30_000) await rm(lock, { force: true });
      else await sleep(20 + Math.min(tries, 20) * 10);
    }
  }
  try {
    await claimFolderLocked(dir, runId, createdAt);
  } finally {
    await rm(lock, { force: true });
  }
}

async function claimFolderLocked(dir: string, runId: string, createdAt: string): Promise<void> {
  const path = join(dir, SINK_RUNS_FILE);
  // {"runs": [{"run", "createdAt"}]}: a list, each creation time under its own key (dataset comparisons set it aside).
  let runs: { run: string; createdAt: string }[] = [];
  try {
    const parsed = JSON.parse(await readFile(path, 'utf8')) as { runs?: unknown };
    if (Array.isArray(parsed.runs)) {
      runs = (parsed.runs as unknown[]).filter((r): r is { run: string; createdAt: string } => {
        const o = r as { run?: unknown; createdAt?: unknown } | null;
        return typeof o?.run === 'string' && typeof o.createdAt === 'string';
      });
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new RequestError(`${resolve(path)} cannot be read (${(err as Error).message}): remove it if the folder holds no other run's trajectories, or give the sink another --out`);
  }
  const earlier = runs.find(r => r.run === runId);
  if (earlier?.createdAt === createdAt) return;
  if (earlier) {
    throw new RequestError(
      `${resolve(dir)} holds trajectories of an earlier run named "${runId}" (created ${earlier.createdAt}); this run "${runId}" was created ${createdAt}. Their trajectory ids are the same, so the sink would keep the earlier run's lines for this one's. Give the sink another --out (or move trajectories/ and ${SINK_RUNS_FILE} away).`,
    );
  }
  runs.push({ run: runId, createdAt });
  // Whole or not at all (a crash mid-write must not leave a file that refuses every later sink).
  await writeWholeFile(path, `${JSON.stringify({ runs })}\n`);
}

/** Ids already on disk (with their shard's name), and where to go on writing; a torn last line (crash mid-write) is cut off unless the shard is growing. */
export async function scanShards(dir: string): Promise<{ written: Map<string, string>; shard: { index: number; lines: number } }> {
  const names = (await readdir(dir)).filter(n => /^part-\d{5}\.jsonl$/.test(n)).sort();
  const written = new Map<string, string>();
  let last = { index: 0, lines: 0 };
  for (const name of names) {
    const path = join(dir, name);
    const { end, lines, ids, size } = await completeLinesOfFile(path);
    for (const id of ids) written.set(id, name);
    // What follows the last complete line is cut only when the file stays as it is a moment: a shard that grows meanwhile
    // is being written by another run's sink (runs may share a folder), whose batch the scan read half of; the newline
    // this sink writes before its first line ends a tail that is torn for good.
    if (end < size) {
      await sleep(TAIL_SETTLE_MS);
      if ((await stat(path)).size === size) await truncate(path, end);
    }
    last = { index: Number(name.slice(5, 10)), lines };
  }
  return { written, shard: last };
}
