import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { environmentLine, scenarioLine } from '../../../src/datasets/lines.js';
import { environmentRecordFromLine, EnvironmentLine } from '../../../src/datasets/environments-file.js';
import { ScenarioLine, scenarioRecordFromLine } from '../../../src/datasets/scenarios-file.js';
import { toVerlRow } from '../../../src/datasets/rl-exports.js';
import { environmentFromEnvscaler, pythonImports, scenarioFromEnvscaler } from '../../../src/importers/envscaler-records.js';
import { findEnvscalerFiles, importEnvscaler, type EnvscalerFiles } from '../../../src/importers/envscaler.js';
import { scoreFinalState } from '../../../src/rollouts/score.js';
import type { RunOptions } from '../../../src/runs/options.js';
import type { DocKind, RunDocuments, RunRecord, RunStore } from '../../../src/runs/store.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../../src/sandbox/limits.js';
import type { ScenarioRecord } from '../../../src/scenarios/types.js';
import type { EnvironmentRecord } from '../../../src/synthesis/types.js';
import { rejection } from '../../helpers/assert.js';

const FIXTURES = new URL('../../fixtures/envscaler/', import.meta.url).pathname;
const NOW = '2026-12-01T00:00:00.000Z';
const place = { file: 'f.json', index: 0, line: 1 };
const OPTIONS = { limits: DEFAULT_SANDBOX_LIMITS, models: {} } as unknown as RunOptions;

/** The part of the run store an import uses, in memory, counting writes. */
function memoryStore() {
  const runs = new Map<string, RunRecord>();
  const docs = new Map<string, unknown>();
  const order = new Map<string, string[]>();
  let writes = 0;
  const store = {
    createRun: (r: RunRecord) => Promise.resolve(runs.has(r.id) ? false : (runs.set(r.id, r), true)),
    getRun: (id: string) => Promise.resolve(runs.get(id) ?? null),
    putDoc(runId: string, kind: DocKind, id: string, value: unknown) {
      writes += 1;
      const key = `${runId}|${kind}`;
      if (!docs.has(`${key}|${id}`)) order.set(key, [...(order.get(key) ?? []), id]);
      docs.set(`${key}|${id}`, JSON.parse(JSON.stringify(value)));
      return Promise.resolve();
    },
    getDoc: (runId: string, kind: DocKind, id: string) => Promise.resolve((docs.get(`${runId}|${kind}|${id}`) ?? null) as never),
    listDocIds: (runId: string, kind: DocKind) => Promise.resolve(order.get(`${runId}|${kind}`) ?? []),
  };
  return {
    store: store as unknown as RunStore,
    runs,
    writes: () => writes,
    all: <K extends DocKind>(runId: string, kind: K) => (order.get(`${runId}|${kind}`) ?? []).map(id => docs.get(`${runId}|${kind}|${id}`) as RunDocuments[K]),
  };
}

const ENVS = JSON.parse(readFileSync(join(FIXTURES, 'github/191_env_metadata.json'), 'utf8')) as Record<string, Record<string, unknown>>;
const RL = JSON.parse(readFileSync(join(FIXTURES, 'github/rl_scenario_metadata.json'), 'utf8')) as Record<string, unknown>[];

