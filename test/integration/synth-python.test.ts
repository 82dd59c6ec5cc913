import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { pino } from 'pino';
import { runOptionsFrom, submitRollouts, submitScenarios, submitSynthesis } from '../../queues/submit.js';
import { findEnvscalerFiles, importEnvscaler } from '../../src/importers/envscaler.js';
import { parseModelScript } from '../../src/model-server/index.js';
import { createLanguageRouter } from '../../src/sandbox/language-router.js';
import { createPythonSandboxRunner } from '../../src/sandbox/python/python-runner.js';
import { createLocalSandboxRunner } from '../../src/sandbox/runner.js';
import { exportRun } from '../../src/datasets/export.js';
import { runSink } from '../../src/datasets/sink.js';
import { RequestError } from '../../src/errors.js';
import type { Trajectory } from '../../src/rollouts/types.js';
import { PYTHON_PROMPT_VERSIONS } from '../../src/synthesis/prompts.js';
import { SCENARIO_PYTHON_PROMPT_VERSIONS } from '../../src/scenarios/prompts.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import type { EnvironmentRecord } from '../../src/synthesis/types.js';
import { AlpacaLine, OpenAIFineTuneLine } from '../helpers/formats.js';
import { DEMO, useFleet } from '../helpers/integration.js';

const ENVSCALER = new URL('../fixtures/envscaler/', import.meta.url).pathname;

const jsonl = async (path: string): Promise<unknown[]> => (await readFile(path, 'utf8')).split('\n').filter(Boolean).map(l => JSON.parse(l) as unknown);

/**
 * `envfleet synth --language python` end to end on real Redis, real BullMQ workers and the real Pyodide
 * runtime, with the scripted model answering from fixtures/demo (80-python-seeds.yaml): every synthesis
 * stage writes Python, validated in the Python sandbox; scenarios get Python checks; rollouts score with
 * them; the export carries the Python environment and checks.
 */
