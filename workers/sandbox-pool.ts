import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MessageChannel } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { AppConfig } from '../config/index.js';
import type { Logger } from '../src/logger.js';
import type { CheckSpec } from '../src/sandbox/bundle.js';
import { SandboxError } from '../src/sandbox/errors.js';
import { connectSession, sessionStateJson, type SandboxRunner } from '../src/sandbox/runner.js';
import { SharedTexts } from '../src/sandbox/shared-text.js';
import { checkStateTexts } from '../src/sandbox/state-text.js';
import { checksResult, type ChecksResult, type ProbeResult } from '../src/sandbox/tasks.js';
import { createWatchBoard, leaveWatch, WatchKeeper } from '../src/sandbox/watchdog.js';
import type { PoolTask, SandboxThreadData, WarmResult } from './sandbox-thread.js';

/**
 * The pool's thread file, next to this one: the build's JavaScript when running from dist/, the
 * TypeScript source when running the sources (development, tests).
 */
export const SANDBOX_THREAD_FILE = new URL(`./sandbox-thread.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url);

/** How long the threads may take to load and run their first environment before the pool gives up. */
const STARTUP_TIMEOUT_MS = 60_000;

export interface SandboxPool extends SandboxRunner {
  readonly piscina: Piscina;
  /**
   * Resolves once every thread has loaded the thread file and run an environment; rejects with
   * SANDBOX_UNAVAILABLE, naming the thread file and the cause, when they cannot. A worker awaits
   * this before it takes jobs, so a pool that cannot start fails the process at start-up instead
   * of leaving jobs waiting.
   */
  started(): Promise<void>;
}

/**
 * The sandbox pool of a worker process: `ENVFLEET_POOL_THREADS` piscina threads running
 * `threadFile`, each serving up to `ENVFLEET_POOL_TASKS_PER_THREAD` tasks at once, each bounding
 * its WebAssembly memory by `ENVFLEET_SANDBOX_HEAP_MB` (this process's setting).
 *
 * Sessions (an environment kept alive for an episode) are long-running tasks: the task creates
 * the environment, then serves requests on a MessagePort that was transferred with it, and ends
 * when the host closes the port. piscina cannot route a task to a given thread, so a session
 * never moves: its task pins it to the thread that started it, and every later call travels over
 * its port straight to that thread. Atomics are off so that a thread's event loop keeps serving
 * ports between tasks. Tasks are never given an abort signal: piscina aborts by terminating the
 * thread, which would end every other session on it; runaway code is stopped by the sandbox's
 * own deadlines and budgets instead, and a thread stuck in a guest past them (a built-in that makes
 * no interrupt checks) by the watchdog here, which terminates that thread (src/sandbox/watchdog.ts).
 */
export function createSandboxPool(config: Pick<AppConfig, 'pool' | 'sandbox'>, logger: Logger, threadFile: URL): SandboxPool {
  const board = createWatchBoard();
  const piscina = new Piscina({
    filename: threadFile.href,
    minThreads: config.pool.threads,
    maxThreads: config.pool.threads,
    concurrentTasksPerWorker: config.pool.tasksPerThread,
    idleTimeout: 60_000,
    atomics: 'disabled',
    // TypeScript sources load through tsx, resolved from envfleet's own dependencies (never the
    // working directory); createRequire works whether this module was loaded as ESM or, by a test
    // runner, through tsx's CommonJS hook (where import.meta.resolve does not exist).
    //
    // No require(esm) in the threads: piscina loads the thread file with require() first, and on Node 20.19+ a thread
    // terminated while require() builds an ES module's facade aborts the whole process (module_wrap.cc, "Assertion
    // failed: facade->InstantiateModule"): seen in the test suite when a pool closed as its threads started, and made
    // at will by terminating threads 0-6 ms into such a require. With the flag require() refuses the file at once
    // and piscina imports it, which a termination ends cleanly.
    execArgv: [
      '--no-experimental-require-module',
      ...(threadFile.pathname.endsWith('.ts') ? ['--import', pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href] : []),
    ],
    workerData: { heapMb: config.sandbox.heapMb, watch: board } satisfies SandboxThreadData,
    // The WebAssembly heaps are bounded by the sandbox; this bounds the thread's own JS heap.
    resourceLimits: { maxOldGenerationSizeMb: 1_024 },
  });
  piscina.on('error', (err: unknown) => logger.error({ err }, 'a sandbox thread failed'));
  const openPorts = new Set<MessagePort>();
  // A scenario's initial state goes to the threads once, as shared memory, not copied into every session task.
  const sharedStates = new SharedTexts();
  let closing = false;
  let destroyed = false;
  // The backstop under the guest's deadlines (src/sandbox/watchdog.ts): a thread blocked inside a guest past the deadline
  // it armed and a grace is terminated (piscina starts another); the session it was working for gets DEADLINE_EXCEEDED,
  // the others on the thread end as when a thread fails.
  let lastWatchId = 0;
  const nextWatchId = (): number => (lastWatchId = (lastWatchId % 2 ** 31) + 1);
  const watched = new Map<number, (err: SandboxError) => void>();
  // Threads the watchdog terminated, until they have exited: piscina's close() counts a thread still exiting as one
  // with a task, and waits its whole close timeout for it (30 s; in the command line, whose timer keeps no process
  // alive, the process ended there with exit code 13).
  const exiting = new Set<Promise<unknown>>();
  const keeper = new WatchKeeper(board, 250);
  const watchdog = setInterval(() => {
    for (const stuck of keeper.stuck()) {
      leaveWatch(board, stuck.threadId);
      const thread = piscina.threads.find(t => t.threadId === stuck.threadId);
      if (!thread) continue;
      logger.warn(
        { threadId: stuck.threadId, deadlineMs: stuck.armedMs, blockedMs: Math.round(stuck.blockedMs) },
        'a sandbox thread ran past its deadline inside an environment and did not stop (a built-in that makes no interrupt checks, over large data): it is terminated, and the environments on it end',
      );
      watched.get(stuck.session)?.(
        new SandboxError(
          'DEADLINE_EXCEEDED',
          `the environment's code ran ${Math.round(stuck.blockedMs)} ms, past its deadline of ${Math.round(stuck.armedMs)} ms, and did not stop: QuickJS checks its deadline between its own steps, and a built-in such as indexOf, join or JSON.stringify over large data, called in a loop, makes none while it runs. Its sandbox thread was terminated (the other environments on it ended); do less work per call (an index kept in the state instead of a search of a large array)`,
        ),
      );
      const exited = thread.terminate().catch(() => undefined).finally(() => exiting.delete(exited));
      exiting.add(exited);
    }
  }, 250);
  watchdog.unref();
  const run = <T>(task: PoolTask, transferList?: readonly MessagePort[]) =>
    piscina.run(task, transferList ? { transferList: [...transferList] as never } : {}) as Promise<T>;
  /** A probe or checks task, known to the watchdog: one it ends (its thread terminated) rejects with the watchdog's DEADLINE_EXCEEDED, not piscina's bare "worker exited". */
  const watchedRun = async <T>(task: PoolTask & { kind: 'probe' | 'checks-text' }): Promise<T> => {
    const watchId = nextWatchId();
    let stopped: SandboxError | null = null;
    watched.set(watchId, err => {
      stopped = err;
    });
    try {
      return await run<T>({ ...task, watchId });
    } catch (err) {
      throw stopped ?? err;
    } finally {
      watched.delete(watchId);
    }
  };
  return {
    piscina,
    async started() {
      const threads = config.pool.threads;
      const answered = new Set<number>();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no thread answered within ${STARTUP_TIMEOUT_MS / 1000} s`)), STARTUP_TIMEOUT_MS);
      });
      try {
        // One warm task per thread: piscina gives each to the least busy thread. Another round
        // covers a thread that a round missed.
        for (let round = 0; round < 3 && answered.size < threads; round += 1) {
          const results = await Promise.race([Promise.all(Array.from({ length: threads }, () => run<WarmResult>({ kind: 'warm' }))), timeout]);
          for (const r of results) answered.add(r.threadId);
        }
      } catch (err) {
        const cause = err instanceof Error ? err.message : String(err);
        // The pool is of no use; piscina's graceful close would wait on threads that never started.
        destroyed = true;
        await piscina.destroy().catch(() => undefined);
        throw new SandboxError('SANDBOX_UNAVAILABLE', `the sandbox pool cannot start its threads from ${fileURLToPath(threadFile)}: ${cause}`);
      } finally {
        clearTimeout(timer);
      }
      if (answered.size < threads) logger.warn({ threads, answered: answered.size }, 'not every sandbox thread ran the start-up check');
    },
    probe: input => watchedRun<ProbeResult>({ kind: 'probe', ...input }),
    // The states go as JSON text (two string copies, not a structured clone of each graph); a state JSON cannot
    // write fails every check here with the reason (STATE_INVALID), as in a thread.
    checks: input => {
      const texts = checkStateTexts(input.checks, input.finalState, input.initialState);
      if ('failed' in texts) return Promise.resolve(checksResult(texts.failed));
      const runChecks = (checks: readonly CheckSpec[]) => watchedRun<ChecksResult>({ kind: 'checks-text', checks, limits: input.limits, ...texts });
      // Checks a stuck one took down with its thread fail with the watchdog's DEADLINE_EXCEEDED, as a deadline met inside the thread fails them.
      const stuck = (err: unknown): err is SandboxError => err instanceof SandboxError && err.code === 'DEADLINE_EXCEEDED';
      const failed = (checks: readonly CheckSpec[], err: SandboxError) => checksResult(checks.map(c => ({ item: c.item, passed: false, error: err.message, errorCode: 'DEADLINE_EXCEEDED' as const })));
      return runChecks(input.checks).catch(async (err: unknown) => {
        if (!stuck(err)) throw err;
        if (input.checks.length === 1) return failed(input.checks, err);
        // One check was stuck and its thread was terminated with the whole batch: each check runs again on its own, so
        // the stuck one fails with the watchdog's DEADLINE_EXCEEDED and the others keep their own verdicts (all of them
        // failed with it before, passed ones too, and the stuck one was not named). One after another: a stuck one's
        // thread, terminated, would take the others running beside it down too.
        const alone: ChecksResult['results'][number][] = [];
        for (const c of input.checks) {
          const one = await runChecks([c]).catch((e: unknown) => {
            if (!stuck(e)) throw e;
            return failed([c], e);
          });
          alone.push(one.results[0]!);
        }
        return checksResult(alone);
      });
    },
    async openSession(code, initialState, limits, initialStateJson) {
      const json = sessionStateJson(initialState, initialStateJson);
      const { port1, port2 } = new MessageChannel();
      openPorts.add(port1);
      port1.once('close', () => openPorts.delete(port1));
      const session = connectSession(port1, json);
      const watchId = nextWatchId();
      watched.set(watchId, err => session.stop(err));
      port1.once('close', () => watched.delete(watchId));
      // The host end closes the port itself once it has read the thread's last reply; only a
      // task that failed (its thread died) closes it from here.
      run({ kind: 'session', code, initialStateJson: sharedStates.of(json), limits, port: port2, watchId }, [port2]).catch((err: unknown) => {
        if (!closing) logger.warn({ err }, 'sandbox session task ended with an error');
        port1.close();
      });
      return session.started;
    },
    async close() {
      closing = true;
      clearInterval(watchdog);
      // Sessions still open end now: their threads see the port close and dispose the environments.
      for (const port of openPorts) port.close();
      await Promise.all(exiting);
      if (!destroyed) await piscina.close();
    },
  };
}

type MessagePort = InstanceType<typeof MessageChannel>['port1'];