describe('importers: EnvScaler records → environment and scenario documents', () => {
  it('maps an env (GitHub shape) to a kept Python environment with its tools, descriptive fields and provenance', () => {
    const m = environmentFromEnvscaler(ENVS['env_7_rl'], { ...place, key: 'env_7_rl' }, 'r', NOW);
    expect(m.ok).to.equal(true);
    if (!m.ok) return;
    const env = m.value;
    expect(env).to.deep.include({ id: 'env_7_rl', status: 'kept', className: 'TeaHouseReservations', language: 'python', runId: 'r' });
    expect(env.source).to.equal(ENVS['env_7_rl']!['env_class_code']);
    expect(env.tools!.map(t => t.function.name)).to.deep.equal(['list_free_tables', 'book_table', 'cancel_booking']);
    expect(env.description).to.deep.equal({ summary: '茶馆 table reservations 🍵', introduction: ENVS['env_7_rl']!['environment_introduction'] });
    expect(env.state!.rules).to.deep.equal(['A booked table cannot be booked again.', 'Cancelling a booking frees its table.']);
    expect(env.state!.entities.map(e => [e.name, e.attributes.map(a => a.name)])).to.deep.equal([
      ['Table', ['table_id', 'seats', 'status']],
      ['Booking', ['booking_id', 'table_id', 'guest', 'note']],
    ]);
    expect(env.operations!.map(o => [o.name, o.kind])).to.deep.equal([
      ['list_free_tables', 'query'],
      ['book_table', 'state_change'],
      ['cancel_booking', 'state_change'],
    ]);
    expect(env.lineage).to.deep.include({ source: 'envscaler', createdAt: NOW });
    expect(env.lineage.original).to.deep.equal({ envId: 'env_7_rl', className: 'TeaHouseReservations', file: 'f.json', record: 'env_7_rl' });
    expect(m.warnings).to.deep.equal([]);
  });

  it('accepts tools and the structured fields as JSON strings (Hugging Face rows), giving the same environment', () => {
    const github = environmentFromEnvscaler(ENVS['env_7_rl'], place, 'r', NOW);
    const row = { ...ENVS['env_7_rl'] };
    for (const k of ['tools', 'state_space_definition', 'constraints_rules', 'operation_list']) row[k] = JSON.stringify(row[k]);
    const hf = environmentFromEnvscaler(row, place, 'r', NOW);
    expect(hf.ok && github.ok && hf.value).to.deep.equal(github.ok && github.value);
  });

  it('refuses a malformed env with what is wrong', () => {
    const bad = (over: Record<string, unknown>) => {
      const m = environmentFromEnvscaler({ ...ENVS['env_7_rl'], ...over }, place, 'r', NOW);
      return m.ok ? 'ok' : m.problem;
    };
    expect(bad({ env_class_name: 'Broken-Env' })).to.match(/not a Python identifier/);
    expect(bad({ env_class_name: 'Other' })).to.match(/does not define class Other/);
    expect(bad({ tools: undefined })).to.match(/tools must be a non-empty list/);
    expect(bad({ tools: '[{"type": "function"' })).to.match(/tools is a string but not JSON/);
    expect(bad({ tools: [{ type: 'function', function: { name: 'book$table' } }] })).to.match(/tools\[0\].*(not a Python identifier|JavaScript identifier)/);
    expect(bad({ tools: [{ type: 'function', function: { name: 'a' } }, { type: 'function', function: { name: 'a' } }] })).to.match(/given twice/);
    expect(bad({ env_class_code: '' })).to.match(/env_class_code/);
    expect(environmentFromEnvscaler([1], place, 'r', NOW)).to.deep.include({ ok: false });
  });

  it('warns about a tool without its method and an import outside the runtime allow-list (the runtime refuses it when it loads)', () => {
    const m = environmentFromEnvscaler({ ...ENVS['env_7_rl'], env_class_code: `import os, json\nfrom numpy.linalg import norm\n${ENVS['env_7_rl']!['env_class_code'] as string}`.replace('def cancel_booking', 'def cancel') }, place, 'r', NOW);
    expect(m.ok && m.warnings.join('\n')).to.match(/tool cancel_booking has no "def cancel_booking\("/).and.match(/imports os, numpy/);
    expect(pythonImports('from typing import Dict\nimport copy, re.sub\n    import time\n')).to.deep.equal(['typing', 'copy', 're', 'time']);
  });

  it('warns about a tool parameter the Python runtime can never be given (not a Python identifier: every call passing it is INVALID_ARGUMENTS; accented letters are identifiers)', () => {
    const env = ENVS['env_7_rl']!;
    const tools = (env['tools'] as { function: { name: string; parameters: { properties: Record<string, unknown> } } }[]).map((t, i) =>
      i === 0 ? { ...t, function: { ...t.function, parameters: { ...t.function.parameters, properties: { ...t.function.parameters.properties, prénom: { type: 'string' }, 'user-id': { type: 'string' } } } } } : t,
    );
    const m = environmentFromEnvscaler({ ...env, tools }, place, 'r', NOW);
    expect(m.ok).to.equal(true);
    const name = tools[0]!.function.name;
    expect(m.ok && m.warnings).to.deep.equal([`tool ${name}: the parameter "user-id" is not a Python identifier (letters, digits and _, not starting with a digit): the Python runtime refuses every call that passes it (INVALID_ARGUMENTS); rename it in tools and in the method`]);
  });

  const envOf = (id: string) => (id === 'env_7_rl' ? { id: 'env_7_rl', envId: 'env_7_rl', className: 'TeaHouseReservations' } : undefined);

  it('maps an RL scenario: init_config (a dict or a JSON string) as the initial state, checklist_with_func as Python checks', () => {
    const a = scenarioFromEnvscaler(RL[0], place, 'r', NOW, envOf, 'rl');
    const b = scenarioFromEnvscaler(RL[1], place, 'r', NOW, envOf, null);
    expect(a.ok && b.ok).to.equal(true);
    if (!a.ok || !b.ok) return;
    expect(a.value.split).to.equal('rl');
    expect(b.value.split).to.equal('rl');
    const s = a.value.scenario;
    expect(s).to.deep.include({ id: 'env_7_rl-task_1', environmentId: 'env_7_rl', status: 'ready', task: 'Book table T1 for 李雷 with the note 靠窗 🍵.' });
    expect(s.initialState).to.deep.equal(RL[0]!['init_config']);
    expect(b.value.scenario.initialState).to.deep.equal(JSON.parse(RL[1]!['init_config'] as string));
    expect(s.checklist).to.deep.equal((RL[0]!['checklist_with_func'] as { check_item: string; check_func: string }[]).map(c => ({ item: c.check_item, check: c.check_func, language: 'python' })));
    expect(s.checklistItems).to.deep.equal(['T1 is booked', 'the booking is for 李雷 near the window (靠窗)']);
    expect(s.unscored).to.equal(undefined);
    expect(s.lineage.original).to.deep.equal({ envId: 'env_7_rl', className: 'TeaHouseReservations', taskId: 'env_7_rl-task_1', split: 'rl', file: 'f.json', record: 0 });
  });

  it('maps an SFT scenario (no checks) to an unscored scenario', () => {
    const m = scenarioFromEnvscaler({ env_id: 'env_7_rl', task: '看看空桌 👀', init_config: '' }, place, 'r', NOW, envOf, null);
    expect(m.ok).to.equal(true);
    if (!m.ok) return;
    expect(m.value.split).to.equal('sft');
    expect(m.value.scenario).to.deep.include({ unscored: true, initialState: {} });
    expect(m.value.scenario.checklist).to.deep.equal([]);
    expect(m.value.scenario.id).to.match(/^scn-[0-9a-f]{16}$/);
  });

  it('refuses a malformed scenario with what is wrong', () => {
    const bad = (over: Record<string, unknown>) => {
      const m = scenarioFromEnvscaler({ ...RL[0], ...over }, place, 'r', NOW, envOf, null);
      return m.ok ? 'ok' : m.problem;
    };
    expect(bad({ init_config: [1, 2] })).to.match(/init_config must be a JSON object/);
    expect(bad({ init_config: '{"a": ' })).to.match(/init_config is a string but not JSON/);
    expect(bad({ task: '' })).to.match(/task is missing/);
    expect(bad({ env_id: 'env_9_rl' })).to.match(/environment env_9_rl is not imported/);
    expect(bad({ env_class_name: 'Other' })).to.match(/differs from its environment/);
    expect(bad({ checklist_with_func: [{ check_item: 'x', check_func: 'def check(s):\n  return True' }] })).to.match(/does not define check_func/);
    expect(bad({ checklist_with_func: [{ check_item: 1, check_func: 'def check_func(s): return True' }] })).to.match(/check_item is not a string/);
    expect(bad({ checklist_with_func: { a: 1 } })).to.match(/must be a list/);
  });
});