describe('envfleet synth --language python: synth, scenarios, rollouts, export (real workers, Pyodide, scripted model)', function () {
  this.timeout(600_000);
  const fleet = useFleet();

  it('builds an EnvScaler-style Python class through the same stages, with Python checks that score the episodes', async () => {
    const f = await fleet();
    const runId = 'py-synth';
    const submitted = await submitSynthesis(f.config, f.redis, { runId, descriptions: `${DEMO}/python-descriptions.jsonl`, probeSteps: 6, language: 'python' });
    expect(submitted.language).to.equal('python');
    expect((await f.store.getRun(runId))!.options.language).to.equal('python');
    await f.waitForRun(runId);

    const [envId] = await f.store.listDocIds(runId, 'env');
    const env = (await f.store.getDoc(runId, 'env', envId!)) as EnvironmentRecord;
    expect(env.status, JSON.stringify(env.failure ?? env.quality?.rejectionReason)).to.equal('kept');
    expect(env.language).to.equal('python');
    expect(env.className).to.equal('SeedLibrary');
    expect(env.lineage.prompts).to.deep.equal({ ...PYTHON_PROMPT_VERSIONS });
    // The class: typing imported, the constructor's attributes from the schema, each method indented whole.
    expect(env.source).to.match(/^from typing import Any, Dict, List, Optional, Union\n/);
    expect(env.source).to.include('class SeedLibrary:\n');
    expect(env.source).to.include('    def __init__(self, init_config: Optional[dict] = None):\n');
    expect(env.source).to.include('        self.members: Dict[str, Any] = {}  # member_id -> Member\n');
    expect(env.source).to.include('    def return_seeds(self, loan_id: str, packets_back: int) -> dict:\n');
    expect(env.source).to.not.include('```');
    expect(env.methods!['lend_packets']).to.include('packets: int = 1');
    expect(env.tools!.map(t => t.function.name)).to.deep.equal(['get_member', 'list_varieties', 'lend_packets', 'return_seeds']);
    expect(env.quality!.verdict).to.equal('kept');
    expect(env.quality!.counts.total).to.be.greaterThanOrEqual(6);

    // The method answers went through the gateway's parsers and repair loop as JavaScript ones do: prose
    // around a fence (parsed at once), a bare ```python fence with no JSON (asked again; the second answer's
    // extra key is dropped), a signature that does not take the tool's parameter (asked again with the
    // sandbox check's words), a fenced source inside the JSON string (taken without its fence).
    const uses = (rule: string) => f.server.log().filter(r => r.rule === rule).length;
    expect(uses('py-seeds-get_member')).to.equal(1);
    expect(uses('py-seeds-list_varieties')).to.equal(2);
    expect(uses('py-seeds-lend_packets')).to.equal(2);
    expect(uses('py-seeds-return_seeds')).to.equal(1);
    const asked = (rule: string) => f.server.log().filter(r => r.rule === rule).map(r => r.lastUserMessage ?? '');
    expect(asked('py-seeds-list_varieties')[1]).to.match(/^Your previous reply could not be used: /);
    expect(asked('py-seeds-lend_packets')[1]).to.include("the tool's parameters packets are not parameters of def lend_packets(self, ...)");

    // The probe ran the Python methods: a refused loan past max_packets, a harvest return that restocks.
    const steps = await f.store.steps(runId, envId!, 1);
    const refused = steps.find(s => s.tool === 'lend_packets' && s.caseType === 'negative')!;
    expect(refused.result).to.deep.equal({ success: false, error: '李娜 may hold 2 packet(s) and has 2 out' });
    const returned = steps.find(s => s.tool === 'return_seeds')!;
    expect(returned.result).to.deep.equal({ success: true, message: 'Returned loan L3: 6 packet(s) back on the shelf' });
    expect(returned.runtimeError).to.equal(null);

    // Scenarios: Python checks against the state as the runtime hands it over; the check that raised on the initial state was repaired.
    await submitScenarios(f.config, f.redis, { runId, perEnv: 1 });
    await f.waitForRun(runId);
    const scenarios: ScenarioRecord[] = [];
    for (const id of await f.store.listDocIds(runId, 'scenario')) scenarios.push((await f.store.getDoc(runId, 'scenario', id))!);
    expect(scenarios.map(s => [s.status, s.dropReason?.message ?? null])).to.deep.equal([['ready', null]]);
    const scenario = scenarios[0]!;
    expect(scenario.lineage.prompts).to.deep.equal({ ...SCENARIO_PYTHON_PROMPT_VERSIONS });
    expect(scenario.checklist!.map(c => c.language)).to.deep.equal(['python', 'python', 'python']);
    expect(scenario.checklist!.every(c => c.check.startsWith('def check_func(final_state):'))).to.equal(true);
    expect(scenario.validation!.repairs.map(r => r.item)).to.deep.equal(['Has variety V2 with the 6 saved packets on the shelf']);
    expect(scenario.validation!.repairs[0]!.problem).to.match(/CHECK_THREW: KeyError/);
    expect(scenario.validation!.onInitialState.map(r => r.passed)).to.deep.equal([false, false, false]);

    // Rollouts in both modes: the scripted policy solves it; the reward comes from the Python checks.
    const r = await submitRollouts(f.config, f.redis, { runId, samples: 1, modes: ['non-conversational', 'conversational'] });
    expect(r.scenarios).to.equal(1);
    await f.waitForRun(runId);
    const trajectories: Trajectory[] = [];
    for (const id of await f.store.listDocIds(runId, 'trajectory')) trajectories.push((await f.store.getDoc(runId, 'trajectory', id)) as Trajectory);
    expect(trajectories.map(t => [t.mode, t.reward, t.solved]).sort()).to.deep.equal([
      ['conversational', 1, true],
      ['non-conversational', 1, true],
    ]);
    const nonConv = trajectories.find(t => t.mode === 'non-conversational')!;
    expect(nonConv.steps.map(s => s.tool)).to.deep.equal(['get_member', 'return_seeds', 'lend_packets']);
    expect(nonConv.checks.map(c => c.passed)).to.deep.equal([true, true, true]);

    // Export: the sink writes the trajectories; the environment line carries its language and Python source.
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-py-synth-'));
    try {
      await runSink({ redis: f.redis, prefix: f.config.redis.prefix, store: f.store, runId, dir });
      const exported = await exportRun(f.store, runId, dir, { trajectoriesDir: join(dir, 'trajectories') });
      expect(exported.datasets['sft-openai.jsonl']).to.equal(2);
      const [line] = (await jsonl(join(dir, 'environments.jsonl'))) as EnvironmentRecord[];
      expect(line!.language).to.equal('python');
      expect(line!.source).to.equal(env.source);
      const [exportedScenario] = (await jsonl(join(dir, 'scenarios.jsonl'))) as ScenarioRecord[];
      expect(exportedScenario!.checklist!.map(c => c.language)).to.deep.equal(['python', 'python', 'python']);
      for (const l of await jsonl(join(dir, 'sft-openai.jsonl'))) expect(OpenAIFineTuneLine.safeParse(l).success).to.equal(true);
      for (const l of await jsonl(join(dir, 'sft-llamafactory.jsonl'))) expect(AlpacaLine.safeParse(l).success).to.equal(true);
      expect(await readFile(join(dir, 'sft-openai.jsonl'), 'utf8')).to.include('Haricot « Coco » 🫘');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a rejected Python environment: the failing method is rewritten in Python (check.repair), re-checked in the sandbox, and the class re-probed', async () => {
    const TESTER = [
      { thought: 'Look up a known member.', tool: 'get_member', arguments: { member_id: 'M2' }, caseType: 'positive' },
      { thought: 'Over the limit.', tool: 'lend_packets', arguments: { member_id: 'M2', variety_id: 'V3', packets: 1 }, caseType: 'negative' },
      { thought: 'Lend two bean packets to Zoë.', tool: 'lend_packets', arguments: { member_id: 'M1', variety_id: 'V3', packets: 2 }, caseType: 'positive' },
      { thought: 'A crop typed with spaces around it.', tool: 'list_varieties', arguments: { crop: ' Tomato ' }, caseType: 'positive' },
      { thought: 'Return the shiso loan.', tool: 'return_seeds', arguments: { loan_id: 'L3', packets_back: 6 }, caseType: 'positive' },
      { thought: 'An unknown member id.', tool: 'get_member', arguments: { member_id: 'M404' }, caseType: 'negative' },
    ];
    const REPAIRED =
      'def list_varieties(self, crop: Optional[str] = None) -> dict:\n    """The varieties with packets on the shelf, optionally of one crop (case and surrounding spaces ignored)."""\n' +
      '    wanted = crop.strip().casefold() if isinstance(crop, str) and crop.strip() else None\n' +
      '    found = [dict(v) for v in self.varieties.values() if v["packets"] > 0 and (wanted is None or v["crop"].strip().casefold() == wanted)]\n' +
      '    return {"success": True, "data": sorted(found, key=lambda v: v["variety_id"])}  # repaired\n';
    const f = await fleet({
      extra: parseModelScript({
        rules: [
          { name: 'tester-two-rounds', stage: 'check.probe.tester', matchAny: 'Environment: Community seed library', responses: [...TESTER, ...TESTER].map(json => ({ json })) },
          {
            name: 'checker-fails-crop',
            stage: 'check.probe.checker',
            match: 'Tool: \\{\\n "name": "list_varieties"',
            times: 1,
            respond: { json: { analysis: 'The filter compared the crop without trimming the stored value.', verdict: 'fail', reason: 'a crop given as " Tomato " must match stored crops whatever the spaces; trim both sides' } },
          },
          { name: 'repair-crop', stage: 'check.repair', matchAny: 'Current method:[\\s\\S]*def list_varieties[\\s\\S]*Language: Python', respond: { json: { source: REPAIRED, helpers: [] } } },
        ],
      }),
    });
    await submitSynthesis(f.config, f.redis, { runId: 'py-repair', descriptions: `${DEMO}/python-descriptions.jsonl`, probeSteps: 6, language: 'python' });
    await f.waitForRun('py-repair');
    const [envId] = await f.store.listDocIds('py-repair', 'env');
    const env = (await f.store.getDoc('py-repair', 'env', envId!)) as EnvironmentRecord;
    expect(env.status, JSON.stringify(env.quality)).to.equal('kept');
    expect(env.quality!.round).to.equal(2);
    expect(env.quality!.repair).to.deep.include({ attempted: true, methods: ['list_varieties'], saved: true });
    expect(env.qualityHistory!.map(q => q.verdict)).to.deep.equal(['rejected', 'kept']);
    expect(env.methods!['list_varieties']).to.equal(REPAIRED);
    expect(env.source).to.include('        return {"success": True, "data": sorted(found, key=lambda v: v["variety_id"])}  # repaired\n');
    expect(f.server.log().filter(r => r.rule === 'repair-crop').map(r => r.stage)).to.deep.equal(['check.repair']);
    // Round 2 ran the repaired method in the Python runtime.
    const round2 = await f.store.steps('py-repair', envId!, 2);
    expect(round2.find(s => s.tool === 'list_varieties')!.result).to.deep.equal({ success: true, data: [{ variety_id: 'V1', name: 'Tomate Cœur de Bœuf 🍅', crop: 'tomato', packets: 3 }] });
  });

  it('refuses an unknown --language, and another language on a run frozen with one', async () => {
    const f = await fleet({ workers: false });
    const err = await submitSynthesis(f.config, f.redis, { runId: 'py-lang', descriptions: `${DEMO}/python-descriptions.jsonl`, language: 'ruby' }).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(RequestError);
    expect(String(err)).to.include('--language "ruby" is not a language envfleet synthesizes: use js');
    await submitSynthesis(f.config, f.redis, { runId: 'py-lang', descriptions: `${DEMO}/python-descriptions.jsonl`, language: 'python' });
    const changed = await submitSynthesis(f.config, f.redis, { runId: 'py-lang', descriptions: `${DEMO}/python-descriptions.jsonl` }).catch((e: unknown) => e);
    expect(changed).to.be.instanceOf(RequestError);
    expect(String(changed)).to.include('run "py-lang" synthesizes Python environments (--language python, frozen when it was created)');
    // The default stays JavaScript, frozen as before (no language key).
    await submitSynthesis(f.config, f.redis, { runId: 'js-lang', descriptions: `${DEMO}/python-descriptions.jsonl` });
    expect((await f.store.getRun('js-lang'))!.options).to.not.have.property('language');
  });
});

/**
 * Scripted answers for scenarios on the imported tea house (test/fixtures/envscaler, env_7_rl): its class has
 * no state schema, so the scenario.state prompt carries the shape probed from the class; the first state
 * sets an attribute the class does not have and is asked again.
 */
const TEA_HOUSE = parseModelScript({
  rules: [
    {
      name: 'tea-state',
      stage: 'scenario.state',
      // On the request body as JSON (the repair request's last user message is the repair): the shape probed from the class, quotes escaped.
      matchAny: 'Environment: 茶馆 table reservations[\\s\\S]*State shape \\(the class instantiated with an empty config; each key is an instance attribute\\): \\{.{1,4}_next_id.{1,4}:1,.{1,4}bookings.{1,4}:\\{\\},.{1,4}tables.{1,4}:\\{\\}\\}',
      responses: [
        { json: { state: { tables: { T1: { table_id: 'T1', seats: 2, status: 'free' } }, guests: { G1: { name: 'Émilie Durand' } } } } },
        {
          json: {
            state: {
              tables: { T1: { table_id: 'T1', seats: 2, status: 'free' }, T2: { table_id: 'T2', seats: 4, status: 'free' }, T3: { table_id: 'T3', seats: 6, status: 'booked' } },
              bookings: { B5: { booking_id: 'B5', table_id: 'T3', guest: 'Émilie Durand', note: 'anniversaire 🎂' } },
              _next_id: 6,
            },
          },
        },
      ],
    },
    {
      name: 'tea-task',
      stage: 'scenario.task',
      match: 'Environment: 茶馆 table reservations',
      respond: {
        json: {
          instruction: 'Émilie Durand cannot come tonight: cancel her booking B5. Then book table T2 for 张伟 with the note 靠窗 🍵 so that he sits by the window.',
          userGoal: { goal: 'Cancel my friend’s booking and book a window table for me.', facts: ['The booking to cancel is B5', 'I am 张伟', 'I want table T2, note 靠窗 🍵'] },
          expectedTools: ['list_free_tables', 'cancel_booking', 'book_table'],
        },
      },
    },
    { name: 'tea-checklist', stage: 'scenario.checklist', match: 'Environment: 茶馆 table reservations', respond: { json: { items: ['Has booking B5 cancelled', 'Has table T2 booked for 张伟 with the note 靠窗', 'Has table T3 free again'] } } },
    { name: 'tea-check-b5', stage: 'scenario.check', match: 'Checklist item: Has booking B5 cancelled\\nLanguage: Python', respond: { json: { check: "def check_func(final_state):\n    return \"B5\" in initial_state.get(\"bookings\", {}) and \"B5\" not in final_state.get(\"bookings\", {})\n" } } },
    { name: 'tea-check-t2', stage: 'scenario.check', match: 'Checklist item: Has table T2 booked for 张伟[\\s\\S]*Language: Python', respond: { json: { check: "def check_func(final_state):\n    table = final_state.get(\"tables\", {}).get(\"T2\", {})\n    return table.get(\"status\") == \"booked\" and any(\n        b.get(\"table_id\") == \"T2\" and b.get(\"guest\") == \"张伟\" and \"靠窗\" in b.get(\"note\", \"\")\n        for b in final_state.get(\"bookings\", {}).values()\n    )\n" } } },
    { name: 'tea-check-t3', stage: 'scenario.check', match: 'Checklist item: Has table T3 free again\\nLanguage: Python', respond: { json: { check: "def check_func(final_state):\n    return final_state.get(\"tables\", {}).get(\"T3\", {}).get(\"status\") == \"free\"\n" } } },
  ],
});

describe('envfleet scenarios on an environment imported from EnvScaler (real workers, Pyodide, scripted model)', function () {
  this.timeout(600_000);
  const fleet = useFleet();

  it('writes Python checks against the state the class really has (probed: no schema), which pass on a solving path', async () => {
    const f = await fleet({ extra: TEA_HOUSE });
    const runId = 'es-scn';
    await importEnvscaler(f.store, { runId, files: await findEnvscalerFiles(join(ENVSCALER, 'github')), split: 'rl' }, runOptionsFrom(f.config));
    expect(await f.store.listDocIds(runId, 'env')).to.deep.equal(['env_7_rl']);
    await submitScenarios(f.config, f.redis, { runId, perEnv: 1 });
    await f.waitForRun(runId);

    const env = (await f.store.getDoc(runId, 'env', 'env_7_rl'))!;
    const generated: ScenarioRecord[] = [];
    for (const id of await f.store.listDocIds(runId, 'scenario')) {
      const s = (await f.store.getDoc(runId, 'scenario', id))!;
      if (!s.lineage.source) generated.push(s);
    }
    expect(generated.map(s => [s.status, s.dropReason?.message ?? null])).to.deep.equal([['ready', null]]);
    const scenario = generated[0]!;
    expect(scenario.lineage.prompts).to.deep.equal({ ...SCENARIO_PYTHON_PROMPT_VERSIONS });
    expect(scenario.checklist!.map(c => c.language)).to.deep.equal(['python', 'python', 'python']);
    // The first state set an attribute the class does not have: asked again with the class's attributes.
    const stateRequests = f.server.log().filter(r => r.rule === 'tea-state');
    expect(stateRequests).to.have.length(2);
    expect(stateRequests[1]!.lastUserMessage).to.include('which the class does not have as instance attributes; its attributes are: _next_id, bookings, tables');
    // Each check ran on the initial state as the runtime hands it to check_func (vars(instance)): a bool, and not all true.
    expect(scenario.validation!.onInitialState.map(r => r.passed)).to.deep.equal([false, false, false]);
    expect(scenario.validation!.repairs).to.deep.equal([]);

    const python = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 192, logger: pino({ level: 'silent' }) });
    const sandbox = createLanguageRouter({ js: createLocalSandboxRunner(), python });
    try {
      const code = { name: env.description.summary, className: env.className!, source: env.source!, tools: env.tools ?? [], language: 'python' as const };
      // The solving path: every check passes.
      const solved = await sandbox.openSession(code, scenario.initialState, f.config.sandbox);
      expect((await solved.call('cancel_booking', { booking_id: 'B5' })).result).to.deep.include({ success: true });
      expect((await solved.call('book_table', { table_id: 'T2', guest: '张伟', note: '靠窗 🍵' })).result).to.deep.include({ success: true });
      const end = await solved.finish(scenario.checklist!);
      expect(end.checks!.results.map(r => [r.passed, r.errorCode ?? null])).to.deep.equal([[true, null], [true, null], [true, null]]);
      expect(end.checks!.reward).to.equal(1);
      // Half the work: the checks say which part is missing.
      const half = await sandbox.openSession(code, scenario.initialState, f.config.sandbox);
      await half.call('cancel_booking', { booking_id: 'B5' });
      expect((await half.finish(scenario.checklist!)).checks!.results.map(r => r.passed)).to.deep.equal([true, false, true]);
    } finally {
      await sandbox.close();
    }
  });
});

