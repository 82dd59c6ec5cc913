import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { startServing, type Serving } from '../../cli/serve.js';
import { exportRun } from '../../src/datasets/export.js';
import { createLocalSandboxRunner } from '../../src/sandbox/runner.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import { cliCheck, errorOf, LatestCookieClient, scenarioWith, useServedDemoRun, type Reply } from '../helpers/env-server-clients.js';
import { silentLogger, testConfig, type Fleet } from '../helpers/integration.js';


describe('envfleet serve: the environment server, NeMo Gym style (real Redis, real sandbox pool, real HTTP)', function () {
  let f: Fleet;
  let serving: Serving;
  let scenarios: ScenarioRecord[];
  let verlRows: { extra_info: { scenario_id: string } }[];
  const byTask = (needle: string) => scenarioWith(scenarios, needle);
  useServedDemoRun('s1', 2, run => ({ f, serving, scenarios } = run), async fleet => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-serve-'));
    await exportRun(fleet.store, 's1', dir, { formats: ['verl', 'prompts'] });
    // rl-verl.json is one JSON row per line.
    verlRows = (await readFile(join(dir, 'rl-verl.json'), 'utf8')).trim().split('\n').map(l => JSON.parse(l) as (typeof verlRows)[number]);
  });

  it('a seed of an unknown scenario on a full server leaves the session of its cookie as it was (it is not ended for the room first)', async () => {
    const gx = byTask('GX-310');
    const clients = [new LatestCookieClient(serving.url), new LatestCookieClient(serving.url)];
    for (const c of clients) expect((await c.post('/seed_session', { scenario_id: gx.id })).status).to.equal(200);
    expect(serving.registry.stats()).to.include({ active: 2, max: 2 });
    const [c] = clients;
    const held = c!.cookie;
    const typo = await c!.post('/seed_session', { scenario_id: 'no-such-scenario' });
    expect(typo.status, typo.text).to.equal(404);
    expect(errorOf(typo).code).to.equal('UNKNOWN_SCENARIO');
    c!.cookie = held;
    const goesOn = await c!.post('/exit_vehicle', { ticket_id: 'T5' });
    expect(goesOn.status, goesOn.text).to.equal(200);
    expect(goesOn.text).to.match(/GX-310 left S9/);
    // A seed of a known scenario on the same cookie still replaces it (ended first, for the room).
    expect((await c!.post('/seed_session', { scenario_id: gx.id })).status).to.equal(200);
    for (const k of clients) expect((await k.send('DELETE', '/session')).status).to.equal(200);
    expect(serving.registry.stats().active).to.equal(0);
  });

  it('drives a scenario to its reward from a verl row; the reward is `envfleet sandbox check` on the same final state; the cookie is re-sent every time', async () => {
    const iris = byTask('Iris Vance');
    const row = verlRows.find(r => r.extra_info.scenario_id === iris.id)!;
    expect(row, 'the verl export has the Iris scenario').to.not.equal(undefined);
    const c = new LatestCookieClient(serving.url);
    const seeded = await c.post('/seed_session', row);
    expect(seeded.status).to.equal(200);
    expect(seeded.json).to.include({ scenario_id: iris.id });
    expect(seeded.json['tools']).to.include.members(['get_member', 'return_book', 'pay_fine', 'borrow_book']);
    const session = c.cookie;
    expect(session).to.match(/^envfleet_session=/);

    const member = await c.post('/get_member', { member_id: 'M7' });
    expect(member.status).to.equal(200);
    expect(member.text).to.include('Iris Vance');
    expect(c.cookie, 'every response re-sends the session cookie').to.equal(session);
    expect((await c.post('/return_book', { loan_id: 'L21' })).text).to.match(/Returned 5 days late/);
    expect((await c.post('/pay_fine', { member_id: 'M7', amount: 2.5 })).text).to.match(/Paid 2\.5; 0 left/);
    expect((await c.post('/borrow_book', { member_id: 'M7', book_id: 'B5' })).text).to.match(/Lent Kindred to Iris Vance/);
    expect(c.cookie).to.equal(session);

    const verified = await c.post('/verify', { ...row, response: { output: [] } });
    expect(verified.status).to.equal(200);
    expect(verified.json['extra_info'], 'verify echoes the request body').to.deep.equal(row.extra_info);
    const env = verified.json['envfleet'] as { reward: number; solved: boolean; checks: { item: string; passed: boolean }[]; final_state: unknown; ended_by: string; calls: number };
    expect(verified.json['reward']).to.equal(1);
    expect(env).to.include({ reward: 1, solved: true, ended_by: 'finished', calls: 4 });
    expect(Object.keys(verified.json['reward_components'] as object)).to.deep.equal(iris.checklist!.map(c => c.item));

    const cli = await cliCheck(iris, env.final_state);
    expect(cli.reward).to.equal(env.reward);
    expect(cli.passed).to.deep.equal(env.checks.map(c => c.passed));

    // The session has ended: its result is kept, tools are refused.
    const again = await c.post('/verify', {});
    expect(again.json['reward']).to.equal(1);
    const closed = await c.post('/get_member', { member_id: 'M7' });
    expect(closed.status).to.equal(410);
    expect(errorOf(closed).code).to.equal('SESSION_CLOSED');
    expect(serving.registry.stats().active).to.equal(0);
  });

  it('a partly done scenario gets a partial reward that the checks give on the same final state', async () => {
    const pl = byTask('PL-900');
    const c = new LatestCookieClient(serving.url);
    expect((await c.post('/seed_session', { scenario_id: pl.id })).status).to.equal(200);
    expect((await c.post('/exit_vehicle', { ticket_id: 'T2' })).text).to.match(/PL-900 left S2/);
    const v = await c.post('/verify');
    const env = v.json['envfleet'] as { final_state: unknown; reward: number; session_id: string };
    expect(serving.registry.result(env.session_id)?.reward).to.equal(0.5);
    const checks = await createLocalSandboxRunner().checks({ checks: pl.checklist!, finalState: env.final_state, initialState: pl.initialState, limits: (await f.store.getRun('s1'))!.options.limits });
    expect(v.json['reward']).to.equal(checks.reward);
  });

  it('answers bad input with a stable code and a message that says what to do', async () => {
    const iris = byTask('Iris Vance');
    const c = new LatestCookieClient(serving.url);
    const cases: [Reply, number, string][] = [];
    cases.push([await c.post('/seed_session', { scenario_id: 'no-such-scenario' }), 404, 'UNKNOWN_SCENARIO']);
    cases.push([await c.post('/seed_session', '{"scenario_id": ', true), 400, 'MALFORMED_JSON']);
    cases.push([await c.post('/seed_session', { prompt: [] }), 400, 'INVALID_REQUEST_BODY']);
    cases.push([await c.post('/get_member', { member_id: 'M7' }), 400, 'NO_SESSION']);
    c.cookie = 'envfleet_session=00000000-0000-0000-0000-000000000000';
    cases.push([await c.post('/get_member', { member_id: 'M7' }), 404, 'UNKNOWN_SESSION']);
    c.cookie = null;
    expect((await c.post('/seed_session', { scenario_id: iris.id })).status).to.equal(200);
    cases.push([await c.post('/launch_rocket', {}), 404, 'UNKNOWN_TOOL']);
    cases.push([await c.post('/pay_fine', { member_id: 'M7', amount: '6' }), 400, 'INVALID_ARGUMENTS']);
    cases.push([await c.post('/pay_fine', [1, 2]), 400, 'INVALID_ARGUMENTS']);
    cases.push([await c.post('/pay_fine', '{"member_id": "M7"', true), 400, 'MALFORMED_JSON']);
    cases.push([await c.send('GET', '/nowhere'), 404, 'NOT_FOUND']);
    for (const [reply, status, code] of cases) {
      expect(reply.status, `${code}: ${reply.text}`).to.equal(status);
      expect(errorOf(reply).code, reply.text).to.equal(code);
      expect(errorOf(reply).message.length, reply.text).to.be.greaterThan(20);
    }
    expect(errorOf(cases[5]![0]).message).to.include('get_member');
    // After all that, the session still works; a bad call does not end it, nor a seed that is refused (a typo in the
    // scenario id) sent with its cookie.
    expect(c.cookie).to.match(/^envfleet_session=/);
    const refused = await c.post('/seed_session', { scenario_id: iris.id.slice(0, -1) });
    expect(refused.status, refused.text).to.equal(404);
    expect((await c.post('/get_member', { member_id: 'M7' })).status).to.equal(200);
    const closed = await c.send('DELETE', '/session');
    expect(closed.status).to.equal(200);
    expect(closed.json).to.include({ ended_by: 'closed' });
  });

  it('reads a body as UTF-8 and refuses bytes that are not, saying where, on every surface; a body in a charset it names is read in it', async () => {
    const gx = byTask('GX-310');
    const c = new LatestCookieClient(serving.url);
    expect((await c.post('/seed_session', { scenario_id: gx.id })).status).to.equal(200);
    const raw = async (path: string, body: Buffer, type = 'application/json') => {
      const res = await fetch(serving.url + path, { method: 'POST', headers: { 'content-type': type, ...(c.cookie ? { cookie: c.cookie } : {}) }, body });
      const text = await res.text();
      return { status: res.status, text, json: JSON.parse(text) as Record<string, unknown>, headers: res.headers };
    };
    // "Café" as Latin-1 writes it: the é is the byte 0xE9, which UTF-8 cannot start with.
    const latin1 = Buffer.from('{"plate": "Café-1", "size": "compact"}', 'latin1');
    const at = latin1.indexOf(0xe9);
    const refused = await raw('/enter_vehicle', latin1);
    expect(refused.status, refused.text).to.equal(400);
    expect(errorOf(refused).code).to.equal('MALFORMED_JSON');
    expect(errorOf(refused).message).to.include(`byte 0xE9 at byte ${at} of the body`).and.to.include('Latin-1').and.to.include('send the body as UTF-8');
    const utf16 = await raw('/enter_vehicle', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{"plate": "X"}', 'utf16le')]));
    expect(errorOf(utf16).message).to.include('UTF-16LE');
    // Named as Latin-1, the same bytes are read as Latin-1: the é reaches the environment as é.
    const parked = await raw('/enter_vehicle', latin1, 'application/json; charset=latin1');
    expect(parked.status, parked.text).to.equal(200);
    expect(parked.text).to.include('Café-1 parked in');
    // UTF-16 named as such is read as UTF-16 too.
    const named16 = await raw('/get_ticket', Buffer.from('{"ticket_id": "T-駐車🚗"}', 'utf16le'), 'application/json; charset=utf-16le');
    expect(named16.status, named16.text).to.equal(200);
    expect(named16.text).to.include('T-駐車🚗');
    // OpenEnv's POST /mcp: a JSON-RPC parse error saying where.
    const rpcBody = Buffer.from(`{"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"scenario_id": "${gx.id}", "x": "Caf\xe9"}}`, 'latin1');
    const rpc = await raw('/mcp', rpcBody);
    expect(rpc.json['error']).to.deep.include({ code: -32700 });
    expect((rpc.json['error'] as { message: string }).message).to.include(`byte 0xE9 at byte ${rpcBody.indexOf(0xe9)} of the body`);
    // A session's MCP endpoint: the same.
    const opened = await fetch(`${serving.url}/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ scenario_id: gx.id }) });
    const sid = ((await opened.json()) as { session_id: string }).session_id;
    const mcp = await fetch(`${serving.url}/sessions/${sid}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: rpcBody });
    const mcpReply = (await mcp.json()) as { error: { code: number; message: string } };
    expect(mcpReply.error.code).to.equal(-32700);
    expect(mcpReply.error.message).to.include('byte 0xE9');
    expect((await fetch(`${serving.url}/sessions/${sid}`, { method: 'DELETE' })).status).to.equal(200);
    // A path whose escapes are not UTF-8 names no route; a body over 4 MB says the limit.
    const badPath = await raw('/%FF', Buffer.from('{}'));
    expect(badPath.status).to.equal(404);
    expect(errorOf(badPath).code).to.equal('NOT_FOUND');
    expect(errorOf(badPath).message).to.include('not percent-encoded UTF-8');
    const big = await raw('/enter_vehicle', Buffer.from(JSON.stringify({ plate: 'x'.repeat(4 * 1024 * 1024), size: 'compact' })));
    expect(big.status).to.equal(413);
    expect(errorOf(big)).to.include({ code: 'INVALID_REQUEST_BODY', max_bytes: 4 * 1024 * 1024 });
    expect(errorOf(big).message).to.include('4194304 bytes');
    // None of it ended the session.
    expect((await c.post('/exit_vehicle', { ticket_id: 'T5' })).text).to.match(/GX-310 left S9/);
    expect((await c.send('DELETE', '/session')).status).to.equal(200);
  });

  it('over capacity answers 503 with active and max, without disturbing the open sessions; multi-byte text round-trips', async () => {
    const gx = byTask('GX-310');
    const a = new LatestCookieClient(serving.url);
    const b = new LatestCookieClient(serving.url);
    const extra = new LatestCookieClient(serving.url);
    expect((await a.post('/seed_session', { scenario_id: gx.id })).status).to.equal(200);
    expect((await b.post('/seed_session', { scenario_id: gx.id })).status).to.equal(200);
    const full = await extra.post('/seed_session', { scenario_id: gx.id });
    expect(full.status).to.equal(503);
    expect(full.headers.get('retry-after')).to.equal('1');
    expect(errorOf(full)).to.include({ code: 'OVER_CAPACITY', active: 2, max: 2 });
    expect(errorOf(full).message).to.match(/--max-sessions 2/);
    const health = await extra.send('GET', '/health');
    expect(health.json).to.deep.include({ status: 'healthy', sessions: { active: 2, max: 2 } });

    const plate = 'ÄÖ-漢字-🚗';
    const parked = await a.post('/enter_vehicle', { plate, size: 'compact' });
    expect(parked.status).to.equal(200);
    expect(JSON.parse(parked.text)).to.deep.include({ success: true });
    expect(parked.text).to.include(`${plate} parked in`);
    const ended = await a.send('DELETE', '/session');
    expect(JSON.stringify(ended.json['final_state'])).to.include(plate);
    // b never noticed; a slot is free again.
    expect((await b.post('/exit_vehicle', { ticket_id: 'T5' })).text).to.match(/GX-310 left S9/);
    expect((await extra.post('/seed_session', { scenario_id: gx.id })).status).to.equal(200);
    await b.send('DELETE', '/session');
    await extra.send('DELETE', '/session');
    expect(serving.registry.stats().active).to.equal(0);
  });

  it('refuses at start-up more sessions than the sandbox pool holds (they would wait unanswered)', async () => {
    const small = testConfig(f.server, { ENVFLEET_REDIS_PREFIX: f.config.redis.prefix, ENVFLEET_POOL_THREADS: '1', ENVFLEET_POOL_TASKS_PER_THREAD: '2' });
    let refused: unknown;
    try {
      await startServing(small, silentLogger(), { run: 's1', port: 0, host: '127.0.0.1', maxSessions: 3, idleTimeout: 0 });
    } catch (err) {
      refused = err;
    }
    expect(refused).to.have.property('code', 'CONFIG_INVALID');
    expect(String(refused)).to.match(/--max-sessions 3 is more than the sandbox pool holds \(1 threads × 2 tasks per thread = 2\)/).and.to.match(/ENVFLEET_POOL_TASKS_PER_THREAD/);
  });

  it('serves an export (--environments, --scenarios) without Redis: the same scenario gets the same reward; bad files are refused with what to fix', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envfleet-export-ÄÖ-漢字-🚗-'));
    await exportRun(f.store, 's1', dir, { formats: [] });
    // A Redis that does not answer: the export is served by this process alone.
    const noRedis = testConfig(f.server, { REDIS_URL: 'redis://127.0.0.1:1' });
    const fromExport = await startServing(noRedis, silentLogger(), { environments: join(dir, 'environments.jsonl'), scenarios: join(dir, 'scenarios.jsonl'), port: 0, host: '127.0.0.1', maxSessions: 1, idleTimeout: 0 });
    try {
      expect(fromExport.directory).to.equal(null);
      expect(fromExport.serves, 'the run its scenarios name').to.equal('s1');
      const c = new LatestCookieClient(fromExport.url);
      expect((await c.post('/seed_session', { scenario_id: byTask('Iris Vance').id })).status).to.equal(200);
      await c.post('/return_book', { loan_id: 'L21' });
      await c.post('/pay_fine', { member_id: 'M7', amount: 2.5 });
      expect((await c.post('/borrow_book', { member_id: 'M7', book_id: 'B5' })).text).to.match(/Lent Kindred to Iris Vance/);
      const v = await c.post('/verify', {});
      expect(v.json['reward']).to.equal(1);
      expect(errorOf(await c.post('/seed_session', { scenario_id: 'no-such-scenario' })).message).to.include('scenarios.jsonl');
    } finally {
      await fromExport.close();
    }
    const refusals: [Parameters<typeof startServing>[2], RegExp][] = [
      [{ environments: join(dir, 'environments.jsonl'), port: 0, host: '127.0.0.1', maxSessions: 1, idleTimeout: 0 }, /give both --environments .* and --scenarios/],
      [{ run: 's1', environments: join(dir, 'environments.jsonl'), scenarios: join(dir, 'scenarios.jsonl'), port: 0, host: '127.0.0.1', maxSessions: 1, idleTimeout: 0 }, /not both/],
      [{ environments: join(dir, 'scenarios.jsonl'), scenarios: join(dir, 'environments.jsonl'), port: 0, host: '127.0.0.1', maxSessions: 1, idleTimeout: 0 }, /line 1.*scenarios\.jsonl/s],
      [{ environments: join(dir, 'missing.jsonl'), scenarios: join(dir, 'scenarios.jsonl'), port: 0, host: '127.0.0.1', maxSessions: 1, idleTimeout: 0 }, /missing\.jsonl/],
    ];
    for (const [opts, message] of refusals) {
      let refused: unknown;
      try {
        await (await startServing(noRedis, silentLogger(), opts)).close();
      } catch (err) {
        refused = err;
      }
      expect(String((refused as Error | undefined)?.message), JSON.stringify(opts)).to.match(message);
    }
  });

  it('takes the token in the path for clients that cannot set headers (BASE/t/TOKEN/…)', async () => {
    // A token that must be URL-encoded in the path (printable ASCII only, as every token must be since 810d0ab: a header
    // cannot carry an accent as written).
    const token = 'path-token/?#%& 1234';
    const secured = await startServing(f.config, silentLogger(), { run: 's1', port: 0, host: '127.0.0.1', maxSessions: 1, idleTimeout: 0, token });
    try {
      const base = `${secured.url}/t/${encodeURIComponent(token)}`;
      const c = new LatestCookieClient(base);
      expect((await c.post('/seed_session', { scenario_id: byTask('GX-310').id })).status).to.equal(200);
      expect((await c.post('/exit_vehicle', { ticket_id: 'T5' })).text).to.match(/GX-310 left S9/);
      expect((await c.post('/verify')).json['reward']).to.be.a('number');
      const wrong = new LatestCookieClient(`${secured.url}/t/not-the-token`);
      const refused = await wrong.post('/seed_session', { scenario_id: byTask('GX-310').id });
      expect(refused.status).to.equal(401);
      expect(errorOf(refused).code).to.equal('UNAUTHORIZED');
    } finally {
      await secured.close();
    }
  });

  it('needs a token off loopback, and checks it', async () => {
    let refused: unknown;
    try {
      await startServing(f.config, silentLogger(), { run: 's1', port: 0, host: '0.0.0.0', maxSessions: 1, idleTimeout: 0 });
    } catch (err) {
      refused = err;
    }
    expect(String((refused as Error).message)).to.match(/ENVFLEET_SERVE_TOKEN/).and.to.match(/--token/);
    // From the environment (kept out of the process list), as from --token.
    const fromEnv = await startServing(testConfig(f.server, { ENVFLEET_REDIS_PREFIX: f.config.redis.prefix, ENVFLEET_SERVE_TOKEN: 'env-token-1234' }), silentLogger(), { run: 's1', port: 0, host: '127.0.0.1', maxSessions: 1, idleTimeout: 0 });
    try {
      expect((await new LatestCookieClient(fromEnv.url).post('/seed_session', { scenario_id: byTask('GX-310').id })).status).to.equal(401);
      const ok = new LatestCookieClient(fromEnv.url, 'env-token-1234');
      expect((await ok.post('/seed_session', { scenario_id: byTask('GX-310').id })).status).to.equal(200);
    } finally {
      await fromEnv.close();
    }
    const secured = await startServing(f.config, silentLogger(), { run: 's1', port: 0, host: '127.0.0.1', maxSessions: 1, idleTimeout: 0, token: 'sekrit-token' });
    try {
      const anon = new LatestCookieClient(secured.url);
      const r = await anon.post('/seed_session', { scenario_id: byTask('GX-310').id });
      expect(r.status).to.equal(401);
      expect(errorOf(r).code).to.equal('UNAUTHORIZED');
      expect((await anon.send('GET', '/health')).status).to.equal(200);
      const ok = new LatestCookieClient(secured.url, 'sekrit-token');
      expect((await ok.post('/seed_session', { scenario_id: byTask('GX-310').id })).status).to.equal(200);
      expect((await ok.post('/verify')).json['reward']).to.be.a('number');
    } finally {
      await secured.close();
    }
  });
});
