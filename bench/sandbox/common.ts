/**
 * Shared pieces of bench/sandbox.ts and its child processes: the two benchmark environments
 * (the reference hotel env and the baseline kit's library env) and small statistics helpers.
 *
 * The baseline kit (library env, its trace and checks, its Python twin, cpython-baseline.py) lives
 * outside the repository, in `shared/baselines/` next to the checkout (`<repo>/../shared/baselines/`);
 * set ENVFLEET_BASELINES to use another directory.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CheckSpec, EnvironmentCode, ToolCall } from '../../src/sandbox/bundle.js';

export type EnvKey = 'hotel' | 'library';

export interface BenchEnv {
  readonly key: EnvKey;
  readonly title: string;
  readonly code: EnvironmentCode;
  readonly state: unknown;
  readonly stateBytes: number;
  readonly calls: readonly ToolCall[];
  readonly checks: readonly CheckSpec[];
  /** The Python twin for the CPython baseline (the library env only). */
  readonly python?: { readonly file: string; readonly className: string; readonly stateFile: string; readonly callsFile: string };
}

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Environment variable naming the baseline kit's directory. */
export const BASELINES_ENV = 'ENVFLEET_BASELINES';
/**
 * The baseline kit's directory, with a trailing separator: $ENVFLEET_BASELINES, or
 * `shared/baselines/` next to the checkout. Not checked here; `baseline(file)` checks.
 */
export const BASELINES = withSep(process.env[BASELINES_ENV]?.trim() || join(ROOT, '..', 'shared', 'baselines'));

function withSep(dir: string): string {
  return dir.endsWith(sep) ? dir : `${dir}${sep}`;
}

/** Path of a file of the baseline kit; throws a clear error when the kit's directory is missing. */
export function baseline(file: string): string {
  if (!existsSync(BASELINES) || !statSync(BASELINES).isDirectory()) {
    throw new Error(
      `the baseline kit's directory ${BASELINES} does not exist (needed for the library env and the CPython baseline); ` +
        `put the kit in shared/baselines/ next to the checkout, or set ${BASELINES_ENV} to its directory`,
    );
  }
  return `${BASELINES}${file}`;
}
const REFERENCE = `${ROOT}fixtures/reference/`;

const json = (file: string): unknown => JSON.parse(readFileSync(file, 'utf8'));
const jsonl = (file: string): ToolCall[] =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(line => line.trim())
    .map(line => {
      const c = JSON.parse(line) as { tool: string; arguments?: unknown };
      return { tool: c.tool, arguments: c.arguments ?? {} };
    });

export function loadEnv(key: EnvKey): BenchEnv {
  if (key === 'hotel') {
    const stateText = readFileSync(`${REFERENCE}hotel-state.json`, 'utf8');
    return {
      key,
      title: 'reference env (hotel, HotelReservations)',
      code: json(`${REFERENCE}hotel-env.bundle.json`) as EnvironmentCode,
      state: JSON.parse(stateText),
      stateBytes: stateText.length,
      calls: jsonl(`${REFERENCE}hotel-calls.jsonl`),
      checks: json(`${REFERENCE}hotel-checks.json`) as CheckSpec[],
    };
  }
  const stateText = readFileSync(baseline('library-state.json'), 'utf8');
  return {
    key,
    title: 'baseline env (library, LibraryEnv / LibraryLoanSystem)',
    code: json(baseline('library-env.bundle.json')) as EnvironmentCode,
    state: JSON.parse(stateText),
    stateBytes: stateText.length,
    calls: jsonl(baseline('library-calls.jsonl')),
    checks: json(baseline('library-checks.json')) as CheckSpec[],
    python: {
      file: baseline('library-env.py'),
      className: 'LibraryLoanSystem',
      stateFile: baseline('library-state.json'),
      callsFile: baseline('library-calls.jsonl'),
    },
  };
}

/** Sorted copy. */
export const sorted = (xs: readonly number[]): number[] => [...xs].sort((a, b) => a - b);
/** The same index conventions as cpython-baseline.py: s[n/2] and s[0.99 n]. */
export const median = (xs: readonly number[]): number => {
  const s = sorted(xs);
  return s[Math.floor(s.length / 2)] ?? NaN;
};
export const p99 = (xs: readonly number[]): number => {
  const s = sorted(xs);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.99))] ?? NaN;
};
export const max = (xs: readonly number[]): number => xs.reduce((a, b) => Math.max(a, b), -Infinity);

export function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) {
    g();
    g();
  }
}

/**
 * CPU accounting for a shared machine (Linux /proc; NaN elsewhere): the busy time of the whole
 * machine and of this process (with its waited-for children), to report how much CPU other
 * processes took while something was measured.
 */
export interface CpuSnapshot {
  readonly machineBusyS: number;
  readonly selfS: number;
  readonly atMs: number;
}

const TICK = 100; // USER_HZ

export function cpuSnapshot(): CpuSnapshot {
  const atMs = performance.now();
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal …
    const busy = (cpu[0] ?? 0) + (cpu[1] ?? 0) + (cpu[2] ?? 0) + (cpu[5] ?? 0) + (cpu[6] ?? 0) + (cpu[7] ?? 0);
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
    // fields[0] is field 3 (state): utime is field 14 → index 11; stime 12; cutime 13; cstime 14
    const self = (fields[11] ?? 0) + (fields[12] ?? 0) + (fields[13] ?? 0) + (fields[14] ?? 0);
    return { machineBusyS: busy / TICK, selfS: self / TICK, atMs };
  } catch {
    return { machineBusyS: NaN, selfS: NaN, atMs };
  }
}

/** Cores' worth of CPU used by other processes between two snapshots (≥ 0). */
export function otherCores(a: CpuSnapshot, b: CpuSnapshot): number {
  const wallS = (b.atMs - a.atMs) / 1000;
  return Math.max(0, (b.machineBusyS - a.machineBusyS - (b.selfS - a.selfS)) / wallS);
}
