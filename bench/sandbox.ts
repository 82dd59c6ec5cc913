/**
 * The sandbox runtime, measured: QuickJS-in-WebAssembly environments on the reference hotel env
 * and on the baseline kit's library env, side by side with two unsandboxed baselines on the same
 * traces in the same run (node:vm, and the seed's CPython exec way for the library env).
 *
 *   node --import tsx bench/sandbox.ts [--quick]
 *
 * Prints a markdown report on stdout (progress goes to stderr):
 *   1. cold start (fresh process): module load, first host, first environment
 *   2. environment creation on a warm host
 *   3. tool-call latency over the full 10,000-call trace on one resident environment
 *   4. the same trace through node:vm and CPython, with ratios
 *   5. steps/s through the piscina pool at 1 and 2 threads, and session round trips
 *   6. memory per live environment (child process, N = 100 and 1,000)
 *   7. check-function time on the trace's final state
 *   8. deadline accuracy (call and check deadlines)
 * then where the time of a call goes (boundary vs guest work, per tool) and the bars.
 * `--quick` shrinks every count (a smoke run of about 10–15 s); the full run takes about 30 s on 2 cores.
 * The baseline kit (library env, cpython-baseline.py) is read from shared/baselines/ next to the
 * checkout, or from the directory in ENVFLEET_BASELINES.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { EnvironmentCode, ToolCall } from '../src/sandbox/bundle.js';
import { DEFAULT_SANDBOX_LIMITS, type SandboxLimits } from '../src/sandbox/limits.js';
import { QuickJSHost } from '../src/sandbox/quickjs-host.js';
import { SANDBOX_THREAD_FILE, createSandboxPool } from '../workers/sandbox-pool.js';
import { benchArgs } from './args.js';
import { BASELINES_ENV, ROOT, baseline, cpuSnapshot, loadEnv, max, median, otherCores, p99, type BenchEnv } from './sandbox/common.js';
import { nodeVmDispatcher, nodeVmTrace, type NodeVmTrace } from './sandbox/nodevm.js';

const QUICK = benchArgs(import.meta.url, { booleans: ['quick'] }).flag('quick');
const N = QUICK
  ? { trace: 2_000, creations: 10, poolTasksPerThread: 4, poolSlice: 1_000, sessionCalls: 500, memory: [20, 100], checkRuns: 5, deadlineRuns: 1, noop: 5_000 }
  : { trace: Infinity, creations: 50, poolTasksPerThread: 20, poolSlice: 2_000, sessionCalls: 2_000, memory: [100, 1_000], checkRuns: 20, deadlineRuns: 5, noop: 20_000 };
const POOL_TASKS_PER_THREAD = 4;
const LIMITS: SandboxLimits = DEFAULT_SANDBOX_LIMITS;

const log = (msg: string) => process.stderr.write(`[bench/sandbox] ${msg}\n`);

// ---------- formatting ----------
const f = (x: number, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');
const int = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a');
const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const ratio = (a: number, b: number) => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}×` : 'n/a');
const table = (head: readonly string[], rows: readonly (readonly string[])[]) =>
  [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map(r => `| ${r.join(' | ')} |`)].join('\n');

// ---------- measurements ----------
interface TraceResult {
  calls: number;
  lat: number[]; // µs
  perTool: Map<string, number[]>;
  /** Calls of each tool the sandbox refused before running them (UNKNOWN_TOOL, INVALID_ARGUMENTS). */
  perToolRefused: Map<string, number>;
  callsPerSecond: number;
  runtimeErrors: Record<string, number>;
  unsuccessful: number;
  results: (string | null)[]; // JSON of each result that ran (null when the sandbox refused the call)
  finalState: unknown;
}

async function sandboxTrace(host: QuickJSHost, env: BenchEnv, calls: readonly ToolCall[]): Promise<TraceResult> {
  const e = await host.createEnvironment(env.code, env.state, LIMITS);
  const lat: number[] = new Array<number>(calls.length);
  const outcomes = new Array<{ result: unknown; runtimeError?: string }>(calls.length);
  const started = performance.now();
  for (let i = 0; i < calls.length; i++) {
    const c = calls[i]!;
    const t = performance.now();
    outcomes[i] = e.call(c.tool, c.arguments);
    lat[i] = (performance.now() - t) * 1000;
  }
  const wall = performance.now() - started;
  const finalState = e.snapshot();
  e.dispose();
  const perTool = new Map<string, number[]>();
  const perToolRefused = new Map<string, number>();
  const runtimeErrors: Record<string, number> = {};
  let unsuccessful = 0;
  calls.forEach((c, i) => {
    let list = perTool.get(c.tool);
    if (!list) perTool.set(c.tool, (list = []));
    list.push(lat[i]!);
    const o = outcomes[i]!;
    if (o.runtimeError) {
      runtimeErrors[o.runtimeError] = (runtimeErrors[o.runtimeError] ?? 0) + 1;
      perToolRefused.set(c.tool, (perToolRefused.get(c.tool) ?? 0) + 1);
    } else if ((o.result as { success?: unknown } | null)?.success === false) unsuccessful += 1;
  });
  return {
    calls: calls.length,
    lat,
    perTool,
    perToolRefused,
    callsPerSecond: calls.length / (wall / 1000),
    runtimeErrors,
    unsuccessful,
    results: outcomes.map(o => (o.runtimeError ? null : JSON.stringify(o.result))),
    finalState,
  };
}

