import { expect } from 'chai';
import { startServing, type Serving } from '../../cli/serve.js';
import type { AppConfig } from '../../config/index.js';
import type { ScenarioRecord } from '../../src/scenarios/types.js';
import { buildDemoRun, silentLogger, testConfig, useFleet, type Fleet } from '../helpers/integration.js';

/**
 * Issue 13: "A session whose environment hoards memory or burns CPU is ended with its error code
 * while the other sessions of its thread go on." One sandbox thread, so the hoarder, the CPU burner
 * and a demo scenario's session share it; small limits so the hostile sessions end quickly.
 * Real Redis, real sandbox pool, real HTTP. No timing assertions.
 */

interface Reply {
  readonly status: number;
  readonly json: Record<string, unknown>;
}

/** Keeps the session cookie of the latest response (the server re-sends it on every one). */
class Client {
  cookie: string | null = null;
  constructor(readonly base: string) {}
  async post(path: string, body: unknown = {}): Promise<Reply> {
    const res = await fetch(this.base + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(this.cookie ? { cookie: this.cookie } : {}) },
      body: JSON.stringify(body),
    });
    const set = res.headers.getSetCookie();
    if (set.length) this.cookie = set.map(c => c.split(';')[0]!).join('; ');
    return { status: res.status, json: JSON.parse(await res.text()) as Record<string, unknown> };
  }
}

const errorOf = (r: Reply) => r.json['error'] as { code: string; message: string; session_ended?: boolean };
const tool = (name: string, properties: Record<string, unknown> = {}) => ({ type: 'function' as const, function: { name, description: name, parameters: { type: 'object', properties } } });

/** An ordinary generated method gone wrong: it caches outside its state, in a module-level array, and swallows its own out-of-memory error. */
const HOSTILE_SOURCE = `const cache = [];
class Hostile {
  constructor(s) { this.state = s; }
  remember({ mb }) {
    try { for (let i = 0; i < mb; i++) cache.push('h'.repeat(1 << 20) + i); } catch (e) {}
    return { success: true, data: cache.length };
  }
  burn({ n }) { let x = 0; for (let i = 0; i < n; i++) x = (x + i) % 1000003; return { success: true, data: x }; }
}`;

const IRIS_STEPS: [string, Record<string, unknown>][] = [
  ['get_member', { member_id: 'M7' }],
  ['return_book', { loan_id: 'L21' }],
  ['pay_fine', { member_id: 'M7', amount: 2.5 }],
  ['borrow_book', { member_id: 'M7', book_id: 'B5' }],
];

interface Verified {
  readonly reward: number;
  readonly solved: boolean;
  readonly checks: { item: string; passed: boolean }[];
  readonly final_state: unknown;
  readonly ended_by: string;
}

