import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import type { Context } from 'mocha';
import { parse as parseYaml } from 'yaml';
import type { Serving } from '../../cli/serve.js';
import { runAgent, type AgentResult } from '../../examples/mcp-agent.js';
import { exportRun } from '../../src/datasets/export.js';
import { startModelServer, type ModelServer } from '../../src/model-server/index.js';
import { createLocalSandboxRunner } from '../../src/sandbox/runner.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import { aptInstall } from '../helpers/apt.js';
import { scenarioWith, useServedDemoRun } from '../helpers/env-server-clients.js';
import type { Fleet } from '../helpers/integration.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const EXAMPLES = join(ROOT, 'examples');
const STUBS = join(ROOT, 'test/fixtures/python-stubs');
const DRIVERS = join(ROOT, 'test/fixtures/python-drivers');

type Call = [string, Record<string, unknown>];
/** The demo's moves, as turns of calls (a turn's calls may run concurrently, as the trainers run them). */
const IRIS: Call[][] = [
  [
    ['get_member', { member_id: 'M7' }],
    ['return_book', { loan_id: 'L21' }],
  ],
  [['pay_fine', { member_id: 'M7', amount: 2.5 }]],
  [['borrow_book', { member_id: 'M7', book_id: 'B5' }]],
];
const PL900: Call[][] = [[['exit_vehicle', { ticket_id: 'T2' }]]];

/** A Python 3 interpreter and what it can import, or null when there is none. */
function python(...candidates: string[]): { cmd: string; has: (module: string) => boolean } | null {
  for (const cmd of candidates.length ? candidates : ['python3', 'python']) {
    const v = spawnSync(cmd, ['-c', 'import sys; print(sys.version_info[0])'], { encoding: 'utf8' });
    if (v.status === 0 && v.stdout.trim() === '3') return { cmd, has: m => spawnSync(cmd, ['-c', `import ${m}`]).status === 0 };
  }
  return null;
}

interface Printed {
  reward: number;
  session_id: string;
  outputs: string[];
  [k: string]: unknown;
}

function skip(ctx: Context, reason: string): never {
  if (ctx.test) ctx.test.title += ` — skipped: ${reason}`;
  ctx.skip();
}

