/**
 * Shared pieces of bench/rollouts.ts and its two child processes (bench/rollouts/server.ts, the
 * scripted model server; bench/rollouts/fleet.ts, the worker process): the IPC messages, the
 * policy script, and small measuring helpers.
 */
import { deletePrefix } from '../redis-keys.js';
import { readFileSync, readdirSync } from 'node:fs';

// ---------------------------------------------------------------- IPC messages

/** Parent → server child. */
export type ServerCommand =
  | { readonly type: 'script'; readonly steps: number; readonly delayMs: number }
  | { readonly type: 'collect' }
  | { readonly type: 'exit' };

/** One answered request, as the server child saw it: [arrival ms, answer sent ms, status, rule, "METHOD /path"]. */
export type ServerRecord = readonly [number, number, number | null, string | null, string];

/** What every policy request of the benchmark is; anything else (the gateway's `GET /v1/models` outage probe) is not. */
export const CHAT_REQUEST = 'POST /v1/chat/completions';

/** Server child → parent. */
export type ServerMessage =
  | { readonly type: 'ready'; readonly url: string; readonly pid: number }
  | { readonly type: 'script-ok' }
  | { readonly type: 'records'; readonly records: readonly ServerRecord[] }
  /** Pushed every SAMPLE_MS: cumulative CPU time of the server process (µs) and its RSS. */
  | { readonly type: 'cpu'; readonly t: number; readonly cpuUs: number; readonly rss: number };

export interface FleetSettings {
  readonly redisUrl: string;
  readonly prefix: string;
  readonly modelUrl: string;
  readonly concurrency: number;
  readonly poolThreads: number;
  readonly tasksPerThread: number;
  /** ENVFLEET_SANDBOX_HEAP_MB of the fleet: room for a module (≈1.6 MiB charged) per task of a thread. */
  readonly heapMb: number;
  /** ENVFLEET_ROLLOUT_START_PACING of the fleet (--no-pacing: off; else the default, auto). */
  readonly startPacing: boolean;
}

/** Parent → fleet child. */
export type FleetCommand =
  | { readonly type: 'sample-start' }
  | { readonly type: 'memory'; readonly label: string; readonly gc: boolean }
  | { readonly type: 'stop' };

/** Memory of the fleet process at one moment. */
export interface MemoryProbe {
  readonly label: string;
  readonly t: number;
  readonly rss: number;
  readonly heapUsed: number;
  readonly external: number;
  readonly arrayBuffers: number;
  /** Resident bytes of the process's WebAssembly memories (the sandbox threads' QuickJS heaps), from /proc/self/smaps; null if unreadable. */
  readonly wasmRss: number | null;
  /** How many WebAssembly memories were found. */
  readonly wasmMemories: number;
  readonly smapsMs: number;
}

/** One sample of the fleet process, taken every SAMPLE_MS on its main thread. */
export interface FleetSample {
  readonly t: number;
  readonly rss: number;
  readonly heapUsed: number;
  /** Cumulative CPU time of the whole process (all threads), µs. */
  readonly cpuUs: number;
  /** Cumulative CPU time of the main thread alone (from /proc/self/task/PID/stat), µs; NaN if unreadable. */
  readonly mainCpuUs: number;
  /** Cumulative active time of the main event loop (performance.eventLoopUtilization), ms. */
  readonly mainActiveMs: number;
  /** Cumulative active time of each sandbox pool thread's event loop, ms (by thread id). */
  readonly poolActiveMs: Readonly<Record<string, number>>;
  /** Event-loop delay since the previous sample (monitorEventLoopDelay, 10 ms resolution), ms. */
  readonly eldP50: number;
  readonly eldP99: number;
  readonly eldMax: number;
  /** Tasks waiting in piscina's queue (no thread had a free task slot). */
  readonly poolQueue: number;
  /**
   * Cumulative time runnable but waiting for a CPU (the kernel's run-queue delay, /proc/self/task/TID/schedstat), µs:
   * of the main thread, and summed over the process's other threads. NaN if unreadable.
   */
  readonly mainRunDelayUs: number;
  readonly otherRunDelayUs: number;
  /**
   * Cumulative CPU time of the threads that appeared while the worker process started (the sandbox
   * pool's threads: piscina starts minThreads = ENVFLEET_POOL_THREADS there), µs; NaN if unreadable.
   */
  readonly poolCpuUs: number;
}

/** [epoch ms when it ended, duration ms] of one timed operation in the fleet process. */
export type Timing = readonly [number, number];

/**
 * Operations timed in the fleet process by thin wrappers around its gateway and sandbox runner
 * (wall time as the episode sees it, queueing included): `model call` (gateway.chat), `session open`
 * (until the environment is created in a pool thread), `tool call`, `snapshot`, `session close`,
 * `checks` (the checklist on the final state, a pool task), `finish` (final state, checks and close in
 * the session's thread, which episodes use instead of the three before). Plus `gc` (every V8 GC pause of the main
 * thread, from a PerformanceObserver).
 */
export type Timings = Readonly<Record<string, readonly Timing[]>>;

/** Fleet child → parent. */
export type FleetMessage =
  /** poolTids: the threads counted in FleetSample.poolCpuUs. */
  | { readonly type: 'ready'; readonly pid: number; readonly startMs: number; readonly poolTids?: readonly number[] }
  | { readonly type: 'memory'; readonly probe: MemoryProbe }
  /** hrFromUs/hrToUs: process.hrtime (µs) at sample-start and at stop, to cut a CPU profile to the timed run. */
  | { readonly type: 'samples'; readonly samples: readonly FleetSample[]; readonly timings: Timings; readonly hrFromUs: number; readonly hrToUs: number };