interface CpythonResult {
  calls: number;
  callsPerSecond: number;
  medianUs: number;
  p99Us: number;
  createMs: number;
  python: string;
}
interface CpythonPerTool {
  perTool: Record<string, { n: number; medianUs: number }>;
  noopMedianUs: number;
  python: string;
}

function cpython(env: BenchEnv, callsFile: string): { run: CpythonResult; perTool: CpythonPerTool } | null {
  if (!env.python) return null;
  const args = [env.python.file, env.python.className, env.python.stateFile, callsFile];
  const run = JSON.parse(execFileSync('python3', [baseline('cpython-baseline.py'), ...args], { encoding: 'utf8' })) as CpythonResult;
  const perTool = JSON.parse(
    execFileSync('python3', [`${ROOT}bench/sandbox/cpython-per-tool.py`, ...args], { encoding: 'utf8', env: { ...process.env, [BASELINES_ENV]: baseline('') } }),
  ) as CpythonPerTool;
  return { run, perTool };
}

function child(script: string, args: readonly string[], execArgv: readonly string[] = []): unknown {
  const out = execFileSync(process.execPath, [...execArgv, '--import', 'tsx', `${ROOT}bench/sandbox/${script}`, ...args], {
    encoding: 'utf8',
    cwd: ROOT,
    maxBuffer: 1 << 20,
  });
  return JSON.parse(out.trim().split('\n').pop()!);
}

interface JitlessResult {
  medianUs: number;
  p99Us: number;
  callsPerSecond: number;
  perTool: Record<string, number>;
}
interface ColdResult {
  importMs: number;
  warmMs: number;
  firstCreateMs: number;
  secondCreateMs: number;
  rewarmMs: number;
  rewarmCreateMs: number;
}
interface MemoryResult {
  requested: number;
  created: number;
  error: string | null;
  createMedianMs: number;
  heapDeltaBytes: number;
  rssDeltaBytes: number;
  heapKbPerEnv: number;
  rssKbPerEnv: number;
  quickjsUsedKbPerEnv: number;
  quickjsEmptyEnvKb: number;
  rssSlopeKbPerEnv: number;
  heapSlopeKbPerEnv: number;
}

async function creation(host: QuickJSHost, env: BenchEnv) {
  const create: number[] = [];
  const both: number[] = [];
  (await host.createEnvironment(env.code, env.state, LIMITS)).dispose();
  for (let i = 0; i < N.creations; i++) {
    const t = performance.now();
    const e = await host.createEnvironment(env.code, env.state, LIMITS);
    const made = performance.now();
    e.dispose();
    create.push(made - t);
    both.push(performance.now() - t);
  }
  return { createMs: median(create), createP99Ms: max(create), bothMs: median(both) };
}

interface PoolRun {
  threads: number;
  tasks: number;
  steps: number;
  wallMs: number;
  stepsPerSecond: number;
  perThread: number;
  /** Steps per second of time spent inside `env.call` (the `us` each step reports), per thread. */
  insideCallPerSecond: number;
  /** Fraction of the wall time the main thread's event loop was busy (receiving the results). */
  mainBusy: number;
  /** CPU time of the whole process (all threads) per second of wall time. */
  coresUsed: number;
  /** CPU taken by other processes on the machine meanwhile (cores). */
  otherCores: number;
  createErrors: number;
  session?: { calls: number; callsPerSecond: number; medianUs: number; p99Us: number };
}

