/**
 * Guest engines for the sandbox, measured (issue 14 item 4): the baseline kit's library trace (10,000
 * calls) through envfleet's own guest harness (src/sandbox/harness.ts: bind, create, call with JSON
 * in and out) on the QuickJS build envfleet ships (`@jitl/quickjs-wasmfile-release-sync`) and on the
 * QuickJS-ng build of the same quickjs-emscripten release, against the seed's unsandboxed CPython
 * (`cpython-baseline.py`), in one run, and envfleet's own call path (`QuickJSHost` environment, `env.call`:
 * the same engine and harness with envfleet's host side) as the reference, in two forms: `env.call`
 * (the result parsed) and `env.callText` (the result as the guest's JSON text, what a session sends
 * to its host thread, which parses it there). The "bare" host side is reduced to what any embedding
 * of the wrapper pays (two strings in, a call, a string out, the reply parsed, a deadline interrupt
 * handler re-armed per call); the difference to the envfleet rows is envfleet's own host work
 * (argument validation, reply cap, accounting) and its cheaper crossing (GuestVm.callTool).
 * `--compare DIR` adds `env.call` of another checkout of envfleet (e.g. ../main, before a
 * change), timed in the same rounds; its results must equal this checkout's. It loads the sources
 * in DIR's working tree as they are (the label names DIR's HEAD commit; uncommitted changes count).
 *
 *   npm install --no-save @jitl/quickjs-ng-wasmfile-release-sync@0.32.0   # not a dependency of envfleet
 *   npm install --no-save isolated-vm@5.0.4   # optional, not a dependency either: a native addon, built with g++
 *   node --expose-gc --import tsx bench/sandbox-engines.ts [--rounds 9] [--compare ../main]
 *
 * After the rounds, what a live environment costs in each engine (creation time, resident memory; see footprints).
 * With `isolated-vm` installed, a row runs the same harness and environment in a V8 isolate (V8's JIT, in this
 * process) under envfleet's default limits: the environment's memory (`envMemoryMb` as the isolate's memory
 * limit), the call deadline (each call's timeout), the session's CPU budget (the isolate's CPU time, read after
 * every call) and the result cap (each reply's UTF-8 length). Before the rounds, each limit is made to trip once
 * (an endless loop, a growing array, unbounded recursion, an oversized result) and the bench stops if one does not.
 * It answers what engine would bring a call to ≤ 2× CPython (issue 14 item 4); envfleet does not use it (see
 * docs/sandbox.md: a JIT in the worker's process gives up the WebAssembly boundary around the engine).
 *
 * Two "floor" rows run the whole trace inside one guest evaluation on envfleet's build (no host crossing;
 * a mean per call only): with each call's JSON, and the methods alone. They bound what any host side could
 * reach with this engine build (issue 14 item 4: ≤ 2× CPython).
 *
 * Each round replays the whole trace on a fresh runtime per row, after an untimed warm-up round; the
 * in-process rows are interleaved in blocks of 500 calls (every row makes a block before the next
 * block, in alternating order), so that they all see the same machine state, and the last column is
 * each row's median ratio, block by block, to --compare's env.call (or to bare QuickJS): the figure
 * to read on a loaded machine. CPython runs after each round, in its own process. Prints markdown (median of the rounds' medians and means, ratios to CPython, whether
 * the two engines returned identical replies: a SHA-256 over every reply text).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import os from 'node:os';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { newQuickJSWASMModuleFromVariant, type QuickJSContext, type QuickJSHandle, type QuickJSWASMModule } from 'quickjs-emscripten-core';
import releaseSync from '@jitl/quickjs-wasmfile-release-sync';
import { HARNESS_SOURCE } from '../src/sandbox/harness.js';
import { DEFAULT_SANDBOX_LIMITS } from '../src/sandbox/limits.js';
import { QuickJSHost } from '../src/sandbox/quickjs-host.js';
import { benchArgs } from './args.js';
import { baseline, loadEnv, median } from './sandbox/common.js';

const args = benchArgs(import.meta.url, { values: ['rounds', 'compare'] });
const ROUNDS = args.int('rounds', 9);
const COMPARE = args.str('compare');
const NG_PACKAGE = '@jitl/quickjs-ng-wasmfile-release-sync';
const DEADLINE_MS = DEFAULT_SANDBOX_LIMITS.callDeadlineMs;

type Variant = Parameters<typeof newQuickJSWASMModuleFromVariant>[0];
const unwrap = (v: unknown): Variant => ((v && typeof v === 'object' && 'default' in v ? (v).default : v) as Variant);

let ngVariant: Variant;
try {
  ngVariant = unwrap(await import(NG_PACKAGE));
} catch {
  process.stderr.write(`bench/sandbox-engines: ${NG_PACKAGE} is not installed; it is not a dependency of envfleet. Run: npm install --no-save ${NG_PACKAGE}@0.32.0\n`);
  process.exit(2);
}
/** The part of isolated-vm's API the V8 row uses (the package ships its own types, but it is not installed with envfleet). */
interface IvmReference {
  applySync(receiver: undefined, args: readonly unknown[], options?: { readonly timeout?: number }): unknown;
  derefInto(): unknown;
}
interface IvmContext {
  evalSync(code: string, options?: { readonly timeout?: number; readonly reference?: boolean }): unknown;
}
interface IvmIsolate {
  createContextSync(): IvmContext;
  getHeapStatisticsSync(): { readonly total_heap_size: number; readonly used_heap_size: number; readonly externally_allocated_size: number };
  readonly cpuTime: bigint;
  readonly isDisposed: boolean;
  dispose(): void;
}
interface IvmModule {
  Isolate: new (options: { readonly memoryLimit: number }) => IvmIsolate;
}
const IVM_PACKAGE = 'isolated-vm';
let ivm: IvmModule | null = null;
try {
  ivm = createRequire(import.meta.url)(IVM_PACKAGE) as IvmModule;
} catch {
  process.stderr.write(`bench/sandbox-engines: ${IVM_PACKAGE} is not installed (not a dependency of envfleet), so the V8 isolate row is left out. To include it: npm install --no-save ${IVM_PACKAGE}@5.0.4\n`);
}

