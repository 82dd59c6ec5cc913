import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import pino from 'pino';
import { RedisServerProcess } from '../../cli/private-redis.js';
import { startServing, type Serving } from '../../cli/serve.js';
import { Redis } from 'ioredis';
import { runOptionsFrom } from '../../queues/submit.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import { createRedisRunStore } from '../../src/runs/store.js';
import type { EnvironmentRecord } from '../../src/synthesis/types.js';
import { LatestCookieClient } from '../helpers/env-server-clients.js';
import { testConfig, until } from '../helpers/integration.js';

/**
 * An export served while its Redis goes away during the start (a stranger's probe: Redis stopped between the serve
 * process's check of it and its first heartbeat): the process died with "Stream isn't writeable …" and a stack trace.
 * Here the first heartbeat meets a Redis that takes one client only (--maxclients 1: the directory's own connection is
 * refused), every time, not by timing. The process must serve its own sessions alone, and say so.
 */
const SOURCE = `class Counter {
  constructor(s) { this.state = s; }
  add({ n }) { this.state.total += n; return { success: true, data: 'total ' + this.state.total }; }
}`;
const ENV = {
  id: 'env-counter', status: 'kept', summary: 'a counter', introduction: 'a counter', stateSchema: { type: 'object' }, name: 'Counter', className: 'Counter', language: 'js', source: SOURCE,
  tools: [{ type: 'function', function: { name: 'add', description: 'add', parameters: { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] } } }],
};
const SCENARIO = {
  id: 'scn-counter', environmentId: 'env-counter', index: 0, initialState: { total: 0, note: 'Zähler 計数 🧮' }, task: 'add 3',
  userGoal: { goal: 'add 3', facts: [] }, expectedTools: ['add'],
  checklist: [{ item: 'total is 3', check: 'function check(f) { return f.total === 3; }' }],
  validation: { onInitialState: [], repairs: [] }, lineage: { runId: 'start', environmentId: 'env-counter', models: {}, prompts: {}, createdAt: '2026-12-06' },
};

describe('envfleet serve: its Redis refuses the session directory during the start (a private redis-server)', function () {
  this.timeout(120_000);
  let server: RedisServerProcess;
  let dir: string;
  let serving: Serving | undefined;

  before(async () => {
    server = await RedisServerProcess.start({ args: ['--maxclients', '1', '--maxmemory-policy', 'noeviction'] });
    dir = await mkdtemp(join(tmpdir(), 'envfleet-start-Ünï-'));
    await writeFile(join(dir, 'environments.jsonl'), JSON.stringify(ENV) + '\n');
    await writeFile(join(dir, 'scenarios.jsonl'), JSON.stringify(SCENARIO) + '\n');
  });
  after(async () => {
    await serving?.close();
    await server?.remove();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves the export alone with a warning instead of dying at its first heartbeat', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
    const config = testConfig(null, { REDIS_URL: server.url, ENVFLEET_POOL_THREADS: '1' });
    serving = await startServing(config, logger, { environments: join(dir, 'environments.jsonl'), scenarios: join(dir, 'scenarios.jsonl'), port: 0, host: '127.0.0.1', maxSessions: 2, idleTimeout: 0 });
    expect(lines.join('\n')).to.include("the session directory did not take this process's entry; it serves its own sessions alone until Redis answers");
    const c = new LatestCookieClient(serving.url);
    expect((await c.post('/seed_session', { scenario_id: 'scn-counter' })).status).to.equal(200);
    expect((await c.post('/add', { n: 3 })).text).to.include('total 3');
    const verified = await c.post('/verify', {});
    expect(verified.status, verified.text).to.equal(200);
    expect(verified.json['reward']).to.equal(1);
  });
});

describe('envfleet serve --run: its Redis stops while it serves (a private redis-server)', function () {
  this.timeout(120_000);
  let server: RedisServerProcess;
  let serving: Serving | undefined;

  before(async () => {
    // Its data kept on disk: started again, it has the run.
    server = await RedisServerProcess.start({ args: ['--maxmemory-policy', 'noeviction', '--appendonly', 'yes', '--appendfsync', 'always'] });
  });
  after(async () => {
    await serving?.close();
    await server?.remove();
  });

  it('answers a seed that needs Redis at once, 503 with Retry-After, and holds no session slot (a seed waited with no end, holding its slot)', async () => {
    const config = testConfig(null, { REDIS_URL: server.url, ENVFLEET_POOL_THREADS: '1' });
    const redis = new Redis(server.url);
    const store = createRedisRunStore(redis, config.redis.prefix);
    await store.createRun({ id: 'away', createdAt: '2026-12-07T00:00:00.000Z', input: 'descriptions', options: runOptionsFrom(config) });
    await store.putDoc('away', 'env', ENV.id, { ...ENV, runId: 'away', description: { summary: 'a counter', introduction: 'a counter' } } as unknown as EnvironmentRecord);
    for (const id of ['scn-counter', 'scn-counter-2']) await store.putDoc('away', 'scenario', id, { ...SCENARIO, id, runId: 'away', status: 'ready' } as unknown as ScenarioRecord);
    redis.disconnect();
    serving = await startServing(config, pino({ level: 'silent' }), { run: 'away', port: 0, host: '127.0.0.1', maxSessions: 1, idleTimeout: 0 });
    await server.kill();

    const c = new LatestCookieClient(serving.url);
    const refused = await c.post('/seed_session', { scenario_id: 'scn-counter-2' });
    expect(refused.status, refused.text).to.equal(503);
    expect(refused.headers.get('retry-after')).to.equal('2');
    expect(refused.text).to.include("the server's Redis does not answer").and.include('retry in a moment');
    // Its slot was not kept: with --max-sessions 1, a session opens once Redis is back.
    await server.spawn();
    await until(async () => (await c.post('/seed_session', { scenario_id: 'scn-counter' })).status === 200, 'a session once Redis is back', 60_000);
  });
});