export const SAMPLE_MS = 200;

// ---------------------------------------------------------------- the policy script

/** The scenario task of warm-up runs; rules matching it answer at once. */
export const WARMUP_MARK = 'WARMUP';
export const TOOL = 'get_guest';
export const TOOL_ARGS = { guest_id: 'G0001' } as const;

/**
 * The policy of every episode: exactly `steps` agent turns. Turn k < steps calls get_guest with the
 * tool-call id `bench-t<k>`; the rule for turn k + 1 recognises the episode's position by that id
 * in the request body (`"tool_call_id":"bench-t<k>"`, present from the tool message on), so rules go
 * from the last turn down to the first, and the first rule that matches wins. The last turn answers
 * with text, which ends a non-conversational episode. Every answer of a timed run comes after a
 * `delay` fault of `delayMs`; warm-up episodes (task containing WARMUP) get the same turns at once.
 */
export function policyScript(steps: number, delayMs: number): unknown {
  const turnRules = (prefix: string, extra: Record<string, unknown>) => {
    const rules: Record<string, unknown>[] = [];
    for (let k = steps; k >= 1; k -= 1) {
      const respond = k === steps
        ? { content: `Done: guest ${TOOL_ARGS.guest_id} looked up ${steps - 1} times.` }
        : { toolCalls: [{ id: `bench-t${k}`, name: TOOL, arguments: TOOL_ARGS }] };
      rules.push({
        name: `${prefix}turn-${k}`,
        stage: 'rollout.policy',
        ...(k > 1 ? { matchAny: `"tool_call_id":"bench-t${k - 1}"` } : {}),
        ...extra,
        respond,
      });
    }
    return rules;
  };
  return {
    models: ['scripted'],
    rules: [...turnRules('warm-', { match: WARMUP_MARK }), ...turnRules('', { fault: { type: 'delay', ms: delayMs } })],
  };
}

// ---------------------------------------------------------------- helpers


const TICKS = 100;

/** Busy CPU seconds of the whole machine since boot (user + nice + system + irq + softirq + steal). */
export function machineBusyS(): number {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    return ((cpu[0] ?? 0) + (cpu[1] ?? 0) + (cpu[2] ?? 0) + (cpu[5] ?? 0) + (cpu[6] ?? 0) + (cpu[7] ?? 0)) / TICKS;
  } catch {
    return NaN;
  }
}

/** CPU time of one thread of this process (utime + stime), µs; NaN when /proc is not there. */
export function threadCpuUs(tid: number): number {
  try {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) / TICKS) * 1e6;
  } catch {
    return NaN;
  }
}

/** Run-queue delay (time runnable but not running) of this process's main thread and of its other threads, µs. */
export function runQueueDelayUs(): { main: number; others: number } {
  let main = NaN;
  let others = 0;
  try {
    for (const tid of readdirSync('/proc/self/task')) {
      let wait: number;
      try {
        wait = Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[1]) / 1000;
      } catch {
        continue; // the thread ended meanwhile
      }
      if (Number(tid) === process.pid) main = wait;
      else others += wait;
    }
  } catch {
    return { main: NaN, others: NaN };
  }
  return { main, others };
}

/**
 * Resident bytes of this process's WebAssembly memories. V8 reserves 8 GiB of address space per
 * memory (on 64-bit Linux): the accessible part is a `rw-p` mapping directly followed by a
 * `---p` guard mapping, the two adding up to the reservation. Those pairs are counted here.
 */
export function wasmResident(): { bytes: number | null; memories: number } {
  let text: string;
  try {
    text = readFileSync('/proc/self/smaps', 'utf8');
  } catch {
    return { bytes: null, memories: 0 };
  }
  const maps: { a: number; b: number; perm: string; anon: boolean; rssKb: number }[] = [];
  for (const line of text.split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      maps.push({ a: parseInt(head[1]!, 16), b: parseInt(head[2]!, 16), perm: head[3]!, anon: (head[4] ?? '') === '', rssKb: 0 });
      continue;
    }
    if (line.startsWith('Rss:') && maps.length) maps[maps.length - 1]!.rssKb = Number(line.split(/\s+/)[1]);
  }
  let bytes = 0;
  let memories = 0;
  for (let i = 0; i + 1 < maps.length; i += 1) {
    const m = maps[i]!;
    const guard = maps[i + 1]!;
    if (m.perm === 'rw-p' && m.anon && guard.perm === '---p' && guard.anon && guard.a === m.b && m.b - m.a + (guard.b - guard.a) >= 4 * 2 ** 30) {
      bytes += m.rssKb * 1024;
      memories += 1;
    }
  }
  return { bytes, memories };
}

export function quantile(sorted: readonly number[], q: number): number {
  if (!sorted.length) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))));
  return sorted[i]!;
}

export const median = (xs: readonly number[]) => quantile([...xs].sort((a, b) => a - b), 0.5);

export { deletePrefix };

/** Thread ids of this process (/proc/self/task); empty when /proc is not there. */
export function taskIds(): number[] {
  try {
    return readdirSync('/proc/self/task').map(Number);
  } catch {
    return [];
  }
}

/** CPU time of another process, all its threads (utime + stime of /proc/PID/stat), µs; NaN when unreadable (or it ended). */
export function processCpuUs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) / TICKS) * 1e6;
  } catch {
    return NaN;
  }
}