describe('importers: envscaler import into a run', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'envfleet-envscaler-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const github = (): Promise<EnvscalerFiles> => findEnvscalerFiles(join(FIXTURES, 'github'));

  it('finds the published file names in a directory, and says what it expected when they are not there', async () => {
    const files = await github();
    expect(files.envs).to.match(/191_env_metadata\.json$/);
    expect(files.scenarios.map(s => [s.path.split('/').pop(), s.split])).to.deep.equal([
      ['rl_scenario_metadata.json', 'rl'],
      ['sft_scenario_metadata.json', 'sft'],
    ]);
    expect((await rejection(findEnvscalerFiles(dir)) as Error).message).to.match(/no env metadata file .*191_env_metadata\.json/);
  });

  it('imports both shapes to the same documents, skips malformed records with file, place and reason, and adds nothing the second time', async () => {
    const a = memoryStore();
    const first = await importEnvscaler(a.store, { runId: 'es', files: await github(), split: 'all' }, OPTIONS);
    expect(first.created).to.equal(true);
    expect(a.runs.get('es')!.input).to.equal('envscaler');
    expect(first.environments).to.deep.equal({ imported: 2, unchanged: 0, updated: 0 });
    expect(first.scenarios).to.deep.include({ imported: 3, rl: 2, sft: 1 });
    expect(first.checks).to.equal(3);
    expect(first.unscored).to.equal(1);
    expect(first.skipped.map(s => `${s.file} ${s.where}: ${s.problem}`)).to.deep.equal([
      '191_env_metadata.json env_id env_9_rl (line 171): env_class_name "Broken-Env" is not a Python identifier (ASCII letters, digits and _, not starting with a digit)',
      'rl_scenario_metadata.json task_id env_7_rl-task_3 (line 58): init_config must be a JSON object of attribute → value (or a JSON string of one), not an array',
      'rl_scenario_metadata.json task_id env_9_rl-task_1 (line 69): its environment env_9_rl is not imported (not in the env metadata file, or skipped there)',
    ]);

    const again = await importEnvscaler(a.store, { runId: 'es', files: await github(), split: 'all' }, OPTIONS);
    const writes = a.writes();
    expect(again.created).to.equal(false);
    expect(again.environments).to.deep.equal({ imported: 0, unchanged: 2, updated: 0 });
    expect(again.scenarios).to.deep.include({ imported: 0, unchanged: 3, updated: 0 });
    expect(a.writes()).to.equal(writes);
    expect(a.all('es', 'scenario').map(s => [s.id, s.environmentId, s.index])).to.deep.equal([
      ['env_7_rl-task_1', 'env_7_rl', 0],
      ['env_7_rl-task_2', 'env_7_rl', 1],
      ['env_2_sft-task_1', 'env_2_sft', 0],
    ]);

    const hf = memoryStore();
    const hfDir = join(FIXTURES, 'hf');
    const h = await importEnvscaler(hf.store, { runId: 'es', files: await findEnvscalerFiles(hfDir), split: 'all' }, OPTIONS);
    expect(h.skipped.map(s => `${s.file} ${s.where}`)).to.deep.equal(['envscaler_191_env_metadata.jsonl record 1 (line 2)']);
    expect(h.skipped[0]!.problem).to.match(/not valid JSON/);
    // The same documents but for where they were read.
    const strip = (d: EnvironmentRecord | ScenarioRecord) => ({ ...d, lineage: { ...d.lineage, createdAt: '', original: { ...d.lineage.original!, file: '', record: 0 } } });
    expect(hf.all('es', 'env').map(strip)).to.deep.equal(a.all('es', 'env').map(strip));
    expect(hf.all('es', 'scenario').map(strip)).to.deep.equal(a.all('es', 'scenario').map(strip));
  });

  it("keeps every scenario of task_ids that repeat (EnvScaler's own MMDD-HHMMSS timestamps) across environments (prefixed there) and in one, keeps a task_id of one environment as it is, reads integer task_ids and a page of Hugging Face's rows API, and keeps a scenario where an earlier version imported it", async () => {
    const SFT = JSON.parse(readFileSync(join(FIXTURES, 'github/sft_scenario_metadata.json'), 'utf8')) as Record<string, unknown>[];
    const T = '0315-142201';
    const records = [
      { ...RL[0], task_id: T },
      { ...RL[1], task_id: T }, // the same second, the same environment, another task
      { ...RL[0], task_id: T }, // the first again, as it was
      { ...SFT[0], task_id: T }, // the same second, another environment
      { ...RL[1], task_id: 42, task: 'Réservez la table 7 pour Zoë 🍵 — 茶' },
    ];
    // As `curl https://datasets-server.huggingface.co/rows?…` saves a page.
    const page = join(dir, 'rows-page.json');
    await writeFile(page, JSON.stringify({ features: [{ feature_idx: 0, name: 'env_id', type: { dtype: 'string' } }], rows: records.map((row, i) => ({ row_idx: 100 + i, row, truncated_cells: [] })), num_rows_total: 5, num_rows_per_page: 100, partial: false }));
    const files: EnvscalerFiles = { envs: join(FIXTURES, 'github/191_env_metadata.json'), scenarios: [{ path: page, split: null }] };

    const a = memoryStore();
    const r = await importEnvscaler(a.store, { runId: 'ts', files, split: 'all' }, OPTIONS);
    const scenarios = a.all('ts', 'scenario');
    expect(scenarios.map(s => [s.id.replace(/-[0-9a-f]{8}$/, '-<hash>'), s.environmentId, s.lineage.original!.taskId, s.lineage.original!.record])).to.deep.equal([
      [`env_7_rl-${T}`, 'env_7_rl', T, 100],
      [`env_7_rl-${T}-<hash>`, 'env_7_rl', T, 101],
      [`env_2_sft-${T}`, 'env_2_sft', T, 103],
      // A task_id in one environment only keeps its id.
      ['42', 'env_7_rl', '42', 104],
    ]);
    expect(scenarios[3]!.task).to.equal('Réservez la table 7 pour Zoë 🍵 — 茶');
    expect(r.skipped.map(s => `${s.file} ${s.where}: ${s.problem}`).slice(1)).to.deep.equal([`rows-page.json task_id ${T} (row_idx 102 of the rows page at line 1): scenario env_7_rl-${T} (the same task, initial state and checks) was already read at rows-page.json task_id ${T} (row_idx 100 of the rows page at line 1)`]);
    // The same file again: the same ids, nothing written.
    const writes = a.writes();
    const again = await importEnvscaler(a.store, { runId: 'ts', files, split: 'all' }, OPTIONS);
    expect(again.scenarios).to.deep.include({ imported: 0, unchanged: 4 });
    expect(a.writes()).to.equal(writes);

    // A run where an earlier version imported the first under its task_id alone keeps it there, not twice.
    const b = memoryStore();
    await b.store.createRun(a.runs.get('ts')!);
    for (const e of a.all('ts', 'env')) await b.store.putDoc('ts', 'env', e.id, e);
    await b.store.putDoc('ts', 'scenario', T, { ...scenarios[0]!, id: T });
    const upgraded = await importEnvscaler(b.store, { runId: 'ts', files, split: 'all' }, OPTIONS);
    expect(upgraded.scenarios).to.deep.include({ imported: 3, unchanged: 1 });
    expect(b.all('ts', 'scenario').map(s => s.id)).to.include(T).and.not.include(`env_7_rl-${T}`);

    // A task_id that fit alone but not prefixed (over 120 characters then) was its id too: kept there, not added again.
    const long = `t${'9'.repeat(114)}`;
    const longFile = join(dir, 'long.json');
    await writeFile(longFile, JSON.stringify([{ ...RL[0], task_id: long }, { ...SFT[0], task_id: long }]));
    const longFiles: EnvscalerFiles = { envs: files.envs, scenarios: [{ path: longFile, split: null }] };
    const fresh = memoryStore();
    await importEnvscaler(fresh.store, { runId: 'lg', files: longFiles, split: 'all' }, OPTIONS);
    const hashed = fresh.all('lg', 'scenario').find(x => x.environmentId === 'env_7_rl')!;
    expect(hashed.id).to.match(/^scn-/);
    const c = memoryStore();
    await c.store.createRun(fresh.runs.get('lg')!);
    for (const e of fresh.all('lg', 'env')) await c.store.putDoc('lg', 'env', e.id, e);
    await c.store.putDoc('lg', 'scenario', long, { ...hashed, id: long });
    const kept = await importEnvscaler(c.store, { runId: 'lg', files: longFiles, split: 'all' }, OPTIONS);
    expect(kept.scenarios).to.deep.include({ imported: 1, unchanged: 1 });
    expect(c.all('lg', 'scenario').map(s => s.id)[0]).to.equal(long);
    expect(c.all('lg', 'scenario')).to.have.length(2);
  });

  it('leaves an environment changed after episodes ran on it as it was, and writes none of its scenarios, saying so', async () => {
    const a = memoryStore();
    await importEnvscaler(a.store, { runId: 'ch', files: await github(), split: 'all' }, OPTIONS);
    await a.store.putDoc('ch', 'trajectory', 'trj-1', { id: 'trj-1', runId: 'ch', scenarioId: 'env_7_rl-task_1', environmentId: 'env_7_rl' } as never);
    const envs = JSON.parse(JSON.stringify(ENVS)) as Record<string, Record<string, unknown>>;
    envs['env_7_rl']!['env_class_code'] = `${String(envs['env_7_rl']!['env_class_code'])}\n# « changé » 🍵\n`;
    envs['env_2_sft']!['env_class_code'] = `${String(envs['env_2_sft']!['env_class_code'])}\n# no episode ran on this one\n`;
    const changed = join(dir, '191_env_metadata.json');
    await writeFile(changed, JSON.stringify(envs, null, 2));
    const rl = RL.map(r => ({ ...r, task: `${String(r['task'])} (v2)` }));
    const rlFile = join(dir, 'rl_scenario_metadata.json');
    await writeFile(rlFile, JSON.stringify(rl));
    const r = await importEnvscaler(a.store, { runId: 'ch', files: { envs: changed, scenarios: [{ path: rlFile, split: 'rl' }, { path: join(FIXTURES, 'github/sft_scenario_metadata.json'), split: 'sft' }] }, split: 'all' }, OPTIONS);
    expect(r.environments).to.deep.equal({ imported: 0, unchanged: 0, updated: 1 });
    expect(r.skipped.map(s => s.problem).filter(p => p.includes('rolled out'))).to.deep.equal([
      'run "ch" has episodes rolled out on the earlier version of environment env_7_rl: it is left as it was, and its scenarios are not written (changed here, the export would pair those episodes with the new code and tools); import into another run to roll out the changed one',
    ]);
    expect(a.all('ch', 'env').find(e => e.id === 'env_7_rl')!.source).to.not.include('changé');
    expect(a.all('ch', 'env').find(e => e.id === 'env_2_sft')!.source).to.include('no episode ran');
    // Its scenarios as they were (their tasks changed in the file too).
    expect(a.all('ch', 'scenario').filter(s => s.environmentId === 'env_7_rl').map(s => s.task)).to.deep.equal([RL[0]!['task'], RL[1]!['task']]);
  });

  it('--split and --limit choose the scenarios and the environments they use', async () => {
    const s = memoryStore();
    const rl = await importEnvscaler(s.store, { runId: 'rl', files: await github(), split: 'rl' }, OPTIONS);
    expect(s.all('rl', 'env').map(e => e.id)).to.deep.equal(['env_7_rl']);
    expect(rl.scenarios).to.deep.include({ rl: 2, sft: 0 });
    expect(rl.notSelected).to.deep.equal({ environments: 1, scenarios: 1 });
    const sft = await importEnvscaler(s.store, { runId: 'sft', files: await github(), split: 'sft' }, OPTIONS);
    expect(s.all('sft', 'env').map(e => e.id)).to.deep.equal(['env_2_sft']);
    expect(sft.unscored).to.equal(1);
    await importEnvscaler(s.store, { runId: 'one', files: await github(), split: 'all', limit: 1 }, OPTIONS);
    expect(s.all('one', 'env').map(e => e.id)).to.deep.equal(['env_7_rl']);
    expect(s.all('one', 'scenario').map(e => e.id)).to.deep.equal(['env_7_rl-task_1', 'env_7_rl-task_2']);
  });

  it('refuses a run made from other input unless --append, and never overwrites a synthesized document', async () => {
    const s = memoryStore();
    await s.store.createRun({ id: 'syn', createdAt: NOW, input: 'descriptions', options: OPTIONS });
    expect((await rejection(importEnvscaler(s.store, { runId: "syn", files: await github(), split: "all" }, OPTIONS)) as Error).message).to.match(/made from descriptions.*--append/);
    const synthesized = { id: 'env_2_sft', status: 'kept', lineage: { createdAt: NOW } } as unknown as EnvironmentRecord;
    await s.store.putDoc('syn', 'env', 'env_2_sft', synthesized);
    const r = await importEnvscaler(s.store, { runId: 'syn', files: await github(), split: 'all', append: true }, OPTIONS);
    expect(r.environments.imported).to.equal(1);
    expect(r.skipped.some(k => /already has a kept environment env_2_sft that was not imported/.test(k.problem))).to.equal(true);
    expect(await s.store.getDoc('syn', 'env', 'env_2_sft')).to.deep.equal(synthesized);
    expect(s.all('syn', 'scenario').map(x => x.id)).to.deep.equal(['env_7_rl-task_1', 'env_7_rl-task_2']);
  });

  it('the export lines carry the language, the Python checks and unscored, and read back; unscored scenarios are no RL rows and get no reward', async () => {
    const s = memoryStore();
    await importEnvscaler(s.store, { runId: 'x', files: await github(), split: 'all' }, OPTIONS);
    const [tea, library] = s.all('x', 'env');
    const line = JSON.parse(JSON.stringify(environmentLine(tea!))) as Record<string, unknown>;
    expect(line['language']).to.equal('python');
    const back = environmentRecordFromLine(EnvironmentLine.parse(line), 'x');
    expect(back).to.deep.include({ language: 'python', className: 'TeaHouseReservations', source: tea!.source });
    const [rl1, , sft] = s.all('x', 'scenario');
    const rlBack = scenarioRecordFromLine(ScenarioLine.parse(JSON.parse(JSON.stringify(scenarioLine(rl1!)))), 'x');
    expect(rlBack.checklist).to.deep.equal(rl1!.checklist);
    expect(rlBack.checklist![0]!.language).to.equal('python');
    const sftLine = JSON.parse(JSON.stringify(scenarioLine(sft!))) as Record<string, unknown>;
    expect(sftLine['unscored']).to.equal(true);
    expect(scenarioRecordFromLine(ScenarioLine.parse(sftLine), 'x').unscored).to.equal(true);
    expect(toVerlRow(rl1!, tea!, { runId: 'x', index: 0, split: 'train' })).to.not.equal(null);
    expect(toVerlRow(sft!, library!, { runId: 'x', index: 0, split: 'train' })).to.equal(null);
    const score = await scoreFinalState({ checks: () => Promise.reject(new Error('not called')) }, sft!, {}, DEFAULT_SANDBOX_LIMITS);
    expect(score).to.deep.include({ reward: null });
    expect(score.checksError).to.match(/^UNSCORED/);
  });

  it('keeps multi-byte text exactly', async () => {
    const s = memoryStore();
    await importEnvscaler(s.store, { runId: 'mb', files: await github(), split: 'all' }, OPTIONS);
    const [tea] = s.all('mb', 'env');
    expect(tea!.description.introduction).to.equal('A small tea house (茶馆) in Chengdu takes table bookings; guests may leave notes such as « près de la fenêtre » or 靠窗 🪟.');
    const [first] = s.all('mb', 'scenario');
    expect((first!.initialState!['bookings'] as Record<string, { note: string }>)['B0']!.note).to.equal('生日 🎂');
  });

  it('reports a truncated env file and still imports the records before the cut', async () => {
    const text = readFileSync(join(FIXTURES, 'github/191_env_metadata.json'), 'utf8');
    const cut = join(dir, 'cut_env_metadata.json');
    await writeFile(cut, text.slice(0, text.indexOf('"env_9_rl"') + 40));
    const s = memoryStore();
    const r = await importEnvscaler(s.store, { runId: 'cut', files: { envs: cut, scenarios: [] }, split: 'all' }, OPTIONS);
    expect(r.environments.imported).to.equal(2);
    expect(r.skipped.map(k => k.where)).to.deep.equal(['env_id env_9_rl (line 171)']);
    expect(r.fileProblems.join()).to.match(/truncated/);
  });
});
