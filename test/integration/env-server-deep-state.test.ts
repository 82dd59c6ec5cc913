import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { expect } from 'chai';
import { startServing, type Serving } from '../../cli/serve.js';
import { errorOf, LatestCookieClient, withMcp } from '../helpers/env-server-clients.js';
import { silentLogger, testConfig } from '../helpers/integration.js';

/**
 * Careless code, not hostile: a tool that keeps a linked list of dicts in the state, and one that returns a category
 * tree. The sandbox wrote a state or a result thousands of levels deep, which V8 cannot write again on the server's
 * stack; it now refuses one past 1,000 levels, as the Python runtime does.
 */
const SOURCE = `class Journal {
  constructor(s) { this.state = s; }
  chain({ n }) { let h = null; for (let i = 0; i < n; i++) h = { v: i, next: h }; this.state.history = h; return { success: true, data: 'kept ' + n + ' entries' }; }
  category_tree({ depth }) { const root = {}; let o = root; for (let i = 0; i < depth; i++) { o.child = { level: i }; o = o.child; } return { success: true, data: root }; }
}`;
const tool = (name: string, properties: Record<string, unknown> = {}) => ({ type: 'function', function: { name, description: name, parameters: { type: 'object', properties } } });
const ENV = { id: 'env-journal', status: 'kept', summary: 'a journal', introduction: 'a journal', stateSchema: { type: 'object' }, name: 'Journal', className: 'Journal', language: 'js', source: SOURCE, tools: [tool('chain', { n: { type: 'integer' } }), tool('category_tree', { depth: { type: 'integer' } })] };
const SCENARIO = {
  id: 'scn-journal', environmentId: 'env-journal', index: 0, initialState: { title: '日記 📓' }, task: 'keep entries',
  userGoal: { goal: 'keep entries', facts: [] }, expectedTools: ['chain'],
  checklist: [{ item: 'has a history', check: 'function check(f) { return f.history !== undefined; }' }],
  validation: { onInitialState: [], repairs: [] }, lineage: { runId: 'deep', environmentId: 'env-journal', models: {}, prompts: {}, createdAt: '2026-12-05' },
};

describe('envfleet serve: a final state nested too deeply to write again (real sandbox pool, real HTTP)', function () {
  this.timeout(60_000);
  let dir: string;
  let serving: Serving;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'envfleet-deep-Ünï-深-'));
    await writeFile(join(dir, 'environments.jsonl'), JSON.stringify(ENV) + '\n');
    await writeFile(join(dir, 'scenarios.jsonl'), JSON.stringify(SCENARIO) + '\n');
    const config = testConfig(null, { REDIS_URL: 'redis://127.0.0.1:1', ENVFLEET_POOL_THREADS: '1' });
    serving = await startServing(config, silentLogger(), { environments: join(dir, 'environments.jsonl'), scenarios: join(dir, 'scenarios.jsonl'), port: 0, host: '127.0.0.1', maxSessions: 1, idleTimeout: 0 });
  });
  after(async () => {
    await serving?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('ends a session whose state nests past 1,000 levels with a clear error instead of failing verify, answers verify again, and frees its slot; 1,000 levels are scored', async () => {
    const health = async () => ((await (await fetch(`${serving.url}/health`)).json()) as { sessions: { active: number } }).sessions;
    // The state is {title, history}: 1 + n levels. Past 1,000 levels the sandbox refuses it as it reads it (V8's own
    // writing of it fails somewhere past 4,000, at a depth that depends on the stack around it: 4,110 was in that band;
    // 30,000 was too deep for the sandbox itself: "stack overflow").
    const tooDeep = /^the final state could not be read: this\.state nests containers more than 1000 levels deep \(1001 containers down to \/history\/next\/next\/next\/next\/…\/next\/next\): the JavaScript runtime passes on JSON values up to 1000 levels of containers inside containers, as the Python runtime does .*; keep it flatter/;
    for (const [n, error] of [[1_000, tooDeep], [4_110, tooDeep], [6_000, tooDeep], [30_000, tooDeep], [999, null]] as const) {
      const c = new LatestCookieClient(serving.url);
      expect((await c.post('/seed_session', { scenario_id: 'scn-journal' })).status).to.equal(200);
      expect((await c.post('/chain', { n })).text).to.include(`kept ${n} entries`);
      const v = await c.post('/verify', {});
      expect(v.status, v.text).to.equal(200);
      const envfleet = v.json['envfleet'] as { reward: number | null; checks_error: string | null; final_state: unknown };
      if (!error) {
        expect(v.json['reward']).to.equal(1);
        expect((envfleet.final_state as { title: string }).title).to.equal('日記 📓');
      } else {
        expect(envfleet.reward, v.text.slice(0, 600)).to.equal(null);
        expect(envfleet.checks_error).to.match(error);
        expect(envfleet.final_state).to.equal(null);
      }
      // Verify again: the same result (an ended session answers with it).
      const again = await c.post('/verify', {});
      expect(again.status, again.text).to.equal(200);
      expect((again.json['envfleet'] as { reward: number | null }).reward).to.equal(envfleet.reward);
      // The slot is free: with --max-sessions 1, the next scenario opens at once.
      expect((await health()).active).to.equal(0);
    }
  });

  it('answers a tool whose result nests past 1,000 levels with NON_JSON_RESULT on every surface, and the session goes on (it was HTTP 500, MCP -32603)', async () => {
    const deep = /^the result nests containers more than 1000 levels deep \(1001 containers down to \/data\/child\/child\/child\/child\/…\/child\/child\): the JavaScript runtime passes on JSON values up to 1000 levels/;
    const c = new LatestCookieClient(serving.url);
    expect((await c.post('/seed_session', { scenario_id: 'scn-journal' })).status).to.equal(200);
    // The result is {success, data}: depth + 2 levels.
    expect((await c.post('/category_tree', { depth: 998 })).json['data']).to.have.property('child');
    for (const depth of [999, 4_200, 20_000]) {
      const r = await c.post('/category_tree', { depth });
      expect(r.status, r.text.slice(0, 300)).to.equal(422);
      expect(errorOf(r).code).to.equal('NON_JSON_RESULT');
      expect(errorOf(r).message).to.match(deep);
      expect(errorOf(r)['session_ended']).to.equal(false);
    }
    expect((await c.post('/chain', { n: 3 })).text).to.include('kept 3 entries');
    const v = await c.post('/verify', {});
    expect(v.json['reward']).to.equal(1);

    // The MCP surface: a tool error (isError), not -32603 "Maximum call stack size exceeded".
    const opened = await fetch(`${serving.url}/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ scenario_id: 'scn-journal' }) });
    expect(opened.status).to.equal(201);
    const { session_id: id, mcp_url: url } = (await opened.json()) as { session_id: string; mcp_url: string };
    const called = (await withMcp(url, m => m.callTool({ name: 'category_tree', arguments: { depth: 4_200 } }))) as CallToolResult;
    expect(called.isError).to.equal(true);
    expect((called.content[0] as { text: string }).text).to.match(/the result nests containers more than 1000 levels deep/);
    const after = (await withMcp(url, m => m.callTool({ name: 'chain', arguments: { n: 2 } }))) as CallToolResult;
    expect(after.isError).to.equal(false);
    const verified = await fetch(`${serving.url}/sessions/${id}/verify`, { method: 'POST' });
    expect(((await verified.json()) as { reward: number }).reward).to.equal(1);
  });
});
