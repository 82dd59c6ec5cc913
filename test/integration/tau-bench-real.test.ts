import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import type { AppConfig } from '../../config/index.js';
import { findTauBenchDomains, importTauBench, TAU_TERMINATE_TOOLS, tauLimits, type TauImportSummary } from '../../src/importers/tau-bench.js';
import type { RunOptions } from '../../src/runs/options.js';
import { createRedisRunStore, type RunStore } from '../../src/runs/store.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../src/sandbox/limits.js';
import { createPythonSandboxRunner, type PythonSandboxRunner } from '../../src/sandbox/python/python-runner.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import type { EnvironmentRecord } from '../../src/synthesis/types.js';
import { dropPrefix, requireRedis, testConfig } from '../helpers/integration.js';

const SRC = process.env['ENVFLEET_TAU_BENCH_SRC'];
const CPYTHON = process.env['ENVFLEET_CPYTHON'] ?? 'python3.12';
const DRIVER = new URL('../fixtures/python-drivers/tau_bench_upstream.py', import.meta.url).pathname;
const run = promisify(execFile);

interface Upstream {
  initial: string;
  tasks: { gold: string; nothing: number }[];
}

/**
 * The importer against the real τ-bench (a checkout named by ENVFLEET_TAU_BENCH_SRC; none of it is in
 * this repository): retail and airline test imported, their hashes compared with τ-bench's own code
 * run in CPython ≥ 3.12 (ENVFLEET_CPYTHON; test/fixtures/python-drivers/tau_bench_upstream.py), the
 * gold actions replayed as an agent's tool calls, and an agent that does nothing. Slow (about half an
 * hour on two cores): skipped unless the checkout is named.
 */
