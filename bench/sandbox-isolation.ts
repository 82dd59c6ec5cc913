/**
 * Memory and CPU isolation between the environments of one sandbox thread, measured:
 *
 *   node --expose-gc --import tsx bench/sandbox-isolation.ts [--quick]
 *
 * Prints a markdown report on stdout (progress goes to stderr):
 *   1. what QuickJS's own accounting (runtime.computeMemoryUsage) sees of memory an environment
 *      holds, per way of holding it: why accounting per runtime cannot charge an environment
 *   2. creating an environment: in a module reused from an earlier environment, and in a fresh
 *      module (instantiated from the thread's compiled build); a call on each of many live envs
 *   3. memory per live environment (child process, bench/sandbox/memory-child.ts): what the thread
 *      bound charges and what the process's RSS grows by
 *   4. a hoarder and a bystander in one pool thread: where the hoarder is stopped, and the
 *      bystander's call latency with and without it
 *   5. a session that spends its CPU budget call by call: calls until it ends, and the bystander
 *   6. memory given back: hoarders created one after another, each stopped at its allowance and
 *      its module dropped; the process's RSS stays bounded
 * `--quick` shrinks the counts (a smoke run). `--creation-only` runs sections 1 and 2 only, which
 * use nothing but QuickJSHost's createEnvironment/dispose/call: run it against an older tree to
 * compare (e.g. `git archive HEAD | tar -x -C /tmp/head`, link node_modules into it, copy this
 * file to /tmp/head/bench/, and run it there).
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { pino } from 'pino';
import { newQuickJSWASMModuleFromVariant } from 'quickjs-emscripten-core';
import * as releaseSync from '@jitl/quickjs-wasmfile-release-sync';
import type { EnvironmentCode } from '../src/sandbox/bundle.js';
import { DEFAULT_SANDBOX_LIMITS, type SandboxLimits } from '../src/sandbox/limits.js';
import { QuickJSHost, type SandboxEnvironment } from '../src/sandbox/quickjs-host.js';
import { benchArgs } from './args.js';
import { ROOT, loadEnv, median, p99 } from './sandbox/common.js';

const ARGS = benchArgs(import.meta.url, { booleans: ['quick', 'creation-only'] });
const QUICK = ARGS.flag('quick');
const CREATION_ONLY = ARGS.flag('creation-only');
const N = QUICK ? { creations: 20, live: 50, bystander: 300, memory: 50 } : { creations: 200, live: 200, bystander: 2_000, memory: 200 };
const MiB = 1 << 20;
const LIMITS: SandboxLimits = DEFAULT_SANDBOX_LIMITS;

const log = (msg: string) => process.stderr.write(`[bench/sandbox-isolation] ${msg}\n`);
const say = (line = '') => process.stdout.write(`${line}\n`);
const f = (x: number, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');
const table = (head: readonly string[], rows: readonly (readonly string[])[]) =>
  [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map(r => `| ${r.join(' | ')} |`)].join('\n');
const tool = (name: string) => ({ type: 'function' as const, function: { name, parameters: { type: 'object' } } });

const HOARDER: EnvironmentCode = {
  name: 'hoarder',
  className: 'Hoarder',
  source: `const cache = [];
  class Hoarder {
    constructor(s) { this.state = s; }
    remember({ mb }) { try { for (let i = 0; i < mb; i++) cache.push('h'.repeat(1 << 20) + i); } catch (e) {} return { success: true, data: cache.length }; }
    work({ n }) { let x = 0; for (let i = 0; i < n; i++) x = (x + i) % 1000003; return { success: true, data: x }; }
  }`,
  tools: ['remember', 'work'].map(tool),
};
const NOTES: EnvironmentCode = {
  name: 'notes',
  className: 'Notes',
  source: `class Notes {
    constructor(s) { this.state = { n: 0, notes: [] }; }
    add({ text }) { this.state.n += 1; const note = text + ' #' + this.state.n; this.state.notes.push(note); if (this.state.notes.length > 100) this.state.notes.shift(); return { success: true, data: this.state.n }; }
  }`,
  tools: [tool('add')],
};

// ---------- 1. QuickJS's own accounting ----------
async function quickjsAccounting() {
  type Variant = Parameters<typeof newQuickJSWASMModuleFromVariant>[0];
  const exported = (releaseSync as unknown as { default: Variant | { default: Variant } }).default;
  const variant = typeof exported === 'object' && 'default' in exported ? exported.default : exported;
  const module = await newQuickJSWASMModuleFromVariant(variant);
  const memory = module.getWasmMemory() as unknown as { buffer: ArrayBuffer };
  const ways: [string, string, string][] = [
    ['array of 64 KiB strings', '32', 'globalThis.c = []; for (let i = 0; i < 512; i++) c.push("x".repeat(65536) + i);'],
    ['Map of 64 KiB strings', '32', 'globalThis.c = new Map(); for (let i = 0; i < 512; i++) c.set(i, "x".repeat(65536) + i);'],
    ['closures over 64 KiB strings', '32', 'globalThis.c = []; for (let i = 0; i < 512; i++) { const s = "x".repeat(65536) + i; c.push(() => s); }'],
    ['one 32 MiB string', '32', 'globalThis.c = "x".repeat(32 << 20);'],
    ['typed arrays (512 × 64 KiB)', '32', 'globalThis.c = []; for (let i = 0; i < 512; i++) c.push(new Uint8Array(65536));'],
    ['200,000 small objects', '≈20', 'globalThis.c = []; for (let i = 0; i < 200000; i++) c.push({ a: i, b: i + 1, id: "k" + i });'],
  ];
  const rows: string[][] = [];
  for (const [what, held, source] of ways) {
    const runtime = module.newRuntime();
    const ctx = runtime.newContext();
    const used = () => {
      const h = runtime.computeMemoryUsage();
      const u = ctx.dump(h) as { memory_used_size: number; malloc_count: number };
      h.dispose();
      return u;
    };
    const before = used();
    const heap0 = memory.buffer.byteLength;
    const r = ctx.evalCode(source);
    if (r.error) r.error.dispose();
    else r.value.dispose();
    const t = performance.now();
    const after = used();
    const computeMs = performance.now() - t;
    rows.push([what, held, f((after.memory_used_size - before.memory_used_size) / MiB), f((memory.buffer.byteLength - heap0) / MiB), f(computeMs, 2)]);
    ctx.dispose();
    runtime.dispose();
  }
  return rows;
}

// ---------- 2. creation ----------
/** CPU time of this process, ms (less disturbed than wall time by other processes on the machine). */
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
async function creationTimes(code: EnvironmentCode, state: unknown, probe: { tool: string; arguments: unknown }) {
  const host = new QuickJSHost(4096);
  await host.warm();
  for (let i = 0; i < 20; i++) (await host.createEnvironment(code, state, LIMITS)).dispose();
  const reused: number[] = [];
  let c = cpuMs();
  for (let i = 0; i < N.creations; i++) {
    const t = performance.now();
    const e = await host.createEnvironment(code, state, LIMITS);
    reused.push(performance.now() - t);
    e.dispose();
  }
  const reusedCpu = (cpuMs() - c) / N.creations;
  const fresh: number[] = [];
  const live: SandboxEnvironment[] = [];
  c = cpuMs();
  for (let i = 0; i < N.live; i++) {
    const t = performance.now();
    live.push(await host.createEnvironment(code, state, LIMITS)); // every idle module is taken: a fresh one
    fresh.push(performance.now() - t);
  }
  const freshCpu = (cpuMs() - c) / N.live;
  // One call on each live environment in turn (each in its own module), 10 rounds.
  c = cpuMs();
  for (let round = 0; round < 10; round++) for (const e of live) e.call(probe.tool, probe.arguments);
  const callUs = ((cpuMs() - c) / (10 * live.length)) * 1000;
  for (const e of live) e.dispose();
  return { reused: median(reused), reusedCpu, fresh: median(fresh), freshCpu, callUs };
}

