/**
 * The sandbox side of one bench/rollouts.ts episode, alone: a session on the reference hotel env
 * (65 KB state), 4 get_guest calls, then the final state and the 4 checks — `finish` where the
 * session has it, else snapshot, close and a checks task as episodes did before it — with C
 * episodes in flight through a real sandbox pool. Prints the CPU per episode of the process: all
 * threads, the main thread, the rest (the pool threads and V8's and libuv's helpers).
 *
 *   node --import tsx bench/sandbox-episode.ts [--concurrency 500] [--episodes 2000] [--threads 2]
 *
 * No Redis, no model server, no BullMQ: what the sandbox costs an episode, to compare two commits
 * on one machine (run them one after the other; the machine's speed varies). Checks that every
 * episode gets the hotel reward (0.75) and exits 1 otherwise.
 */
import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import type { CheckSpec, EnvironmentCode } from '../src/sandbox/bundle.js';
import { DEFAULT_SANDBOX_LIMITS } from '../src/sandbox/limits.js';
import type { EnvSession } from '../src/sandbox/runner.js';
import { SANDBOX_THREAD_FILE, createSandboxPool } from '../workers/sandbox-pool.js';
import { benchArgs } from './args.js';

const args = benchArgs(import.meta.url, { values: ['concurrency', 'episodes', 'threads'] });
const C = args.int('concurrency', 500);
const N = args.int('episodes', 2000);
const THREADS = args.int('threads', 2);
const ROOT = new URL('../', import.meta.url);
const read = (name: string): unknown => JSON.parse(readFileSync(new URL(`fixtures/reference/${name}`, ROOT), 'utf8'));
const bundle = read('hotel-env.bundle.json') as EnvironmentCode;
const state = read('hotel-state.json');
const checks = read('hotel-checks.json') as CheckSpec[];
const code: EnvironmentCode = { name: 'hotel', className: bundle.className, source: bundle.source, tools: bundle.tools };
const stateJson = JSON.stringify(state);
const tasksPerThread = Math.ceil(C / THREADS) + 16;
const limits = { ...DEFAULT_SANDBOX_LIMITS, heapMb: Math.max(512, 2 * tasksPerThread) };
const pool = createSandboxPool({ pool: { threads: THREADS, tasksPerThread }, sandbox: limits }, pino({ level: 'silent' }), SANDBOX_THREAD_FILE);
await pool.started();

/** On-CPU time of the main thread, ms (/proc/…/schedstat: nanoseconds). */
const mainCpuMs = () => Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
const rewards = new Map<number, number>();

async function episode(): Promise<void> {
  const session = await pool.openSession(code, state, limits, stateJson);
  for (let i = 0; i < 4; i++) await session.call('get_guest', { guest_id: 'G0001' });
  let reward: number;
  if (typeof (session as Partial<EnvSession>).finish === 'function') {
    const end = await session.finish(checks);
    reward = end.checks?.reward ?? NaN;
  } else {
    const finalState = await session.snapshot();
    await session.close();
    reward = (await pool.checks({ checks, finalState, initialState: state, limits })).reward;
  }
  rewards.set(reward, (rewards.get(reward) ?? 0) + 1);
}

async function run(n: number): Promise<void> {
  let started = 0;
  await Promise.all(
    Array.from({ length: Math.min(C, n) }, async () => {
      while (started < n) {
        started += 1;
        await episode();
      }
    }),
  );
}

await run(Math.min(N, 200)); // warm-up
rewards.clear();
const cpu0 = process.cpuUsage();
const main0 = mainCpuMs();
const t0 = performance.now();
await run(N);
const wallS = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
const allMs = (cpu.user + cpu.system) / 1000;
const mainMs = mainCpuMs() - main0;
await pool.close();
const ok = rewards.size === 1 && rewards.get(0.75) === N;
process.stdout.write(
  `C = ${C}, N = ${N}, ${THREADS} pool thread(s): CPU per episode ${(allMs / N).toFixed(2)} ms = main thread ${(mainMs / N).toFixed(2)} + other threads ${((allMs - mainMs) / N).toFixed(2)} ms; ` +
    `wall ${wallS.toFixed(1)} s; rewards ${JSON.stringify(Object.fromEntries(rewards))}${ok ? '' : ' (expected 0.75 for every episode)'}\n`,
);
process.exit(ok ? 0 : 1);
