import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { expect } from 'chai';
import { startServing, type Serving } from '../../cli/serve.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import { cliCheck, scenarioWith, useServedDemoRun, withMcp } from '../helpers/env-server-clients.js';
import { silentLogger, type Fleet } from '../helpers/integration.js';

const call = async (url: string, name: string, args: Record<string, unknown>, token: string | null = null) => (await withMcp(url, c => c.callTool({ name, arguments: args }), token)) as CallToolResult;
const textOf = (r: CallToolResult) => (r.content[0] as { type: 'text'; text: string }).text;

async function openSession(base: string, scenarioId: string, token: string | null = null) {
  const res = await fetch(`${base}/sessions`, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify({ scenario_id: scenarioId }) });
  return { status: res.status, json: (await res.json()) as { session_id: string; mcp_url: string; tools: string[]; error?: { code: string } } };
}

async function verify(base: string, sessionId: string) {
  const res = await fetch(`${base}/sessions/${sessionId}/verify`, { method: 'POST' });
  return { status: res.status, json: (await res.json()) as { reward: number; reward_components: Record<string, number>; envfleet: { reward: number; solved: boolean; checks: { passed: boolean }[]; final_state: unknown; ended_by: string; calls: number } } };
}

describe('envfleet serve: the MCP surface, Streamable HTTP per session (real Redis, real sandbox pool, the official MCP client)', function () {
  let f: Fleet;
  let serving: Serving;
  let scenarios: ScenarioRecord[];
  useServedDemoRun('s1', 4, run => ({ f, serving, scenarios } = run));
  const byTask = (needle: string) => scenarioWith(scenarios, needle);

  it('lists the tools with their JSON Schemas and drives a scenario to its reward, reconnecting per call; the reward is what the checks give on the same final state', async () => {
    const iris = byTask('Iris Vance');
    const opened = await openSession(serving.url, iris.id);
    expect(opened.status).to.equal(201);
    const { session_id: id, mcp_url: url } = opened.json;
    expect(url).to.equal(`${serving.url}/sessions/${id}/mcp`);

    const listed = await withMcp(url, c => c.listTools());
    const names = listed.tools.map(t => t.name);
    expect(names).to.include.members(['get_member', 'return_book', 'pay_fine', 'borrow_book']);
    const payFine = listed.tools.find(t => t.name === 'pay_fine')!;
    expect(payFine.inputSchema.type).to.equal('object');
    expect(payFine.inputSchema.properties).to.have.property('amount');
    const instructions = await withMcp(url, c => Promise.resolve(c.getInstructions()));
    expect(instructions).to.equal(iris.task);

    const member = await call(url, 'get_member', { member_id: 'M7' });
    expect(member.isError).to.equal(false);
    expect(textOf(member)).to.include('Iris Vance');
    expect(member.structuredContent, 'an object result comes as structuredContent too').to.deep.equal(JSON.parse(textOf(member)));
    expect(textOf(await call(url, 'return_book', { loan_id: 'L21' }))).to.match(/Returned 5 days late/);
    expect(textOf(await call(url, 'pay_fine', { member_id: 'M7', amount: 2.5 }))).to.match(/Paid 2\.5; 0 left/);
    const lent = await call(url, 'borrow_book', { member_id: 'M7', book_id: 'B5' });
    expect(textOf(lent)).to.match(/Lent Kindred to Iris Vance/);
    expect(lent.structuredContent).to.deep.include({ success: true });

    const v = await verify(serving.url, id);
    expect(v.status).to.equal(200);
    expect(v.json.reward).to.equal(1);
    expect(v.json.envfleet).to.include({ reward: 1, solved: true, ended_by: 'finished', calls: 4 });
    expect(Object.keys(v.json.reward_components)).to.deep.equal(iris.checklist!.map(c => c.item));
    // The reward is what `envfleet sandbox check` gives on the same final state.
    const checks = await cliCheck(iris, v.json.envfleet.final_state);
    expect(checks.reward).to.equal(v.json.reward);
    expect(checks.passed).to.deep.equal(v.json.envfleet.checks.map(c => c.passed));

    // Ended: verify again gives the kept result; the MCP endpoint answers a JSON-RPC error (410) before any transport.
    expect((await verify(serving.url, id)).json.reward).to.equal(1);
    let refused: unknown;
    try {
      await withMcp(url, c => c.listTools());
    } catch (err) {
      refused = err;
    }
    expect((refused as { code?: unknown }).code, String(refused)).to.equal(410);
    expect(String(refused)).to.match(/has ended/).and.to.include('-32002');
  });

  it('an unknown tool and wrong argument types come back as isError results and the session goes on; an unknown session is a JSON-RPC error', async () => {
    const iris = byTask('Iris Vance');
    const { json } = await openSession(serving.url, iris.id);
    const url = json.mcp_url;
    const unknown = await call(url, 'launch_rocket', {});
    expect(unknown.isError).to.equal(true);
    expect(textOf(unknown)).to.include('get_member');
    expect(unknown.structuredContent).to.include({ code: 'UNKNOWN_TOOL' });
    const wrong = await call(url, 'pay_fine', { member_id: 'M7', amount: '6' });
    expect(wrong.isError).to.equal(true);
    expect(wrong.structuredContent).to.include({ code: 'INVALID_ARGUMENTS', session_ended: false });
    expect(textOf(wrong)).to.match(/amount/);
    // The session still works.
    const member = await call(url, 'get_member', { member_id: 'M7' });
    expect(member.isError).to.equal(false);
    expect(textOf(member)).to.include('Iris Vance');
    expect(serving.registry.info(json.session_id).id).to.equal(json.session_id);

    // tools/call params that are not MCP's shape: -32602 (invalid params) saying what is wrong, not -32603 ("the
    // server failed") with a schema's dump; the session goes on. A body past 4 MB: a JSON-RPC error too.
    const post = async (message: unknown) => {
      const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: JSON.stringify(message) });
      return { status: r.status, body: (await r.json()) as { id: unknown; error?: { code: number; message: string; data?: Record<string, unknown> } } };
    };
    const asArray = await post({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'get_member', arguments: ['M7'] } });
    expect(asArray.body).to.deep.include({ id: 7 });
    expect(asArray.body.error).to.include({ code: -32602 });
    expect(asArray.body.error!.message).to.include('params.arguments to be an object').and.to.include('an array');
    expect((await post({ jsonrpc: '2.0', id: 8, method: 'tools/call', params: { name: 7, arguments: {} } })).body.error).to.include({ code: -32602 });
    expect((await post({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'get_member', arguments: 'M7' } })).body.error!.message).to.include('a string');
    const huge = await post({ jsonrpc: '2.0', id: 10, method: 'tools/call', params: { name: 'get_member', arguments: { member_id: 'x'.repeat(5 << 20) } } });
    expect(huge.status).to.equal(413);
    expect(huge.body.error).to.include({ code: -32600 });
    expect(huge.body.error!.data).to.include({ code: 'INVALID_REQUEST_BODY', max_bytes: 4 << 20 });
    expect(textOf(await call(url, 'get_member', { member_id: 'M7' }))).to.include('Iris Vance');

    // An unknown session: a JSON-RPC error with HTTP 404 before the transport.
    const raw = await fetch(`${serving.url}/sessions/00000000-0000-0000-0000-000000000000/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(raw.status).to.equal(404);
    const body = (await raw.json()) as { jsonrpc: string; error: { code: number; message: string; data: { code: string } } };
    expect(body).to.include({ jsonrpc: '2.0' });
    expect(body.error).to.include({ code: -32001 });
    expect(body.error.data.code).to.equal('UNKNOWN_SESSION');
    expect(body.error.message).to.match(/POST \/sessions/);
    const unknownScenario = await openSession(serving.url, 'no-such-scenario');
    expect(unknownScenario.status).to.equal(404);
    expect(unknownScenario.json.error?.code).to.equal('UNKNOWN_SCENARIO');

    const closed = await fetch(`${serving.url}/sessions/${json.session_id}`, { method: 'DELETE' });
    expect(((await closed.json()) as { ended_by: string }).ended_by).to.equal('closed');
  });

  it('multi-byte text round-trips through MCP', async () => {
    const gx = byTask('GX-310');
    const { json } = await openSession(serving.url, gx.id);
    const plate = 'ÄÖ-漢字-🚗';
    const parked = await call(json.mcp_url, 'enter_vehicle', { plate, size: 'compact' });
    expect(parked.isError).to.equal(false);
    expect(parked.structuredContent).to.deep.include({ success: true });
    expect(textOf(parked)).to.include(`${plate} parked in`);
    const v = await verify(serving.url, json.session_id);
    expect(JSON.stringify(v.json.envfleet.final_state)).to.include(plate);
    expect(serving.registry.stats().active).to.equal(0);
  });

  it('takes the same token as the rest of the server', async () => {
    const secured = await startServing(f.config, silentLogger(), { run: 's1', port: 0, host: '127.0.0.1', maxSessions: 1, idleTimeout: 0, token: 'sekrit-token' });
    try {
      expect((await openSession(secured.url, byTask('GX-310').id)).status).to.equal(401);
      const { json } = await openSession(secured.url, byTask('GX-310').id, 'sekrit-token');
      let refused: unknown;
      try {
        await withMcp(json.mcp_url, c => c.listTools());
      } catch (err) {
        refused = err;
      }
      expect((refused as { code?: unknown }).code, String(refused)).to.equal(401);
      expect(String(refused)).to.include('UNAUTHORIZED');
      const tools = await withMcp(json.mcp_url, c => c.listTools(), 'sekrit-token');
      expect(tools.tools.map(t => t.name)).to.include('enter_vehicle');
    } finally {
      await secured.close();
    }
  });
});