async function poolRuns(env: BenchEnv): Promise<PoolRun[]> {
  const out: PoolRun[] = [];
  const logger = pino({ level: 'silent' });
  const slices: ToolCall[][] = [];
  for (let s = 0; s + N.poolSlice <= env.calls.length; s += N.poolSlice) slices.push(env.calls.slice(s, s + N.poolSlice));
  for (const threads of [1, 2]) {
    const pool = createSandboxPool({ pool: { threads, tasksPerThread: POOL_TASKS_PER_THREAD }, sandbox: LIMITS }, logger, SANDBOX_THREAD_FILE);
    await pool.started();
    try {
      // Warm every thread: tsx, the QuickJS module, ajv, the JIT of the thread's host code.
      for (let round = 0; round < 2; round++) {
        await Promise.all(
          [...Array(threads * POOL_TASKS_PER_THREAD).keys()].map(i =>
            pool.probe({ code: env.code, initialState: env.state, calls: slices[i % slices.length]!.slice(0, 300), limits: LIMITS }),
          ),
        );
      }
      const tasks = threads * N.poolTasksPerThread;
      const elu0 = performance.eventLoopUtilization();
      const cpu0 = process.cpuUsage();
      const snap0 = cpuSnapshot();
      const started = performance.now();
      const results = await Promise.all(
        [...Array(tasks).keys()].map(i => pool.probe({ code: env.code, initialState: env.state, calls: slices[i % slices.length]!, limits: LIMITS })),
      );
      const wallMs = performance.now() - started;
      const mainBusy = performance.eventLoopUtilization(elu0).utilization;
      const cpu = process.cpuUsage(cpu0);
      const others = otherCores(snap0, cpuSnapshot());
      const steps = results.reduce((a, r) => a + r.steps.length, 0);
      const insideUs = results.reduce((a, r) => a + r.steps.reduce((b, st) => b + st.us, 0), 0);
      const run: PoolRun = {
        threads,
        tasks,
        steps,
        wallMs,
        stepsPerSecond: steps / (wallMs / 1000),
        perThread: steps / (wallMs / 1000) / threads,
        insideCallPerSecond: steps / (insideUs / 1e6),
        mainBusy,
        coresUsed: (cpu.user + cpu.system) / 1000 / wallMs,
        otherCores: others,
        createErrors: results.filter(r => r.createError).length,
      };
      if (threads === 1) {
        const session = await pool.openSession(env.code, env.state, LIMITS);
        const calls = env.calls.slice(0, N.sessionCalls);
        for (const c of calls.slice(0, 200)) await session.call(c.tool, c.arguments);
        await session.close();
        const s2 = await pool.openSession(env.code, env.state, LIMITS);
        const lat: number[] = [];
        const t0 = performance.now();
        for (const c of calls) {
          const t = performance.now();
          await s2.call(c.tool, c.arguments);
          lat.push((performance.now() - t) * 1000);
        }
        const sWall = performance.now() - t0;
        await s2.close();
        run.session = { calls: calls.length, callsPerSecond: calls.length / (sWall / 1000), medianUs: median(lat), p99Us: p99(lat) };
      }
      out.push(run);
      log(`${env.key}: pool ${threads} thread(s): ${int(run.stepsPerSecond)} steps/s`);
    } finally {
      await pool.close();
    }
  }
  return out;
}

async function checkTimes(host: QuickJSHost, env: BenchEnv, finalState: unknown) {
  const times: number[] = [];
  let outcome: Awaited<ReturnType<QuickJSHost['runChecks']>> = [];
  for (let i = 0; i < N.checkRuns + 1; i++) {
    const t = performance.now();
    outcome = await host.runChecks(env.checks, finalState, env.state, LIMITS);
    if (i > 0) times.push(performance.now() - t);
  }
  return { medianMs: median(times), maxMs: max(times), checks: outcome.length, passed: outcome.filter(o => o.passed).length, errors: outcome.filter(o => o.errorCode).map(o => o.errorCode) };
}

const SPIN: EnvironmentCode = {
  name: 'spin',
  className: 'Spin',
  source: 'class Spin { constructor(s) { this.state = s || {}; } spin() { for (;;) {} } }',
  tools: [{ type: 'function', function: { name: 'spin', parameters: { type: 'object' } } }],
};

async function deadlines(host: QuickJSHost) {
  const rows: { what: string; limitMs: number; overshoot: number[]; codes: string[] }[] = [];
  for (const limitMs of [100, 250, 1000]) {
    const limits = { ...LIMITS, callDeadlineMs: limitMs };
    const overshoot: number[] = [];
    const codes: string[] = [];
    for (let i = 0; i < N.deadlineRuns; i++) {
      const e = await host.createEnvironment(SPIN, {}, limits);
      const t = performance.now();
      const o = e.call('spin', {});
      overshoot.push(performance.now() - t - limitMs);
      codes.push(o.runtimeError ?? 'none');
      e.dispose();
    }
    rows.push({ what: 'tool call `for(;;){}`', limitMs, overshoot, codes });
  }
  const limits = { ...LIMITS, checkDeadlineMs: 100 };
  const overshoot: number[] = [];
  const codes: string[] = [];
  for (let i = 0; i < N.deadlineRuns; i++) {
    const t = performance.now();
    const [o] = await host.runChecks([{ item: 'spin', check: 'function check() { for (;;) {} }' }], {}, {}, limits);
    overshoot.push(performance.now() - t - 100);
    codes.push(o?.errorCode ?? 'none');
  }
  rows.push({ what: 'check `for(;;){}` (incl. parsing the states)', limitMs: 100, overshoot, codes });
  return rows;
}