const engines: Record<'quickjs' | 'quickjs-ng', QuickJSWASMModule> = {
  quickjs: await newQuickJSWASMModuleFromVariant(unwrap(releaseSync)),
  'quickjs-ng': await newQuickJSWASMModuleFromVariant(ngVariant),
};

const env = loadEnv('library');
const stateJson = JSON.stringify(env.state);
const calls = env.calls.map(c => ({ tool: c.tool, args: JSON.stringify(c.arguments) }));

/** One row's replay of the trace, a call at a time, so that the rows' calls can be interleaved. */
interface Replay {
  /** Makes call `i` of the trace; returns its latency in µs. */
  step(i: number): number;
  /** Ends the replay; returns a hash of its replies. */
  close(): string;
}

/** The bare host side on `engine`: the wrapper's two strings in, the call, a string out, the reply parsed. */
function replay(engine: QuickJSWASMModule): Replay {
  let deadline = 0;
  const rt = engine.newRuntime({ maxStackSizeBytes: DEFAULT_SANDBOX_LIMITS.stackBytes, interruptHandler: () => Date.now() > deadline });
  const ctx: QuickJSContext = rt.newContext();
  deadline = Date.now() + DEADLINE_MS;
  const harness = ctx.unwrapResult(ctx.evalCode(HARNESS_SOURCE, 'envfleet-harness.js'));
  const [bind, create, call] = (['bind', 'create', 'call'] as const).map(name => ctx.getProp(harness, name));
  const invoke = (fn: QuickJSHandle, ...args: (string | QuickJSHandle)[]): string => {
    const handles = args.map(a => (typeof a === 'string' ? ctx.newString(a) : a));
    const result = ctx.unwrapResult(ctx.callFunction(fn, ctx.undefined, ...handles));
    args.forEach((a, i) => typeof a === 'string' && handles[i]!.dispose());
    const text = ctx.getString(result);
    result.dispose();
    return text;
  };
  const cls = ctx.unwrapResult(ctx.evalCode(`${env.code.source}\n;${env.code.className}`, 'environment.js'));
  if (invoke(bind!, cls) !== '{"ok":true}') throw new Error('the harness did not bind the class');
  cls.dispose();
  if (invoke(create!, stateJson) !== '{"ok":true}') throw new Error('the environment was not created');
  const hash = createHash('sha256');
  return {
    step(i) {
      const c = calls[i]!;
      const t = performance.now();
      deadline = Date.now() + DEADLINE_MS;
      const text = invoke(call!, c.tool, c.args);
      // The harness's call reply: the result's JSON text, or "!" and an error reply.
      JSON.parse(text.charCodeAt(0) === 33 ? text.slice(1) : text);
      const us = (performance.now() - t) * 1000;
      hash.update(text).update('\n');
      return us;
    },
    close() {
      for (const h of [bind!, create!, call!, harness]) h.dispose();
      ctx.dispose();
      rt.dispose();
      return hash.digest('hex');
    },
  };
}

