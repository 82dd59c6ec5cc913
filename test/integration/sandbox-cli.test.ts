import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';

const run = promisify(execFile);
const REF = 'fixtures/reference';

async function envfleet(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['bin/envfleet.js', ...args], { maxBuffer: 64 << 20, env: { ...process.env, ...env } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('envfleet sandbox (command line)', function () {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'envfleet-cli-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));
  const file = async (name: string, text: string) => {
    const path = join(dir, name);
    await writeFile(path, text);
    return path;
  };

  it('runs calls against a bundle and prints results, runtime errors and the final state', async () => {
    const calls = await file('calls.jsonl', [
      '{"tool": "get_guest", "arguments": {"guest_id": "G0001"}}',
      '',
      '{"tool": "pay_balance", "arguments": {"guest_id": "G0001", "amount": "lots"}}',
      '{"tool": "teleport", "arguments": {}}',
      '{"tool": "mark_room_clean", "arguments": {"room_id": "R101"}}',
    ].join('\n'));
    const { code, stdout } = await envfleet(['sandbox', 'run', `${REF}/hotel-env.bundle.json`, '--state', `${REF}/hotel-state.json`, '--calls', calls]);
    expect(code).to.equal(0);
    const out = JSON.parse(stdout) as { results: { tool: string; arguments: unknown; result: { success: boolean; error?: string }; runtimeError?: string }[]; finalState: { guests: object } };
    expect(out.results.map(r => r.tool)).to.deep.equal(['get_guest', 'pay_balance', 'teleport', 'mark_room_clean']);
    expect(out.results[0]!.result.success).to.equal(true);
    expect(out.results[1]).to.deep.include({ runtimeError: 'INVALID_ARGUMENTS' });
    expect(out.results[1]!.result.error).to.match(/amount/);
    expect(out.results[2]!.runtimeError).to.equal('UNKNOWN_TOOL');
    expect(out.results[3]!.runtimeError).to.equal(undefined);
    expect(out.finalState.guests).to.have.property('G0001');
  });

  it('runs a tool that logs with console.log as if it did not: the call succeeds, and nothing of it reaches stdout or stderr', async () => {
    const bundle = await file('chatty.json', JSON.stringify({
      name: 'chatty', className: 'C',
      source: 'class C { constructor(s) { console.log("constructing", s); this.state = s; } add({ n }) { console.log("adding", n); console.warn("careful 🚧"); console.error(new Error("not really")); console.table([this.state]); this.state.total += n; console.info("total", this.state.total); return { success: true, data: this.state.total }; } }',
      tools: [{ type: 'function', function: { name: 'add', parameters: { type: 'object', properties: { n: { type: 'integer' } } } } }],
    }));
    const state = await file('chatty-state.json', '{"total": 1}');
    const calls = await file('chatty.jsonl', '{"tool":"add","arguments":{"n":2}}\n{"tool":"add","arguments":{"n":3}}\n');
    const { code, stdout, stderr } = await envfleet(['sandbox', 'run', bundle, '--state', state, '--calls', calls]);
    expect(code, stderr).to.equal(0);
    const out = JSON.parse(stdout) as { results: { result: unknown; runtimeError?: string }[]; finalState: unknown };
    expect(out.results.map(r => [r.result, r.runtimeError])).to.deep.equal([[{ success: true, data: 3 }, undefined], [{ success: true, data: 6 }, undefined]]);
    expect(out.finalState).to.deep.equal({ total: 6 });
    expect(stdout + stderr).not.to.match(/adding|careful|not really|constructing|total 6/);
  });

  it('applies --deadline-ms and --memory-mb', async () => {
    const bundle = await file('spin.json', JSON.stringify({
      name: 'spin', className: 'S', source: 'class S { constructor(s) { this.state = s; } spin() { for (;;) {} } bomb() { const a = []; for (;;) a.push("x".repeat(65536) + a.length); } ok() { return { success: true }; } }',
      tools: ['spin', 'bomb', 'ok'].map(name => ({ type: 'function', function: { name, parameters: { type: 'object' } } })),
    }));
    const state = await file('state.json', '{}');
    const calls = await file('spin.jsonl', '{"tool":"spin","arguments":{}}\n{"tool":"ok","arguments":{}}\n');
    const { code, stdout } = await envfleet(['sandbox', 'run', bundle, '--state', state, '--calls', calls, '--deadline-ms', '100']);
    expect(code).to.equal(0);
    const out = JSON.parse(stdout) as { results: { runtimeError?: string; result: { error?: string } }[]; finalState: unknown; finalStateError?: { code: string; message: string } };
    expect(out.results.map(r => r.runtimeError)).to.deep.equal(['DEADLINE_EXCEEDED', 'ENV_DISPOSED']);
    // The call after it did not run: it says which limit ended the environment, and where it came from
    expect(out.results[1]!.result.error).to.match(/^the environment was thrown away after an earlier call hit a limit \(DEADLINE_EXCEEDED: interrupted at its deadline of 100 ms/);
    expect(out.finalStateError?.code).to.equal('ENV_DISPOSED');
    expect(out.finalStateError?.message).to.match(/\(DEADLINE_EXCEEDED: /);
    const bomb = await file('bomb.jsonl', '{"tool":"bomb"}\n');
    const mem = JSON.parse((await envfleet(['sandbox', 'run', bundle, '--state', state, '--calls', bomb, '--memory-mb', '32', '--deadline-ms', '20000'])).stdout) as { results: { runtimeError?: string }[] };
    expect(mem.results[0]!.runtimeError).to.equal('MEMORY_EXCEEDED');
  });

  it('stops a call stuck in a built-in past its deadline (the watchdog), keeps the calls before it, and fails a check stuck the same way', async () => {
    // indexOf over a million elements makes no interrupt checks while it runs: 20,000 of them take minutes here, and
    // before the command's thread was watched they ran to the end and printed success.
    const bundle = await file('scan.json', JSON.stringify({
      name: 'scan', className: 'S',
      source: 'class S { constructor(s) { this.state = s; } add() { this.state.n += 1; return { success: true, data: this.state.n }; } scan({ n }) { const a = new Array(1e6).fill(0); let x = 0; for (let i = 0; i < n; i++) x += a.indexOf(1); return { success: true, data: x }; } }',
      tools: ['add', 'scan'].map(name => ({ type: 'function', function: { name, parameters: { type: 'object' } } })),
    }));
    const state = await file('scan-state.json', '{"n": 0, "name": "Zoë 李 🌸"}');
    const calls = await file('scan.jsonl', '{"tool":"add","arguments":{}}\n{"tool":"scan","arguments":{"n":20000}}\n{"tool":"add","arguments":{}}\n');
    const { code, stdout, stderr } = await envfleet(['sandbox', 'run', bundle, '--state', state, '--calls', calls, '--deadline-ms', '300']);
    expect(code, stderr).to.equal(0);
    const out = JSON.parse(stdout) as { results: { result: { success: boolean; data?: unknown; error?: string }; runtimeError?: string }[]; finalState: unknown; finalStateError?: { code: string } };
    expect(out.results.map(r => r.runtimeError)).to.deep.equal([undefined, 'DEADLINE_EXCEEDED', 'ENV_DISPOSED']);
    expect(out.results[0]!.result).to.deep.equal({ success: true, data: 1 });
    expect(out.results[1]!.result.error).to.include('past its deadline of 300 ms, and did not stop');
    // The call after it did not run: said so, not as if it had run that long too.
    expect(out.results[2]!.result.error).to.match(/^the environment was thrown away after an earlier call hit a limit \(DEADLINE_EXCEEDED: the environment's code ran \d+ ms/);
    expect(out.finalStateError?.code).to.equal('ENV_DISPOSED');
    const checks = await file('scan-checks.json', JSON.stringify([
      { item: 'scans', check: 'function check(f) { const a = new Array(1e6).fill(0); let x = 0; for (let i = 0; i < 20000; i++) x += a.indexOf(1); return x < 0; }' },
    ]));
    const checked = await envfleet(['sandbox', 'check', checks, '--initial', state, '--final', state, '--deadline-ms', '300']);
    expect(checked.code, checked.stderr).to.equal(0);
    expect(JSON.parse(checked.stdout)).to.deep.include({ reward: 0, solved: false, results: [{ item: 'scans', passed: false, errorCode: 'DEADLINE_EXCEEDED', error: (JSON.parse(checked.stdout) as { results: { error: string }[] }).results[0]!.error }] });
    expect((JSON.parse(checked.stdout) as { results: { error: string }[] }).results[0]!.error).to.include('did not stop');
  });

  it('refuses a call whose arguments nest thousands of levels deep as that call\'s INVALID_ARGUMENTS, and goes on (it crashed the command with RangeError)', async () => {
    const bundle = await file('echo.json', JSON.stringify({
      name: 'echo', className: 'E',
      source: 'class E { constructor(s) { this.state = s; } echo({ v }) { this.state.n += 1; return { success: true, data: JSON.stringify(v).length }; } }',
      tools: [{ type: 'function', function: { name: 'echo', parameters: { type: 'object' } } }],
    }));
    const state = await file('echo-state.json', '{"n": 0}');
    const deep = (levels: number) => `${'['.repeat(levels)}"é 東京 🌸"${']'.repeat(levels)}`;
    const calls = await file('echo.jsonl', [`{"tool":"echo","arguments":{"v":${deep(6_000)}}}`, `{"tool":"echo","arguments":{"v":${deep(998)}}}`, '{"tool":"echo","arguments":{"v":"ok"}}'].join('\n'));
    const { code, stdout, stderr } = await envfleet(['sandbox', 'run', bundle, '--state', state, '--calls', calls]);
    expect(code, stderr).to.equal(0);
    const out = JSON.parse(stdout) as { results: { result: { success: boolean; data?: unknown; error?: string }; runtimeError?: string }[]; finalState: unknown };
    expect(out.results.map(r => r.runtimeError)).to.deep.equal(['INVALID_ARGUMENTS', undefined, undefined]);
    expect(out.results[0]!.result.error).to.equal('the arguments of echo nest arrays and objects more than 1000 levels deep: give them flatter');
    expect(out.finalState).to.deep.equal({ n: 2 });
  });

  it('applies ENVFLEET_SANDBOX_ENV_MEMORY_MB as --memory-mb does, and the documented 64 MiB when nothing is set', async () => {
    const bundle = await file('alloc.json', JSON.stringify({
      name: 'alloc', className: 'A', source: 'class A { constructor(s) { this.state = s; } allocate({ mb, piece }) { const a = []; for (let i = 0; i < mb; i += piece) a.push("y".repeat(piece << 20) + i); return { success: true, data: a.length }; } }',
      tools: [{ type: 'function', function: { name: 'allocate', parameters: { type: 'object' } } }],
    }));
    const state = await file('alloc-state.json', '{}');
    const results = async (calls: string, env: Record<string, string>) =>
      (JSON.parse((await envfleet(['sandbox', 'run', bundle, '--state', state, '--calls', await file('alloc.jsonl', calls)], env)).stdout) as { results: { result: unknown; runtimeError?: string }[] }).results;
    const sixteen = await results('{"tool":"allocate","arguments":{"mb":128,"piece":1}}\n', { ENVFLEET_SANDBOX_ENV_MEMORY_MB: '16' });
    expect(sixteen[0]!.runtimeError).to.equal('MEMORY_EXCEEDED');
    const unset = await results('{"tool":"allocate","arguments":{"mb":32,"piece":32}}\n{"tool":"allocate","arguments":{"mb":256,"piece":256}}\n', {});
    expect(unset.map(r => r.runtimeError)).to.deep.equal([undefined, 'MEMORY_EXCEEDED']);
  });

  it('names the file, line and problem of a malformed input, and exits 1', async () => {
    const calls = await file('bad.jsonl', '{"tool": "get_guest", "arguments": {}}\n{"tool": "get_guest", "arguments": {}\n');
    const bad = await envfleet(['sandbox', 'run', `${REF}/hotel-env.bundle.json`, '--state', `${REF}/hotel-state.json`, '--calls', calls]);
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.include(`${calls} line 2: not valid JSON`);

    const bundle = await file('bundle.json', '{\n  "name": "x",\n  "className": "X",\n  "source": "class X {}",\n  "tools": [}\n');
    const badBundle = await envfleet(['sandbox', 'run', bundle, '--state', `${REF}/hotel-state.json`, '--calls', calls]);
    expect(badBundle.code).to.equal(1);
    expect(badBundle.stderr).to.match(new RegExp(`${bundle.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: not valid JSON at line 5, column \\d+`));

    const noClass = await file('noclass.json', JSON.stringify({ name: 'x', source: 'class X {}', tools: [] }));
    const missing = await envfleet(['sandbox', 'run', noClass, '--state', `${REF}/hotel-state.json`, '--calls', calls]);
    expect(missing.stderr).to.match(/noclass\.json: className: /);

    const absent = await envfleet(['sandbox', 'run', join(dir, 'nope.json'), '--state', `${REF}/hotel-state.json`, '--calls', calls]);
    expect(absent.stderr).to.match(/nope\.json: cannot read the file \(ENOENT\)/);
  });

  it('runs check functions and prints results, reward and solved', async () => {
    const checks = await file('checks.json', JSON.stringify([
      { item: 'G0001 exists', check: 'function check(f) { return !!f.guests.G0001; }' },
      { item: 'grew', check: 'function check(f, i) { return Object.keys(f.reservations).length > Object.keys(i.reservations).length; }' },
      { item: 'throws', check: 'function check(f) { return f.nothing.here; }' },
    ]));
    const { code, stdout } = await envfleet(['sandbox', 'check', checks, '--initial', `${REF}/hotel-state.json`, '--final', `${REF}/hotel-state.json`]);
    expect(code).to.equal(0);
    const out = JSON.parse(stdout) as { results: { item: string; passed: boolean; error?: string; errorCode?: string }[]; reward: number; solved: boolean };
    expect(out.results.map(r => r.passed)).to.deep.equal([true, false, false]);
    expect(out.results[2]).to.deep.include({ errorCode: 'CHECK_THREW' });
    expect(out.reward).to.be.closeTo(1 / 3, 1e-9);
    expect(out.solved).to.equal(false);
  });

  it('says what is wrong with a checks file that is not an array of {item, check}', async () => {
    const checks = await file('checks-bad.json', JSON.stringify([{ item: 'x' }]));
    const out = await envfleet(['sandbox', 'check', checks, '--initial', `${REF}/hotel-state.json`, '--final', `${REF}/hotel-state.json`]);
    expect(out.code).to.equal(1);
    expect(out.stderr).to.match(/checks-bad\.json: 0\.check: /);
  });

  it('gives Python checks the final state as its file writes it (1.0 a float, 2 an int), and the initial state as a rollout does', async () => {
    const checks = await file('float-checks.json', JSON.stringify([
      { item: 'balance is a float', language: 'python', check: 'def check_func(f):\n    return isinstance(f["balance"], float) and f["balance"] == 1.0 and isinstance(f["n"], int)' },
      // The final state's 1.0: a parse and re-serialization would give 1 (an int), so the first check tells the file's text was
      // passed on. The initial state goes through JSON as a scenario's does in a rollout (its 2.0 arrives as 2).
      { item: 'initial state as in a rollout', language: 'python', check: 'def check_func(f):\n    return initial_state["rate"] == 2 and initial_state["city"] == "Zürich 東京"' },
      { item: 'JS sees the numbers', check: 'function check(f, i) { return f.balance === 1 && i.rate === 2 && f.name === "Zoë 李 🌸"; }' },
    ]));
    const initial = await file('float-initial.json', '{\n  "rate": 2.0,\n  "city": "Zürich 東京"\n}\n');
    const final = await file('float-final.json', '{"balance": 1.0, "n": 2, "name": "Zoë 李 🌸"}');
    const out = await envfleet(['sandbox', 'check', checks, '--initial', initial, '--final', final]);
    expect(out.code, out.stderr).to.equal(0);
    const result = JSON.parse(out.stdout) as { results: { item: string; passed: boolean; error?: string }[]; reward: number };
    expect(result.results.map(r => [r.item, r.passed, r.error])).to.deep.equal([
      ['balance is a float', true, undefined],
      ['initial state as in a rollout', true, undefined],
      ['JS sees the numbers', true, undefined],
    ]);
    const broken = await file('float-broken.json', '{"balance": 1.0,');
    const bad = await envfleet(['sandbox', 'check', checks, '--initial', initial, '--final', broken]);
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.match(/float-broken\.json: not valid JSON/);
  });

  it('runs a Python bundle on the state file and the calls as written (5.0 a float, an integer past 2^53 exact), and prints what Python wrote', async () => {
    const source = [
      'class Till:',
      '    def deposit(self, amount, note):',
      '        self.balance += amount',
      '        self.notes.append(note)',
      '        return {"success": True, "balance": self.balance, "kinds": [type(self.balance).__name__, type(amount).__name__], "big": self.big + 1}',
    ].join('\n');
    const tool = { type: 'function', function: { name: 'deposit', parameters: { type: 'object', properties: { amount: { type: 'number' }, note: { type: 'string' } }, required: ['amount', 'note'] } } };
    const bundle = await file('till.json', JSON.stringify({ name: 'till', className: 'Till', source, tools: [tool], language: 'python' }));
    const state = await file('till-state.json', '{\n  "balance": 5.0,\n  "big": 12345678901234567891,\n  "notes": []\n}\n');
    const calls = await file('till-calls.jsonl', '{"tool": "deposit", "arguments": {"amount": 2.0, "note": "café ☕ 咖啡"}}\n');
    const out = await envfleet(['sandbox', 'run', bundle, '--state', state, '--calls', calls]);
    expect(out.code, out.stderr).to.equal(0);
    // Read as text: a parse would turn 7.0 into 7 and round the big integers.
    expect(out.stdout).to.include('"arguments":{"amount": 2.0, "note": "café ☕ 咖啡"}');
    expect(out.stdout).to.include('"result":{"balance":7.0,"big":12345678901234567892,"kinds":["float","float"],"success":true}');
    expect(out.stdout).to.match(/"finalState":\{"balance":7\.0,"big":12345678901234567891,"notes":\["café ☕ 咖啡"\]\}/);
    // The runtime's info lines (the interpreter's start) are not the command's output: nothing on stderr.
    expect(out.stderr).to.equal('');
  });

  it('reads one of its files from standard input ("-"), names it so in errors, refuses two, and bounds --deadline-ms as the setting is bounded', async () => {
    const stdin = async (args: string[], input: string) => {
      const child = spawn(process.execPath, ['bin/envfleet.js', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.stdin.end(input);
      const [code] = (await once(child, 'close')) as [number];
      return { code, stdout, stderr };
    };
    const bundle = `${REF}/hotel-env.bundle.json`;
    const state = `${REF}/hotel-state.json`;
    const ok = await stdin(['sandbox', 'run', bundle, '--state', state, '--calls', '-'], '{"tool": "get_guest", "arguments": {"guest_id": "G0001"}}\n');
    expect(ok.code, ok.stderr).to.equal(0);
    expect(ok.stderr).to.equal('');
    expect((JSON.parse(ok.stdout) as { results: { result: { success: boolean } }[] }).results[0]!.result.success).to.equal(true);
    const broken = await stdin(['sandbox', 'run', bundle, '--state', state, '--calls', '-'], '{"tool": "get_guest", "arguments": {}}\nnot JSON — 不是\n');
    expect(broken.code).to.equal(1);
    expect(broken.stderr).to.match(/^envfleet: \[INPUT_FILE_INVALID\] standard input line 2: not valid JSON/);
    const two = await stdin(['sandbox', 'run', bundle, '--state', '-', '--calls', '-'], '{}');
    expect(two.code).to.equal(1);
    expect(two.stderr).to.include('--state and --calls each say "-" (standard input), which can give only one file');
    const calls = await file('one-call.jsonl', '{"tool": "get_guest", "arguments": {"guest_id": "G0001"}}\n');
    const long = await envfleet(['sandbox', 'run', bundle, '--state', state, '--calls', calls, '--deadline-ms', '600001']);
    expect(long.code).to.not.equal(0);
    expect(long.stderr).to.include('expected milliseconds between 1 and 600000');
  });

  it('gives episode checks the episode of --episode (a trajectory or {messages, turn_states}); without it they fail with CHECK_NEEDS_EPISODE', async () => {
    const checks = await file('episode-checks.json', JSON.stringify([
      { item: 'said it', language: 'python', episode: true, check: 'def check_func(f):\n    return any("réservé 予約" in (m.get("content") or "") for m in episode["messages"] if m["role"] == "assistant")' },
      { item: 'two turns', language: 'python', episode: true, check: 'def check_func(f):\n    return [t["n"] for t in episode["turn_states"]] == [1, 2]' },
      { item: 'plain', language: 'python', check: 'def check_func(f):\n    return f["n"] == 2' },
    ]));
    const initial = await file('episode-initial.json', '{"n": 0}');
    const final = await file('episode-final.json', '{"n": 2}');
    const trajectory = await file('trajectory.json', JSON.stringify({ id: 't1', messages: [{ role: 'user', content: 'book' }, { role: 'assistant', content: 'C’est réservé 予約 ✅' }], turnStates: [{ n: 1 }, { n: 2 }] }));
    const given = await envfleet(['sandbox', 'check', checks, '--initial', initial, '--final', final, '--episode', trajectory]);
    expect(given.code, given.stderr).to.equal(0);
    expect((JSON.parse(given.stdout) as { reward: number }).reward).to.equal(1);
    const none = await envfleet(['sandbox', 'check', checks, '--initial', initial, '--final', final]);
    const out = JSON.parse(none.stdout) as { results: { passed: boolean; errorCode?: string }[] };
    expect(out.results.map(r => [r.passed, r.errorCode])).to.deep.equal([[false, 'CHECK_NEEDS_EPISODE'], [false, 'CHECK_NEEDS_EPISODE'], [true, undefined]]);
    const bad = await envfleet(['sandbox', 'check', checks, '--initial', initial, '--final', final, '--episode', initial]);
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.match(/episode-initial\.json: messages: /);
    // The turn states as the file writes them, as a rollout's episode checks saw the sessions' states: 100.0 a float,
    // an integer past 2^53 exact (both forms of the file).
    const exact = await file('episode-exact.json', JSON.stringify([
      { item: 'exact', language: 'python', episode: true, check: 'def check_func(f):\n    t = episode["turn_states"]\n    return type(t[0]["b"]) is float and t[0]["id"] == 2**63 + 7 and t[1] == {"n": 2, "note": "été 夏"}' },
    ]));
    for (const [name, key] of [['exact-trajectory.json', 'turnStates'], ['exact-episode.json', 'turn_states']] as const) {
      const episode = await file(name, `{"messages": [], "${key}": [ {"b": 100.0, "id": 9223372036854775815, "n": 1} ,{"n":2,"note":"été 夏"}]}`);
      const checked = await envfleet(['sandbox', 'check', exact, '--initial', initial, '--final', final, '--episode', episode]);
      expect(checked.code, checked.stderr).to.equal(0);
      expect((JSON.parse(checked.stdout) as { reward: number }).reward, `${key}: ${checked.stdout}`).to.equal(1);
    }
  });
});
