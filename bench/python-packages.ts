/**
 * What a user-supplied package (ENVFLEET_PYTHON_PACKAGES) costs in the Python runtime: the compile of
 * every module at interpreter start, and per session that imports it the fresh import (each session
 * its own copy of the package's modules, docs/sandbox.md "User-supplied packages"), against the same
 * environment without the import; the interpreter heap held per live session that imported it; and
 * the time inside the interpreter of a trivial tool call with the packages configured (the session's
 * package modules go into sys.modules and out again around every call) against a runner without them.
 *
 *   ENVFLEET_PYTHON_PACKAGES=/path/to/mpmath node --import tsx bench/python-packages.ts [--sessions 30] [--live 20] [--calls 2000] [--module mpmath]
 *
 * The environment imports `--module` (default: the first configured package) and calls nothing in it
 * at construction; the baseline is the same class without the import. Session opens are sequential
 * (open, close), on one interpreter, the medians reported. The snapshot comes from
 * ENVFLEET_PYTHON_SNAPSHOT_DIR's default folder (built there first if missing).
 */
import { pino } from 'pino';
import { loadConfig } from '../config/index.js';
import { EnvironmentCode } from '../src/sandbox/bundle.js';
import { DEFAULT_SANDBOX_LIMITS } from '../src/sandbox/limits.js';
import { createPythonSandboxRunner } from '../src/sandbox/python/python-runner.js';
import { benchArgs } from './args.js';
import { median } from './sandbox/common.js';

const args = benchArgs(import.meta.url, { values: ['sessions', 'live', 'calls', 'module'] });
const SESSIONS = args.int('sessions', 30);
const LIVE = args.int('live', 20);
const CALLS = args.int('calls', 2000);
const config = loadConfig();
const packages = config.python.packages;
if (packages.length === 0) {
  process.stderr.write('set ENVFLEET_PYTHON_PACKAGES to the package(s) to measure (see the header of this file)\n');
  process.exit(2);
}
const module = args.str('module') ?? packages[0]!.name;
const LIMITS = { ...DEFAULT_SANDBOX_LIMITS, createDeadlineMs: 60_000 };
const body = 'class Env:\n    def __init__(self, c=None):\n        self.n = 0\n    def ping(self):\n        self.n += 1\n        return self.n\n';
const tools = [{ type: 'function' as const, function: { name: 'ping', parameters: { type: 'object', properties: {} } } }];
const withImport = EnvironmentCode.parse({ name: 'with', language: 'python', className: 'Env', source: `import ${module}\n${body}`, tools });
const without = EnvironmentCode.parse({ name: 'without', language: 'python', className: 'Env', source: body, tools });
const mb = (bytes: number) => Math.round((bytes / 1048576) * 10) / 10;

const runner = createPythonSandboxRunner({ snapshotDir: config.python.snapshotDir, interpreters: 1, heapMb: 1024, packages, logger: pino({ level: 'silent' }) });
const info = await runner.started();
const timeOpens = async (code: EnvironmentCode) => {
  const ms: number[] = [];
  for (let i = 0; i < SESSIONS; i++) {
    const t = performance.now();
    const s = await runner.openSession(code, {}, LIMITS);
    ms.push(performance.now() - t);
    await s.close();
  }
  return ms;
};
// One round of each first (the first open of a source compiles it), then the measured rounds, alternated.
await timeOpens(without);
await timeOpens(withImport);
const a = await timeOpens(without);
const b = await timeOpens(withImport);
const a2 = await timeOpens(without);
const b2 = await timeOpens(withImport);
const base = median([...a, ...a2]);
const imported = median([...b, ...b2]);

// Heap per live session that imported the package.
const heap0 = (await runner.stats()).interpreters[0]!.heapBytes;
const live = [];
for (let i = 0; i < LIVE; i++) live.push(await runner.openSession(withImport, {}, LIMITS));
const heap1 = (await runner.stats()).interpreters[0]!.heapBytes;
for (const s of live) await s.close();

// A trivial call's time inside the interpreter, with and without packages configured.
const callUs = async (r: typeof runner, code: EnvironmentCode) => {
  const s = await r.openSession(code, {}, { ...LIMITS, sessionCpuMs: 600_000 });
  const us: number[] = [];
  for (let i = 0; i < CALLS; i++) us.push((await s.call('ping', {})).us);
  await s.close();
  return median(us);
};
const withPackages = await callUs(runner, withImport);
await runner.close();
const plain = createPythonSandboxRunner({ snapshotDir: config.python.snapshotDir, interpreters: 1, heapMb: 1024, logger: pino({ level: 'silent' }) });
const withoutPackages = await callUs(plain, without);
await plain.close();

const modules = info.packagesMs.length ? `${packages.map(p => p.name).join(', ')}` : '';
console.log(`packages: ${modules}; compile at interpreter start: ${info.packagesMs.map(Math.round).join(', ')} ms`);
console.log(`session open, median of ${2 * SESSIONS}: without the import ${base.toFixed(1)} ms, with \`import ${module}\` ${imported.toFixed(1)} ms: ${(imported - base).toFixed(1)} ms per session for the fresh import`);
console.log(`interpreter heap: ${mb(heap0)} MiB before, ${mb(heap1)} MiB with ${LIVE} live sessions that imported ${module}: ~${mb((heap1 - heap0) / LIVE)} MiB each (a heap grows, never shrinks)`);
console.log(`a trivial tool call inside the interpreter, median of ${CALLS}: ${withoutPackages.toFixed(0)} µs without packages configured, ${withPackages.toFixed(0)} µs with (session importing ${module})`);
