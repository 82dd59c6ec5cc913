import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { expect } from 'chai';
import { WebSocket } from 'ws';
import { startServing, type Serving } from '../../cli/serve.js';
import type { AppConfig } from '../../config/index.js';
import { errorOf, LatestCookieClient, withMcp, type Reply } from '../helpers/env-server-clients.js';
import { buildDemoRun, silentLogger, testConfig, useFleet, type Fleet } from '../helpers/integration.js';

/**
 * A served session whose sandbox thread's memory bound (ENVFLEET_SANDBOX_HEAP_MB, shared by the thread's
 * sessions) is full when it needs more: the server's load cut the episode, not the agent nor the
 * environment's own allowance. A trainer must not get a reward to train on for it (before: verify gave
 * `reward: 0`, /ws `done: true, reward: 0`) but SESSION_EVICTED, on every surface. One sandbox thread of
 * 64 MiB; an environment's allowance (48 MiB) is more than the room a 40 MiB neighbour leaves.
 * Real Redis, real sandbox pool, real HTTP, the ws and MCP SDK clients. No timing assertions.
 */

const tool = (name: string, properties: Record<string, unknown> = {}) => ({ type: 'function' as const, function: { name, description: name, parameters: { type: 'object', properties } } });

/** An environment that keeps `mb` MiB more each call (a cache beside its state, within its allowance). */
const GROWER_SOURCE = `const kept = [];
class Grower {
  constructor(s) { this.state = s; }
  grow({ mb }) {
    for (let i = 0; i < mb; i++) kept.push('g'.repeat((1 << 20) - 64) + i);
    return { success: true, data: kept.length };
  }
  note({ text }) { this.state.notes.push(text); return { success: true, data: this.state.notes.length }; }
}`;

interface WsMessage {
  readonly type: string;
  readonly data: Record<string, unknown>;
}

class WsEpisode {
  private readonly inbox: WsMessage[] = [];
  private readonly waiters: ((m: WsMessage) => void)[] = [];
  readonly ws: WebSocket;
  readonly opened: Promise<void>;
  constructor(base: string) {
    this.ws = new WebSocket(`${base.replace(/^http/, 'ws')}/ws`);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.ws.on('message', data => {
      const msg = JSON.parse((data as Buffer).toString('utf8')) as WsMessage;
      const w = this.waiters.shift();
      if (w) w(msg);
      else this.inbox.push(msg);
    });
  }
  send(msg: unknown): Promise<WsMessage> {
    this.ws.send(JSON.stringify(msg));
    const next = this.inbox.shift();
    return next ? Promise.resolve(next) : new Promise(resolve => this.waiters.push(resolve));
  }
}