/**
 * A scenario state for the imported tea house written as a model writes it, in prose with a fence, with a float
 * (`50.0`) and an integer past 2^53: the Python environment must get them as EnvScaler's json.loads reads them.
 */
const EXACT_STATE =
  'Voici l’état initial 🍵:\n```json\n{"state": {"tables": {"T1": {"table_id": "T1", "seats": 2, "status": "free", "min_spend": 50.0}}, "bookings": {}, "_next_id": 12345678901234567891}}\n```';
const TEA_EXACT = parseModelScript({
  rules: [
    { name: 'exact-state', stage: 'scenario.state', match: 'Environment: 茶馆 table reservations', respond: { content: EXACT_STATE } },
    {
      name: 'exact-task',
      stage: 'scenario.task',
      match: 'Environment: 茶馆 table reservations',
      respond: { json: { instruction: 'Book table T1 for 张伟 with the note 靠窗 🍵; it has a minimum spend, which he accepts.', userGoal: { goal: 'Book T1 for me.', facts: ['I am 张伟'] }, expectedTools: ['list_free_tables', 'book_table'] } },
    },
    { name: 'exact-checklist', stage: 'scenario.checklist', match: 'Environment: 茶馆 table reservations', respond: { json: { items: ['Has table T1 booked for 张伟, its minimum spend still a float'] } } },
    {
      name: 'exact-check',
      stage: 'scenario.check',
      match: 'Checklist item: Has table T1 booked',
      respond: { json: { check: 'def check_func(final_state):\n    t = final_state["tables"]["T1"]\n    return t["status"] == "booked" and isinstance(t["min_spend"], float) and "B12345678901234567891" in final_state["bookings"]\n' } },
    },
  ],
});

