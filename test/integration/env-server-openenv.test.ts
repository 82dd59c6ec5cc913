import { expect } from 'chai';
import { pino } from 'pino';
import type { Socket } from 'node:net';
import WebSocket, { type ClientOptions } from 'ws';
import { startServing, type Serving } from '../../cli/serve.js';
import { FINISH_TOOL, MAX_CLOSE_REASON_BYTES, MAX_WS_MESSAGE_BYTES, MAX_WS_QUEUED_MESSAGES, MAX_WS_UNSENT_BYTES } from '../../http/env-server/openenv.js';
import { createLocalSandboxRunner } from '../../src/sandbox/runner.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import { cliCheck, scenarioWith, useServedDemoRun } from '../helpers/env-server-clients.js';
import { silentLogger, testConfig, until, type Fleet } from '../helpers/integration.js';

type Msg = { type: string; data: Record<string, unknown> };
type Obs = { observation: Record<string, unknown>; reward: number | null; done: boolean };

/** A client speaking OpenEnv's /ws messages: one reply per request, in order (as OpenEnv's EnvClient). */
class OpenEnvWs {
  private readonly queue: Msg[] = [];
  private waiting: { resolve: (m: Msg) => void; reject: (err: Error) => void } | null = null;
  closed = false;
  /** The close frame's code and reason (1006 and '' when the connection dropped without one). */
  readonly closedWith: Promise<{ code: number; reason: string }>;
  private constructor(readonly ws: WebSocket) {
    ws.on('message', raw => {
      const m = JSON.parse(Buffer.isBuffer(raw) ? raw.toString('utf8') : Buffer.from(raw as ArrayBuffer).toString('utf8')) as Msg;
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = null;
        w.resolve(m);
      } else this.queue.push(m);
    });
    this.closedWith = new Promise(resolve => {
      ws.on('close', (code, reason) => {
        this.closed = true;
        resolve({ code, reason: reason.toString('utf8') });
        // A reply awaited on a connection that closed will not come.
        this.waiting?.reject(new Error(`the connection closed (${code} "${reason.toString('utf8')}") without a reply`));
        this.waiting = null;
      });
    });
  }
  static async connect(base: string, headers: Record<string, string> = {}, query = '', options: ClientOptions = {}): Promise<OpenEnvWs> {
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/ws${query}`, { ...options, headers });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
    return new OpenEnvWs(ws);
  }
  next(): Promise<Msg> {
    const m = this.queue.shift();
    if (m) return Promise.resolve(m);
    if (this.closed) return Promise.reject(new Error('the connection is closed: no reply will come'));
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no reply within 30 s')), 30_000);
      this.waiting = {
        resolve: msg => {
          clearTimeout(t);
          resolve(msg);
        },
        reject: err => {
          clearTimeout(t);
          reject(err);
        },
      };
    });
  }
  async request(msg: unknown): Promise<Msg> {
    this.ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
    return this.next();
  }
  async reset(scenarioId: string): Promise<Obs> {
    const m = await this.request({ type: 'reset', data: { scenario_id: scenarioId } });
    expect(m.type, JSON.stringify(m)).to.equal('observation');
    return m.data as unknown as Obs;
  }
  async call(tool: string, args: unknown): Promise<Obs> {
    const m = await this.request({ type: 'step', data: { type: 'call_tool', tool_name: tool, arguments: args } });
    expect(m.type, JSON.stringify(m)).to.equal('observation');
    return m.data as unknown as Obs;
  }
  close() {
    this.ws.close();
  }
}

const textOf = (o: Obs) => ((o.observation['result'] as { content: { text: string }[] }).content[0]!.text);

describe('envfleet serve: the OpenEnv surface (WebSocket /ws, /metadata, /schema, /openapi.json, stateless /reset /step /state)', function () {
  let f: Fleet;
  let serving: Serving;
  let scenarios: ScenarioRecord[];
  useServedDemoRun('s1', 3, run => ({ f, serving, scenarios } = run));
  const byTask = (needle: string) => scenarioWith(scenarios, needle);

  it('drives a scenario to its reward over /ws: task and tools on reset, null rewards on the way, the checks\' score once at the finish action', async () => {
    const iris = byTask('Iris Vance');
    const c = await OpenEnvWs.connect(serving.url);
    const reset = await c.reset(iris.id);
    expect(reset).to.include({ reward: null, done: false });
    expect(reset.observation['task']).to.equal(iris.task);
    const tools = reset.observation['tools'] as { name: string; description: string; input_schema: { type: string } }[];
    expect(tools.map(t => t.name)).to.include.members(['get_member', 'return_book', 'pay_fine', 'borrow_book']);
    expect(tools.every(t => t.input_schema.type === 'object')).to.equal(true);
    expect((reset.observation['metadata'] as Record<string, unknown>)['session_id']).to.be.a('string');

    const listed = await c.request({ type: 'step', data: { type: 'list_tools' } });
    expect((listed.data['observation'] as { tools: { name: string }[] }).tools.map(t => t.name)).to.deep.equal(tools.map(t => t.name));

    const member = await c.call('get_member', { member_id: 'M7' });
    expect(member).to.include({ reward: null, done: false });
    expect(member.observation).to.include({ tool_name: 'get_member', error: null });
    expect(textOf(member)).to.include('Iris Vance');
    expect((member.observation['result'] as { data: unknown }).data).to.deep.equal(JSON.parse(textOf(member)));
    const steps = [await c.call('return_book', { loan_id: 'L21' }), await c.call('pay_fine', { member_id: 'M7', amount: 2.5 }), await c.call('borrow_book', { member_id: 'M7', book_id: 'B5' })];
    expect(steps.map(s => s.reward)).to.deep.equal([null, null, null]);
    expect(steps.map(s => s.done)).to.deep.equal([false, false, false]);
    expect(textOf(steps[2]!)).to.match(/Lent Kindred to Iris Vance/);

    const state = await c.request({ type: 'state' });
    expect(state.type).to.equal('state');
    expect(state.data).to.include({ step_count: 4, done: false, reward: null, reward_preview: 1, scenario_id: iris.id });

    const fin = await c.call(FINISH_TOOL, {});
    expect(fin.done).to.equal(true);
    expect(fin.reward).to.equal(1);
    const sessionId = (reset.observation['metadata'] as { session_id: string }).session_id;
    const kept = serving.registry.result(sessionId)!;
    expect(kept).to.include({ reward: 1, solved: true, endedBy: 'finished', calls: 4 });
    // The reward is what `envfleet sandbox check` gives on the same final state.
    const checks = await cliCheck(iris, kept.finalState);
    expect(fin.reward).to.equal(checks.reward);
    expect(checks.passed).to.deep.equal(kept.checks.map(c => c.passed));

    // Further steps are refused (the connection stays); a new reset starts a new episode.
    const after = await c.request({ type: 'step', data: { type: 'call_tool', tool_name: 'get_member', arguments: { member_id: 'M7' } } });
    expect(after.type).to.equal('error');
    expect(after.data['code']).to.equal('VALIDATION_ERROR');
    expect((await c.request({ type: 'state' })).data).to.include({ done: true, reward: 1, reward_preview: null });
    c.close();
  });

  it('close ends the episode with the checks\' score, sent once; a partly done scenario gets a partial reward', async () => {
    const pl = byTask('PL-900');
    const c = await OpenEnvWs.connect(serving.url);
    const reset = await c.reset(pl.id);
    // state previews the checks on the current state, without ending the episode: 0 before, 0.5 after the exit.
    expect((await c.request({ type: 'state' })).data).to.include({ reward_preview: 0, reward: null, done: false });
    const step = await c.call('exit_vehicle', { ticket_id: 'T2' });
    expect(step).to.include({ reward: null, done: false });
    expect((await c.request({ type: 'state' })).data).to.include({ reward_preview: 0.5, reward: null, done: false, step_count: 1 });
    expect(textOf(step)).to.match(/PL-900 left S2/);
    const closing = await c.request({ type: 'close' });
    expect(closing.type).to.equal('observation');
    expect(closing.data).to.include({ done: true, reward: 0.5 });
    const kept = serving.registry.result((reset.observation['metadata'] as { session_id: string }).session_id)!;
    expect(kept).to.include({ endedBy: 'closed', reward: 0.5 });
    const checks = await createLocalSandboxRunner().checks({ checks: pl.checklist!, finalState: kept.finalState, initialState: pl.initialState, limits: (await f.store.getRun('s1'))!.options.limits });
    expect(closing.data['reward']).to.equal(checks.reward);
    await new Promise(r => setTimeout(r, 100));
    expect(c.closed).to.equal(true);
  });

  it('serves {"type": "mcp"} on /ws: tools/list and tools/call on the connection\'s episode as JSON-RPC, beside step (no reward, no done, not a step)', async () => {
    type Rpc = { jsonrpc: string; id: unknown; result?: Record<string, unknown>; error?: { code: number; message: string; data?: Record<string, unknown> } };
    const c = await OpenEnvWs.connect(serving.url);
    const mcp = async (data: unknown): Promise<Rpc> => {
      const m = await c.request({ type: 'mcp', data });
      expect(m.type, JSON.stringify(m)).to.equal('mcp');
      expect(m.data['jsonrpc']).to.equal('2.0');
      return m.data as unknown as Rpc;
    };
    const rpc = (id: number, method: string, params?: unknown) => mcp({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) });

    // Before reset there is no episode: a JSON-RPC error that says to reset first.
    const early = await rpc(1, 'tools/list');
    expect(early.id).to.equal(1);
    expect(early.error!.code).to.equal(-32600);
    expect(early.error!.message).to.match(/reset/);
    // OpenEnv's shapes for malformed messages: data not an object is a VALIDATION_ERROR message; not a request, a JSON-RPC -32600 with id null.
    const noData = await c.request({ type: 'mcp' });
    expect(noData.type).to.equal('error');
    expect(noData.data['code']).to.equal('VALIDATION_ERROR');
    expect((await mcp({})).error).to.include({ code: -32600 });
    expect((await mcp({})).id).to.equal(null);

    const iris = byTask('Iris Vance');
    const reset = await c.reset(iris.id);
    const sessionId = (reset.observation['metadata'] as { session_id: string }).session_id;
    const listed = await rpc(2, 'tools/list');
    expect(listed.id).to.equal(2);
    const tools = listed.result!['tools'] as { name: string; description: string; inputSchema: { type: string } }[];
    expect(tools.map(t => t.name)).to.deep.equal((reset.observation['tools'] as { name: string }[]).map(t => t.name));
    expect(tools.every(t => t.inputSchema.type === 'object' && typeof t.description === 'string')).to.equal(true);

    const call = async (name: string, args: unknown) => (await rpc(3, 'tools/call', { name, arguments: args })).result as { content: { type: string; text: string }[]; structuredContent: Record<string, unknown>; isError: boolean };
    const member = await call('get_member', { member_id: 'M7' });
    expect(member.isError).to.equal(false);
    expect(member.content[0]!.type).to.equal('text');
    expect(member.content[0]!.text).to.include('Iris Vance');
    expect(member.structuredContent).to.deep.equal(JSON.parse(member.content[0]!.text));
    const missing = await call('launch_rocket', {});
    expect(missing.isError).to.equal(true);
    expect(missing.structuredContent['code']).to.equal('UNKNOWN_TOOL');
    // The environment's own failure is an isError result, as on a session's MCP endpoint.
    const noSuchMember = await call('get_member', { member_id: 'M404-é' });
    expect(noSuchMember.structuredContent).to.include({ success: false });
    expect(noSuchMember.isError).to.equal(true);
    expect((await call('pay_fine', { member_id: 'M7', amount: '6' })).structuredContent['code']).to.equal('INVALID_ARGUMENTS');
    const noName = await rpc(4, 'tools/call', { arguments: {} });
    expect(noName.id).to.equal(4);
    expect(noName.error!.code).to.equal(-32602);
    expect((await rpc(5, 'initialize')).error!.code).to.equal(-32601);
    expect((await rpc(6, 'openenv/session/create')).result).to.include({ session_id: sessionId, scenario_id: iris.id });
    expect((await rpc(7, 'openenv/session/close', { session_id: sessionId })).error!.code).to.equal(-32600);

    // Calls over mcp change the episode's state but are not steps and carry no reward.
    for (const [name, args] of [['return_book', { loan_id: 'L21' }], ['pay_fine', { member_id: 'M7', amount: 2.5 }], ['borrow_book', { member_id: 'M7', book_id: 'B5' }]] as const) {
      expect((await call(name, args)).isError, name).to.equal(false);
    }
    expect((await c.request({ type: 'state' })).data).to.include({ step_count: 0, done: false, reward: null });
    const fin = await c.call(FINISH_TOOL, {});
    expect(fin).to.include({ done: true, reward: 1 });
    expect(serving.registry.result(sessionId)).to.include({ reward: 1, endedBy: 'finished', calls: 6 }); // the registry's calls: the refused arguments and the unknown member too

    // After the end: SESSION_CLOSED, and the connection still answers.
    const late = await rpc(8, 'tools/call', { name: 'get_member', arguments: { member_id: 'M7' } });
    expect(late.error).to.deep.include({ code: -32602, data: { code: 'SESSION_CLOSED' } });
    expect((await c.request({ type: 'state' })).data).to.include({ done: true, reward: 1 });
    c.close();
  });

  it('answers bad input in OpenEnv\'s error shapes without closing the connection or disturbing another session; multi-byte text round-trips', async () => {
    const gx = byTask('GX-310');
    const iris = byTask('Iris Vance');
    const other = await OpenEnvWs.connect(serving.url);
    await other.reset(iris.id);
    const c = await OpenEnvWs.connect(serving.url);

    const errors: [Msg, string][] = [];
    errors.push([await c.request({ type: 'reset', data: { scenario_id: 'no-such-scenario' } }), 'VALIDATION_ERROR']);
    errors.push([await c.request('{"type": "reset", "data": '), 'INVALID_JSON']);
    errors.push([await c.request({ type: 'dance' }), 'UNKNOWN_TYPE']);
    errors.push([await c.request({ type: 'step', data: { type: 'call_tool', tool_name: 'get_member', arguments: {} } }), 'VALIDATION_ERROR']); // no reset yet
    await c.reset(gx.id);
    errors.push([await c.request({ type: 'step', data: { type: 'call_tool', tool_name: 42, arguments: [] } }), 'VALIDATION_ERROR']);
    errors.push([await c.request({ type: 'step', data: { type: 'teleport' } }), 'VALIDATION_ERROR']);
    errors.push([await c.request({ type: 'step' }), 'VALIDATION_ERROR']);
    for (const [m, code] of errors) {
      expect(m.type, JSON.stringify(m)).to.equal('error');
      expect(m.data['code'], JSON.stringify(m)).to.equal(code);
      expect(String(m.data['message']).length).to.be.greaterThan(20);
    }
    expect(errors[0]![0].data['envfleet_code']).to.equal('UNKNOWN_SCENARIO');
    expect(errors[4]![0].data['errors']).to.have.length(2);

    // Tool-level failures come back as the observation's ToolError, as MCP-backed OpenEnv environments give them.
    const unknown = await c.call('launch_rocket', {});
    expect(unknown).to.include({ reward: null, done: false });
    expect(unknown.observation).to.deep.include({ tool_name: 'launch_rocket', result: null });
    expect(unknown.observation['error']).to.include({ error_type: 'tool_not_found' });
    const wrongType = await c.call('exit_vehicle', { ticket_id: 5 });
    expect((wrongType.observation['error'] as { error_type: string }).error_type).to.equal('invalid_args');
    expect(wrongType.done).to.equal(false);

    // A reset that is refused (a scenario id with a typo) leaves the live episode as it was: not ended, not scored.
    const typo = await c.request({ type: 'reset', data: { scenario_id: gx.id.slice(0, -1) } });
    expect(typo.data['envfleet_code'], JSON.stringify(typo)).to.equal('UNKNOWN_SCENARIO');
    const stillLive = await c.request({ type: 'state' });
    expect(stillLive.data, JSON.stringify(stillLive)).to.include({ done: false });

    // Multi-byte text round-trips, and the session still works after all that.
    const plate = 'ÄÖ-漢字-🚗';
    const parked = await c.call('enter_vehicle', { plate, size: 'compact' });
    expect(parked.observation['error']).to.equal(null);
    expect(textOf(parked)).to.include(`${plate} parked in`);
    expect(JSON.stringify((parked.observation['result'] as { structured_content: unknown }).structured_content)).to.include(plate);
    const closing = await c.request({ type: 'close' });
    expect(closing.data['done']).to.equal(true);

    // The other connection never noticed.
    const member = await other.call('get_member', { member_id: 'M7' });
    expect(textOf(member)).to.include('Iris Vance');
    expect((await other.request({ type: 'state' })).data).to.include({ step_count: 1, done: false });
    other.close();
    await new Promise(r => setTimeout(r, 200));
    expect(serving.registry.stats().active, 'a disconnect ends the session').to.equal(0);
  });

  it('a message over the 16 MiB cap gets an error message saying what was too large, the limit and what to do, then the close 1009 with a reason; its episode ends as on a disconnect', async () => {
    const pl = byTask('PL-900');
    const c = await OpenEnvWs.connect(serving.url);
    const other = await OpenEnvWs.connect(serving.url);
    const reset = await c.reset(pl.id);
    const sid = (reset.observation['metadata'] as { session_id: string }).session_id;
    await c.call('exit_vehicle', { ticket_id: 'T2' });
    await other.reset(byTask('Iris Vance').id);
    // A step whose arguments (the whole JSON message) are one byte over the cap.
    const frame = JSON.stringify({ type: 'step', data: { type: 'call_tool', tool_name: 'exit_vehicle', arguments: { ticket_id: '' } } });
    const big = frame.replace('"ticket_id":""', `"ticket_id":"${'x'.repeat(MAX_WS_MESSAGE_BYTES + 1 - frame.length)}"`);
    expect(Buffer.byteLength(big)).to.equal(MAX_WS_MESSAGE_BYTES + 1);
    const reply = await c.request(big);
    // The reply OpenEnv's client reads, in the protocol's error shape (it raises RuntimeError("Server error: MESSAGE (code: CODE)")).
    expect(reply.type, JSON.stringify(reply).slice(0, 500)).to.equal('error');
    expect(reply.data).to.include({ code: 'VALIDATION_ERROR', envfleet_code: 'MESSAGE_TOO_LARGE', max_bytes: MAX_WS_MESSAGE_BYTES, session_id: sid, session_ended: true });
    expect(reply.data['message']).to.include('16 MiB (16777216 bytes)').and.to.match(/larger than/).and.to.match(/Send smaller messages/).and.to.include(`POST /sessions/${sid}/verify`);
    // Then the close: 1009 with a reason any client shows (a close reason is at most 123 bytes).
    const closed = await c.closedWith;
    expect(closed.code).to.equal(1009);
    expect(closed.reason).to.include('over the 16 MiB (16777216 bytes) limit').and.to.match(/send smaller messages/);
    expect(Buffer.byteLength(closed.reason)).to.be.at.most(MAX_CLOSE_REASON_BYTES);
    // The episode ended as on a disconnect: scored on the state it reached, kept.
    await until(() => Promise.resolve(serving.registry.result(sid) !== null), 'the episode to end');
    expect(serving.registry.result(sid)).to.include({ endedBy: 'closed', reward: 0.5 });
    // Where the message says the reward is.
    const verified = await fetch(`${serving.url}/sessions/${sid}/verify`, { method: 'POST' });
    expect(verified.status).to.equal(200);
    expect(await verified.json()).to.deep.include({ reward: 0.5 });
    // Another connection's episode goes on.
    const fin = await other.call(FINISH_TOOL, {});
    expect(fin.done).to.equal(true);
    other.close();
  });

  it('over capacity answers CAPACITY_REACHED with active and max sessions; the connection stays for a later reset', async () => {
    const gx = byTask('GX-310');
    const held = await Promise.all([0, 1, 2].map(() => OpenEnvWs.connect(serving.url)));
    for (const c of held) await c.reset(gx.id);
    const extra = await OpenEnvWs.connect(serving.url);
    const full = await extra.request({ type: 'reset', data: { scenario_id: gx.id } });
    expect(full.type).to.equal('error');
    expect(full.data).to.include({ code: 'CAPACITY_REACHED', active_sessions: 3, max_sessions: 3 });
    // A reset to a scenario that does not exist, on a full server, says so, and the episode it would have replaced goes
    // on (it was ended for the room first, then refused: reward lost, and the answer CAPACITY_REACHED or the typo's).
    const typo = await held[0]!.request({ type: 'reset', data: { scenario_id: 'scn-typo' } });
    expect(typo.type).to.equal('error');
    expect(typo.data).to.include({ code: 'VALIDATION_ERROR', envfleet_code: 'UNKNOWN_SCENARIO' });
    expect((await held[0]!.call('exit_vehicle', { ticket_id: 'T5' })).done).to.equal(false);
    await held[0]!.request({ type: 'close' });
    expect((await extra.reset(gx.id)).done).to.equal(false);
    for (const c of [...held.slice(1), extra]) c.close();
    await new Promise(r => setTimeout(r, 200));
    expect(serving.registry.stats().active).to.equal(0);
  });

  it('serves /metadata, /schema, /openapi.json with a version, and the stateless /reset, /step, /state', async () => {
    const get = async (path: string) => (await fetch(serving.url + path)).json() as Promise<Record<string, unknown>>;
    const meta = await get('/metadata');
    expect(meta['name']).to.be.a('string');
    expect(meta['description']).to.be.a('string');
    expect(meta['version']).to.be.a('string');
    const schema = await get('/schema');
    expect(schema).to.have.keys('action', 'observation', 'state');
    expect((schema['action'] as { properties: object }).properties).to.include.keys('tool_name', 'arguments');
    const api = (await get('/openapi.json')) as { info: { version: unknown; 'x-envfleet-version': unknown }; paths: object };
    // OpenEnv's HTTP API version (openenv validate's standard_profile openenv-http/1.x), envfleet's beside it.
    expect(api.info.version).to.equal('1.0.0');
    expect(api.info['x-envfleet-version']).to.equal(meta['version']);
    expect(api.paths).to.include.keys('/reset', '/step', '/state');

    const gx = byTask('GX-310');
    const post = async (path: string, body: unknown) => {
      const r = await fetch(serving.url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: r.status, json: (await r.json()) as Record<string, unknown> };
    };
    const reset = await post('/reset', { scenario_id: gx.id });
    expect(reset.status).to.equal(200);
    expect(reset.json).to.include({ reward: null, done: false });
    const step = await post('/step', { scenario_id: gx.id, action: { type: 'call_tool', tool_name: 'exit_vehicle', arguments: { ticket_id: 'T5' } } });
    expect(step.status).to.equal(200);
    expect(step.json['done']).to.equal(true);
    expect(step.json['reward']).to.be.a('number');
    expect(JSON.stringify(step.json['observation'])).to.match(/GX-310 left S9/);
    const bad = await post('/reset', { scenario_id: 'nope' });
    expect(bad.status).to.equal(422);
    expect((await get('/state'))).to.include({ episode_id: null, step_count: 0 });
    expect(serving.registry.stats().active).to.equal(0);
  });

  it('serves OpenEnv\'s JSON-RPC POST /mcp: {} is a JSON-RPC error; a session created, its tools listed and called, closed with its reward', async () => {
    const rpc = async (body: unknown, raw = false) => {
      const r = await fetch(`${serving.url}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: raw ? (body as string) : JSON.stringify(body) });
      expect(r.status).to.equal(200);
      return (await r.json()) as { jsonrpc: string; id: unknown; result?: Record<string, unknown>; error?: { code: number; message: string; data?: Record<string, unknown> } };
    };
    const empty = await rpc({});
    expect(empty).to.deep.include({ jsonrpc: '2.0', id: null });
    expect(empty.error!.code).to.equal(-32600);
    expect((await rpc('{"jsonrpc": ', true)).error!.code).to.equal(-32700);
    expect((await rpc({ jsonrpc: '2.0', id: 1, method: 'initialize' })).error!.code).to.equal(-32601);
    const unknown = await rpc({ jsonrpc: '2.0', id: 2, method: 'openenv/session/create', params: { scenario_id: 'nope' } });
    expect(unknown.error).to.deep.include({ code: -32602, data: { code: 'UNKNOWN_SCENARIO' } });

    const iris = byTask('Iris Vance');
    const created = await rpc({ jsonrpc: '2.0', id: 3, method: 'openenv/session/create', params: { scenario_id: iris.id } });
    const sid = created.result!['session_id'] as string;
    expect(created.id).to.equal(3);
    const listed = await rpc({ jsonrpc: '2.0', id: 4, method: 'tools/list', params: { session_id: sid } });
    const tools = listed.result!['tools'] as { name: string; inputSchema: { type: string } }[];
    expect(tools.map(t => t.name)).to.include('get_member');
    expect(tools.every(t => t.inputSchema.type === 'object')).to.equal(true);
    const call = async (name: string, args: unknown) => (await rpc({ jsonrpc: '2.0', id: 5, method: 'tools/call', params: { session_id: sid, name, arguments: args } })).result as { content: { text: string }[]; isError: boolean; structuredContent: Record<string, unknown> };
    expect((await call('get_member', { member_id: 'M7' })).content[0]!.text).to.include('Iris Vance');
    const missing = await call('launch_rocket', {});
    expect(missing.isError).to.equal(true);
    expect(missing.structuredContent['code']).to.equal('UNKNOWN_TOOL');
    expect((await call('pay_fine', { member_id: 'M7', amount: '6' })).structuredContent['code']).to.equal('INVALID_ARGUMENTS');
    await call('return_book', { loan_id: 'L21' });
    await call('pay_fine', { member_id: 'M7', amount: 2.5 });
    await call('borrow_book', { member_id: 'M7', book_id: 'B5' });
    const closed = await rpc({ jsonrpc: '2.0', id: 6, method: 'openenv/session/close', params: { session_id: sid } });
    expect(closed.result).to.deep.include({ session_id: sid, closed: true, reward: 1 });
    expect(serving.registry.result(sid)!.reward).to.equal(1);
    expect((await rpc({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { session_id: sid, name: 'get_member', arguments: {} } })).error!.data).to.deep.include({ code: 'SESSION_CLOSED' });
    expect(serving.registry.stats().active).to.equal(0);
  });

  it('answers list_tools after the session idled out with the end of the episode and its reward, as a call does (it listed the tools as if the episode went on)', async () => {
    const idling = await startServing(f.config, silentLogger(), { run: 's1', port: 0, host: '127.0.0.1', maxSessions: 1, idleTimeout: 1000 });
    try {
      const c = await OpenEnvWs.connect(idling.url);
      const reset = await c.reset(byTask('GX-310').id);
      const sid = (reset.observation['metadata'] as { session_id: string }).session_id;
      // Long in the unit that matters: the session has ended for idleness.
      await until(() => Promise.resolve(idling.registry.result(sid)?.endedBy === 'idle-timeout'), 'the session to idle out', 30_000);
      // A look at the state first shows the end, and the step after it still gets the end with its reward (it got
      // SESSION_CLOSED as an error, which OpenEnv's client raises instead of returning a StepResult).
      const seen = await c.request({ type: 'state' });
      expect(seen.data).to.include({ done: true, reward: idling.registry.result(sid)!.reward });
      const after = await c.request({ type: 'step', data: { type: 'list_tools' } });
      expect(after.type, JSON.stringify(after)).to.equal('observation');
      const obs = after.data as unknown as Obs;
      expect(obs.done).to.equal(true);
      expect(obs.reward).to.equal(idling.registry.result(sid)!.reward);
      expect((obs.observation['error'] as { message: string }).message).to.match(/already ended \(idle-timeout/);
      c.close();
    } finally {
      await idling.close();
    }
  });

  it('pings every /ws client (ENVFLEET_SERVE_WS_PING_MS) and drops one that does not answer; its episode ends as on a disconnect, scored and kept, its capacity freed, and a client that answers goes on', async () => {
    // A tiny interval, so that a missed ping shows at once; the client that answers is the proof it is not too tiny.
    const config = testConfig(f.server, { ENVFLEET_REDIS_PREFIX: f.config.redis.prefix, ENVFLEET_SERVE_WS_PING_MS: '250' });
    const pinging = await startServing(config, silentLogger(), { run: 's1', port: 0, host: '127.0.0.1', maxSessions: 2, idleTimeout: 600_000 });
    try {
      const live = await OpenEnvWs.connect(pinging.url);
      // A peer gone silent (its machine, or a NAT on the way, dropped it): it no longer answers pings.
      const dead = await OpenEnvWs.connect(pinging.url, {}, '', { autoPong: false });
      let livePings = 0;
      let deadPings = 0;
      live.ws.on('ping', () => (livePings += 1));
      dead.ws.on('ping', () => (deadPings += 1));
      await live.reset(byTask('Iris Vance').id);
      const reset = await dead.reset(byTask('PL-900').id);
      const sid = (reset.observation['metadata'] as { session_id: string }).session_id;
      await dead.call('exit_vehicle', { ticket_id: 'T2' });
      expect(pinging.registry.stats().active).to.equal(2);

      // Dropped without a close handshake (a peer that does not answer would not complete one).
      await until(() => Promise.resolve(dead.closed), 'the server to drop the client that does not answer pings', 60_000);
      expect((await dead.closedWith).code).to.equal(1006);
      expect(deadPings).to.be.at.least(1);
      // Its episode ended as a disconnect ends one: scored on the state it reached, kept; its capacity is free.
      await until(() => Promise.resolve(pinging.registry.result(sid) !== null), 'the dropped episode to end');
      expect(pinging.registry.result(sid)).to.include({ endedBy: 'closed', reward: 0.5 });
      expect(pinging.registry.stats().active).to.equal(1);

      // The client that answers is pinged on and keeps its episode.
      const seen = livePings;
      await until(() => Promise.resolve(livePings >= seen + 3), 'three more pings of the live client');
      expect(live.closed).to.equal(false);
      await live.call('get_member', { member_id: 'M7' });
      for (const [tool, args] of [['return_book', { loan_id: 'L21' }], ['pay_fine', { member_id: 'M7', amount: 2.5 }], ['borrow_book', { member_id: 'M7', book_id: 'B5' }]] as const) await live.call(tool, args);
      const fin = await live.call(FINISH_TOOL, {});
      expect(fin).to.include({ done: true, reward: 1 });
      live.close();
    } finally {
      await pinging.close();
    }
  });

  it('stops reading a client that does not take its replies (its loop stopped while it still sent): its messages wait in its own socket, not in the server; every reply comes, in order, once it reads again', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    const config = testConfig(f.server, { ENVFLEET_REDIS_PREFIX: f.config.redis.prefix });
    const own = await startServing(config, logger, { run: 's1', port: 0, host: '127.0.0.1', maxSessions: 2, idleTimeout: 600_000 });
    const logged = (needle: string) => lines.map(l => JSON.parse(l) as Record<string, unknown>).find(l => String(l['msg']).includes(needle));
    try {
      const client = await OpenEnvWs.connect(own.url);
      await client.reset(byTask('Iris Vance').id);
      // Its loop stops reading; it goes on sending: 2,000 messages of ≈ 40 KB of accented text (80 MB), each answered
      // with an error that quotes it (≈ 40 KB), far more than the server keeps for a client.
      client.ws.pause();
      const N = 2_000;
      const typeOf = (i: number) => `stalled-${i}-${'é'.repeat(20_000)}`;
      for (let i = 0; i < N; i++) client.ws.send(JSON.stringify({ type: typeOf(i) }));
      await until(() => Promise.resolve(logged('is not taking its replies') !== undefined), 'the server to stop reading the client', 60_000);
      const stalled = logged('is not taking its replies')!;
      // It keeps at most the cap (and the reply that crossed it), and at most its queue of messages.
      expect(stalled['unsentBytes']).to.be.at.least(MAX_WS_UNSENT_BYTES).and.below(MAX_WS_UNSENT_BYTES + 100_000);
      expect(stalled['queuedMessages']).to.be.at.most(MAX_WS_QUEUED_MESSAGES);
      // What the server did not read is still the client's to send.
      expect(client.ws.bufferedAmount).to.be.above(0);

      // The client reads again: every reply, in order, then the connection goes on.
      client.ws.resume();
      for (let i = 0; i < N; i++) {
        const m = await client.next();
        expect(m.type).to.equal('error');
        expect(m.data['code']).to.equal('UNKNOWN_TYPE');
        expect(String(m.data['message'])).to.include(`"stalled-${i}-éé`);
      }
      expect((await client.call('get_member', { member_id: 'M7' })).done).to.equal(false);
      expect(logged('took its replies again')).to.not.equal(undefined);
      client.close();
    } finally {
      await own.close();
    }
  });

  it('answers no more messages while a client\'s replies wait for it: a flood of small messages with large replies costs the server at most the cap and one reply', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    const config = testConfig(f.server, { ENVFLEET_REDIS_PREFIX: f.config.redis.prefix });
    const own = await startServing(config, logger, { run: 's1', port: 0, host: '127.0.0.1', maxSessions: 2, idleTimeout: 600_000 });
    const logged = (needle: string) => lines.map(l => JSON.parse(l) as Record<string, unknown>).find(l => String(l['msg']).includes(needle));
    try {
      const client = await OpenEnvWs.connect(own.url);
      await client.reset(byTask('Iris Vance').id);
      const listTools = { type: 'step', data: { type: 'list_tools' } };
      const replyBytes = Buffer.byteLength(JSON.stringify(await client.request(listTools)), 'utf8');
      // 45 bytes asked, kilobytes answered: one read of the server's holds over a thousand of these messages.
      const N = Math.ceil((3 * MAX_WS_UNSENT_BYTES) / replyBytes);
      client.ws.pause();
      for (let i = 0; i < N; i++) client.ws.send(JSON.stringify(listTools));
      await until(() => Promise.resolve(logged('is not taking its replies') !== undefined), 'the server to stop answering the client', 60_000);
      client.ws.resume();
      for (let i = 0; i < N; i++) expect((await client.next()).type).to.equal('observation');
      await until(() => Promise.resolve(logged('took its replies again') !== undefined), 'the server to answer the client again', 60_000);
      const peak = logged('took its replies again')!['peakUnsentBytes'] as number;
      expect(peak).to.be.at.least(MAX_WS_UNSENT_BYTES).and.at.most(MAX_WS_UNSENT_BYTES + replyBytes);
      client.close();
    } finally {
      await own.close();
    }
  });

  it('stops while a client is held for not taking its replies: its waiting messages are dropped, its episode ends and close returns', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    const config = testConfig(f.server, { ENVFLEET_REDIS_PREFIX: f.config.redis.prefix });
    const own = await startServing(config, logger, { run: 's1', port: 0, host: '127.0.0.1', maxSessions: 2, idleTimeout: 600_000 });
    const logged = (needle: string) => lines.map(l => JSON.parse(l) as Record<string, unknown>).find(l => String(l['msg']).includes(needle));
    let closed = false;
    try {
      const client = await OpenEnvWs.connect(own.url);
      await client.reset(byTask('Iris Vance').id);
      const listTools = { type: 'step', data: { type: 'list_tools' } };
      const replyBytes = Buffer.byteLength(JSON.stringify(await client.request(listTools)), 'utf8');
      client.ws.pause();
      for (let i = 0; i < Math.ceil((3 * MAX_WS_UNSENT_BYTES) / replyBytes); i++) client.ws.send(JSON.stringify(listTools));
      await until(() => Promise.resolve(logged('is not taking its replies') !== undefined), 'the server to hold the client', 60_000);
      expect(own.registry.stats().active).to.equal(1);
      // The messages held at the gate are let go unanswered: a server whose shutdown waited for them never stopped.
      await own.close();
      closed = true;
      expect(own.registry.stats().active).to.equal(0);
      client.ws.terminate();
    } finally {
      if (!closed) await own.close();
    }
  });

  it('closes a connection whose reading it holds at once when the client says close (the close handshake is read, not timed out)', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
    const config = testConfig(f.server, { ENVFLEET_REDIS_PREFIX: f.config.redis.prefix });
    const own = await startServing(config, logger, { run: 's1', port: 0, host: '127.0.0.1', maxSessions: 2, idleTimeout: 600_000 });
    const logged = (needle: string) => lines.map(l => JSON.parse(l) as Record<string, unknown>).find(l => String(l['msg']).includes(needle));
    try {
      const client = await OpenEnvWs.connect(own.url);
      // close, then more messages than the server queues, in one write: the server holds its reading when it closes.
      const socket = (client.ws as unknown as { _socket: Socket })._socket;
      let endedByServer = false;
      socket.once('end', () => (endedByServer = true));
      socket.cork();
      client.ws.send(JSON.stringify({ type: 'close' }));
      for (let i = 0; i < 4 * MAX_WS_QUEUED_MESSAGES; i++) client.ws.send(JSON.stringify({ type: 'state' }));
      socket.uncork();
      expect((await client.closedWith).code).to.equal(1000);
      // The server read the client's close frame and ended the connection in order (a server that did not read it
      // gives up after ws's 30 s close timeout and drops the connection: the client sees no end, a reset).
      expect(endedByServer).to.equal(true);
      await until(() => Promise.resolve(logged('/ws connection closed') !== undefined), 'the server to see the connection close', 60_000);
      expect(logged('/ws connection closed')).to.include({ code: 1000 });
    } finally {
      await own.close();
    }
  });

  it('needs the token on the upgrade request (Authorization header, ?token= or the path /t/TOKEN/ws) when the server has one', async () => {
    const secured = await startServing(f.config, silentLogger(), { run: 's1', port: 0, host: '127.0.0.1', maxSessions: 1, idleTimeout: 0, token: 'sekrit-token' });
    try {
      let refused: unknown;
      try {
        await OpenEnvWs.connect(secured.url);
      } catch (err) {
        refused = err;
      }
      expect(String(refused)).to.match(/401/);
      const byHeader = await OpenEnvWs.connect(secured.url, { authorization: 'Bearer sekrit-token' });
      expect((await byHeader.request({ type: 'state' })).type).to.equal('state');
      byHeader.close();
      const byQuery = await OpenEnvWs.connect(secured.url, {}, '?token=sekrit-token');
      const r = await byQuery.reset(byTask('GX-310').id);
      expect(r.done).to.equal(false);
      byQuery.close();
      // OpenEnv's Python clients send no headers and append /ws to the base URL: the token in the path.
      const byPath = await OpenEnvWs.connect(`${secured.url}/t/sekrit-token`);
      expect((await byPath.request({ type: 'state' })).type).to.equal('state');
      byPath.close();
      let wrongPath: unknown;
      try {
        await OpenEnvWs.connect(`${secured.url}/t/wrong-token`);
      } catch (err) {
        wrongPath = err;
      }
      expect(String(wrongPath)).to.match(/401/);
      expect((await fetch(`${secured.url}/metadata`)).status).to.equal(200);
      expect((await fetch(`${secured.url}/state`)).status).to.equal(401);
    } finally {
      await secured.close();
    }
  });
});