const LIMITS = DEFAULT_SANDBOX_LIMITS;
/** What a V8 isolate's call did wrong, as the row reports it (none of these may happen on the trace). */
class V8LimitError extends Error {}

/** A V8 isolate with the harness bound to the environment's class and the environment created on the state. */
function v8Environment(m: IvmModule, source = env.code.source, className = env.code.className, cpuBudgetMs = LIMITS.sessionCpuMs) {
  const isolate = new m.Isolate({ memoryLimit: LIMITS.envMemoryMb });
  const ctx = isolate.createContextSync();
  // The harness tells QuickJS's stack and memory errors by QuickJS's InternalError, which V8 does not have.
  ctx.evalSync('globalThis.InternalError = class InternalError extends Error {}; 0');
  const harness = ctx.evalSync(HARNESS_SOURCE, { reference: true, timeout: LIMITS.createDeadlineMs }) as IvmReference & { getSync(key: string, options: { reference: true }): IvmReference };
  const [bind, create, call] = (['bind', 'create', 'call'] as const).map(name => harness.getSync(name, { reference: true }));
  const cls = ctx.evalSync(`${source}\n;${className}`, { reference: true, timeout: LIMITS.createDeadlineMs }) as IvmReference;
  if (bind!.applySync(undefined, [cls.derefInto()], { timeout: LIMITS.createDeadlineMs }) !== '{"ok":true}') throw new Error('the harness did not bind the class in the V8 isolate');
  if (create!.applySync(undefined, [stateJson], { timeout: LIMITS.createDeadlineMs }) !== '{"ok":true}') throw new Error('the environment was not created in the V8 isolate');
  const cpuBudgetNs = BigInt(cpuBudgetMs) * 1_000_000n;
  return {
    isolate,
    /** One call under the limits: the reply text, or a V8LimitError / the isolate's own error. */
    call(tool: string, argsJson: string, deadlineMs = LIMITS.callDeadlineMs): string {
      const text = call!.applySync(undefined, [tool, argsJson], { timeout: deadlineMs }) as string;
      if (text.length > LIMITS.maxResultBytes / 3 && Buffer.byteLength(text) > LIMITS.maxResultBytes) throw new V8LimitError('RESULT_TOO_LARGE');
      if (isolate.cpuTime > cpuBudgetNs) throw new V8LimitError('SESSION_CPU_EXCEEDED');
      return text;
    },
  };
}

/** The V8 isolate row: the same harness, class and state as the QuickJS rows, envfleet's limits on every call. */
function replayV8(m: IvmModule): Replay {
  const e = v8Environment(m);
  const hash = createHash('sha256');
  return {
    step(i) {
      const c = calls[i]!;
      const t = performance.now();
      const text = e.call(c.tool, c.args);
      JSON.parse(text.charCodeAt(0) === 33 ? text.slice(1) : text);
      const us = (performance.now() - t) * 1000;
      hash.update(text).update('\n');
      return us;
    },
    close() {
      e.isolate.dispose();
      return hash.digest('hex');
    },
  };
}