describe('envfleet scenarios: a Python environment gets the state as the model wrote it (real workers, Pyodide, scripted model)', function () {
  this.timeout(600_000);
  const fleet = useFleet();

  it("keeps 50.0 and an integer past 2^53 of the model's state text for the Python sessions (initialStateJson)", async () => {
    const f = await fleet({ extra: TEA_EXACT });
    const runId = 'es-exact';
    await importEnvscaler(f.store, { runId, files: await findEnvscalerFiles(join(ENVSCALER, 'github')), split: 'rl' }, runOptionsFrom(f.config));
    await submitScenarios(f.config, f.redis, { runId, perEnv: 1 });
    await f.waitForRun(runId);
    const generated: ScenarioRecord[] = [];
    for (const id of await f.store.listDocIds(runId, 'scenario')) {
      const s = (await f.store.getDoc(runId, 'scenario', id))!;
      if (!s.lineage.source) generated.push(s);
    }
    expect(generated.map(s => [s.status, s.dropReason?.message ?? null])).to.deep.equal([['ready', null]]);
    const scenario = generated[0]!;
    expect(scenario.initialStateJson).to.equal('{"tables":{"T1":{"table_id":"T1","seats":2,"status":"free","min_spend":50.0}},"bookings":{},"_next_id":12345678901234567891}');
    expect(scenario.validation!.onInitialState.map(r => r.passed)).to.deep.equal([false]);

    const env = (await f.store.getDoc(runId, 'env', 'env_7_rl'))!;
    const python = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 192, logger: pino({ level: 'silent' }) });
    const sandbox = createLanguageRouter({ js: createLocalSandboxRunner(), python });
    try {
      const code = { name: env.description.summary, className: env.className!, source: env.source!, tools: env.tools ?? [], language: 'python' as const };
      const session = await sandbox.openSession(code, scenario.initialState, f.config.sandbox, scenario.initialStateJson);
      const booked = await session.call('book_table', { table_id: 'T1', guest: '张伟', note: '靠窗 🍵' });
      expect(booked.resultJson).to.include('"booking_id":"B12345678901234567891"');
      const end = await session.finish(scenario.checklist!);
      expect(end.checks!.results.map(r => [r.passed, r.errorCode ?? null])).to.deep.equal([[true, null]]);
    } finally {
      await sandbox.close();
    }
  });
});