describe('envfleet serve: a session whose sandbox thread has no memory left is evicted (SESSION_EVICTED), never given a reward', function () {
  const fleet = useFleet('suite');
  let f: Fleet;
  let serveConfig: AppConfig;
  let serving: Serving;

  before(async function () {
    f = await fleet();
    await buildDemoRun(f, 's1');
    serveConfig = testConfig(null, {
      ENVFLEET_REDIS_PREFIX: f.config.redis.prefix,
      ENVFLEET_POOL_THREADS: '1',
      ENVFLEET_POOL_TASKS_PER_THREAD: '8',
      ENVFLEET_SANDBOX_HEAP_MB: '64',
      ENVFLEET_SANDBOX_ENV_MEMORY_MB: '48',
      ENVFLEET_SANDBOX_DEADLINE_MS: '5000',
    });
    const run = (await f.store.getRun('s1'))!;
    await f.store.createRun({ ...run, id: 'full', options: { ...run.options, limits: { ...run.options.limits, envMemoryMb: 48, callDeadlineMs: 5000 } } });
    const envId = (await f.store.listDocIds('s1', 'env'))[0]!;
    const demoEnv = (await f.store.getDoc('s1', 'env', envId))!;
    const demoScenario = (await f.store.getDoc('s1', 'scenario', (await f.store.listDocIds('s1', 'scenario'))[0]!))!;
    await f.store.putDoc('full', 'env', 'env-grower', {
      ...demoEnv,
      id: 'env-grower',
      runId: 'full',
      className: 'Grower',
      source: GROWER_SOURCE,
      tools: [tool('grow', { mb: { type: 'integer' } }), tool('note', { text: { type: 'string' } })],
    });
    await f.store.putDoc('full', 'scenario', 'sc-grow', {
      ...demoScenario,
      id: 'sc-grow',
      runId: 'full',
      status: 'ready',
      environmentId: 'env-grower',
      initialState: { notes: [] },
      task: 'grow',
      checklist: [{ item: 'no note is taken', check: 'function check(finalState) { return finalState.notes.length === 0; }' }],
    });
    serving = await startServing(serveConfig, silentLogger(), { run: 'full', port: 0, host: '127.0.0.1', maxSessions: 8, idleTimeout: 0 });
  });
  after(async () => {
    await serving?.close();
  });

  /** A neighbour holding 40 MiB of the thread's 64: the others have about 20 left, less than their 48 MiB allowance. */
  async function neighbour(): Promise<LatestCookieClient> {
    const n = new LatestCookieClient(serving.url);
    expect((await n.post('/seed_session', { scenario_id: 'sc-grow' })).status).to.equal(200);
    const grown = await n.post('/grow', { mb: 40 });
    expect(grown.status, grown.text).to.equal(200);
    return n;
  }

  /** Grows 2 MiB a call until a call is refused; returns that reply. */
  async function growUntilRefused(call: () => Promise<Reply>): Promise<Reply> {
    for (let i = 0; i < 40; i++) {
      const r = await call();
      if (r.status !== 200) return r;
    }
    throw new Error('80 MiB were granted: the thread bound was never reached');
  }

  it('NeMo Gym: the call that meets the full thread is SESSION_EVICTED (503), and verify refuses a reward with the same code', async () => {
    const n = await neighbour();
    const s = new LatestCookieClient(serving.url);
    expect((await s.post('/seed_session', { scenario_id: 'sc-grow' })).status).to.equal(200);
    const refused = await growUntilRefused(() => s.post('/grow', { mb: 2 }));
    expect(refused.status, refused.text).to.equal(503);
    expect(errorOf(refused)).to.include({ code: 'SESSION_EVICTED', session_ended: true, sandbox_code: 'SANDBOX_MEMORY_FULL' });
    expect(errorOf(refused).message).to.match(/server's load/).and.to.match(/play scenario sc-grow again/);
    // The checks would pass on that state (no note): before, verify gave a reward for an episode the server cut.
    const v = await s.post('/verify', { responses_create_params: { input: [] } });
    expect(v.status, v.text).to.equal(503);
    expect(v.json).to.not.have.property('reward');
    expect(errorOf(v).code).to.equal('SESSION_EVICTED');
    // Closing it says how it ended, with no reward.
    const closed = await s.send('DELETE', '/session');
    expect(closed.json).to.include({ ended_by: 'evicted', reward: null, solved: false });
    // A tool call after it: the session has ended.
    expect(errorOf(await s.post('/note', { text: 'x' })).code).to.equal('SESSION_CLOSED');
    expect((await n.post('/verify')).json['reward']).to.equal(1);
  });

  it('MCP: the call is an isError result with SESSION_EVICTED, and POST /sessions/{id}/verify is 503 SESSION_EVICTED', async () => {
    const n = await neighbour();
    const opened = (await (await fetch(`${serving.url}/sessions`, { method: 'POST', body: JSON.stringify({ scenario_id: 'sc-grow' }) })).json()) as { session_id: string; mcp_url: string };
    let last: CallToolResult | null = null;
    for (let i = 0; i < 40; i++) {
      last = (await withMcp(opened.mcp_url, c => c.callTool({ name: 'grow', arguments: { mb: 2 } }))) as CallToolResult;
      if (last.isError) break;
    }
    expect(last!.isError).to.equal(true);
    expect(last!.structuredContent).to.include({ code: 'SESSION_EVICTED', session_ended: true });
    const v = await fetch(`${serving.url}/sessions/${opened.session_id}/verify`, { method: 'POST' });
    expect(v.status).to.equal(503);
    expect(((await v.json()) as { error: { code: string } }).error.code).to.equal('SESSION_EVICTED');
    await n.post('/verify');
  });

  it('OpenEnv /ws: the step is a SESSION_ERROR message with envfleet_code SESSION_EVICTED (no done/reward observation); the finish action and state give no reward, close just closes', async () => {
    const n = await neighbour();
    const ep = new WsEpisode(serving.url);
    await ep.opened;
    expect((await ep.send({ type: 'reset', data: { scenario_id: 'sc-grow' } })).type).to.equal('observation');
    let msg: WsMessage | null = null;
    for (let i = 0; i < 40; i++) {
      msg = await ep.send({ type: 'step', data: { type: 'call_tool', tool_name: 'grow', arguments: { mb: 2 } } });
      if (msg.type !== 'observation' || msg.data['done'] === true || (msg.data['observation'] as { error?: unknown }).error) break;
    }
    expect(msg!.type, JSON.stringify(msg)).to.equal('error');
    expect(msg!.data).to.include({ code: 'SESSION_ERROR', envfleet_code: 'SESSION_EVICTED' });
    const finish = await ep.send({ type: 'step', data: { type: 'call_tool', tool_name: '__envfleet_finish__' } });
    expect(finish.type).to.equal('error');
    expect(finish.data).to.include({ envfleet_code: 'SESSION_EVICTED' });
    const state = await ep.send({ type: 'state' });
    expect(state.data).to.include({ done: true, reward: null });
    const gone = new Promise<number>(resolve => ep.ws.once('close', code => resolve(code)));
    ep.ws.send(JSON.stringify({ type: 'close' }));
    expect(await gone).to.equal(1000);
    await n.post('/verify');
  });

  it('once the neighbours are gone, a new session plays and is scored as usual', async () => {
    const s = new LatestCookieClient(serving.url);
    expect((await s.post('/seed_session', { scenario_id: 'sc-grow' })).status).to.equal(200);
    expect((await s.post('/grow', { mb: 8 })).status).to.equal(200);
    const v = await s.post('/verify');
    expect(v.status).to.equal(200);
    expect(v.json).to.include({ reward: 1 });
    expect(serving.registry.stats().active).to.equal(0);
  });
});
