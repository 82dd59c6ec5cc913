import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { environmentLine, scenarioLine } from '../../../src/datasets/lines.js';
import { EnvServerError } from '../../../src/env-server/errors.js';
import { loadExportScenarioSource } from '../../../src/env-server/file-source.js';
import { createSessionRegistry } from '../../../src/env-server/sessions.js';
import { InputFileError } from '../../../src/sandbox/files.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../../src/sandbox/limits.js';
import { createLocalSandboxRunner } from '../../../src/sandbox/runner.js';
import type { ScenarioRecord } from '../../../src/scenarios/types.js';
import type { EnvironmentRecord } from '../../../src/synthesis/types.js';
import { rejection } from '../../helpers/assert.js';

const createdAt = '2026-01-01T00:00:00.000Z';
const LIMITS = { ...DEFAULT_SANDBOX_LIMITS, callDeadlineMs: 2_000 };
const MULTI = 'Réservez la chambre — 确认预订 ✅ 📚 naïve café';

const env = (id: string, over: Partial<EnvironmentRecord> = {}): EnvironmentRecord => ({
  id,
  runId: 'demo',
  status: 'kept',
  description: { summary: `Compteur ${id} — 计数器 🔢`, introduction: `Un compteur: ${MULTI}`, task: MULTI },
  state: { className: 'Counter', entities: [], rules: ['n ≥ 0'], stateSchema: { type: 'object', properties: { n: { type: 'number' } } }, exampleState: { n: 0 } },
  className: 'Counter',
  operations: [{ name: 'inc', kind: 'state_change', description: 'add one', parameters: { type: 'object' } }],
  source: 'class Counter { constructor(s) { this.state = s; } inc() { this.state.n += 1; return { success: true, n: this.state.n }; } }',
  tools: [{ type: 'function', function: { name: 'inc', description: 'add one — 加一', parameters: { type: 'object', properties: {} } } }],
  failure: null,
  lineage: { runId: 'demo', sourceTaskId: null, models: {}, prompts: {}, createdAt },
  ...over,
});

const scenario = (id: string, environmentId: string, over: Partial<ScenarioRecord> = {}): ScenarioRecord => ({
  id,
  runId: 'demo',
  environmentId,
  index: 0,
  status: 'ready',
  initialState: { n: 0, label: '计数 ✅' },
  task: `Add one twice. ${MULTI}`,
  userGoal: { goal: `n = 2 — ${MULTI}`, facts: ['こんにちは'] },
  expectedTools: ['inc'],
  checklistItems: ['n is 2 ✅'],
  checklist: [{ item: 'n is 2 ✅', check: 'function check(f) { return f.n === 2; }' }],
  validation: { onInitialState: [{ item: 'n is 2 ✅', passed: false }], repairs: [] },
  dropReason: null,
  lineage: { runId: 'demo', environmentId, models: { 'scenario.task': 'm' }, prompts: {}, createdAt },
  ...over,
});