// ---------- 3. memory per live env ----------
interface MemoryChild {
  created: number;
  rssSlopeKbPerEnv: number;
  heapSlopeKbPerEnv: number;
  quickjsUsedKbPerEnv: number;
  error: string | null;
}
function memoryChild(n: number, key: 'hotel' | 'library'): MemoryChild {
  const out = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', 'bench/sandbox/memory-child.ts', String(n), key], { cwd: ROOT, encoding: 'utf8', maxBuffer: 16 << 20 });
  return JSON.parse(out) as MemoryChild;
}

// ---------- 4/5. one pool thread ----------
async function oneThread() {
  // Imported here so that `--creation-only` also runs against an older tree (see the header).
  const { SANDBOX_THREAD_FILE, createSandboxPool } = await import('../workers/sandbox-pool.js');
  const limits: SandboxLimits = { ...LIMITS, heapMb: 192 };
  const pool = createSandboxPool({ pool: { threads: 1, tasksPerThread: 64 }, sandbox: limits }, pino({ level: 'silent' }), SANDBOX_THREAD_FILE);
  try {
    await pool.started();
    const latency = async (session: Awaited<ReturnType<typeof pool.openSession>>, calls: number, between?: () => Promise<unknown>) => {
      const us: number[] = [];
      for (let i = 0; i < calls; i++) {
        if (between) await between();
        const t = performance.now();
        await session.call('add', { text: `note ${i}` });
        us.push((performance.now() - t) * 1000);
      }
      return us;
    };
    const alone = await pool.openSession(NOTES, {}, limits);
    await latency(alone, 200);
    const aloneUs = await latency(alone, N.bystander);
    await alone.close();

    const hoarder = await pool.openSession(HOARDER, {}, limits);
    const bystander = await pool.openSession(NOTES, {}, limits);
    let held = 0;
    let stoppedAt = -1;
    let stopCallMs = 0;
    let hoards = 0;
    const withUs = await latency(bystander, N.bystander, async () => {
      if (hoards >= 60) return;
      hoards += 1;
      const t = performance.now();
      const o = await hoarder.call('remember', { mb: 4 });
      if (o.runtimeError === 'MEMORY_EXCEEDED' && stoppedAt < 0) {
        stoppedAt = held;
        stopCallMs = performance.now() - t;
      } else if (!o.runtimeError) held = (o.result as { data: number }).data;
    });
    await Promise.all([hoarder.close(), bystander.close()]);

    const slow = await pool.openSession(HOARDER, {}, { ...limits, callDeadlineMs: 60_000, sessionCpuMs: 1_000 });
    const neighbour = await pool.openSession(NOTES, {}, limits);
    let slowCalls = 0;
    let slowCode: string | undefined;
    const started = performance.now();
    const neighbourUs: number[] = [];
    while (!slowCode && slowCalls < 1_000) {
      const t = performance.now();
      const [o] = await Promise.all([slow.call('work', { n: 2_000_000 }), neighbour.call('add', { text: 'x' }).then(() => neighbourUs.push((performance.now() - t) * 1000))]);
      slowCalls += 1;
      slowCode = o.runtimeError;
    }
    const slowWallMs = performance.now() - started;
    await Promise.all([slow.close(), neighbour.close()]);
    return { aloneUs, withUs, stoppedAt, stopCallMs, slowCalls, slowCode, slowWallMs, neighbourUs };
  } finally {
    await pool.close();
  }
}