/**
 * Each limit of the V8 row made to trip once, on tools added to a copy of the environment: an endless loop (the
 * call's deadline), an array that grows without end (the memory limit), unbounded recursion (the stack), a result
 * over the cap, and a busy loop under a short deadline repeated past the CPU budget. Returns what each did; throws
 * if one passed.
 */
function checkV8Limits(m: IvmModule): string[] {
  const hostile = `${env.code.source}
;${env.code.className}.prototype.spin = function () { for (;;) {} };
${env.code.className}.prototype.hoard = function () { const a = []; for (;;) a.push(new Array(1e5).fill(a.length)); };
${env.code.className}.prototype.dive = function () { const f = n => f(n + 1) + 1; return f(0); };
${env.code.className}.prototype.flood = function () { return { text: 'é'.repeat(${LIMITS.maxResultBytes}) }; };
${env.code.className}.prototype.work = function () { let x = 0; for (let i = 0; i < 1e7; i++) x = (x + i) % 7; return { x }; };`;
  const seen: string[] = [];
  const trip = (what: string, tool: string, deadlineMs?: number, times = 1, cpuBudgetMs?: number) => {
    const e = v8Environment(m, hostile, env.code.className, cpuBudgetMs);
    let outcome: string | null = null;
    try {
      for (let i = 0; i < times; i++) {
        const text = e.call(tool, '{}', deadlineMs);
        if (text.startsWith('!')) {
          outcome = `reply ${text.slice(1, 80)}`;
          break;
        }
      }
    } catch (err) {
      outcome = err instanceof Error ? err.message.split('\n')[0]! : String(err);
    }
    const after = e.isolate.isDisposed ? 'isolate disposed' : 'isolate kept';
    if (!e.isolate.isDisposed) e.isolate.dispose();
    if (outcome === null) throw new Error(`the V8 row's ${what} limit did not trip`);
    seen.push(`${what}: ${outcome} (${after})`);
  };
  trip(`call deadline (${LIMITS.callDeadlineMs} ms)`, 'spin');
  trip(`memory (${LIMITS.envMemoryMb} MB)`, 'hoard', 60_000);
  trip('stack', 'dive');
  trip(`result cap (${LIMITS.maxResultBytes} bytes)`, 'flood');
  // The budget's mechanism with a budget of 200 ms (the default, 10 s, would take 10 s of calls to reach).
  trip('CPU budget (here 200 ms per session, calls of 10^7 loop steps)', 'work', undefined, 100_000, 200);
  return seen;
}

/**
 * The floor of the engine on this trace: the whole trace run inside ONE guest evaluation on envfleet's build (a
 * fresh runtime and context, the class built on the state), timed on the host around that evaluation, so there is
 * no host crossing at all. `json`: each call parses its argument text and stringifies its result, as a call through
 * the harness does; without it, the methods alone on arguments parsed beforehand. Only a mean per call exists (a
 * clock per call would be a crossing). Returns the mean µs per call and a hash of the replies (json) or their count.
 */
function guestLoop(engine: QuickJSWASMModule, json: boolean): { us: number; hash: string } {
  const rt = engine.newRuntime({ maxStackSizeBytes: DEFAULT_SANDBOX_LIMITS.stackBytes });
  const ctx = rt.newContext();
  try {
    const setup = `${env.code.source}\n;globalThis.__env = new ${env.code.className}(JSON.parse(${JSON.stringify(stateJson)}));` +
      `globalThis.__calls = ${JSON.stringify(calls)}; globalThis.__args = __calls.map(c => JSON.parse(c.args)); 0`;
    ctx.unwrapResult(ctx.evalCode(setup, 'floor-setup.js')).dispose();
    const loop = json
      ? `(() => { const out = []; for (let i = 0; i < __calls.length; i++) { const c = __calls[i]; let r; try { r = JSON.stringify(__env[c.tool](JSON.parse(c.args))); } catch (e) { r = '!' + String(e); } out.push(r); } return out.join('\\n'); })()`
      : `(() => { let n = 0; for (let i = 0; i < __calls.length; i++) { try { __env[__calls[i].tool](__args[i]); } catch { } n++; } return String(n); })()`;
    const t = performance.now();
    const result = ctx.unwrapResult(ctx.evalCode(loop, 'floor.js'));
    const us = ((performance.now() - t) * 1000) / calls.length;
    const text = ctx.getString(result);
    result.dispose();
    return { us, hash: createHash('sha256').update(text).digest('hex') };
  } finally {
    ctx.dispose();
    rt.dispose();
  }
}

