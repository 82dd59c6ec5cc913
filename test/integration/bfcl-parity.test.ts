import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { loadConfig, type AppConfig } from '../../config/index.js';
import { BFCL_CATEGORIES, findBfclLayout, importBfcl, type BfclCategory, type BfclImportSummary } from '../../src/importers/bfcl.js';
import { runEpisode } from '../../src/rollouts/episode.js';
import type { RunOptions } from '../../src/runs/options.js';
import { createRedisRunStore, type RunStore } from '../../src/runs/store.js';
import { DEFAULT_SANDBOX_LIMITS, type SandboxLimits } from '../../src/sandbox/limits.js';
import { createPythonSandboxRunner, type PythonSandboxRunner } from '../../src/sandbox/python/python-runner.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import type { EnvironmentRecord } from '../../src/synthesis/types.js';
import { canonicalJson } from '../../src/util/canonical.js';
import { compileJsonSchema } from '../../src/util/json-schema.js';
import { callingGateway, goldOf, type AgentCall } from '../helpers/bfcl.js';
import { dropPrefix, requireRedis, testConfig } from '../helpers/integration.js';
import { MPMATH_MISSING, mpmathPackage } from '../helpers/mpmath.js';

/**
 * Against the real BFCL (not in this repository): with ENVFLEET_BFCL_SRC naming a gorilla checkout
 * (or its berkeley-function-call-leaderboard / bfcl_eval folder) and ENVFLEET_CPYTHON a CPython ≥ 3.12
 * (default python3.12), imports every multi_turn_base entry (ENVFLEET_BFCL_CATEGORIES: other categories too), replays its gold calls through upstream's
 * own code in CPython (test/parity/bfcl-cpython-driver.py), and compares the results and the public
 * state after every turn with envfleet's replay in the sandbox. Then submits the gold calls as an
 * agent's through a scripted multi-turn rollout and expects the BFCL check to pass, and two
 * deliberate faults to fail with BFCL's codes. Skipped, with this message, without the checkout.
 * With a pure-Python mpmath (ENVFLEET_TEST_MPMATH, or Debian's python3-mpmath, installed here when root
 * on Debian: test/helpers/mpmath.ts) both sides get the same mpmath: the sandbox through
 * ENVFLEET_PYTHON_PACKAGES, CPython through PYTHONPATH (a folder holding only a link to it), and the
 * entries that call MathAPI.logarithm are imported and compared too.
 */
const SRC = process.env['ENVFLEET_BFCL_SRC'];
const CPYTHON = process.env['ENVFLEET_CPYTHON'] ?? 'python3.12';
/** The categories to compare: multi_turn_base unless ENVFLEET_BFCL_CATEGORIES lists others (comma-separated). */
const CATEGORIES = (process.env['ENVFLEET_BFCL_CATEGORIES'] ?? 'base').split(',').map(c => c.trim()) as BfclCategory[];
const DRIVER = fileURLToPath(new URL('../parity/bfcl-cpython-driver.py', import.meta.url));
const LIMITS: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, createDeadlineMs: 30_000, callDeadlineMs: 5_000, checkDeadlineMs: 10_000, sessionCpuMs: 60_000 };

interface DriverTurn {
  readonly results: readonly string[];
  readonly state: Record<string, unknown>;
  readonly calls: readonly AgentCall[];
}

/** Runs the CPython driver on the entries (with `pythonPath` on PYTHONPATH when given); its answer per entry id. */
async function upstream(leaderboardDir: string, entries: readonly unknown[], pythonPath: string | null): Promise<Map<string, { turns: DriverTurn[]; python: string }>> {
  // MPMATH_NOGMPY: mpmath's pure-Python backend, as in the sandbox, even where CPython has gmpy2.
  const env = pythonPath ? { ...process.env, PYTHONPATH: pythonPath, MPMATH_NOGMPY: '1' } : process.env;
  const child = spawn(CPYTHON, [DRIVER, leaderboardDir], { stdio: ['pipe', 'pipe', 'pipe'], env });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
  child.stdin.end(entries.map(e => JSON.stringify(e)).join('\n') + '\n');
  const code = await new Promise<number | null>(resolve => child.on('close', resolve));
  if (code !== 0) throw new Error(`the CPython driver failed (exit ${code}): ${err.slice(-2000)}`);
  // The driver's JSON may hold NaN (json.dumps allows it); none is expected in these entries.
  return new Map(out.trim().split('\n').map(l => JSON.parse(l) as { id: string; turns: DriverTurn[]; python: string }).map(r => [r.id, r]));
}

