import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { expect } from 'chai';
import WebSocket from 'ws';
import { startServing } from '../../cli/serve.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import { errorOf, LatestCookieClient, scenarioWith, withMcp } from '../helpers/env-server-clients.js';
import { buildDemoRun, exited, silentLogger, spawnServe, useFleet, type Fleet, type ServeProcess } from '../helpers/integration.js';

/**
 * A serve process stopped gracefully (SIGTERM: a rolling restart, a scale-down, a preemption) ends its live
 * sessions, but that ending is the server's doing, not the agent's: the episode has no reward. Before, the stop
 * scored the partial episode (the checks on its state) and the trainer got that reward as if the agent had
 * finished: /ws clients `done: true` with it, and verify through another process the kept scored result. Now each
 * surface answers SESSION_INTERRUPTED (HTTP 503, `session_ended`, `ended_by: shutdown`), as SESSION_EVICTED for a
 * session the server's load cut. Real `envfleet serve` processes on real Redis, real HTTP, the MCP SDK client,
 * the `ws` client. No timing assertions.
 */

interface WsMessage {
  readonly type: string;
  readonly data: Record<string, unknown>;
}

/** A /ws client that keeps every message and how the socket closed. */
class WsClient {
  readonly messages: WsMessage[] = [];
  readonly ws: WebSocket;
  readonly closed: Promise<number>;
  private waiter: (() => void) | null = null;
  constructor(base: string) {
    this.ws = new WebSocket(`${base.replace(/^http/, 'ws')}/ws`);
    this.closed = new Promise(resolve => this.ws.once('close', code => resolve(code)));
    this.ws.on('message', (raw: Buffer) => {
      this.messages.push(JSON.parse(raw.toString('utf8')) as WsMessage);
      this.waiter?.();
    });
  }
  async open(): Promise<void> {
    if (this.ws.readyState === WebSocket.OPEN) return;
    await new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    });
  }
  /** Sends a message and returns the reply (the next message). */
  async send(msg: unknown): Promise<WsMessage> {
    const before = this.messages.length;
    this.ws.send(JSON.stringify(msg));
    while (this.messages.length === before) await new Promise<void>(resolve => (this.waiter = resolve));
    return this.messages[before]!;
  }
}

async function post(url: string, body: unknown) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, headers: res.headers, json: (await res.json()) as Record<string, unknown> };
}

/** What every surface says of a session the stop cut: no reward, play the scenario again. */
function expectInterrupted(error: Record<string, unknown>, scenarioId: string) {
  expect(error, JSON.stringify(error)).to.include({ session_ended: true, ended_by: 'shutdown', scenario_id: scenarioId });
  expect(String(error['message'])).to.match(/the server stopped during the episode/).and.to.match(new RegExp(`play scenario ${scenarioId} again in a new session`));
}

