import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { pino } from 'pino';
import WebSocket from 'ws';
import { startEnvServer } from '../../http/env-server/server.js';
import { createSessionRegistry, type ServedScenario } from '../../src/env-server/sessions.js';
import { createLanguageRouter } from '../../src/sandbox/language-router.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../src/sandbox/limits.js';
import { createPythonSandboxRunner } from '../../src/sandbox/python/python-runner.js';
import { createLocalSandboxRunner, type SandboxRunner } from '../../src/sandbox/runner.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import type { EnvironmentRecord } from '../../src/synthesis/types.js';
import { withMcp } from '../helpers/env-server-clients.js';
import { playCalls } from '../helpers/episodes.js';
import { stringifyJson } from '../../src/util/raw-json.js';

// What a Python tool returns is shown to the model as the runtime wrote it: parsed into JavaScript values and written
// again, 2**64 + 1 became 18446744073709552000, 1.0 and -0.0 became 1 and 0, and integer-like keys moved first.
const SOURCE = [
  'class Ledger:',
  '    def __init__(self, config=None):',
  '        self.n = 0',
  '        self.big, self.f = 2**64 + 1, 1.0',
  '    def totals(self):',
  '        self.n += 1',
  '        return {"big": 2**64 + 1, "neg": -2**70, "f": 1.0, "nz": -0.0, "by_id": {"10": "dix", "9": "neuf — 九"}}',
  '    def echo(self, number=None, amount=None, note=""):',
  '        return {"number": number, "amount": amount, "kinds": [type(number).__name__, type(amount).__name__], "note": note}',
  '',
].join('\n');
const WRITTEN = '{"big":18446744073709551617,"by_id":{"10":"dix","9":"neuf — 九"},"f":1.0,"neg":-1180591620717411303424,"nz":-0.0}';
const TOOLS = [
  { type: 'function' as const, function: { name: 'totals', description: 'The totals', parameters: { type: 'object', properties: {} } } },
  { type: 'function' as const, function: { name: 'echo', description: 'Echo', parameters: { type: 'object', properties: { number: {}, amount: {}, note: { type: 'string' } } } } },
];
const ENV = { id: 'env-ledger', description: { summary: 'Grand livre 总账', introduction: 'A ledger 📒.' }, className: 'Ledger', source: SOURCE, language: 'python', tools: TOOLS } as unknown as EnvironmentRecord;
const CHECKLIST = [{ item: 'asked once', check: 'def check_func(final_state):\n    return final_state["n"] == 1\n', language: 'python' as const }];
const SCENARIO = { id: 'sc-ledger', runId: 'r-text', environmentId: ENV.id, index: 0, status: 'ready', initialState: {}, task: 'Les totaux 🧮', checklist: CHECKLIST } as unknown as ScenarioRecord;