/** The boundary alone: a no-op tool through the sandbox, its parts, and the same no-op unsandboxed. */
async function boundary(host: QuickJSHost) {
  const NOOP: EnvironmentCode = {
    name: 'noop',
    className: 'Noop',
    source: 'class Noop { constructor(s) { this.state = s || {}; } ping(args) { return { success: true }; } }',
    tools: [{ type: 'function', function: { name: 'ping', parameters: { type: 'object' } } }],
  };
  const e = await host.createEnvironment(NOOP, {}, LIMITS);
  const measure = (fn: (i: number) => unknown) => {
    for (let i = 0; i < N.noop / 10; i++) fn(i);
    const lat: number[] = [];
    for (let i = 0; i < N.noop; i++) {
      const t = performance.now();
      fn(i);
      lat.push((performance.now() - t) * 1000);
    }
    return median(lat);
  };
  // Internals, reached past TypeScript's `private` for measurement only.
  type Handle = { dispose(): void };
  const inner = (e as unknown as {
    vm: {
      ctx: {
        evalCode(code: string): { value: Handle; error?: Handle };
        newString(s: string): Handle;
        callFunction(fn: Handle, self: Handle, ...args: Handle[]): { value: Handle; error?: Handle };
        getString(h: Handle): string;
        undefined: Handle;
      };
      arm(ms: number): void;
      callHarnessText(name: string, a: string, b: string): string;
    };
    validators: Map<string, (x: unknown) => boolean>;
  }).vm;
  const full = measure(i => e.call('ping', { a: i }));
  const harness = measure(i => {
    inner.arm(1000);
    return inner.callHarnessText('call', 'ping', `{"a":${i}}`);
  });
  const emptyFn = inner.ctx.evalCode('(function (a, b) { return ""; })').value;
  const ffi = measure(i => {
    const a = inner.ctx.newString('ping');
    const b = inner.ctx.newString(`{"a":${i}}`);
    const r = inner.ctx.callFunction(emptyFn, inner.ctx.undefined, a, b);
    a.dispose();
    b.dispose();
    const s = inner.ctx.getString(r.value);
    r.value.dispose();
    return s;
  });
  emptyFn.dispose();
  e.dispose();
  const vmCall = nodeVmDispatcher(NOOP, {});
  const nodeVm = measure(i => JSON.parse(vmCall('ping', JSON.stringify({ a: i }))));
  return { full, harness, ffi, nodeVm };
}

/** ajv validation alone, per call of the trace (the env's own compiled validators). */
async function ajvCost(host: QuickJSHost, env: BenchEnv, calls: readonly ToolCall[]) {
  const e = await host.createEnvironment(env.code, env.state, LIMITS);
  const validators = (e as unknown as { validators: Map<string, (x: unknown) => boolean> }).validators;
  const lat: number[] = [];
  for (let round = 0; round < 2; round++) {
    for (const c of calls) {
      const v = validators.get(c.tool);
      if (!v) continue;
      const t = performance.now();
      v(c.arguments ?? {});
      if (round === 1) lat.push((performance.now() - t) * 1000);
    }
  }
  e.dispose();
  return median(lat);
}

// ---------- main ----------
interface EnvReport {
  env: BenchEnv;
  calls: readonly ToolCall[];
  cold: ColdResult;
  creation: Awaited<ReturnType<typeof creation>>;
  trace: TraceResult;
  nodeVm: NodeVmTrace;
  jitless: JitlessResult;
  agree: { same: number; compared: number };
  cpython: ReturnType<typeof cpython>;
  pool: PoolRun[];
  memory: MemoryResult[];
  checks: Awaited<ReturnType<typeof checkTimes>>;
  ajvUs: number;
  traceOthers: number;
}