/** envfleet's result of a call and BFCL's string of it: the same when the string is the value's text (a dict's JSON, or the string itself). */
function sameResult(envfleet: unknown, bfcl: string): boolean {
  if (typeof envfleet === 'string') return envfleet === bfcl;
  try {
    return canonicalJson(JSON.parse(bfcl)) === canonicalJson(envfleet);
  } catch {
    return false;
  }
}

describe('BFCL multi-turn against upstream (gated on ENVFLEET_BFCL_SRC)', function () {
  this.timeout(3_600_000);
  let config: AppConfig;
  let redis: Redis;
  let store: RunStore;
  let python: PythonSandboxRunner;
  let summary: BfclImportSummary;
  let scenarios: ScenarioRecord[];
  const envs = new Map<string, EnvironmentRecord>();
  let driver: Map<string, { turns: DriverTurn[]; python: string }>;
  /** The mpmath package folder both sides run, or null (the logarithm entries are then skipped). */
  let mpmath: string | null = null;
  let cpythonPath: string | null = null;

  before(async function () {
    if (!SRC) {
      console.log('    skipped: set ENVFLEET_BFCL_SRC to a gorilla checkout (and ENVFLEET_CPYTHON to a CPython >= 3.12) to compare with upstream BFCL');
      this.skip();
    }
    const version = spawnSync(CPYTHON, ['-c', 'import sys; print("%d.%d" % sys.version_info[:2])'], { encoding: 'utf8' });
    const [major, minor] = (version.stdout ?? '').trim().split('.').map(Number);
    if (version.status !== 0 || major !== 3 || (minor ?? 0) < 12) {
      console.log(`    skipped: ENVFLEET_CPYTHON (${CPYTHON}) is not a CPython >= 3.12 (${version.stdout?.trim() || version.error?.message || version.stderr})`);
      this.skip();
    }
    await requireRedis();
    config = testConfig(null);
    redis = new Redis(config.redis.url);
    store = createRedisRunStore(redis, config.redis.prefix);
    mpmath = mpmathPackage('the BFCL parity test supplies mpmath to both Pythons');
    if (mpmath) {
      cpythonPath = mkdtempSync(join(tmpdir(), 'envfleet-bfcl-mpmath-'));
      symlinkSync(mpmath, join(cpythonPath, 'mpmath'));
    } else console.log(`    the entries that call MathAPI.logarithm are skipped: ${MPMATH_MISSING}`);
    const packages = mpmath ? loadConfig({ ENVFLEET_PYTHON_PACKAGES: mpmath }).python.packages : [];
    python = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 2, heapMb: 256, packages, logger: pino({ level: 'silent' }) });
    for (const c of CATEGORIES) if (!BFCL_CATEGORIES.includes(c)) throw new Error(`ENVFLEET_BFCL_CATEGORIES: ${c} is not one of ${BFCL_CATEGORIES.join(', ')}`);
    const layout = await findBfclLayout(SRC, CATEGORIES);
    const started = Date.now();
    summary = await importBfcl(store, python, { runId: 'bfcl', layout, categories: CATEGORIES, concurrency: 2, pythonPackages: mpmath ? ['mpmath'] : [] }, { limits: DEFAULT_SANDBOX_LIMITS, models: {} } as unknown as RunOptions);
    console.log(`    imported ${summary.scenarios.imported} of ${200 * CATEGORIES.length} entries (${CATEGORIES.join(', ')}) in ${((Date.now() - started) / 1000).toFixed(1)} s (replay ${summary.replay.calls} calls, ${(summary.replay.ms / 1000).toFixed(1)} s); skipped ${summary.skipped.length}: ${summary.skipped.map(s => s.where.split(' ')[1]).join(', ')}`);
    for (const s of summary.skipped) console.log(`      ${s.where}: ${s.problem}`);
    scenarios = await Promise.all((await store.listDocIds('bfcl', 'scenario')).map(async id => (await store.getDoc('bfcl', 'scenario', id))!));
    for (const id of await store.listDocIds('bfcl', 'env')) envs.set(id, (await store.getDoc('bfcl', 'env', id))!);
    const input: unknown[] = [];
    const imported = new Set(scenarios.map(s => s.id));
    for (const c of CATEGORIES) {
      const entries = (await readFile(layout.categories[c]!.entries, 'utf8')).trim().split('\n').map(l => JSON.parse(l) as { id: string; initial_config: unknown; involved_classes: string[] });
      const answers = new Map((await readFile(layout.categories[c]!.answers, 'utf8')).trim().split('\n').map(l => JSON.parse(l) as { id: string; ground_truth: string[][] }).map(a => [a.id, a.ground_truth]));
      for (const e of entries) if (imported.has(e.id)) input.push({ id: e.id, initial_config: e.initial_config, involved_classes: e.involved_classes, long_context: c === 'long_context', gold: answers.get(e.id) });
    }
    const t0 = Date.now();
    driver = await upstream(dirname(layout.root), input, cpythonPath);
    console.log(`    CPython ${[...driver.values()][0]?.python} replayed ${driver.size} entries in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });
  after(async () => {
    await python?.close();
    redis?.disconnect();
    if (config) await dropPrefix(config.redis.prefix);
    if (cpythonPath) rmSync(cpythonPath, { recursive: true, force: true });
  });

  it('imports every entry (with mpmath supplied; without it, every entry but those whose gold calls need mpmath)', () => {
    expect(BFCL_CATEGORIES).to.include('base');
    if (mpmath) {
      expect(summary.skipped).to.deep.equal([]);
      expect(summary.scenarios.imported).to.equal(200 * CATEGORIES.length);
      expect(summary.notes.join('\n')).to.match(/math_api\.py imports mpmath: the Python runtime is given it/);
      return;
    }
    expect(summary.skipped.map(s => s.problem).filter(p => !/needs mpmath/.test(p))).to.deep.equal([]);
    expect(summary.scenarios.imported + summary.skipped.length).to.equal(200 * CATEGORIES.length);
  });

  it('gives the same results and public state as upstream in CPython after every turn, entry for entry', () => {
    const differ: string[] = [];
    for (const s of scenarios) {
      const gold = goldOf(s);
      const up = driver.get(s.id)!;
      const bad = gold.findIndex((t, i) => {
        const u = up.turns[i]!;
        return t.results.length !== u.results.length || t.results.some((r, j) => !sameResult(r, u.results[j]!)) || canonicalJson(t.state) !== canonicalJson(u.state);
      });
      if (bad >= 0 || up.turns.length !== gold.length) differ.push(`${s.id} turn ${bad}`);
    }
    console.log(`    parity: ${scenarios.length - differ.length}/${scenarios.length} entries equal turn by turn${differ.length ? `; differ: ${differ.join(', ')}` : ''}`);
    expect(differ).to.deep.equal([]);
    // With mpmath, the entries that call MathAPI.logarithm are among those compared: their results are BFCL's str() of {"result": mpf(...)}.
    const logarithm = scenarios.filter(s => driver.get(s.id)!.turns.some(t => t.calls.some(c => c.name === 'logarithm')));
    console.log(`    entries calling logarithm: ${logarithm.length} (${logarithm.map(s => s.id).join(', ')})`);
    if (mpmath) {
      expect(logarithm.length).to.equal(4 * CATEGORIES.length);
      for (const s of logarithm) expect(goldOf(s).flatMap(t => t.results).some(r => typeof r === 'string' && /^\{'result': mpf\('/.test(r)), s.id).to.equal(true);
    } else expect(logarithm).to.deep.equal([]);
  });

  /** A scripted multi-turn episode of an agent making `calls` per turn, scored by the scenario's BFCL check. */
  const episode = (s: ScenarioRecord, calls: readonly (readonly AgentCall[])[]) =>
    runEpisode(
      { gateway: callingGateway(calls), sandbox: python },
      { runId: 'bfcl', scenario: s, env: envs.get(s.environmentId)!, mode: 'non-conversational', sample: 0, limits: { maxSteps: 200, maxTokens: 0, maxWallMs: 600_000 }, sandboxLimits: LIMITS, policyModel: null, userModel: null, sampling: { temperature: 0, maxTokens: 100 } },
    );

  it('the gold calls, submitted as the agent\'s, pass the check of every imported entry whose gold calls fit their tools\' schemas and turns; those that call a tool their turn does not offer fail', async () => {
    const failed: string[] = [];
    const offSchema: string[] = [];
    const notOffered: string[] = [];
    const notOfferedPassed: string[] = [];
    for (const s of scenarios) {
      const turns = driver.get(s.id)!.turns.map(u => u.calls);
      // envfleet checks an agent's arguments against the tool's schema (BFCL does not): a gold call that does not fit cannot be made.
      const tools = new Map((envs.get(s.environmentId)!.tools ?? []).map(t => [t.function.name, compileJsonSchema(t.function.parameters ?? {})]));
      const bad = turns.flat().filter(c => !tools.get(c.name)!(c.arguments));
      if (bad.length) offSchema.push(`${s.id} (${bad.map(c => `${c.name}(${JSON.stringify(c.arguments)})`).join(', ')})`);
      // A scripted turn offers the tools but the excluded ones and those withheld until a later turn; an agent's call of
      // another is TOOL_NOT_OFFERED. Some BFCL gold answers call a withheld function before the turn that adds it.
      const script = s.script!;
      const added = new Set<string>();
      const early = turns.flatMap((calls, i) => {
        for (const n of script.turns[i]?.addTools ?? []) added.add(n);
        return calls.filter(c => (script.excludedTools ?? []).includes(c.name) || ((script.withheldTools ?? []).includes(c.name) && !added.has(c.name))).map(c => `${c.name} in turn ${i}`);
      });
      if (early.length) notOffered.push(`${s.id} (${early.join(', ')})`);
      const t = await episode(s, turns);
      if (early.length && !bad.length) {
        if (t.reward !== 0 || !t.steps.some(st => st.runtimeError === 'TOOL_NOT_OFFERED')) notOfferedPassed.push(s.id);
      } else if (t.reward !== 1 && !bad.length) failed.push(`${s.id}: ${t.termination.reason} ${t.checks[0]?.error ?? t.checksError}`);
    }
    const fit = scenarios.length - new Set([...offSchema, ...notOffered].map(x => x.split(' ')[0])).size;
    console.log(`    gold as the agent: ${fit - failed.length}/${fit} pass; ${offSchema.length} entries have gold calls outside their tools' schemas: ${offSchema.join('; ')}; ${notOffered.length} call a tool their turn does not offer (TOOL_NOT_OFFERED, reward 0): ${notOffered.join('; ')}`);
    expect(failed).to.deep.equal([]);
    expect(notOfferedPassed).to.deep.equal([]);
  });

  it('dropping a state-changing call fails with multi_turn:instance_state_mismatch', async function () {
    const s = scenarios.find(x => x.id === 'multi_turn_base_0');
    if (!s) return this.skip();
    const calls = driver.get(s.id)!.turns.map(u => u.calls);
    const first = calls[0]!.filter(c => c.name !== 'mv');
    expect(first.length).to.equal(calls[0]!.length - 1);
    const t = await episode(s, [first, ...calls.slice(1)]);
    expect(t.reward).to.equal(0);
    expect(t.checks[0]!.error).to.match(/multi_turn:instance_state_mismatch: turn 0/);
  });

  it('a call in a turn whose gold answer is empty fails with the irrelevance error', async () => {
    const s = scenarios.find(x => goldOf(x).some(t => t.calls === 0) && x.environmentId === 'bfcl-TravelAPI')!;
    const gold = goldOf(s);
    const empty = gold.findIndex(t => t.calls === 0);
    const calls = driver.get(s.id)!.turns.map(u => u.calls);
    const readOnly = { name: 'list_all_airports', arguments: {} };
    const t = await episode(s, calls.map((c, i) => (i === empty ? [readOnly] : c)));
    expect(t.reward).to.equal(0);
    expect(t.checks[0]!.error).to.match(new RegExp(`multi_turn:irrelevance_error:decoder_success: turn ${empty}`));
  });
});
