import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { pino } from 'pino';
import type { EnvironmentCode } from '../../src/sandbox/bundle.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../src/sandbox/limits.js';
import type { EnvSession } from '../../src/sandbox/runner.js';
import { createSandboxPool } from '../../workers/sandbox-pool.js';
import { rejection } from '../helpers/assert.js';

const fixture = (name: string): unknown => JSON.parse(readFileSync(new URL(`../../fixtures/reference/${name}`, import.meta.url), 'utf8'));
const LIMITS = { ...DEFAULT_SANDBOX_LIMITS, callDeadlineMs: 300, heapMb: 256, envMemoryMb: 32 };
const COUNTER: EnvironmentCode = {
  name: 'counter',
  className: 'Counter',
  source: `class Counter {
    constructor(s) { this.state = { n: s.n, log: [] }; }
    add({ k }) { this.state.n += k; this.state.log.push(k); return { success: true, data: this.state.n }; }
    spin() { for (;;) {} }
    bomb() { const a = []; for (;;) a.push('x'.repeat(65536) + a.length); }
  }`,
  tools: ['add', 'spin', 'bomb'].map(name => ({ type: 'function' as const, function: { name, parameters: { type: 'object' } } })),
};

describe('sandbox pool (real piscina threads)', function () {
  this.timeout(60_000);
  const pool = createSandboxPool({ pool: { threads: 2, tasksPerThread: 64 } }, pino({ level: 'silent' }));
  after(() => pool.close());

  it('runs a probe of the reference environment in a thread', async () => {
    const result = await pool.probe({
      code: fixture('hotel-env.bundle.json') as EnvironmentCode,
      initialState: fixture('hotel-state.json'),
      calls: [{ tool: 'get_guest', arguments: { guest_id: 'G0001' } }, { tool: 'nope', arguments: {} }],
      limits: LIMITS,
      withStates: true,
    });
    expect(result.createError).to.equal(null);
    expect(result.steps[0]!.result).to.have.nested.property('data.guest_id', 'G0001');
    expect(result.steps[1]!.runtimeError).to.equal('UNKNOWN_TOOL');
  });

  it('runs check functions in a thread', async () => {
    const result = await pool.checks({ checks: [{ item: 'n is 3', check: 'function check(f) { return f.n === 3; }' }], finalState: { n: 3 }, initialState: {}, limits: LIMITS });
    expect(result).to.deep.include({ reward: 1, solved: true });
  });

  it('keeps many sessions alive at once, each with its own state, across both threads', async () => {
    const sessions: EnvSession[] = await Promise.all([...Array(40).keys()].map(i => pool.openSession(COUNTER, { n: i * 100 }, LIMITS)));
    // Interleave calls across all sessions.
    for (let round = 1; round <= 5; round += 1) {
      const outcomes = await Promise.all(sessions.map(s => s.call('add', { k: round })));
      outcomes.forEach(o => expect(o.runtimeError).to.equal(undefined));
    }
    const states = await Promise.all(sessions.map(s => s.snapshot()));
    states.forEach((state, i) => expect(state).to.deep.equal({ n: i * 100 + 15, log: [1, 2, 3, 4, 5] }));
    expect(pool.piscina.threads.length).to.equal(2);
    await Promise.all(sessions.map(s => s.close()));
  });

  it('throws away only the session that hit a limit; its neighbours keep their state', async () => {
    // The bomber gets a long deadline so that memory, not time, is the limit it hits.
    const sessions = await Promise.all([...Array(6).keys()].map(i => pool.openSession(COUNTER, { n: i }, i === 1 ? { ...LIMITS, callDeadlineMs: 20_000 } : LIMITS)));
    const [spinner, bomber, ...rest] = sessions;
    const [spun, bombed] = await Promise.all([spinner!.call('spin', {}), bomber!.call('bomb', {})]);
    expect(spun.runtimeError).to.equal('DEADLINE_EXCEEDED');
    expect(bombed.runtimeError).to.equal('MEMORY_EXCEEDED');
    expect((await spinner!.call('add', { k: 1 })).runtimeError).to.equal('ENV_DISPOSED');
    for (const [i, s] of rest.entries()) expect((await s.call('add', { k: 10 })).result).to.deep.equal({ success: true, data: i + 2 + 10 });
    await Promise.all(sessions.map(s => s.close()));
  });

  it('reports a session whose thread died, and serves new sessions on the replacement thread', async () => {
    const sessions = await Promise.all([...Array(8).keys()].map(() => pool.openSession(COUNTER, { n: 0 }, LIMITS)));
    const victim = pool.piscina.threads[0]!;
    await victim.terminate();
    const outcomes = await Promise.allSettled(sessions.map(s => s.call('add', { k: 1 })));
    const lost = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
    expect(lost.length).to.be.greaterThan(0);
    for (const o of lost) expect(o.reason).to.have.property('code', 'SANDBOX_UNAVAILABLE');
    const fresh = await pool.openSession(COUNTER, { n: 7 }, LIMITS);
    expect((await fresh.call('add', { k: 1 })).result).to.deep.equal({ success: true, data: 8 });
    await fresh.close();
    await Promise.allSettled(sessions.map(s => s.close()));
  });

  it('rejects a session whose environment cannot be created, with the sandbox code', async () => {
    const err = await rejection(pool.openSession({ ...COUNTER, source: 'class Counter {' }, {}, LIMITS));
    expect(err).to.have.property('code', 'SOURCE_LOAD_FAILED');
  });
});