describe('examples/: the trainer recipes against a real `envfleet serve` (real Redis, real sandbox pool; the frameworks stubbed)', function () {
  let f: Fleet;
  let serving: Serving;
  let scenarios: ScenarioRecord[];
  let dir: string;
  let model: ModelServer | undefined;
  const py = python();
  const byTask = (needle: string) => scenarioWith(scenarios, needle);
  useServedDemoRun('ex', 4, run => ({ f, serving, scenarios } = run), async fleet => {
    dir = await mkdtemp(join(tmpdir(), 'envfleet-examples-'));
    await exportRun(fleet.store, 'ex', dir, { formats: ['verl', 'prompts'] });
  });
  after(async () => {
    await model?.close();
  });

  /** The reward the scenario's checks give on the final state the server kept for the session (as env-server.test.ts compares). */
  async function checksReward(sessionId: string, scenario: ScenarioRecord): Promise<number> {
    const kept = serving.registry.result(sessionId);
    expect(kept, `the server kept session ${sessionId}`).to.not.equal(null);
    const checks = await createLocalSandboxRunner().checks({ checks: scenario.checklist!, finalState: kept!.finalState, initialState: scenario.initialState, limits: (await f.store.getRun('ex'))!.options.limits });
    expect(kept!.reward).to.equal(checks.reward);
    return checks.reward;
  }

  async function runPython(script: string, args: string[], extraPath: string[] = [], cmd = py!.cmd): Promise<Printed> {
    const env = { ...process.env, PYTHONPATH: [STUBS, ...extraPath, process.env['PYTHONPATH'] ?? ''].filter(Boolean).join(delimiter), PYTHONDONTWRITEBYTECODE: '1' };
    const { stdout } = await run(cmd, [script, ...args], { env, cwd: ROOT, timeout: 120_000 });
    return JSON.parse(stdout.trim().split('\n').at(-1)!) as Printed;
  }
  const driver = (name: string, file: string, scenario: ScenarioRecord, turns: Call[][], extraPath: string[] = [], cmd?: string) =>
    runPython(join(DRIVERS, name), ['--url', serving.url, '--scenario', scenario.id, '--rows', join(dir, file), '--turns', JSON.stringify(turns)], extraPath, cmd);

  describe('MCP agent (examples/mcp-agent.ts: the MCP SDK Client + StreamableHTTPClientTransport)', () => {
    it('plays a plan to the reward the checks give on the final state (imported)', async () => {
      const iris = byTask('Iris Vance');
      const r = await runAgent({ url: serving.url, scenario: iris.id, plan: IRIS.flat() });
      expect(r.tools).to.include.members(['get_member', 'return_book', 'pay_fine', 'borrow_book']);
      expect(r.task).to.equal(iris.task);
      expect(r.transcript.map(s => s.isError)).to.deep.equal([false, false, false, false]);
      expect(r.transcript[3]!.text).to.match(/Lent Kindred to Iris Vance/);
      expect(r).to.include({ reward: 1, solved: true, calls: 4 });
      expect(r.reward).to.equal(await checksReward(r.session_id, iris));
    });

    it('runs as a command (`tsx examples/mcp-agent.ts --url --scenario --plan`) and prints the partial reward the checks give', async () => {
      const pl = byTask('PL-900');
      const { stdout } = await run(process.execPath, ['--import', 'tsx', join(EXAMPLES, 'mcp-agent.ts'), '--url', serving.url, '--scenario', pl.id, '--plan', JSON.stringify(PL900.flat())], { cwd: ROOT });
      const r = JSON.parse(stdout) as AgentResult;
      expect(r.reward).to.equal(0.5);
      expect(r.reward).to.equal(await checksReward(r.session_id, pl));
    });

    it('with --model, an OpenAI-compatible model (a scripted one here) picks the calls from the MCP tools', async () => {
      const iris = byTask('Iris Vance');
      model = await startModelServer({
        script: {
          rules: [
            { name: 'start', matchLast: '^user: ', respond: { toolCalls: [{ name: 'get_member', arguments: { member_id: 'M7' } }, { name: 'return_book', arguments: { loan_id: 'L21' } }] } },
            { name: 'pay', matchLast: '^tool: .*Returned 5 days late', respond: { toolCalls: [{ name: 'pay_fine', arguments: { member_id: 'M7', amount: 2.5 } }] } },
            { name: 'borrow', matchLast: '^tool: .*Paid 2\\.5', respond: { toolCalls: [{ name: 'borrow_book', arguments: { member_id: 'M7', book_id: 'B5' } }] } },
            { name: 'done', matchLast: '^tool: .*Lent Kindred', respond: { content: 'Done: returned, paid, lent.' } },
          ],
        },
      });
      const r = await runAgent({ url: serving.url, scenario: iris.id, model: 'scripted', baseURL: model.url, apiKey: 'test-key' });
      expect(r.transcript.map(s => s.tool)).to.deep.equal(['get_member', 'return_book', 'pay_fine', 'borrow_book']);
      const log = model.log();
      expect(log.map(e => e.rule)).to.deep.equal(['start', 'pay', 'borrow', 'done']);
      const body = log[0]!.body as { tools?: { function: { name: string } }[] };
      expect(body.tools?.map(t => t.function.name), 'the MCP tools are the model\'s tools').to.include.members(['get_member', 'pay_fine']);
      expect(r).to.include({ reward: 1, solved: true });
      expect(r.reward).to.equal(await checksReward(r.session_id, iris));
    });
  });

  describe('Python recipes (run when a python3 is on PATH; verl, verifiers and TRL stubbed by test/fixtures/python-stubs)', () => {
    beforeEach(function () {
      if (!py) skip(this, 'no python3 (or python) interpreter on PATH');
    });

    it('envfleet_client.py (stdlib client, NeMo Gym cookie surface) plays a scenario to the checks’ reward', async () => {
      const iris = byTask('Iris Vance');
      const r = await runPython(join(EXAMPLES, 'envfleet_client.py'), ['--url', serving.url, '--scenario', iris.id, '--calls', JSON.stringify(IRIS.flat())]);
      expect(r.outputs[3]).to.match(/Lent Kindred to Iris Vance/);
      expect(r.reward).to.equal(1);
      expect(r.reward).to.equal(await checksReward(r.session_id, iris));
    });

    it('verl: EnvfleetTool per call (create/execute/release, parallel calls of a turn), EnvfleetInteraction verifies, compute_score returns that reward', async () => {
      for (const [needle, turns, expected] of [['Iris Vance', IRIS, 1], ['PL-900', PL900, 0.5]] as const) {
        const s = byTask(needle);
        const r = await driver('verl_driver.py', 'rl-verl.json', s, turns.map(t => [...t]));
        expect(r.reward, needle).to.equal(expected);
        expect(r.reward, needle).to.equal(await checksReward(r.session_id, s));
        expect(r['terminated']).to.equal(true);
        expect(r['open_sessions'], 'the trajectory table is emptied').to.equal(0);
      }
    });

    it('verl: examples/verl_tool_config.yaml is the demo library environment’s tools, as --write-config writes them from rl-verl.json, with verl installed or not yet', async () => {
      const iris = byTask('Iris Vance');
      const args = [join(EXAMPLES, 'verl_tool.py'), '--write-config', join(dir, 'rl-verl.json'), '--url', 'http://127.0.0.1:8090', '--environment', iris.environmentId];
      const { stdout } = await run(py!.cmd, args, { env: { ...process.env, PYTHONPATH: STUBS, PYTHONDONTWRITEBYTECODE: '1' } });
      // The config is written before verl is installed (the stubs stand in for verl above; here nothing does).
      const { PYTHONPATH: _, ...noStubs } = process.env;
      expect((await run(py!.cmd, args, { env: { ...noStubs, PYTHONDONTWRITEBYTECODE: '1' } })).stdout).to.equal(stdout);
      type Entry = { class_name: string; config: Record<string, unknown>; tool_schema: { function: { name: string; description: string; parameters: { properties: Record<string, { type: string }>; required: string[] } } } };
      const written = (JSON.parse(stdout) as { tools: Entry[] }).tools;
      const committed = (parseYaml(await readFile(join(EXAMPLES, 'verl_tool_config.yaml'), 'utf8')) as { tools: Entry[] }).tools;
      const shape = (e: Entry) => ({ class_name: e.class_name, config: e.config, name: e.tool_schema.function.name, description: e.tool_schema.function.description, properties: e.tool_schema.function.parameters.properties, required: e.tool_schema.function.parameters.required });
      expect(committed.map(shape)).to.have.deep.members(written.map(shape));
    });

    it("verl: --write-config writes tools verl's schema validates when their parameters have several types, null, an anyOf or an enum of numbers (said in the description and on stderr)", async () => {
      const odd = [
        { type: 'function', function: { name: 'set_level', description: 'Niveau — 级别 🎚️', parameters: { type: 'object', properties: { level: { type: 'integer', enum: [1, 2, 3] } }, required: ['level'] } } },
        { type: 'function', function: { name: 'add_note', description: 'Note', parameters: { type: 'object', properties: { text: { type: ['string', 'null'], anyOf: [{ type: 'string' }, { type: 'null' }], description: 'texte' }, lang: { anyOf: [{ type: 'string', enum: ['fr', '中文'] }, { type: 'integer' }] } }, required: ['text'] } } },
        { type: 'function', function: { name: 'ping', parameters: { type: 'object', properties: {} } } },
      ];
      const rows = join(await mkdtemp(join(tmpdir(), 'envfleet-verl-')), 'rl-verl.json');
      await writeFile(rows, JSON.stringify({ extra_info: { environment_id: 'e', tools: JSON.stringify(odd) } }) + '\n');
      const { stdout, stderr } = await run(py!.cmd, [join(EXAMPLES, 'verl_tool.py'), '--write-config', rows], { env: { ...process.env, PYTHONPATH: STUBS, PYTHONDONTWRITEBYTECODE: '1' } });
      expect(stderr).to.include('3 parameter(s)').and.include('set_level.level: one of 1, 2, 3');
      // Each tool as verl's ToolAgentLoop takes it (model_validate, then the model_dump it renders for the policy);
      // the tools as they were are refused (the stand-in checks what verl's pydantic models declare).
      const validate = `import json, sys\nfrom verl.tools.schemas import OpenAIFunctionToolSchema as S\nout = []\nfor t in json.load(sys.stdin):\n    try:\n        out.append(S.model_validate(t).model_dump())\n    except ValueError as e:\n        out.append(str(e))\nprint(json.dumps(out, ensure_ascii=False))`;
      const check = async (tools: unknown[]) => {
        const child = execFile(py!.cmd, ['-c', validate], { env: { ...process.env, PYTHONPATH: STUBS, PYTHONDONTWRITEBYTECODE: '1' } });
        const out = new Promise<string>((resolve, reject) => {
          let text = '';
          child.stdout!.on('data', (d: Buffer) => (text += d.toString('utf8')));
          child.on('close', code => (code === 0 ? resolve(text) : reject(new Error(`validator exited ${code}`))));
        });
        child.stdin!.end(JSON.stringify(tools));
        return JSON.parse(await out) as unknown[];
      };
      const before = await check(odd);
      expect(before.filter(x => typeof x === 'string'), 'the tools as exported').to.have.length(3);
      const written = (JSON.parse(stdout) as { tools: { tool_schema: unknown }[] }).tools.map(e => e.tool_schema);
      const after = await check(written);
      expect(after.filter(x => typeof x === 'string'), JSON.stringify(after)).to.deep.equal([]);
      expect(after).to.deep.equal([
        { type: 'function', function: { name: 'set_level', description: 'Niveau — 级别 🎚️', parameters: { type: 'object', properties: { level: { type: 'integer', description: '(one of 1, 2, 3)' } }, required: ['level'] } } },
        { type: 'function', function: { name: 'add_note', description: 'Note', parameters: { type: 'object', properties: { text: { type: 'string', description: 'texte (may be null)' }, lang: { type: 'string', description: '(of type string or integer; values allowed include "fr", "中文")' } }, required: ['text'] } } },
        { type: 'function', function: { name: 'ping', description: '', parameters: { type: 'object', properties: {}, required: [] } } },
      ]);
    });

    it('verifiers: the StatefulToolEnv shim gives the row its tools, calls the session, and its rubric reward is verify’s', async () => {
      for (const [needle, turns, expected] of [['Iris Vance', IRIS, 1], ['PL-900', PL900, 0.5]] as const) {
        const s = byTask(needle);
        const r = await driver('verifiers_driver.py', 'rl-prompts.jsonl', s, turns.map(t => [...t]));
        expect(r.reward, needle).to.equal(expected);
        expect(r.reward, needle).to.equal(await checksReward(r.session_id, s));
        expect(r['metrics']).to.deep.include({ envfleet_reward: expected });
      }
      const iris = byTask('Iris Vance');
      const r = await driver('verifiers_driver.py', 'rl-prompts.jsonl', iris, [[['pay_fine', { member_id: 'M7', amount: 'six' }]]]);
      expect(r.outputs[0], 'a bad call is an answer for the model, not a failure').to.include('INVALID_ARGUMENTS');
      expect(r['tool_names']).to.include.members(['get_member', 'pay_fine']);
    });

    it('TRL: each environment class has one public method per tool of the row, with the signature, type hints and Args: docstring TRL builds the tool schema from', async () => {
      const rows = (await readFile(join(dir, 'rl-prompts.jsonl'), 'utf8')).trim().split('\n').map(l => JSON.parse(l) as { scenario_id: string; tools: string });
      const pyType: Record<string, string> = { string: "<class 'str'>", number: "<class 'float'>", integer: "<class 'int'>", boolean: "<class 'bool'>" };
      for (const needle of ['Iris Vance', 'PL-900']) {
        const s = byTask(needle);
        const tools = JSON.parse(rows.find(r => r.scenario_id === s.id)!.tools) as { function: { name: string; description: string; parameters: { properties: Record<string, { type: string }>; required: string[] } } }[];
        const r = await runPython(join(DRIVERS, 'trl_driver.py'), ['--url', serving.url, '--scenario', s.id, '--rows', join(dir, 'rl-prompts.jsonl'), '--schemas-only']);
        const schemas = r['schemas'] as Record<string, { params: string[]; required: string[]; annotations: Record<string, string>; documented: string[]; description: string; returns: string }>;
        expect(Object.keys(schemas)).to.have.members(tools.map(t => t.function.name));
        for (const t of tools) {
          const got = schemas[t.function.name]!;
          const props = t.function.parameters.properties;
          expect(got.params, t.function.name).to.deep.equal(Object.keys(props));
          expect(got.required, t.function.name).to.have.members(t.function.parameters.required);
          expect(got.documented, t.function.name).to.deep.equal(Object.keys(props));
          expect(got.description).to.equal(t.function.description);
          expect(got.returns).to.equal("<class 'str'>");
          for (const [arg, p] of Object.entries(props)) {
            const base = pyType[p.type] ?? '';
            // Optional[...] only where the environment's schema takes null; an optional argument is told by its default.
            expect(got.annotations[arg], `${t.function.name}.${arg}`).to.equal(base);
          }
        }
      }
    });

    it('TRL: a tool parameter Python cannot name (from, class, member-id, 2nd, self) gets a close name in the signature and is sent by its own; an explicit null is sent, a left-out optional is not', async () => {
      const r = await runPython(join(DRIVERS, 'trl_names_driver.py'), []);
      const params = r['params'] as Record<string, { annotation: string; required: boolean }>;
      expect(Object.keys(params)).to.deep.equal(['from_', 'to', 'class_', 'member_id_2', 'member_id', 'self_', 'arg_2nd', 'note']);
      expect(params['from_']).to.deep.equal({ annotation: "<class 'str'>", required: true });
      expect(params['class_']!.annotation).to.equal('typing.Optional[str]');
      // Optional (nullable in the schema the model sees) only where the environment's schema takes null.
      expect(params['member_id_2']).to.deep.equal({ annotation: "<class 'int'>", required: false });
      expect(params['note']!.annotation).to.equal('typing.Optional[str]');
      expect(r['doc']).to.include("from_: first night (the environment's argument 'from')").and.to.include("member_id_2: member-id (the environment's argument 'member-id')");
      expect(r['sent']).to.deep.equal([{ type: 'call_tool', tool_name: 'book_room', arguments: { from: '2026-12-24', to: '2026-12-26', class: null, 'member-id': 7, self: 'moi', '2nd': true } }]);
      expect(r['output']).to.equal('ok ✅');
    });

    it('TRL: environment_factory classes (one per environment, a method per tool) on the OpenEnv client over /ws; get_reward() is the checks’ reward', async function () {
      // OpenEnv's client needs websockets; the PATH python may lack it while the system's has it.
      const withWsOf = () => [py!, python('/usr/bin/python3')].find(p => p?.has('websockets'));
      // As the browser tests install Chromium: on a fresh Debian machine, the system python's websockets.
      const withWs = withWsOf() ?? (aptInstall(['python3-websockets'], 'TRL recipe: no python3 imports websockets') ? withWsOf() : undefined);
      if (!withWs) skip(this, `neither ${py!.cmd} nor /usr/bin/python3 can import websockets, which OpenEnv's Python client (and the stand-in for it) needs to reach /ws`);
      const extra = withWs.has('openenv.core') ? [] : [join(STUBS, 'openenv-standin')];
      for (const [needle, turns, expected] of [['Iris Vance', IRIS, 1], ['PL-900', PL900, 0.5]] as const) {
        const s = byTask(needle);
        const r = await driver('trl_driver.py', 'rl-prompts.jsonl', s, turns.map(t => [...t]), extra, withWs.cmd);
        expect(r.reward, needle).to.equal(expected);
        expect(r.reward, needle).to.equal(await checksReward(r.session_id, s));
      }
    });
  });
});
