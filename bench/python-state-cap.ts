/**
 * The Python runtime's state cap, with the harness of an earlier commit and with the working tree's, in one
 * run: the time to refuse a state about ten times the cap (8 MiB; careless code that logs a line of CJK text
 * and an emoji per record, ~84 MB of JSON), and, for the cost of the count, the time to read states just
 * under the cap (records, and text). Then, in the working tree's interpreter, where a read at the cap goes:
 * counting (the floor), encoding, the UTF-8 count, and handing the answer to JavaScript as a str (as Pyodide
 * copies one that is not ASCII: a character at a time) or as UTF-8 bytes (answerText), and what that costs for
 * shorter answers (where the harness switches from one to the other). With --e2e, last, the caller's view: a
 * session's snapshot() and finish() of those states through the whole runtime (a runner, its child process and
 * interpreter thread), the working tree's against BEFORE's (its src/ and config/ from git archive, in a temporary
 * folder), alternately.
 *
 *   node --import tsx bench/python-state-cap.ts [--before e3025f5] [--rounds 5] [--cases 1,2,3,4] [--e2e]
 *
 * --before: the commit whose src/sandbox/python/python-harness.mjs is "before" (default e3025f5, the last one
 * that encoded the whole state and measured it afterwards). Each harness runs in its own Pyodide interpreter in
 * this process, set up as python-interpreter.mjs sets one up (the preloaded modules, then the harness); a read
 * is timed as the interpreter thread makes it (the harness's state() or finish(), its answer handed to
 * JavaScript as the interpreter thread takes it: answerText) plus the UTF-8 count python-child.mjs makes of the
 * state's JSON. --cases picks the comparisons to run (1-4, as printed; default all). Rounds alternate
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
import { pino } from 'pino';
import { EnvironmentCode } from '../src/sandbox/bundle.js';
import { DEFAULT_SANDBOX_LIMITS } from '../src/sandbox/limits.js';
import { answerText } from '../src/sandbox/python/python-harness.mjs';
import { benchArgs } from './args.js';
import { median } from './sandbox/common.js';
import { pythonRunnersBeforeAndAfter } from './sandbox/python-before-after.js';

const args = benchArgs(import.meta.url, { values: ['before', 'rounds', 'cases'], booleans: ['e2e'] });
const BEFORE = args.str('before') ?? 'e3025f5';
const ROUNDS = args.int('rounds', 5);
const CASES = new Set(args.ints('cases', '1,2,3,4'));
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

interface Harness { name: string; capped: boolean; ns: PyDict; sid: number; py: Py }

async function harness(name: string, file: string): Promise<Harness> {
  const { HARNESS_PY } = (await import(pathToFileURL(file).href)) as { HARNESS_PY: string };
  const py = await loadPyodide({ indexURL: `${pyodideDir}/`, env: { PYTHONHASHSEED: '0' }, jsglobals: Object.create(null) as object, stdout: () => undefined, stderr: () => undefined });
  py.runPython(PRELOAD);
  const ns = py.globals.get('dict')();
  ns.set('_PACKAGE_NAMES_JSON', '[]');
  py.runPython(HARNESS_PY, { globals: ns });
  return { name, capped: HARNESS_PY.includes('def capped('), ns, sid: 0, py };
}

const before = await harness(`before (${BEFORE})`, oldHarness);
const after = await harness('after (working tree)', new URL('../src/sandbox/python/python-harness.mjs', import.meta.url).pathname);
rmSync(tmp, { recursive: true, force: true });

// As the interpreter thread takes an answer (python-interpreter.mjs): a str, or UTF-8 bytes (a harness that hands them over).
const call = (h: Harness, fn: string, ...a: unknown[]) => answerText(h.ns.get(fn)(...a));
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
for (const [i, c] of cases.entries()) {
  if (!CASES.has(i + 1)) continue;
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
  console.log(`\n${i + 1}. ${c.label}`);
  console.log(`  ${before.name}: median ${b.toFixed(0)} ms (${times[before.name]!.map(t => t.toFixed(0)).join(', ')}) → ${outcomes[before.name]}`);
  console.log(`  ${after.name}: median ${a.toFixed(0)} ms (${times[after.name]!.map(t => t.toFixed(0)).join(', ')}) → ${outcomes[after.name]}`);
  console.log(`  before / after: ${(b / a).toFixed(2)}×`);
}
// Where a read at the cap goes, in the working tree's interpreter: each part timed alone, ROUNDS times (medians).
type PartsFn = (sid: string, cap: number) => unknown;
const partsNs = after.py.globals.get('dict')();
partsNs.set('H', after.ns);
after.py.runPython(`
from time import perf_counter
def parts(sid, cap):
    """A session's state read as state() reads it, each step timed; keeps the answer for cross_str / cross_bytes."""
    global TEXT
    s = H['SESSIONS'][sid]
    live = H['_state_of'](s.inst)
    t0 = perf_counter()
    H['_deeply'](H['_floor_of'], live, cap)
    t1 = perf_counter()
    text = H['_deeply'](H['canonical'], live)
    t2 = perf_counter()
    size = len(text) if text.isascii() else len(text.encode('utf-8'))
    t3 = perf_counter()
    TEXT = '{"ok":' + text + '}'
    return '%f %f %f %d %d' % ((t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000, size, len(text))
def cross_str():
    return TEXT
def cross_bytes():
    return TEXT.encode('utf-8')
def sample(n):
    global TEXT
    TEXT = ('{"ok":"' + '导入记录 😀 ヘッダー ' * (n // 15 + 1))[:n - 2] + '"}'
`, { globals: partsNs });
const parts = partsNs.get('parts') as unknown as PartsFn;
const timed = (f: () => unknown): number => {
  const t0 = performance.now();
  f();
  return performance.now() - t0;
};
console.log(`\nWhere a read at the cap goes (working tree's interpreter; medians of ${ROUNDS}, ms):`);
console.log('  state                              | count (floor) | encode | UTF-8 count | str → JS | bytes → JS (answerText) | child\'s Buffer.byteLength (of str / of bytes\' text)');
for (const c of cases.filter(x => x.fn === 'state' && !x.label.includes('10×'))) {
  const cols: number[][] = [[], [], [], [], [], [], []];
  let chars = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const sid = open(after, c.tool, c.n);
    const [floorMs, encodeMs, sizeMs, , n] = String(parts(sid, CAP)).split(' ').map(Number) as [number, number, number, number, number];
    chars = n;
    let viaStr = '';
    let viaBytes = '';
    const strMs = timed(() => (viaStr = String((partsNs.get('cross_str'))())));
    const bytesMs = timed(() => (viaBytes = answerText((partsNs.get('cross_bytes'))())));
    if (viaStr !== viaBytes) throw new Error('the two crossings differ');
    const lenStrMs = timed(() => Buffer.byteLength(viaStr));
    const lenBytesMs = timed(() => Buffer.byteLength(viaBytes));
    for (const [k, v] of [floorMs, encodeMs, sizeMs, strMs, bytesMs, lenStrMs, lenBytesMs].entries()) cols[k]!.push(v);
    call(after, 'drop', sid);
  }
  const m = cols.map(col => median(col).toFixed(0));
  console.log(`  ${c.label.slice(0, 34).padEnd(34)} | ${m[0]} | ${m[1]} | ${m[2]} | ${m[3]} | ${m[4]} | ${m[5]} / ${m[6]}   (${chars} characters)`);
}
console.log('\nHanding an answer that is not ASCII to JavaScript, by length (CJK text and an emoji; medians of 200, 21 from 65,536 characters; µs):');
const sample = partsNs.get('sample') as unknown as (n: number) => void;
for (const n of [256, 4096, 16384, 65536, 131072, 262144, 1048576]) {
  sample(n);
  const s: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < (n < 65536 ? 200 : 21); r++) {
    s.push(timed(() => String((partsNs.get('cross_str'))())) * 1000);
    b.push(timed(() => answerText((partsNs.get('cross_bytes'))())) * 1000);
  }
  console.log(`  ${String(n).padStart(6)} characters: str ${median(s).toFixed(0)}, bytes (encoded, then answerText) ${median(b).toFixed(0)}`);
}
if (args.flag('e2e')) {
  // The whole runtime, as a caller sees it: BEFORE's src/ and config/ in a temporary folder (node_modules linked).
  const { runners, close } = await pythonRunnersBeforeAndAfter(BEFORE, { snapshotDir: join(os.tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: DEFAULT_SANDBOX_LIMITS.heapMb, logger: pino({ level: 'silent' }) });
  try {
    const tool = (name: string) => ({ type: 'function' as const, function: { name, parameters: { type: 'object', properties: { n: { type: 'integer' } } } } });
    const code = EnvironmentCode.parse({ name: 'Journal', language: 'python', className: 'Journal', source: SOURCE, tools: ['fill', 'fill_records'].map(tool) });
    const limits = { ...DEFAULT_SANDBOX_LIMITS, callDeadlineMs: 60_000 }; // measured, not stopped
    console.log(`\nThrough the whole runtime (a runner, its child, one interpreter; medians of ${ROUNDS}, alternately; ms):`);
    for (const c of cases.filter(x => x.fn === 'state' && !x.label.includes('10×'))) {
      const t = { before: { snap: [] as number[], fin: [] as number[] }, after: { snap: [] as number[], fin: [] as number[] } };
      for (let r = 0; r < ROUNDS; r++) {
        for (const name of r % 2 ? (['after', 'before'] as const) : (['before', 'after'] as const)) {
          const s = await runners[name].openSession(code, {}, limits);
          await s.call(c.tool, { n: c.n });
          let t0 = performance.now();
          await s.snapshot();
          t[name].snap.push(performance.now() - t0);
          t0 = performance.now();
          const end = await s.finish([]);
          if (end.stateError) throw new Error(`${name}: ${end.stateError.code}`);
          t[name].fin.push(performance.now() - t0);
        }
      }
      console.log(`  ${c.label}`);
      for (const name of ['before', 'after'] as const) {
        console.log(`    ${name === 'before' ? `before (${BEFORE})` : 'after (working tree)'}: snapshot() ${median(t[name].snap).toFixed(0)} (${t[name].snap.map(x => x.toFixed(0)).join(', ')}), finish() ${median(t[name].fin).toFixed(0)} (${t[name].fin.map(x => x.toFixed(0)).join(', ')})`);
      }
    }
  } finally {
    await close();
  }
}
console.log(`\nload average at the end ${os.loadavg().map(l => l.toFixed(2)).join(' ')}`);
