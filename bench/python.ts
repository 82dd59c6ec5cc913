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
 *
 * The floor (issue 15's goal, ≤ 2× CPython): the same Python loop over the whole trace run by CPython and
 * by Pyodide's interpreter (loaded in this process, the version the runtime uses), one clock per loop and no
 * crossing at all — the seed's own dispatch (json.loads, getattr, the method, json.dumps), and envfleet's
 * harness `call` (tool check, module state, canonical JSON, the result cap) on a harness session. They bound
 * what any host side of a Python runtime on Pyodide could reach.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { EnvironmentCode } from '../src/sandbox/bundle.js';
import { DEFAULT_SANDBOX_LIMITS } from '../src/sandbox/limits.js';
import { createPythonSandboxRunner } from '../src/sandbox/python/python-runner.js';
import { HARNESS_PY } from '../src/sandbox/python/python-harness.mjs';
import { loadPyodide } from 'pyodide';
import type { PyProxy } from 'pyodide/ffi';
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

// 4. The floor: the same Python loop in CPython and in Pyodide's interpreter, no crossing, one clock per loop.
/**
 * Reads SRC, CLASS, STATE, CALLS (and, with HARNESS set, the harness's create/call in its globals); returns JSON
 * {seed: µs per call, seedErrors, harness?: µs per call, harnessErrors?, same?: the harness's results equal the
 * seed's where both succeeded}.
 */
const FLOOR_PY = String.raw`
import json as _j, time as _t, types as _ty, copy as _c
def _floor_run():
    calls = [_j.loads(l) for l in CALLS.splitlines() if l.strip()]
    argtexts = [(c['tool'], _j.dumps(c['arguments'])) for c in calls]
    m = _ty.ModuleType('dynamic_env')
    exec(SRC, m.__dict__)
    cfg = _j.loads(STATE)
    env = getattr(m, CLASS)(_c.deepcopy(cfg))
    for k, v in cfg.items():
        setattr(env, k, _c.deepcopy(v))
    def seed_call(env, name, a):
        fn = getattr(env, name, None) if not name.startswith('_') else None
        if not callable(fn):
            return _j.dumps({'success': False, 'error': 'unknown tool ' + name})
        try:
            return _j.dumps(fn(**_j.loads(a)), default=str)
        except Exception as e:
            return _j.dumps({'success': False, 'error': repr(e)})
    t = _t.perf_counter()
    seed = [seed_call(env, n, a) for n, a in argtexts]
    out = {'seed': (_t.perf_counter() - t) / len(argtexts) * 1e6}
    if HARNESS:
        g = globals()
        create, call, drop = g['create'], g['call'], g['drop']
        tools = sorted({n for n, _ in argtexts if not n.startswith('_') and callable(getattr(env, n, None))})
        opened = create('floor', CLASS, SRC, STATE, _j.dumps(tools), '5eed' * 8, None, str(8 << 20))
        assert '"ok"' in (opened if isinstance(opened, str) else opened.decode()), opened
        cap = str(1 << 20)
        t = _t.perf_counter()
        replies = [call('floor', n, a, cap) for n, a in argtexts]
        out['harness'] = (_t.perf_counter() - t) / len(argtexts) * 1e6
        drop('floor')
        same = 0
        errors = 0
        for a, b in zip(seed, replies):
            b = _j.loads(b)
            if 'ok' in b:
                same += _j.loads(a) == b['ok']
            else:
                errors += 1
        out['harnessErrors'] = errors
        out['same'] = same
    return _j.dumps(out)
_floor_run()
`;
const libraryCalls = readFileSync(python.callsFile, 'utf8');
const librarySource = readFileSync(python.file, 'utf8');
const libraryState = readFileSync(python.stateFile, 'utf8');
const floorRows = { cpython: [] as number[], pyodideSeed: [] as number[], pyodideHarness: [] as number[] };
let floorCheck = '';
{
  const pyodide = await loadPyodide({ env: { PYTHONHASHSEED: '0' }, stdout: () => undefined, stderr: () => undefined });
  const ns = pyodide.toPy({}) as PyProxy & { set(k: string, v: unknown): void };
  ns.set('_PACKAGE_NAMES_JSON', '[]');
  pyodide.runPython(HARNESS_PY, { globals: ns });
  for (const [k, v] of Object.entries({ SRC: librarySource, CLASS: python.className, STATE: libraryState, CALLS: libraryCalls, HARNESS: true })) ns.set(k, v);
  const cpythonFloor = `import sys\nSRC = open(sys.argv[1]).read()\nCLASS = sys.argv[2]\nSTATE = open(sys.argv[3]).read()\nCALLS = open(sys.argv[4]).read()\nHARNESS = False\n${FLOOR_PY.replace(/_floor_run\(\)\s*$/, 'print(_floor_run())')}`;
  for (let r = 0; r < ROUNDS + 1; r++) {
    const py = JSON.parse(pyodide.runPython(FLOOR_PY, { globals: ns }) as string) as { seed: number; harness: number; harnessErrors: number; same: number };
    const cp = JSON.parse(execFileSync('python3', ['-c', cpythonFloor, python.file, python.className, python.stateFile, python.callsFile], { encoding: 'utf8' })) as { seed: number };
    if (r === 0) continue; // warm-up
    floorRows.pyodideSeed.push(py.seed);
    floorRows.pyodideHarness.push(py.harness);
    floorRows.cpython.push(cp.seed);
    floorCheck = `${py.same} of ${library.calls.length} harness results equal the seed loop's, ${py.harnessErrors} error replies (the runtime's own calls: ${errors})`;
  }
}

// 5. Memory per live environment.
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
  '| the floor: the whole trace in one loop, no crossing (mean per call; one clock per loop) | mean per call | vs CPython |',
  '|---|---|---|',
  `| Pyodide: the seed's own dispatch (json.loads, getattr, the method, json.dumps) | ${median(floorRows.pyodideSeed).toFixed(1)} µs | ${(median(floorRows.pyodideSeed) / median(floorRows.cpython)).toFixed(2)}× |`,
  `| Pyodide: envfleet's harness \`call\` (tool check, module state, canonical JSON, result cap) | ${median(floorRows.pyodideHarness).toFixed(1)} µs | ${(median(floorRows.pyodideHarness) / median(floorRows.cpython)).toFixed(2)}× |`,
  `| CPython: the seed's own dispatch, the same loop | ${median(floorRows.cpython).toFixed(1)} µs | 1× |`,
  '',
  `Floor check: ${floorCheck}.`,
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
