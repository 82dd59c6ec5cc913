/**
 * The piscina task file: one module instance per pool thread. It only dispatches; the work is in
 * src/sandbox/tasks.ts. Code inside a pool thread does not log; it returns data.
 */
import { threadId, workerData } from 'node:worker_threads';
import { DEFAULT_SANDBOX_LIMITS } from '../src/sandbox/limits.js';
import { QuickJSHost } from '../src/sandbox/quickjs-host.js';
import { SharedTextCache, type SharedText } from '../src/sandbox/shared-text.js';
import { runChecks, runChecksText, runProbe, runSession, type ChecksInput, type ChecksTextInput, type ProbeInput, type SessionInput } from '../src/sandbox/tasks.js';
import { joinWatch, watchSession, type WatchBoard } from '../src/sandbox/watchdog.js';

export type PoolTask =
  | ({ readonly kind: 'probe'; readonly watchId?: number } & ProbeInput)
  | ({ readonly kind: 'checks'; readonly watchId?: number } & ChecksInput)
  | ({ readonly kind: 'checks-text'; readonly watchId?: number } & ChecksTextInput)
  | ({ readonly kind: 'session' } & Omit<SessionInput, 'initialStateJson'> & { readonly initialStateJson: string | SharedText })
  | { readonly kind: 'warm' };

/** What the pool hands each thread: the bound on the thread's WebAssembly memory (the worker's own setting). */
export interface SandboxThreadData {
  readonly heapMb: number;
  /** The pool's watchdog board (src/sandbox/watchdog.ts): a thread stuck in a guest past its deadline is terminated. */
  readonly watch?: WatchBoard;
}

/** A warm task's answer: which thread ran it (the pool checks that every thread did). */
export interface WarmResult {
  readonly threadId: number;
}

const data = workerData as Partial<SandboxThreadData> | undefined;
const host = new QuickJSHost(typeof data?.heapMb === 'number' && data.heapMb > 0 ? data.heapMb : DEFAULT_SANDBOX_LIMITS.heapMb);
if (data?.watch) joinWatch(data.watch, threadId);
/** Initial states sent as shared memory (every episode of a scenario sends the same one), decoded once per thread. */
const texts = new SharedTextCache();

export default async function handle(task: PoolTask): Promise<unknown> {
  // The task the watchdog knows this thread works for (a session's messages say so themselves: tasks.ts).
  if (task.kind !== 'session') watchSession(task.kind === 'warm' ? 0 : (task.watchId ?? 0));
  try {
    return await work(task);
  } finally {
    if (task.kind !== 'session') watchSession(0);
  }
}

async function work(task: PoolTask): Promise<unknown> {
  switch (task.kind) {
    case 'probe':
      return runProbe(host, task);
    case 'checks':
      return runChecks(host, task);
    case 'checks-text':
      return runChecksText(host, task);
    case 'session':
      return runSession(host, { ...task, initialStateJson: typeof task.initialStateJson === 'string' ? task.initialStateJson : texts.text(task.initialStateJson) });
    case 'warm':
      await host.warm();
      return { threadId } satisfies WarmResult;
  }
}