const jsonl = (lines: readonly unknown[]) => lines.map(l => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n';

/** Writes environments.jsonl and scenarios.jsonl (lines as the export writes them, or raw strings) into a new directory. */
async function exportDir(envLines: readonly unknown[], scenarioLines: readonly unknown[]) {
  const dir = await mkdtemp(join(tmpdir(), 'envfleet-file-source-'));
  const paths = { environments: join(dir, 'environments.jsonl'), scenarios: join(dir, 'scenarios.jsonl') };
  await writeFile(paths.environments, jsonl(envLines));
  await writeFile(paths.scenarios, jsonl(scenarioLines));
  return paths;
}

const codeOf = async (p: Promise<unknown>): Promise<string> => {
  const err = await rejection(p);
  return err instanceof EnvServerError ? err.code : String(err);
};

describe('env-server: scenarios served from export files', () => {
  it('serves a ready scenario of a kept environment, with the given limits and its multi-byte text intact', async () => {
    const paths = await exportDir([environmentLine(env('env-a'))], [scenarioLine(scenario('scn-a', 'env-a'))]);
    const loaded = await loadExportScenarioSource(paths, LIMITS);
    expect(loaded).to.include({ runName: 'demo', ready: 1, unservable: 0, environments: 1 });
    const served = await loaded.source.scenario('scn-a');
    expect(served.limits).to.deep.equal(LIMITS);
    expect(served.env).to.include({ id: 'env-a', className: 'Counter', status: 'kept' });
    expect(served.env.source).to.equal(env('env-a').source);
    expect(served.env.tools).to.deep.equal(env('env-a').tools);
    expect(served.env.description).to.deep.equal(env('env-a').description);
    const want = scenario('scn-a', 'env-a');
    expect(served.scenario).to.deep.include({ id: 'scn-a', environmentId: 'env-a', status: 'ready', task: want.task, initialState: want.initialState, checklist: want.checklist, userGoal: want.userGoal });
    expect(served.scenario.runId).to.equal('demo');
  });

  it('reads lines longer than a stream chunk whose multi-byte characters cross chunk boundaries, and CRLF line ends', async () => {
    // 64 KiB chunks: 1-, 2-, 3- and 4-byte characters repeated far past one chunk cut some of them in two.
    const long = 'aé确📚'.repeat(30_000);
    const s = scenario('scn-long', 'env-a', { task: long });
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-file-source-'));
    const paths = { environments: join(dir, 'environments.jsonl'), scenarios: join(dir, 'scenarios.jsonl') };
    await writeFile(paths.environments, `\uFEFF${JSON.stringify(environmentLine(env('env-a', { description: { summary: long, introduction: 'x' } })))}\r\n\r\n`);
    await writeFile(paths.scenarios, `${JSON.stringify(scenarioLine(scenario('scn-short', 'env-a')))}\r\n${JSON.stringify(scenarioLine(s))}\r\n`);
    // The test means something only if a chunk boundary does cut a character (a UTF-8 continuation byte there).
    const bytes = readFileSync(paths.scenarios);
    expect([1, 2, 3, 4].some(k => ((bytes[k * 65_536] ?? 0) & 0xc0) === 0x80)).to.equal(true);
    const loaded = await loadExportScenarioSource(paths, LIMITS);
    expect(loaded.ready).to.equal(2);
    const served = await loaded.source.scenario('scn-long');
    expect(served.scenario.task).to.equal(long);
    expect(served.env.description.summary).to.equal(long);
    expect(served.scenario.task).not.to.include('\uFFFD');
  });

  it('names the file, the line and the problem of a line that is not JSON', async () => {
    const paths = await exportDir([environmentLine(env('env-a'))], [scenarioLine(scenario('scn-a', 'env-a')), '', '{"id": "scn-b", "environmentId": "env-a",']);
    const err = await rejection(loadExportScenarioSource(paths, LIMITS));
    expect(err).to.be.instanceOf(InputFileError);
    expect((err as InputFileError).code).to.equal('INPUT_FILE_INVALID');
    expect((err as Error).message).to.include(paths.scenarios).and.include('line 3: not valid JSON').and.include('envfleet export');
  });

  it('refuses a line that is not UTF-8 (Latin-1) and a UTF-16 file, naming the line and byte, where they were served with U+FFFD', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-file-source-'));
    const paths = { environments: join(dir, 'environments.jsonl'), scenarios: join(dir, 'scenarios.jsonl') };
    await writeFile(paths.environments, jsonl([environmentLine(env('env-a'))]));
    // Line 2 is the line of scenario scn-b re-saved as Latin-1 / Windows-1252: "Réservez" becomes R 0xE9 servez.
    const latin = { initialState: { n: 0 }, task: 'Réservez la chambre', userGoal: { goal: 'n = 2', facts: [] }, checklistItems: ['n = 2'], checklist: [{ item: 'n = 2', check: 'function check(f) { return f.n === 2; }' }] };
    const latin1 = Buffer.from(JSON.stringify(scenarioLine(scenario('scn-b', 'env-a', latin))), 'latin1');
    await writeFile(paths.scenarios, Buffer.concat([Buffer.from(JSON.stringify(scenarioLine(scenario('scn-a', 'env-a'))) + '\n'), latin1, Buffer.from('\n')]));
    const err = (await rejection(loadExportScenarioSource(paths, LIMITS))) as Error;
    expect(err).to.be.instanceOf(InputFileError);
    expect(err.message).to.include(paths.scenarios).and.include('line 2: not UTF-8 text: byte 0xE9').and.include('Latin-1').and.include('save the file as UTF-8');

    // The same export saved as UTF-16 (Notepad's "Unicode", PowerShell's >).
    await writeFile(paths.scenarios, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(jsonl([scenarioLine(scenario('scn-a', 'env-a'))]), 'utf16le')]));
    const utf16 = (await rejection(loadExportScenarioSource(paths, LIMITS))) as Error;
    expect(utf16).to.be.instanceOf(InputFileError);
    expect(utf16.message).to.include(paths.scenarios).and.include('the file is UTF-16LE text; save it as UTF-8').and.not.include('INPUT_FILE_INVALID');
  });

  it('names the field of a line of the wrong shape, and which file a swapped line belongs to', async () => {
    const broken = { ...environmentLine(env('env-b')), source: null };
    const paths = await exportDir([environmentLine(env('env-a')), broken], []);
    const err = (await rejection(loadExportScenarioSource(paths, LIMITS))) as Error;
    expect(err).to.be.instanceOf(InputFileError);
    expect(err.message).to.include(paths.environments).and.include('line 2: kept environment env-b: source');

    const swapped = await exportDir([scenarioLine(scenario('scn-a', 'env-a'))], []);
    expect(((await rejection(loadExportScenarioSource(swapped, LIMITS))) as Error).message).to.include('line 1').and.include('this is a line of scenarios.jsonl');
    const dropped = await exportDir([environmentLine(env('env-a'))], [{ id: 'scn-x', environmentId: 'env-a', index: 0, reason: { stage: 's', code: 'DUPLICATE_TASK', message: 'm' }, task: null, checklist: null }]);
    expect(((await rejection(loadExportScenarioSource(dropped, LIMITS))) as Error).message).to.include('scenarios-dropped.jsonl');
  });

  it('refuses an id on two lines, naming both', async () => {
    const paths = await exportDir([environmentLine(env('env-a'))], [scenarioLine(scenario('scn-a', 'env-a')), scenarioLine(scenario('scn-a', 'env-a'))]);
    expect(((await rejection(loadExportScenarioSource(paths, LIMITS))) as Error).message).to.include('line 2: scenario id scn-a is on line 1 too');
  });

  it('says which file is missing and what to pass', async () => {
    const paths = await exportDir([environmentLine(env('env-a'))], []);
    const missing = { ...paths, environments: join(paths.environments, '..', 'nope.jsonl') };
    const err = (await rejection(loadExportScenarioSource(missing, LIMITS))) as Error;
    expect(err).to.be.instanceOf(InputFileError);
    expect(err.message).to.include('nope.jsonl').and.include('ENOENT').and.include('environments.jsonl');
    const noScenarios = { ...paths, scenarios: join(paths.scenarios, '..', 'none.jsonl') };
    expect(((await rejection(loadExportScenarioSource(noScenarios, LIMITS))) as Error).message).to.include('none.jsonl').and.include('cannot read the scenarios file');
  });

  it('answers UNKNOWN_SCENARIO for an id not in the file, SCENARIO_NOT_READY saying why for one whose environment is absent or not kept', async () => {
    // A failed environment's line has no code (nulls): it is not checked, only known by its id and status.
    const failed = { ...environmentLine(env('env-failed', { status: 'failed' })), name: null, className: null, source: null, tools: null, stateSchema: null, failure: { stage: 'skeleton.assemble', code: 'CLASS_DOES_NOT_LOAD', message: 'x' } };
    const rejected = environmentLine(env('env-rejected', { status: 'rejected' }));
    const paths = await exportDir(
      [environmentLine(env('env-a')), failed, rejected],
      [scenarioLine(scenario('scn-a', 'env-a')), scenarioLine(scenario('scn-orphan', 'env-gone')), scenarioLine(scenario('scn-f', 'env-failed')), scenarioLine(scenario('scn-r', 'env-rejected'))],
    );
    const loaded = await loadExportScenarioSource(paths, LIMITS);
    expect(loaded).to.include({ ready: 1, unservable: 3, environments: 1 });
    expect(await codeOf(loaded.source.scenario('scn-nope'))).to.equal('UNKNOWN_SCENARIO');
    expect(((await rejection(loaded.source.scenario('scn-nope'))) as Error).message).to.include(paths.scenarios);
    const orphan = (await rejection(loaded.source.scenario('scn-orphan'))) as EnvServerError;
    expect(orphan.code).to.equal('SCENARIO_NOT_READY');
    expect(orphan.message).to.include('env-gone').and.include(`is not in ${paths.environments}`);
    const f = (await rejection(loaded.source.scenario('scn-f'))) as EnvServerError;
    expect([f.code, f.message]).to.satisfy(([code, message]: [string, string]) => code === 'SCENARIO_NOT_READY' && message.includes('is failed') && message.includes('not kept'));
    expect(await rejection(loaded.source.scenario('scn-r'))).to.include({ code: 'SCENARIO_NOT_READY' });
    expect((await loaded.source.scenario('scn-a')).scenario.id).to.equal('scn-a');
  });

  it('round trip: the reference hotel environment, exported and served, runs a session in the sandbox and scores it', async function () {
    this.timeout(30_000);
    const fixture = (name: string): unknown => JSON.parse(readFileSync(new URL(`../../../fixtures/reference/${name}`, import.meta.url), 'utf8'));
    const bundle = fixture('hotel-env.bundle.json') as { className: string; source: string; tools: NonNullable<EnvironmentRecord['tools']> };
    const state = fixture('hotel-state.json') as Record<string, unknown>;
    const hotel = env('env-hotel', { className: bundle.className, source: bundle.source, tools: bundle.tools, state: { className: bundle.className, entities: [], rules: [], stateSchema: { type: 'object' }, exampleState: {} } });
    const task = scenario('scn-hotel', 'env-hotel', {
      initialState: state,
      task: 'Marquez la chambre R109 propre — 请把 R109 标记为干净 🧹',
      checklist: [{ item: 'R109 est propre ✅', check: 'function check(f, i) { return i.rooms.R109.status === "dirty" && f.rooms.R109.status === "clean"; }' }],
    });
    const paths = await exportDir([environmentLine(hotel)], [scenarioLine(task)]);
    const loaded = await loadExportScenarioSource(paths, LIMITS);
    const registry = createSessionRegistry({ sandbox: createLocalSandboxRunner(), scenarios: loaded.source }, { maxSessions: 2, idleTimeoutMs: 0 });
    const session = await registry.open('scn-hotel');
    expect(session.task).to.equal(task.task);
    expect(session.tools).to.include('mark_room_clean');
    const outcome = await registry.call(session.id, 'mark_room_clean', { room_id: 'R109' });
    expect(outcome.runtimeError).to.equal(undefined);
    const result = await registry.finish(session.id);
    expect(result).to.include({ reward: 1, solved: true, checksError: null });
  });
});
