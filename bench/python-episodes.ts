/**
 * τ-bench episodes through the Python runtime at several concurrencies (issue 15): how many episodes' environments
 * one Python sandbox process carries at once, and what crowding its interpreter costs. No model: each episode opens
 * the domain's environment as a rollout does (it may wait for room), makes `--calls` reads of its task's user
 * (get_user_details), finishes with the task's checks (τ-bench's gold-hash check: the database copied and hashed) and
 * ends. The same episodes at each concurrency, one after the other, on a fresh runner each (its interpreter warmed by
 * one session first).
 *
 *   node --import tsx bench/python-episodes.ts --from PATH [--domain airline] [--concurrency 8,64] [--episodes 128]
 *     [--calls 6] [--heap-mb 512]
 *
 * --from: a τ-bench checkout (the folder holding tau_bench/), imported into a run under a private Redis prefix (REDIS_URL,
 * default redis://127.0.0.1:6379), deleted at the end. Reported per concurrency: the wall, episodes a second, the median
 * wait for an environment (its open), the median end (finish, with its checks), the checks passed (the same at every
 * concurrency, or the run says so), and the interpreter's collections of the cycle collector.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { findTauBenchDomains, importTauBench } from '../src/importers/tau-bench.js';
import type { RunOptions } from '../src/runs/options.js';
import { createRedisRunStore } from '../src/runs/store.js';
import { type CheckSpec, EnvironmentCode } from '../src/sandbox/bundle.js';
import { DEFAULT_SANDBOX_LIMITS } from '../src/sandbox/limits.js';
import { createPythonSandboxRunner, type PythonSandboxRunner } from '../src/sandbox/python/python-runner.js';
import { benchArgs } from './args.js';
import { deletePrefix } from './redis-keys.js';

const args = benchArgs(import.meta.url, { values: ['from', 'domain', 'concurrency', 'episodes', 'calls', 'heap-mb'] });
const FROM = args.str('from');
if (!FROM) {
  process.stderr.write('bench/python-episodes.ts: --from PATH (a τ-bench checkout) is required; see --help\n');
  process.exit(2);
}
const DOMAIN = args.str('domain') ?? 'airline';
const LEVELS = args.ints('concurrency', '8,64');
const EPISODES = args.int('episodes', 128);
const CALLS = args.int('calls', 6);
const HEAP_MB = args.int('heap-mb', 512);
const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const SNAPSHOT_DIR = join(tmpdir(), 'envfleet', 'pyodide');
const logger = pino({ level: 'silent' });
const prefix = `envfleet-bench-python-episodes-${process.pid}`;

const redis = new Redis(REDIS_URL);
const store = createRedisRunStore(redis, prefix);
const newRunner = (): PythonSandboxRunner => createPythonSandboxRunner({ snapshotDir: SNAPSHOT_DIR, interpreters: 1, heapMb: HEAP_MB, logger });

interface Episode {
  readonly userId: string;
  readonly checks: readonly CheckSpec[];
}

try {
  const domains = (await findTauBenchDomains(FROM)).filter(d => d.name === DOMAIN);
  if (!domains.length) throw new Error(`no τ-bench domain "${DOMAIN}" under ${FROM}`);
  const importer = newRunner();
  const t = performance.now();
  try {
    await importTauBench(store, importer, { runId: 'bench', domains, splits: ['test'] }, { limits: DEFAULT_SANDBOX_LIMITS, models: {} } as unknown as RunOptions, logger);
  } finally {
    await importer.close();
  }
  const importS = (performance.now() - t) / 1000;
  const run = (await store.getRun('bench'))!;
  const env = (await store.getDoc('bench', 'env', `tau-${DOMAIN}`))!;
  const code = EnvironmentCode.parse({ name: env.description.summary, language: 'python', className: env.className, source: env.source, tools: env.tools });
  const limits = run.options.limits;
  const scenarios = await Promise.all((await store.listDocIds('bench', 'scenario')).sort().map(id => store.getDoc('bench', 'scenario', id)));
  const tasks: Episode[] = scenarios.map(s => ({ userId: String(s!.lineage.original?.userId ?? ''), checks: s!.checklist ?? [] }));
  console.log(`τ-bench ${DOMAIN}: ${tasks.length} test tasks imported in ${importS.toFixed(1)} s; ${EPISODES} episodes of ${CALLS} calls each; interpreter heap ${HEAP_MB} MB`);
  console.log('| concurrency | wall | episodes/s | open (median) | end (median) | checks passed | collections |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  const passedAt = new Map<number, number>();
  for (const level of LEVELS) {
    const runner = newRunner();
    try {
      await (await runner.openSession(code, {}, limits)).close();
      const opens: number[] = [];
      const ends: number[] = [];
      let passed = 0;
      let next = 0;
      const t0 = performance.now();
      const lane = async (): Promise<void> => {
        for (let i = next++; i < EPISODES; i = next++) {
          const task = tasks[i % tasks.length]!;
          const a = performance.now();
          const s = await runner.openSession(code, {}, limits, undefined, { roomWaitMs: 600_000 });
          opens.push(performance.now() - a);
          for (let c = 0; c < CALLS; c++) await s.call('get_user_details', { user_id: task.userId });
          const b = performance.now();
          const end = await s.finish(task.checks);
          ends.push(performance.now() - b);
          passed += end.checks?.results.filter(r => r.passed).length ?? 0;
          await s.close();
        }
      };
      await Promise.all(Array.from({ length: level }, lane));
      const wall = (performance.now() - t0) / 1000;
      const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
      const collections = (await runner.stats()).interpreters.reduce((n, p) => n + p.collections, 0);
      passedAt.set(level, passed);
      console.log(`| ${level} | ${wall.toFixed(1)} s | ${(EPISODES / wall).toFixed(2)} | ${(median(opens) / 1000).toFixed(1)} s | ${(median(ends) / 1000).toFixed(1)} s | ${passed} | ${collections} |`);
    } finally {
      await runner.close();
    }
  }
  if (new Set(passedAt.values()).size > 1) console.log('The checks passed differ between concurrencies: the episodes are not scored alike.');
} finally {
  await deletePrefix(redis, prefix);
  redis.disconnect();
}