const benchStarted = performance.now();
const benchSnap = cpuSnapshot();
const tmp = mkdtempSync(join(os.tmpdir(), 'envfleet-bench-sandbox-'));
const reports: EnvReport[] = [];
let bound: Awaited<ReturnType<typeof boundary>> | null = null;
let dl: Awaited<ReturnType<typeof deadlines>> = [];
try {
  for (const key of ['hotel', 'library'] as const) {
    const env = loadEnv(key);
    const calls = Number.isFinite(N.trace) ? env.calls.slice(0, N.trace) : env.calls;
    log(`${key}: cold start (child process)`);
    const cold = child('cold-child.ts', [key]) as ColdResult;

    const host = new QuickJSHost(512);
    await host.warm();
    log(`${key}: creation`);
    const created = await creation(host, env);
    log(`${key}: trace of ${calls.length} calls`);
    const traceSnap = cpuSnapshot();
    const trace = await sandboxTrace(host, env, calls);
    const traceOthers = otherCores(traceSnap, cpuSnapshot());
    log(`${key}: node:vm`);
    const nv = nodeVmTrace(env.code, env.state, calls);
    log(`${key}: node:vm --jitless (child process)`);
    const jitless = child('nodevm-child.ts', [key, String(calls.length)], ['--jitless']) as JitlessResult;
    let same = 0;
    let compared = 0;
    trace.results.forEach((r, i) => {
      if (r === null) return;
      compared += 1;
      const reply = nv.replies[i] as { ok?: unknown };
      if ('ok' in reply && JSON.stringify(reply.ok) === r) same += 1;
    });
    let cp: ReturnType<typeof cpython> = null;
    if (env.python) {
      log(`${key}: CPython`);
      let callsFile = env.python.callsFile;
      if (calls.length !== env.calls.length) {
        callsFile = join(tmp, `${key}-calls.jsonl`);
        writeFileSync(callsFile, `${calls.map(c => JSON.stringify(c)).join('\n')}\n`);
      }
      cp = cpython(env, callsFile);
    }
    log(`${key}: checks`);
    const checks = await checkTimes(host, env, trace.finalState);
    const ajvUs = await ajvCost(host, env, calls);
    if (key === 'library') {
      log('boundary (no-op tool)');
      bound = await boundary(host);
      log('deadlines');
      dl = await deadlines(host);
    }
    log(`${key}: pool`);
    const pool = await poolRuns(env);
    const memory: MemoryResult[] = [];
    for (const n of N.memory) {
      log(`${key}: memory, ${n} envs (child process)`);
      memory.push(child('memory-child.ts', [String(n), key], ['--expose-gc']) as MemoryResult);
    }
    reports.push({ env, calls, cold, creation: created, trace, nodeVm: nv, jitless, agree: { same, compared }, cpython: cp, pool, memory, checks, ajvUs, traceOthers });
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
const benchSeconds = (performance.now() - benchStarted) / 1000;
const benchOthers = otherCores(benchSnap, cpuSnapshot());

// ---------- report ----------
const lines: string[] = [];
const say = (s = '') => lines.push(s);
const py = reports.find(r => r.cpython)?.cpython?.run.python ?? 'n/a';
say(`# Sandbox runtime benchmark${QUICK ? ' (--quick: reduced counts, smoke test only)' : ''}`);
say();
say(`- date: ${new Date().toISOString()}`);
say(`- machine: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.type()} ${os.release()}`);
say(`- Node ${process.version}, Python ${py} (from the baseline's output)`);
say(`- command: \`node --import tsx bench/sandbox.ts${QUICK ? ' --quick' : ''}\` (took ${benchSeconds.toFixed(0)} s)`);
say(`- other processes on the machine used ${f(benchOthers, 2)} of the ${os.cpus().length} cores on average during the run (from /proc/stat; the tables show it where it matters)`);
say(`- sandbox limits: DEFAULT_SANDBOX_LIMITS (call deadline ${LIMITS.callDeadlineMs} ms, env memory ${LIMITS.envMemoryMb} MiB); the pool runs ${POOL_TASKS_PER_THREAD} tasks per thread`);
say();

say('## 1. Cold start (a fresh process per env)');
say();
say(
  table(
    ['env', 'import host module', 'first host: load QuickJS (`new QuickJSHost(512)` + `warm()`)', 'first env creation', 'second env creation', 'second host in same process: warm()', 'first env on second host'],
    reports.map(r => [r.env.key, `${f(r.cold.importMs)} ms`, `${f(r.cold.warmMs)} ms`, `${f(r.cold.firstCreateMs)} ms`, `${f(r.cold.secondCreateMs)} ms`, `${f(r.cold.rewarmMs)} ms`, `${f(r.cold.rewarmCreateMs)} ms`]),
  ),
);
say();
say('"import host module" includes tsx transpiling the sandbox sources and loading ajv/zod; the first creation includes compiling the tool schemas (ajv, cold) and the first run of the host code.');
say();

say(`## 2. Environment creation on a warm host (median of ${N.creations})`);
say();
say(
  table(
    ['env', 'state JSON', 'create', 'create + dispose', 'slowest create'],
    reports.map(r => [r.env.key, `${(r.env.stateBytes / 1024).toFixed(0)} KB`, `${f(r.creation.createMs, 2)} ms`, `${f(r.creation.bothMs, 2)} ms`, `${f(r.creation.createP99Ms, 2)} ms`]),
  ),
);
say();

say('## 3. Tool-call latency, whole trace on one resident environment (`env.call`, timed one by one)');
say();
say(
  table(
    ['env', 'calls', 'median', 'p99', 'mean', 'calls/s', 'runtime errors (sandbox refusals)', 'results with success:false', 'mean result JSON', 'other processes meanwhile'],
    reports.map(r => [
      r.env.key,
      int(r.trace.calls),
      `${f(r.trace.lat.length ? median(r.trace.lat) : NaN)} µs`,
      `${f(p99(r.trace.lat))} µs`,
      `${f(mean(r.trace.lat))} µs`,
      int(r.trace.callsPerSecond),
      Object.entries(r.trace.runtimeErrors).map(([k, v]) => `${k} ${v}`).join(', ') || 'none',
      int(r.trace.unsuccessful),
      `${int(mean(r.trace.results.filter((x): x is string => x !== null).map(x => x.length)))} B`,
      `${f(r.traceOthers, 2)} cores`,
    ]),
  ),
);
say();

say('## 4. The same trace, unsandboxed, in the same run');
say();
const baseRows: string[][] = [];
for (const r of reports) {
  const sMed = median(r.trace.lat);
  baseRows.push([r.env.key, 'sandbox (QuickJS/wasm)', `${f(sMed)} µs`, `${f(p99(r.trace.lat))} µs`, int(r.trace.callsPerSecond), '1.00×', '1.00×']);
  const vMed = median(r.nodeVm.lat);
  baseRows.push([r.env.key, 'node:vm (V8, no sandbox)', `${f(vMed)} µs`, `${f(p99(r.nodeVm.lat))} µs`, int(r.nodeVm.callsPerSecond), ratio(sMed, vMed), ratio(r.nodeVm.callsPerSecond, r.trace.callsPerSecond)]);
  const j = r.jitless;
  baseRows.push([r.env.key, 'node:vm, `node --jitless` (V8 interpreter only)', `${f(j.medianUs)} µs`, `${f(j.p99Us)} µs`, int(j.callsPerSecond), ratio(sMed, j.medianUs), ratio(j.callsPerSecond, r.trace.callsPerSecond)]);
  if (r.cpython) {
    const c = r.cpython.run;
    baseRows.push([r.env.key, `CPython ${c.python} exec (seed way)`, `${f(c.medianUs)} µs`, `${f(c.p99Us)} µs`, int(c.callsPerSecond), ratio(sMed, c.medianUs), ratio(c.callsPerSecond, r.trace.callsPerSecond)]);
  } else {
    baseRows.push([r.env.key, 'CPython', 'no Python twin', '', '', '', '']);
  }
}
say(table(['env', 'runtime', 'median', 'p99', 'calls/s', 'sandbox median ÷ this median', "this calls/s ÷ sandbox's"], baseRows));
say();
say('node:vm runs in this process after the sandbox trace; "--jitless" is the same node:vm code in a child process with V8\'s optimizing compilers off (interpreter only), to compare an interpreter with an interpreter.');
say();
for (const r of reports) {
  say(`- ${r.env.key}: node:vm returned the same JSON as the sandbox on ${int(r.agree.same)} of ${int(r.agree.compared)} calls the sandbox ran (the sandbox refuses unknown tools and schema-invalid arguments before running them).`);
}
say();

say(`## 5. Steps/s through the piscina pool (probe tasks of ${int(N.poolSlice)} calls on a fresh env each; ${N.poolTasksPerThread} tasks per thread; after warm-up)`);
say();
say(
  table(
    ['env', 'threads', 'tasks', 'steps', 'wall', 'steps/s', 'steps/s per thread', 'calls/s of time inside `env.call`, per thread', 'main thread busy', 'CPU cores used: this process / other processes', 'in-process calls/s (§3)'],
    reports.flatMap(r =>
      r.pool.map(p => [
        r.env.key,
        String(p.threads),
        String(p.tasks),
        int(p.steps),
        `${f(p.wallMs / 1000, 2)} s`,
        int(p.stepsPerSecond),
        int(p.perThread),
        int(p.insideCallPerSecond),
        `${f(p.mainBusy * 100, 0)} %`,
        `${f(p.coresUsed, 2)} / ${f(p.otherCores, 2)}`,
        int(r.trace.callsPerSecond),
      ]),
    ),
  ),
);
say();
say('Session round trips (1-thread pool, one session, sequential awaited `call`s over its MessagePort):');
say();
say(
  table(
    ['env', 'calls', 'calls/s', 'median round trip', 'p99 round trip'],
    reports.flatMap(r => {
      const s = r.pool.find(p => p.session)?.session;
      return s ? [[r.env.key, int(s.calls), int(s.callsPerSecond), `${f(s.medianUs)} µs`, `${f(s.p99Us)} µs`]] : [];
    }),
  ),
);
say();

say('## 6. Memory per live environment (child process, `QuickJSHost(2048)`: a module per env, each env after 20 calls, after `gc()`)');
say();
say(
  table(
    ['env', 'N', 'created', 'charged to the thread bound', 'KB per env (charged)', 'RSS delta', 'KB per env (RSS)', 'marginal KB per env (charged / RSS slope)', 'QuickJS "memory used" per env (empty-state env)'],
    reports.flatMap(r =>
      r.memory.map(m => [
        r.env.key,
        int(m.requested),
        int(m.created) + (m.error ? ` (${m.error})` : ''),
        `${f(m.heapDeltaBytes / 2 ** 20)} MiB`,
        f(m.heapKbPerEnv, 0),
        `${f(m.rssDeltaBytes / 2 ** 20)} MiB`,
        f(m.rssKbPerEnv, 0),
        `${f(m.heapSlopeKbPerEnv, 0)} / ${f(m.rssSlopeKbPerEnv, 0)}`,
        `${f(m.quickjsUsedKbPerEnv, 0)} KB (${f(m.quickjsEmptyEnvKb, 0)} KB)`,
      ]),
    ),
  ),
);
say();
say(
  'Every environment has a WebAssembly module of its own; "charged" is what ENVFLEET_SANDBOX_HEAP_MB counts (the sum over the modules of their memory, less the part of the C stack no guest reaches): address space, mostly untouched, so RSS is the smaller figure. The process starts with free RSS from the set-up, so small N understate and the N = 1,000 row is the figure. The slope is a least-squares fit over ten checkpoints (each after a GC). The last column is QuickJS\'s own count of the bytes one runtime holds (median over a sample), and in brackets the same for an environment with an empty class and state (the fixed cost of runtime + context + harness).',
);
say();

say(`## 7. Check functions on the trace's final state (each state parsed once per batch, the module's memory restored before each later check, the initial state from the thread's check template after the first run; median of ${N.checkRuns})`);
say();
say(
  table(
    ['env', 'checks', 'passed', 'all checks, median', 'per check', 'slowest run'],
    reports.map(r => [r.env.key, String(r.checks.checks), `${r.checks.passed}${r.checks.errors.length ? ` (errors: ${r.checks.errors.join(', ')})` : ''}`, `${f(r.checks.medianMs, 2)} ms`, `${f(r.checks.medianMs / Math.max(1, r.checks.checks), 2)} ms`, `${f(r.checks.maxMs, 2)} ms`]),
  ),
);
say();

say(`## 8. Deadline accuracy (actual − limit, ${N.deadlineRuns} run(s) each)`);
say();
say(
  table(
    ['what', 'limit', 'median overshoot', 'max overshoot', 'error codes'],
    dl.map(d => [d.what, `${d.limitMs} ms`, `${f(median(d.overshoot), 2)} ms`, `${f(max(d.overshoot), 2)} ms`, [...new Set(d.codes)].join(', ')]),
  ),
);
say();

say('## Where the time of a call goes');
say();
if (bound) {
  const lib = reports.find(r => r.env.key === 'library');
  const hotel = reports.find(r => r.env.key === 'hotel');
  say(`No-op tool (\`ping(args) { return { success: true } }\`, args \`{a: i}\`), median of ${int(N.noop)}:`);
  say();
  say(
    table(
      ['path', 'median'],
      [
        ['sandbox `env.call` (ajv validate + stringify + wasm crossing + guest harness + parse)', `${f(bound.full, 2)} µs`],
        ['  of which: harness call only (`callHarnessText`: 2 strings in, guest JSON.parse/lookup/apply/stringify, string out)', `${f(bound.harness, 2)} µs`],
        ['  of which: bare FFI (2 `newString` + `callFunction` of an empty guest function + `getString`)', `${f(bound.ffi, 2)} µs`],
        ['ajv validation of the trace arguments (per call, median)', `hotel ${f(hotel?.ajvUs ?? NaN, 2)} µs, library ${f(lib?.ajvUs ?? NaN, 2)} µs`],
        ['node:vm (same dispatcher as §4)', `${f(bound.nodeVm, 2)} µs`],
        ['CPython (cpython-baseline.py `call()`)', `${f(lib?.cpython?.perTool.noopMedianUs ?? NaN, 2)} µs`],
      ],
    ),
  );
  say();
}
for (const r of reports) {
  const noop = bound?.full ?? 0;
  const rows = [...r.trace.perTool.entries()]
    .sort((a, b) => b[1].length - a[1].length)
    .map(([tool, lat]) => {
      const s = median(lat);
      const v = median(r.nodeVm.perTool.get(tool) ?? []);
      const j = r.jitless.perTool[tool] ?? NaN;
      const c = r.cpython?.perTool.perTool[tool]?.medianUs ?? NaN;
      const refused = r.trace.perToolRefused.get(tool) ?? 0;
      const guest = refused === lat.length ? 'refused on the host' : `${f(s - noop)} µs${refused ? ` (${refused} refused)` : ''}`;
      return [tool, int(lat.length), `${f(s)} µs`, guest, `${f(v)} µs`, `${f(j)} µs`, Number.isFinite(c) ? `${f(c)} µs` : '—', Number.isFinite(c) ? ratio(s, c) : '—', ratio(s, v), ratio(s, j)];
    });
  const s = median(r.trace.lat);
  const c = r.cpython?.run.medianUs ?? NaN;
  rows.push([
    '**whole trace**',
    int(r.trace.calls),
    `${f(s)} µs`,
    `${f(s - noop)} µs`,
    `${f(median(r.nodeVm.lat))} µs`,
    `${f(r.jitless.medianUs)} µs`,
    Number.isFinite(c) ? `${f(c)} µs` : '—',
    Number.isFinite(c) ? ratio(s, c) : '—',
    ratio(s, median(r.nodeVm.lat)),
    ratio(s, r.jitless.medianUs),
  ]);
  say(`Per tool, ${r.env.key} trace (medians; "guest work" = sandbox − no-op sandbox call):`);
  say();
  say(table(['tool', 'calls', 'sandbox', 'guest work', 'node:vm', 'node:vm --jitless', 'CPython', 'sandbox ÷ CPython', 'sandbox ÷ node:vm', 'sandbox ÷ jitless'], rows));
  say();
}

say('## Bars');
say();
const hotel = reports.find(r => r.env.key === 'hotel')!;
const lib = reports.find(r => r.env.key === 'library')!;
const pass = (ok: boolean) => (ok ? '**PASS**' : '**FAIL**');
const hotelMed = median(hotel.trace.lat);
const p1 = hotel.pool.find(p => p.threads === 1);
const p2 = hotel.pool.find(p => p.threads === 2);
const memBig = (r: EnvReport) => r.memory[r.memory.length - 1];
const hm = memBig(hotel);
const lm = memBig(lib);
const overshootMax = max(dl.flatMap(d => d.overshoot));
say(
  table(
    ['bar', 'target', 'reference env (hotel)', 'result', 'library env (for comparison)'],
    [
      ['median tool call (sandbox, full trace)', '≤ 30 µs', `${f(hotelMed)} µs`, pass(hotelMed <= 30), `${f(median(lib.trace.lat))} µs`],
      ['steps/s per thread, pool of 1 thread', '≥ 20,000', int(p1?.perThread ?? NaN), pass((p1?.perThread ?? 0) >= 20_000), int(lib.pool.find(p => p.threads === 1)?.perThread ?? NaN)],
      [
        'steps/s per thread, pool of 2 threads',
        '≥ 20,000',
        `${int(p2?.perThread ?? NaN)} (other processes used ${f(p2?.otherCores ?? NaN, 2)} cores meanwhile)`,
        pass((p2?.perThread ?? 0) >= 20_000),
        int(lib.pool.find(p => p.threads === 2)?.perThread ?? NaN),
      ],
      [`memory per live env (wasm heap delta, N = ${int(hm?.requested ?? NaN)})`, '≤ 256 KB', `${f(hm?.heapKbPerEnv ?? NaN, 0)} KB (RSS ${f(hm?.rssKbPerEnv ?? NaN, 0)} KB)`, pass((hm?.heapKbPerEnv ?? Infinity) <= 256 && hm?.created === hm?.requested), `${f(lm?.heapKbPerEnv ?? NaN, 0)} KB (RSS ${f(lm?.rssKbPerEnv ?? NaN, 0)} KB)`],
      ['deadline overshoot (max over all deadline runs)', '≤ 50 ms', `${f(overshootMax, 2)} ms`, pass(overshootMax <= 50), '(env-independent)'],
    ],
  ),
);
say();
process.stdout.write(`${lines.join('\n')}\n`);