describe('envfleet serve: a hoarding or CPU-burning session ends with its code; the other sessions of its thread go on', function () {
  const fleet = useFleet('suite');
  let f: Fleet;
  let serveConfig: AppConfig;
  let serving: Serving;
  let iris: ScenarioRecord;

  before(async function () {
    f = await fleet();
    await buildDemoRun(f, 's1');
    // The served process: one pool thread and small limits.
    serveConfig = testConfig(null, {
      ENVFLEET_REDIS_PREFIX: f.config.redis.prefix,
      ENVFLEET_POOL_THREADS: '1',
      ENVFLEET_SANDBOX_ENV_MEMORY_MB: '16',
      ENVFLEET_SANDBOX_SESSION_CPU_MS: '400',
      ENVFLEET_SANDBOX_DEADLINE_MS: '2000',
    });
    // The run "iso": the demo run's environments and scenarios, its limits those small ones, plus a hostile environment and its two scenarios.
    const run = (await f.store.getRun('s1'))!;
    const { envMemoryMb, sessionCpuMs, callDeadlineMs } = serveConfig.sandbox;
    await f.store.createRun({ ...run, id: 'iso', options: { ...run.options, limits: { ...run.options.limits, envMemoryMb, sessionCpuMs, callDeadlineMs } } });
    const envIds = await f.store.listDocIds('s1', 'env');
    for (const id of envIds) await f.store.putDoc('iso', 'env', id, { ...(await f.store.getDoc('s1', 'env', id))!, runId: 'iso' });
    const ready: ScenarioRecord[] = [];
    for (const id of await f.store.listDocIds('s1', 'scenario')) {
      const s = (await f.store.getDoc('s1', 'scenario', id))!;
      await f.store.putDoc('iso', 'scenario', id, { ...s, runId: 'iso' });
      if (s.status === 'ready') ready.push(s);
    }
    iris = ready.find(s => s.task?.includes('Iris Vance'))!;
    expect(iris, 'the demo run has the Iris scenario').to.not.equal(undefined);
    const demoEnv = (await f.store.getDoc('s1', 'env', envIds[0]!))!;
    await f.store.putDoc('iso', 'env', 'env-hostile', {
      ...demoEnv,
      id: 'env-hostile',
      runId: 'iso',
      className: 'Hostile',
      source: HOSTILE_SOURCE,
      tools: [tool('remember', { mb: { type: 'integer' } }), tool('burn', { n: { type: 'integer' } })],
    });
    for (const id of ['sc-hoard', 'sc-burn']) {
      await f.store.putDoc('iso', 'scenario', id, {
        ...iris,
        id,
        runId: 'iso',
        environmentId: 'env-hostile',
        initialState: { items: [] },
        task: `hostile scenario ${id}`,
        checklist: [{ item: 'the state is there', check: 'function check(finalState) { return finalState !== null; }' }],
      });
    }
    serving = await startServing(serveConfig, silentLogger(), { run: 'iso', port: 0, host: '127.0.0.1', maxSessions: 8, idleTimeout: 0 });
  });
  after(async () => {
    await serving?.close();
  });

  const playIris = async (c: Client, step: number) => {
    const [name, args] = IRIS_STEPS[step]!;
    const r = await c.post(`/${name}`, args);
    expect(r.status, `${name}: ${JSON.stringify(r.json)}`).to.equal(200);
  };

  it('the hoarder ends with MEMORY_EXCEEDED, the burner with CPU_BUDGET_EXCEEDED or DEADLINE_EXCEEDED; the bystander gets the reward and final state it gets alone', async () => {
    expect(serveConfig.pool.threads, 'every session shares the one sandbox thread').to.equal(1);

    // The bystander alone.
    const alone = new Client(serving.url);
    expect((await alone.post('/seed_session', { scenario_id: iris.id })).status).to.equal(200);
    for (let i = 0; i < IRIS_STEPS.length; i++) await playIris(alone, i);
    const aloneResult = (await alone.post('/verify')).json['envfleet'] as Verified;
    expect(aloneResult).to.include({ reward: 1, solved: true, ended_by: 'finished' });

    // The three together on the one thread.
    const hoarder = new Client(serving.url);
    const burner = new Client(serving.url);
    const bystander = new Client(serving.url);
    for (const [c, id] of [[hoarder, 'sc-hoard'], [burner, 'sc-burn'], [bystander, iris.id]] as const) {
      const seeded = await c.post('/seed_session', { scenario_id: id });
      expect(seeded.status, JSON.stringify(seeded.json)).to.equal(200);
    }
    const hoarded: Reply[] = [];
    const burned: Reply[] = [];
    let step = 0;
    const failed = (rs: Reply[]) => rs.length > 0 && rs.at(-1)!.status !== 200;
    for (let round = 0; round < 200 && !(failed(hoarded) && failed(burned)); round++) {
      await Promise.all([
        failed(hoarded) ? null : hoarder.post('/remember', { mb: 2 }).then(r => hoarded.push(r)),
        failed(burned) ? null : burner.post('/burn', { n: 2_000_000 }).then(r => burned.push(r)),
        // The bystander's scenario, one step a round, then a read-only call each round while the others go on.
        step < IRIS_STEPS.length ? playIris(bystander, step++) : playIris(bystander, 0),
      ]);
    }

    // The hoarder: ordinary results until its allowance is hit, then MEMORY_EXCEEDED and the session has ended.
    expect(failed(hoarded), 'the hoarder is stopped').to.equal(true);
    expect(hoarded.slice(0, -1).every(r => r.status === 200)).to.equal(true);
    const hoardEnd = hoarded.at(-1)!;
    expect(hoardEnd.status).to.equal(422);
    expect(errorOf(hoardEnd)).to.include({ code: 'MEMORY_EXCEEDED', session_ended: true });
    // The burner: its budget (or a call's deadline) runs out.
    expect(failed(burned), 'the burner is stopped').to.equal(true);
    expect(burned.slice(0, -1).every(r => r.status === 200)).to.equal(true);
    const burnEnd = burned.at(-1)!;
    expect(burnEnd.status).to.equal(422);
    expect(errorOf(burnEnd).code).to.be.oneOf(['CPU_BUDGET_EXCEEDED', 'DEADLINE_EXCEEDED']);
    expect(errorOf(burnEnd).session_ended).to.equal(true);

    // Both ended sessions answer as ended ones: tools refused, verify gives the kept result.
    for (const [c, toolName] of [[hoarder, '/remember'], [burner, '/burn']] as const) {
      const refused = await c.post(toolName, { mb: 0, n: 1 });
      expect(refused.status).to.equal(410);
      expect(errorOf(refused).code).to.equal('SESSION_CLOSED');
      const kept = (await c.post('/verify')).json['envfleet'] as Verified;
      expect(kept.ended_by).to.equal('environment-error');
    }

    // The bystander goes on after them and finishes with what it gets alone.
    await playIris(bystander, 0);
    const together = (await bystander.post('/verify')).json['envfleet'] as Verified;
    expect(together).to.include({ reward: aloneResult.reward, solved: aloneResult.solved, ended_by: 'finished' });
    expect(together.checks).to.deep.equal(aloneResult.checks);
    expect(together.final_state).to.deep.equal(aloneResult.final_state);
    expect(serving.registry.stats().active).to.equal(0);
  });
});
