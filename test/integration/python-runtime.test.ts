import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect } from 'chai';
import { pino } from 'pino';
import { loadConfig } from '../../config/index.js';
import { EnvironmentCode, type CheckSpec } from '../../src/sandbox/bundle.js';
import { boundedRunner, createLanguageRouter, MAX_ERROR_CHARS } from '../../src/sandbox/language-router.js';
import { SandboxError } from '../../src/sandbox/errors.js';
import { DEFAULT_SANDBOX_LIMITS, type SandboxLimits } from '../../src/sandbox/limits.js';
import { answerText, HARNESS_PY, MAX_JSON_DEPTH } from '../../src/sandbox/python/python-harness.mjs';
import { createPythonSandboxRunner, type PythonSandboxRunner } from '../../src/sandbox/python/python-runner.js';
import { createLocalSandboxRunner, type EnvSession } from '../../src/sandbox/runner.js';
import { scoreFinalState } from '../../src/rollouts/score.js';
import { fullCheck } from '../../src/sandbox/retry-when-full.js';
import { RawJson, stringifyJson } from '../../src/util/raw-json.js';
import { runEpisode } from '../../src/rollouts/episode.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import type { EnvironmentRecord } from '../../src/synthesis/types.js';
import { rejection } from '../helpers/assert.js';
import { callingGateway } from '../helpers/bfcl.js';

/**
 * The Python runtime with the real Pyodide in the real child process (no mocks). One runner (two
 * interpreters) serves the whole file; the snapshot is cached where ENVFLEET_PYTHON_SNAPSHOT_DIR's
 * default points, so only the first run on a machine builds it.
 */

const LIMITS: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, callDeadlineMs: 1_000, createDeadlineMs: 5_000, checkDeadlineMs: 1_000 };
const HEAP_MB = 192;
const CANARY = 'ENVFLEET_PY_CANARY_7f3a';

const tool = (name: string, properties: Record<string, unknown> = {}, required: string[] = []) => ({
  type: 'function' as const,
  function: { name, parameters: { type: 'object', properties, required } },
});

const HELP_DESK: EnvironmentCode = EnvironmentCode.parse({
  name: 'help desk',
  language: 'python',
  className: 'HelpDeskSystem',
  source: readFileSync(new URL('../fixtures/python-envs/help_desk.py', import.meta.url), 'utf8'),
  tools: [
    tool('get_ticket', { ticket_id: { type: 'string' } }, ['ticket_id']),
    tool('open_ticket', { title: { type: 'string' }, tags: { type: ['array', 'null'], items: { type: 'string' } } }, ['title']),
    tool('assign_ticket', { ticket_id: { type: 'string' }, agent_id: { type: 'string' } }, ['ticket_id', 'agent_id']),
    tool('close_ticket', { ticket_id: { type: 'string' } }, ['ticket_id']),
    tool('tag_summary'),
    tool('echo', { text: { type: 'string' } }, ['text']),
    tool('missing_method'),
  ],
});

const SEEDED_STATE = {
  agents: { 'A-1': { agent_id: 'A-1', name: 'Zoë' } },
  tickets: { 'T-1': { ticket_id: 'T-1', title: 'Printer on fire', status: 'open', assignee: null, tags: ['hardware'], opened_at: 0 } },
};

/** A runner of one interpreter of 192 MB on the shared snapshot cache, silent: the memory tests' interpreter. */
const smallRunner = () => createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 192, logger: pino({ level: 'silent' }) });
/**
 * A text for a start's state whose creation and end may take (8 + 8) times its JSON: more than the room left beside
 * `usedBytes` in a smallRunner's interpreter, less than the room once its `garbageBytes` are collected. (Text of no ASCII
 * letter: 16 bytes of UTF-8 a repeat.)
 */
const padFittingOnlyWithout = (usedBytes: number, garbageBytes: number): string => {
  const room = HEAP_MB * 1048576 - usedBytes;
  const pad = 'é—数据 🛫'.repeat(Math.floor((room + garbageBytes / 2) / 16 / 16));
  expect(16 * Buffer.byteLength(pad), 'the start does not fit beside the garbage').to.be.above(room + 1024);
  return pad;
};
/** Collections of the cycle collector made so far on a one-interpreter runner's interpreter. */
const collectionsOf = async (r: PythonSandboxRunner) => (await r.stats()).interpreters[0]!.collections;

const python = (source: string, tools: string[], className = 'Env'): EnvironmentCode =>
  EnvironmentCode.parse({ name: className, language: 'python', className, source, tools: tools.map(t => tool(t)) });

const pyCheck = (item: string, check: string): CheckSpec => ({ item, check, language: 'python' });