describe('a Python tool result reaches the model as the runtime wrote it', function () {
  this.timeout(180_000);
  let sandbox: SandboxRunner;

  before(() => {
    const python = createPythonSandboxRunner({ snapshotDir: join(tmpdir(), 'envfleet', 'pyodide'), interpreters: 1, heapMb: 256, logger: pino({ level: 'silent' }) });
    sandbox = createLanguageRouter({ js: createLocalSandboxRunner(), python });
  });
  after(async () => {
    await sandbox.close();
  });

  it("in an episode's tool message: big integers exact, floats as floats, keys in canonical order", async () => {
    const t = await playCalls(sandbox, SCENARIO, ENV, [{ name: 'totals', arguments: {} }]);
    expect(t.messages.find(m => m.role === 'tool')).to.deep.include({ tool_call_id: 'call_0_0', content: WRITTEN });
    // The trajectory as it is stored (src/rollouts/stages.ts) keeps the step's result as written, too.
    expect(stringifyJson(t)).to.include(`"result":${WRITTEN}`);
    expect(t.reward).to.equal(1);
  });

  it("hands the model's arguments to the tool as Python reads their text (an integer past 2^53 exact, 2.0 a float); a run of digits Python would not read goes as JSON.stringify writes it", async () => {
    const huge = '9'.repeat(5_000);
    const calls = [
      '{"number": 12345678901234567891, "amount": 2.0, "note": "n° 7 — 七 🧾"}',
      `{"number": ${huge}, "amount": -0.0}`,
    ];
    const t = await playCalls(sandbox, SCENARIO, ENV, calls.map(text => ({ name: 'echo', arguments: text })));
    expect(t.messages.filter(m => m.role === 'tool').map(m => m.content)).to.deep.equal([
      '{"amount":2.0,"kinds":["int","float"],"note":"n° 7 — 七 🧾","number":12345678901234567891}',
      '{"amount":0,"kinds":["NoneType","int"],"note":"","number":null}',
    ]);
  });

  it("in envfleet serve's answer to POST /{tool}", async () => {
    const served: ServedScenario = { scenario: SCENARIO, env: ENV, limits: DEFAULT_SANDBOX_LIMITS };
    const registry = createSessionRegistry({ sandbox, scenarios: { scenario: () => Promise.resolve(served) } }, { maxSessions: 2, idleTimeoutMs: 0 });
    const server = await startEnvServer(registry, pino({ level: 'silent' }), { port: 0, host: '127.0.0.1', token: null, runId: 'r-text' });
    try {
      const seeded = await fetch(`${server.url}/seed_session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ scenario_id: SCENARIO.id }) });
      expect(seeded.status).to.equal(200);
      const cookie = seeded.headers.get('set-cookie')!.split(';')[0]!;
      const answer = await fetch(`${server.url}/totals`, { method: 'POST', headers: { 'content-type': 'application/json', cookie }, body: '{}' });
      expect(answer.status).to.equal(200);
      expect(await answer.text()).to.equal(WRITTEN);
      // The arguments as Python reads the body's text: the integer exact, 2.0 a float.
      const echoed = await fetch(`${server.url}/echo`, { method: 'POST', headers: { 'content-type': 'application/json', cookie }, body: '{"number": 12345678901234567891, "amount": 2.0, "note": "n° 7 — 七 🧾"}' });
      expect(await echoed.text()).to.equal('{"amount":2.0,"kinds":["int","float"],"note":"n° 7 — 七 🧾","number":12345678901234567891}');
      // The final state in /verify's answer as Python wrote it too.
      const verified = await fetch(`${server.url}/verify`, { method: 'POST', headers: { 'content-type': 'application/json', cookie }, body: '{"note": "vérifié ✅"}' });
      const text = await verified.text();
      expect(text).to.include('"final_state":{"big":18446744073709551617,"f":1.0,"n":1}');
      expect(JSON.parse(text)).to.deep.include({ reward: 1, note: 'vérifié ✅' });
    } finally {
      await server.close();
      await registry.closeAll();
    }
  });

  it("in the MCP tools/call text (the official client), and the OpenEnv step's text and data, over /ws and JSON-RPC", async () => {
    const served: ServedScenario = { scenario: SCENARIO, env: ENV, limits: DEFAULT_SANDBOX_LIMITS };
    const registry = createSessionRegistry({ sandbox, scenarios: { scenario: () => Promise.resolve(served) } }, { maxSessions: 2, idleTimeoutMs: 0 });
    const server = await startEnvServer(registry, pino({ level: 'silent' }), { port: 0, host: '127.0.0.1', token: null, runId: 'r-text' });
    const ws = new WebSocket(`${server.url.replace(/^http/, 'ws')}/ws`);
    const open = new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    try {
      const opened = await fetch(`${server.url}/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ scenario_id: SCENARIO.id }) });
      expect(opened.status).to.equal(201);
      const { mcp_url: mcpUrl, session_id: sessionId } = (await opened.json()) as { mcp_url: string; session_id: string };
      const mcp = await withMcp(mcpUrl, client => client.callTool({ name: 'totals', arguments: {} }));
      expect((mcp.content as { type: string; text: string }[])[0]).to.deep.equal({ type: 'text', text: WRITTEN });
      expect(mcp.isError).to.equal(false);
      // structuredContent too, as the runtime wrote it: the response's bytes, before any client parses them (a Python
      // client's json.loads then reads 1.0 as a float and the big integers exactly).
      expect(mcp.structuredContent).to.deep.equal(JSON.parse(WRITTEN));
      const raw = await fetch(mcpUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'totals', arguments: {} } }),
      });
      const rawText = await raw.text();
      expect(raw.status, rawText).to.equal(200);
      expect(rawText).to.include(`"structuredContent":${WRITTEN}`);
      expect(Number(raw.headers.get('content-length'))).to.equal(Buffer.byteLength(rawText));
      expect(JSON.parse(rawText)).to.deep.include({ jsonrpc: '2.0', id: 7 });
      const ended = await fetch(`${server.url}/sessions/${sessionId}/verify`, { method: 'POST' });
      // n is 2: the tool ran twice (the client's call, then the raw one).
      expect(await ended.text()).to.include('"final_state":{"big":18446744073709551617,"f":1.0,"n":2}');

      // OpenEnv over /ws: the frames as sent, before any client parses them.
      const frames: string[] = [];
      let wake: (() => void) | null = null;
      ws.on('message', (raw: Buffer) => {
        frames.push(raw.toString('utf8'));
        wake?.();
      });
      await open;
      const request = async (msg: unknown): Promise<string> => {
        const before = frames.length;
        ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
        while (frames.length === before) await new Promise<void>(resolve => (wake = resolve));
        return frames[before]!;
      };
      expect(JSON.parse(await request({ type: 'reset', data: { scenario_id: SCENARIO.id } }))).to.include({ type: 'observation' });
      const step = await request({ type: 'step', data: { type: 'call_tool', tool_name: 'totals', arguments: {} } });
      expect(step).to.include(`"text":${JSON.stringify(WRITTEN)}`);
      expect(step).to.include(`"structured_content":${WRITTEN}`);
      expect(step).to.include(`"data":${WRITTEN}`);
      // The arguments as Python reads the frame's text.
      const echoed = await request('{"type": "step", "data": {"type": "call_tool", "tool_name": "echo", "arguments": {"number": 12345678901234567891, "amount": 2.0}}}');
      expect(echoed).to.include('"data":{"amount":2.0,"kinds":["int","float"],"note":"","number":12345678901234567891}');
      const stateless = await fetch(`${server.url}/step`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"scenario_id": "${SCENARIO.id}", "action": {"type": "call_tool", "tool_name": "echo", "arguments": {"number": 12345678901234567891, "amount": 2.0}}}` });
      expect(await stateless.text()).to.include('"data":{"amount":2.0,"kinds":["int","float"],"note":"","number":12345678901234567891}');
      const rpc = await request({ type: 'mcp', data: { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'totals', arguments: {} } } });
      expect(rpc).to.include(`"text":${JSON.stringify(WRITTEN)}`);
      expect(rpc).to.include(`"structuredContent":${WRITTEN}`);
    } finally {
      ws.close();
      await server.close();
      await registry.closeAll();
    }
  });

  it('hands a tools/call its arguments as Python reads the request text: MCP (as a Python client writes them), OpenEnv JSON-RPC over POST /mcp and /ws', async () => {
    const served: ServedScenario = { scenario: SCENARIO, env: ENV, limits: DEFAULT_SANDBOX_LIMITS };
    const registry = createSessionRegistry({ sandbox, scenarios: { scenario: () => Promise.resolve(served) } }, { maxSessions: 2, idleTimeoutMs: 0 });
    const server = await startEnvServer(registry, pino({ level: 'silent' }), { port: 0, host: '127.0.0.1', token: null, runId: 'r-text' });
    const ws = new WebSocket(`${server.url.replace(/^http/, 'ws')}/ws`);
    const open = new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const ARGS = '{"number": 12345678901234567891, "amount": 2.0, "note": "n° 7 — 七 🧾"}';
    const READ = '{"amount":2.0,"kinds":["int","float"],"note":"n° 7 — 七 🧾","number":12345678901234567891}';
    try {
      const opened = await fetch(`${server.url}/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ scenario_id: SCENARIO.id }) });
      const { mcp_url: mcpUrl } = (await opened.json()) as { mcp_url: string };
      // What Python's MCP client sends: json.dumps keeps 2.0 and the big integer (JavaScript's client cannot write them).
      const mcp = await fetch(mcpUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: `{"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo", "arguments": ${ARGS}}}`,
      });
      expect(mcp.status).to.equal(200);
      expect(await mcp.text()).to.include(`"text":${JSON.stringify(READ)}`);

      const rpc = await fetch(`${server.url}/mcp`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: `{"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"scenario_id": "${SCENARIO.id}", "name": "echo", "arguments": ${ARGS}}}`,
      });
      expect(await rpc.text()).to.include(`"text":${JSON.stringify(READ)}`);

      const frames: string[] = [];
      let wake: (() => void) | null = null;
      ws.on('message', (raw: Buffer) => {
        frames.push(raw.toString('utf8'));
        wake?.();
      });
      await open;
      const request = async (text: string): Promise<string> => {
        const before = frames.length;
        ws.send(text);
        while (frames.length === before) await new Promise<void>(resolve => (wake = resolve));
        return frames[before]!;
      };
      await request(JSON.stringify({ type: 'reset', data: { scenario_id: SCENARIO.id } }));
      const overWs = await request(`{"type": "mcp", "data": {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "echo", "arguments": ${ARGS}}}}`);
      expect(overWs).to.include(`"text":${JSON.stringify(READ)}`);
    } finally {
      ws.close();
      await server.close();
      await registry.closeAll();
    }
  });
});
