/**
 * The Python runtime's state cap, with the harness of an earlier commit and with the working tree's, in one
 * run: the time to refuse a state about ten times the cap (8 MiB; careless code that logs a line of CJK text
 * and an emoji per record, ~84 MB of JSON), and, for the cost of the count, the time to read states just
 * under the cap (records, and text).
 *
 *   node --import tsx bench/python-state-cap.ts [--before e3025f5] [--rounds 5]
 *
 * --before: the commit whose src/sandbox/python/python-harness.mjs is "before" (default e3025f5, the last one
 * that encoded the whole state and measured it afterwards). Each harness runs in its own Pyodide interpreter in
 * this process, set up as python-interpreter.mjs sets one up (the preloaded modules, then the harness); a read
 * is timed as the interpreter thread makes it (the harness's state() or finish(), its answer handed to
 * JavaScript as a string) plus the UTF-8 count python-child.mjs makes of the state's JSON. Rounds alternate
 * which harness goes first; the medians are printed. No deadline interrupts a read here: in the runtime, one
 * that runs past the call deadline (1 s by default) inside the C encoder cannot be interrupted, and its
 * interpreter is terminated after the grace period, with every other session on it.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DEFAULT_SANDBOX_LIMITS } from '../src/sandbox/limits.js';
import { benchArgs } from './args.js';
import { median } from './sandbox/common.js';

const args = benchArgs(import.meta.url, { values: ['before', 'rounds'] });
const BEFORE = args.str('before') ?? 'e3025f5';
const ROUNDS = args.int('rounds', 5);
const CAP = DEFAULT_SANDBOX_LIMITS.maxStateBytes;
const PRELOAD = 'import ast, copy, json, re, datetime, uuid, random, math, collections, typing, dataclasses, enum, decimal, hashlib, itertools, functools, string, heapq, bisect, statistics, fractions, time, types';

// Careless: the same line of 496 UTF-8 bytes (192 characters) per record; `fill(n)` sets the number of records.
const SOURCE = `class Journal:
    def __init__(self, c=None):
        self.entries = []
        self.records = {}
    def fill(self, n=0):
        self.entries = ["导入记录 😀 ヘッダー " * 16] * n
        return len(self.entries)
    def fill_records(self, n=0):
        self.records = {"R%d" % i: {"id": "R%d" % i, "name": "record number %d 名前" % i, "tags": ["a", "b"], "n": i, "x": 1.5} for i in range(n)}
        return len(self.records)
`;

type Py = { runPython(code: string, opts?: { globals: unknown }): unknown; globals: { get(name: string): () => PyDict } };
type PyDict = { get(name: string): (...a: unknown[]) => unknown; set(name: string, v: unknown): void };

const require = createRequire(import.meta.url);
const pyodideDir = dirname(require.resolve('pyodide'));
const { loadPyodide } = (await import(pathToFileURL(join(pyodideDir, 'pyodide.mjs')).href)) as { loadPyodide: (o: object) => Promise<Py> };

const tmp = mkdtempSync(join(os.tmpdir(), 'envfleet-state-cap-'));
const oldHarness = join(tmp, 'python-harness.mjs');
writeFileSync(oldHarness, execFileSync('git', ['show', `${BEFORE}:src/sandbox/python/python-harness.mjs`], { maxBuffer: 16 << 20 }));

interface Harness { name: string; capped: boolean; ns: PyDict; sid: number }

async function harness(name: string, file: string): Promise<Harness> {
  const { HARNESS_PY } = (await import(pathToFileURL(file).href)) as { HARNESS_PY: string };
  const py = await loadPyodide({ indexURL: `${pyodideDir}/`, env: { PYTHONHASHSEED: '0' }, jsglobals: Object.create(null) as object, stdout: () => undefined, stderr: () => undefined });
  py.runPython(PRELOAD);
  const ns = py.globals.get('dict')();
  ns.set('_PACKAGE_NAMES_JSON', '[]');
  py.runPython(HARNESS_PY, { globals: ns });
  return { name, capped: HARNESS_PY.includes('def capped('), ns, sid: 0 };
}

const before = await harness(`before (${BEFORE})`, oldHarness);
const after = await harness('after (working tree)', new URL('../src/sandbox/python/python-harness.mjs', import.meta.url).pathname);
rmSync(tmp, { recursive: true, force: true });

const call = (h: Harness, fn: string, ...a: unknown[]) => String(h.ns.get(fn)(...a));
const capArg = (h: Harness) => (h.capped ? [String(CAP)] : []);

/** A session filled by `tool(n)`; its id. */
function open(h: Harness, tool: string, n: number): string {
  const sid = `b${++h.sid}`;
  const code = h.ns.get('compile_env')('Journal', SOURCE);
  const created = call(h, 'create', sid, 'Journal', code, '{}', JSON.stringify(['fill', 'fill_records']), '2a', undefined, ...capArg(h));
  if (!created.startsWith('{"ok":')) throw new Error(`create: ${created.slice(0, 200)}`);
  const filled = call(h, 'call', sid, tool, JSON.stringify({ n }));
  if (!filled.startsWith('{"ok":')) throw new Error(`${tool}: ${filled.slice(0, 200)}`);
  return sid;
}

