/**
 * The backstop under the JavaScript sandbox's deadlines. QuickJS asks its interrupt handler only every ~10,000 of its
 * own interrupt checks (loop back-edges, calls), and a built-in such as `indexOf`, `join` or `JSON.stringify` over
 * large data makes none while it runs: a loop of a few thousand such calls ran 12–20 s past a 1 s deadline and returned
 * success, while every other environment of its thread waited (a stranger's probe). A pool thread cannot stop itself
 * while the guest runs, so the pool's owner watches it from outside through shared memory: the thread writes when it
 * armed a deadline, and ticks a heartbeat while its event loop turns; a thread whose heartbeat and last deadline are both
 * that has not beaten since it last armed, its slot unchanged for that deadline plus a grace by the watcher's own
 * clock (WatchKeeper), is stuck in a guest, and is terminated (workers/sandbox-pool.ts).
 *
 * Layout of a board: per slot, four float64 (heartbeat, armed at, armed ms, session) and one int32 owner (a thread id,
 * 0 when free). Times are `performance.timeOrigin + performance.now()`: milliseconds since the epoch, monotonic
 * within a thread and the same clock across threads.
 */
export const WATCH_SLOTS = 256;
const FIELDS = 4;
/** How often a thread's heartbeat is written while its event loop turns. */
export const HEARTBEAT_MS = 100;

export interface WatchBoard {
  readonly times: SharedArrayBuffer;
  readonly owners: SharedArrayBuffer;
}

export const createWatchBoard = (): WatchBoard => ({
  times: new SharedArrayBuffer(WATCH_SLOTS * FIELDS * 8),
  owners: new SharedArrayBuffer(WATCH_SLOTS * 4),
});

const clock = (): number => performance.timeOrigin + performance.now();

/** This thread's slot, once it joined a board. */
let mine: { times: Float64Array; at: number } | null = null;

/**
 * Joins `board` as thread `threadId`: claims a free slot and writes a heartbeat every HEARTBEAT_MS (a timer that
 * keeps no thread alive). Without a free slot the thread runs unwatched (its own deadlines still hold).
 */
export function joinWatch(board: WatchBoard, threadId: number): void {
  const owners = new Int32Array(board.owners);
  for (let slot = 0; slot < WATCH_SLOTS; slot += 1) {
    if (Atomics.compareExchange(owners, slot, 0, threadId) !== 0) continue;
    const times = new Float64Array(board.times);
    const at = slot * FIELDS;
    times[at] = clock();
    times[at + 1] = 0;
    times[at + 2] = 0;
    times[at + 3] = 0;
    mine = { times, at };
    setInterval(() => {
      times[at] = clock();
    }, HEARTBEAT_MS).unref();
    return;
  }
}

/** Records that this thread armed a deadline of `ms`: called where the guest is armed. */
export function watchArmed(ms: number): void {
  if (!mine) return;
  const { times, at } = mine;
  times[at + 1] = clock();
  times[at + 2] = ms;
}

/** The session this thread works for from now on (0: none); written when a session's message is handled. */
export function watchSession(session: number): void {
  if (mine) mine.times[mine.at + 3] = session;
}

export interface StuckThread {
  readonly threadId: number;
  /** The deadline it armed last, and how long ago its event loop last turned or it armed one. */
  readonly armedMs: number;
  readonly blockedMs: number;
  /** The session whose message it was handling (0: none known). */
  readonly session: number;
}

/** The grace after a deadline before a thread is taken for stuck: as long as the deadline, at least 2 s. */
export const graceMs = (armedMs: number): number => Math.max(2_000, armedMs);

/**
 * What the pool's owner has seen of its threads: when each slot's times last changed, by its own clock. A thread is
 * stuck when it armed a deadline after its last heartbeat (it has not turned its event loop since it entered the
 * guest: an idle thread beats every HEARTBEAT_MS) and nothing of its slot has changed, by the watcher's clock, for
 * that deadline and its grace. Timed by the watcher, not by the threads' stamps, and a round that comes late (the
 * whole process stopped: SIGSTOP, a suspended machine) starts the count again: a stopped process's threads had no
 * chance to beat.
 */
export class WatchKeeper {
  private readonly seen = new Map<number, { beat: number; armedAt: number; since: number }>();
  private lastRound = -1;

  constructor(
    private readonly board: WatchBoard,
    /** How often `stuck` is called (a round later than twice this is taken for a stopped process). */
    private readonly everyMs: number,
  ) {}

  stuck(now = performance.now()): StuckThread[] {
    const late = this.lastRound >= 0 && now - this.lastRound > 2 * this.everyMs + 500;
    this.lastRound = now;
    if (late) this.seen.clear();
    const owners = new Int32Array(this.board.owners);
    const times = new Float64Array(this.board.times);
    const stuck: StuckThread[] = [];
    for (let slot = 0; slot < WATCH_SLOTS; slot += 1) {
      const threadId = Atomics.load(owners, slot);
      if (threadId === 0) {
        this.seen.delete(slot);
        continue;
      }
      const at = slot * FIELDS;
      const beat = times[at]!;
      const armedAt = times[at + 1]!;
      const was = this.seen.get(slot);
      if (!was || was.beat !== beat || was.armedAt !== armedAt) {
        this.seen.set(slot, { beat, armedAt, since: now });
        continue;
      }
      // Beaten since its last arm: out of the guest (idle, or the host's own work).
      if (armedAt === 0 || beat >= armedAt) continue;
      const armedMs = times[at + 2]!;
      const blockedMs = now - was.since;
      if (blockedMs > armedMs + graceMs(armedMs)) stuck.push({ threadId, armedMs, blockedMs, session: times[at + 3]! });
    }
    return stuck;
  }
}

/** Frees the slot of `threadId` (a thread that ended cannot free its own). */
export function leaveWatch(board: WatchBoard, threadId: number): void {
  const owners = new Int32Array(board.owners);
  const times = new Float64Array(board.times);
  for (let slot = 0; slot < WATCH_SLOTS; slot += 1) {
    if (Atomics.load(owners, slot) !== threadId) continue;
    // Emptied before it is freed: the next thread to claim it must not be judged by this one's last arm.
    times.fill(0, slot * FIELDS, slot * FIELDS + FIELDS);
    Atomics.compareExchange(owners, slot, threadId, 0);
    return;
  }
}