// ---------- 6. memory given back ----------
async function droppedModules() {
  const host = new QuickJSHost(512);
  await host.warm();
  const rss0 = process.memoryUsage().rss;
  let maxRss = rss0;
  const hoarders = QUICK ? 10 : 40;
  let stopped = 0;
  for (let i = 0; i < hoarders; i++) {
    const e = await host.createEnvironment(HOARDER, {}, LIMITS);
    if (e.call('remember', { mb: 100 }).runtimeError === 'MEMORY_EXCEEDED') stopped += 1;
    maxRss = Math.max(maxRss, process.memoryUsage().rss);
  }
  return { hoarders, stopped, rss0, maxRss, charged: host.heapBytes() };
}

log('QuickJS accounting');
const accounting = await quickjsAccounting();
log('creation');
const hotel = loadEnv('hotel');
const created = { hotel: await creationTimes(hotel.code, hotel.state, hotel.calls[0]!), tiny: await creationTimes(NOTES, {}, { tool: 'add', arguments: { text: 'x' } }) };
log('memory per live environment (child processes)');
const memory = CREATION_ONLY ? null : { hotel: memoryChild(N.memory, 'hotel'), library: memoryChild(N.memory, 'library') };
log('one pool thread');
const thread = CREATION_ONLY ? null : await oneThread();
log('memory given back');
const givenBack = CREATION_ONLY ? null : await droppedModules();