describe('Python runtime (Pyodide in a child process under the permission model)', function () {
  this.timeout(180_000);
  let runner: PythonSandboxRunner;
  let listener: Server;
  let connections = 0;
  let listenerPort = 0;
  const open: EnvSession[] = [];
  const session = async (code: EnvironmentCode, state: unknown, limits = LIMITS) => {
    const s = await runner.openSession(code, state, limits);
    open.push(s);
    return s;
  };

  before(async () => {
    // Set before the child is forked: it must not see it.
    process.env[CANARY] = 'leaked';
    listener = createServer(socket => {
      connections += 1;
      socket.destroy();
    });
    await new Promise<void>(resolve => listener.listen(0, '127.0.0.1', resolve));
    listenerPort = (listener.address() as { port: number }).port;
    runner = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 2, heapMb: HEAP_MB, logger: pino({ level: 'silent' }) });
    const info = await runner.started();
    expect(info.fromSnapshot).to.equal(true);
  });
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close().catch(() => undefined);
  });
  after(async () => {
    delete process.env[CANARY];
    await runner?.close();
    await new Promise(resolve => listener?.close(resolve));
  });

  describe('EnvScaler semantics', () => {
    it('builds the instance with cls(config), then sets each config key on it; the state is vars() without dunder keys', async () => {
      const s = await session(HELP_DESK, SEEDED_STATE);
      const state = (await s.snapshot()) as Record<string, unknown>;
      expect(state['agents']).to.deep.equal(SEEDED_STATE.agents);
      expect(state['tickets']).to.deep.equal(SEEDED_STATE.tickets);
      expect(state['events']).to.deep.equal([]);
      expect(Object.keys(state)).not.to.include('__cache__');
      expect(state['started_at']).to.equal(1735689600);
      const assigned = await s.call('assign_ticket', { ticket_id: 'T-1', agent_id: 'A-1' });
      expect(assigned).to.deep.include({ result: { success: true, message: 'T-1 assigned to Zoë' } });
      expect(await s.call('get_ticket', { ticket_id: 'nope' })).to.deep.include({ result: { success: false, error: 'ticket nope does not exist' } });
    });

    it('falls back to cls() when cls(config) raises TypeError, then still sets the config keys', async () => {
      const code = python('class Env:\n    def __init__(self):\n        self.count = 0\n        self.name = "default"\n    def bump(self):\n        self.count += 1\n        return {"success": True, "data": self.count}\n', ['bump']);
      const s = await session(code, { count: 41, extra: [1, 2] });
      expect(await s.snapshot()).to.deep.equal({ count: 41, extra: [1, 2], name: 'default' });
      expect(await s.call('bump', {})).to.deep.include({ result: { success: true, data: 42 } });
    });

    it("says both causes when cls(config) raises a TypeError of its own and the fallback cls() fails too", async () => {
      const code = python('class Env:\n    def __init__(self, config):\n        self.ranked = sorted(config.get("scores", []))\n    def ping(self):\n        return 1\n', ['ping']);
      const err = await rejection(session(code, { scores: [3, 'trois', '三'] }));
      expect(err).to.have.property('code', 'CONSTRUCTOR_FAILED');
      expect((err as Error).message).to.match(/Env\(config\) raised TypeError: '<' not supported between instances of 'str' and 'int'; then Env\(\) raised TypeError: .*missing 1 required positional argument/);
    });
    it('calls only advertised tools that the class implements; arguments are checked against the schema first', async () => {
      const s = await session(HELP_DESK, {});
      expect(await s.call('not_a_tool', {})).to.deep.include({ runtimeError: 'UNKNOWN_TOOL' });
      expect(await s.call('_find', { ticket_id: 'x' })).to.deep.include({ runtimeError: 'UNKNOWN_TOOL' });
      expect(await s.call('missing_method', {})).to.deep.include({ runtimeError: 'UNKNOWN_TOOL' });
      expect(await s.call('echo', {})).to.deep.include({ runtimeError: 'INVALID_ARGUMENTS' });
      expect(await s.call('echo', { text: 1 })).to.deep.include({ runtimeError: 'INVALID_ARGUMENTS' });
    });

    it("passes keyword arguments with accented or CJK names, as Python takes them (it refused \"é\" as not an identifier); refuses one that is not an identifier", async () => {
      const code = EnvironmentCode.parse({
        name: 'accents',
        language: 'python',
        className: 'Env',
        source: 'class Env:\n    def __init__(self, c):\n        self.n = 0\n    def noter(self, é, 数据=None):\n        self.n += 1\n        return {"success": True, "data": [é, 数据]}\n    def any(self, **kw):\n        return {"success": True, "data": sorted(kw)}\n',
        tools: [tool('noter', { é: { type: 'string' }, 数据: { type: 'integer' } }, ['é']), tool('any', { 'a-b': { type: 'string' }, ﬁ: { type: 'string' } })],
      });
      const s = await session(code, {});
      expect(await s.call('noter', { é: 'été ☀️', 数据: 3 })).to.deep.include({ result: { success: true, data: ['été ☀️', 3] } });
      const dash = await s.call('any', { 'a-b': 'x' });
      expect(dash).to.deep.include({ runtimeError: 'INVALID_ARGUMENTS' });
      expect((dash.result as { error: string }).error).to.include('"a-b" is not a Python identifier');
      // A tool taking **kw gets any identifier as it is (Python does not normalize the keys of a ** mapping).
      expect(await s.call('any', { ﬁ: 'x' })).to.deep.include({ result: { success: true, data: ['ﬁ'] } });
    });

    it('returns canonical JSON: sets as sorted lists, tuples as lists, dates as ISO strings', async () => {
      const s = await session(HELP_DESK, {});
      await s.call('open_ticket', { title: 'b', tags: ['zeta', 'alpha'] });
      await s.call('open_ticket', { title: 'a', tags: ['mid', 'alpha'] });
      const { result } = await s.call('tag_summary', {});
      expect(result).to.deep.equal({ success: true, data: { tags: ['alpha', 'mid', 'zeta'], pair: ['a', 1], today: '2025-01-01', now: '2025-01-01T00:00:03' } });
    });

    it('reports a tool that raises as TOOL_THREW and a non-JSON result as NON_JSON_RESULT; the session goes on', async () => {
      const code = python('class Env:\n    def __init__(self, c):\n        self.n = 0\n    def boom(self):\n        raise ValueError("the fridge is empty")\n    def obj(self):\n        return {"success": True, "data": object()}\n    def ok(self):\n        return {"success": True}\n', ['boom', 'obj', 'ok']);
      const s = await session(code, {});
      expect(await s.call('boom', {})).to.deep.include({ runtimeError: 'TOOL_THREW', result: { success: false, error: 'ValueError: the fridge is empty' } });
      expect(await s.call('obj', {})).to.deep.include({ runtimeError: 'NON_JSON_RESULT' });
      expect(await s.call('ok', {})).to.deep.include({ result: { success: true } });
    });

    it('says where in a state or a result the value JSON cannot write is (a JSON Pointer), and what to do for NaN and infinity; the session goes on', async () => {
      const source = 'class User:\n    def __init__(self, n):\n        self.n = n\n'
        + 'class Env:\n    def __init__(self, config):\n        self.stats = {"avg": 1.5, "rows": [1, 2]}\n        self.users = {"u1": "Ann"}\n'
        + '    def nan(self):\n        self.stats["avg"] = float("nan")\n        return {"success": True}\n'
        + '    def obj(self):\n        self.stats["avg"] = 1.5\n        self.users["u/1 é"] = User("Ann")\n        return {"success": True}\n'
        + '    def res(self):\n        return {"success": True, "data": [{"x": float("inf")}]}\n';
      const s = await session(python(source, ['nan', 'obj', 'res']), {});
      const stateError = async () => {
        const err = await rejection(s.snapshotJson!());
        expect(err).to.have.property('code', 'STATE_INVALID');
        return (err as Error).message;
      };
      await s.call('nan', {});
      expect(await stateError()).to.equal('the instance state is not JSON: Out of range float values are not JSON compliant: nan (at /stats/avg); write None or a finite number there instead');
      await s.call('obj', {});
      expect(await stateError()).to.match(/^the instance state is not JSON: a value of type User is not JSON \(allowed: .*\) \(at \/users\/u~11 é\)$/);
      // In a set: where in the item is not known (the items are sorted by their JSON), so the set's own place is said.
      const inSet = await session(python('class Thing:\n    pass\nclass Env:\n    def __init__(self, config):\n        self.tags = {"a": [1, {(1, Thing())}]}\n', []), {}).then(
        () => null,
        (err: unknown) => err as Error,
      );
      expect(inSet).to.have.property('code', 'STATE_INVALID');
      expect(inSet!.message).to.match(/a value of type Thing is not JSON \(allowed: .*\) \(at an item of the set at \/tags\/a\/1\)$/);
      // Whatever the type's name ("a object" before).
      const o = await session(python('class Env:\n    def __init__(self, c=None):\n        pass\n    def opaque(self):\n        return {"success": True, "data": object()}\n', ['opaque']), {});
      const plain = ((await o.call('opaque', {})).result as { error: string }).error;
      expect(plain).to.match(/^the method returned something that is not JSON: a value of type object is not JSON \(allowed: /);
      const res = await s.call('res', {});
      expect(res.runtimeError).to.equal('NON_JSON_RESULT');
      expect((res.result as { error: string }).error).to.equal('the method returned something that is not JSON: Out of range float values are not JSON compliant: inf (at /data/0/x); write None or a finite number there instead');
    });

    it('says what to fix when the class is named otherwise, a key of the initial state cannot be set, or the class declares __slots__', async () => {
      const named = await rejection(session(python('class TicketEnv:\n    pass\nclass Ticket:\n    pass\n', [], 'Env'), {}));
      expect(named).to.have.property('code', 'CLASS_MISSING');
      expect((named as Error).message).to.equal("the source defines no class named Env; it defines Ticket, TicketEnv: name the environment's class (className) as the source does");
      // Listing them runs none of the environment's code: a __class__ property that raises, a metaclass whose
      // __module__ raises. The interpreter and a session on it go on.
      const bystander = await session(python('class Env:\n    def __init__(self, config):\n        self.n = 1\n    def bump(self):\n        self.n += 1\n        return {"n": self.n}\n', ['bump']), {});
      const lazy = 'class Lazy:\n    @property\n    def __class__(self):\n        raise RuntimeError("not loaded yet")\nconfig = Lazy()\n'
        + 'class Meta(type):\n    @property\n    def __module__(cls):\n        raise RuntimeError("no module")\nclass Odd(metaclass=Meta):\n    pass\nclass TicketEnv:\n    pass\n';
      const listed = await rejection(session(python(lazy, [], 'Env'), {}));
      expect(listed).to.have.property('code', 'CLASS_MISSING');
      expect((listed as Error).message).to.match(/^the source defines no class named Env; it defines .*TicketEnv/);
      expect(await bystander.call('bump', {})).to.deep.include({ result: { n: 2 } });
      const readOnly = await rejection(session(python('class Env:\n    def __init__(self, config):\n        self._n = 0\n    @property\n    def n(self):\n        return self._n\n', []), { n: 1 }));
      expect(readOnly).to.have.property('code', 'CONSTRUCTOR_FAILED');
      expect((readOnly as Error).message).to.match(/^constructing Env failed: setting the initial state's key 'n' on the instance \(EnvScaler sets each key as an attribute after Env\(config\)\) raised AttributeError: /);
      const slots = await rejection(session(python('class Env:\n    __slots__ = ("items",)\n    def __init__(self, config):\n        self.items = []\n', []), {}));
      expect(slots).to.have.property('code', 'STATE_INVALID');
      expect((slots as Error).message).to.match(/no __dict__ \(its class declares __slots__\), and the state is vars\(instance\): keep the state in ordinary attributes/);
    });

    it('keeps multi-byte text (emoji, CJK, accents) exact in state and results', async () => {
      const text = 'Crème brûlée 🍮 — 東京タワー 👩‍💻 ñandú Ωmega 𝔘𝔫𝔦';
      const s = await session(HELP_DESK, { agents: { 'A-ü': { agent_id: 'A-ü', name: text } } });
      expect(await s.call('echo', { text })).to.deep.include({ result: { success: true, data: { text, length: [...text].length } } });
      await s.call('open_ticket', { title: text, tags: ['日本語', 'émoji😀'] });
      const state = (await s.snapshot()) as { agents: Record<string, { name: string }>; tickets: Record<string, { title: string; tags: string[] }> };
      expect(state.agents['A-ü']!.name).to.equal(text);
      const ticket = Object.values(state.tickets)[0]!;
      expect(ticket.title).to.equal(text);
      expect(ticket.tags).to.deep.equal(['日本語', 'émoji😀']);
    });

    it('keeps long multi-byte text exact in states and results (handed from Python to JavaScript as UTF-8), and a lone surrogate too (as text)', async () => {
      const code = python(
        'class Text:\n    def __init__(self, c=None):\n        self.lines = []\n'
        + '    def fill(self, n=0, text=""):\n        self.lines = [text] * n\n        return self.lines\n'
        + '    def odd(self):\n        self.lines = ["\\ud800" * 2000 + "x", "\\udfff\\u00e9"]\n        return self.lines\n',
        ['fill', 'odd'], 'Text');
      const text = 'Crème brûlée 🍮 — 東京タワー 👩‍💻 ñandú Ωmega 𝔘𝔫𝔦 \u2028 "quoted" \\ back\tslash';
      const s = await session(code, {});
      // 3,000 lines: more than the 65,536 characters from which an answer crosses as UTF-8; a line alone: fewer.
      for (const n of [1, 3000]) {
        const lines = Array.from({ length: n }, () => text);
        expect(await s.call('fill', { n, text }), `${n}`).to.deep.include({ result: lines });
        expect(await s.snapshot(), `${n}`).to.deep.equal({ lines });
      }
      const odd = ['\ud800'.repeat(2000) + 'x', '\udfff\u00e9'];
      expect(await s.call('odd', {})).to.deep.include({ result: odd });
      expect(await s.snapshot()).to.deep.equal({ lines: odd });
      const end = await s.finish([pyCheck('lone surrogates kept', 'def check_func(s):\n    return s["lines"][0] == "\\ud800" * 2000 + "x"')]);
      expect(JSON.parse(end.stateJson!)).to.deep.equal({ lines: odd });
      // Written as JSON escapes, so the text survives being stored as UTF-8 (a trajectory's final state): raw, each
      // lone surrogate became U+FFFD there and the check failed on the stored state.
      expect(JSON.parse(Buffer.from(end.stateJson!, 'utf8').toString('utf8'))).to.deep.equal({ lines: odd });
      expect(end.checks!.results).to.deep.equal([{ item: 'lone surrogates kept', passed: true }]);
    });

    it('runs check_func(final_state) with initial_state visible; a non-bool fails; each check is isolated', async () => {
      const s = await session(HELP_DESK, SEEDED_STATE);
      await s.call('close_ticket', { ticket_id: 'T-1' });
      const end = await s.finish([
        pyCheck('closed now, open before', 'def check_func(final_state):\n    return final_state["tickets"]["T-1"]["status"] == "closed" and initial_state["tickets"]["T-1"]["status"] == "open"'),
        pyCheck('mutates both states', 'def check_func(final_state):\n    final_state["tickets"].clear()\n    initial_state["tickets"].clear()\n    return True'),
        pyCheck('sees neither change', 'def check_func(final_state):\n    return len(final_state["tickets"]) == 1 and len(initial_state["tickets"]) == 1'),
        pyCheck('not a bool', 'def check_func(final_state):\n    return 1'),
        pyCheck('raises', 'def check_func(final_state):\n    return final_state["nope"]'),
        pyCheck('no check_func', 'def check(final_state):\n    return True'),
        pyCheck('disallowed import', 'import os\ndef check_func(final_state):\n    return True'),
        pyCheck('endless', 'def check_func(final_state):\n    while True:\n        pass'),
      ]);
      expect(end.stateError).to.equal(null);
      expect((JSON.parse(end.stateJson!) as { tickets: Record<string, { status: string }> }).tickets['T-1']!.status).to.equal('closed');
      const results = end.checks!.results;
      expect(results.map(r => r.passed)).to.deep.equal([true, true, true, false, false, false, false, false]);
      expect(results.slice(3).map(r => r.errorCode)).to.deep.equal(['CHECK_NOT_BOOLEAN', 'CHECK_THREW', 'CHECK_INVALID', 'CHECK_INVALID', 'DEADLINE_EXCEEDED']);
      expect(end.checks!.reward).to.equal(3 / 8);
    });

    it("hands checks copies that are what copy.deepcopy gives: shared containers stay shared (across tuples and dataclasses too), key order, bools, tuples, sets, dates, dict subclasses, int keys and the environment's objects keep their types", async () => {
      // A state of plain JSON beside everything a copy of dicts and lists alone would get wrong.
      const env = python(
        [
          'import collections, dataclasses, datetime',
          '@dataclasses.dataclass',
          'class Slot:',
          '    n: object',
          'class Env:',
          '    def __init__(self, c=None):',
          '        shared = ["x"]',
          '        self.a = {"list": shared, "zz": 1, "again": shared, "aa": 2, "deep": [[{"k": [1, 2.5, None, True, "é🙂"]}]]}',
          '        self.tags = ("t1", "t2")',
          '        self.held = (shared, Slot(shared))',
          '        self.seen = {"b", "a"}',
          '        self.when = datetime.date(2025, 1, 2)',
          '        self.ordered = collections.OrderedDict([("z", 1), ("y", 2)])',
          '        self.counts = collections.defaultdict(int, {"q": 1})',
          '        self.by_id = {1: "one", 2: "two"}',
          '        self.slot = Slot(3)',
          '    def touch(self):',
          '        self.a["list"].append("y")',
          '        return len(self.a["again"])',
        ].join('\n'),
        ['touch'],
      );
      const s = await session(env, {});
      expect(await s.call('touch', {})).to.deep.include({ result: 2 });
      const types =
        'def check_func(final_state):\n' +
        '    import collections, datetime\n' +
        '    s = final_state\n' +
        '    return (s["a"]["list"] is s["a"]["again"] and s["a"]["list"] == ["x", "y"] and type(s["tags"]) is tuple and type(s["seen"]) is set\n' +
        '            and s["held"][0] is s["a"]["list"] and s["held"][1].n is s["a"]["list"] and list(s["a"]) == ["list", "zz", "again", "aa", "deep"]\n' +
        '            and [type(x).__name__ for x in s["a"]["deep"][0][0]["k"]] == ["int", "float", "NoneType", "bool", "str"]\n' +
        '            and type(s["when"]) is datetime.date and type(s["ordered"]) is collections.OrderedDict and list(s["ordered"]) == ["z", "y"]\n' +
        '            and type(s["counts"]) is collections.defaultdict and s["counts"]["new"] == 0 and sorted(s["by_id"]) == [1, 2]\n' +
        '            and type(s["slot"]).__name__ == "Slot" and s["slot"].n == 3 and s["a"]["deep"] == [[{"k": [1, 2.5, None, True, "é🙂"]}]]\n' +
        '            and initial_state["a"]["list"] is initial_state["a"]["again"] and initial_state["a"]["list"] == ["x"])';
      const end = await s.finish([
        pyCheck('types and sharing', types),
        // A change through one of two shared names is seen through the other, in this check's copy only.
        pyCheck('changes its copy', 'def check_func(final_state):\n    final_state["a"]["again"].append("z")\n    final_state["slot"].n = 9\n    initial_state["a"]["list"].clear()\n    return final_state["a"]["list"][-1] == "z"'),
        pyCheck('types and sharing, again', types),
      ]);
      expect(end.checks!.results.map(r => [r.item, r.passed, r.errorCode ?? null])).to.deep.equal([
        ['types and sharing', true, null],
        ['changes its copy', true, null],
        ['types and sharing, again', true, null],
      ]);
    });

    it('runs Python checks on JSON states outside a session (runner.checks)', async () => {
      const result = await runner.checks({
        checks: [pyCheck('grew', 'def check_func(final_state):\n    return final_state["n"] == initial_state["n"] + 1')],
        finalState: { n: 2 },
        initialState: { n: 1 },
        limits: LIMITS,
      });
      expect(result).to.deep.include({ reward: 1, solved: true });
    });
  });

  describe('episode checks (episode: true: the transcript and the turn states)', () => {
    const said = 'def check_func(final_state):\n    said = [m.get("content") or "" for m in episode["messages"] if m["role"] == "assistant"]\n    return any("zoë 東京" in s.lower().replace(",", "") for s in said)';
    const turns = 'def check_func(final_state):\n    return [t["n"] for t in episode["turn_states"]] == [1, 2] and final_state["n"] == 2';
    const messages = [
      { role: 'system', content: 'policy' },
      { role: 'user', content: 'hello' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'inc', arguments: '{}' } }] },
      { role: 'tool', tool_call_id: 'c1', content: '{"success":true}' },
      { role: 'assistant', content: 'Done, Zoë 東京 🎉' },
    ];

    it('gives a Python check the transcript and the turn states as the global episode; a check may sort them without the next one seeing it', async () => {
      const sorter = 'def check_func(final_state):\n    episode["messages"].clear()\n    episode["turn_states"].reverse()\n    return True';
      const result = await runner.checks({
        checks: [{ ...pyCheck('sorts', sorter), episode: true }, { ...pyCheck('said', said), episode: true }, { ...pyCheck('turns', turns), episode: true }],
        finalState: { n: 2 },
        initialState: { n: 0 },
        limits: LIMITS,
        episode: { messages, turnStates: [{ n: 1 }, { n: 2 }] },
      });
      expect(result.results.map(r => [r.item, r.passed, r.errorCode])).to.deep.equal([['sorts', true, undefined], ['said', true, undefined], ['turns', true, undefined]]);
    });

    it('fails an episode check given no episode (CHECK_NEEDS_EPISODE) and a JavaScript check that asks for one (CHECK_INVALID); other checks are unaffected', async () => {
      const bare = await runner.checks({ checks: [{ ...pyCheck('said', said), episode: true }, pyCheck('plain', 'def check_func(s):\n    return "episode" not in globals()')], finalState: { n: 2 }, initialState: { n: 0 }, limits: LIMITS });
      expect(bare.results.map(r => [r.passed, r.errorCode])).to.deep.equal([[false, 'CHECK_NEEDS_EPISODE'], [true, undefined]]);
      const js = await createLocalSandboxRunner().checks({ checks: [{ item: 'js', check: 'function check() { return true; }', episode: true }], finalState: {}, initialState: {}, limits: LIMITS });
      expect(js.results[0]).to.deep.include({ passed: false, errorCode: 'CHECK_INVALID' });
    });

    it('scores a rollout-style end: the session runs the plain checks, the episode checks run after it with the transcript; a served session (no episode) fails them', async () => {
      const router = createLanguageRouter({ js: createLocalSandboxRunner(), python: runner });
      const scenario = {
        initialState: SEEDED_STATE,
        checklist: [pyCheck('closed', 'def check_func(s):\n    return s["tickets"]["T-1"]["status"] == "closed"'), { ...pyCheck('said', said), episode: true as const }],
      };
      const s = await router.openSession(HELP_DESK, SEEDED_STATE, LIMITS);
      await s.call('close_ticket', { ticket_id: 'T-1' });
      const end = await s.finish(scenario.checklist.filter(c => !c.episode));
      expect(end.checks!.results.map(r => r.item)).to.deep.equal(['closed']);
      const finalState = JSON.parse(end.stateJson!) as unknown;
      const rolled = await scoreFinalState(router, scenario, finalState, LIMITS, null, end.checks, { messages, turnStates: null });
      expect(rolled).to.deep.include({ reward: 1, checksError: null });
      // Served (no transcript): no reward, saying why (it gave 0.5, the episode check counted as failed).
      const served = await scoreFinalState(router, scenario, finalState, LIMITS);
      expect(served.reward).to.equal(null);
      expect(served.checksError).to.match(/^CHECK_NEEDS_EPISODE: 1 of the scenario's 2 checks read the episode .* no reward is given; score such scenarios with envfleet rollouts$/);
      expect(served.checks[0]).to.deep.include({ item: 'closed', passed: true });
      expect(served.checks[1]).to.deep.include({ item: 'said', passed: false, errorCode: 'CHECK_NEEDS_EPISODE' });
      const wrong = await scoreFinalState(router, scenario, finalState, LIMITS, null, end.checks, { messages: messages.slice(0, 4), turnStates: null });
      expect(wrong.checks.map(c => c.passed)).to.deep.equal([true, false]);
    });

    it('hands an episode check the final state as the environment wrote it (a float 1.0 stays a float, as in the session)', async () => {
      const router = createLanguageRouter({ js: createLocalSandboxRunner(), python: runner });
      const floats = python('class Env:\n    def __init__(self, config):\n        self.price = 1.0\n    def noop(self):\n        return {"success": True}\n', ['noop']);
      const isFloat = 'def check_func(s):\n    return type(s["price"]) is float and repr(s["price"]) == "1.0"';
      const scenario = { initialState: {}, checklist: [pyCheck('in session', isFloat), { ...pyCheck('after', isFloat), episode: true as const }] };
      const s = await router.openSession(floats, {}, LIMITS);
      const end = await s.finish(scenario.checklist.filter(c => !c.episode));
      expect(end.stateJson).to.equal('{"price":1.0}');
      const score = await scoreFinalState(router, scenario, new RawJson(end.stateJson!), LIMITS, null, end.checks, { messages, turnStates: null });
      expect(score.checks.map(c => [c.item, c.passed])).to.deep.equal([['in session', true], ['after', true]]);
    });
    it("gives the episode checks and the trajectory each turn's state as the session wrote it: an integer past 2^53 and 100.0 stay as they are", async () => {
      const router = createLanguageRouter({ js: createLocalSandboxRunner(), python: runner });
      const source = 'class Bank:\n    def __init__(self, config):\n        self.account_id = 2**63 + 7\n        self.balance = 100.0\n        self.log = []\n    def book(self):\n        self.log.append("réservé 😀")\n        return {"success": True}\n    def look(self):\n        return {"success": True, "balance": self.balance}\n';
      const tools = ['book', 'look'].map(name => ({ type: 'function', function: { name, description: name, parameters: { type: 'object', properties: {} } } }));
      const env = { id: 'env-bank', description: { summary: 'bank', introduction: 'A bank.' }, className: 'Bank', source, language: 'python', tools } as unknown as EnvironmentRecord;
      const exact = 'def check_func(final_state):\n    t = episode["turn_states"]\n    return [s["account_id"] for s in t] == [2**63 + 7] * 2 and all(type(s["balance"]) is float for s in t) and final_state["account_id"] == 2**63 + 7';
      const scenario = {
        id: 'bank-1', runId: 'r', environmentId: env.id, index: 0, status: 'ready', initialState: {}, task: 'book',
        checklist: [{ ...pyCheck('turn states exact', exact), episode: true }],
        script: { turns: [{ messages: ['book'] }, { messages: ['look'] }], maxStepsPerTurn: 3 },
      } as unknown as ScenarioRecord;
      // Each user turn: the call, then a text answer.
      const gateway = callingGateway([[{ name: 'book', arguments: {} }], [{ name: 'look', arguments: {} }]]);
      const t = await runEpisode(
        { gateway, sandbox: router },
        { runId: 'r', scenario, env, mode: 'conversational', sample: 0, limits: { maxSteps: 10, maxTokens: 0, maxWallMs: 120_000 }, sandboxLimits: LIMITS, policyModel: null, userModel: null, sampling: { temperature: 1, maxTokens: 100 } },
      );
      expect(t.termination.reason).to.equal('agent-finished');
      expect(t.checks).to.deep.equal([{ item: 'turn states exact', passed: true }]);
      expect(t.reward).to.equal(1);
      // What the store keeps (stringifyJson: the trajectory's text).
      const turn = '{"account_id":9223372036854775815,"balance":100.0,"log":["réservé 😀"]}';
      expect(stringifyJson(t)).to.include(`"turnStates":[${turn},${turn}]`);
    });
  });

  describe('determinism', () => {
    const script = async (s: EnvSession) => {
      const ids: unknown[] = [];
      for (const title of ['one', 'two', 'three']) ids.push((await s.call('open_ticket', { title })).result);
      return { ids, state: await s.snapshot() };
    };

    it('gives equal states in two sessions on two interpreters (clock, uuid4, random in the constructor and the tools)', async () => {
      const a = await session(HELP_DESK, SEEDED_STATE);
      const b = await session(HELP_DESK, SEEDED_STATE);
      const stats = await runner.stats();
      // Sessions go to the interpreter with the fewest: a and b are on different interpreters.
      expect(stats.interpreters.map(i => i.sessions).sort()).to.deep.equal([1, 1]);
      // Interleaved calls: each session keeps its own random stream.
      const [ra, rb] = await Promise.all([script(a), script(b)]);
      expect(ra).to.deep.equal(rb);
      const state = ra.state as { events: string[]; desk_id: string; shift_code: number };
      expect(state.events[0]).to.match(/^opened T-[0-9a-f]{8} at 2025-01-01T00:00:01 lucky 0\.\d{6}$/);
      expect(state.desk_id).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      // A third session, opened later on whichever interpreter, gives the same again.
      const c = await session(HELP_DESK, SEEDED_STATE);
      expect(await script(c)).to.deep.equal(ra);
    });

    it('gives another scenario other random values', async () => {
      const a = await session(HELP_DESK, SEEDED_STATE);
      const b = await session(HELP_DESK, { ...SEEDED_STATE, events: ['x'] });
      const [sa, sb] = [(await a.snapshot()) as { desk_id: string }, (await b.snapshot()) as { desk_id: string }];
      expect(sa.desk_id).not.to.equal(sb.desk_id);
    });
  });

  describe('hostile Python', () => {
    const refused = async (source: string, pattern: RegExp) => {
      const err = await rejection(runner.openSession(python(source, ['t']), {}, LIMITS));
      expect(err).to.have.property('code', 'SOURCE_LOAD_FAILED');
      expect((err as Error).message).to.match(pattern);
    };

    it('refuses imports outside the allow-list before anything runs (the module body would spin forever)', async () => {
      const started = performance.now();
      await refused('while True:\n    pass\nimport os\nclass Env:\n    pass\n', /import of "os" is not allowed/);
      expect(performance.now() - started).to.be.below(LIMITS.createDeadlineMs);
      await refused('import js\nclass Env:\n    pass\n', /import of "js"/);
      await refused('import pyodide_js\nclass Env:\n    pass\n', /import of "pyodide_js"/);
      await refused('from pyodide.ffi import run_js\nclass Env:\n    pass\n', /import of "pyodide.ffi"/);
      await refused('import pyodide.code\nclass Env:\n    pass\n', /import of "pyodide.code"/);
      await refused('import socket\nclass Env:\n    pass\n', /import of "socket"/);
      await refused('class Env:\n    def t(self):\n        return object.__subclasses__()\n', /"__subclasses__" is not allowed/);
      await refused('class Env:\n    def t(self):\n        return eval("1")\n', /"eval" is not allowed/);
    });

    /** Routes that get past the AST check by building names at run time: the deeper layers must hold. */
    const ESCAPES = `
B = getattr(print, "__se" + "lf__")
imp = getattr(B, "__imp" + "ort__")

def attempt(fn):
    try:
        return "reached: " + str(fn())
    except BaseException as e:
        return "refused: " + type(e).__name__ + ": " + str(e)

def js_module():
    return imp("js").process

def pyodide_js():
    return imp("pyodide_js").constructor.constructor("return process")()

def run_js():
    return imp("pyodide.code", None, None, ["run_js"]).run_js("process")

def ffi():
    return imp("pyodide.ffi", None, None, ["to_js"]).to_js([1]).constructor.constructor("return process")()

def walk():
    # The subclasses walk: every class, the globals of every function on it, any JS object in them
    # (a JsProxy such as pyodide.webloop's scheduleCallback), and that object's Function constructor.
    sub = "__subcl" + "asses__"
    found = {}
    todo = [object]
    seen = set()
    while todo:
        cls = todo.pop()
        if id(cls) in seen:
            continue
        seen.add(id(cls))
        try:
            todo.extend(getattr(cls, sub)() if cls is not type else getattr(type, sub)(type))
        except BaseException:
            pass
        for v in list(getattr(cls, "__dict__", {}).values()):
            g = getattr(v, "__glo" + "bals__", None)
            if isinstance(g, dict):
                for key, x in list(g.items()):
                    if type(type(x)).__name__ == "_JsProxyMetaClass":
                        found[key] = x
    out = []
    for key, o in found.items():
        try:
            out.append(key + " -> " + str(o.constructor.constructor("return JSON.stringify(process.env)")()))
        except BaseException as e:
            out.append(key + " -> " + str(e)[:120])
    return out

def environ():
    return dict(imp("os").environ)

def sock(port):
    return imp("socket").create_connection(("127.0.0.1", port), timeout=1)

def passwd():
    return open("/etc/passwd").read()

def unblocked(port):
    # Python-level blocking is bypassable: drop the import blocker, then try the routes again.
    meta_path = imp("sys").meta_path
    for finder in list(meta_path):
        if type(finder).__name__ == "_Blocker":
            meta_path.remove(finder)
    return {
        "socket": attempt(lambda: sock(port)),
        "js": attempt(js_module),
        "pyodide_js": attempt(pyodide_js),
        "run_js": attempt(run_js),
        "ffi": attempt(ffi),
    }

class Env:
    def __init__(self, c):
        self.port = 0
    def without_blocker(self):
        return {"success": True, "data": unblocked(self.port)}
    def probe(self):
        return {"success": True, "data": {
            "js": attempt(js_module), "pyodide_js": attempt(pyodide_js), "run_js": attempt(run_js), "ffi": attempt(ffi),
            "walk": attempt(walk), "environ": attempt(environ), "socket": attempt(lambda: sock(self.port)), "passwd": attempt(passwd),
        }}
`;

    it('blocks js, pyodide_js, run_js, pyodide.ffi, the subclasses walk, os.environ, sockets and host files when names are built at run time', async () => {
      // The walk visits ~1,000 classes: a generous deadline, so that a loaded machine does not turn it into DEADLINE_EXCEEDED.
      const s = await session(python(ESCAPES, ['probe', 'without_blocker']), { port: listenerPort }, { ...LIMITS, callDeadlineMs: 20_000 });
      const { result, runtimeError } = await s.call('probe', {});
      expect(runtimeError, JSON.stringify(result)).to.equal(undefined);
      const data = (result as { data: Record<string, string> }).data;
      if (process.env['ENVFLEET_TEST_VERBOSE']) console.log(data);
      for (const route of ['js', 'pyodide_js', 'run_js', 'ffi']) expect(data[route], route).to.match(/^refused: ImportError: import of "[a-z_.]+" is not allowed/);
      // The walk does reach a JS object (a JsProxy), but its Function constructor is off (--disallow-code-generation-from-strings).
      const walk = JSON.parse(data['walk']!.replace(/^reached: /, '').replace(/'/g, '"')) as string[];
      expect(walk.length).to.be.greaterThan(0);
      for (const attempt of walk) expect(attempt).to.match(/ -> EvalError: Code generation from strings disallowed/);
      expect(data['walk']).not.to.include(CANARY);
      expect(data['environ']).to.equal('reached: {}');
      expect(data['socket']).to.match(/^refused: ImportError: import of "socket" is not allowed/);
      expect(data['passwd']).to.match(/^refused: FileNotFoundError/);
      expect(connections).to.equal(0);
    });

    it('still reaches nothing once the import blocker is removed: no socket (ws stubbed), no js module, no code generation', async () => {
      // Run last in its interpreter's life: it removes that interpreter's blocker, so the session's interpreter is then recycled.
      const s = await session(python(ESCAPES, ['probe', 'without_blocker']), { port: listenerPort }, { ...LIMITS, callDeadlineMs: 20_000 });
      const { result, runtimeError } = await s.call('without_blocker', {});
      expect(runtimeError).to.equal(undefined);
      const data = (result as { data: Record<string, string> }).data;
      if (process.env['ENVFLEET_TEST_VERBOSE']) console.log(data);
      expect(data['socket']).to.match(/^refused: OSError/);
      expect(data['js']).to.match(/^refused: (ModuleNotFoundError|ImportError|AttributeError)/);
      expect(data['pyodide_js']).to.match(/^refused: (ModuleNotFoundError|ImportError)/);
      expect(data['run_js']).to.match(/^refused: /);
      // Re-imported without its JS side, pyodide.ffi's to_js hands back a plain list (no constructor to climb).
      expect(data['ffi']).to.match(/^refused: /);
      for (const v of Object.values(data)) expect(v).not.to.match(/^reached/);
      await new Promise(resolve => setTimeout(resolve, 200));
      expect(connections).to.equal(0);
      // Its interpreter is tampered with (no blocker): once the session ends, the interpreter is replaced.
      const before = (await runner.stats()).interpreters.map(i => i.n);
      open.splice(open.indexOf(s), 1);
      await s.close();
      const after = (await runner.stats()).interpreters.map(i => i.n);
      expect(after.filter(n => !before.includes(n))).to.have.length(1);
    });

    it('interrupts a plain endless loop at the deadline (KeyboardInterrupt) and ends the session', async () => {
      const s = await session(python('class Env:\n    def __init__(self, c):\n        pass\n    def spin(self):\n        while True:\n            pass\n    def ok(self):\n        return {"success": True}\n', ['spin', 'ok']), {});
      expect(await s.call('spin', {})).to.deep.include({ runtimeError: 'DEADLINE_EXCEEDED' });
      // the next call did not run: it says which limit ended the session (it said "the call ran past its deadline" again)
      const after = await s.call('ok', {});
      expect(after).to.deep.include({ runtimeError: 'ENV_DISPOSED' });
      expect((after.result as { error: string }).error).to.match(/^the environment was thrown away after an earlier call hit a limit \(DEADLINE_EXCEEDED: the call ran past its deadline/);
    });

    it('terminates and recycles an interpreter whose loop swallows the interrupt (bare except); the runtime keeps serving', async () => {
      const swallow = python('class Env:\n    def __init__(self, c):\n        pass\n    def swallow(self):\n        while True:\n            try:\n                while True:\n                    pass\n            except:\n                pass\n', ['swallow']);
      const s = await session(swallow, {}, { ...LIMITS, callDeadlineMs: 300 });
      const outcome = await s.call('swallow', {});
      expect(outcome).to.deep.include({ runtimeError: 'DEADLINE_EXCEEDED' });
      expect((outcome.result as { error: string }).error).to.match(/interpreter was terminated/);
      const after = await session(HELP_DESK, SEEDED_STATE);
      expect(await after.call('get_ticket', { ticket_id: 'T-1' })).to.deep.include({ result: { success: true, data: SEEDED_STATE.tickets['T-1'] } });
    });

    it('ends a bytearray(10**10) bomb and a growing-list bomb with MEMORY_EXCEEDED; the runtime keeps serving', async () => {
      const bombs = python(
        'class Env:\n    def __init__(self, c):\n        pass\n    def bytes_bomb(self):\n        return {"success": True, "data": len(bytearray(10**10))}\n    def gig(self):\n        return {"success": True, "data": len(bytearray(10**9))}\n    def list_bomb(self):\n        xs = []\n        while True:\n            xs.append(bytearray(1 << 20))\n    def caught(self):\n        xs = []\n        try:\n            while True:\n                xs.append(bytearray(1 << 20))\n        except MemoryError:\n            return {"success": True, "data": len(xs)}\n',
        ['bytes_bomb', 'gig', 'list_bomb', 'caught'],
      );
      const limits = { ...LIMITS, callDeadlineMs: 20_000 };
      for (const method of ['bytes_bomb', 'gig', 'list_bomb', 'caught']) {
        const s = await session(bombs, {}, limits);
        const out = await s.call(method, {});
        expect(out, method).to.deep.include({ runtimeError: 'MEMORY_EXCEEDED' });
        // The setting that bounds it, and what to do.
        expect((out.result as { error: string }).error, method).to.match(/ENVFLEET_PYTHON_HEAP_MB=\d+ MB, shared by the environments on it: keep less in memory per call/);
      }
      const after = await session(HELP_DESK, SEEDED_STATE);
      expect(await after.call('echo', { text: 'still here' })).to.deep.include({ result: { success: true, data: { text: 'still here', length: 10 } } });
    });

    it('ends a session that used up its CPU budget with CPU_BUDGET_EXCEEDED, and caps results', async () => {
      const code = python('import time\nclass Env:\n    def __init__(self, c):\n        pass\n    def busy(self):\n        t = time.perf_counter\n        a = t()\n        while t() - a < 0.1:\n            pass\n        return {"success": True}\n    def big(self):\n        return {"success": True, "data": "x" * 5000}\n', ['busy', 'big']);
      const s = await session(code, {}, { ...LIMITS, sessionCpuMs: 350, maxResultBytes: 1000 });
      const big = await s.call('big', {});
      expect(big).to.deep.include({ runtimeError: 'RESULT_TOO_LARGE' });
      // The setting, and what to do.
      expect((big.result as { error: string }).error).to.match(/^the result is more than the result cap of 1000 bytes of JSON .*\(ENVFLEET_SANDBOX_MAX_RESULT_KB\): a tool should return a page or the items asked for/);
      const codes: (string | undefined)[] = [];
      for (let i = 0; i < 6 && !codes.includes('CPU_BUDGET_EXCEEDED'); i++) codes.push((await s.call('busy', {})).runtimeError);
      // Each busy call takes at least 100 ms: at most 3 fit in 350 ms (fewer on a loaded machine, where a call takes longer).
      expect(codes[0]).to.equal(undefined);
      expect(codes.filter(c => c === undefined).length).to.be.within(1, 3);
      expect(codes.at(-1)).to.equal('CPU_BUDGET_EXCEEDED');
      expect(await s.call('big', {})).to.deep.include({ runtimeError: 'ENV_DISPOSED' });
    });

    it("answers a tool's runaway recursion as CPython does, with its RecursionError (TOOL_THREW), and the session goes on with its state", async () => {
      // Careless, not hostile: a property that reads itself. EnvScaler's rollouts (CPython) show the RecursionError as
      // the call's error and go on with the environment; until 2026-12-05 the session ended here (STACK_OVERFLOW).
      const source = 'class Env:\n    def __init__(self, c):\n        self.n = 0\n    @property\n    def total(self):\n        return self.total + 1\n'
        + '    def deep(self):\n        self.n += 1\n        return self.total\n    def bump(self, note):\n        self.n += 1\n        return {"n": self.n, "note": note}\n';
      const s = await session(python(source, ['deep', 'bump']), {});
      const failed = await s.call('deep', {});
      expect(failed).to.deep.include({ runtimeError: 'TOOL_THREW' });
      expect((failed.result as { error: string }).error).to.match(/^RecursionError: maximum recursion depth exceeded/);
      expect(await s.call('bump', { note: 'encore 再来 🔁' })).to.deep.include({ result: { n: 2, note: 'encore 再来 🔁' } });
      expect((await s.call('deep', {})).runtimeError).to.equal('TOOL_THREW');
      expect(await s.snapshot()).to.deep.equal({ n: 3 });
    });
    it('answers a KeyboardInterrupt the code raised itself (a tool, one caught and raised again, a constructor, a check) as its own exception, not a deadline; the session goes on, and a loop past the deadline still ends it', async () => {
      // Careless, not hostile: code that signals "stop" with KeyboardInterrupt. Before, it read as DEADLINE_EXCEEDED
      // after a few microseconds, and the session ended.
      const own = ' (the code raised it itself, within its deadline)';
      const source = 'class Env:\n    def __init__(self, c):\n        self.n = 0\n        if c.get("stop"):\n            raise KeyboardInterrupt("au démarrage")\n    def stop(self, why):\n        self.n += 1\n        raise KeyboardInterrupt(why)\n'
        + '    def again(self):\n        try:\n            raise KeyboardInterrupt()\n        except KeyboardInterrupt:\n            self.n += 1\n            raise\n'
        + '    def bump(self):\n        self.n += 1\n        return {"n": self.n}\n    def spin(self):\n        while True:\n            pass\n';
      const code = python(source, ['stop', 'again', 'bump', 'spin']);
      const s = await session(code, {});
      for (const [tool, args, error] of [['stop', { why: 'arrêt 停止 🛑' }, 'KeyboardInterrupt: arrêt 停止 🛑'], ['again', {}, 'KeyboardInterrupt']] as const) {
        const failed = await s.call(tool, args);
        expect(failed, tool).to.deep.include({ runtimeError: 'TOOL_THREW' });
        expect((failed.result as { error: string }).error, tool).to.equal(error + own);
      }
      expect(await s.call('bump', {})).to.deep.include({ result: { n: 3 } });
      const checks = await runner.checks({
        checks: [
          pyCheck('raises', 'def check_func(final_state):\n    raise KeyboardInterrupt("non")\n'),
          pyCheck('passes', 'def check_func(final_state):\n    return final_state["n"] == 3\n'),
          pyCheck('spins', 'def check_func(final_state):\n    while True:\n        pass\n'),
        ],
        finalState: { n: 3 },
        initialState: { n: 0 },
        limits: LIMITS,
      });
      expect(checks.results).to.deep.equal([
        { item: 'raises', passed: false, error: 'KeyboardInterrupt: non' + own, errorCode: 'CHECK_THREW' },
        { item: 'passes', passed: true },
        { item: 'spins', passed: false, error: 'the call ran past its deadline and was interrupted', errorCode: 'DEADLINE_EXCEEDED' },
      ]);
      const err = await rejection(session(code, { stop: true }));
      expect(err).to.have.property('code', 'CONSTRUCTOR_FAILED');
      expect((err as Error).message).to.equal('constructing Env failed: KeyboardInterrupt: au démarrage' + own);
      expect(await s.call('spin', {})).to.deep.include({ runtimeError: 'DEADLINE_EXCEEDED' });
      expect(await s.call('bump', {})).to.deep.include({ runtimeError: 'ENV_DISPOSED' });
    });

    it("stops the environment that holds most of a full interpreter, not the one whose call found no room: that call is SANDBOX_MEMORY_FULL (an episode waits it out)", async () => {
      // Careless, not hostile: a module-level list that keeps 8 MB of every call. Its neighbour's calls take 16 MB for a
      // moment and give it back. Before, the neighbour's call was the one to meet the cap, and was recorded as its own
      // environment's MEMORY_EXCEEDED (a stranger's probe: every episode sharing the interpreter ended environment-error).
      const hoarder = python('KEPT = []\nclass Hoarder:\n    def __init__(self, c):\n        self.n = 0\n    def hoard(self):\n        KEPT.append(bytearray(8 << 20))\n        self.n += 1\n        return {"success": True, "data": self.n}\n', ['hoard'], 'Hoarder');
      const worker = python('class Worker:\n    def __init__(self, c):\n        self.runs = 0\n    def work(self, label):\n        scratch = bytearray(16 << 20)\n        self.runs += 1\n        return {"success": True, "data": {"label": label, "bytes": len(scratch)}}\n', ['work'], 'Worker');
      const r = smallRunner();
      try {
        const h = await r.openSession(hoarder, {}, LIMITS);
        const w = await r.openSession(worker, {}, LIMITS);
        const w2 = await r.openSession(worker, {}, LIMITS);
        let met: Awaited<ReturnType<typeof w.call>>[] = [];
        let failedSessions: (typeof w)[] = [];
        for (let round = 0; round < 40 && !met.length; round++) {
          expect(await h.call('hoard', {}), `hoard, round ${round}`).to.not.have.property('runtimeError');
          // Two calls at once, each needing the same room: the second is queued behind the first. When both meet the cap,
          // the second runs before the hoarder the first one's failure stopped has been dropped (its memory still held,
          // the session already lost), and must not be taken for its own cause either. (Whether both meet it depends on
          // where the allocator finds room after the first one's failure: both did in most runs, one in some.)
          const done = await Promise.all([w.call('work', { label: `tâche ${round} 作業 🧮` }), w2.call('work', { label: `tâche ${round} bis` })]);
          met = done.filter(d => d.runtimeError);
          if (met.length) failedSessions = [w, w2].filter((_, i) => done[i]!.runtimeError);
        }
        expect(met.length, 'a worker met the full heap').to.be.at.least(1);
        for (const m of met) {
          expect(m).to.deep.include({ runtimeError: 'SANDBOX_MEMORY_FULL' });
          expect((m.result as { error: string }).error).to.match(/ENVFLEET_PYTHON_HEAP_MB=192.*another environment held about [\d.]+ MB against this one's [\d.]+ MB, and was stopped/);
        }
        // The hoarder is the one stopped, and says why; the worker's session ended too (its call stopped half-way).
        const stopped = await h.call('hoard', {});
        expect(stopped).to.deep.include({ runtimeError: 'ENV_DISPOSED' });
        expect((stopped.result as { error: string }).error).to.match(/^this environment held about [\d.]+ MB, the most of its Python interpreter's 192 MB/);
        for (const f of failedSessions) expect(await f.call('work', { label: 'x' })).to.deep.include({ runtimeError: 'ENV_DISPOSED' });
        // The same work goes through on a session opened again (an episode's next attempt).
        const again = await r.openSession(worker, {}, LIMITS);
        expect(await again.call('work', { label: 'encore' })).to.deep.include({ result: { success: true, data: { label: 'encore', bytes: 16 << 20 } } });
        // Alone, the hoarder is its own cause: its own call meets the cap and it is MEMORY_EXCEEDED, as before.
        const alone = await r.openSession(hoarder, {}, LIMITS);
        await again.close();
        let own: Awaited<ReturnType<typeof alone.call>> | null = null;
        for (let round = 0; round < 40 && !own; round++) {
          const out = await alone.call('hoard', {});
          if (out.runtimeError) own = out;
        }
        expect(own).to.deep.include({ runtimeError: 'MEMORY_EXCEEDED' });
      } finally {
        await r.close();
      }
    });

    it('creates no environment where it would not fit beside the running ones: SANDBOX_MEMORY_FULL before it is tried (its job waits), the running ones go on, and once some end it is created', async () => {
      // τ-bench airline at the default concurrency: creations tried in an interpreter full of running episodes' databases
      // failed one after another, fatally at times, taking the running ones along (a stranger's probe: no trajectory in
      // 6 minutes, episodes ended environment-error for good).
      const holder = python('KEPT = []\nclass Holder:\n    def __init__(self, c):\n        KEPT.append(bytearray(c["mb"] << 20))\n        self.n = 0\n    def ping(self):\n        self.n += 1\n        return {"success": True, "data": self.n}\n', ['ping'], 'Holder');
      const newcomer = python('class Big:\n    def __init__(self, c):\n        self.head = c["pad"][:8]\n    def ping(self):\n        return {"success": True, "data": self.head}\n', ['ping'], 'Big');
      const r = smallRunner();
      try {
        const held = [];
        for (let i = 0; i < 4; i++) held.push(await r.openSession(holder, { mb: 36 }, LIMITS));
        // 3 MB of JSON: creating it may take 24 MB, more than is left of 192 beside 4 × 36 MB.
        const pad = 'é—数据 🛫'.repeat(300_000);
        const refused = await rejection(r.openSession(newcomer, { pad }, LIMITS));
        expect(refused).to.have.property('code', 'SANDBOX_MEMORY_FULL');
        expect((refused as Error).message).to.match(/had no room to create the environment: its 4 other environments held about [\d.]+ MB, and creating this one may take about [\d.]+ MB/);
        for (const h of held) expect(await h.call('ping', {})).to.deep.include({ result: { success: true, data: 1 } });
        // Room is held for it a while: a small creation that would fit beside the others (12 MB, a sixteenth of the cap)
        // is refused too, so that a flow of small ones does not keep the large one out for ever (a stranger's review).
        const heldMb = Number(/held about ([\d.]+) MB/.exec((refused as Error).message)![1]);
        expect(heldMb + 12, 'the small one alone would fit').to.be.at.most(192);
        const small = await rejection(r.openSession(holder, { mb: 1 }, LIMITS));
        expect(small).to.have.property('code', 'SANDBOX_MEMORY_FULL');
        for (const h of held.splice(0, 2)) await h.close();
        const big = await r.openSession(newcomer, { pad }, LIMITS);
        expect(await big.call('ping', {})).to.deep.include({ result: { success: true, data: 'é—数据 🛫é—' } });
        for (const h of held) expect(await h.call('ping', {})).to.deep.include({ result: { success: true, data: 2 } });
      } finally {
        await r.close();
      }
    });

    it("waits for room when its start may (roomWaitMs, a rollout's): a creation that does not fit is made once running ones end, without going back to its caller; one that may not wait is refused at once, and one whose wait runs out is refused saying so", async () => {
      // τ-bench airline at 64 episodes per worker: refused creations went back to their jobs' queue, waited there with a
      // backoff that doubled to 30 s and ran their episodes again from the start; it took 3 times as long as at 8.
      const holder = python('KEPT = []\nclass Holder:\n    def __init__(self, c):\n        KEPT.append(bytearray(c["mb"] << 20))\n        self.n = 0\n    def ping(self):\n        self.n += 1\n        return {"success": True, "data": self.n}\n', ['ping'], 'Holder');
      const newcomer = python('class Big:\n    def __init__(self, c):\n        self.head = c["pad"][:8]\n    def ping(self):\n        return {"success": True, "data": self.head}\n', ['ping'], 'Big');
      const r = smallRunner();
      try {
        const held = [];
        for (let i = 0; i < 4; i++) held.push(await r.openSession(holder, { mb: 36 }, LIMITS));
        const pad = 'é—数据 🛫'.repeat(300_000);
        let settled = false;
        const waiting = r.openSession(newcomer, { pad }, LIMITS, undefined, { roomWaitMs: 600_000 }).finally(() => (settled = true));
        waiting.catch(() => undefined);
        // Meanwhile: a start that may not wait (a served session's) is refused at once, and the running ones go on.
        const refused = await rejection(r.openSession(newcomer, { pad }, LIMITS));
        expect(refused).to.have.property('code', 'SANDBOX_MEMORY_FULL');
        expect((refused as Error).message).to.not.match(/waiting for room/);
        for (let round = 1; round <= 3; round++) for (const h of held) expect(await h.call('ping', {})).to.deep.include({ result: { success: true, data: round } });
        expect(settled, 'created without room').to.equal(false);
        // Two end: it is created.
        for (const h of held.splice(0, 2)) await h.close();
        const big = await waiting;
        expect(await big.call('ping', {})).to.deep.include({ result: { success: true, data: 'é—数据 🛫é—' } });
        for (const h of held) expect(await h.call('ping', {})).to.deep.include({ result: { success: true, data: 4 } });
        // Full again (four holders, as at first): a start whose wait runs out is refused, saying it waited.
        await big.close();
        for (let i = 0; i < 2; i++) held.push(await r.openSession(holder, { mb: 36 }, LIMITS));
        const outOfTime = await rejection(r.openSession(newcomer, { pad }, LIMITS, undefined, { roomWaitMs: 1_500 }));
        expect(outOfTime).to.have.property('code', 'SANDBOX_MEMORY_FULL');
        expect((outOfTime as Error).message).to.match(/had no room to create the environment: .*; it was held \d+ s waiting for room first \(at most 2 s\)$/);
        // One whose caller gives up (a cancelled run) stops waiting at once.
        const controller = new AbortController();
        const given = r.openSession(newcomer, { pad }, LIMITS, undefined, { roomWaitMs: 600_000, signal: controller.signal });
        given.catch(() => undefined);
        for (const h of held) expect(await h.call('ping', {})).to.have.property('result').that.has.property('success', true);
        expect((await r.stats()).waitingForRoom).to.equal(1);
        controller.abort();
        const gaveUp = await rejection(given);
        expect(gaveUp).to.have.property('code', 'SANDBOX_MEMORY_FULL');
        expect((gaveUp as Error).message).to.match(/; its caller gave up waiting for room$/);
        expect((await r.stats()).waitingForRoom).to.equal(0);
      } finally {
        await r.close();
      }
    });

    it("runs the cycle collector at an environment's end past half the cap only when the end may leave memory to it: environments whose data goes with their instance end without it", async () => {
      // Until 2026-12-07 every end past half the cap collected, walking every running environment's objects: 1.3–2.3 s
      // beside 20–50 τ-bench airline databases, and 64 episodes at once took 1.6 times as long as 8 (scratch, this repo).
      const rows = python('class Rows:\n    def __init__(self, c):\n        self.rows = [{"id": i, "nom": "ligne n° %d — 数据 🛫" % i} for i in range(c["n"])]\n    def count(self):\n        return {"success": True, "data": len(self.rows)}\n', ['count'], 'Rows');
      // (recycled only at the cap: what is weighed here is the collection, past half the cap in use)
      const r = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 512, recycleHeapMb: 512, logger: pino({ level: 'silent' }) });
      const collections = () => collectionsOf(r);
      try {
        const live = [];
        for (let i = 0; i < 6; i++) live.push(await r.openSession(rows, { n: 130_000 }, LIMITS));
        // (past half the cap in use, where every end collected until 2026-12-07)
        expect((await r.stats()).interpreters[0]!.usedBytes, 'in use').to.be.at.least(256 << 20);
        // The first end collects (the heap grew since the last collection); the next ones give back what they took.
        await live.shift()!.close();
        const before = await collections();
        expect(before).to.be.at.least(1);
        for (let round = 1; round <= 6; round++) {
          const s = await r.openSession(rows, { n: 130_000 }, LIMITS);
          expect(await s.call('count', {}), `round ${round}`).to.deep.include({ result: { success: true, data: 130_000 } });
          live.push(s);
          await live.shift()!.close();
        }
        // (one more where the heap grew again meanwhile: where the allocator found room is not ours to fix)
        expect((await collections()) - before, 'collections in 6 ends past half the cap').to.be.at.most(1);
        for (const s of live) expect(await s.call('count', {})).to.deep.include({ result: { success: true, data: 130_000 } });
      } finally {
        await r.close();
      }
    });

    it("collects what an ended environment left in cycles once it is large beside the room left, after its end, in a session of its own: a __del__ run then changes no running environment's decimal context, and a start that may not wait fits", async () => {
      // Module-level data is held by the cycle of its module's functions and globals: only the collector frees it. Until
      // 2026-12-07 every end past half the cap collected, in the ending session; now one collects when what is in use
      // exceeds what explains it once the session is gone, in a session of its own.
      const holder = python('import decimal\nclass Mark:\n    def __del__(self):\n        decimal.getcontext().prec = 3\nKEPT = [Mark()]\nclass Holder:\n    def __init__(self, c):\n        KEPT.append(bytearray(c["mb"] << 20))\n    def ping(self):\n        return {"success": True, "data": "ok"}\n', ['ping'], 'Holder');
      const bystander = python('import decimal\nclass Temoin:\n    def __init__(self, c):\n        self.n = 0\n    def prec(self):\n        return decimal.getcontext().prec\n', ['prec'], 'Temoin');
      const newcomer = python('class Big:\n    def __init__(self, c):\n        self.head = c["pad"][:8]\n    def ping(self):\n        return {"success": True, "data": self.head}\n', ['ping'], 'Big');
      const r = smallRunner();
      const collections = () => collectionsOf(r);
      try {
        const b = await r.openSession(bystander, {}, LIMITS);
        const held = [];
        for (let i = 0; i < 3; i++) held.push(await r.openSession(holder, { mb: 40 }, LIMITS));
        // An end now collects (the heap grew since the last collection): what is in use after it is the mark.
        await (await r.openSession(bystander, {}, LIMITS)).close();
        const before = await collections();
        expect(before).to.be.at.least(1);
        await held.shift()!.close();
        expect(await collections(), 'a holder ended beside others, leaving 40 MB in cycles').to.equal(before + 1);
        // 4.8 MB of JSON: creating it may take about 37 MB, and its end as much: more than was left beside the three
        // holders, less than is left once the ended one's 40 MB are collected (about 22 MB to spare). It may not wait (a
        // served session's start).
        const pad = 'é—数据 🛫'.repeat(300_000);
        const big = await r.openSession(newcomer, { pad }, LIMITS);
        expect(await big.call('ping', {})).to.deep.include({ result: { success: true, data: 'é—数据 🛫é—' } });
        expect(await b.call('prec', {}), "the bystander's decimal context after the ended holder's __del__ ran").to.deep.include({ result: 28 });
        for (const h of held) expect(await h.call('ping', {})).to.deep.include({ result: { success: true, data: 'ok' } });
      } finally {
        await r.close();
      }
    });

    it("asks for a collection when a start would fit without what an ended environment left in cycles, too little for its end to collect: a start that may not wait fits, and the __del__ run then changes no running environment's decimal context", async () => {
      // 6 MB left in cycles is under what an end collects for (an eighth of the room left, at least 8 MiB); a start that
      // needs the room asks for the collection itself (without it, a served start was refused while the garbage stayed).
      const holder = python('import decimal\nclass Mark:\n    def __del__(self):\n        decimal.getcontext().prec = 3\nKEPT = [Mark()]\nclass Holder:\n    def __init__(self, c):\n        KEPT.append(bytearray(c["mb"] << 20))\n    def ping(self):\n        return {"success": True, "data": "ok"}\n', ['ping'], 'Holder');
      const bystander = python('import decimal\nclass Temoin:\n    def __init__(self, c):\n        self.n = 0\n    def prec(self):\n        return decimal.getcontext().prec\n', ['prec'], 'Temoin');
      const newcomer = python('class Big:\n    def __init__(self, c):\n        self.head = c["pad"][:8]\n    def ping(self):\n        return {"success": True, "data": self.head}\n', ['ping'], 'Big');
      const r = smallRunner();
      try {
        const b = await r.openSession(bystander, {}, LIMITS);
        const held = [await r.openSession(holder, { mb: 40 }, LIMITS), await r.openSession(holder, { mb: 40 }, LIMITS)];
        const leaver = await r.openSession(holder, { mb: 6 }, LIMITS);
        // An end now collects (the heap grew since the last collection): what is in use after it is the mark.
        await (await r.openSession(bystander, {}, LIMITS)).close();
        const before = await collectionsOf(r);
        expect(before).to.be.at.least(1);
        await leaver.close();
        expect(await collectionsOf(r), 'an end that left 6 MB in cycles').to.equal(before);
        const { usedBytes, garbageBytes } = (await r.stats()).interpreters[0]!;
        expect(garbageBytes, 'what the ended one left').to.be.within(4 << 20, 8 << 20);
        const pad = padFittingOnlyWithout(usedBytes!, garbageBytes);
        const big = await r.openSession(newcomer, { pad }, LIMITS);
        expect(await big.call('ping', {})).to.deep.include({ result: { success: true, data: 'é—数据 🛫é—' } });
        expect(await collectionsOf(r)).to.equal(before + 1);
        expect(await b.call('prec', {}), "the bystander's decimal context after the ended holder's __del__ ran").to.deep.include({ result: 28 });
        for (const h of held) expect(await h.call('ping', {})).to.deep.include({ result: { success: true, data: 'ok' } });
      } finally {
        await r.close();
      }
    });

    it("sees what a grown environment left in cycles at its end, its growth before a collection being its own: a start that needs that room asks for it and fits", async () => {
      // A stranger's review: a collection took what live environments had grown by into what explains the heap; when one
      // of them ended, freeing its growth, the reading fell under that, and hid as much garbage left after it (a start
      // was refused beside it). Two environments of one code grow alike here; one also keeps 6 MB at module level.
      // (what an instance grows by is held in a slot, outside its state, and goes with it)
      const grower = python('KEPT = []\nclass Grower:\n    __slots__ = ("rows", "__dict__")\n    def __init__(self, c):\n        self.rows = [bytearray(c["mb"] << 20)]\n    def grow(self, mb):\n        self.rows.append(bytearray(mb << 20))\n        return {"success": True, "data": len(self.rows) - 1}\n    def keep(self, mb):\n        KEPT.append(bytearray(mb << 20))\n        return {"success": True, "data": len(KEPT)}\n', ['grow', 'keep'], 'Grower');
      const quiet = python('class Quiet:\n    def __init__(self, c):\n        self.n = 0\n    def ping(self):\n        return {"success": True, "data": "ok"}\n', ['ping'], 'Quiet');
      const newcomer = python('class Big:\n    def __init__(self, c):\n        self.head = c["pad"][:8]\n    def ping(self):\n        return {"success": True, "data": self.head}\n', ['ping'], 'Big');
      const r = smallRunner();
      // (an end that collects: the heap grew since the last collection)
      const collectNow = async (why: string) => {
        const before = await collectionsOf(r);
        await (await r.openSession(quiet, {}, LIMITS)).close();
        expect(await collectionsOf(r), why).to.equal(before + 1);
      };
      try {
        const [g1, g2] = [await r.openSession(grower, { mb: 10 }, LIMITS), await r.openSession(grower, { mb: 10 }, LIMITS)];
        expect(await g1.call('grow', { mb: 20 })).to.deep.include({ result: { success: true, data: 1 } });
        expect(await g1.call('keep', { mb: 6 })).to.deep.include({ result: { success: true, data: 1 } });
        expect(await g2.call('grow', { mb: 26 })).to.deep.include({ result: { success: true, data: 1 } });
        await collectNow('a collection with the two grown');
        // (40 MB: more than the slack the heap's last growth may have left)
        const filler = await r.openSession(grower, { mb: 40 }, LIMITS);
        await collectNow('a collection once the filler is created');
        const before = await collectionsOf(r);
        await g1.close();
        expect(await collectionsOf(r), 'an end that left 6 MB in cycles').to.equal(before);
        const { usedBytes, garbageBytes } = (await r.stats()).interpreters[0]!;
        expect(garbageBytes, 'what the ended one left').to.be.within(4 << 20, 8 << 20);
        const big = await r.openSession(newcomer, { pad: padFittingOnlyWithout(usedBytes!, garbageBytes) }, LIMITS);
        expect(await big.call('ping', {})).to.deep.include({ result: { success: true, data: 'é—数据 🛫é—' } });
        expect(await collectionsOf(r)).to.equal(before + 1);
        expect(await g2.call('grow', { mb: 1 })).to.deep.include({ result: { success: true, data: 2 } });
        expect(await filler.call('grow', { mb: 1 })).to.deep.include({ result: { success: true, data: 1 } });
      } finally {
        await r.close();
      }
    });

    it('answers a start given up by its caller while it is queued on the interpreter (admitted, behind a running call) at once, not at its turn; it is not created', async () => {
      // A cancelled run's starts admitted and queued behind the running episodes' work learnt it only at their turn, all
      // together, 13–33 s after the cancel (a stranger's probe).
      const slow = python('class Slow:\n    def __init__(self, c):\n        self.n = 0\n    def count(self):\n        for i in range(30_000_000):\n            self.n += 1\n        return {"success": True, "data": self.n}\n', ['count'], 'Slow');
      const small = python('class Petit:\n    def __init__(self, c):\n        self.nom = c["nom"]\n', [], 'Petit');
      const r = smallRunner();
      try {
        const s = await r.openSession(slow, {}, { ...LIMITS, callDeadlineMs: 60_000, sessionCpuMs: 120_000 });
        const order: string[] = [];
        const counting = s.call('count', {}).then(out => {
          order.push('count');
          return out;
        });
        const controller = new AbortController();
        const given = r.openSession(small, { nom: 'abandonné — 放弃' }, LIMITS, undefined, { roomWaitMs: 600_000, signal: controller.signal }).then(
          () => order.push('created'),
          (err: unknown) => {
            order.push('given up');
            return err;
          },
        );
        // Admitted and queued (counted on the interpreter, behind the running call), then given up.
        while ((await r.stats()).interpreters[0]!.sessions < 2) await new Promise(resolve => setTimeout(resolve, 10));
        expect(order).to.deep.equal([]);
        controller.abort();
        const err = await given;
        expect(err).to.have.property('code', 'SANDBOX_MEMORY_FULL');
        expect((err as Error).message).to.equal('the start was not made; its caller gave up waiting for room');
        expect(await counting).to.deep.include({ result: { success: true, data: 30_000_000 } });
        expect(order).to.deep.equal(['given up', 'count']);
        expect((await r.stats()).interpreters[0]!.sessions).to.equal(1);
      } finally {
        await r.close();
      }
    });

    it('learns what a creation that found no room needed: the next one of the same code and state waits without being tried (a database in the source, a state of {}); alone it is created', async () => {
      // τ-bench keeps its database in the class source, with a state of {}: a guess from the JSON let every creation be
      // tried beside the running episodes, each took seconds and failed (a stranger's re-probe: no trajectory in 13 min).
      const holder = python('KEPT = []\nclass Holder:\n    def __init__(self, c):\n        KEPT.append(bytearray(c["mb"] << 20))\n    def ping(self):\n        return {"success": True, "data": "ok"}\n', ['ping'], 'Holder');
      const greedy = python('class Greedy:\n    def __init__(self, c):\n        scratch = [bytearray(8 << 20) for _ in range(10)]\n        self.size = sum(len(b) for b in scratch) >> 20\n    def size_mb(self):\n        return {"success": True, "data": self.size}\n', ['size_mb'], 'Greedy');
      const r = smallRunner();
      try {
        const held = [];
        for (let i = 0; i < 3; i++) held.push(await r.openSession(holder, { mb: 36 }, LIMITS));
        const tried = await rejection(r.openSession(greedy, {}, LIMITS));
        expect(tried).to.have.property('code', 'SANDBOX_MEMORY_FULL');
        // Tried: the measure of the others.
        expect((tried as Error).message).to.match(/had no room to create the environment: its 3 other environments held about [\d.]+ MB$/);
        // The same code with another state (each task of a τ-bench domain has its own): learnt all the same.
        const waited = await rejection(r.openSession(greedy, { tâche: 'autre — 別の 🧳' }, LIMITS));
        expect(waited).to.have.property('code', 'SANDBOX_MEMORY_FULL');
        // Not tried: what it may take, learnt.
        expect((waited as Error).message).to.match(/had no room to create the environment: its 3 other environments held about [\d.]+ MB, and creating this one may take about [\d.]+ MB/);
        // The running ones went on meanwhile.
        for (const h of held) expect(await h.call('ping', {})).to.deep.include({ result: { success: true, data: 'ok' } });
        // Alone on an interpreter it is created (its own limits decide there).
        for (const h of held.splice(0)) await h.close();
        const made = await r.openSession(greedy, {}, LIMITS);
        expect(await made.call('size_mb', {})).to.deep.include({ result: { success: true, data: 80 } });
      } finally {
        await r.close();
      }
    });

    it("takes a check that found the heap full of other environments for the interpreter's load (SANDBOX_MEMORY_FULL: the episode is scored again once there is room), not for a failed check; where there is room it passes", async () => {
      // τ-bench's gold-hash check copies and hashes a 3 MB database: beside the running episodes it met MemoryError and
      // was counted failed, a reward of 0 that fewer episodes at once would not have given (a stranger's re-probe).
      const holder = python('KEPT = []\nclass Holder:\n    def __init__(self, c):\n        KEPT.append(bytearray(36 << 20))\n    def ping(self):\n        return {"success": True, "data": "ok"}\n', ['ping'], 'Holder');
      const small = python('class Small:\n    def __init__(self, c):\n        self.label = c["label"]\n        self.n = 1\n', [], 'Small');
      const greedy = pyCheck('greedy — 貪欲 🧮', 'def check_func(s):\n    scratch = bytearray(64 << 20)\n    return len(scratch) > 0 and s["n"] == 1 and s["label"] == "données 数据 ✈️"\n');
      const after = pyCheck('after', 'def check_func(s):\n    return s["n"] == 1\n');
      const label = 'données 数据 ✈️';
      const r = smallRunner();
      try {
        const held = [];
        for (let i = 0; i < 4; i++) held.push(await r.openSession(holder, { i }, LIMITS));
        // At the end of a session (EnvSession.finish), and outside one (checks of a final state given).
        const s = await r.openSession(small, { label }, LIMITS);
        const end = await s.finish([greedy, after]);
        expect(end.stateError).to.equal(null);
        const outside = await r.checks({ checks: [greedy, after], finalState: { label, n: 1 }, initialState: { label, n: 1 }, limits: LIMITS });
        for (const results of [end.checks!.results, outside.results]) {
          expect(results.map(c => c.errorCode)).to.deep.equal(['SANDBOX_MEMORY_FULL', 'SANDBOX_MEMORY_FULL']);
          expect(results[0]!.error).to.match(/ENVFLEET_PYTHON_HEAP_MB=192.*had no room for the check "greedy — 貪欲 🧮": it holds 4 other environments, about [\d.]+ MB in use$/);
          expect(fullCheck(results), 'an episode waits it out').to.not.equal(null);
        }
        // A check that grows without end meets the same heap, asking only for its last piece: taken for the others' load
        // a few times, then for its own, so that its episode does not come back for the hour of a job's waits.
        const endless = pyCheck('endless', 'def check_func(s):\n    kept = bytearray()\n    while True:\n        kept += bytearray(1 << 20)\n');
        const codes = [];
        for (let i = 0; i < 4; i++) codes.push((await r.checks({ checks: [endless], finalState: { label, n: 1 }, initialState: { label, n: 1 }, limits: LIMITS })).results[0]!);
        expect(codes.map(c => c.errorCode)).to.deep.equal(['SANDBOX_MEMORY_FULL', 'SANDBOX_MEMORY_FULL', 'SANDBOX_MEMORY_FULL', 'MEMORY_EXCEEDED']);
        expect(codes[3]!.error).to.match(/^the check ran out of memory beside other environments 4 times \(this time it holds 4 other environments, about [\d.]+ MB in use\), so it is taken for its own/);
        // The running ones went on.
        for (const h of held) expect(await h.call('ping', {})).to.deep.include({ result: { success: true, data: 'ok' } });
        for (const h of held.splice(0)) await h.close();
        const again = await r.openSession(small, { label }, LIMITS);
        expect((await again.finish([greedy, after])).checks).to.deep.include({ results: [{ item: 'greedy — 貪欲 🧮', passed: true }, { item: 'after', passed: true }], reward: 1, solved: true });
      } finally {
        await r.close();
      }
    });

    it("keeps room for the end of a running environment (its final state written, its checks' copies of it) when new ones are admitted: filled with as many as are let in, the running one still ends and is scored", async () => {
      // τ-bench airline at the default concurrency: creations filled the heap and the running episodes' 3 MB final states
      // and gold-hash checks met it, each try seconds long, and episodes waited and ran again (a stranger's re-probe).
      const big = python('class Big:\n    def __init__(self, c):\n        self.rows = [{"id": "R%d" % i, "name": "réservation 予約 ✈️ n°%d" % i, "seats": [i, i + 1]} for i in range(c["count"])]\n', [], 'Big');
      const holder = python('KEPT = []\nclass Holder:\n    def __init__(self, c):\n        KEPT.append(bytearray(10 << 20))\n    def ping(self):\n        return {"success": True, "data": "ok"}\n', ['ping'], 'Holder');
      // As τ-bench's: a copy of the state, hashed whole.
      const hashed = pyCheck('hashed — 検査', 'import hashlib\n\ndef check_func(s):\n    text = str([(r["id"], r["name"], tuple(r["seats"])) for r in s["rows"]])\n    return len(hashlib.sha256(text.encode("utf-8")).hexdigest()) == 64 and len(s["rows"]) == 40000\n');
      const r = smallRunner();
      try {
        const b = await r.openSession(big, { count: 40_000 }, { ...LIMITS, checkDeadlineMs: 20_000, createDeadlineMs: 20_000 });
        const held = [];
        let refused: unknown = null;
        while (!refused && held.length < 20) {
          try {
            held.push(await r.openSession(holder, { n: held.length }, LIMITS));
          } catch (err) {
            refused = err;
          }
        }
        expect(refused, `refused after ${held.length}`).to.have.property('code', 'SANDBOX_MEMORY_FULL');
        const kept = /with about ([\d.]+) MB kept for an environment's end \(its final state and checks\)/.exec((refused as Error).message);
        expect(kept, (refused as Error).message).to.not.equal(null);
        // Two copies of 40,000 records (about 47 MB as estimated), not of a small state.
        expect(Number(kept![1])).to.be.at.least(40);
        const end = await b.finish([hashed]);
        expect(end.stateError, end.stateError?.message).to.equal(null);
        expect(end.checks).to.deep.include({ results: [{ item: 'hashed — 検査', passed: true }], reward: 1, solved: true });
        for (const h of held) expect(await h.call('ping', {})).to.deep.include({ result: { success: true, data: 'ok' } });
      } finally {
        await r.close();
      }
    });

    it("takes a creation and a final state that met a heap full of other environments for their load (SANDBOX_MEMORY_FULL: the episode waits and runs or ends again), also where the others are too many objects to measure (200,000 lists each)", async () => {
      // The measure of what each environment holds walked at most 200,000 objects of one: the others measured under half
      // the heap, and the creation, then the final state, that met the cap were their own MEMORY_EXCEEDED (an episode
      // recorded as environment-error), though the heap was full of the others.
      const grown = python('class Grown:\n    def __init__(self, c):\n        self.pairs = []\n    def grow(self, n):\n        self.pairs = [[i * 1000 + 7, "é%d" % i] for i in range(n)]\n        return {"success": True, "data": len(self.pairs)}\n', ['grow'], 'Grown');
      // Each holds 200,000 small lists: measuring them all takes more room than is left.
      const holder = python('KEPT = []\nclass Holder:\n    def __init__(self, c):\n        KEPT.append([[i * 1000 + 7] for i in range(200_000)])\n    def ping(self):\n        return {"success": True, "data": "ok"}\n', ['ping'], 'Holder');
      const r = smallRunner();
      const roomy = { ...LIMITS, callDeadlineMs: 20_000, createDeadlineMs: 20_000 };
      try {
        const g = await r.openSession(grown, {}, roomy);
        expect(await g.call('grow', { n: 200_000 })).to.deep.include({ result: { success: true, data: 200_000 } });
        // Admitted against its end as created (a small state): as many holders as are let in.
        const held = [];
        let refused: unknown = null;
        while (!refused && held.length < 20) {
          try {
            held.push(await r.openSession(holder, { n: held.length }, LIMITS));
          } catch (err) {
            refused = err;
          }
        }
        expect(refused, `refused after ${held.length}`).to.have.property('code', 'SANDBOX_MEMORY_FULL');
        // Tried (not refused before it was: "may take about"), and the others too many objects to measure.
        expect((refused as Error).message).to.match(/had no room to create the environment: it holds \d+ other environments, about [\d.]+ MB in use, too many objects to measure$/);
        const end = await g.finish([]);
        expect(end.stateError, 'the final state fitted: nothing tested').to.not.equal(null);
        expect(end.stateError).to.have.property('code', 'SANDBOX_MEMORY_FULL');
        expect(end.stateError!.message).to.match(/had no room to write the final state: it holds \d+ other environments, about [\d.]+ MB in use, too many objects to measure$/);
        for (const h of held) expect(await h.call('ping', {})).to.deep.include({ result: { success: true, data: 'ok' } });
        // With room, the same end is written.
        for (const h of held.splice(0)) await h.close();
        const again = await r.openSession(grown, {}, roomy);
        await again.call('grow', { n: 200_000 });
        const fine = await again.finish([]);
        expect(fine.stateError).to.equal(null);
        expect(fine.stateJson!.length).to.be.above(2_000_000);
      } finally {
        await r.close();
      }
    });

    it("keeps a creation that hoards memory itself (module-level lists) beside a few small environments its own MEMORY_EXCEEDED: the others, measured whole, hold little", async () => {
      // Taken for the others' load, it would come back for hours (a reviewer's finding), each time filling the heap again.
      const small = python('class Small:\n    def __init__(self, c):\n        self.n = c["n"]\n    def ping(self):\n        return {"success": True, "data": self.n}\n', ['ping'], 'Small');
      const hoard = python('ROWS = []\nclass Hoard:\n    def __init__(self, c):\n        while True:\n            ROWS.append(bytearray(1 << 20))\n', [], 'Hoard');
      const r = smallRunner();
      try {
        const others = [await r.openSession(small, { n: 'un — 一' }, LIMITS), await r.openSession(small, { n: 'deux — 二' }, LIMITS)];
        const own = await rejection(r.openSession(hoard, {}, { ...LIMITS, createDeadlineMs: 20_000 }, undefined, { roomWaitMs: 600_000 }));
        expect(own).to.have.property('code', 'MEMORY_EXCEEDED');
        expect(await others[0]!.call('ping', {})).to.deep.include({ result: { success: true, data: 'un — 一' } });
        expect(await others[1]!.call('ping', {})).to.deep.include({ result: { success: true, data: 'deux — 二' } });
      } finally {
        await r.close();
      }
    });

    it('asks a queued creation again when its turn comes: of a burst admitted on an empty interpreter, the ones that no longer fit wait without being tried', async () => {
      // 64 τ-bench creations asked for at once were all admitted on an empty interpreter; once it was full, each of the
      // last 31 was tried for seconds and failed in turn, while the running episodes waited (a stranger's third re-probe).
      const holder = python('KEPT = []\nclass Holder:\n    def __init__(self, c):\n        KEPT.append(bytearray(36 << 20))\n    def ping(self):\n        return {"success": True, "data": "ok"}\n', ['ping'], 'Holder');
      const r = smallRunner();
      try {
        const outcomes = await Promise.all(Array.from({ length: 7 }, (_, i) => r.openSession(holder, { n: `burst ${i} — 突発` }, LIMITS).then(s => ({ s, err: null }), (err: unknown) => ({ s: null, err: err as Error & { code?: string } }))));
        const opened = outcomes.filter(o => o.s);
        const refused = outcomes.filter(o => o.err);
        expect(opened.length).to.be.at.least(3);
        for (const o of refused) expect(o.err).to.have.property('code', 'SANDBOX_MEMORY_FULL');
        const tried = refused.filter(o => /: its \d+ other environments held about [\d.]+ MB$/.test(o.err!.message));
        const waited = refused.filter(o => /may take about/.test(o.err!.message));
        // At most the first that met the full heap is tried; the ones after it wait without a try.
        expect(tried.length, refused.map(o => o.err!.message).join('\n')).to.be.at.most(1);
        expect(waited.length).to.be.at.least(1);
        for (const o of opened) expect(await o.s!.call('ping', {})).to.deep.include({ result: { success: true, data: 'ok' } });
      } finally {
        await r.close();
      }
    });

    it('takes a co-tenant already stopped, whose memory is still being freed, for the cause of calls queued meanwhile: every one of them is SANDBOX_MEMORY_FULL, and no other session is stopped', async () => {
      // A hoarder holds 120 of 192 MB; two workers ask 64 MB each at once, far more than is left, so both meet the cap.
      // The second runs before the first one's measure has stopped the hoarder and its drop has run.
      const hoarder = python('KEPT = []\nclass Hoarder:\n    def __init__(self, c):\n        pass\n    def fill(self, n):\n        for _ in range(n):\n            KEPT.append(bytearray(8 << 20))\n        return {"success": True, "data": len(KEPT)}\n', ['fill'], 'Hoarder');
      const worker = python('class Worker:\n    def __init__(self, c):\n        pass\n    def work(self, mb):\n        return {"success": True, "data": len(bytearray(mb << 20))}\n', ['work'], 'Worker');
      const bystander = python('class Quiet:\n    def __init__(self, c):\n        self.n = 0\n    def ping(self):\n        self.n += 1\n        return {"success": True, "data": self.n}\n', ['ping'], 'Quiet');
      const r = smallRunner();
      try {
        // (No deadline is tested here: 120 MB filled in one call took more than a second on a loaded machine.)
        const roomy = { ...LIMITS, callDeadlineMs: 20_000 };
        const h = await r.openSession(hoarder, {}, roomy);
        const quiet = await r.openSession(bystander, {}, roomy);
        const [w1, w2] = [await r.openSession(worker, {}, roomy), await r.openSession(worker, {}, roomy)];
        expect(await h.call('fill', { n: 15 })).to.deep.include({ result: { success: true, data: 15 } });
        const both = await Promise.all([w1.call('work', { mb: 64 }), w2.call('work', { mb: 64 })]);
        for (const out of both) expect(out).to.deep.include({ runtimeError: 'SANDBOX_MEMORY_FULL' });
        expect((await h.call('fill', { n: 1 })).runtimeError).to.equal('ENV_DISPOSED');
        expect(await quiet.call('ping', {})).to.deep.include({ result: { success: true, data: 1 } });
        const again = await r.openSession(worker, {}, roomy);
        expect(await again.call('work', { mb: 64 })).to.deep.include({ result: { success: true, data: 64 << 20 } });
      } finally {
        await r.close();
      }
    });

    it('takes a co-tenant stopped after a call was queued for the cause of that call even when its drop has freed the memory by the time the call is measured: SANDBOX_MEMORY_FULL', async () => {
      // CI failed the test above once: the second call reached the child after the first one's answer, so it ran
      // between the first one's measure and the hoarder's drop, and its own measure, behind that drop, found no holder
      // (MEMORY_EXCEEDED, the caller's own failure). Here that order is made: a marker call answers once the first
      // call has failed and its measure is queued behind a long call of a bystander; the second call is sent then.
      const hoarder = python('KEPT = []\nclass Hoarder:\n    def __init__(self, c):\n        pass\n    def fill(self, n):\n        for _ in range(n):\n            KEPT.append(bytearray(8 << 20))\n        return {"success": True, "data": len(KEPT)}\n', ['fill'], 'Hoarder');
      const worker = python('class Worker:\n    def __init__(self, c):\n        pass\n    def work(self, mb):\n        return {"success": True, "data": len(bytearray(mb << 20))}\n', ['work'], 'Worker');
      const bystander = python('class Busy:\n    def __init__(self, c):\n        self.n = 0\n    def ping(self):\n        self.n += 1\n        return {"success": True, "data": self.n}\n    def spin(self, n):\n        x = 0\n        for _ in range(n):\n            x += 1\n        return {"success": True, "data": x}\n', ['ping', 'spin'], 'Busy');
      const r = smallRunner();
      try {
        const roomy = { ...LIMITS, callDeadlineMs: 60_000, sessionCpuMs: 600_000 };
        const h = await r.openSession(hoarder, {}, roomy);
        const busy = await r.openSession(bystander, {}, roomy);
        const marker = await r.openSession(bystander, {}, roomy);
        const [w1, w2] = [await r.openSession(worker, {}, roomy), await r.openSession(worker, {}, roomy)];
        expect(await h.call('fill', { n: 15 })).to.deep.include({ result: { success: true, data: 15 } });
        // Queued in this order: w1's call, the marker, the bystander's long call; w1's measure goes behind the last.
        const first = w1.call('work', { mb: 64 });
        const marked = marker.call('ping', {});
        const spun = busy.call('spin', { n: 40_000_000 });
        let spinning = true;
        spun.then(() => (spinning = false), () => (spinning = false));
        expect(await marked).to.deep.include({ result: { success: true, data: 1 } });
        // (the order made: the bystander's call, seconds of Python, still runs when the second call is sent)
        expect(spinning, "the bystander's long call ended before the second call was sent: make it longer").to.equal(true);
        const second = await w2.call('work', { mb: 64 });
        expect(await first).to.deep.include({ runtimeError: 'SANDBOX_MEMORY_FULL' });
        expect(second, JSON.stringify(second)).to.deep.include({ runtimeError: 'SANDBOX_MEMORY_FULL' });
        expect(await spun).to.deep.include({ result: { success: true, data: 40_000_000 } });
        expect((await h.call('fill', { n: 1 })).runtimeError).to.equal('ENV_DISPOSED');
        const again = await r.openSession(worker, {}, roomy);
        expect(await again.call('work', { mb: 64 })).to.deep.include({ result: { success: true, data: 64 << 20 } });
      } finally {
        await r.close();
      }
    });

    it('blames no co-tenant for a call that asks more than any other holds, nor runs environment code while measuring (a metaclass without a hash), and keeps the caller\'s own cause', async () => {
      // A stranger's review: bytearray(120 MB) beside a 60 MB holder stopped the holder; a metaclass whose __eq__ left its
      // classes without a hash made the measure raise, and the interpreter failed with every co-tenant.
      const holderSource = 'class NoHash(type):\n    def __eq__(cls, other):\n        return cls is other\n'
        + 'class Kept(metaclass=NoHash):\n    pass\n'
        + 'HELD = []\nclass Holder:\n    def __init__(self, c):\n        HELD.append(bytearray(60 << 20))\n        HELD.append(Kept())\n    def ping(self):\n        return {"success": True, "data": len(HELD[0])}\n';
      const bomber = python('class Bomber:\n    def __init__(self, c):\n        pass\n    def ask(self, mb):\n        return {"success": True, "data": len(bytearray(mb << 20))}\n', ['ask'], 'Bomber');
      const r = smallRunner();
      try {
        const holder = await r.openSession(python(holderSource, ['ping'], 'Holder'), {}, LIMITS);
        const b = await r.openSession(bomber, {}, LIMITS);
        expect(await b.call('ask', { mb: 150 })).to.deep.include({ runtimeError: 'MEMORY_EXCEEDED' });
        expect(await holder.call('ping', {})).to.deep.include({ result: { success: true, data: 60 << 20 } });
        expect((await r.stats()).interpreters.map(i => i.n), 'the interpreter was not replaced').to.deep.equal([1]);
      } finally {
        await r.close();
      }
    });

    it("answers a MemoryError the code raised itself with a message (a tool, a constructor, a check) as its own exception, as CPython does; the session goes on; the allocator's (no message) is the memory limit", async () => {
      // Careless, not hostile: MemoryError as a domain error ("storage full"). Before, it read as MEMORY_EXCEEDED, its
      // message was lost, and the session ended.
      const source = 'class Env:\n    def __init__(self, c):\n        self.items = []\n        if c.get("bad"):\n            raise MemoryError("réglage invalide 設定")\n'
        + '    def add(self, item):\n        if len(self.items) >= 1:\n            raise MemoryError("storage full: at most 1 item 📦")\n        self.items.append(item)\n        return {"n": len(self.items)}\n'
        + '    def bare(self):\n        raise MemoryError\n';
      const code = { ...python(source, ['bare']), tools: [...python(source, ['bare']).tools, { type: 'function' as const, function: { name: 'add', parameters: { type: 'object', properties: { item: { type: 'string' } }, required: ['item'] } } }] };
      const s = await session(code, {});
      expect(await s.call('add', { item: 'a' })).to.deep.include({ result: { n: 1 } });
      const full = await s.call('add', { item: 'b' });
      expect(full).to.deep.include({ runtimeError: 'TOOL_THREW' });
      expect((full.result as { error: string }).error).to.equal('MemoryError: storage full: at most 1 item 📦');
      expect(await s.call('add', { item: 'c' })).to.deep.include({ runtimeError: 'TOOL_THREW' });
      expect(JSON.parse(await s.snapshotJson!())).to.deep.equal({ items: ['a'] });
      const checks = await runner.checks({
        checks: [pyCheck('raises', 'def check_func(final_state):\n    raise MemoryError("trop")\n'), pyCheck('passes', 'def check_func(final_state):\n    return final_state["items"] == ["a"]\n')],
        finalState: { items: ['a'] },
        initialState: { items: [] },
        limits: LIMITS,
      });
      expect(checks.results).to.deep.equal([
        { item: 'raises', passed: false, error: 'MemoryError: trop', errorCode: 'CHECK_THREW' },
        { item: 'passes', passed: true },
      ]);
      const err = await rejection(session(code, { bad: true }));
      expect(err).to.have.property('code', 'CONSTRUCTOR_FAILED');
      expect((err as Error).message).to.equal('constructing Env failed: MemoryError: réglage invalide 設定');
      // Without a message it is the allocator's, as far as the harness can tell: the memory limit, and the session ends.
      expect(await s.call('bare', {})).to.deep.include({ runtimeError: 'MEMORY_EXCEEDED' });
      expect(await s.call('add', { item: 'd' })).to.deep.include({ runtimeError: 'ENV_DISPOSED' });
    });
  });

  describe('routing by language', () => {
    it('sends Python environments to Pyodide and JavaScript ones to QuickJS, and splits a mixed checks list', async () => {
      const router = createLanguageRouter({ js: createLocalSandboxRunner(), python: runner });
      const js = EnvironmentCode.parse({ name: 'js', className: 'Counter', source: 'class Counter { constructor(s) { this.state = s; } inc() { this.state.n += 1; return { success: true, data: this.state.n }; } }', tools: [tool('inc')] });
      const jsSession = await router.openSession(js, { n: 1 }, LIMITS);
      expect(await jsSession.call('inc', {})).to.deep.include({ result: { success: true, data: 2 } });
      await jsSession.close();
      const pySession = await router.openSession(HELP_DESK, SEEDED_STATE, LIMITS);
      await pySession.call('close_ticket', { ticket_id: 'T-1' });
      const end = await pySession.finish([
        pyCheck('py', 'def check_func(s):\n    return s["tickets"]["T-1"]["status"] == "closed"'),
        { item: 'js', check: 'function check(f, i) { return f.tickets["T-1"].status === "closed" && i.tickets["T-1"].status === "open"; }' },
      ]);
      expect(end.checks!.results.map(r => [r.item, r.passed])).to.deep.equal([['py', true], ['js', true]]);
    });

    it('bounds the message of a Python check that raises with the whole state in it (2,000 characters, whole characters, its length said)', async () => {
      const router = createLanguageRouter({ js: createLocalSandboxRunner(), python: runner });
      const careless = pyCheck('careless', 'def check_func(s):\n    raise AssertionError("état inattendu — 状态 😀 " + str(s) * 20)');
      const result = await router.checks({ checks: [careless, pyCheck('fine', 'def check_func(s):\n    return True')], finalState: SEEDED_STATE, initialState: SEEDED_STATE, limits: LIMITS });
      const error = result.results[0]!.error!;
      expect(error).to.match(/^AssertionError: état inattendu — 状态 😀 /).and.to.match(/… \(\d+ characters\)$/);
      expect(error.length).to.be.at.most(MAX_ERROR_CHARS + 40);
      expect(result.results.map(r => r.passed)).to.deep.equal([false, true]);
    });

    it("bounds the same messages on the Python runtime held alone, as envfleet import holds it (boundedRunner): a check's, a finish's, a constructor's that raises with its whole config", async () => {
      const alone = boundedRunner(runner);
      const careless = pyCheck('careless', 'def check_func(s):\n    raise AssertionError("état inattendu — 状态 😀 " + str(s) * 20)');
      const bounded = (error: string | undefined) => {
        expect(error).to.match(/… \(\d+ characters\)$/);
        expect(error!.length).to.be.at.most(MAX_ERROR_CHARS + 40);
      };
      bounded((await alone.checks({ checks: [careless], finalState: SEEDED_STATE, initialState: SEEDED_STATE, limits: LIMITS })).results[0]!.error);
      const s = await alone.openSession(HELP_DESK, SEEDED_STATE, LIMITS);
      open.push(s);
      bounded((await s.finish([careless])).checks!.results[0]!.error);
      const angry = { ...HELP_DESK, source: 'class HelpDeskSystem:\n    def __init__(self, config):\n        raise ValueError("mauvaise config — 配置 😀 " + repr(config) * 20)' };
      const err = await rejection(alone.openSession(angry, SEEDED_STATE, LIMITS));
      expect(err).to.be.instanceOf(SandboxError);
      expect((err as Error).message).to.include('mauvaise config — 配置 😀 ');
      bounded((err as Error).message);
    });

    it('rejects a Python environment whose class or tool name is not a Python identifier', () => {
      const bad = EnvironmentCode.safeParse({ ...HELP_DESK, tools: [tool('$weird')] });
      expect(bad.success).to.equal(false);
      expect(EnvironmentCode.safeParse({ ...HELP_DESK, className: '$Desk' }).success).to.equal(false);
      expect(EnvironmentCode.safeParse({ ...HELP_DESK, language: undefined, className: '$Desk', tools: [tool('$weird')] }).success).to.equal(true);
    });
  });

  describe('one interpreter', () => {
    it('loses every session of an interpreter it had to terminate (ENV_DISPOSED), and serves new ones from a fresh interpreter', async () => {
      const single = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: HEAP_MB, logger: pino({ level: 'silent' }) });
      try {
        const bystander = await single.openSession(HELP_DESK, SEEDED_STATE, LIMITS);
        expect(await bystander.call('echo', { text: 'before' })).to.deep.include({ result: { success: true, data: { text: 'before', length: 6 } } });
        const swallow = await single.openSession(python('class Env:\n    def __init__(self, c):\n        pass\n    def swallow(self):\n        while True:\n            try:\n                while True:\n                    pass\n            except:\n                pass\n', ['swallow']), {}, { ...LIMITS, callDeadlineMs: 300 });
        expect(await swallow.call('swallow', {})).to.deep.include({ runtimeError: 'DEADLINE_EXCEEDED' });
        expect(await bystander.call('echo', { text: 'after' })).to.deep.include({ runtimeError: 'ENV_DISPOSED' });
        const end = await bystander.finish([pyCheck('any', 'def check_func(s):\n    return True')]);
        expect(end).to.deep.include({ stateJson: null, checks: null });
        expect(end.stateError).to.have.property('code', 'ENV_DISPOSED');
        const fresh = await single.openSession(HELP_DESK, SEEDED_STATE, LIMITS);
        expect(await fresh.call('echo', { text: 'fresh' })).to.deep.include({ result: { success: true, data: { text: 'fresh', length: 5 } } });
        expect((await single.stats()).interpreters.map(i => i.n)).to.deep.equal([2]);
      } finally {
        await single.close();
      }
    });
  });

  describe('review fixes (one interpreter per test)', () => {
    const single = (opts: Partial<Parameters<typeof createPythonSandboxRunner>[0]> = {}) =>
      createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: HEAP_MB, logger: pino({ level: 'silent' }), ...opts });
    const PING = 'class Env:\n    def __init__(self, c=None):\n        self.n = 0\n    def ping(self):\n        self.n += 1\n        return self.n\n';
    /** The runner's one interpreter is the first it started, and its heap stays under the recycle threshold (75 % of the cap). */
    const expectKeptUnderThreshold = async (r: PythonSandboxRunner) => {
      const st = (await r.stats()).interpreters[0]!;
      expect(st.n, 'the interpreter was never replaced').to.equal(1);
      expect(st.retiring, 'the heap stays under the recycle threshold (75 % of the cap)').to.equal(false);
      expect(st.heapBytes).to.be.below(0.75 * HEAP_MB * 1024 * 1024);
    };

    it('answers as CPython for date reprs, classes deriving from date, random.seed(), the wall clock through asctime and clock_gettime, and sleeps seen by monotonic and perf_counter', async () => {
      const r = single();
      try {
        const code = python(
          'import abc, enum, random, time\nfrom datetime import date, datetime\n'
            + 'random.seed()\nSEEDED = random.random()\n'
            + 'class Day(date):\n    pass\nclass Holiday(date, enum.Enum):\n    XMAS = (2025, 12, 25)\nclass Stamp(datetime, metaclass=abc.ABCMeta):\n    pass\n'
            + 'class Env:\n    def __init__(self, c=None):\n        self.n = 0\n'
            + '    def dates(self):\n        d = datetime.strptime("2025-02-01", "%Y-%m-%d")\n'
            + '        return [isinstance(d, date), isinstance(date(2025, 1, 1), datetime), isinstance(date(2025, 1, 1), Day), repr(Holiday.XMAS), repr(Stamp(2025, 1, 2)),\n'
            + '                repr(datetime(2025, 3, 9, 14, 5)), repr({"d": date(2025, 3, 9)}), repr(Day(2025, 1, 2)), repr(d.date()), repr(datetime.now()) == "datetime." + repr(datetime.now())[9:]]\n'
            + '    def seeded(self):\n        return SEEDED\n'
            + '    def clocks(self):\n        return [time.asctime() == time.ctime(), time.clock_gettime(time.CLOCK_REALTIME) == time.time(), time.clock_gettime_ns(time.CLOCK_REALTIME) == time.time_ns()]\n'
            + '    def wait(self):\n        deadline = time.monotonic() + 10\n        polls = 0\n        while time.monotonic() < deadline:\n            time.sleep(0.5)\n            polls += 1\n'
            + '        t = time.perf_counter()\n        time.sleep(0.25)\n        return [polls >= 20, time.perf_counter() - t >= 0.25]\n'
            + '    def bad_sleeps(self):\n        out = []\n        for f in (lambda: time.sleep(float("inf")), lambda: time.sleep(10**30), lambda: time.sleep(secs=0.01), lambda: time.asctime(None), lambda: time.clock_gettime(clk_id=time.CLOCK_REALTIME)):\n'
            + '            try:\n                f()\n                out.append(None)\n            except (OverflowError, TypeError) as e:\n                out.append(type(e).__name__)\n        return out\n',
          ['dates', 'seeded', 'clocks', 'wait', 'bad_sleeps'],
        );
        const s = await r.openSession(code, {}, LIMITS);
        expect(await s.call('dates', {})).to.deep.include({
          result: [true, false, false, '<Holiday.XMAS: datetime.date(2025, 12, 25)>', 'Stamp(2025, 1, 2, 0, 0)', 'datetime.datetime(2025, 3, 9, 14, 5)', "{'d': datetime.date(2025, 3, 9)}", 'Day(2025, 1, 2)', 'datetime.date(2025, 2, 1)', true],
        });
        expect(await s.call('clocks', {})).to.deep.include({ result: [true, true, true] });
        expect(await s.call('wait', {}), 'sleeping until monotonic() passes a deadline ends').to.deep.include({ result: [true, true] });
        expect(await s.call('bad_sleeps', {})).to.deep.include({ result: ['OverflowError', 'OverflowError', 'TypeError', 'TypeError', 'TypeError'] });
        const seeded = (await s.call('seeded', {})).result;
        const again = await r.openSession(code, {}, LIMITS);
        expect((await again.call('seeded', {})).result, 'random.seed() with no argument is seeded by the session').to.equal(seeded);
      } finally {
        await r.close();
      }
    });
    it('gives environments an empty standard input: a parameter named input works, input() raises EOFError and reading fd 0 gives an empty string, and the interpreter and its co-tenant go on', async () => {
      const r = single();
      try {
        await r.started();
        const n = (await r.stats()).interpreters[0]!.n;
        const bystander = await r.openSession(python(PING, ['ping']), {}, LIMITS);
        const code = python(
          'class Env:\n    def __init__(self, c=None):\n        self.n = 0\n    def shout(self, input=""):\n        return input.upper()\n'
            + '    def ask(self):\n        return input("name? ")\n    def read_stdin(self):\n        with open(0) as f:\n            return [f.read(), open("/dev/stdin").readline()]\n',
          ['shout', 'ask', 'read_stdin'],
        );
        const s = await r.openSession(code, {}, LIMITS);
        expect(await s.call('shout', { input: 'héllo 世界' })).to.deep.include({ result: 'HÉLLO 世界' });
        const asked = await s.call('ask', {});
        expect(asked).to.deep.include({ runtimeError: 'TOOL_THREW' });
        expect((asked.result as { error: string }).error).to.match(/^EOFError/);
        expect(await s.call('read_stdin', {})).to.deep.include({ result: ['', ''] });
        expect(await bystander.call('ping', {})).to.deep.include({ result: 1 });
        expect((await r.stats()).interpreters[0]!.n).to.equal(n);
      } finally {
        await r.close();
      }
    });
    it('makes time.sleep virtual: it advances the session clock at once, refuses a negative length, and a bystander survives time.sleep(30)', async () => {
      const r = single();
      try {
        const code = python(PING + '    def nap(self, secs=30):\n        import time\n        a = time.time()\n        time.sleep(secs)\n        return time.time() - a\n    def neg(self):\n        import time\n        time.sleep(-1)\n', ['ping', 'nap', 'neg']);
        const bystander = await r.openSession(code, {}, LIMITS);
        expect(await bystander.call('ping', {})).to.deep.include({ result: 1 });
        const s = await r.openSession(code, {}, LIMITS);
        const t0 = performance.now();
        expect(await s.call('nap', {})).to.deep.include({ result: 30 });
        expect(performance.now() - t0).to.be.below(900);
        const neg = await s.call('neg', {});
        expect(neg).to.deep.include({ runtimeError: 'TOOL_THREW' });
        expect((neg.result as { error: string }).error).to.match(/ValueError: sleep length must be non-negative/);
        expect(await bystander.call('ping', {})).to.deep.include({ result: 2 });
        // The clock moved by 30 s + 1 s per call in the sleeping session only.
        const clock = python('import time\nclass Env:\n    def __init__(self, c=None):\n        pass\n    def now(self):\n        return time.time()\n    def nap(self):\n        time.sleep(30)\n        return time.time()\n', ['now', 'nap']);
        const c = await r.openSession(clock, {}, LIMITS);
        expect(await c.call('nap', {})).to.deep.include({ result: 1735689600 + 1 + 30 });
        expect(await c.call('now', {})).to.deep.include({ result: 1735689600 + 2 + 30 });
      } finally {
        await r.close();
      }
    });
    it('maps an interpreter crash (recursion past a raised recursion limit, os.system) to STACK_OVERFLOW / ENV_DISPOSED for the caller and ENV_DISPOSED for co-tenants; a fresh interpreter serves', async () => {
      const r = single();
      try {
        const reach = "        B = [c for c in getattr(object, '__sub'+'classes__')() if c.__name__ == '_Blocker'][0]\n        G = getattr(B.find_spec, '__glo'+'bals__')\n";
        const code = python(PING + '    def deep(self):\n' + reach + "        G['_sys'].setrecursionlimit(10**6)\n        def f(n):\n            return f(n + 1) + 1\n        return f(0)\n    def system(self):\n" + reach + "        return G['_os'].system('id')\n", ['ping', 'deep', 'system']);
        for (const [method, code1] of [['deep', 'STACK_OVERFLOW'], ['system', 'ENV_DISPOSED']] as const) {
          const bystander = await r.openSession(code, {}, LIMITS);
          expect(await bystander.call('ping', {})).to.deep.include({ result: 1 });
          const s = await r.openSession(code, {}, { ...LIMITS, callDeadlineMs: 20_000 });
          const out = await s.call(method, {});
          expect(out, method).to.deep.include({ runtimeError: code1 });
          expect(await s.call('ping', {}), method).to.deep.include({ runtimeError: 'ENV_DISPOSED' });
          expect(await bystander.call('ping', {}), method).to.deep.include({ runtimeError: 'ENV_DISPOSED' });
          const fresh = await r.openSession(code, {}, LIMITS);
          expect(await fresh.call('ping', {}), method).to.deep.include({ result: 1 });
          await fresh.close();
        }
      } finally {
        await r.close();
      }
    });
    it('lets environments use io, html, keyword, fnmatch, ipaddress, struct, graphlib, shlex and secrets as CPython does, without replacing the interpreter; secrets come from the session\'s random stream (the same scenario gives the same tokens)', async () => {
      const r = single();
      try {
        const code = python('import io, csv, html, keyword, fnmatch, ipaddress, struct, graphlib, shlex, secrets\nclass Env:\n    def __init__(self, c=None):\n        self.token = secrets.token_hex(8)\n    def use(self):\n        buf = io.StringIO()\n        csv.writer(buf).writerow(["nom", "café — 咖啡 😀"])\n        net = ipaddress.ip_network("10.0.0.0/30")\n        ts = graphlib.TopologicalSorter({"deploy": {"build"}, "build": {"fetch"}})\n        return [buf.getvalue(), html.escape(\'<b>"Zoë" & 李</b>\'), html.unescape("&eacute;&#x1F600;"), keyword.iskeyword("class"), fnmatch.fnmatch("rapport-été.csv", "*.csv"), [str(h) for h in net.hosts()], ipaddress.ip_address("192.168.1.7") in ipaddress.ip_network("192.168.1.0/24"), struct.pack(">HI", 1, 2).hex(), list(ts.static_order()), shlex.split("cp \'mon fichier.txt\' /tmp")]\n    def tokens(self):\n        return [self.token, secrets.token_urlsafe(6), secrets.choice("abcdef"), secrets.randbelow(1000)]\n', ['use', 'tokens']);
        const bystander = await r.openSession(code, { other: 'scénario' }, LIMITS);
        const n0 = (await r.stats()).interpreters[0]!.n;
        // What CPython 3.12 answers for the same code.
        const cpython = ['nom,café — 咖啡 😀\r\n', '&lt;b&gt;&quot;Zoë&quot; &amp; 李&lt;/b&gt;', 'é😀', true, true, ['10.0.0.1', '10.0.0.2'], true, '000100000002', ['fetch', 'build', 'deploy'], ['cp', 'mon fichier.txt', '/tmp']];
        const tokens: unknown[] = [];
        for (let i = 0; i < 2; i += 1) {
          const s = await r.openSession(code, {}, LIMITS);
          expect(await s.call('use', {})).to.deep.include({ result: cpython });
          tokens.push((await s.call('tokens', {})).result);
          await s.close();
        }
        expect(tokens[0]).to.deep.equal(tokens[1]);
        expect((tokens[0] as string[])[0]).to.match(/^[0-9a-f]{16}$/);
        expect((await bystander.call('tokens', {})).result).to.not.deep.equal(tokens[0]);
        expect(await bystander.call('use', {})).to.deep.include({ result: cpython });
        await bystander.close();
        expect((await r.stats()).interpreters[0]!.n).to.equal(n0);
      } finally {
        await r.close();
      }
    });

    it('stops a plain `while True: pass` at the interrupt 30 times in a row: Pyodide\'s check of the buffer at times erases an interrupt written while it runs, so the child writes it again in the grace\'s second half; the interpreter and a co-tenant\'s session stay', async () => {
      const r = single();
      try {
        const loop = python('class Env:\n    def __init__(self, c=None):\n        self.n = 0\n    def hang(self):\n        while True:\n            pass\n    def ping(self):\n        return "pong"\n', ['hang', 'ping']);
        const quick = { ...LIMITS, callDeadlineMs: 100 };
        const bystander = await r.openSession(loop, {}, quick);
        for (let i = 0; i < 30; i++) {
          const s = await r.openSession(loop, {}, quick);
          expect(await s.call('hang', {}), `hang #${i}`).to.deep.include({ result: { success: false, error: 'the call ran past its deadline and was interrupted (its deadline is 100 ms: ENVFLEET_SANDBOX_DEADLINE_MS)' }, runtimeError: 'DEADLINE_EXCEEDED' });
          await s.close();
        }
        expect(await bystander.call('ping', {})).to.deep.include({ result: 'pong' });
        expect((await r.stats()).interpreters.map(i => i.n)).to.deep.equal([1]);
        await bystander.close();
      } finally {
        await r.close();
      }
    });

    it('reads and finishes a state under the cap that takes longer than a tool call may (the create deadline bounds it, as it bounds building the initial state)', async () => {
      const r = single();
      try {
        const code = python('class Archive:\n    def __init__(self, config):\n        self.entries = [{"id": i, "titre": "entrée n° %d — 档案 😀" % i, "tags": ["a", "b", "c"]} for i in range(60000)]\n    def count(self):\n        return len(self.entries)\n', ['count'], 'Archive');
        // ≈ 5 MB of state: counting, encoding and copying it takes far longer than this call deadline.
        const limits = { ...LIMITS, callDeadlineMs: 50, createDeadlineMs: 60_000, checkDeadlineMs: 60_000 };
        const s = await r.openSession(code, {}, limits);
        expect(await s.call('count', {})).to.deep.include({ result: 60000 });
        const state = (await s.snapshot()) as { entries: unknown[] };
        expect(state.entries).to.have.length(60000);
        const end = await s.finish([pyCheck('all', 'def check_func(s):\n    return len(s["entries"]) == 60000')]);
        expect(end.stateError).to.equal(null);
        expect(Buffer.byteLength(end.stateJson!)).to.be.greaterThan(4 << 20);
        expect(end.checks!.results.map(c => c.passed)).to.deep.equal([true]);
        await s.close();
        // A read that runs to that deadline ends the session: the interpreter and its co-tenant are held up once, not
        // at every read asked for again.
        const spin = python('class Spin(set):\n    def __iter__(self):\n        while True:\n            pass\nclass Env:\n    def __init__(self, c=None):\n        self.n = 0\n    def plant(self):\n        self.trap = Spin()\n        return True\n    def ping(self):\n        return "pong"\n', ['plant', 'ping']);
        const quick = { ...LIMITS, createDeadlineMs: 300 };
        const bystander = await r.openSession(spin, {}, quick);
        const t = await r.openSession(spin, {}, quick);
        expect(await t.call('plant', {})).to.deep.include({ result: true });
        expect(await rejection(t.snapshot())).to.have.property('code', 'DEADLINE_EXCEEDED');
        expect(await t.call('ping', {})).to.deep.include({ runtimeError: 'ENV_DISPOSED' });
        expect(await bystander.call('ping', {})).to.deep.include({ result: 'pong' });
        await t.close();
        await bystander.close();
      } finally {
        await r.close();
      }
    });

    it('writes a state whose dict mixes key kinds (ids loaded as "1", one added as the int 2) with each key as its JSON text, where the sort failed (STATE_INVALID, no reward); checks still see the int key, as in CPython; two keys with one text are refused by name', async () => {
      const r = single();
      try {
        const code = python('class Directory:\n    def __init__(self, config):\n        self.users = {}\n    def add_user(self, user_id, name):\n        self.users[user_id] = {"name": name}\n        return True\n    def clash(self):\n        self.users[1] = {"name": "doublon"}\n        return True\n', ['add_user', 'clash'], 'Directory');
        const s = await r.openSession(code, { users: { '1': { name: 'Zoë' } } }, LIMITS);
        expect(await s.call('add_user', { user_id: 2, name: '李 😀' })).to.deep.include({ result: true });
        expect(await s.call('add_user', { user_id: 10, name: 'Ana' })).to.deep.include({ result: true });
        expect(await s.snapshot()).to.deep.equal({ users: { '1': { name: 'Zoë' }, '10': { name: 'Ana' }, '2': { name: '李 😀' } } });
        const end = await s.finish([pyCheck('int key', 'def check_func(s):\n    return 2 in s["users"] and "1" in s["users"] and "2" not in s["users"]')]);
        expect(end.stateJson).to.equal('{"users":{"1":{"name":"Zoë"},"10":{"name":"Ana"},"2":{"name":"李 😀"}}}');
        expect(end.checks!.results.map(c => c.passed)).to.deep.equal([true]);
        await s.close();
        const t = await r.openSession(code, { users: { '1': { name: 'Zoë' } } }, LIMITS);
        expect(await t.call('clash', {})).to.deep.include({ result: true });
        const err = await rejection(t.snapshot());
        expect(err).to.have.property('code', 'STATE_INVALID');
        expect((err as Error).message).to.include('the same JSON key "1" ("1" and 1) at /users; keep one kind of key per dict');
        await t.close();
        // A key JSON cannot write at all (a tuple) is refused saying where, and what to write instead
        const tupled = python('class Grid:\n    def __init__(self, config):\n        self.cells = {"a": [{}]}\n    def mark(self):\n        self.cells["a"][0][(1, 2)] = "x"\n        return True\n    def top(self):\n        self.cells = {(0, 0): "o"}\n        return True\n', ['mark', 'top'], 'Grid');
        for (const [tool, at] of [['mark', '/cells/a/0'], ['top', '/cells']] as const) {
          const g = await r.openSession(tupled, {}, LIMITS);
          expect(await g.call(tool, {})).to.deep.include({ result: true });
          const bad = await rejection(g.snapshot());
          expect(bad).to.have.property('code', 'STATE_INVALID');
          expect((bad as Error).message, tool).to.include(`keys must be str, int, float, bool or None, not tuple (at ${at}); write such a key as a string`);
          await g.close();
        }
      } finally {
        await r.close();
      }
    });

    it("keeps decimal.DefaultContext per session: set as the environment loads, it is that session's context (as in a fresh CPython) and no other session's template, while it lives or after it ended", async () => {
      const r = single();
      try {
        const probe = '    def ctx(self):\n        c = decimal.getcontext()\n        return [c.prec, str(c.rounding), decimal.Context().prec, str(decimal.Context().rounding), str(Decimal(2) / Decimal(3))]\n';
        const money = python('import decimal\nfrom decimal import Decimal, ROUND_HALF_UP\ndecimal.DefaultContext.prec = 6\ndecimal.DefaultContext.rounding = ROUND_HALF_UP\nclass Env:\n    def __init__(self, c=None):\n        self.total = "0"\n    def third(self):\n        return [str(Decimal(1) / Decimal(3)), str(Decimal("2.5").quantize(Decimal("1")))]\n' + probe, ['third', 'ctx']);
        // Its own context set first, then the template: in CPython its context was made before the change.
        const own = python('import decimal\nfrom decimal import Decimal, ROUND_DOWN\ndecimal.getcontext().prec = 10\ndecimal.DefaultContext.rounding = ROUND_DOWN\nclass Env:\n    def __init__(self, c=None):\n        self.n = 0\n' + probe, ['ctx']);
        const plain = python('import decimal\nfrom decimal import Decimal\nclass Env:\n    def __init__(self, c=None):\n        self.n = 0\n' + probe, ['ctx']);
        // A Decimal made (or a division done) before the template is set: CPython's context exists by then and is kept.
        const early = python('import decimal\nfrom decimal import Decimal, ROUND_HALF_UP\nTAX = Decimal("0.08") / Decimal(3)\ndecimal.DefaultContext.prec = 6\nclass Env:\n    def __init__(self, c=None):\n        self.n = 0\n' + probe, ['ctx']);
        const fresh = [28, 'ROUND_HALF_EVEN', 28, 'ROUND_HALF_EVEN', '0.6666666666666666666666666667'];
        const p = await r.openSession(plain, {}, LIMITS);
        const m = await r.openSession(money, {}, LIMITS);
        // Answers as CPython 3.12 gives for each source in a process of its own.
        expect(await m.call('third', {})).to.deep.include({ result: ['0.333333', '3'] });
        expect(await m.call('ctx', {})).to.deep.include({ result: [6, 'ROUND_HALF_UP', 6, 'ROUND_HALF_UP', '0.666667'] });
        expect(await p.call('ctx', {})).to.deep.include({ result: fresh });
        const o = await r.openSession(own, {}, LIMITS);
        expect(await o.call('ctx', {})).to.deep.include({ result: [10, 'ROUND_HALF_EVEN', 28, 'ROUND_DOWN', '0.6666666667'] });
        expect(await m.call('ctx', {})).to.deep.include({ result: [6, 'ROUND_HALF_UP', 6, 'ROUND_HALF_UP', '0.666667'] });
        const e = await r.openSession(early, {}, LIMITS);
        expect(await e.call('ctx', {})).to.deep.include({ result: [28, 'ROUND_HALF_EVEN', 6, 'ROUND_HALF_EVEN', '0.6666666666666666666666666667'] });
        await e.close();
        const end = await m.finish([pyCheck('template', 'import decimal\ndef check_func(s):\n    return decimal.Context().prec == 6')]);
        expect(end.checks!.results.map(c => c.passed)).to.deep.equal([true]);
        await m.close();
        await o.close();
        expect(await p.call('ctx', {})).to.deep.include({ result: fresh });
        const later = await r.openSession(plain, {}, LIMITS);
        expect(await later.call('ctx', {})).to.deep.include({ result: fresh });
        await later.close();
        await p.close();
      } finally {
        await r.close();
      }
    });

    it('keeps sessions in one interpreter deterministic: uuid1 caches, the decimal context, calendar and csv settings are per session', async () => {
      const r = single();
      try {
        const code = python('import uuid, random, decimal, calendar, csv\nclass Env:\n    def __init__(self, c=None):\n        self.ids = []\n    def new_id(self):\n        self.ids.append(str(uuid.uuid1()))\n        self.ids.append(random.Random().randint(0, 10**9))\n        self.ids.append(str(decimal.Decimal(1) / decimal.Decimal(7)))\n        self.ids.append(calendar.firstweekday())\n        self.ids.append(csv.field_size_limit())\n        self.ids.append(sorted(csv.list_dialects()))\n        return self.ids\n    def meddle(self):\n        decimal.getcontext().prec = 3\n        calendar.setfirstweekday(6)\n        csv.field_size_limit(10)\n        csv.register_dialect("mine", delimiter=";")\n        uuid.uuid1()\n        return True\n', ['new_id', 'meddle']);
        const states: unknown[] = [];
        for (let i = 0; i < 3; i++) {
          const s = await r.openSession(code, {}, LIMITS);
          await s.call('new_id', {});
          states.push(await s.snapshot());
          // A session that changes module settings and stays open while the next one runs.
          const m = await r.openSession(code, {}, LIMITS);
          expect(await m.call('meddle', {})).to.deep.include({ result: true });
          await s.close();
        }
        expect(states[1]).to.deep.equal(states[0]);
        expect(states[2]).to.deep.equal(states[0]);
      } finally {
        await r.close();
      }
    });
    it("runs the environment code that reading, finishing and closing a session run (an isoformat, a __del__) in that session: its random stream, clock and module state, whichever session ran last", async () => {
      const r = single();
      try {
        // The state's Stamp writes itself with a draw of random, the clock, a uuid4 and the decimal precision; Env's
        // __del__ (a session closed without finish) sets the decimal precision.
        const code = python(
          'import random, time, uuid, decimal\nfrom datetime import date\n'
            + 'class Stamp(date):\n    def isoformat(self):\n        return "%s|%r|%r|%s|%s" % (date.isoformat(self), random.random(), time.time(), uuid.uuid4(), decimal.getcontext().prec)\n'
            + 'class Env:\n    def __init__(self, c=None):\n        self.day = Stamp(2025, 1, 1)\n'
            + '    def __del__(self):\n        decimal.getcontext().prec = 3\n'
            + '    def draw(self):\n        return [random.random(), decimal.getcontext().prec]\n'
            + '    def meddle(self):\n        decimal.getcontext().prec = 5\n        return random.random()\n',
          ['draw', 'meddle'],
        );
        // Each alone first (B's initial state differs, so its random stream does too).
        const a0 = await r.openSession(code, {}, LIMITS);
        await a0.call('draw', {});
        const snap0 = await a0.snapshot();
        const next0 = (await a0.call('draw', {})).result;
        const end0 = await a0.finish([]);
        const b0 = await r.openSession(code, { tag: 'b' }, LIMITS);
        for (let i = 0; i < 3; i++) await b0.call('meddle', {});
        const bDraw0 = (await b0.call('draw', {})).result;
        await b0.close();
        expect((snap0 as { day: string }).day).to.match(/^2025-01-01\|0\.\d+\|1735689601\.0\|[0-9a-f-]{36}\|28$/);
        // Together: B runs between A's call and A's read, finish and close.
        const a = await r.openSession(code, {}, LIMITS);
        const b = await r.openSession(code, { tag: 'b' }, LIMITS);
        await a.call('draw', {});
        await b.call('meddle', {});
        expect(await a.snapshot(), "A's state, read after B's call").to.deep.equal(snap0);
        expect((await a.call('draw', {})).result, "A's next draw").to.deep.equal(next0);
        await b.call('meddle', {});
        expect((await a.finish([])).stateJson, "A's final state, after B's call").to.equal(end0.stateJson);
        const c = await r.openSession(code, {}, LIMITS);
        await b.call('meddle', {});
        await c.close(); // without finish: Env.__del__ runs, in C's session
        expect((await b.call('draw', {})).result, "B's draw after A's reads and C's __del__").to.deep.equal([(bDraw0 as unknown[])[0], 5]);
      } finally {
        await r.close();
      }
    });
    it("answers STACK_OVERFLOW, as CPython's RecursionError, for a state whose copy recurses through a forwarding __getattr__ (a dataclass holding a proxy); the interpreter and its co-tenant go on", async () => {
      const r = single();
      try {
        await r.started();
        const n = (await r.stats()).interpreters[0]!.n;
        const bystander = await r.openSession(python(PING, ['ping']), {}, LIMITS);
        expect(await bystander.call('ping', {})).to.deep.include({ result: 1 });
        // Careless, not hostile: copying a Proxy makes an instance without _target, whose __getattr__ then looks
        // _target up through itself. dataclasses.asdict copies the field when the state is written.
        const PROXY = 'import dataclasses\nclass Proxy:\n    def __init__(self, target):\n        self._target = target\n    def __getattr__(self, name):\n        return getattr(self._target, name)\n'
          + '@dataclasses.dataclass\nclass Box:\n    p: object = None\n';
        const atStart = python(PROXY + 'class Env:\n    def __init__(self, c=None):\n        self.box = Box(Proxy({"ключ": "值 😀"}))\n    def ping(self):\n        return 1\n', ['ping']);
        const err = await rejection(r.openSession(atStart, {}, LIMITS));
        expect(err).to.have.property('code', 'STACK_OVERFLOW');
        expect((err as Error).message).to.match(/maximum recursion depth exceeded/);
        const later = python(PROXY + 'class Env:\n    def __init__(self, c=None):\n        self.box = Box()\n        self.n = 0\n    def wrap(self):\n        self.box = Box(Proxy([1, 2]))\n        return True\n    def ping(self):\n        self.n += 1\n        return self.n\n', ['wrap', 'ping']);
        const s = await r.openSession(later, {}, LIMITS);
        expect(await s.call('wrap', {})).to.deep.include({ result: true });
        expect(await rejection(s.snapshot())).to.have.property('code', 'STACK_OVERFLOW');
        expect(await s.call('ping', {}), 'the session goes on').to.deep.include({ result: 1 });
        const end = await s.finish([]);
        expect(end.stateError).to.have.property('code', 'STACK_OVERFLOW');
        expect(await bystander.call('ping', {})).to.deep.include({ result: 2 });
        expect((await r.stats()).interpreters[0]!.n, 'the interpreter is kept').to.equal(n);
      } finally {
        await r.close();
      }
    });
    it("frees what an environment made in its own session: a tool's result, the copies of its states kept for the checks (their __del__ sees its clock, and sets its own decimal context)", async () => {
      const r = single();
      try {
        const base = python(
          'import dataclasses, decimal, time\nFREED = []\n'
            + '@dataclasses.dataclass\nclass Mark:\n    tag: str = "标记"\n    def __del__(self):\n        FREED.append(time.time())\n        decimal.getcontext().prec = 3\n'
            + 'class Env:\n    def __init__(self, c=None):\n        self.mark = Mark()\n    def make(self):\n        return Mark()\n    def stash(self, items=None):\n        items.append(Mark())\n        return len(items)\n'
            + '    def freed(self):\n        return FREED\n    def prec(self):\n        return decimal.getcontext().prec\n',
          ['make', 'freed', 'prec'],
        );
        const code = EnvironmentCode.parse({ ...base, tools: [...base.tools, tool('stash', { items: { type: 'array' } }, ['items'])] });
        const limits = { ...LIMITS, checkDeadlineMs: 10_000 };
        const a = await r.openSession(code, {}, limits);
        expect(await a.call('make', {})).to.deep.include({ result: { tag: '标记' } });
        expect(await a.call('freed', {}), "the result's __del__, at the call's clock").to.deep.include({ result: [1735689601] });
        expect(await a.call('stash', { items: ['条目'] })).to.deep.include({ result: 2 });
        expect(await a.call('freed', {}), "what the tool put into its arguments, freed at the call's clock").to.deep.include({ result: [1735689601, 1735689603] });
        const b = await r.openSession(code, { b: true }, limits);
        expect(await b.call('prec', {})).to.deep.include({ result: 28 });
        // A's check runs a while; B's call is queued behind it, so B owns the module state when A is dropped.
        const slow = pyCheck('slow', 'import time\ndef check_func(s):\n    t = time.monotonic()\n    while time.monotonic() - t < 1.5:\n        pass\n    return True');
        const finished = a.finish([slow]);
        await new Promise(resolve => setTimeout(resolve, 300));
        const during = b.call('prec', {});
        expect((await finished).checks!.results.map(c => c.passed)).to.deep.equal([true]);
        expect(await during).to.deep.include({ result: 28 });
        expect(await b.call('prec', {}), "B's decimal context, after A's copies were freed").to.deep.include({ result: 28 });
      } finally {
        await r.close();
      }
    });
    it('refuses writes outside /tmp and the working folder (PermissionError, the standard library included); the next episode, opened as soon as the last one finished, starts without the files it wrote', async () => {
      const r = single();
      try {
        await r.started();
        const n = (await r.stats()).interpreters[0]!.n;
        const PATHS = ['inventory.json', '/tmp/inventory.json', '/inventory.json', '/lib/inventory.json', '/lib/python314.zip', '/dev/inventory.json', '/home/inventory.json', '/dev/shm/inventory.json', '/dev/shm/tmp/inventory.json', '/proc/self/inventory.json'];
        const code = python(
          'import json\nPATHS = ' + JSON.stringify(PATHS) + '\n'
            + 'def _read(p):\n    try:\n        with open(p, encoding="utf-8") as f:\n            return f.read()\n    except OSError:\n        return None\n'
            + 'class Env:\n    def __init__(self, c=None):\n        self.found = [p for p in PATHS if p != "/lib/python314.zip" and _read(p) is not None]\n'
            + '    def write(self):\n        out = []\n        for p in PATHS:\n            try:\n'
            + '                with open(p, "ab" if p.endswith(".zip") else "w") as f:\n                    f.write(b"" if p.endswith(".zip") else json.dumps({"库存": "😀"}, ensure_ascii=False))\n'
            + '                out.append("written")\n            except PermissionError:\n                out.append("PermissionError")\n            except OSError as e:\n                out.append(type(e).__name__)\n        return out\n',
          ['write'],
        );
        for (let episode = 0; episode < 3; episode++) {
          const s = await r.openSession(code, {}, LIMITS);
          expect(await s.snapshot(), `episode ${episode}: no file of an earlier episode`).to.deep.equal({ found: [] });
          expect(await s.call('write', {})).to.deep.include({
            result: ['written', 'written', ...Array<string>(8).fill('PermissionError')],
          });
          await s.finish([]); // and the next one opens at once
        }
        expect((await r.stats()).interpreters[0]!.n).to.equal(n);
      } finally {
        await r.close();
      }
    });
    it("starts every check of a session from the same module state, clock and random streams: what one check sets (decimal, calendar, csv, logging, random.seed, sleep) no other sees, in any order", async () => {
      const r = single();
      try {
        const code = python(
          'import random, time\nclass Env:\n    def __init__(self, c=None):\n        self.n = 0\n'
            + '    def step(self):\n        self.n += 1\n        self.clock = time.time()\n        st = random.getstate()\n        self.peek = random.random()\n        random.setstate(st)\n        return self.n\n',
          ['step'],
        );
        const meddle = pyCheck('meddle', 'import calendar, csv, decimal, logging, random, time, uuid\ndef check_func(s):\n    decimal.getcontext().prec = 3\n    calendar.setfirstweekday(6)\n'
          + '    csv.register_dialect("mine", delimiter=";")\n    logging.disable(logging.CRITICAL)\n    logging.basicConfig()\n    logging.lastResort.setLevel(50)\n    logging.lastResort.addFilter(lambda r: False)\n'
          + '    random.seed(5)\n    time.sleep(100)\n    uuid.uuid4()\n    return True');
        const reader = (item: string) => pyCheck(item, 'import calendar, csv, decimal, logging, random, time\ndef check_func(s):\n'
          + '    return (decimal.getcontext().prec == 28 and calendar.firstweekday() == 0 and "mine" not in csv.list_dialects()\n'
          + '            and logging.root.manager.disable == 0 and not logging.root.handlers and logging.lastResort.level == 30 and not logging.lastResort.filters\n'
          + '            and time.time() == s["clock"] and random.random() == s["peek"])');
        for (const checks of [[meddle, reader('after')], [reader('before'), meddle, reader('after')], [reader('alone')]]) {
          const s = await r.openSession(code, {}, LIMITS);
          await s.call('step', {});
          await s.call('step', {});
          const end = await s.finish(checks);
          expect(end.checks!.results.map(c => [c.item, c.passed, c.error ?? null])).to.deep.equal(checks.map(c => [c.item, true, null]));
        }
      } finally {
        await r.close();
      }
    });
    it('measures the initial state against the state cap in UTF-8 bytes, not characters', async () => {
      const r = single();
      try {
        const code = python(PING, ['ping']);
        const limits = { ...LIMITS, maxStateBytes: 1000 };
        // {"n":0,"s":"<400 emoji>"}: 414 characters of JSON, 1614 bytes.
        const err = await rejection(r.openSession(code, { s: '\u{1F600}'.repeat(400) }, limits));
        expect(err).to.have.property('code', 'STATE_TOO_LARGE');
        expect((err as Error).message).to.match(/1614 bytes/);
        expect((err as Error).message).to.match(/\(ENVFLEET_SANDBOX_MAX_STATE_KB\): give the scenario a smaller initial state \(or build less of it in the constructor\), or raise ENVFLEET_SANDBOX_MAX_STATE_KB \(a run uses the value it was submitted with\)$/);
        const ok = await r.openSession(code, { s: '\u{1F600}'.repeat(200) }, limits);
        expect(await ok.call('ping', {})).to.deep.include({ result: 1 });
        await ok.close();
      } finally {
        await r.close();
      }
    });
    it('rejects a careless state far over the cap (multi-byte text) with STATE_TOO_LARGE, before the deadline; a co-tenant on the interpreter goes on', async () => {
      // The heap at its default (512 MiB), as in a worker: with this file's 192 MiB, encoding the state runs out of memory first.
      const r = single({ heapMb: DEFAULT_SANDBOX_LIMITS.heapMb });
      try {
        // Careless, not hostile: a journal that logs a banner line per record (the same string each time, so the heap
        // stays small while the JSON grows), the initial import building ~19 MB and each tool call ~19 MB more.
        const code = python(
          'class Journal:\n    def __init__(self, c=None):\n        self.entries = []\n        self.imported = 0\n'
          + '    def import_batch(self, n=62000):\n        line = "导入记录 😀 ヘッダー " * 16\n        for i in range(n):\n            self.entries.append(line)\n        self.imported += n\n        return {"success": True, "data": self.imported}\n'
          + '    def entries_page(self):\n        return self.entries\n',
          ['import_batch', 'entries_page'], 'Journal');
        const limits = LIMITS; // the state cap at its default (8 MiB), the 1 s call deadline of this file
        expect(limits.maxStateBytes).to.equal(8 << 20);
        await r.started();
        const n = (await r.stats()).interpreters[0]!.n;
        const bystander = await r.openSession(HELP_DESK, SEEDED_STATE, LIMITS);
        expect(await bystander.call('echo', { text: 'before' })).to.deep.include({ result: { success: true, data: { text: 'before', length: 6 } } });

        // Each line is 192 characters, 496 UTF-8 bytes: 62,000 of them are ~31 MB of JSON per call.
        const s = await r.openSession(code, {}, limits);
        for (let i = 1; i <= 3; i++) expect(await s.call('import_batch', {})).to.deep.include({ result: { success: true, data: 62000 * i } });
        // ~93 MB of JSON, eleven times the cap: each read of it is refused, within the deadline.
        // Refused by the cap, not stopped by the deadline (which would be DEADLINE_EXCEEDED and a new interpreter: see the end).
        const refused = await rejection(s.snapshot());
        expect(refused).to.have.property('code', 'STATE_TOO_LARGE');
        // It names the setting, and what to do.
        expect((refused as Error).message).to.match(/^the state is more than the state cap of 8388608 bytes of JSON \(at least \d+ bytes: counting stopped there, nothing was encoded\) \(ENVFLEET_SANDBOX_MAX_STATE_KB\): keep in the state only what later calls need \(an environment that keeps everything each call gives it, such as a copy of every result or a log of every request, grows past any cap\), or raise ENVFLEET_SANDBOX_MAX_STATE_KB \(a run uses the value it was submitted with\)$/);
        const page = await s.call('entries_page', {});
        expect(page).to.deep.include({ runtimeError: 'RESULT_TOO_LARGE' });
        expect(await bystander.call('echo', { text: 'between' })).to.deep.include({ result: { success: true, data: { text: 'between', length: 7 } } });
        const end = await s.finish([pyCheck('any', 'def check_func(s):\n    return True')]);
        expect(end).to.deep.include({ stateJson: null, checks: null });
        expect(end.stateError).to.have.property('code', 'STATE_TOO_LARGE');
        expect(end.stateError!.message).to.match(/more than the state cap of 8388608.* \(ENVFLEET_SANDBOX_MAX_STATE_KB\): keep in the state only what later calls need/);

        // The same state built by the constructor: the session is refused at its start.
        const big = await rejection(r.openSession(python(code.source.replace('self.entries = []', 'self.entries = ["导入记录 😀 ヘッダー " * 16] * 190000'), ['import_batch'], 'Journal'), {}, limits));
        expect(big).to.have.property('code', 'STATE_TOO_LARGE');

        // The co-tenant was never disturbed: same interpreter, its state intact, its checks run.
        expect(await bystander.call('echo', { text: 'after' })).to.deep.include({ result: { success: true, data: { text: 'after', length: 5 } } });
        const fine = await bystander.finish([pyCheck('ticket kept', 'def check_func(s):\n    return s["tickets"]["T-1"]["title"] == "Printer on fire"')]);
        expect(fine.stateError).to.equal(null);
        expect(fine.checks!.results.map(c => c.passed)).to.deep.equal([true]);
        expect((await r.stats()).interpreters.map(i => i.n)).to.deep.equal([n]);
      } finally {
        await r.close();
      }
    });
    // Careless, not hostile: a linked list kept as dicts inside dicts (or as Node objects), built from its head (the
    // oldest object), on an instance that keeps bound methods (a cycle: only the cycle collector frees it). 50,000
    // levels: the C encoder overflowed the interpreter thread's stack at ~13,000, freeing such a chain at ~13,000 too
    // (also when the cycle collector frees it, later), the C decoder at ~21,000.
    const CHAIN = python(
      'class Node:\n    def __init__(self, v):\n        self.v, self.next = v, None\n'
      + 'def chain(n, kind):\n    head = node = None\n    for i in range(n):\n        new = {"v": i, "next": None} if kind == "dict" else Node(i)\n'
      + '        if node is None:\n            head = new\n        elif kind == "dict":\n            node["next"] = new\n        else:\n            node.next = new\n        node = new\n    return head\n'
      + 'class Chain:\n    def __init__(self, c=None):\n        self.__tools__ = {"ping": self.ping}\n        self.head = chain(c.get("build", 0), "dict") if c else None\n'
      + '    def grow(self, n=0, kind="dict"):\n        self.head = chain(n, kind)\n        return n\n'
      + '    def built(self, n=0):\n        return chain(n, "dict")\n    def ping(self):\n        return 1\n'
      + '    def churn(self, n=0):\n        return len([[i] for i in range(n)])\n',
      ['grow', 'built', 'ping', 'churn'], 'Chain');
    const countCheck = (n: number) => pyCheck('every node', `def check_func(s):\n    node, n = s["head"], 0\n    while node is not None:\n        node, n = node["next"], n + 1\n    return n == ${n} and initial_state == {"head": None}`);
    const DEEP = 50_000;

    it(`refuses a state nested past ${MAX_JSON_DEPTH} levels with STATE_INVALID (a turn's state, the final state, the initial state, a result), without losing the interpreter or its co-tenant; a state at the bound is read, finished and checked`, async () => {
      const r = single();
      try {
        await r.started();
        const n = (await r.stats()).interpreters[0]!.n;
        const bystander = await r.openSession(HELP_DESK, SEEDED_STATE, LIMITS);
        const tooDeep = (err: unknown, what: string) => {
          expect(err, what).to.have.property('code', 'STATE_INVALID');
          const message = (err as Error).message;
          expect(message, what).to.include(`${what} nests containers more than ${MAX_JSON_DEPTH} levels deep (${MAX_JSON_DEPTH + 1} containers down to /head/next/next/next/next/…/next/next)`);
          expect(message, what).to.include('keep it flatter');
        };

        // Past the bound: a turn's state and the final state are refused, the session going on in between; a result
        // built past it is refused (NON_JSON_RESULT) and the session goes on.
        const s = await r.openSession(CHAIN, {}, LIMITS);
        expect(await s.call('grow', { n: DEEP })).to.deep.include({ result: DEEP });
        tooDeep(await rejection(s.snapshot()), 'the state');
        expect(await s.call('ping', {})).to.deep.include({ result: 1 });
        const result = await s.call('built', { n: DEEP });
        expect(result).to.deep.include({ runtimeError: 'NON_JSON_RESULT' });
        expect((result.result as { error: string }).error).to.include(`the result nests containers more than ${MAX_JSON_DEPTH} levels deep`);
        expect(await s.call('ping', {})).to.deep.include({ result: 1 });
        const end = await s.finish([countCheck(DEEP)]);
        expect(end).to.deep.include({ stateJson: null, checks: null });
        tooDeep(end.stateError, 'the state');
        expect(await bystander.call('echo', { text: 'between' })).to.deep.include({ result: { success: true, data: { text: 'between', length: 7 } } });

        // Closed without a read after the call that made it deep (dicts, and Node objects, which are not JSON): freed too.
        for (const kind of ['dict', 'node']) {
          const closed = await r.openSession(CHAIN, {}, LIMITS);
          expect(await closed.call('grow', { n: DEEP, kind })).to.deep.include({ result: DEEP });
          await closed.close();
          expect(await bystander.call('echo', { text: kind }), kind).to.deep.include({ result: { success: true, data: { text: kind, length: kind.length } } });
        }

        // Built by the constructor, or handed in as the initial state: the session is refused at its start.
        tooDeep(await rejection(r.openSession(CHAIN, { build: DEEP }, LIMITS)), 'the initial state');
        let deepJson = 'null';
        for (let i = 0; i < DEEP; i++) deepJson = `{"next":${deepJson}}`;
        const given = await rejection(r.openSession(CHAIN, null, LIMITS, `{"head":${deepJson}}`));
        expect(given).to.have.property('code', 'STATE_INVALID');
        expect((given as Error).message).to.include(`the initial state nests containers more than ${MAX_JSON_DEPTH} levels deep`);

        // At the bound: the state ({"head": ...} and MAX_JSON_DEPTH - 1 nodes) is read, finished, copied for a check (copy.deepcopy
        // gave up at ~500 levels before) and checked.
        const atBound = await r.openSession(CHAIN, {}, LIMITS);
        expect(await atBound.call('grow', { n: MAX_JSON_DEPTH - 1 })).to.deep.include({ result: MAX_JSON_DEPTH - 1 });
        expect(await atBound.snapshot()).to.have.nested.property('head.next.v', 1);
        const fine = await atBound.finish([countCheck(MAX_JSON_DEPTH - 1)]);
        expect(fine.stateError).to.equal(null);
        expect(fine.checks!.results).to.deep.equal([{ item: 'every node', passed: true }]);

        // Allocations enough for the cycle collector to free the instances above (each kept by its bound methods).
        const churner = await r.openSession(CHAIN, {}, LIMITS);
        for (let i = 0; i < 5; i++) expect(await churner.call('churn', { n: 200_000 })).to.deep.include({ result: 200_000 });
        await churner.close();

        // The co-tenant was never disturbed: same interpreter, its state intact, its checks run.
        const kept = await bystander.finish([pyCheck('ticket kept', 'def check_func(s):\n    return s["tickets"]["T-1"]["title"] == "Printer on fire"')]);
        expect(kept.stateError).to.equal(null);
        expect(kept.checks!.results.map(c => c.passed)).to.deep.equal([true]);
        expect((await r.stats()).interpreters.map(i => i.n)).to.deep.equal([n]);
      } finally {
        await r.close();
      }
    });
    it(`holds a check's inputs to ${MAX_JSON_DEPTH} levels: a deeper final state, initial state or episode fails each check with STATE_INVALID before the interpreter decodes it; a state at the bound is checked`, async () => {
      const r = single();
      try {
        await r.started();
        const n = (await r.stats()).interpreters[0]!.n;
        const bystander = await r.openSession(HELP_DESK, SEEDED_STATE, LIMITS);
        const nested = (levels: number) => {
          let json = 'null';
          for (let i = levels - 1; i >= 1; i--) json = `{"next":${json},"v":${i}}`;
          return `{"head":${json}}`;
        };
        const checks = [countCheck(MAX_JSON_DEPTH - 1), pyCheck('episode', 'def check_func(s):\n    return len(episode["turn_states"]) == 1')];
        checks[1] = { ...checks[1]!, episode: true };
        const initial = new RawJson('{"head":null}');
        const deep = new RawJson(nested(DEEP));
        for (const [what, input] of [
          ['the final state', { finalState: deep, initialState: initial }],
          ['the initial state', { finalState: initial, initialState: deep }],
          ['the episode', { finalState: initial, initialState: initial, episode: { messages: [], turnStates: [JSON.parse(nested(MAX_JSON_DEPTH + 1))] } }],
        ] as const) {
          const result = await r.checks({ checks, ...input, limits: LIMITS });
          expect(result.results.map(c => c.errorCode), what).to.deep.equal(['STATE_INVALID', 'STATE_INVALID']);
          expect(result.results[0]!.error, what).to.match(new RegExp(`^${what} given to the checks .*nests containers more than ${MAX_JSON_DEPTH} levels deep: `));
        }
        // At the bound (the episode two levels deeper: its turn states sit in it): checked.
        const atBound = await r.checks({ checks, finalState: new RawJson(nested(MAX_JSON_DEPTH)), initialState: initial, episode: { messages: [], turnStates: [JSON.parse(nested(MAX_JSON_DEPTH))] }, limits: LIMITS });
        expect(atBound.results).to.deep.equal([{ item: 'every node', passed: true }, { item: 'episode', passed: true }]);
        expect(await bystander.call('echo', { text: 'after' })).to.deep.include({ result: { success: true, data: { text: 'after', length: 5 } } });
        expect((await r.stats()).interpreters.map(i => i.n)).to.deep.equal([n]);
      } finally {
        await r.close();
      }
    });
    it('writes frozensets nested in frozensets in time (each set sorted once), and holds them to a tenth of the bound (a set counts as 10 levels: it is sorted in an encoder of its own)', async () => {
      const r = single();
      try {
        await r.started();
        const n = (await r.stats()).interpreters[0]!.n;
        const code = python('class Sets:\n    def __init__(self, c=None):\n        self.tags = frozenset()\n    def nest(self, n=0):\n        t = frozenset()\n        for i in range(n):\n            t = frozenset([t, str(i)])\n        self.tags = t\n        return n\n', ['nest'], 'Sets');
        const s = await r.openSession(code, {}, LIMITS);
        // 40 levels: the work doubled at each before (2^40 sorts), far past the deadline.
        await s.call('nest', { n: 40 });
        let tags = (await s.snapshot()) as { tags: unknown[] };
        for (let i = 39; i >= 0; i--) {
          expect(tags.tags[0]).to.equal(String(i));
          tags = { tags: tags.tags[1] as unknown[] };
        }
        // {"tags": ...}: the state and 99 sets fit (1 + 99 × 10 levels), 100 do not.
        await s.call('nest', { n: 98 });
        expect(await s.snapshot()).to.have.property('tags');
        await s.call('nest', { n: 99 });
        const err = await rejection(s.snapshot());
        expect(err).to.have.property('code', 'STATE_INVALID');
        expect((err as Error).message).to.include('a set counts as 10 levels');
        await s.close();
        expect((await r.stats()).interpreters.map(i => i.n)).to.deep.equal([n]);
      } finally {
        await r.close();
      }
    });
    it('keeps shared stdlib patches (json.dumps, copy.deepcopy, json.encoder) from changing results; a tampered interpreter is replaced at session end and after a check', async () => {
      const r = single();
      try {
        const victim = python('import json\nclass Victim:\n    def __init__(self, c=None):\n        self.balance = 100\n    def pay(self, amount=10):\n        self.balance -= amount\n        return {"balance": self.balance, "dump": json.dumps([1])}\n', ['pay'], 'Victim');
        const attacker = python('import json, copy\nimport json.encoder\nclass Attacker:\n    def __init__(self, c=None):\n        self.x = 0\n    def patch(self):\n        real = json.dumps\n        def fake(o, *a, **k):\n            return real({"balance": 999999}, *a, **k)\n        json.dumps = fake\n        copy.deepcopy = lambda o, memo=None: {"balance": 999999}\n        json.encoder.c_make_encoder = None\n        json.encoder.encode_basestring = lambda s: \'"evil"\'\n        return "patched"\n', ['patch'], 'Attacker');
        // A well-behaved session that uses modules with lazy state: its end replaces nothing.
        const benign = python('import base64, logging, uuid, json.tool\nclass Env:\n    def __init__(self, c=None):\n        self.a = base64.a85encode(b"x").decode()\n        self.u = str(uuid.uuid1())\n        logging.getLogger("x").warning("hi")\n    def ping(self):\n        return self.a\n', ['ping']);
        await r.started();
        const nStart = (await r.stats()).interpreters[0]!.n;
        const b = await r.openSession(benign, {}, LIMITS);
        await b.call('ping', {});
        const passing = await b.finish([pyCheck('ok', 'import json\ndef check_func(s):\n    return True'), pyCheck('ok2', 'def check_func(s):\n    return True')]);
        expect(passing.checks!.results.map(c => c.passed)).to.deep.equal([true, true]);
        const n0 = (await r.stats()).interpreters[0]!.n;
        expect(n0).to.equal(nStart);
        const v = await r.openSession(victim, {}, LIMITS);
        expect(await v.call('pay', { amount: 1 })).to.deep.include({ result: { balance: 99, dump: '[1]' } });
        const a = await r.openSession(attacker, {}, LIMITS);
        expect(await a.call('patch', {})).to.deep.include({ result: 'patched' });
        // The harness uses what it captured at load: its JSON of results and states is still right
        // (the victim's own json.dumps is the patched one while the attacker lives: not prevented).
        expect(((await v.call('pay', { amount: 1 })).result as { balance: number }).balance).to.equal(98);
        expect(await v.snapshot()).to.deep.equal({ balance: 98 });
        expect((await r.stats()).interpreters[0]!.n).to.equal(n0);
        await a.close();
        // The attacker's end found the patches: the interpreter was replaced, the co-tenant is gone.
        expect(await v.call('pay', { amount: 1 })).to.deep.include({ runtimeError: 'ENV_DISPOSED', lostWith: 'interpreter' });
        const fresh = await r.openSession(victim, {}, LIMITS);
        expect(await fresh.call('pay', { amount: 1 })).to.deep.include({ result: { balance: 99, dump: '[1]' } });
        const n1 = (await r.stats()).interpreters[0]!.n;
        expect(n1).to.be.greaterThan(n0);
        // A check that patches json.dumps: its interpreter is replaced before the next check runs.
        const end = await fresh.finish([
          pyCheck('patcher', 'import json\njson.dumps = lambda *a, **k: "x"\ndef check_func(s):\n    return True'),
          pyCheck('next', 'import json\ndef check_func(s):\n    return json.dumps(1) == "1"'),
        ]);
        expect(end.stateJson).to.equal('{"balance":99}');
        expect(end.checks!.results.map(c => [c.item, c.passed, c.errorCode])).to.deep.equal([['patcher', false, 'CHECK_THREW'], ['next', false, 'ENV_DISPOSED']]);
        const again = await r.openSession(victim, {}, LIMITS);
        expect(await again.call('pay', { amount: 2 })).to.deep.include({ result: { balance: 98, dump: '[1]' } });
        expect((await r.stats()).interpreters[0]!.n).to.be.greaterThan(n1);
      } finally {
        await r.close();
      }
    });
    it("gives each session its own logging registry: a fixed-name logger's handler gets only its own session's records, and disable, addLevelName and basicConfig hold for that session alone", async () => {
      const r = single();
      try {
        const code = python(
          'import logging\nlogger = logging.getLogger("bank.audit")\nlogger.setLevel(logging.INFO)\n'
            + 'class AuditHandler(logging.Handler):\n    def __init__(self, sink):\n        super().__init__()\n        self.sink = sink\n    def emit(self, record):\n        self.sink.append(record.getMessage())\n'
            + 'class Bank:\n    def __init__(self, c=None):\n        self.balance = 100\n        self.audit_log = []\n        logger.addHandler(AuditHandler(self.audit_log))\n'
            + '    def withdraw(self, amount=10):\n        self.balance -= amount\n        logger.info("withdrew %d", amount)\n        return self.balance\n'
            + '    def settings(self):\n        return [len(logger.handlers), logging.getLevelName(25), logging.root.manager.disable, len(logging.getLogger().handlers)]\n'
            + '    def meddle(self):\n        logging.disable(logging.CRITICAL)\n        logging.addLevelName(25, "NOTICE")\n        logging.basicConfig(level=logging.DEBUG)\n        return True\n',
          ['withdraw', 'settings', 'meddle'],
          'Bank',
        );
        await r.started();
        const n = (await r.stats()).interpreters[0]!.n;
        const a = await r.openSession(code, {}, LIMITS);
        const b = await r.openSession(code, {}, LIMITS);
        expect(await b.call('withdraw', { amount: 25 })).to.deep.include({ result: 75 });
        expect(await b.call('withdraw', { amount: 5 })).to.deep.include({ result: 70 });
        expect(await a.snapshot(), "a co-tenant's records do not reach this session's handler").to.deep.equal({ balance: 100, audit_log: [] });
        expect(await b.snapshot()).to.deep.equal({ balance: 70, audit_log: ['withdrew 25', 'withdrew 5'] });
        expect(await a.call('settings', {})).to.deep.include({ result: [1, 'Level 25', 0, 0] });
        expect(await b.call('meddle', {})).to.deep.include({ result: true });
        expect(await b.call('settings', {})).to.deep.include({ result: [1, 'NOTICE', 50, 1] });
        expect(await a.call('settings', {}), 'another session, after one disabled logging').to.deep.include({ result: [1, 'Level 25', 0, 0] });
        expect(await a.call('withdraw', { amount: 1 })).to.deep.include({ result: 99 });
        expect(await a.snapshot()).to.deep.equal({ balance: 99, audit_log: ['withdrew 1'] });
        await b.close();
        await a.close();
        const later = await r.openSession(code, {}, LIMITS);
        expect(await later.call('withdraw', { amount: 10 })).to.deep.include({ result: 90 });
        expect(await later.snapshot(), 'a later session: one handler, its own').to.deep.equal({ balance: 90, audit_log: ['withdrew 10'] });
        expect(await later.call('settings', {})).to.deep.include({ result: [1, 'Level 25', 0, 0] });
        expect((await r.stats()).interpreters[0]!.n).to.equal(n);
      } finally {
        await r.close();
      }
    });
    it("keeps logging's plain switches, its logger class, record factory and last-resort handler, and json.encoder.FLOAT_REPR per session: benign code that sets them (at load, in a tool, in a check) replaces nothing, and other sessions see the defaults", async () => {
      const r = single();
      try {
        const READ = '    def read(self):\n        return [logging.raiseExceptions, logging.logThreads, logging.logProcesses, logging.logMultiprocessing,\n'
          + '                logging.logAsyncioTasks, logging._srcfile is None, getattr(json.encoder, "FLOAT_REPR", None) is not None]\n';
        const SET = '    logging.raiseExceptions = False\n    logging.logThreads = False\n    logging.logProcesses = False\n    logging.logMultiprocessing = False\n'
          + '    logging.logAsyncioTasks = False\n    logging._srcfile = None\n    json.encoder.FLOAT_REPR = lambda f: format(f, ".2f")\n';
        const code = python(
          'import logging, json, json.encoder\ndef meddle():\n' + SET
          + 'class Env:\n    def __init__(self, c=None):\n        if c and c.get("at_start"):\n            meddle()\n        self.n = 0\n'
          + '    def meddle(self):\n        meddle()\n        logging.getLogger("desk").warning("switches set")\n        return True\n' + READ,
          ['meddle', 'read'],
        );
        await r.started();
        const DEFAULTS = [true, true, true, true, true, false, false];
        const SET_VALUES = [false, false, false, false, false, true, true];
        const n = (await r.stats()).interpreters[0]!.n;
        const other = await r.openSession(code, {}, LIMITS);
        expect(await other.call('read', {})).to.deep.include({ result: DEFAULTS });
        const s = await r.openSession(code, {}, LIMITS);
        expect(await s.call('meddle', {})).to.deep.include({ result: true });
        expect(await other.call('read', {}), 'another session, after a tool set them').to.deep.include({ result: DEFAULTS });
        expect(await s.call('read', {}), 'the session that set them keeps them').to.deep.include({ result: SET_VALUES });
        await s.close();
        const atStart = await r.openSession(code, { at_start: true }, LIMITS);
        expect(await atStart.call('read', {})).to.deep.include({ result: SET_VALUES });
        const end = await atStart.finish([
          pyCheck('sets them too', 'import logging, json.encoder\ndef check_func(s):\n    logging.raiseExceptions = False\n    logging._srcfile = None\n    json.encoder.FLOAT_REPR = repr\n    return True'),
          pyCheck('sees its own session', 'import logging\ndef check_func(s):\n    return logging.raiseExceptions is False'),
        ]);
        expect(end.checks!.results.map(c => [c.item, c.passed, c.errorCode ?? null])).to.deep.equal([['sets them too', true, null], ['sees its own session', true, null]]);
        expect(await other.call('read', {}), 'after the others ended').to.deep.include({ result: DEFAULTS });
        const later = await r.openSession(code, {}, LIMITS);
        expect(await later.call('read', {})).to.deep.include({ result: DEFAULTS });
        expect((await r.stats()).interpreters.map(i => i.n)).to.deep.equal([n]);
        // When the session that set them ends, the values of load time are back at once: code that runs before another
        // session enters (here a copy hook of another session's state, run by its finish) does not see the values of
        // a session that has ended.
        const box = python(
          'import copy, dataclasses, logging\n@dataclasses.dataclass\nclass Box:\n    v: object = None\n'
            + '    def __deepcopy__(self, memo):\n        return Box(self.v if self.v is not None else logging.raiseExceptions)\n'
            + 'class Env:\n    def __init__(self, c=None):\n        self.box = Box()\n    def ping(self):\n        return 1\n',
          ['ping'],
        );
        const holder = await r.openSession(box, {}, LIMITS);
        const setter = await r.openSession(code, {}, LIMITS);
        expect(await setter.call('meddle', {})).to.deep.include({ result: true });
        await setter.close();
        const boxEnd = await holder.finish([pyCheck('copied with the values of load time', 'def check_func(s):\n    return s["box"].v is True')]);
        expect(boxEnd.checks!.results.map(c => [c.passed, c.errorCode ?? null])).to.deep.equal([[true, null]]);
        // The logger class, the record factory and the last-resort handler are the session's own too (loggers made
        // under its class live in its own registry): another session open meanwhile, and a later one, get logging's
        // own, and the interpreter is kept.
        const own = python(
          'import logging\nclass Quiet(logging.Logger):\n    pass\n'
            + 'def factory(*a, **k):\n    rec = logging.LogRecord(*a, **k)\n    rec.tag = "mine"\n    return rec\n'
            + 'class Env:\n    def __init__(self, c=None):\n        if c.get("mine"):\n            logging.setLoggerClass(Quiet)\n            logging.setLogRecordFactory(factory)\n            logging.lastResort = None\n'
            + '        if c.get("filter"):\n            logging.lastResort.setLevel(logging.CRITICAL)\n            logging.lastResort.addFilter(lambda record: False)\n'
            + '    def resort(self):\n        return [logging.lastResort.level, len(logging.lastResort.filters)]\n'
            + '    def read(self):\n        rec = logging.getLogger("desk.rec").makeRecord("x", 30, "f", 1, "m", (), None)\n'
            + '        logging.getLogger("desk.none").warning("no handler: the last resort, if any")\n'
            + '        return [logging.getLogger("desk.quiet").__class__.__name__, logging.getLoggerClass().__name__, getattr(rec, "tag", None), logging.lastResort is None]\n',
          ['read', 'resort'],
        );
        const LOGGING = ['Logger', 'Logger', null, false];
        const plain = await r.openSession(own, {}, LIMITS);
        const mine = await r.openSession(own, { mine: true }, LIMITS);
        expect(await mine.call('read', {})).to.deep.include({ result: ['Quiet', 'Quiet', 'mine', true] });
        expect(await plain.call('read', {}), 'another session, while it lives').to.deep.include({ result: LOGGING });
        expect(await mine.call('read', {})).to.deep.include({ result: ['Quiet', 'Quiet', 'mine', true] });
        await mine.close();
        expect(await plain.call('read', {}), 'after it ended').to.deep.include({ result: LOGGING });
        // The last-resort handler object is the session's own too: a level or a filter set on it holds for that session.
        const filtering = await r.openSession(own, { filter: true }, LIMITS);
        expect(await filtering.call('resort', {})).to.deep.include({ result: [50, 1] });
        expect(await plain.call('resort', {}), 'another session, while it lives').to.deep.include({ result: [30, 0] });
        await filtering.close();
        const after = await r.openSession(own, {}, LIMITS);
        expect(await after.call('read', {}), 'a later session').to.deep.include({ result: LOGGING });
        expect((await r.stats()).interpreters.map(i => i.n)).to.deep.equal([n]);
        // captureWarnings rebinds warnings.showwarning for every session: still tampering, the interpreter is replaced.
        const capture = await r.openSession(python('import logging\nclass Env:\n    def __init__(self, c=None):\n        logging.captureWarnings(True)\n    def ping(self):\n        return 1\n', ['ping']), {}, LIMITS);
        await capture.close();
        expect((await r.stats()).interpreters[0]!.n).to.be.greaterThan(n);
      } finally {
        await r.close();
      }
    });
    it("keeps the names an environment adds to standard modules as it loads (a custom log level, compatibility shims) to its own session: its calls and checks see them, no other session does, and its end replaces nothing; a name added in a tool is still tampering", async () => {
      const r = single();
      try {
        const shim = python('import logging, collections, collections.abc, time, enum\nTRACE = 5\nlogging.addLevelName(TRACE, "TRACE — 跟踪 😀")\nlogging.TRACE = TRACE\nclass Level(str, enum.Enum):\n    AUDIT = "AUDIT"\nsetattr(logging, Level.AUDIT, 25)\ncollections.Mapping = collections.abc.Mapping\ntime.clock = time.perf_counter\nclass Env:\n    def __init__(self, c=None):\n        self.level = logging.TRACE\n    def use(self):\n        return [logging.TRACE, logging.getLevelName(logging.TRACE), isinstance({}, collections.Mapping), type(time.clock()).__name__, logging.AUDIT]\n', ['use']);
        const other = python('import logging, collections, time\nclass Other:\n    def __init__(self, c=None):\n        self.n = 0\n    def look(self):\n        return [hasattr(logging, "TRACE"), hasattr(collections, "Mapping"), hasattr(time, "clock"), hasattr(logging, "AUDIT")]\n    def add(self):\n        logging.AUDIT = 25\n        return True\n', ['look', 'add'], 'Other');
        const o = await r.openSession(other, {}, LIMITS);
        const n0 = (await r.stats()).interpreters[0]!.n;
        const a = await r.openSession(shim, {}, LIMITS);
        const b = await r.openSession(shim, {}, LIMITS);
        const own = [5, 'TRACE — 跟踪 😀', true, 'float', 25];
        expect(await a.call('use', {})).to.deep.include({ result: own });
        expect(await o.call('look', {})).to.deep.include({ result: [false, false, false, false] });
        // Each check starts from the names as the environment left them: one that rebinds or deletes one changes no other.
        const seesTrace = pyCheck('sees', 'import logging\ndef check_func(s):\n    return logging.TRACE == 5 and s["level"] == 5');
        const end = await a.finish([
          seesTrace,
          pyCheck('rebinds', 'import logging\ndef check_func(s):\n    logging.TRACE = 99\n    return True'),
          { ...seesTrace, item: 'sees again' },
          pyCheck('deletes', 'import logging\ndef check_func(s):\n    del logging.TRACE\n    return True'),
          { ...seesTrace, item: 'sees at last' },
        ]);
        expect(end.checks!.results.map(c => c.passed)).to.deep.equal([true, true, true, true, true]);
        await a.close();
        // The other session of the same environment keeps its own, after the first one ended.
        expect(await b.call('use', {})).to.deep.include({ result: own });
        await b.close();
        expect(await o.call('look', {})).to.deep.include({ result: [false, false, false, false] });
        expect((await r.stats()).interpreters[0]!.n).to.equal(n0);
        const c = await r.openSession(shim, {}, LIMITS);
        expect(await c.call('use', {})).to.deep.include({ result: own });
        await c.close();
        // Added by a tool, after loading: still taken for tampering when the session ends.
        expect(await o.call('add', {})).to.deep.include({ result: true });
        await o.close();
        const after = await r.openSession(other, {}, LIMITS);
        expect(await after.call('look', {})).to.deep.include({ result: [false, false, false, false] });
        expect((await r.stats()).interpreters[0]!.n).to.be.greaterThan(n0);
        await after.close();
      } finally {
        await r.close();
      }
    });

    it("replaces the interpreter after a session that planted a module of its own for a submodule of an allowed package (html.parser, json.tool) or put a key that is not a str into a module; the next session imports the real one", async () => {
      const r = single();
      try {
        const victim = python('import json\nfrom html.parser import HTMLParser\nimport json.tool\nclass Env:\n    def __init__(self, c=None):\n        self.x = 1\n    def kinds(self):\n        return [HTMLParser.__module__, json.tool.__name__, json.loads(\'{"é": 1}\')]\n', ['kinds']);
        const honest = ['html.parser', 'json.tool', { é: 1 }];
        const planters = [
          'import logging, html, json\nclass Evil:\n    pass\nfor name in ("html.parser", "json.tool"):\n    fake = type(logging)(name)\n    fake.HTMLParser = Evil\n    logging.sys.modules[name] = fake\nhtml.parser = logging.sys.modules["html.parser"]\nclass Env:\n    def __init__(self, c=None):\n        self.x = 1\n    def noop(self):\n        return 1\n',
          'import json\nMODE = ["isinstance"]\nclass K:\n    def __hash__(self):\n        return hash(MODE[0])\n    def __eq__(self, o):\n        return True\ndef fake(*a):\n    return False\nclass Env:\n    def __init__(self, c=None):\n        self.x = 1\n    def noop(self):\n        vars(json)[K()] = fake\n        MODE[0] = "dumps"\n        return 1\n',
        ];
        for (const source of planters) {
          const n0 = (await r.stats()).interpreters[0]!.n;
          const a = await r.openSession(python(source, ['noop']), {}, LIMITS);
          expect(await a.call('noop', {})).to.deep.include({ result: 1 });
          await a.close();
          const v = await r.openSession(victim, {}, LIMITS);
          expect(await v.call('kinds', {})).to.deep.include({ result: honest });
          await v.close();
          expect((await r.stats()).interpreters[0]!.n).to.be.greaterThan(n0);
        }
      } finally {
        await r.close();
      }
    });

    it("replaces the interpreter after a session that set an attribute on datetime.date or datetime.datetime (the sandbox's classes, shared by every session); subclassing and copying dates does not", async () => {
      const r = single();
      try {
        const today = python('import datetime\nclass Env:\n    def __init__(self, c=None):\n        self.n = 0\n    def today(self):\n        return [str(datetime.date.today()), str(datetime.datetime.now()), getattr(datetime.date, "EPOCH", None)]\n', ['today']);
        const TODAY = ['2025-01-01', '2025-01-01 00:00:01', null];
        const benign = python(
          'import copy, dataclasses, datetime, typing\nclass Day(datetime.date):\n    EPOCH = 0\n@dataclasses.dataclass(frozen=True)\nclass BusinessDay(datetime.date):\n    desk: str = "前台"\n'
            + 'class Env:\n    def __init__(self, c=None):\n        self.days = [Day(2025, 1, 2), datetime.date(2025, 1, 3), datetime.datetime(2025, 1, 4, 5, 6)]\n'
            + '        self.hints = [len(typing.get_type_hints(datetime.date)), len(typing.get_type_hints(datetime.datetime)), len(typing.get_type_hints(Day)), getattr(datetime.date, "__annotations__", {}) == {}]\n'
            + '        self.states = [repr(d.__getstate__()) for d in self.days]\n'
            + '    def ping(self):\n        return [str(d) for d in copy.deepcopy(self.days) + [copy.copy(d) for d in self.days] + [d.replace(day=9) for d in self.days]]\n',
          ['ping'],
        );
        await r.started();
        let n = (await r.stats()).interpreters[0]!.n;
        const b = await r.openSession(benign, {}, LIMITS);
        expect((await b.call('ping', {})).result).to.have.length(9);
        await b.finish([pyCheck('dates copied', 'import datetime\ndef check_func(s):\n    return s["days"][1] == datetime.date(2025, 1, 3)')]);
        expect((await r.stats()).interpreters[0]!.n, 'benign').to.equal(n);
        for (const meddle of [
          'datetime.date.today = classmethod(lambda cls: cls(1999, 1, 1))',
          'datetime.datetime.now = classmethod(lambda cls, tz=None: cls(1999, 1, 1))',
          'datetime.date.EPOCH = 1',
          'datetime.datetime.__qualname__ = "clock"',
          'datetime.date.__annotate__ = lambda fmt: {"planted": int}',
          'datetime.datetime.__slotnames__ = ["year"]',
        ]) {
          const a = await r.openSession(python(`import datetime\nclass Env:\n    def __init__(self, c=None):\n        ${meddle}\n    def ping(self):\n        return 1\n`, ['ping']), {}, LIMITS);
          await a.close();
          const now = (await r.stats()).interpreters[0]!.n;
          expect(now, meddle).to.be.greaterThan(n);
          n = now;
          const v = await r.openSession(today, {}, LIMITS);
          expect(await v.call('today', {}), meddle).to.deep.include({ result: TODAY });
          await v.close();
        }
      } finally {
        await r.close();
      }
    });
    it("replaces the interpreter after a session that put its own copier in copy's tables for a standard type (they copy every later session's states); a session that uses copy and registers a copier for its own class does not", async () => {
      const r = single();
      try {
        // A later session's state holds a tuple and a date: both are copied through those tables for its checks.
        const victim = python('import datetime\nclass Env:\n    def __init__(self, c=None):\n        self.pair = ("a", 1)\n        self.day = datetime.date(2025, 3, 4)\n    def ping(self):\n        return 1\n', ['ping']);
        const honest = pyCheck('sees its own values', 'import datetime\ndef check_func(final_state):\n    return final_state["pair"] == ("a", 1) and final_state["day"] == datetime.date(2025, 3, 4) and initial_state["pair"] == ("a", 1)');
        // Benign: copy used, and a copier for a class of its own (it can reach no other session).
        const benign = python('import copy\nclass Mine:\n    pass\nclass Env:\n    def __init__(self, c=None):\n        copy._deepcopy_dispatch[Mine] = lambda x, memo: x\n        self.x = copy.deepcopy({"a": [1, (2, 3)]})\n    def ping(self):\n        return copy.copy([1])\n', ['ping']);
        await r.started();
        const n0 = (await r.stats()).interpreters[0]!.n;
        const b = await r.openSession(benign, {}, LIMITS);
        await b.call('ping', {});
        await b.finish([]);
        const v0 = await r.openSession(victim, {}, LIMITS);
        expect((await v0.finish([honest])).checks!.results.map(c => c.passed)).to.deep.equal([true]);
        expect((await r.stats()).interpreters[0]!.n).to.equal(n0);
        const attackers = [
          'import copy\nclass Env:\n    def __init__(self, c=None):\n        copy._deepcopy_dispatch[tuple] = lambda x, memo: ("evil",)\n    def ping(self):\n        return 1\n',
          'import copy, datetime\nclass Env:\n    def __init__(self, c=None):\n        copy.dispatch_table[datetime.date] = lambda d: (datetime.date, (1999, 1, 1))\n    def ping(self):\n        return 1\n',
          'import copy\nclass Env:\n    def __init__(self, c=None):\n        del copy._deepcopy_dispatch[list]\n    def ping(self):\n        return 1\n',
        ];
        let n = n0;
        for (const source of attackers) {
          const a = await r.openSession(python(source, ['ping']), {}, LIMITS);
          await a.close();
          const v = await r.openSession(victim, {}, LIMITS);
          expect((await v.finish([honest])).checks!.results.map(c => c.passed), source).to.deep.equal([true]);
          const now = (await r.stats()).interpreters[0]!.n;
          expect(now, source).to.be.greaterThan(n);
          n = now;
        }
      } finally {
        await r.close();
      }
    });

    it('lets a constructor, a tool and a check_func define dataclasses with string or postponed annotations at call time; no module is left in sys.modules (the interpreter is kept)', async () => {
      const r = single();
      try {
        const bystander = await r.openSession(python(PING, ['ping']), {}, LIMITS);
        const n0 = (await r.stats()).interpreters[0]!.n;
        const env = python(
          'from __future__ import annotations\nimport dataclasses\n'
            + 'class Env:\n    def __init__(self, c=None):\n        @dataclasses.dataclass\n        class Seat:\n            row: int\n            label: str = "A"\n'
            + '        self.seat = dataclasses.asdict(Seat(3))\n'
            + '    def book(self, guest=""):\n        @dataclasses.dataclass(order=True)\n        class Booking:\n            guest: str\n            nights: "int" = 1\n'
            + '        return dataclasses.asdict(max(Booking(guest), Booking("Zoë", 2)))\n',
          ['book'],
        );
        const s = await r.openSession(env, {}, LIMITS);
        expect(await s.snapshot()).to.deep.equal({ seat: { row: 3, label: 'A' } });
        expect(await s.call('book', { guest: '李雷' })).to.deep.include({ result: { guest: '李雷', nights: 1 } });
        const end = await s.finish([
          pyCheck('call-time dataclass', 'import dataclasses\ndef check_func(final_state):\n    @dataclasses.dataclass\n    class Want:\n        row: "int"\n    return Want(final_state["seat"]["row"]) == Want(3)'),
        ]);
        expect(end.checks!.results.map(c => [c.item, c.passed, c.errorCode ?? null])).to.deep.equal([['call-time dataclass', true, null]]);
        // A module left in sys.modules would be found by the tamper check as the session ends: the interpreter kept.
        expect(await bystander.call('ping', {})).to.deep.include({ result: 1 });
        expect((await r.stats()).interpreters[0]!.n).to.equal(n0);
      } finally {
        await r.close();
      }
    });
    it('lets environments and checks use dataclasses (string annotations, __future__ annotations), enums, named tuples and the standard library\'s lazily bound helpers without the interpreter being taken for tampered (its co-tenants live on)', async () => {
      const r = single();
      try {
        const bystander = await r.openSession(python(PING, ['ping']), {}, LIMITS);
        expect(await bystander.call('ping', {})).to.deep.include({ result: 1 });
        const n0 = (await r.stats()).interpreters[0]!.n;
        // What model-written code does: postponed annotations, a dataclass referring to itself by name, a Counter's top
        // entries, statistics.mode, a string seed, typing's Pattern, ast.unparse.
        const lazy = 'import ast, collections, random, statistics, typing\n' +
          'def lazy_helpers():\n' +
          '    top = collections.Counter("abracadabra").most_common(2)\n' +
          '    rng = random.Random("user-42")\n' +
          '    return [top[0][0], statistics.mode([1, 2, 2]), rng.random() < 1, typing.Pattern is not None, ast.unparse(ast.parse("a+b")), ast.get_source_segment("a+b", ast.parse("a+b").body[0])]\n';
        const env = python(
          'from __future__ import annotations\nimport dataclasses\nfrom typing import Optional\n' + lazy +
            '@dataclasses.dataclass\nclass Node:\n    value: int\n    next: Optional[Node] = None\n' +
            'class Env:\n    def __init__(self, c=None):\n        self.n = 0\n        self.head = Node(1, Node(2))\n        self.helpers = lazy_helpers()\n    def ping(self):\n        self.n += 1\n        return lazy_helpers()\n',
          ['ping'],
        );
        const s = await r.openSession(env, {}, LIMITS);
        expect(await s.call('ping', {})).to.deep.include({ result: ['a', 2, true, true, 'a + b', 'a+b'] });
        const end = await s.finish([
          pyCheck('dataclass', 'import dataclasses\n@dataclasses.dataclass(frozen=True)\nclass Want:\n    n: int\n    tags: tuple = ()\ndef check_func(final_state):\n    return Want(final_state["n"]) == Want(1) and dataclasses.replace(Want(2), n=1) == Want(1)'),
          pyCheck('postponed annotations', 'from __future__ import annotations\nimport dataclasses\n@dataclasses.dataclass\nclass Link:\n    to: Link | None = None\ndef check_func(final_state):\n    return Link(Link()).to.to is None and final_state["head"].next.value == 2'),
          pyCheck('enum and named tuple', 'import enum, collections, typing\nclass Color(enum.Enum):\n    RED = 1\nPair = collections.namedtuple("Pair", "a b")\nclass Typed(typing.NamedTuple):\n    x: int\ndef check_func(final_state):\n    return Color(1) is Color.RED and Pair(1, 2).b == 2 and Typed(final_state["n"]).x == 1'),
          pyCheck('lazy helpers', lazy + 'def check_func(final_state):\n    return lazy_helpers() == final_state["helpers"]'),
        ]);
        expect(end.stateError).to.equal(null);
        expect(end.checks!.results.map(c => [c.item, c.passed, c.errorCode ?? null])).to.deep.equal([
          ['dataclass', true, null],
          ['postponed annotations', true, null],
          ['enum and named tuple', true, null],
          ['lazy helpers', true, null],
        ]);
        expect(await bystander.call('ping', {})).to.deep.include({ result: 2 });
        expect((await r.stats()).interpreters[0]!.n).to.equal(n0);
        // A state whose own copy hook fails on a copy of a copy: each check fails, the interpreter is kept.
        const fragile = await r.openSession(
          python('import dataclasses\n@dataclasses.dataclass\nclass Box:\n    v: int\n    def __getstate__(self):\n        state = dict(self.__dict__)\n        del state["_index"]\n        return state\n    def __post_init__(self):\n        self._index = {}\nclass Env:\n    def __init__(self, c=None):\n        self.box = Box(1)\n    def ping(self):\n        return 1\n', ['ping']),
          {},
          LIMITS,
        );
        const broken = await fragile.finish([pyCheck('any', 'def check_func(final_state):\n    return True')]);
        expect(broken.checks!.results.map(c => c.errorCode)).to.deep.equal(['CHECK_THREW']);
        expect(await bystander.call('ping', {})).to.deep.include({ result: 3 });
        expect((await r.stats()).interpreters[0]!.n).to.equal(n0);
      } finally {
        await r.close();
      }
    });

    it("replaces the interpreter after a session that rebound sys.modules or sys.meta_path to objects of its own; the harness never writes later sessions' modules into them", async () => {
      const r = single();
      try {
        // sys reached through an allowed module; the dict subclass sees every module put in or taken out of it.
        const spies = [
          'import logging\nsm = logging.sys\nclass Spy(dict):\n    def __setitem__(self, k, v):\n        if isinstance(k, str) and k.startswith("envfleet_env_"):\n            v.__dict__["len"] = lambda x: 99\n        dict.__setitem__(self, k, v)\n    def __delitem__(self, k):\n        v = dict.get(self, k)\n        if k == "envfleet_check" and v is not None:\n            v.__dict__["check_func"] = lambda s: True\n        dict.__delitem__(self, k)\n    def pop(self, k, *d):\n        v = dict.get(self, k)\n        if k == "envfleet_check" and v is not None:\n            v.__dict__["check_func"] = lambda s: True\n        return dict.pop(self, k, *d)\nsm.modules = Spy(sm.modules)\nclass Env:\n    def __init__(self, c=None):\n        pass\n    def ping(self):\n        return 1\n',
          'import logging\nsm = logging.sys\nsm.meta_path = list(sm.meta_path)\nclass Env:\n    def __init__(self, c=None):\n        pass\n    def ping(self):\n        return 1\n',
        ];
        const victim = python('class Env:\n    def __init__(self, c=None):\n        self.items = [1, 2, 3]\n    def count(self):\n        return len(self.items)\n', ['count']);
        let n = (await r.stats()).interpreters[0]!.n;
        for (const source of spies) {
          const a = await r.openSession(python(source, ['ping']), {}, LIMITS);
          await a.close();
          const v = await r.openSession(victim, {}, LIMITS);
          expect(await v.call('count', {}), source).to.deep.include({ result: 3 });
          const end = await v.finish([pyCheck('never', 'def check_func(final_state):\n    return False')]);
          expect(end.checks!.results.map(c => c.passed), source).to.deep.equal([false]);
          const now = (await r.stats()).interpreters[0]!.n;
          expect(now, source).to.be.greaterThan(n);
          n = now;
        }
      } finally {
        await r.close();
      }
    });

    it('replaces the interpreter after a session that rebound sys.modules to a dict whose iteration never ends (its tamper check runs to its deadline); a session after it runs on a fresh one', async () => {
      const r = single();
      try {
        const endless = python('import logging\nsm = logging.sys\nclass Endless(dict):\n    def __iter__(self):\n        while True:\n            pass\nsm.modules = Endless(sm.modules)\nclass Env:\n    def __init__(self, c=None):\n        pass\n    def ping(self):\n        return 1\n', ['ping']);
        const victim = python('class Env:\n    def __init__(self, c=None):\n        self.items = [1, 2, 3]\n    def count(self):\n        return len(self.items)\n', ['count']);
        const before = (await r.stats()).interpreters[0]!.n;
        const a = await r.openSession(endless, {}, LIMITS);
        expect(await a.call('ping', {})).to.deep.include({ result: 1 });
        await a.close();
        const v = await r.openSession(victim, {}, LIMITS);
        expect((await r.stats()).interpreters[0]!.n).to.be.greaterThan(before);
        expect(await v.call('count', {})).to.deep.include({ result: 3 });
        await v.close();
      } finally {
        await r.close();
      }
    });

    it("fails a check that leaves the interpreter where its tamper check cannot get through (sys.modules rebound to a dict whose iteration swallows the interrupt): the interpreter is replaced for it, its co-tenant is lost with it, and it does not pass", async () => {
      // Before, the tamper check, a job for no session, took the interpreter down as no one's cause: the check's own
      // session was marked lost with it as a co-tenant (an episode then waits and runs again, no attempt used), and the
      // check's answer (true) stood.
      const r = single();
      try {
        const env = python('class Env:\n    def __init__(self, c=None):\n        self.n = 1\n', []);
        const plant = pyCheck('plante — 植える', 'import logging\n\nclass Endless(dict):\n    def __iter__(self):\n        while True:\n            try:\n                while True:\n                    pass\n            except BaseException:\n                pass\n\ndef check_func(s):\n    logging.sys.modules = Endless(logging.sys.modules)\n    return s["n"] == 1\n');
        const after = pyCheck('after', 'def check_func(s):\n    return s["n"] == 1\n');
        const bystander = await r.openSession(python('class Env:\n    def __init__(self, c=None):\n        self.k = 0\n    def ping(self):\n        self.k += 1\n        return self.k\n', ['ping']), {}, LIMITS);
        const s = await r.openSession(env, {}, LIMITS);
        const end = await s.finish([plant, after]);
        expect(end.checks!.results[0]).to.deep.include({ item: 'plante — 植える', passed: false, errorCode: 'CHECK_THREW' });
        expect(end.checks!.results[0]).to.not.have.property('lostWith');
        expect(end.checks!.results[1]).to.deep.include({ item: 'after', passed: false, errorCode: 'ENV_DISPOSED' });
        expect(end.checks!.results[1]).to.not.have.property('lostWith');
        expect(end.checks!.reward).to.equal(0);
        expect(await bystander.call('ping', {})).to.deep.include({ runtimeError: 'ENV_DISPOSED', lostWith: 'interpreter' });
        const fresh = await r.openSession(env, {}, LIMITS);
        expect((await fresh.finish([after])).checks).to.deep.include({ reward: 1 });
      } finally {
        await r.close();
      }
    });

    it('keeps compiled sources out of Python reach: a session that plants code for another source in every dict of the harness does not change that environment', async () => {
      const r = single({});
      try {
        const victim = python("class Victim:\n    def __init__(self, config=None):\n        self.balance = 100\n    def hello(self):\n        return 'honest'\n", ['hello'], 'Victim');
        // The AST check denies names, not values: built-up attribute names reach the harness globals (documented).
        const attack = python(
          `import time\nclass Attacker:\n    def __init__(self, config=None):\n        self.x = 1\n    def go(self):\n        g = getattr(time.time, '__glo' + 'bals__')\n        c = getattr(g['_builtins'], 'comp' + 'ile')\n        code = c("class Victim:\\n    def __init__(self, config=None):\\n        self.balance = 0\\n    def hello(self):\\n        return 'pwned'\\n", 'x', 'exec')\n        key = ('Victim', ${JSON.stringify(victim.source)})\n        n = 0\n        for d in [g] + [v for v in g.values() if type(v) is dict]:\n            d[key] = code\n            d[key[1]] = code\n            n += 1\n        return n\n`,
          ['go'],
          'Attacker',
        );
        const before = await r.openSession(victim, {}, LIMITS);
        expect(await before.call('hello', {})).to.deep.include({ result: 'honest' });
        await before.close();
        const a = await r.openSession(attack, {}, LIMITS);
        const planted = await a.call('go', {});
        expect(planted.result).to.be.a('number').and.greaterThan(1);
        await a.close();
        // The planted dicts break the harness's own bookkeeping: the next use of the interpreter fails
        // (ENV_DISPOSED) and it is replaced. What must never happen is the victim running the planted code.
        const n0 = (await r.stats()).interpreters[0]!.n;
        let v = await r.openSession(victim, {}, LIMITS).catch((err: unknown) => err as Error);
        if (v instanceof Error) {
          expect(v.message).to.match(/harness failed/);
          v = await r.openSession(victim, {}, LIMITS);
          expect((await r.stats()).interpreters[0]!.n).to.be.greaterThan(n0);
        }
        expect(await v.call('hello', {})).to.deep.include({ result: 'honest' });
        expect(await v.snapshot()).to.deep.equal({ balance: 100 });
        await v.close();
      } finally {
        await r.close();
      }
    });

    it('frees what closed sessions left in cycles (a class-level memo): 60 sessions of about 16 MB each, one after another beside a live co-tenant, fit a 192 MB interpreter under its recycle threshold, and the co-tenant goes on', async () => {
      // Careless, not hostile: a cache on the class (4,000 strings of 1,006 characters, 4 bytes each: they hold an
      // emoji). Until 2026-12-05 nothing collected a closed session's cycles (the collector runs on container
      // allocations, not bytes): the heap grew by each session's memo and the 11th call met MEMORY_EXCEEDED (with
      // 4 MB memos, the 40th session's start failed the interpreter fatally, ending the co-tenant).
      const r = single();
      try {
        const memo = python('class Env:\n    _memo = {}\n    def __init__(self, config):\n        self.n = 0\n    def work(self):\n        for i in range(4000):\n            self._memo[i] = "x" * 1000 + "é😀" + str(i)\n        return len(self._memo)\n', ['work']);
        const bystander = await r.openSession(python(PING, ['ping']), {}, LIMITS);
        for (let i = 1; i <= 60; i++) {
          const s = await r.openSession(memo, {}, LIMITS);
          expect(await s.call('work', {}), `session ${i}`).to.deep.include({ result: 4000 });
          await s.close();
          expect(await bystander.call('ping', {}), `session ${i}`).to.deep.include({ result: i });
        }
        await expectKeptUnderThreshold(r);
        await bystander.close();
      } finally {
        await r.close();
      }
    });

    it("lets typing's caches go of closed sessions' modules: 60 sessions whose module holds 4 MB of data and a typing alias of their own class fit a 192 MB interpreter beside a live co-tenant", async () => {
      // typing's lru caches (128 entries each) are keyed by the arguments, here the session's own dataclass, whose
      // methods hold the module's globals: until 2026-12-05 up to 128 closed sessions' module data stayed, and every
      // session from about the 40th on failed to start with MEMORY_EXCEEDED.
      const r = single();
      try {
        const source = 'from dataclasses import dataclass\nfrom typing import Dict, List, Optional\n\n@dataclass\nclass Product:\n    sku: str\n    price: float\n\n'
          + 'CATALOG = ["article n° %d — 商品 " % i + "x" * 1000 for i in range(4000)]\nCart = List[Optional[Product]]\nIndex = Dict[str, Product]\n\n'
          + 'class Env:\n    def __init__(self, config):\n        self.cart = []\n    def count(self):\n        return len(CATALOG)\n';
        const shop = python(source, ['count']);
        const bystander = await r.openSession(python(PING, ['ping']), {}, LIMITS);
        for (let i = 1; i <= 60; i++) {
          const s = await r.openSession(shop, {}, LIMITS);
          expect(await s.call('count', {}), `session ${i}`).to.deep.include({ result: 4000 });
          await s.close();
        }
        expect(await bystander.call('ping', {})).to.deep.include({ result: 1 });
        await expectKeptUnderThreshold(r);
        await bystander.close();
      } finally {
        await r.close();
      }
    });

    it('counts files in the in-memory filesystem toward the recycle threshold and empties /tmp when the last session of the interpreter ends', async () => {
      const r = single({ recycleHeapMb: 120 });
      try {
        const code = python('class Env:\n    def __init__(self, c=None):\n        pass\n    def write(self, text):\n        with open("/tmp/db.txt", "w") as f:\n            f.write(text)\n        return True\n    def read(self):\n        try:\n            with open("/tmp/db.txt") as f:\n                return f.read()\n        except FileNotFoundError:\n            return None\n    def fill(self, mb):\n        with open("/tmp/blob", "wb") as f:\n            f.write(b"a" * (mb << 20))\n        return True\n', ['write', 'read', 'fill']);
        const a = await r.openSession(code, {}, LIMITS);
        const c = await r.openSession(code, {}, LIMITS);
        expect(await a.call('write', { text: 'rollout A' })).to.deep.include({ result: true });
        await a.close();
        // Shared with the co-tenant while it lives (documented).
        expect(await c.call('read', {})).to.deep.include({ result: 'rollout A' });
        await c.close();
        // Writing 100 MB takes a few hundred ms, seconds on a loaded machine: a deadline that cannot be what this tests.
        const d = await r.openSession(code, {}, { ...LIMITS, callDeadlineMs: 60_000 });
        expect(await d.call('read', {})).to.deep.include({ result: null });
        const n0 = (await r.stats()).interpreters[0]!.n;
        expect(await d.call('fill', { mb: 100 })).to.deep.include({ result: true });
        // The filesystem is measured at most every 250 ms (and at every session end).
        await new Promise(resolve => setTimeout(resolve, 300));
        await d.call('read', {});
        const st = (await r.stats()).interpreters[0]!;
        expect(st.fsBytes).to.be.at.least(100 << 20);
        expect(st.retiring).to.equal(true);
        await d.close();
        const e = await r.openSession(code, {}, LIMITS);
        expect(await e.call('read', {})).to.deep.include({ result: null });
        expect((await r.stats()).interpreters[0]!.n).to.be.greaterThan(n0);
      } finally {
        await r.close();
      }
    });

    it("empties /tmp of an interpreter marked for recycling before the next session it is given (the only one: every interpreter is retiring), and recycles it once that session ends", async () => {
      const r = single({ recycleHeapMb: 120 });
      try {
        const code = python('class Env:\n    def __init__(self, c=None):\n        pass\n    def write(self, text):\n        with open("/tmp/notes — 笔记 😀.txt", "w", encoding="utf-8") as f:\n            f.write(text)\n        return True\n    def read(self):\n        try:\n            with open("/tmp/notes — 笔记 😀.txt", encoding="utf-8") as f:\n                return f.read()\n        except FileNotFoundError:\n            return None\n    def fill(self, mb):\n        with open("/tmp/blob", "wb") as f:\n            f.write(b"a" * (mb << 20))\n        return True\n', ['write', 'read', 'fill']);
        const a = await r.openSession(code, {}, { ...LIMITS, callDeadlineMs: 60_000 });
        expect(await a.call('write', { text: 'épisode A — 第一 😀' })).to.deep.include({ result: true });
        expect(await a.call('fill', { mb: 100 })).to.deep.include({ result: true });
        // The filesystem is measured at most every 250 ms (and at every session end).
        await new Promise(resolve => setTimeout(resolve, 300));
        await a.call('read', {});
        const before = (await r.stats()).interpreters[0]!;
        expect(before.retiring).to.equal(true);
        // The next episode is opened as soon as the last one ends: the retiring interpreter, still alive, is given it.
        const closing = a.close();
        const b = await r.openSession(code, {}, LIMITS);
        await closing;
        expect((await r.stats()).interpreters[0]!.n).to.equal(before.n);
        expect(await b.call('read', {})).to.deep.include({ result: null });
        await b.close();
        const c = await r.openSession(code, {}, LIMITS);
        expect((await r.stats()).interpreters[0]!.n).to.be.greaterThan(before.n);
        expect(await c.call('read', {})).to.deep.include({ result: null });
        await c.close();
      } finally {
        await r.close();
      }
    });

    it('drops what environments print without a newline (a progress line: \\r and end=""): the child process does not keep it, and the interpreter and its co-tenant go on', async () => {
      const r = single();
      try {
        const code = python('class Env:\n    def __init__(self, c=None):\n        self.rows = 0\n    def progress(self, n):\n        for i in range(n):\n            self.rows += 1\n            print(f"\\rimporté {i + 1}/{n} lignes — 行 😀", end="")\n        return self.rows\n', ['progress']);
        const limits = { ...LIMITS, callDeadlineMs: 60_000 };
        const bystander = await r.openSession(code, {}, limits);
        const s = await r.openSession(code, {}, limits);
        expect(await s.call('progress', { n: 1000 })).to.deep.include({ result: 1000 });
        const before = (await r.stats()).rssBytes;
        // ≈ 3 MB printed per call, 30 MB in all, and not one newline.
        for (let i = 1; i <= 10; i += 1) expect(await s.call('progress', { n: 70_000 })).to.deep.include({ result: 1000 + i * 70_000 });
        const grown = (await r.stats()).rssBytes - before;
        // Pyodide's batched writer kept every byte as an element of a JavaScript array (8 bytes each): 240 MB and more.
        expect(grown).to.be.below(100 << 20);
        expect(await bystander.call('progress', { n: 3 })).to.deep.include({ result: 3 });
        await s.close();
        await bystander.close();
      } finally {
        await r.close();
      }
    });

    // Careless, not hostile: an exception class whose __str__ returns its (integer) code. str(e) raised
    // TypeError inside the harness's own error handling, which was taken for tampering: the interpreter was
    // replaced and every co-tenant session (and the rest of a finish's checks) ended ENV_DISPOSED.
    const BAD_STR = 'class ApiError(Exception):\n    def __init__(self, code):\n        self.code = code\n    def __str__(self):\n        return self.code\n';
    it('describes an exception whose __str__ fails (in a tool, a constructor, a check) without losing the interpreter or its other sessions', async () => {
      const r = single();
      try {
        const code = python(BAD_STR + PING + '    def fail(self):\n        raise ApiError(404)\n', ['ping', 'fail']);
        const bystander = await r.openSession(code, {}, LIMITS);
        expect(await bystander.call('ping', {})).to.deep.include({ result: 1 });
        const s = await r.openSession(code, {}, LIMITS);
        expect(await s.call('fail', {})).to.deep.include({ runtimeError: 'TOOL_THREW', result: { success: false, error: 'ApiError (its message could not be read: its __str__ failed)' } });
        expect(await s.call('ping', {})).to.deep.include({ result: 1 });
        const ctor = python(BAD_STR + 'class Env:\n    def __init__(self, c=None):\n        raise ApiError(500)\n', []);
        const err = await rejection(r.openSession(ctor, {}, LIMITS));
        expect(err).to.have.property('code', 'CONSTRUCTOR_FAILED');
        expect((err as Error).message).to.equal('constructing Env failed: ApiError (its message could not be read: its __str__ failed)');
        // A constructor past its deadline says it was the creation, and which deadline (it said "the call", with no value).
        const spinning = python('class Env:\n    def __init__(self, c=None):\n        while True:\n            pass\n', []);
        const late = await rejection(r.openSession(spinning, {}, { ...LIMITS, createDeadlineMs: 300 }));
        expect(late).to.have.property('code', 'DEADLINE_EXCEEDED');
        expect((late as Error).message).to.equal('creating the environment (its source and constructor) ran past its deadline and was interrupted (its deadline is 300 ms: ENVFLEET_SANDBOX_CREATE_DEADLINE_MS)');
        const end = await s.finish([
          pyCheck('bad str', BAD_STR + 'def check_func(final_state):\n    raise ApiError(1)\n'),
          pyCheck('after', 'def check_func(final_state):\n    return final_state["n"] == 1\n'),
        ]);
        expect(end.checks?.results.map(c => [c.passed, c.errorCode ?? null, c.error ?? null])).to.deep.equal([
          [false, 'CHECK_THREW', 'ApiError (its message could not be read: its __str__ failed)'],
          [true, null, null],
        ]);
        expect(await bystander.call('ping', {})).to.deep.include({ result: 2 });
        expect((await r.stats()).interpreters.map(i => i.n)).to.deep.equal([1]);
        await bystander.close();
      } finally {
        await r.close();
      }
    });

    it('says, for an import outside the allow-list, whether a package could supply it: not for a standard module (the package setting refuses those)', async () => {
      const r = single();
      try {
        const sqlite = await rejection(r.openSession(python('import json\nimport sqlite3\nclass Env:\n    pass\n', []), {}, LIMITS));
        expect(sqlite).to.have.property('code', 'SOURCE_LOAD_FAILED');
        expect((sqlite as Error).message).to.match(/^the environment source, line 2: import of "sqlite3" is not allowed in the sandbox; allowed modules: __future__, .*, zoneinfo; "sqlite3" is a standard module the sandbox does not offer \(ENVFLEET_PYTHON_PACKAGES cannot supply a standard module either\): write the code with the allowed modules$/);
        const check = await r.checks({ finalState: {}, initialState: {}, checks: [pyCheck('xml', 'from xml.etree import ElementTree\ndef check_func(s):\n    return True')], limits: LIMITS });
        expect(check.results[0]).to.include({ passed: false, errorCode: 'CHECK_INVALID' });
        expect(check.results[0]!.error).to.match(/^the check, line 1: import of "xml.etree" .*"xml" is a standard module the sandbox does not offer/);
        const requests = await rejection(r.openSession(python('import requests\nclass Env:\n    pass\n', []), {}, LIMITS));
        expect((requests as Error).message).to.match(/import of "requests" is not allowed in the sandbox; allowed modules: .* \(a pure-Python package can be supplied with ENVFLEET_PYTHON_PACKAGES\)$/);
        const js = await rejection(r.openSession(python('import js\nclass Env:\n    pass\n', []), {}, LIMITS));
        expect((js as Error).message).to.match(/import of "js" is not allowed in the sandbox; .*; "js" is blocked in the sandbox: write the code without it$/);
      } finally {
        await r.close();
      }
    });

    it('runs an optional import the way CPython without the module does: inside a try that catches ImportError, or under if TYPE_CHECKING, the import raises ModuleNotFoundError and its handler runs; unguarded, or of a blocked module, it is refused as before', async () => {
      const r = single();
      try {
        const src = [
          'from typing import TYPE_CHECKING',
          'try:',
          '    import numpy as np',
          'except ImportError:',
          '    np = None',
          'try:',
          '    from os import path as _p',
          'except (ModuleNotFoundError, AttributeError) as e:',
          '    _p = None',
          '    _why = str(e)',
          'try:',
          '    import sqlite3',
          'except:',
          '    sqlite3 = "absent"',
          'if TYPE_CHECKING:',
          '    from xml.etree import ElementTree',
          // The names before the one it lacks are bound, as in CPython: json and r, not yaml.
          'try:',
          '    import json, re as r, yaml, math',
          'except ImportError:',
          '    yaml = None',
          'class Env:',
          '    def __init__(self, c=None):',
          '        self.note = "réservé 😀 " + _why',
          '    def which(self):',
          '        return [np is None, _p is None, sqlite3, json.dumps({"k": "東京"}), r.sub("a", "b", "aa"), yaml, "math" in globals()]',
          '',
        ].join('\n');
        const s = await r.openSession(python(src, ['which']), {}, LIMITS);
        expect(await s.call('which', {})).to.deep.include({ result: [true, true, 'absent', '{"k": "\\u6771\\u4eac"}', 'bb', null, false] });
        expect(await s.snapshot()).to.deep.equal({ note: "réservé 😀 No module named 'os' (the sandbox does not offer it)" });
        await s.close();
        const check = await r.checks({
          finalState: {}, initialState: {}, limits: LIMITS,
          checks: [pyCheck('optional', 'try:\n    import pandas\nexcept Exception:\n    pandas = None\ndef check_func(s):\n    return pandas is None\n')],
        });
        expect(check.results[0]).to.include({ passed: true });
        // A handler that does not catch a failed import, an import in a handler, and a blocked module are refused when the source loads.
        for (const [code, line, name] of [
          ['try:\n    import sqlite3\nexcept ValueError:\n    pass\nclass Env:\n    pass\n', 2, 'sqlite3'],
          ['try:\n    import json\nexcept ImportError:\n    import sqlite3\nclass Env:\n    pass\n', 4, 'sqlite3'],
          ['try:\n    import js\nexcept ImportError:\n    js = None\nclass Env:\n    pass\n', 2, 'js'],
        ] as const) {
          const err = await rejection(r.openSession(python(code, []), {}, LIMITS));
          expect(err, code).to.have.property('code', 'SOURCE_LOAD_FAILED');
          expect((err as Error).message, code).to.match(new RegExp(`^the environment source, line ${line}: import of "${name}" is not allowed in the sandbox`));
        }
        // An import in a function or class inside the try runs later, unguarded: refused when the source loads.
        const later = await rejection(r.openSession(python('try:\n    def f():\n        import os\nexcept ImportError:\n    pass\nclass Env:\n    pass\n', []), {}, LIMITS));
        expect((later as Error).message).to.match(/^the environment source, line 3: import of "os" is not allowed in the sandbox/);
        // A guarded import over several lines: every later line keeps its number.
        const multi = await rejection(r.openSession(python('try:\n    from numpy import (\n        array,\n        zeros,\n    )\nexcept ImportError:\n    array = None\nx = eval("1")\nclass Env:\n    pass\n', []), {}, LIMITS));
        expect((multi as Error).message).to.equal('the environment source, line 8: "eval" is not allowed in the sandbox');
        // The import never runs, whatever the guard turns out to be: TYPE_CHECKING made true, or a handler that raises again.
        for (const code of [
          'TYPE_CHECKING = True\nif TYPE_CHECKING:\n    import os\nclass Env:\n    def __init__(self, c=None):\n        self.cwd = os.getcwd()\n',
          'try:\n    import os\nexcept ImportError:\n    raise\nclass Env:\n    def __init__(self, c=None):\n        self.cwd = os.getcwd()\n',
        ]) {
          const err = await rejection(r.openSession(python(code, []), {}, LIMITS));
          expect(err, code).to.have.property('code', 'SOURCE_LOAD_FAILED');
          expect((err as Error).message, code).to.match(/ModuleNotFoundError: No module named 'os' \(the sandbox does not offer it\)/);
        }
        // Another session that changed ast's classes (a visitor's method, a node class's fields: class attributes, which
        // the tamper check does not see) changes nothing in how a later source is checked (a reviewer's probe had the
        // next session's guarded import of os run, and a check of another run pass).
        const tamper = await r.openSession(python('import ast\nclass Env:\n    def patch(self):\n        ast.NodeTransformer.generic_visit = lambda self, node: node\n        ast.NodeVisitor.visit = lambda self, node: node\n        ast.Try._fields = ()\n        ast.Import._fields = ()\n        return True\n', ['patch']), {}, LIMITS);
        expect(await tamper.call('patch', {})).to.deep.include({ result: true });
        const victim = await r.openSession(python('try:\n    import os\nexcept ImportError:\n    os = None\nclass Env:\n    def which(self):\n        return os is None\n', ['which']), {}, LIMITS);
        expect(await victim.call('which', {})).to.deep.include({ result: true });
        const unguarded = await rejection(r.openSession(python('try:\n    import json\nfinally:\n    import sqlite3\nclass Env:\n    pass\n', []), {}, LIMITS));
        expect((unguarded as Error).message).to.match(/^the environment source, line 4: import of "sqlite3" is not allowed/);
        const checked = await r.checks({ finalState: {}, initialState: {}, limits: LIMITS, checks: [pyCheck('victim', 'try:\n    import numpy\nexcept ImportError:\n    numpy = None\ndef check_func(s):\n    return False\n')] });
        expect(checked.results[0]).to.include({ passed: false });
        await victim.close();
        await tamper.close();
      } finally {
        await r.close();
      }
    });

    it('holds the result cap for a tool\'s error too: an exception whose message holds the whole database is RESULT_TOO_LARGE, not megabytes in the transcript', async () => {
      const r = single();
      try {
        const code = python('class Env:\n    def __init__(self, c=None):\n        self.db = {"k%d" % i: "réservé 😀 %d" % i for i in range(2000)}\n    def find(self, key="x"):\n        if key not in self.db:\n            raise KeyError("no %s in %r" % (key, self.db))\n        return self.db[key]\n', ['find']);
        const s = await r.openSession(code, {}, { ...LIMITS, maxResultBytes: 4096 });
        expect(await s.call('find', {})).to.deep.include({ runtimeError: 'RESULT_TOO_LARGE' });
        const { result } = await s.call('find', {});
        const error = (result as { error: string }).error;
        expect(Buffer.byteLength(error)).to.be.below(4096);
        expect(error).to.match(/^the error \(TOOL_THREW\) is \d+ bytes, more than the result cap of 4096 \(ENVFLEET_SANDBOX_MAX_RESULT_KB\); it began: KeyError: "no x in \{'k0': 'réservé 😀 0'/);
        // The session goes on, as after a result over the cap.
        expect(await s.call('find', { key: 'k7' })).to.deep.include({ result: 'réservé 😀 7' });
        await s.close();
      } finally {
        await r.close();
      }
    });
  });

  describe('user-supplied packages (ENVFLEET_PYTHON_PACKAGES)', () => {
    let dir: string;
    let r: PythonSandboxRunner;
    const write = (rel: string, text: string) => {
      mkdirSync(join(dir, rel, '..'), { recursive: true });
      writeFileSync(join(dir, rel), text);
    };
    // A package with module-level state in two modules (one imported lazily, at call time), and a single-module package.
    const COUNTER_INIT = 'from .store import Store\nLEVEL = 1\ndef set_level(n):\n    global LEVEL\n    LEVEL = n\ndef get_level():\n    from . import store\n    return [LEVEL, store.CALLS]\n';
    const COUNTER_STORE = 'CALLS = 0\nclass Store:\n    def hit(self):\n        global CALLS\n        CALLS += 1\n        return CALLS\n';
    // The package's own code is not AST-checked, but the import blocker holds for it too.
    const PROBE = "def try_imports():\n    out = {}\n    for n in ['js', 'pyodide_js', 'pyodide.ffi', 'pyodide.code', '_pyodide_core', 'micropip', 'socket', 'subprocess']:\n        try:\n            __import__(n)\n            out[n] = 'imported'\n        except ImportError:\n            out[n] = 'ImportError'\n    return out\n";
    const USER = python('import counter_pkg\nclass Env:\n    def __init__(self, c=None):\n        self.seen = counter_pkg.get_level()\n    def raise_level(self):\n        counter_pkg.set_level(7)\n        return counter_pkg.Store().hit()\n    def level(self):\n        return counter_pkg.get_level()\n', ['raise_level', 'level']);
    // Another environment on the same interpreter, importing a submodule directly.
    const OTHER = python('from counter_pkg import store\nimport probe_mod\nclass Other:\n    def __init__(self, c=None):\n        self.x = 0\n    def calls(self):\n        return store.CALLS\n    def probe(self):\n        return probe_mod.try_imports()\n', ['calls', 'probe'], 'Other');

    before(async () => {
      dir = join(mkdtempSync(join(tmpdir(), 'envfleet-py-packages-')), 'модули-数据-é');
      write('counter_pkg/__init__.py', COUNTER_INIT);
      write('counter_pkg/store.py', COUNTER_STORE);
      write('counter_pkg/__pycache__/store.cpython-311.pyc', 'not python');
      write('probe_mod.py', PROBE);
      write('js_pkg/__init__.py', 'import js\n');
      const packages = loadConfig({ ENVFLEET_PYTHON_PACKAGES: [join(dir, 'counter_pkg'), join(dir, 'probe_mod.py'), join(dir, 'js_pkg')].join(delimiter) }).python.packages;
      r = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: HEAP_MB, packages, logger: pino({ level: 'silent' }) });
      const info = await r.started();
      expect(info.packagesMs).to.have.length(1);
    });
    after(async () => {
      await r?.close();
      if (dir) rmSync(join(dir, '..'), { recursive: true, force: true });
    });

    it('gives each session its own copy of a package: state set by one session is not seen by another, nor by another environment in the same interpreter', async () => {
      const a = await r.openSession(USER, {}, LIMITS);
      const b = await r.openSession(USER, {}, LIMITS);
      const o = await r.openSession(OTHER, {}, LIMITS);
      expect((await r.stats()).interpreters).to.have.length(1);
      expect(await a.call('raise_level', {})).to.deep.include({ result: 1 });
      expect(await a.call('raise_level', {})).to.deep.include({ result: 2 });
      expect(await a.call('level', {})).to.deep.include({ result: [7, 2] });
      // b and the other environment run between a's calls, on the same interpreter: their copies are untouched.
      expect(await b.call('level', {})).to.deep.include({ result: [1, 0] });
      expect(await o.call('calls', {})).to.deep.include({ result: 0 });
      expect(await a.call('level', {})).to.deep.include({ result: [7, 2] });
      expect(await b.call('raise_level', {})).to.deep.include({ result: 1 });
      expect(await a.call('level', {})).to.deep.include({ result: [7, 2] });
      expect(await o.call('calls', {})).to.deep.include({ result: 0 });
      // A session opened after all that starts from the package as written.
      const c = await r.openSession(USER, {}, LIMITS);
      expect(await c.snapshot()).to.deep.equal({ seen: [1, 0] });
      expect(await c.call('level', {})).to.deep.include({ result: [1, 0] });
      // The checks of a session see its own copy; checks outside a session a fresh one. Ending these replaces no interpreter.
      const n0 = (await r.stats()).interpreters[0]!.n;
      const levelCheck = (want: number) => pyCheck(`level ${want}`, `import counter_pkg\ndef check_func(s):\n    return counter_pkg.get_level()[0] == ${want}`);
      const end = await a.finish([levelCheck(7), levelCheck(1)]);
      expect(end.checks!.results.map(x => x.passed)).to.deep.equal([true, false]);
      const outside = await r.checks({ finalState: {}, initialState: {}, checks: [levelCheck(1)], limits: LIMITS });
      expect(outside.results.map(x => x.passed)).to.deep.equal([true]);
      for (const s of [b, o, c]) await s.close();
      expect((await r.stats()).interpreters[0]!.n).to.equal(n0);
    });

    it('blocks js, pyodide_js, pyodide.ffi and the rest for the package\'s own code too', async () => {
      const o = await r.openSession(OTHER, {}, LIMITS);
      const { result } = await o.call('probe', {});
      expect(result).to.deep.equal({ js: 'ImportError', pyodide_js: 'ImportError', 'pyodide.ffi': 'ImportError', 'pyodide.code': 'ImportError', _pyodide_core: 'ImportError', micropip: 'ImportError', socket: 'ImportError', subprocess: 'ImportError' });
      await o.close();
      const err = await rejection(r.openSession(python('import js_pkg\nclass Env:\n    pass\n', []), {}, LIMITS));
      expect(err).to.have.property('code', 'SOURCE_LOAD_FAILED');
      expect((err as Error).message).to.match(/ImportError: import of "js" is not allowed in the sandbox/);
    });

    it('still refuses environment and check imports outside the allow-list and the supplied packages, naming both', async () => {
      for (const src of ['import os\nimport counter_pkg\n', 'from counter_pkg.store import Store\nimport subprocess\n', 'import counter_pkgs\n']) {
        const err = await rejection(r.openSession(python(`${src}class Env:\n    pass\n`, []), {}, LIMITS));
        expect(err, src).to.have.property('code', 'SOURCE_LOAD_FAILED');
        expect((err as Error).message, src).to.match(/is not allowed in the sandbox; allowed modules: .*; supplied packages: counter_pkg, js_pkg, probe_mod/);
      }
      const bad = await r.checks({ finalState: {}, initialState: {}, checks: [pyCheck('os', 'import os\ndef check_func(s):\n    return True')], limits: LIMITS });
      expect(bad.results[0]).to.include({ passed: false, errorCode: 'CHECK_INVALID' });
      // A submodule the package does not have is a ModuleNotFoundError, not a file of the in-memory filesystem.
      const missing = await rejection(r.openSession(python('import counter_pkg.nothing\nclass Env:\n    pass\n', []), {}, LIMITS));
      expect((missing as Error).message).to.match(/ModuleNotFoundError: No module named 'counter_pkg\.nothing'/);
    });

    it('replaces the interpreter when a session patches the package loader, so no later session runs the patch', async () => {
      const patch = python("import time\nclass Env:\n    def __init__(self, c=None):\n        self.x = 0\n    def patch(self):\n        g = getattr(time.time, '__glo' + 'bals__')\n        real = g['_PackageLoader'].exec_module\n        def evil(loader, module):\n            real(loader, module)\n            module.LEVEL = 666\n        g['_PackageLoader'].exec_module = evil\n        return 'patched'\n", ['patch']);
      const n0 = (await r.stats()).interpreters[0]!.n;
      const p = await r.openSession(patch, {}, LIMITS);
      expect(await p.call('patch', {})).to.deep.include({ result: 'patched' });
      await p.close();
      const next = await r.openSession(USER, {}, LIMITS);
      expect(await next.call('level', {})).to.deep.include({ result: [1, 0] });
      expect((await r.stats()).interpreters[0]!.n).to.be.greaterThan(n0);
      await next.close();
    });

    it('replaces the interpreter when a package module is put into sys.modules by other means than an import (it would outlive its session)', async () => {
      const plant = python("import time, counter_pkg\nclass Env:\n    def __init__(self, c=None):\n        self.x = 0\n    def plant(self):\n        g = getattr(time.time, '__glo' + 'bals__')\n        g['_sys'].modules['counter_pkg.planted'] = counter_pkg\n        return 'planted'\n", ['plant']);
      const n0 = (await r.stats()).interpreters[0]!.n;
      const p = await r.openSession(plant, {}, LIMITS);
      expect(await p.call('plant', {})).to.deep.include({ result: 'planted' });
      await p.close();
      const next = await r.openSession(USER, {}, LIMITS);
      expect(await next.call('level', {})).to.deep.include({ result: [1, 0] });
      expect((await r.stats()).interpreters[0]!.n).to.be.greaterThan(n0);
      await next.close();
    });

    it('writes the package files read-only into the in-memory filesystem (for __file__ and tracebacks); what runs is the compiled table', async () => {
      // The files are there for tracebacks and __file__ only.
      const rewrite = python("import counter_pkg, time\nclass Env:\n    def __init__(self, c=None):\n        self.f = counter_pkg.__file__\n    def plain_write(self):\n        try:\n            with open(self.f, 'w') as fh:\n                fh.write('LEVEL = 666\\n')\n            return 'written'\n        except OSError as e:\n            return type(e).__name__\n    def forced_write(self):\n        g = getattr(time.time, '__glo' + 'bals__')\n        g['_os'].chmod(self.f, 0o644)\n        with open(self.f, 'w') as fh:\n            fh.write('LEVEL = 666\\n')\n        with open(self.f) as fh:\n            return fh.read()\n", ['plain_write', 'forced_write']);
      const w = await r.openSession(rewrite, {}, LIMITS);
      expect(await w.snapshot()).to.deep.equal({ f: '/envfleet/packages/counter_pkg/__init__.py' });
      // The copy is read-only (mode 0444); code that reaches os through the harness's globals (built-up names) can
      // still make it writable and rewrite it.
      expect(await w.call('plain_write', {})).to.deep.include({ result: 'PermissionError' });
      expect(await w.call('forced_write', {})).to.deep.include({ result: 'LEVEL = 666\n' });
      await w.close();
      const next = await r.openSession(USER, {}, LIMITS);
      expect(await next.call('level', {})).to.deep.include({ result: [1, 0] });
      await next.close();
    });
  });

  describe('the memory snapshot cache', () => {
    let dir: string;
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'envfleet-pyodide-snapshot-'));
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('builds the snapshot on first use into an empty cache folder; the next start restores from it and behaves the same', async () => {
      const first = createPythonSandboxRunner({ snapshotDir: join(dir, 'cache'), interpreters: 1, heapMb: HEAP_MB, logger: pino({ level: 'silent' }) });
      const a = await first.started();
      const files = readdirSync(join(dir, 'cache'));
      expect(a).to.include({ builtSnapshot: true, fromSnapshot: true });
      expect(files).to.have.length(1);
      expect(files[0]).to.match(/^pyodide-314\.\d+\.\d+-[0-9a-f]{16}\.snapshot$/);
      expect(statSync(join(dir, 'cache', files[0]!)).size).to.be.greaterThan(10 << 20);
      const s1 = await first.openSession(HELP_DESK, SEEDED_STATE, LIMITS);
      await s1.call('open_ticket', { title: 'same' });
      const state1 = await s1.snapshot();
      await first.close();
      const second = createPythonSandboxRunner({ snapshotDir: join(dir, 'cache'), interpreters: 1, heapMb: HEAP_MB, logger: pino({ level: 'silent' }) });
      try {
        expect(await second.started()).to.include({ builtSnapshot: false, fromSnapshot: true });
        const s2 = await second.openSession(HELP_DESK, SEEDED_STATE, LIMITS);
        await s2.call('open_ticket', { title: 'same' });
        expect(await s2.snapshot()).to.deep.equal(state1);
      } finally {
        await second.close();
      }
    });

    it('replaces a damaged cached snapshot (truncated, garbage, valid trailer but unloadable) instead of failing every start', async () => {
      const source = (await runner.started()).snapshotFile!;
      const name = source.split('/').at(-1)!;
      const full = readFileSync(source);
      const body = full.subarray(0, full.byteLength - 48);
      // A file whose trailer is right but whose snapshot Pyodide cannot load.
      const junk = Buffer.alloc(1 << 20, 7);
      const trailer = Buffer.alloc(48);
      trailer.write('EFSNAP01', 0, 'latin1');
      trailer.writeBigUInt64LE(BigInt(junk.byteLength), 8);
      createHash('sha256').update(junk).digest().copy(trailer, 16);
      const damaged: Record<string, Buffer> = { truncate: full.subarray(0, full.byteLength >> 1), garbage: Buffer.alloc(1000, 7), untrailed: body, unloadable: Buffer.concat([junk, trailer]) };
      for (const [mode, bytes] of Object.entries(damaged)) {
        const cache = join(dir, mode);
        mkdirSync(cache, { recursive: true });
        writeFileSync(join(cache, name), bytes);
        for (let i = 0; i < 2; i++) {
          const r = createPythonSandboxRunner({ snapshotDir: cache, interpreters: 1, heapMb: HEAP_MB, logger: pino({ level: 'silent' }) });
          try {
            expect(await r.started(), `${mode} ${i}`).to.include({ builtSnapshot: i === 0, fromSnapshot: true });
            const s = await r.openSession(HELP_DESK, SEEDED_STATE, LIMITS);
            expect(await s.call('echo', { text: mode }), mode).to.deep.include({ result: { success: true, data: { text: mode, length: mode.length } } });
          } finally {
            await r.close();
          }
        }
        const replaced = readFileSync(join(cache, name));
        expect(replaced.byteLength, mode).to.be.greaterThan(10 << 20);
        expect(replaced.subarray(-48, -40).toString('latin1'), mode).to.equal('EFSNAP01');
      }
    });
  });

  describe('the harness in a Pyodide interpreter of this process', () => {
    type PyNamespace = { get(name: string): (...a: unknown[]) => unknown; set(name: string, v: unknown): void };
    type Pyodide = { globals: { get(name: string): () => PyNamespace }; runPython(code: string, o: object): unknown };
    const harness = async () => {
      const pyodideDir = dirname(createRequire(import.meta.url).resolve('pyodide'));
      const { loadPyodide } = (await import(pathToFileURL(join(pyodideDir, 'pyodide.mjs')).href)) as { loadPyodide: (o: object) => Promise<Pyodide> };
      const py = await loadPyodide({ indexURL: `${pyodideDir}/`, stdout: () => undefined, stderr: () => undefined });
      const ns = py.globals.get('dict')();
      ns.set('_PACKAGE_NAMES_JSON', '[]');
      py.runPython(HARNESS_PY, { globals: ns });
      return { py, ns };
    };
    it('hands a long answer that is not ASCII over as its UTF-8 bytes (Pyodide copies such a str one character at a time), any other as a str; answerText reads both', async () => {
      const { ns } = await harness();
      const source = 'class Text:\n    def __init__(self, c=None):\n        self.lines = []\n    def fill(self, n=0, text=""):\n        self.lines = [text] * n\n        return n\n';
      const code = ns.get('compile_env')('Text', source);
      expect(String(ns.get('create')('t1', 'Text', code, '{}', '["fill"]', '2a', undefined, String(LIMITS.maxStateBytes)))).to.equal('{"ok":12,"values":3}');
      const read = (text: string, n: number) => {
        expect(String(ns.get('call')('t1', 'fill', JSON.stringify({ n, text }), String(LIMITS.maxResultBytes)))).to.equal(`{"ok":${n}}`);
        const raw = ns.get('state')('t1', String(LIMITS.maxStateBytes));
        const kind = typeof raw === 'string' ? 'str' : (raw as { type: string }).type;
        expect(JSON.parse(answerText(raw))).to.deep.equal({ ok: { lines: Array.from({ length: n }, () => text) } });
        return kind;
      };
      const line = '导入记录 😀 ヘッダー '.repeat(16); // 192 characters
      expect(read(line, 3000), 'long, not ASCII').to.equal('bytes');
      expect(read(line, 10), 'short').to.equal('str');
      expect(read('ascii '.repeat(32), 3000), 'long ASCII (Pyodide decodes it at once)').to.equal('str');
      expect(read(`${line}\ud800`, 3000), 'long, with a lone surrogate (written as its JSON escape, so UTF-8 holds it)').to.equal('bytes');
    });
    it("writes a dict subclass through its own items() whether or not another dict of the value mixes key kinds, and leaves a value with no mixed keys as it was (the fallback's copy is only of what changes)", async () => {
      const { py, ns } = await harness();
      const out = py.runPython(
        'class View(dict):\n    def items(self):\n        return [("visible — 可见 😀", 1)]\n' +
          'v = View(hidden=0)\nshared = {"k": [1, 2]}\nbig = {"a": v, "s": shared, "t": (shared, {"n": 1.0})}\n' +
          'canonical(big) + "|" + canonical({"a": v, "m": {1: "x", "b": "y"}}) + "|" + str(_json_keyed(big) is big)',
        { globals: ns },
      );
      expect(out).to.equal('{"a":{"visible — 可见 😀":1},"s":{"k":[1,2]},"t":[{"k":[1,2]},{"n":1.0}]}|{"a":{"visible — 可见 😀":1},"m":{"1":"x","b":"y"}}|True');
    });

    it("loads a session's module state whole after a limit landed while it was going in; the session that had it in keeps its own", async () => {
      const { py, ns } = await harness();
      const source = 'import decimal\nclass Env:\n    def __init__(self, c=None):\n        self.n = 0\n    def prec(self, p=0):\n        if p:\n            decimal.getcontext().prec = p\n        return decimal.getcontext().prec\n';
      const code = ns.get('compile_env')('Env', source);
      const cap = String(LIMITS.maxStateBytes);
      for (const [sid, seed] of [['a', '2a'], ['b', '2b']]) expect(String(ns.get('create')(sid, 'Env', code, '{}', '["prec"]', seed, undefined, cap))).to.equal('{"ok":7,"values":2}');
      const prec = (sid: string, p = 0) => String(ns.get('call')(sid, 'prec', JSON.stringify({ p }), cap));
      expect(prec('a', 3)).to.equal('{"ok":3}');
      expect(prec('b')).to.equal('{"ok":28}');
      expect(prec('a')).to.equal('{"ok":3}');
      // The interrupt at a deadline, as it would land in the middle of loading b's module state (after its decimal
      // context went in, before its csv settings): csv.field_size_limit's second call (the first saves a's) raises
      // KeyboardInterrupt.
      py.runPython('_limit = _csv.field_size_limit\n_calls = []\ndef _once(*a):\n    _calls.append(a)\n    if len(_calls) == 2:\n        _csv.field_size_limit = _limit\n        raise KeyboardInterrupt\n    return _limit(*a)\n_csv.field_size_limit = _once\n', { globals: ns });
      expect(() => prec('b')).to.throw(/KeyboardInterrupt/);
      expect(String(ns.get('recover')())).to.equal('{"ok":true}');
      expect(prec('a'), "a, after b's state was half loaded").to.equal('{"ok":3}');
      expect(prec('b')).to.equal('{"ok":28}');
      expect(prec('a')).to.equal('{"ok":3}');
    });
    it("frees a check's copies of the states when the check ends, in its session (not later, by the cycle collector, in another's)", async () => {
      const { py, ns } = await harness();
      const source = 'import dataclasses, decimal\n@dataclasses.dataclass\nclass Mark:\n    tag: str = "m"\n    def __del__(self):\n        decimal.getcontext().prec = 3\n'
        + 'class Env:\n    def __init__(self, c=None):\n        self.mark = Mark()\n    def prec(self):\n        return decimal.getcontext().prec\n';
      const code = ns.get('compile_env')('Env', source);
      const cap = String(LIMITS.maxStateBytes);
      expect(String(ns.get('create')('a', 'Env', code, '{}', '["prec"]', '2a', undefined, cap))).to.match(/^\{"ok":/);
      expect(String(ns.get('create')('b', 'Env', code, '{}', '["prec"]', '2b', undefined, cap))).to.match(/^\{"ok":/);
      expect(String(ns.get('finish')('a', cap))).to.match(/^\{"ok":/);
      expect(String(ns.get('check')('a', 'def check_func(s):\n    return s["mark"].tag == "m" and initial_state["mark"].tag == "m"'))).to.equal('{"ok":true}');
      expect(String(ns.get('call')('b', 'prec', '{}', cap))).to.equal('{"ok":28}');
      py.runPython('import gc\ngc.collect()\n', { globals: ns });
      expect(String(ns.get('call')('b', 'prec', '{}', cap)), "b's decimal context after a collection").to.equal('{"ok":28}');
    });
    it('still reports what a session tampered with when a limit lands in its drop', async () => {
      const { ns } = await harness();
      const source = 'import csv\nclass Env:\n    def __init__(self, c=None):\n        self.n = 0\n    def meddle(self):\n        limit = csv.field_size_limit\n        calls = []\n'
        + '        def spy(*a):\n            calls.append(a)\n            if len(calls) == 3:\n                raise KeyboardInterrupt\n            return limit(*a)\n        csv.field_size_limit = spy\n        return True\n    def ping(self):\n        return 1\n';
      const code = ns.get('compile_env')('Env', source);
      const cap = String(LIMITS.maxStateBytes);
      for (const [sid, seed] of [['a', '2a'], ['b', '2b']]) expect(String(ns.get('create')(sid, 'Env', code, '{}', '["meddle","ping"]', seed, undefined, cap))).to.match(/^\{"ok":/);
      expect(String(ns.get('call')('a', 'meddle', '{}', cap))).to.equal('{"ok":true}');
      // B's call saves A's module state and loads B's (the spy's first two calls); closed without finish, A's drop
      // enters A, and saving B's module state calls the spy a third time: it raises, as the deadline's interrupt would.
      expect(String(ns.get('call')('b', 'ping', '{}', cap))).to.equal('{"ok":1}');
      const report = JSON.parse(String(ns.get('drop')('a'))) as { ok: string[] };
      expect(report.ok.join(' ')).to.match(/csv\.field_size_limit/);
    });
  });
});
