import { once } from 'node:events';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { expect } from 'chai';
import WebSocket from 'ws';
import { exportRun } from '../../src/datasets/export.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import { errorOf, LatestCookieClient, scenarioWith, withMcp } from '../helpers/env-server-clients.js';
import { buildDemoRun, exited, spawnServe, useFleet, type Fleet, type ServeProcess } from '../helpers/integration.js';

const servedBy = (headers: Headers) => headers.get('x-envfleet-server');

async function post(url: string, body: unknown) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, headers: res.headers, json: (await res.json()) as Record<string, unknown> };
}

describe('envfleet serve: several serve processes sharing one Redis (real processes, real Redis, real clients)', function () {
  const fleet = useFleet('suite');
  let f: Fleet;
  let scenarios: ScenarioRecord[];
  let a: ServeProcess;
  let b: ServeProcess;
  const byTask = (needle: string) => scenarioWith(scenarios, needle);

  before(async function () {
    f = await fleet();
    scenarios = await buildDemoRun(f, 'fl1');
    await f.stopWorkers();
    [a, b] = await Promise.all([spawnServe(f, ['--port', '0', '--run', 'fl1', '--max-sessions', '2']), spawnServe(f, ['--port', '0', '--run', 'fl1', '--max-sessions', '2'])]);
  });

  it('a NeMo Gym session seeded through one process is driven and verified through the other, with the reward it gets on one process', async () => {
    const iris = byTask('Iris Vance');
    // Alone on one process first: the reference reward and final state.
    const alone = new LatestCookieClient(a.url);
    await alone.post('/seed_session', { scenario_id: iris.id });
    await alone.post('/return_book', { loan_id: 'L21' });
    await alone.post('/pay_fine', { member_id: 'M7', amount: 2.5 });
    const reference = await alone.post('/verify', {});

    const c = new LatestCookieClient(a.url);
    const seeded = await c.post('/seed_session', { scenario_id: iris.id });
    expect(servedBy(seeded.headers)).to.equal(a.id);
    const session = c.cookie;
    // Every later request goes to b, which does not hold the session: forwarded to a, answered as a would.
    const other = new LatestCookieClient(b.url);
    other.cookie = session;
    const returned = await other.post('/return_book', { loan_id: 'L21' });
    expect(returned.status, returned.text).to.equal(200);
    expect(servedBy(returned.headers), 'answered by the process holding the session').to.equal(a.id);
    expect(returned.text).to.match(/Returned 5 days late/);
    expect(other.cookie, 'the cookie comes back through the forward').to.equal(session);
    const wrong = await other.post('/pay_fine', { member_id: 'M7', amount: 'two' });
    expect(wrong.status).to.equal(400);
    expect(errorOf(wrong).code).to.equal('INVALID_ARGUMENTS');
    expect((await other.post('/pay_fine', { member_id: 'M7', amount: 2.5 })).status).to.equal(200);
    const verified = await other.post('/verify', {});
    expect(verified.status).to.equal(200);
    expect(verified.json['reward']).to.equal(reference.json['reward']);
    expect((verified.json['envfleet'] as { final_state: unknown }).final_state).to.deep.equal((reference.json['envfleet'] as { final_state: unknown }).final_state);
    // The ended session's result is in the directory: b answers verify and refuses tools itself, in its own shapes.
    const b2 = new LatestCookieClient(b.url);
    b2.cookie = session;
    const again = await b2.post('/verify', {});
    expect(again.json['reward']).to.equal(reference.json['reward']);
    expect(servedBy(again.headers)).to.equal(b.id);
    b2.cookie = session;
    const closed = await b2.post('/get_member', { member_id: 'M7' });
    expect(closed.status).to.equal(410);
    expect(errorOf(closed).code).to.equal('SESSION_CLOSED');
  });

  it('an MCP session opened on one process is played through the other by the official client reconnecting per call; OpenEnv POST /mcp too', async () => {
    const gx = byTask('GX-310');
    const opened = await post(`${b.url}/sessions`, { scenario_id: gx.id });
    expect(opened.status).to.equal(201);
    expect(servedBy(opened.headers)).to.equal(b.id);
    const sid = opened.json['session_id'] as string;
    const viaA = `${a.url}/sessions/${sid}/mcp`;
    const tools = await withMcp(viaA, c => c.listTools());
    expect(tools.tools.map(t => t.name)).to.include('enter_vehicle');
    const plate = 'ÄÖ-漢字-🚗';
    const parked = (await withMcp(viaA, c => c.callTool({ name: 'enter_vehicle', arguments: { plate, size: 'compact' } }))) as CallToolResult;
    expect(parked.isError).to.equal(false);
    expect((parked.content[0] as { text: string }).text).to.include(`${plate} parked in`);
    const unknownTool = (await withMcp(viaA, c => c.callTool({ name: 'launch_rocket', arguments: {} }))) as CallToolResult;
    expect(unknownTool.isError).to.equal(true);
    // OpenEnv's JSON-RPC endpoint, naming the session in its params, through a.
    const rpc = await post(`${a.url}/mcp`, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { session_id: sid, name: 'exit_vehicle', arguments: { ticket_id: 'T5' } } });
    expect(servedBy(rpc.headers)).to.equal(b.id);
    expect(JSON.stringify(rpc.json['result'])).to.match(/GX-310 left S9/);
    const verified = await post(`${a.url}/sessions/${sid}/verify`, {});
    expect(verified.status).to.equal(200);
    // Two tool calls (an unknown tool is refused before the environment and does not count).
    expect((verified.json['envfleet'] as { ended_by: string; calls: number }).calls).to.equal(2);
    expect(JSON.stringify((verified.json['envfleet'] as { final_state: unknown }).final_state)).to.include(plate);
  });

  it('a forwarded body keeps its bytes and its charset: the holder reads it as the first process would have', async () => {
    const gx = byTask('GX-310');
    const onA = new LatestCookieClient(a.url);
    expect(servedBy((await onA.post('/seed_session', { scenario_id: gx.id })).headers)).to.equal(a.id);
    const viaB = async (body: Buffer, type: string) => {
      const res = await fetch(`${b.url}/enter_vehicle`, { method: 'POST', headers: { 'content-type': type, cookie: onA.cookie! }, body });
      return { status: res.status, text: await res.text(), by: servedBy(res.headers) };
    };
    const latin1 = Buffer.from('{"plate": "Café-2", "size": "compact"}', 'latin1');
    const parked = await viaB(latin1, 'application/json; charset=latin1');
    expect(parked.status, parked.text).to.equal(200);
    expect(parked.by).to.equal(a.id);
    expect(parked.text).to.include('Café-2 parked in');
    const refused = await viaB(latin1, 'application/json');
    expect(refused.status, refused.text).to.equal(400);
    expect(refused.text).to.include(`byte 0xE9 at byte ${latin1.indexOf(0xe9)} of the body`);
    expect((await onA.send('DELETE', '/session')).status).to.equal(200);
  });

  it('never forwards a request to another origin (a path such as //host/… or an absolute-form target), and a broken cookie is no session', async () => {
    // A listener that must never be reached.
    let reached = 0;
    const sink = createServer((_req, res) => {
      reached += 1;
      res.end('secret');
    });
    sink.listen(0, '127.0.0.1');
    await once(sink, 'listening');
    const sinkPort = (sink.address() as AddressInfo).port;
    try {
      const c = new LatestCookieClient(a.url);
      await c.post('/seed_session', { scenario_id: byTask('GX-310').id });
      const cookie = c.cookie!;
      const origin = new URL(b.url);
      // //host/… through the peer that would forward (fetch keeps the double slash in the path).
      const viaPath = await fetch(`${b.url}//127.0.0.1:${sinkPort}/steal`, { headers: { cookie } });
      expect(await viaPath.text()).to.not.include('secret');
      expect(viaPath.status).to.be.within(400, 499);
      // An absolute-form request target, written on a raw socket.
      const raw = await new Promise<string>((resolve, reject) => {
        const socket = connect(Number(origin.port), origin.hostname, () => socket.write(`GET http://127.0.0.1:${sinkPort}/absolute HTTP/1.1\r\nHost: ${origin.host}\r\nCookie: ${cookie}\r\nConnection: close\r\n\r\n`));
        let text = '';
        socket.on('data', d => (text += d.toString()));
        socket.on('end', () => resolve(text));
        socket.on('error', reject);
      });
      expect(raw).to.not.include('secret');
      expect(reached, 'the sink was never reached').to.equal(0);
      await c.send('DELETE', '/session');
      // A cookie whose escapes are broken is no session, not a server error.
      const health = await fetch(`${b.url}/health`, { headers: { cookie: 'envfleet_session=%E0%A4%A' } });
      expect(health.status).to.equal(200);
      const bad = new LatestCookieClient(b.url);
      bad.cookie = 'envfleet_session=%E0%A4%A';
      expect(errorOf(await bad.post('/exit_vehicle', {})).code).to.equal('UNKNOWN_SESSION');
    } finally {
      sink.close();
    }
  });

  it('a full process opens the session on a peer with room (its mcp_url the address the client used); a full /ws says where there is room; when all are full the answer is OVER_CAPACITY', async () => {
    const gx = byTask('GX-310');
    const clients = Array.from({ length: 4 }, () => new LatestCookieClient(a.url));
    const seeds = [];
    for (const c of clients.slice(0, 2)) seeds.push(await c.post('/seed_session', { scenario_id: gx.id }));
    expect(seeds.map(s => servedBy(s.headers))).to.deep.equal([a.id, a.id]);
    // a is full: an OpenEnv reset there cannot be forwarded (a WebSocket), so it says where there is room.
    const ws = new WebSocket(`${a.url.replace(/^http/, 'ws')}/ws`);
    await once(ws, 'open');
    ws.send(JSON.stringify({ type: 'reset', data: { scenario_id: gx.id } }));
    const [raw] = (await once(ws, 'message')) as [Buffer];
    ws.close();
    const refused = JSON.parse(raw.toString('utf8')) as { type: string; data: { code: string; room_at?: string[]; message: string } };
    expect(refused.type).to.equal('error');
    expect(refused.data.code).to.equal('CAPACITY_REACHED');
    expect(refused.data.room_at).to.deep.equal([b.url]);
    expect(refused.data.message).to.include(b.url);
    // POST /sessions on the full a lands on b; the MCP address it returns is the one the client used (a's), which forwards.
    const opened = await post(`${a.url}/sessions`, { scenario_id: gx.id });
    expect(opened.status).to.equal(201);
    expect(servedBy(opened.headers)).to.equal(b.id);
    expect(opened.json['mcp_url']).to.equal(`${a.url}/sessions/${opened.json['session_id'] as string}/mcp`);
    expect((await withMcp(opened.json['mcp_url'] as string, c => c.listTools())).tools.map(t => t.name)).to.include('exit_vehicle');
    seeds.push(await clients[2]!.post('/seed_session', { scenario_id: gx.id }));
    expect(servedBy(seeds[2]!.headers)).to.equal(b.id);
    const full = await clients[3]!.post('/seed_session', { scenario_id: gx.id });
    expect(full.status).to.equal(503);
    expect(errorOf(full)).to.include({ code: 'OVER_CAPACITY', active: 2, max: 2 });
    // The sessions opened on b are played through a.
    for (const c of clients.slice(0, 3)) expect((await c.post('/exit_vehicle', { ticket_id: 'T5' })).text).to.match(/GX-310 left S9/);
    for (const c of clients.slice(0, 3)) expect((await c.send('DELETE', '/session')).status).to.equal(200);
    expect((await fetch(`${a.url}/sessions/${opened.json['session_id'] as string}`, { method: 'DELETE' })).status).to.equal(200);
  });

  it('a full process whose roomiest peer filled up since its heartbeat asks the next one: a peer\'s OVER_CAPACITY is not the answer while another has room', async () => {
    const gx = byTask('GX-310');
    // A peer whose heartbeat says it has the most room but that answers OVER_CAPACITY, as one that filled up since its
    // last beat (a third of the heartbeat's TTL ago) does.
    let asked = 0;
    const stale = createServer((req, res) => {
      asked += 1;
      req.resume();
      req.on('end', () => {
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
        res.end(JSON.stringify({ error: { code: 'OVER_CAPACITY', message: 'the server holds 9 sessions, its maximum (--max-sessions 9)', active: 9, max: 9 } }));
      });
    });
    await new Promise<void>(resolve => stale.listen(0, '127.0.0.1', resolve));
    const staleUrl = `http://127.0.0.1:${(stale.address() as AddressInfo).port}`;
    const keys = `${f.config.redis.prefix}:serve`;
    const entryOfA = JSON.parse((await f.redis.get(`${keys}:srv:${a.id}`))!) as { serves: string; content: string };
    await f.redis.set(`${keys}:srv:stale-peer`, JSON.stringify({ id: 'stale-peer', url: staleUrl, serves: entryOfA.serves, content: entryOfA.content, active: 0, max: 9 }), 'PX', 120_000);
    await f.redis.sadd(`${keys}:servers`, 'stale-peer');
    const clients = Array.from({ length: 3 }, () => new LatestCookieClient(a.url));
    try {
      for (const c of clients.slice(0, 2)) expect(servedBy((await c.post('/seed_session', { scenario_id: gx.id })).headers)).to.equal(a.id);
      const third = await clients[2]!.post('/seed_session', { scenario_id: gx.id });
      expect(third.status, third.text).to.equal(200);
      expect(servedBy(third.headers)).to.equal(b.id);
      expect(asked, 'the stale peer was asked first').to.equal(1);
      const opened = await post(`${a.url}/sessions`, { scenario_id: gx.id });
      expect(opened.status).to.equal(201);
      expect(servedBy(opened.headers)).to.equal(b.id);
      expect(asked).to.equal(2);
      // Every process full now (b holds two): a's own OVER_CAPACITY names no peer that has just refused, though the
      // stale peer's heartbeat still says 0 of 9 (room_at listed it)
      const none = await post(`${a.url}/sessions`, { scenario_id: gx.id });
      expect(none.status, JSON.stringify(none.json)).to.equal(503);
      const error = none.json['error'] as { code: string; room_at?: string[]; message: string };
      expect(error.code).to.equal('OVER_CAPACITY');
      expect(error.room_at ?? [], 'no peer that refused').to.not.include(staleUrl);
      expect(error.message).to.not.include(staleUrl);
      expect((await fetch(`${a.url}/sessions/${opened.json['session_id'] as string}`, { method: 'DELETE' })).status).to.equal(200);
    } finally {
      await f.redis.del(`${keys}:srv:stale-peer`);
      await f.redis.srem(`${keys}:servers`, 'stale-peer');
      stale.close();
      for (const c of clients) if (c.cookie) await c.send('DELETE', '/session');
    }
  });

  it('an export served under the run\'s name is not the run: a full process sends no new session to it; two processes serving the same export files do share', async () => {
    const gx = byTask('GX-310');
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-fleet-export-'));
    await exportRun(f.store, 'fl1', dir, { formats: [] });
    // The same export with one scenario's task edited: its lines still name run fl1.
    const edited = (await readFile(join(dir, 'scenarios.jsonl'), 'utf8')).split('\n').map(line => {
      if (!line.includes(gx.id)) return line;
      const s = JSON.parse(line) as { task: string };
      return JSON.stringify({ ...s, task: `${s.task} — geändert 🚗 駐車場` });
    });
    const editedDir = await mkdtemp(join(tmpdir(), 'envfleet-fleet-edited-'));
    await writeFile(join(editedDir, 'scenarios.jsonl'), edited.join('\n'));
    const files = ['--environments', join(dir, 'environments.jsonl'), '--scenarios', join(editedDir, 'scenarios.jsonl'), '--max-sessions', '2'];
    const [e1, e2] = await Promise.all([spawnServe(f, ['--port', '0', ...files]), spawnServe(f, ['--port', '0', ...files])]);
    const clients: LatestCookieClient[] = [];
    try {
      // a and b full (two sessions each), on the run itself.
      for (const at of [a.url, a.url, b.url, b.url]) {
        const c = new LatestCookieClient(at);
        clients.push(c);
        const seeded = await c.post('/seed_session', { scenario_id: gx.id });
        expect(servedBy(seeded.headers)).to.equal(at === a.url ? a.id : b.id);
      }
      // The edited export's processes have room, but serve something else under the run's name: no forwarding there.
      const overA = new LatestCookieClient(a.url);
      const full = await overA.post('/seed_session', { scenario_id: gx.id });
      expect(full.status, full.text).to.equal(503);
      expect(errorOf(full)).to.include({ code: 'OVER_CAPACITY' });
      const opened = await post(`${a.url}/sessions`, { scenario_id: gx.id });
      expect(opened.status).to.equal(503);
      const ws = new WebSocket(`${a.url.replace(/^http/, 'ws')}/ws`);
      await once(ws, 'open');
      ws.send(JSON.stringify({ type: 'reset', data: { scenario_id: gx.id } }));
      const [raw] = (await once(ws, 'message')) as [Buffer];
      ws.close();
      const refused = JSON.parse(raw.toString('utf8')) as { type: string; data: { code: string; room_at?: string[] } };
      expect(refused.type).to.equal('error');
      expect(refused.data.room_at ?? []).to.not.include.members([e1.url, e2.url]);
      // The two processes of the same export files are one source: a full e1 opens the session on e2, with the edited task.
      for (let i = 0; i < 2; i++) {
        const c = new LatestCookieClient(e1.url);
        clients.push(c);
        expect(servedBy((await c.post('/seed_session', { scenario_id: gx.id })).headers)).to.equal(e1.id);
      }
      const overE1 = new LatestCookieClient(e1.url);
      clients.push(overE1);
      const moved = await overE1.post('/seed_session', { scenario_id: gx.id });
      expect(moved.status, moved.text).to.equal(200);
      expect(servedBy(moved.headers)).to.equal(e2.id);
      expect(moved.text).to.include('geändert 🚗 駐車場');
    } finally {
      for (const c of clients) if (c.cookie) await c.send('DELETE', '/session');
      e1.child.kill('SIGTERM');
      e2.child.kill('SIGTERM');
      await Promise.all([exited(e1.child), exited(e2.child)]);
    }
  });

  it('a session of a process that is killed is SESSION_LOST through the other; one of a process that stops is ended and verified through the other', async () => {
    const gx = byTask('GX-310');
    const stopping = new LatestCookieClient(a.url);
    const onA = await stopping.post('/seed_session', { scenario_id: gx.id });
    expect(servedBy(onA.headers)).to.equal(a.id);
    const killed = new LatestCookieClient(b.url);
    expect(servedBy((await killed.post('/seed_session', { scenario_id: gx.id })).headers)).to.equal(b.id);
    await stopping.post('/exit_vehicle', { ticket_id: 'T5' });
    const sessionOnA = stopping.cookie;

    const killedId = decodeURIComponent(killed.cookie!.split('=')[1]!);
    b.child.kill('SIGKILL');
    await exited(b.child);
    // Its heartbeat has not expired yet: the forward finds nobody, which may be a stall, so the answer is retryable, in each surface's shape.
    const viaA = new LatestCookieClient(a.url);
    viaA.cookie = killed.cookie;
    const unreachable = await viaA.post('/exit_vehicle', { ticket_id: 'T5' });
    expect(unreachable.status).to.equal(502);
    expect(unreachable.headers.get('retry-after')).to.equal('2');
    expect(errorOf(unreachable).code).to.equal('PEER_UNREACHABLE');
    expect(errorOf(unreachable).message).to.match(/did not answer/);
    const mcpUnreachable = await post(`${a.url}/sessions/${killedId}/mcp`, { jsonrpc: '2.0', id: 7, method: 'tools/list', params: {} });
    expect(mcpUnreachable.status).to.equal(502);
    expect(mcpUnreachable.json).to.deep.include({ jsonrpc: '2.0', id: 7 });
    expect((mcpUnreachable.json['error'] as { code: number; data: { code: string } }).data.code).to.equal('PEER_UNREACHABLE');
    const rpcUnreachable = await post(`${a.url}/mcp`, { jsonrpc: '2.0', id: 8, method: 'tools/list', params: { session_id: killedId } });
    expect(rpcUnreachable.status, 'OpenEnv POST /mcp answers 200 with a JSON-RPC error').to.equal(200);
    expect(rpcUnreachable.json).to.deep.include({ jsonrpc: '2.0', id: 8 });
    expect((rpcUnreachable.json['error'])).to.deep.include({ code: -32603 });

    // A third process joins; a stops gracefully: its session ends (shutdown), not scored (the stop cut it), and the new process says so.
    const c = await spawnServe(f, ['--port', '0', '--run', 'fl1', '--max-sessions', '2']);
    // An OpenEnv client on a: the stop ends its episode, and it is told so (no reward) before the socket closes.
    const ws = new WebSocket(`${a.url.replace(/^http/, 'ws')}/ws`);
    await once(ws, 'open');
    const messages: { type: string; data: Record<string, unknown> }[] = [];
    ws.on('message', (raw: Buffer) => messages.push(JSON.parse(raw.toString('utf8')) as (typeof messages)[number]));
    const wsClosed = once(ws, 'close');
    ws.send(JSON.stringify({ type: 'reset', data: { scenario_id: gx.id } }));
    while (messages.length === 0) await new Promise(resolve => setTimeout(resolve, 20));
    expect(messages[0]!.type, JSON.stringify(messages[0])).to.equal('observation');
    a.child.kill('SIGTERM');
    await wsClosed;
    expect(messages[1], 'the stop cut the episode: an error, no reward').to.deep.include({ type: 'error' });
    expect(messages[1]!.data).to.include({ code: 'SESSION_ERROR', envfleet_code: 'SESSION_INTERRUPTED', ended_by: 'shutdown' });
    await exited(a.child);
    expect(a.child.exitCode).to.equal(0);
    const viaC = new LatestCookieClient(c.url);
    viaC.cookie = sessionOnA;
    const result = await viaC.post('/verify', {});
    expect(result.status, result.text).to.equal(503);
    expect(errorOf(result)).to.include({ code: 'SESSION_INTERRUPTED', ended_by: 'shutdown', session_ended: true });
    viaC.cookie = sessionOnA;
    const refused = await viaC.post('/exit_vehicle', { ticket_id: 'T5' });
    expect(errorOf(refused).code).to.equal('SESSION_CLOSED');
    viaC.cookie = sessionOnA;
    expect((await viaC.send('DELETE', '/session')).json).to.include({ ended_by: 'shutdown', calls: 1, reward: null });
    // A directory entry naming a process whose heartbeat has expired (killed long ago): SESSION_LOST, in each surface's shape.
    const stale = '11111111-2222-3333-4444-555555555555';
    await f.redis.set(`${f.config.redis.prefix}:serve:sess:${stale}`, 'a-process-long-gone');
    const viaStale = new LatestCookieClient(c.url);
    viaStale.cookie = `envfleet_session=${stale}`;
    const gone = await viaStale.post('/exit_vehicle', { ticket_id: 'T5' });
    expect(gone.status).to.equal(410);
    expect(errorOf(gone)).to.include({ code: 'SESSION_LOST' });
    expect(errorOf(gone).message).to.match(/a-process-long-gone\) stopped without ending it/);
    const mcpGone = await post(`${c.url}/sessions/${stale}/mcp`, { jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} });
    expect(mcpGone.status).to.equal(410);
    expect(mcpGone.json['error']).to.deep.include({ code: -32001 });
    expect((mcpGone.json['error'] as { data: { code: string } }).data.code).to.equal('SESSION_LOST');
    const rpcGone = await post(`${c.url}/mcp`, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { session_id: stale, name: 'exit_vehicle', arguments: {} } });
    expect(rpcGone.json).to.deep.include({ id: 2 });
    expect(rpcGone.json['error']).to.deep.include({ code: -32602, data: { code: 'SESSION_LOST' } });
    // Not cached: once the directory no longer names a holder, the session is simply unknown.
    await f.redis.del(`${f.config.redis.prefix}:serve:sess:${stale}`);
    viaStale.cookie = `envfleet_session=${stale}`;
    expect(errorOf(await viaStale.post('/exit_vehicle', { ticket_id: 'T5' })).code).to.equal('UNKNOWN_SESSION');
    const unknown = new LatestCookieClient(c.url);
    unknown.cookie = 'envfleet_session=00000000-0000-0000-0000-000000000000';
    expect(errorOf(await unknown.post('/exit_vehicle', { ticket_id: 'T5' })).code).to.equal('UNKNOWN_SESSION');
  });
});