say('# Sandbox isolation between environments of one thread');
say();
say(`Machine: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, Node ${process.version}. Command: \`node --expose-gc --import tsx bench/sandbox-isolation.ts${QUICK ? ' --quick' : ''}\`. Other processes may share the machine.`);
say();
say("## 1. What QuickJS's own accounting sees (`runtime.computeMemoryUsage()`, one runtime, one module)");
say();
say(table(['held', 'MiB held (about)', 'memory_used_size grew, MiB', 'WebAssembly heap grew, MiB', 'computeMemoryUsage, ms'], accounting));
say();
say(`## 2. Creating an environment: in a reused module (create + dispose, ${N.creations} times) and in a fresh one (${N.live} kept alive); then one call on each live env in turn`);
say();
say(table(['env', 'reused module: wall median / CPU per env, ms', 'fresh module: wall median / CPU per env, ms', `call, round-robin over ${N.live} live envs: CPU µs`], (['hotel', 'tiny'] as const).map(k => [
  k === 'hotel' ? 'hotel reference env (65 KB state)' : 'tiny env (no state)',
  `${f(created[k].reused, 2)} / ${f(created[k].reusedCpu, 2)}`,
  `${f(created[k].fresh, 2)} / ${f(created[k].freshCpu, 2)}`,
  f(created[k].callUs, 1),
])));
say();
if (memory && thread) {
  say(`## 3. Memory per live environment (${N.memory} live envs, 20 calls each, after gc())`);
  say();
  say(table(['env', 'charged to the thread bound, KiB/env', 'RSS, KiB/env', 'QuickJS "memory used", KiB/env', 'error'], (['hotel', 'library'] as const).map(k => [
    k, f(memory[k].heapSlopeKbPerEnv, 0), f(memory[k].rssSlopeKbPerEnv, 0), f(memory[k].quickjsUsedKbPerEnv, 0), memory[k].error ?? '',
  ])));
  say();
  say('## 4. A hoarder (4 MiB per call into a global cache, errors swallowed) and a bystander in one pool thread (allowance 64 MiB, thread bound 192 MiB)');
  say();
  say(table(['', 'value'], [
    ['hoarder held when stopped (MiB of strings)', String(thread.stoppedAt)],
    ['its last call (ms)', f(thread.stopCallMs, 1)],
    ['bystander call round trip alone, median / p99 (µs)', `${f(median(thread.aloneUs), 0)} / ${f(p99(thread.aloneUs), 0)}`],
    ['bystander call round trip next to the hoarder, median / p99 (µs)', `${f(median(thread.withUs), 0)} / ${f(p99(thread.withUs), 0)}`],
  ]));
  say();
  say('## 5. A session spending its CPU budget (1 s) call by call (2,000,000 loop iterations per call), a neighbour calling alongside');
  say();
  say(table(['', 'value'], [
    ['calls until the session ended', String(thread.slowCalls)],
    ['how it ended', thread.slowCode ?? 'did not end'],
    ['wall time until then (ms)', f(thread.slowWallMs, 0)],
    ['neighbour round trip while it ran, median / max (ms)', `${f(median(thread.neighbourUs) / 1000, 1)} / ${f(Math.max(...thread.neighbourUs) / 1000, 1)}`],
  ]));
  say();
}
if (givenBack) {
  say(`## 6. Memory given back: ${givenBack.hoarders} hoarders in turn, each filling its 64 MiB allowance and stopped (its module dropped)`);
  say();
  say(table(['', 'value'], [
    ['stopped with MEMORY_EXCEEDED', `${givenBack.stopped} of ${givenBack.hoarders}`],
    ['RSS before / highest during (MiB)', `${f(givenBack.rss0 / MiB, 0)} / ${f(givenBack.maxRss / MiB, 0)}`],
    ['charged to the thread after (MiB)', f(givenBack.charged / MiB, 1)],
  ]));
}