describe('envfleet import tau-bench: the real τ-bench (ENVFLEET_TAU_BENCH_SRC)', function () {
  this.timeout(3 * 3_600_000);
  let config: AppConfig;
  let redis: Redis;
  let store: RunStore;
  let python: PythonSandboxRunner;
  let summary: TauImportSummary;
  const upstream: Record<string, Promise<Upstream>> = {};

  before(async function () {
    if (!SRC) {
      console.log('    (skipped: set ENVFLEET_TAU_BENCH_SRC to a checkout of sierra-research/tau-bench, and ENVFLEET_CPYTHON to a CPython ≥ 3.12, to run these)');
      this.skip();
    }
    await requireRedis();
    // τ-bench's own code in CPython, started first: it runs while the import replays in Pyodide.
    for (const domain of ['retail', 'airline']) {
      upstream[domain] = run(CPYTHON, [DRIVER, SRC, domain, 'test'], { maxBuffer: 64 << 20 }).then(r => JSON.parse(r.stdout) as Upstream);
      upstream[domain].catch(() => undefined);
    }
    config = testConfig(null);
    redis = new Redis(config.redis.url);
    store = createRedisRunStore(redis, config.redis.prefix);
    python = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 2, heapMb: 1024, logger: pino({ level: 'silent' }) });
    const started = performance.now();
    summary = await importTauBench(store, python, { runId: 'tau', domains: await findTauBenchDomains(SRC), splits: ['test'] }, { limits: DEFAULT_SANDBOX_LIMITS, models: {} } as unknown as RunOptions, pino({ level: 'silent' }), p => {
      if (p.phase === 'replay' && p.done % 25 === 0) console.log(`      ${p.domain} ${p.split}: ${p.done}/${p.total}`);
    });
    console.log(`      import: ${((performance.now() - started) / 1000).toFixed(1)} s; ${JSON.stringify(summary.domains)}`);
  });
  after(async () => {
    await python?.close();
    redis?.disconnect();
    if (config) await dropPrefix(config.redis.prefix);
  });

  const scenariosOf = async (domain: string): Promise<ScenarioRecord[]> => {
    const ids = (await store.listDocIds('tau', 'scenario')).filter(id => id.startsWith(`tau-${domain}-test-`));
    const docs = await Promise.all(ids.map(async id => (await store.getDoc('tau', 'scenario', id))!));
    return docs.sort((a, b) => Number(a.lineage.original!.record) - Number(b.lineage.original!.record));
  };

  it('imports 115 retail and 50 airline test tasks with the published initial hashes and the first retail gold hashes', async () => {
    const retail = summary.domains.find(d => d.domain === 'retail')!;
    const airline = summary.domains.find(d => d.domain === 'airline')!;
    expect(retail.tasks.test).to.equal(115);
    expect(airline.tasks.test).to.equal(50);
    expect(summary.skipped).to.deep.equal([]);
    expect(retail.initialHash.startsWith('5a4b2cb59f4d12de')).to.equal(true);
    expect(airline.initialHash.startsWith('4587e6b48ad2b2c4')).to.equal(true);
    const first = (await scenariosOf('retail')).slice(0, 3).map(s => s.lineage.original!.goldHash!.slice(0, 8));
    expect(first).to.deep.equal(['5ed21c65', '4adebec0', '047522a8']);
  });

  it('every gold hash equals what τ-bench computes in CPython, entry for entry', async () => {
    for (const domain of ['retail', 'airline']) {
      const up = await upstream[domain]!;
      const ours = await scenariosOf(domain);
      expect(summary.domains.find(d => d.domain === domain)!.initialHash).to.equal(up.initial);
      expect(ours.map(s => s.lineage.original!.goldHash)).to.deep.equal(up.tasks.map(t => t.gold));
    }
  });

  /** One session per task: the calls, then the in-session (gold-hash) checks. */
  const episode = async (env: EnvironmentRecord, s: ScenarioRecord, calls: readonly { name: string; kwargs: unknown }[]) => {
    const session = await python.openSession({ name: env.id, className: env.className!, source: env.source!, tools: env.tools!, language: 'python' }, s.initialState, tauLimits(DEFAULT_SANDBOX_LIMITS));
    for (const c of calls) {
      // Through JSON, as an agent's tool call arrives.
      const out = await session.call(c.name, JSON.parse(JSON.stringify(c.kwargs)) as unknown);
      expect(out.runtimeError, `${s.id} ${c.name}`).to.equal(undefined);
    }
    const end = await session.finish((s.checklist ?? []).filter(c => !c.episode));
    return end.checks!.results[0]!.passed;
  };

  /** Gold actions of a task, as parsed (the scenario keeps the tool names; the calls come from τ-bench's file, read again here in the sandbox). */
  it('replaying the gold actions as an agent passes the gold-hash check of every task; an agent that does nothing passes on exactly 7 retail and 19 airline tasks', async () => {
    const { readGoldActions } = await import('../helpers/tau-bench-gold.js');
    for (const domain of ['retail', 'airline']) {
      const env = (await store.getDoc('tau', 'env', `tau-${domain}`))!;
      const scenarios = await scenariosOf(domain);
      const gold = await readGoldActions(python, join(SRC!, 'tau_bench', 'envs', domain, 'tasks_test.py'));
      const up = await upstream[domain]!;
      let goldPassed = 0;
      let nothingPassed = 0;
      const started = performance.now();
      const queue = scenarios.map((s, i) => ({ s, i }));
      const worker = async () => {
        for (let job = queue.shift(); job; job = queue.shift()) {
          const { s, i } = job;
          const calls = gold[i]!.filter(a => !TAU_TERMINATE_TOOLS.includes(a.name));
          if (await episode(env, s, calls)) goldPassed += 1;
          else console.log(`      ${s.id}: the gold replay as an agent failed the gold-hash check`);
          const hasOutputs = (s.checklist ?? []).some(c => c.episode);
          // Doing nothing: the final database is the initial one; a task with outputs fails them (no assistant message).
          if (!hasOutputs && s.lineage.original!.goldHash === summary.domains.find(d => d.domain === domain)!.initialHash) {
            if (await episode(env, s, [])) nothingPassed += 1;
          }
        }
      };
      await Promise.all([worker(), worker()]);
      console.log(`      ${domain}: gold as agent ${goldPassed}/${scenarios.length}, doing nothing ${nothingPassed}; ${((performance.now() - started) / 1000).toFixed(0)} s`);
      expect(goldPassed).to.equal(scenarios.length);
      expect(nothingPassed).to.equal(domain === 'retail' ? 7 : 19);
      expect(up.tasks.filter(t => t.nothing === 1).length).to.equal(nothingPassed);
    }
  });
});
