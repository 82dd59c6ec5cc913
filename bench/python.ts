/**
 * The Python runtime, measured (issue 15): the baseline kit's library trace (10,000 calls, the Python
 * twin `library-env.py`, class LibraryLoanSystem) through envfleet's Python runtime (Pyodide in the
 * permission-model child process, src/sandbox/python/) and through the seed's unsandboxed CPython
 * (`cpython-baseline.py` with the machine's python3), in one run; the runtime's start-up cold and from
 * the memory snapshot; session start; memory per live environment.
 *
 *   node --import tsx bench/python.ts [--rounds 3] [--envs 50] [--no-cold]
 *
 * Per call, the runtime's figure is the caller's round trip (EnvSession.call: schema check, IPC to
 * the child, a message to the interpreter thread, the Python call, canonical JSON, back) and, apart,
 * the time inside the interpreter (`us` of the outcome). Rounds alternate the order of the two
 * runtimes; each replays the whole trace on a fresh session. Memory: `--envs` sessions opened on
 * the library state in one interpreter; the child's RSS and the interpreter's WebAssembly heap before
 * and after. The snapshot comes from ENVFLEET_PYTHON_SNAPSHOT_DIR's default folder (built there first
 * if missing; the cold start is measured with a runner that does not use it).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { EnvironmentCode } from '../src/sandbox/bundle.js';
import { DEFAULT_SANDBOX_LIMITS } from '../src/sandbox/limits.js';
import { createPythonSandboxRunner } from '../src/sandbox/python/python-runner.js';
import { benchArgs } from './args.js';
import { baseline, loadEnv, median, p99 } from './sandbox/common.js';

const args = benchArgs(import.meta.url, { values: ['rounds', 'envs'], booleans: ['no-cold'] });
const ROUNDS = args.int('rounds', 3);
const ENVS = args.int('envs', 50);
const SNAPSHOT_DIR = join(os.tmpdir(), 'envfleet', 'pyodide');
const logger = pino({ level: 'silent' });
const LIMITS = { ...DEFAULT_SANDBOX_LIMITS, sessionCpuMs: 600_000 };

const library = loadEnv('library');
const python = library.python!;
const code = EnvironmentCode.parse({ ...library.code, language: 'python', className: python.className, source: readFileSync(python.file, 'utf8') });
const stateJson = JSON.stringify(library.state);
const mb = (bytes: number) => Math.round((bytes / 1048576) * 10) / 10;

// 1. Start-up: cold (no snapshot), then from the snapshot (built first if the cache has none).
let coldMs: number | null = null;
if (!args.flag('no-cold')) {
  const cold = createPythonSandboxRunner({ snapshotDir: null, useSnapshot: false, interpreters: 1, heapMb: 512, logger });
  coldMs = (await cold.started()).startMs;
  await cold.close();
}
const runner = createPythonSandboxRunner({ snapshotDir: SNAPSHOT_DIR, interpreters: 1, heapMb: 1024, logger });
const t0 = performance.now();
const info = await runner.started();
const processStartMs = performance.now() - t0;

// 2. Session start (create = exec of the class + cls(config) + setattr + state copy), median of 20.
const opens: number[] = [];
for (let i = 0; i < 20; i++) {
  const s0 = performance.now();
  const s = await runner.openSession(code, library.state, LIMITS, stateJson);
  opens.push(performance.now() - s0);
  await s.close();
}

// 3. The trace, alternating with CPython.
const rows = { pyodide: { medians: [] as number[], p99s: [] as number[], inner: [] as number[], cps: [] as number[] }, cpython: { medians: [] as number[], p99s: [] as number[], cps: [] as number[] } };
let errors = 0;
async function replayPyodide(): Promise<void> {
  const s = await runner.openSession(code, library.state, LIMITS, stateJson);
  // Untimed warm-up: the first 200 calls.
  for (const c of library.calls.slice(0, 200)) await s.call(c.tool, c.arguments);
  await s.close();
  const timed = await runner.openSession(code, library.state, LIMITS, stateJson);
  const lat: number[] = [];
  const inner: number[] = [];
  const start = performance.now();
  errors = 0;
  for (const c of library.calls) {
    const a = performance.now();
    const out = await timed.call(c.tool, c.arguments);
    lat.push((performance.now() - a) * 1000);
    inner.push(out.us);
    if (out.runtimeError) errors += 1;
  }
  const total = performance.now() - start;
  await timed.close();
  rows.pyodide.medians.push(median(lat));
  rows.pyodide.p99s.push(p99(lat));
  rows.pyodide.inner.push(median(inner));
  rows.pyodide.cps.push(library.calls.length / (total / 1000));
}
function replayCpython(): void {
  const cp = JSON.parse(execFileSync('python3', [baseline('cpython-baseline.py'), python.file, python.className, python.stateFile, python.callsFile], { encoding: 'utf8' })) as { medianUs: number; p99Us: number; callsPerSecond: number };
  rows.cpython.medians.push(cp.medianUs);
  rows.cpython.p99s.push(cp.p99Us);
  rows.cpython.cps.push(cp.callsPerSecond);
}
for (let r = 0; r < ROUNDS; r++) {
  if (r % 2 === 0) {
    await replayPyodide();
    replayCpython();
  } else {
    replayCpython();
    await replayPyodide();
  }
}

// 4. Memory per live environment.
const before = await runner.stats();
const live = [];
for (let i = 0; i < ENVS; i++) live.push(await runner.openSession(code, { ...(library.state as object), current_day: i }, LIMITS));
const after = await runner.stats();
for (const s of live) await s.close();
await runner.close();

const heapBefore = before.interpreters.reduce((n, i) => n + i.heapBytes, 0);
const heapAfter = after.interpreters.reduce((n, i) => n + i.heapBytes, 0);
const python3 = execFileSync('python3', ['--version'], { encoding: 'utf8' }).trim();
const pyMedian = median(rows.pyodide.medians);
const cpMedian = median(rows.cpython.medians);
const pyCps = median(rows.pyodide.cps);
const cpCps = median(rows.cpython.cps);

const out = [
  `Python runtime bench — ${new Date().toISOString()} — ${os.cpus()[0]?.model ?? 'cpu'} ×${os.availableParallelism()}, Node ${process.version}, ${python3}, pyodide ${info.snapshotFile?.match(/pyodide-([\d.]+)-/)?.[1] ?? '?'}`,
  `command: node --import tsx bench/python.ts ${args.raw.join(' ')} (rounds ${ROUNDS}, ${library.calls.length} calls per round, ${errors} error outcomes per round)`,
  '',
  '| trace (library, 10,000 calls) | median per call | p99 per call | calls/s (one session) | vs CPython (median) |',
  '|---|---|---|---|---|',
  `| envfleet Python runtime (caller's round trip) | ${pyMedian.toFixed(1)} µs | ${median(rows.pyodide.p99s).toFixed(1)} µs | ${Math.round(pyCps)} | ${(pyMedian / cpMedian).toFixed(1)}× |`,
  `| … of which inside the interpreter | ${median(rows.pyodide.inner).toFixed(1)} µs | | | ${(median(rows.pyodide.inner) / cpMedian).toFixed(1)}× |`,
  `| CPython, the seed's unsandboxed \`exec\` | ${cpMedian.toFixed(1)} µs | ${median(rows.cpython.p99s).toFixed(1)} µs | ${Math.round(cpCps)} | 1× |`,
  '',
  '| start-up and memory | |',
  '|---|---|',
  ...(coldMs !== null ? [`| interpreter start, cold (no snapshot) | ${Math.round(coldMs)} ms |`] : []),
  `| interpreter start from the memory snapshot | ${Math.round(info.startMs)} ms${info.builtSnapshot ? ' (the snapshot was built in this run first)' : ''} |`,
  `| runtime start (fork + snapshot read + interpreter) | ${Math.round(processStartMs)} ms |`,
  `| session start (class exec, cls(config), setattr, state copy; median of 20) | ${median(opens).toFixed(1)} ms |`,
  `| child process RSS with 1 interpreter, before / after ${ENVS} live library envs | ${mb(before.rssBytes)} / ${mb(after.rssBytes)} MiB |`,
  `| per live environment: RSS / WebAssembly heap | ${(((after.rssBytes - before.rssBytes) / ENVS) / 1024).toFixed(0)} KiB / ${(((heapAfter - heapBefore) / ENVS) / 1024).toFixed(0)} KiB |`,
];
console.log(out.join('\n'));
