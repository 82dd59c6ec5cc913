import { MessageChannel } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { AppConfig } from '../config/index.js';
import type { Logger } from '../src/logger.js';
import { connectSession, type SandboxRunner } from '../src/sandbox/runner.js';
import type { ChecksResult, ProbeResult } from '../src/sandbox/tasks.js';
import type { PoolTask } from './sandbox-thread.js';

/** Runs from dist/ (the build) or from the TypeScript sources (development, tests): the thread file follows this one. */
const FROM_SOURCES = import.meta.url.endsWith('.ts');
const THREAD_FILE = new URL(`./sandbox-thread.${FROM_SOURCES ? 'ts' : 'js'}`, import.meta.url);
/** From the sources, threads load TypeScript through tsx, resolved from envfleet's own dependencies (never the working directory). */
const THREAD_EXEC_ARGV = FROM_SOURCES ? ['--import', import.meta.resolve('tsx')] : [];

/**
 * The sandbox pool of a worker process: `ENVFLEET_POOL_THREADS` piscina threads, each serving up
 * to `ENVFLEET_POOL_TASKS_PER_THREAD` tasks at once.
 *
 * Sessions (an environment kept alive for an episode) are long-running tasks: the task creates
 * the environment, then serves requests on a MessagePort that was transferred with it, and ends
 * when the host closes the port. piscina cannot route a task to a given thread, so a session
 * never moves: its task pins it to the thread that started it, and every later call travels over
 * its port straight to that thread. Atomics are off so that a thread's event loop keeps serving
 * ports between tasks. Tasks are never given an abort signal: piscina aborts by terminating the
 * thread, which would end every other session on it; runaway code is stopped by the sandbox's
 * own deadlines instead.
 */
export function createSandboxPool(config: Pick<AppConfig, 'pool'>, logger: Logger): SandboxRunner & { readonly piscina: Piscina } {
  const piscina = new Piscina({
    filename: THREAD_FILE.href,
    minThreads: config.pool.threads,
    maxThreads: config.pool.threads,
    concurrentTasksPerWorker: config.pool.tasksPerThread,
    idleTimeout: 60_000,
    atomics: 'disabled',
    execArgv: THREAD_EXEC_ARGV,
    // The WebAssembly heap is capped by the sandbox; this bounds the thread's own JS heap.
    resourceLimits: { maxOldGenerationSizeMb: 1_024 },
  });
  piscina.on('error', (err: unknown) => logger.error({ err }, 'sandbox thread failed; piscina replaces it'));
  const openPorts = new Set<MessagePort>();
  let closing = false;
  const run = <T>(task: PoolTask, transferList?: readonly MessagePort[]) =>
    piscina.run(task, transferList ? { transferList: [...transferList] as never } : {}) as Promise<T>;
  return {
    piscina,
    probe: input => run<ProbeResult>({ kind: 'probe', ...input }),
    checks: input => run<ChecksResult>({ kind: 'checks', ...input }),
    async openSession(code, initialState, limits) {
      const { port1, port2 } = new MessageChannel();
      openPorts.add(port1);
      port1.once('close', () => openPorts.delete(port1));
      const session = connectSession(port1);
      // The host end closes the port itself once it has read the thread's last reply; only a
      // task that failed (its thread died) closes it from here.
      run({ kind: 'session', code, initialState, limits, port: port2 }, [port2]).catch((err: unknown) => {
        if (!closing) logger.warn({ err }, 'sandbox session task ended with an error');
        port1.close();
      });
      return session.started;
    },
    async close() {
      closing = true;
      // Sessions still open end now: their threads see the port close and dispose the environments.
      for (const port of openPorts) port.close();
      await piscina.close();
    },
  };
}

type MessagePort = InstanceType<typeof MessageChannel>['port1'];