describe("envfleet serve: sessions cut by the server's graceful stop get no reward (SESSION_INTERRUPTED), on every surface and through every process", function () {
  const fleet = useFleet('suite');
  let f: Fleet;
  let scenarios: ScenarioRecord[];
  const byTask = (needle: string) => scenarioWith(scenarios, needle);

  before(async function () {
    f = await fleet();
    scenarios = await buildDemoRun(f, 'sd1');
    await f.stopWorkers();
  });

  describe('SIGTERM on a process holding a NeMo Gym, an MCP, an OpenEnv POST /mcp and a /ws session, part-way through their episodes', function () {
    let a: ServeProcess;
    let b: ServeProcess;
    let iris: ScenarioRecord;
    let gx: ScenarioRecord;
    let gymCookie: string | null;
    let mcpId: string;
    let rpcId: string;
    let wsId: string;
    let ws: WsClient;
    let closeCode: number;

    before(async function () {
      [a, b] = await Promise.all([spawnServe(f, ['--port', '0', '--run', 'sd1', '--max-sessions', '8']), spawnServe(f, ['--port', '0', '--run', 'sd1', '--max-sessions', '8'])]);
      iris = byTask('Iris Vance');
      gx = byTask('GX-310');

      // NeMo Gym on a, part-way through the episode.
      const gym = new LatestCookieClient(a.url);
      expect((await gym.post('/seed_session', { scenario_id: iris.id })).headers.get('x-envfleet-server')).to.equal(a.id);
      expect((await gym.post('/return_book', { loan_id: 'L21' })).text).to.match(/Returned 5 days late/);
      expect((await gym.post('/pay_fine', { member_id: 'M7', amount: 2.5 })).status).to.equal(200);
      gymCookie = gym.cookie;

      // MCP on a, played with the official SDK client.
      const opened = await post(`${a.url}/sessions`, { scenario_id: gx.id });
      expect(opened.status).to.equal(201);
      mcpId = opened.json['session_id'] as string;
      const parked = (await withMcp(opened.json['mcp_url'] as string, c => c.callTool({ name: 'exit_vehicle', arguments: { ticket_id: 'T5' } }))) as CallToolResult;
      expect(parked.isError).to.equal(false);

      // OpenEnv's JSON-RPC POST /mcp session on a.
      const created = await post(`${a.url}/mcp`, { jsonrpc: '2.0', id: 1, method: 'openenv/session/create', params: { scenario_id: gx.id } });
      rpcId = (created.json['result'] as { session_id: string }).session_id;
      const rpcCall = await post(`${a.url}/mcp`, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { session_id: rpcId, name: 'exit_vehicle', arguments: { ticket_id: 'T5' } } });
      expect(JSON.stringify(rpcCall.json['result'])).to.match(/GX-310 left S9/);

      // OpenEnv /ws on a: reset and a step, then the client thinks (no message in flight) when the stop comes.
      ws = new WsClient(a.url);
      await ws.open();
      const reset = await ws.send({ type: 'reset', data: { scenario_id: iris.id } });
      expect(reset.type, JSON.stringify(reset)).to.equal('observation');
      wsId = (reset.data['observation'] as { session_id: string }).session_id;
      const step = await ws.send({ type: 'step', data: { type: 'call_tool', tool_name: 'return_book', arguments: { loan_id: 'L21' } } });
      expect(step.data).to.include({ done: false, reward: null });

      a.child.kill('SIGTERM');
      closeCode = await ws.closed;
      await exited(a.child);
    });
    after(async () => {
      b.child.kill('SIGTERM');
      await exited(b.child);
    });

    it('the process exits 0, and the /ws client is told its episode was cut (an error OpenEnv\'s clients raise), never `done: true` with a reward', () => {
      expect(a.child.exitCode).to.equal(0);
      expect(ws.messages, 'reset, step, then one message from the stop').to.have.length(3);
      const atStop = ws.messages[2]!;
      expect(atStop.type, JSON.stringify(atStop)).to.equal('error');
      expect(atStop.data).to.include({ code: 'SESSION_ERROR', envfleet_code: 'SESSION_INTERRUPTED' });
      expect(atStop.data).to.not.have.property('reward');
      expectInterrupted(atStop.data, iris.id);
      expect(closeCode).to.equal(1001);
    });

    it('NeMo Gym: verify through the other process (the result is in the directory) is 503 SESSION_INTERRUPTED, with no reward; a tool call and DELETE say so too', async () => {
      const viaB = new LatestCookieClient(b.url);
      viaB.cookie = gymCookie;
      const verified = await viaB.post('/verify', { responses_create_params: { input: [] } });
      expect(verified.status, verified.text).to.equal(503);
      expect(verified.headers.get('x-envfleet-server')).to.equal(b.id);
      expect(verified.json).to.not.have.property('reward');
      expect(errorOf(verified).code).to.equal('SESSION_INTERRUPTED');
      expectInterrupted(errorOf(verified), iris.id);
      // A tool call: the session has ended, and the message says it has no reward.
      viaB.cookie = gymCookie;
      const refused = await viaB.post('/get_member', { member_id: 'M7' });
      expect(refused.status).to.equal(410);
      expect(errorOf(refused).code).to.equal('SESSION_CLOSED');
      expect(errorOf(refused).message).to.match(/no reward \(its result says SESSION_INTERRUPTED\)/);
      // DELETE shows how it ended: by the stop, reward null, no check run; the final state kept.
      viaB.cookie = gymCookie;
      const closed = await viaB.send('DELETE', '/session');
      expect(closed.status).to.equal(200);
      expect(closed.json).to.include({ ended_by: 'shutdown', reward: null, solved: false, calls: 2 });
      expect(closed.json['checks']).to.deep.equal([]);
      expect(closed.json['checks_error']).to.match(/not scored: the server stopped during the episode/);
      expect(JSON.stringify(closed.json['final_state'])).to.include('L21');
    });

    it('MCP: POST /sessions/{id}/verify through the other process is 503 SESSION_INTERRUPTED, for the MCP session and for the /ws one', async () => {
      for (const [id, scenario] of [[mcpId, gx.id], [wsId, iris.id]] as const) {
        const v = await post(`${b.url}/sessions/${id}/verify`, {});
        expect(v.status, JSON.stringify(v.json)).to.equal(503);
        expect(v.json).to.not.have.property('reward');
        const error = v.json['error'] as Record<string, unknown>;
        expect(error['code']).to.equal('SESSION_INTERRUPTED');
        expectInterrupted(error, scenario);
      }
    });

    it("OpenEnv POST /mcp: openenv/session/close through the other process is a -32000 JSON-RPC error (SESSION_INTERRUPTED), not {closed, reward}", async () => {
      const rpcClose = await post(`${b.url}/mcp`, { jsonrpc: '2.0', id: 3, method: 'openenv/session/close', params: { session_id: rpcId } });
      expect(rpcClose.status).to.equal(200);
      expect(rpcClose.json).to.not.have.property('result');
      const rpcError = rpcClose.json['error'] as { code: number; message: string; data: Record<string, unknown> };
      expect(rpcError.code).to.equal(-32000);
      expect(rpcError.data['code']).to.equal('SESSION_INTERRUPTED');
      expectInterrupted({ ...rpcError.data, message: rpcError.message }, gx.id);
    });

    it('the directory keeps the results as ended by the stop, with no reward; the process that stays scores its own sessions as usual', async () => {
      for (const id of [mcpId, rpcId, wsId]) {
        const kept = JSON.parse((await f.redis.get(`${f.config.redis.prefix}:serve:res:${id}`))!) as Record<string, unknown>;
        expect(kept).to.include({ endedBy: 'shutdown', reward: null, solved: false });
      }
      const fresh = new LatestCookieClient(b.url);
      await fresh.post('/seed_session', { scenario_id: gx.id });
      await fresh.post('/exit_vehicle', { ticket_id: 'T5' });
      const scored = await fresh.post('/verify', {});
      expect(scored.status).to.equal(200);
      expect(scored.json['reward']).to.be.a('number');
    });
  });

  it('/ws: a step, the finish action and state after the stop has cut the session (the connection not yet closed) give no reward', async () => {
    const serving = await startServing(f.config, silentLogger(), { run: 'sd1', port: 0, host: '127.0.0.1', maxSessions: 4, idleTimeout: 600_000 });
    try {
      const iris = byTask('Iris Vance');
      const ws = new WsClient(serving.url);
      await ws.open();
      expect((await ws.send({ type: 'reset', data: { scenario_id: iris.id } })).type).to.equal('observation');
      expect((await ws.send({ type: 'step', data: { type: 'call_tool', tool_name: 'return_book', arguments: { loan_id: 'L21' } } })).data).to.include({ done: false });
      // The first step of the stop (cli/serve.ts closes the registry before the listener): the sessions end.
      await serving.registry.closeAll();
      // A step that arrives meanwhile: before, `done: true` with the checks' reward on the partial state.
      const step = await ws.send({ type: 'step', data: { type: 'call_tool', tool_name: 'pay_fine', arguments: { member_id: 'M7', amount: 2.5 } } });
      expect(step.type, JSON.stringify(step)).to.equal('error');
      expect(step.data).to.include({ code: 'SESSION_ERROR', envfleet_code: 'SESSION_INTERRUPTED' });
      expectInterrupted(step.data, iris.id);
      const finish = await ws.send({ type: 'step', data: { type: 'call_tool', tool_name: '__envfleet_finish__' } });
      expect(finish.type).to.equal('error');
      expect(finish.data).to.include({ envfleet_code: 'SESSION_INTERRUPTED' });
      const state = await ws.send({ type: 'state' });
      expect(state.data).to.include({ done: true, reward: null });
      const mcp = await ws.send({ type: 'mcp', data: { jsonrpc: '2.0', id: 9, method: 'tools/list' } });
      expect((mcp.data['error'] as { code: number; data: { code: string } }).data.code).to.equal('SESSION_INTERRUPTED');
      ws.ws.send(JSON.stringify({ type: 'close' }));
      expect(await ws.closed).to.equal(1000);
      expect(ws.messages.filter(m => m.type === 'observation' && m.data['done'] === true), 'no observation ended the episode with a reward').to.deep.equal([]);
    } finally {
      await serving.close();
    }
  });
});