type Host = typeof QuickJSHost;
/** The other checkout's QuickJSHost (--compare), loaded from its sources with its own dependencies. */
let CompareHost: Host | null = null;
let compareLabel = '';
if (COMPARE) {
  const dir = resolve(COMPARE);
  CompareHost = ((await import(pathToFileURL(`${dir}/src/sandbox/quickjs-host.ts`).href)) as { QuickJSHost: Host }).QuickJSHost;
  const rev = execFileSync('git', ['-C', dir, 'log', '-1', '--format=%h %cI'], { encoding: 'utf8' }).trim();
  compareLabel = `envfleet's \`env.call\` at ${COMPARE} (${rev})`;
}

/**
 * envfleet's own path: a QuickJSHost environment (its module, limits, validation, accounting) and
 * env.call, or env.callText (`text`); the hash is over the outcomes (results parsed).
 */
async function replayEnvfleet(Host: Host, text = false): Promise<Replay> {
  const host = new Host(DEFAULT_SANDBOX_LIMITS.heapMb);
  const e = await host.createEnvironment(env.code, env.state, DEFAULT_SANDBOX_LIMITS);
  const outcomes: unknown[] = [];
  return {
    step(i) {
      const c = env.calls[i]!;
      const t = performance.now();
      const outcome = text ? e.callText(c.tool, c.arguments) : e.call(c.tool, c.arguments);
      const us = (performance.now() - t) * 1000;
      outcomes.push(outcome);
      return us;
    },
    close() {
      e.dispose();
      const hash = createHash('sha256');
      for (const o of outcomes as { result?: unknown; resultJson?: string; runtimeError?: string }[]) {
        hash.update(JSON.stringify([o.resultJson === undefined ? o.result : JSON.parse(o.resultJson), o.runtimeError ?? null])).update('\n');
      }
      return hash.digest('hex');
    },
  };
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
/** The rows replayed in this process: envfleet's env.call and env.callText, --compare's env.call, the two bare engines. */
const inProcess: Record<string, () => Promise<Replay>> = {
  envfleet: () => replayEnvfleet(QuickJSHost),
  'envfleet-text': () => replayEnvfleet(QuickJSHost, true),
  ...(CompareHost ? { compare: () => replayEnvfleet(CompareHost) } : {}),
  quickjs: () => Promise.resolve(replay(engines.quickjs)),
  'quickjs-ng': () => Promise.resolve(replay(engines['quickjs-ng'])),
  ...(ivm ? { v8: () => Promise.resolve(replayV8(ivm)) } : {}),
};
const v8Limits = ivm ? checkV8Limits(ivm) : null;

/**
 * What a live environment costs in each engine, in this process, one after the other: the median time to create one
 * (envfleet: `QuickJSHost.createEnvironment`, a module of its own per environment; V8: an isolate with the harness,
 * the class and the state), and the resident memory 50 live environments add after 20 calls each (RSS before and
 * after, after a GC when the bench runs with --expose-gc), with the V8 isolates' own heap figures.
 */
async function footprints(): Promise<string[]> {
  const LIVE = 50;
  const gc = (globalThis as { gc?: () => void }).gc;
  const rss = () => {
    gc?.();
    return process.memoryUsage().rss;
  };
  const out: string[] = [];
  const host = new QuickJSHost(DEFAULT_SANDBOX_LIMITS.heapMb);
  const qStarts: number[] = [];
  const qLive: { dispose(): void }[] = [];
  let before = rss();
  for (let i = 0; i < LIVE; i++) {
    const t = performance.now();
    const e = await host.createEnvironment(env.code, env.state, DEFAULT_SANDBOX_LIMITS);
    qStarts.push(performance.now() - t);
    for (const c of env.calls.slice(0, 20)) e.call(c.tool, c.arguments);
    qLive.push(e);
  }
  const qRss = (rss() - before) / LIVE;
  for (const e of qLive) e.dispose();
  out.push(`| envfleet (QuickJS, a module per environment) | ${median(qStarts).toFixed(2)} ms | ${(qRss / 1024).toFixed(0)} KiB | – |`);
  if (ivm) {
    const vStarts: number[] = [];
    const vLive: ReturnType<typeof v8Environment>[] = [];
    before = rss();
    for (let i = 0; i < LIVE; i++) {
      const t = performance.now();
      const e = v8Environment(ivm);
      vStarts.push(performance.now() - t);
      for (const c of calls.slice(0, 20)) e.call(c.tool, c.args);
      vLive.push(e);
    }
    const vRss = (rss() - before) / LIVE;
    const heap = vLive.map(e => e.isolate.getHeapStatisticsSync());
    for (const e of vLive) e.isolate.dispose();
    out.push(`| V8 isolate (isolated-vm) | ${median(vStarts).toFixed(2)} ms | ${(vRss / 1024).toFixed(0)} KiB | ${(median(heap.map(h => h.used_heap_size)) / 1024).toFixed(0)} / ${(median(heap.map(h => h.total_heap_size)) / 1024).toFixed(0)} KiB |`);
  }
  return out;
}
const envfleetRows = Object.keys(inProcess).filter(n => n.startsWith('envfleet') || n === 'compare');
/** Calls per block: every in-process row makes the same block of calls before the next block, so that all rows see the same machine state. */
const BLOCK = 500;
async function round(): Promise<Record<string, { lat: number[]; blocks: number[]; hash: string }>> {
  const names = Object.keys(inProcess);
  const replays: Record<string, Replay> = {};
  for (const name of names) replays[name] = await inProcess[name]!();
  const out: Record<string, { lat: number[]; blocks: number[]; hash: string }> = {};
  for (const name of names) out[name] = { lat: [], blocks: [], hash: '' };
  for (let b = 0; b < calls.length; b += BLOCK) {
    // The order of the rows alternates from block to block.
    for (const name of (b / BLOCK) % 2 === 0 ? names : [...names].reverse()) {
      const block: number[] = [];
      for (let i = b; i < Math.min(b + BLOCK, calls.length); i++) block.push(replays[name]!.step(i));
      out[name]!.lat.push(...block);
      out[name]!.blocks.push(median(block));
    }
  }
  for (const name of names) out[name]!.hash = replays[name]!.close();
  return out;
}
await round(); // warm-up
const rows: Record<string, { medians: number[]; means: number[]; hashes: Set<string>; blockRatios: number[] }> = {};
for (const name of [...Object.keys(inProcess), 'floor-json', 'floor-methods', 'cpython']) rows[name] = { medians: [], means: [], hashes: new Set(), blockRatios: [] };
/** The row the last column compares with: --compare's env.call, or else the bare QuickJS row. */
const reference = CompareHost ? 'compare' : 'quickjs';
const python = env.python!;
for (let r = 0; r < ROUNDS; r++) {
  const got = await round();
  for (const [name, { lat, blocks, hash }] of Object.entries(got)) {
    rows[name]!.medians.push(median(lat));
    rows[name]!.means.push(mean(lat));
    rows[name]!.hashes.add(hash);
    rows[name]!.blockRatios.push(...blocks.map((x, i) => x / got[reference]!.blocks[i]!));
  }
  for (const [name, json] of [['floor-json', true], ['floor-methods', false]] as const) {
    const f = guestLoop(engines.quickjs, json);
    rows[name]!.means.push(f.us);
    rows[name]!.hashes.add(f.hash);
  }
  const cp = JSON.parse(execFileSync('python3', [baseline('cpython-baseline.py'), python.file, python.className, python.stateFile, python.callsFile], { encoding: 'utf8' })) as { medianUs: number; callsPerSecond: number };
  rows['cpython']!.medians.push(cp.medianUs);
  rows['cpython']!.means.push(1e6 / cp.callsPerSecond);
  process.stderr.write(`[bench/sandbox-engines] round ${r + 1}/${ROUNDS}\n`);
}
const cpMedian = median(rows['cpython']!.medians);
const cpMean = median(rows['cpython']!.means);
const python3 = execFileSync('python3', ['--version'], { encoding: 'utf8' }).trim();
console.log(`## Guest engines on the library trace (\`node --import tsx bench/sandbox-engines.ts --rounds ${ROUNDS}\`)\n`);
console.log(`- ${new Date().toISOString()}; ${os.cpus()[0]?.model ?? 'unknown'}, nproc ${os.availableParallelism()}, Node ${process.version}, ${python3}; load average ${os.loadavg().map(x => x.toFixed(2)).join(' / ')}`);
const sameHashes = (names: string[]) => {
  const all = new Set(names.flatMap(n => [...rows[n]!.hashes]));
  return all.size === 1 ? 'yes' : 'NO';
};
console.log(`- ${calls.length} calls per round, ${ROUNDS} rounds, the in-process rows interleaved in blocks of ${BLOCK} calls; replies identical across engines and rounds: ${sameHashes(['quickjs', 'quickjs-ng', ...(ivm ? ['v8'] : [])])}; envfleet's outcomes identical across its rows and rounds: ${sameHashes(envfleetRows)}\n`);
console.log(`| engine | median µs per call | mean µs per call (CPython: 1 / calls per second) | median ÷ CPython | mean ÷ CPython | ÷ ${reference === 'compare' ? "--compare's env.call" : 'bare QuickJS'} (median of per-block ratios) |`);
console.log('|---|---|---|---|---|---|');
const label: Record<string, string> = {
  envfleet: "envfleet's `env.call` (QuickJS, its host side)",
  'envfleet-text': "envfleet's `env.callText` (a session's call: the result left as text)",
  compare: compareLabel,
  quickjs: 'QuickJS (envfleet\'s build), bare host side',
  'quickjs-ng': 'QuickJS-ng, bare host side',
  v8: "V8 isolate (isolated-vm, V8's JIT), bare host side with envfleet's limits on every call — not envfleet's engine",
  'floor-json': "the engine's floor: the whole trace in one guest loop on envfleet's build, JSON in and out, no crossing",
  'floor-methods': "the engine's floor: the methods alone in one guest loop (arguments parsed before)",
  cpython: "CPython, the seed's `exec` way",
};
for (const name of Object.keys(rows)) {
  const floor = name.startsWith('floor-');
  const m = floor ? NaN : median(rows[name]!.medians);
  const a = median(rows[name]!.means);
  const vsReference = name === 'cpython' || floor ? '–' : `${median(rows[name]!.blockRatios).toFixed(3)}`;
  console.log(`| ${label[name]} | ${floor ? '– (one clock per loop)' : m.toFixed(2)} | ${a.toFixed(2)} | ${name === 'cpython' || floor ? '–' : `${(m / cpMedian).toFixed(2)}×`} | ${name === 'cpython' ? '–' : `${(a / cpMean).toFixed(2)}×`} | ${vsReference} |`);
}
if (v8Limits) console.log(`\nThe V8 row's limits, each made to trip once before the rounds: ${v8Limits.join('; ')}.`);
console.log(`\nA live environment (the library class on its state, 50 kept alive after 20 calls each; RSS after a GC ${(globalThis as { gc?: unknown }).gc ? 'forced' : 'not forced: run with --expose-gc'}):\n`);
console.log('| engine | create (median of 50) | RSS per live environment | V8 heap used / total per isolate (median) |');
console.log('|---|---|---|---|');
for (const line of await footprints()) console.log(line);
console.log(`\nThe floor rows' replies were identical across rounds: ${rows['floor-json']!.hashes.size === 1 && rows['floor-methods']!.hashes.size === 1 ? 'yes' : 'NO'}. They bound what any host side can reach with this engine build: a call can cost no less than its method and JSON inside the guest.`);
