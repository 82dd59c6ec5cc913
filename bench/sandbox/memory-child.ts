/**
 * Memory per live environment, measured in a process of its own (spawned by bench/sandbox.ts):
 *
 *   node --expose-gc --import tsx bench/sandbox/memory-child.ts N hotel|library
 *
 * One QuickJS host (a thread's sandbox) with a 2 GiB bound; every environment has a WebAssembly
 * module of its own, and `heapBytes()` is what the bound counts (the sum over the modules). One
 * environment is created, used and disposed first so the build, the harness and the tool
 * validators are in place; then the baseline is taken, N
 * environments are created and each given the first 20 calls of the trace, and everything is
 * measured again after a full GC. Ten checkpoints on the way (each after a GC) give the marginal
 * cost per environment as a least-squares slope, which the wasm heap's step-wise growth does not
 * distort. Prints one JSON object.
 */
import { DEFAULT_SANDBOX_LIMITS, type SandboxLimits } from '../../src/sandbox/limits.js';
import { QuickJSHost, type SandboxEnvironment } from '../../src/sandbox/quickjs-host.js';
import { gc, loadEnv, median, type EnvKey } from './common.js';

const n = Number(process.argv[2] ?? 100);
const key = (process.argv[3] ?? 'hotel') as EnvKey;
const CALLS_PER_ENV = 20;

const env = loadEnv(key);
const limits: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, heapMb: 2048 };
const host = new QuickJSHost(2048);
await host.warm();
const calls = env.calls.slice(0, CALLS_PER_ENV);

const quickjsUsed = (e: SandboxEnvironment): number => {
  const runtime = (e as unknown as { vm: { runtime: { dumpMemoryUsage(): string } } }).vm.runtime;
  const m = /memory used\s+\d+\s+(\d+)/.exec(runtime.dumpMemoryUsage());
  return m?.[1] ? Number(m[1]) : NaN;
};
/** Least-squares slope of y over x. */
const slope = (pts: readonly (readonly [number, number])[]): number => {
  const n = pts.length;
  const mx = pts.reduce((a, p) => a + p[0], 0) / n;
  const my = pts.reduce((a, p) => a + p[1], 0) / n;
  const sxy = pts.reduce((a, p) => a + (p[0] - mx) * (p[1] - my), 0);
  const sxx = pts.reduce((a, p) => a + (p[0] - mx) ** 2, 0);
  return sxy / sxx;
};

// What QuickJS holds for an environment with an empty state: runtime + context + harness + class.
let emptyUsedBytes: number;
{
  const empty = await host.createEnvironment(
    { name: 'empty', className: 'Empty', source: 'class Empty { constructor(s) { this.state = s; } }', tools: [] },
    {},
    limits,
  );
  emptyUsedBytes = quickjsUsed(empty);
  empty.dispose();
}
{
  const first = await host.createEnvironment(env.code, env.state, limits);
  for (const c of calls) first.call(c.tool, c.arguments);
  first.dispose();
}
gc();
const rss0 = process.memoryUsage().rss;
const heap0 = host.heapBytes();

const live: SandboxEnvironment[] = [];
const createMs: number[] = [];
const every = Math.max(1, Math.floor(n / 10));
const rssPoints: [number, number][] = [[0, rss0]];
const heapPoints: [number, number][] = [[0, heap0]];
let error: string | null = null;
const started = performance.now();
try {
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const e = await host.createEnvironment(env.code, env.state, limits);
    createMs.push(performance.now() - t);
    for (const c of calls) e.call(c.tool, c.arguments);
    live.push(e);
    if ((i + 1) % every === 0 && i + 1 < n) {
      gc();
      rssPoints.push([i + 1, process.memoryUsage().rss]);
      heapPoints.push([i + 1, host.heapBytes()]);
    }
  }
} catch (err) {
  error = String(err);
}
const elapsedMs = performance.now() - started;
gc();
const rss1 = process.memoryUsage().rss;
const heap1 = host.heapBytes();
rssPoints.push([live.length, rss1]);
heapPoints.push([live.length, heap1]);

// QuickJS's own accounting ("memory used" of each runtime), on a sample of the live environments.
const usedBytes: number[] = [];
for (const e of live.filter((_, i) => i % Math.max(1, Math.floor(live.length / 20)) === 0)) usedBytes.push(quickjsUsed(e));
const created = live.length;
for (const e of live) e.dispose();

process.stdout.write(
  `${JSON.stringify({
    env: key,
    requested: n,
    created,
    error,
    elapsedMs,
    createMedianMs: median(createMs),
    heapBeforeBytes: heap0,
    heapAfterBytes: heap1,
    heapDeltaBytes: heap1 - heap0,
    rssDeltaBytes: rss1 - rss0,
    heapKbPerEnv: created ? (heap1 - heap0) / 1024 / created : NaN,
    rssKbPerEnv: created ? (rss1 - rss0) / 1024 / created : NaN,
    quickjsUsedKbPerEnv: usedBytes.length ? median(usedBytes) / 1024 : NaN,
    quickjsEmptyEnvKb: emptyUsedBytes / 1024,
    rssSlopeKbPerEnv: slope(rssPoints) / 1024,
    heapSlopeKbPerEnv: slope(heapPoints) / 1024,
  })}\n`,
);
