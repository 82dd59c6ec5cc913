import { createServer } from 'node:net';
import { expect } from 'chai';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import { errorOf, LatestCookieClient, scenarioWith, withMcp } from '../helpers/env-server-clients.js';
import { buildDemoRun, exited, spawnServe, useFleet, type Fleet } from '../helpers/integration.js';

/**
 * A trainer whose `envfleet serve` (with its Redis session directory) was killed and restarted on the same
 * address reconnects at once, with the sessions it held. They are gone, and it must hear so: SESSION_LOST
 * (410) on every surface from the first request. Before, for the 10 s the killed process's heartbeat
 * lived on, the request was forwarded to that process's address, i.e. to the new process itself, which
 * answered UNKNOWN_SESSION (404, "start one with POST /seed_session …": as for an id that never existed); only
 * afterwards SESSION_LOST. Real processes, real Redis, the MCP SDK client.
 */

/** A port free now (the server is started on it, killed, and started again on it). */
async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>(resolve => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as { port: number }).port;
  await new Promise(resolve => probe.close(resolve));
  return port;
}

describe('envfleet serve: restarted on the same address after a kill, it and its peers answer the sessions of the process it replaced SESSION_LOST at once', function () {
  const fleet = useFleet('suite');
  let f: Fleet;
  let iris: ScenarioRecord;

  before(async function () {
    f = await fleet();
    iris = scenarioWith(await buildDemoRun(f, 'rs1'), 'Iris Vance');
  });

  it('NeMo Gym, MCP and OpenEnv POST /mcp: SESSION_LOST (not UNKNOWN_SESSION) right after the restart; a new session works', async () => {
    const port = await freePort();
    const first = await spawnServe(f, ['--run', 'rs1', '--port', String(port), '--max-sessions', '4']);
    // A peer on the same Redis: it forwards a session of the killed process to its address (its heartbeat lives on),
    // where the new process must say lost too (it answered UNKNOWN_SESSION to forwarded requests).
    const peer = await spawnServe(f, ['--run', 'rs1', '--port', '0', '--max-sessions', '4']);
    const nemo = new LatestCookieClient(first.url);
    expect((await nemo.post('/seed_session', { scenario_id: iris.id })).status).to.equal(200);
    expect((await nemo.post('/get_member', { member_id: 'M7' })).status).to.equal(200);
    const cookie = nemo.cookie;
    const opened = (await (await fetch(`${first.url}/sessions`, { method: 'POST', body: JSON.stringify({ scenario_id: iris.id }) })).json()) as { session_id: string; mcp_url: string };

    first.child.kill('SIGKILL');
    await exited(first.child);
    const second = await spawnServe(f, ['--run', 'rs1', '--port', String(port), '--max-sessions', '4']);
    expect(second.url).to.equal(first.url);

    // The trainer goes on with what it held, through the peer first.
    const viaPeer = new LatestCookieClient(peer.url);
    viaPeer.cookie = cookie;
    const forwarded = await viaPeer.post('/get_member', { member_id: 'M7' });
    expect(forwarded.status, forwarded.text).to.equal(410);
    expect(errorOf(forwarded).code).to.equal('SESSION_LOST');
    const mcpViaPeer = await fetch(`${peer.url}/sessions/${opened.session_id}/verify`, { method: 'POST' });
    expect(mcpViaPeer.status).to.equal(410);
    nemo.cookie = cookie;
    const call = await nemo.post('/get_member', { member_id: 'M7' });
    expect(call.status, call.text).to.equal(410);
    expect(errorOf(call).code).to.equal('SESSION_LOST');
    nemo.cookie = cookie;
    const verified = await nemo.post('/verify');
    expect(errorOf(verified).code, verified.text).to.equal('SESSION_LOST');

    let refused: unknown;
    try {
      await withMcp(opened.mcp_url, c => c.listTools());
    } catch (err) {
      refused = err;
    }
    expect(String(refused)).to.include('SESSION_LOST').and.to.include('-32001');
    const v = await fetch(`${second.url}/sessions/${opened.session_id}/verify`, { method: 'POST' });
    expect(v.status).to.equal(410);
    const rpc = (await (await fetch(`${second.url}/mcp`, { method: 'POST', body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/list', params: { session_id: opened.session_id } }) })).json()) as { id: number; error: { code: number; data: { code: string } } };
    expect(rpc).to.deep.include({ id: 7 });
    expect(rpc.error.data.code).to.equal('SESSION_LOST');

    // A new session on the restarted process plays as usual.
    const fresh = new LatestCookieClient(second.url);
    expect((await fresh.post('/seed_session', { scenario_id: iris.id })).status).to.equal(200);
    expect((await fresh.post('/get_member', { member_id: 'M7' })).status).to.equal(200);
    expect((await fresh.post('/verify')).status).to.equal(200);
    const health = (await (await fetch(`${second.url}/health`)).json()) as { sessions: { active: number } };
    expect(health.sessions.active).to.equal(0);
    for (const p of [second, peer]) {
      p.child.kill('SIGTERM');
      await exited(p.child);
    }
  });
});