/** One read, timed as the interpreter thread and the child make it: the answer and, for a state, its UTF-8 bytes against the cap. */
function read(h: Harness, fn: 'state' | 'finish', sid: string): { ms: number; outcome: string } {
  const t0 = performance.now();
  const text = call(h, fn, sid, ...capArg(h));
  let outcome: string;
  if (text.startsWith('{"ok":')) {
    const bytes = Buffer.byteLength(text) - 7;
    outcome = bytes > CAP ? `STATE_TOO_LARGE (${bytes} bytes, counted after encoding)` : `read (${bytes} bytes)`;
  } else outcome = (JSON.parse(text) as { err: string }).err;
  const ms = performance.now() - t0;
  call(h, 'drop', sid);
  return { ms, outcome };
}

const LINE_BYTES = 496 + 3;
const cases = [
  { label: `careless text, ~10× the cap: finish() (the final state)`, tool: 'fill', n: Math.round((10 * CAP) / LINE_BYTES), fn: 'finish' as const },
  { label: `careless text, ~10× the cap: state() (a turn's state)`, tool: 'fill', n: Math.round((10 * CAP) / LINE_BYTES), fn: 'state' as const },
  { label: 'text just under the cap: state()', tool: 'fill', n: Math.floor((CAP - 100) / LINE_BYTES), fn: 'state' as const },
  { label: 'records just under the cap (87,000 of 5 fields): state()', tool: 'fill_records', n: 87_000, fn: 'state' as const },
];

console.log(`cap ${CAP} bytes; ${ROUNDS} rounds; ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}); load average ${os.loadavg().map(l => l.toFixed(2)).join(' ')}`);
for (const c of cases) {
  const times: Record<string, number[]> = { [before.name]: [], [after.name]: [] };
  const outcomes: Record<string, string> = {};
  for (let r = 0; r < ROUNDS; r++) {
    for (const h of r % 2 ? [after, before] : [before, after]) {
      const sid = open(h, c.tool, c.n);
      const { ms, outcome } = read(h, c.fn, sid);
      times[h.name]!.push(ms);
      outcomes[h.name] = outcome;
    }
  }
  const b = median(times[before.name]!);
  const a = median(times[after.name]!);
  console.log(`\n${c.label}`);
  console.log(`  ${before.name}: median ${b.toFixed(0)} ms (${times[before.name]!.map(t => t.toFixed(0)).join(', ')}) → ${outcomes[before.name]}`);
  console.log(`  ${after.name}: median ${a.toFixed(0)} ms (${times[after.name]!.map(t => t.toFixed(0)).join(', ')}) → ${outcomes[after.name]}`);
  console.log(`  before / after: ${(b / a).toFixed(2)}×`);
}
console.log(`\nload average at the end ${os.loadavg().map(l => l.toFixed(2)).join(' ')}`);
