import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { startServing, type Serving } from '../../cli/serve.js';
import { LatestCookieClient } from '../helpers/env-server-clients.js';
import { silentLogger, testConfig } from '../helpers/integration.js';

/**
 * Careless code, not hostile: a tool that keeps a linked list of dicts in the state. The sandbox writes a state
 * thousands of levels deep, which V8 cannot write again on the server's stack.
 */
const SOURCE = `class Journal {
  constructor(s) { this.state = s; }
  chain({ n }) { let h = null; for (let i = 0; i < n; i++) h = { v: i, next: h }; this.state.history = h; return { success: true, data: 'kept ' + n + ' entries' }; }
}`;
const tool = (name: string, properties: Record<string, unknown> = {}) => ({ type: 'function', function: { name, description: name, parameters: { type: 'object', properties } } });
const ENV = { id: 'env-journal', status: 'kept', summary: 'a journal', introduction: 'a journal', stateSchema: { type: 'object' }, name: 'Journal', className: 'Journal', language: 'js', source: SOURCE, tools: [tool('chain', { n: { type: 'integer' } })] };
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
    // The state is {title, history}: 1 + n levels. Past 1,000 levels the server refuses it (V8's own writing of it
    // fails somewhere past 4,000, at a depth that depends on the stack around it: 4,110 was in that band); 30,000 is
    // too deep for the sandbox itself.
    const tooDeep = /more than 1000 levels deep, more than the server passes on; keep the environment's state flatter/;
    for (const [n, error] of [[1_000, tooDeep], [4_110, tooDeep], [6_000, tooDeep], [30_000, /could not be read: stack overflow/], [999, null]] as const) {
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
});
