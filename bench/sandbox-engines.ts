/**
 * Guest engines for the sandbox, measured (issue 14 item 4): the baseline kit's library trace (10,000
 * calls) through envfleet's own guest harness (src/sandbox/harness.ts: bind, create, call with JSON
 * in and out) on the QuickJS build envfleet ships (`@jitl/quickjs-wasmfile-release-sync`) and on the
 * QuickJS-ng build of the same quickjs-emscripten release, against the seed's unsandboxed CPython
 * (`cpython-baseline.py`), in one run, and envfleet's own call path (`QuickJSHost` environment, `env.call`:
 * the same engine and harness with envfleet's host side) as the reference. The host side is reduced to what any embedding pays (two strings
 * in, a call, a string out, the reply parsed, a deadline interrupt handler re-armed per call); the
 * difference to bench/sandbox.ts's per-call figure is envfleet's own host work (argument validation,
 * reply cap, accounting).
 *
 *   npm install --no-save @jitl/quickjs-ng-wasmfile-release-sync@0.32.0   # not a dependency of envfleet
 *   node --import tsx bench/sandbox-engines.ts [--rounds 9]
 *
 * Rounds alternate the order of the engines; each replays the whole trace on a fresh runtime after an
 * untimed warm-up. Prints markdown (median of the rounds' medians and means, ratios to CPython, whether
 * the two engines returned identical replies: a SHA-256 over every reply text).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import os from 'node:os';
import { newQuickJSWASMModuleFromVariant, type QuickJSContext, type QuickJSHandle, type QuickJSWASMModule } from 'quickjs-emscripten-core';
import releaseSync from '@jitl/quickjs-wasmfile-release-sync';
import { HARNESS_SOURCE } from '../src/sandbox/harness.js';
import { DEFAULT_SANDBOX_LIMITS } from '../src/sandbox/limits.js';
import { QuickJSHost } from '../src/sandbox/quickjs-host.js';
import { benchArgs } from './args.js';
import { baseline, loadEnv, median } from './sandbox/common.js';

const ROUNDS = benchArgs(import.meta.url, { values: ['rounds'] }).int('rounds', 9);
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
const engines: Record<'quickjs' | 'quickjs-ng', QuickJSWASMModule> = {
  quickjs: await newQuickJSWASMModuleFromVariant(unwrap(releaseSync)),
  'quickjs-ng': await newQuickJSWASMModuleFromVariant(ngVariant),
};

const env = loadEnv('library');
const stateJson = JSON.stringify(env.state);
const calls = env.calls.map(c => ({ tool: c.tool, args: JSON.stringify(c.arguments) }));

function replay(engine: QuickJSWASMModule): { lat: number[]; hash: string } {
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
  const lat: number[] = [];
  const hash = createHash('sha256');
  for (const c of calls) {
    const t = performance.now();
    deadline = Date.now() + DEADLINE_MS;
    const text = invoke(call!, c.tool, c.args);
    JSON.parse(text);
    lat.push((performance.now() - t) * 1000);
    hash.update(text).update('\n');
  }
  for (const h of [bind!, create!, call!, harness]) h.dispose();
  ctx.dispose();
  rt.dispose();
  return { lat, hash: hash.digest('hex') };
}

/** envfleet's own path: a QuickJSHost environment (its module, limits, validation, accounting) and env.call. */
async function replayEnvfleet(): Promise<number[]> {
  const host = new QuickJSHost(DEFAULT_SANDBOX_LIMITS.heapMb);
  const e = await host.createEnvironment(env.code, env.state, DEFAULT_SANDBOX_LIMITS);
  const lat: number[] = [];
  for (const c of env.calls) {
    const t = performance.now();
    e.call(c.tool, c.arguments);
    lat.push((performance.now() - t) * 1000);
  }
  e.dispose();
  return lat;
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
for (const e of Object.values(engines)) replay(e); // warm-up
await replayEnvfleet();
const rows: Record<string, { medians: number[]; means: number[]; hashes: Set<string> }> = {
  envfleet: { medians: [], means: [], hashes: new Set() },
  quickjs: { medians: [], means: [], hashes: new Set() },
  'quickjs-ng': { medians: [], means: [], hashes: new Set() },
  cpython: { medians: [], means: [], hashes: new Set() },
};
const python = env.python!;
for (let r = 0; r < ROUNDS; r++) {
  const order = r % 2 === 0 ? (['quickjs', 'quickjs-ng'] as const) : (['quickjs-ng', 'quickjs'] as const);
  for (const name of order) {
    const { lat, hash } = replay(engines[name]);
    rows[name]!.medians.push(median(lat));
    rows[name]!.means.push(mean(lat));
    rows[name]!.hashes.add(hash);
  }
  const own = await replayEnvfleet();
  rows['envfleet']!.medians.push(median(own));
  rows['envfleet']!.means.push(mean(own));
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
console.log(`- ${calls.length} calls per round, ${ROUNDS} rounds; replies identical across engines and rounds: ${rows['quickjs']!.hashes.size === 1 && rows['quickjs-ng']!.hashes.size === 1 && [...rows['quickjs']!.hashes][0] === [...rows['quickjs-ng']!.hashes][0] ? 'yes' : 'NO'}\n`);
console.log('| engine | median µs per call | mean µs per call (CPython: 1 / calls per second) | median ÷ CPython | mean ÷ CPython |');
console.log('|---|---|---|---|---|');
const label: Record<string, string> = {
  envfleet: "envfleet's `env.call` (QuickJS, its host side)",
  quickjs: 'QuickJS (envfleet\'s build), bare host side',
  'quickjs-ng': 'QuickJS-ng, bare host side',
  cpython: "CPython, the seed's `exec` way",
};
for (const name of ['envfleet', 'quickjs', 'quickjs-ng', 'cpython']) {
  const m = median(rows[name]!.medians);
  const a = median(rows[name]!.means);
  console.log(`| ${label[name]} | ${m.toFixed(2)} | ${a.toFixed(2)} | ${name === 'cpython' ? '–' : `${(m / cpMedian).toFixed(2)}×`} | ${name === 'cpython' ? '–' : `${(a / cpMean).toFixed(2)}×`} |`);
}
