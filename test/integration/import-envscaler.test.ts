import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { AppConfig } from '../../config/index.js';
import { loadExportScenarioSource } from '../../src/env-server/file-source.js';
import type { EnvscalerImportSummary } from '../../src/importers/envscaler.js';
import { trajectoryIdOf } from '../../src/runs/ids.js';
import { createRedisRunStore, type RunStore } from '../../src/runs/store.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../src/sandbox/limits.js';
import { ENVFLEET_BIN, childEnv, dropPrefix, requireRedis, testConfig } from '../helpers/integration.js';

const run = promisify(execFile);
const FIXTURES = new URL('../fixtures/envscaler/', import.meta.url).pathname;

/**
 * `envfleet import envscaler` as a user runs it (the build, a child process) against the real Redis,
 * then the run read back: the store's documents and counts, `envfleet export`'s files, and those
 * files loaded as `envfleet serve --environments --scenarios` loads them. The Python code runs in
 * import-envscaler-python.test.ts.
 */
describe('envfleet import envscaler (command line, real Redis)', function () {
  this.timeout(120_000);
  let config: AppConfig;
  let redis: Redis;
  let store: RunStore;
  let dir: string;

  const envfleet = async (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    try {
      const { stdout, stderr } = await run(process.execPath, [ENVFLEET_BIN, ...args], { env: childEnv(config), maxBuffer: 64 << 20 });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };
  const jsonl = async (path: string) => (await readFile(path, 'utf8')).split('\n').filter(Boolean).map(l => JSON.parse(l) as Record<string, unknown>);

  before(async () => {
    await requireRedis();
    config = testConfig(null);
    redis = new Redis(config.redis.url);
    store = createRedisRunStore(redis, config.redis.prefix);
    dir = await mkdtemp(join(tmpdir(), 'envfleet-import-'));
  });
  after(async () => {
    redis.disconnect();
    await dropPrefix(config.redis.prefix);
    await rm(dir, { recursive: true, force: true });
  });

  it('validates its options at startup, saying what to fix', async () => {
    const none = await envfleet('import', 'envscaler', '--run', 'x');
    expect(none.code).to.equal(1);
    expect(none.stderr).to.match(/--from DIR .* or --envs FILE/);
    expect((await envfleet('import', 'envscaler', '--run', 'x', '--from', FIXTURES, '--split', 'train')).stderr).to.match(/--split takes rl, sft or all, not "train"/);
    expect((await envfleet('import', 'envscaler', '--run', 'x', '--from', join(FIXTURES, 'github'), '--envs', 'a.json')).stderr).to.match(/either --from DIR .* not both/);
    expect((await envfleet('import', 'envscaler', '--run', 'x', '--scenarios', 'a.json')).stderr).to.match(/--scenarios needs --envs/);
    expect((await envfleet('import', 'envscaler', '--run', 'x', '--envs', join(FIXTURES, 'nope.json'))).stderr).to.match(/--envs .*nope\.json: no such file/);
    expect((await envfleet('import', 'envscaler', '--run', 'x', '--from', FIXTURES)).stderr).to.match(/no env metadata file/);
    expect((await envfleet('import', 'envscaler', '--run', 'bad name', '--from', join(FIXTURES, 'github'))).stderr).to.match(/run name "bad name" may only contain/);
    expect(await store.getRun('x')).to.equal(null);
  });

  it('imports the GitHub files into a new run: kept Python environments, ready scenarios with Python checks, skipped records with reasons; again adds nothing', async () => {
    const first = await envfleet('import', 'envscaler', '--from', join(FIXTURES, 'github'), '--run', 'es');
    expect(first.code, first.stderr).to.equal(0);
    expect(first.stderr).to.match(/read 3 records of 191_env_metadata\.json/);
    expect(first.stdout).to.match(/run es: created/);
    expect(first.stdout).to.match(/environments: 2 new, 0 unchanged, 0 updated/);
    expect(first.stdout).to.match(/scenarios: +3 new, 0 unchanged, 0 updated \(rl 2, sft 1; 1 without checks/);
    expect(first.stdout).to.match(/checks: +3/);
    expect(first.stdout).to.match(/skipped: +3 records/);
    expect(first.stdout).to.include('191_env_metadata.json env_id env_9_rl (line 171): env_class_name "Broken-Env" is not a Python identifier');
    expect(first.stdout).to.include('rl_scenario_metadata.json task_id env_7_rl-task_3 (line 58): init_config must be a JSON object');

    const again = await envfleet('import', 'envscaler', '--from', join(FIXTURES, 'github'), '--run', 'es');
    expect(again.code, again.stderr).to.equal(0);
    expect(again.stdout).to.match(/run es: exists/);
    expect(again.stdout).to.match(/environments: 0 new, 2 unchanged/);
    expect(again.stdout).to.match(/scenarios: +0 new, 3 unchanged/);

    expect((await store.getRun('es'))!.input).to.equal('envscaler');
    // (ids in write order, and in id order within one millisecond)
    expect((await store.listDocIds('es', 'env')).sort()).to.deep.equal(['env_2_sft', 'env_7_rl']);
    expect((await store.listDocIds('es', 'scenario')).sort()).to.deep.equal(['env_2_sft-task_1', 'env_7_rl-task_1', 'env_7_rl-task_2']);
    expect(await store.statusCounts('es', 'env')).to.deep.equal({ kept: 2 });
    expect(await store.statusCounts('es', 'scenario')).to.deep.equal({ ready: 3 });
    expect((await store.counters('es'))['import']).to.deep.equal({ environments: 2, scenarios: 3, checks: 3 });
    const env = (await store.getDoc('es', 'env', 'env_7_rl'))!;
    expect(env).to.deep.include({ status: 'kept', language: 'python', className: 'TeaHouseReservations' });
    expect(env.lineage).to.deep.include({ source: 'envscaler' });
    expect(env.lineage.original).to.deep.include({ envId: 'env_7_rl', file: '191_env_metadata.json', record: 'env_7_rl' });
    const scn = (await store.getDoc('es', 'scenario', 'env_7_rl-task_1'))!;
    expect(scn.task).to.equal('Book table T1 for 李雷 with the note 靠窗 🍵.');
    expect(scn.checklist!.map(c => c.language)).to.deep.equal(['python', 'python']);
    expect((await store.getDoc('es', 'scenario', 'env_2_sft-task_1'))!.unscored).to.equal(true);

    const status = await envfleet('status', '--run', 'es');
    expect(status.code, status.stderr).to.equal(0);
    expect(status.stdout).to.match(/input: envscaler/);
  });

  it('leaves a changed scenario that has episodes rolled out as it was, saying so; updates one without; a scenario whose place alone moved is unchanged', async () => {
    // A stranger's probe: a scenario changed after its rollouts was written again, and the export paired the rewards its
    // earlier checks gave with the new task and checks.
    const changed = join(dir, 'github-changed');
    await cp(join(FIXTURES, 'github'), changed, { recursive: true });
    const file = join(changed, 'rl_scenario_metadata.json');
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.replace('Book table T1 for 李雷 with the note 靠窗 🍵.', 'Book table T2 for 李雷 — changed 🔁.').replace('Cancel booking B0 — the birthday 🎂 moved.', 'Cancel booking B0, the party moved 🎉.'));
    expect((await envfleet('import', 'envscaler', '--from', join(FIXTURES, 'github'), '--run', 'es-changed')).code).to.equal(0);
    const before = (await store.getDoc('es-changed', 'scenario', 'env_7_rl-task_1'))!;
    // As a rollout leaves it: an episode of the scenario (its group comes once all its episodes are done).
    const trj = trajectoryIdOf('es-changed', 'env_7_rl-task_1', 'non-conversational', 0);
    await store.putDoc('es-changed', 'trajectory', trj, { id: trj, runId: 'es-changed', scenarioId: 'env_7_rl-task_1' } as never);

    const again = await envfleet('import', 'envscaler', '--from', changed, '--run', 'es-changed');
    expect(again.code, again.stderr).to.equal(0);
    expect(again.stdout).to.match(/scenarios: +0 new, 1 unchanged, 1 updated/);
    expect(again.stdout).to.include('has episodes of scenario env_7_rl-task_1 rolled out on its earlier version').and.include('import into another run');
    expect(await store.getDoc('es-changed', 'scenario', 'env_7_rl-task_1')).to.deep.equal(before);
    expect((await store.getDoc('es-changed', 'scenario', 'env_7_rl-task_2'))!.task).to.equal('Cancel booking B0, the party moved 🎉.');
  });

  it('imports the Hugging Face rows (JSON Lines, JSON-string fields) with --envs/--scenarios, --split rl and --json', async () => {
    const r = await envfleet(
      'import', 'envscaler', '--run', 'es-hf', '--split', 'rl', '--json',
      '--envs', join(FIXTURES, 'hf/envscaler_191_env_metadata.jsonl'),
      '--scenarios', join(FIXTURES, 'hf/envscaler_rl_scenario_metadata.jsonl'),
      '--scenarios', join(FIXTURES, 'hf/envscaler_sft_scenario_metadata.jsonl'),
    );
    expect(r.code, r.stderr).to.equal(0);
    const summary = JSON.parse(r.stdout) as EnvscalerImportSummary;
    expect(summary.environments.imported).to.equal(1);
    expect(summary.scenarios).to.deep.include({ imported: 2, rl: 2, sft: 0 });
    expect(summary.notSelected).to.deep.equal({ environments: 1, scenarios: 1 });
    expect(summary.skipped.map(s => `${s.file} ${s.where}`)).to.deep.equal(['envscaler_191_env_metadata.jsonl record 1 (line 2)']);
    expect(summary.skipped[0]!.problem).to.match(/not valid JSON/);
    const [a, b] = await Promise.all([store.getDoc('es', 'scenario', 'env_7_rl-task_2'), store.getDoc('es-hf', 'scenario', 'env_7_rl-task_2')]);
    expect(b!.initialState).to.deep.equal(a!.initialState);
    expect(b!.checklist).to.deep.equal(a!.checklist);
  });

  it('exits 1 saying nothing was imported when every record is skipped (it exited 0 with an empty run)', async () => {
    const bad = join(dir, 'all-bad_env_metadata.jsonl');
    await writeFile(bad, '{"env_id": "réservation-酒店 🏨", \n{"名前": [1, 2\n');
    const r = await envfleet('import', 'envscaler', '--run', 'es-none', '--envs', bad);
    expect(r.code, r.stderr).to.equal(1);
    expect(r.stdout).to.match(/skipped: +2 records/);
    expect(r.stderr).to.match(/nothing was imported: all 2 records were skipped .*run the same command again; run es-none was created empty \(envfleet runs delete --run es-none/);
  });

  it('shows what a data file says in its skipped records without sending its control characters to the terminal (an ANSI escape, a right-to-left override, a NUL)', async () => {
    const odd = join(dir, 'odd_env_metadata.jsonl');
    await writeFile(odd, `${JSON.stringify({ env_id: 'bad\u001b[31mRED\u001b[0m\u202eevil\u0000nul 日本 🏨', tools: [] })}\n`);
    const r = await envfleet('import', 'envscaler', '--run', 'es-odd', '--envs', odd);
    expect(r.stdout).to.include('  odd_env_metadata.jsonl env_id bad\ufffd[31mRED\ufffd[0m\ufffdevil\ufffdnul 日本 🏨 (line 1): ');
    for (const c of ['\u0000', '\u001b', '\u202e']) expect(r.stdout).not.to.include(c);
    // --json keeps the id as the file wrote it
    const json = await envfleet('import', 'envscaler', '--run', 'es-odd', '--envs', odd, '--json');
    expect((JSON.parse(json.stdout) as { skipped: { where: string }[] }).skipped[0]!.where).to.include('bad\u001b[31mRED');
  });

  it('refuses a run made by envfleet synth unless --append', async () => {
    await store.createRun({ id: 'synth-run', createdAt: new Date().toISOString(), input: 'descriptions', options: { limits: DEFAULT_SANDBOX_LIMITS, models: {} } as never });
    const refused = await envfleet('import', 'envscaler', '--from', join(FIXTURES, 'github'), '--run', 'synth-run');
    expect(refused.code).to.equal(1);
    expect(refused.stderr).to.match(/run "synth-run" exists and was made from descriptions .*--append/);
    const appended = await envfleet('import', 'envscaler', '--from', join(FIXTURES, 'github'), '--run', 'synth-run', '--append', '--limit', '1');
    expect(appended.code, appended.stderr).to.equal(0);
    expect(await store.listDocIds('synth-run', 'env')).to.deep.equal(['env_7_rl']);
  });

  it('refuses envfleet synth into an imported run, as import refuses a synthesized one (nothing submitted)', async () => {
    const before = await store.listDocIds('es', 'env');
    const refused = await envfleet('synth', '--run', 'es', '--descriptions', 'fixtures/demo/python-descriptions.jsonl', '--no-wait');
    expect(refused.code).to.equal(1);
    expect(refused.stderr).to.match(/run "es" holds environments imported with envfleet import envscaler.*another run name/);
    expect(await store.listDocIds('es', 'env')).to.deep.equal(before);
  });

  it('envfleet export writes the imported run as environments.jsonl and scenarios.jsonl that envfleet serve loads; SFT scenarios are no RL rows', async () => {
    const out = join(dir, 'export');
    const r = await envfleet('export', '--run', 'es', '--out', out);
    expect(r.code, r.stderr).to.equal(0);
    // The formats that need trajectories are said not written, with what to run (they were left out without a word).
    expect(r.stderr).to.include('note: no openai, sharegpt, llamafactory, hf, rl files written: run "es" has no trajectories yet (roll out first: envfleet rollouts --run es)');
    const byId = (a: Record<string, unknown>, b: Record<string, unknown>) => String(a['id']).localeCompare(String(b['id']));
    const envs = (await jsonl(join(out, 'environments.jsonl'))).sort(byId).reverse();
    expect(envs.map(e => [e['id'], e['status'], e['language'], e['className']])).to.deep.equal([
      ['env_7_rl', 'kept', 'python', 'TeaHouseReservations'],
      ['env_2_sft', 'kept', 'python', 'CafeLibrary'],
    ]);
    const fixture = JSON.parse(await readFile(join(FIXTURES, 'github/191_env_metadata.json'), 'utf8')) as Record<string, { env_class_code: string; environment_introduction: string }>;
    expect(envs[0]!['source']).to.equal(fixture['env_7_rl']!.env_class_code);
    expect(envs[0]!['introduction']).to.equal(fixture['env_7_rl']!.environment_introduction);
    expect((envs[0]!['lineage'] as { source: string }).source).to.equal('envscaler');
    const scenarios = (await jsonl(join(out, 'scenarios.jsonl'))).sort(byId);
    expect(scenarios.map(s => [s['id'], (s['checklist'] as unknown[]).length, s['unscored'] ?? false])).to.deep.equal([
      ['env_2_sft-task_1', 0, true],
      ['env_7_rl-task_1', 2, false],
      ['env_7_rl-task_2', 1, false],
    ]);
    expect((scenarios[1]!['checklist'] as { language: string }[])[0]!.language).to.equal('python');
    const verl = await jsonl(join(out, 'rl-verl.json'));
    expect(verl.map(v => (v['extra_info'] as { scenario_id: string }).scenario_id).sort()).to.deep.equal(['env_7_rl-task_1', 'env_7_rl-task_2']);

    const served = await loadExportScenarioSource({ environments: join(out, 'environments.jsonl'), scenarios: join(out, 'scenarios.jsonl') }, DEFAULT_SANDBOX_LIMITS);
    expect(served).to.deep.include({ ready: 3, unservable: 0, environments: 2 });
    const s = await served.source.scenario('env_7_rl-task_1');
    expect(s.env).to.deep.include({ language: 'python', className: 'TeaHouseReservations' });
    expect(s.scenario.checklist).to.deep.equal((await store.getDoc('es', 'scenario', 'env_7_rl-task_1'))!.checklist);
    expect((await served.source.scenario('env_2_sft-task_1')).scenario.unscored).to.equal(true);
  });
});
