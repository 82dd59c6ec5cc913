import { expect } from 'chai';
import { pino } from 'pino';
import type { EnvironmentCode } from '../../src/sandbox/bundle.js';
import { DEFAULT_SANDBOX_LIMITS, type SandboxLimits } from '../../src/sandbox/limits.js';
import type { CallOutcome } from '../../src/sandbox/quickjs-host.js';
import { SANDBOX_THREAD_FILE, createSandboxPool } from '../../workers/sandbox-pool.js';

/**
 * Environments sharing one pool thread (issue 11, item 2): memory is charged to the environment
 * that allocated it, the thread's total is bounded, and a slow session runs out of CPU budget
 * instead of stalling its neighbours. Real piscina threads, real QuickJS.
 */

const tool = (name: string) => ({ type: 'function' as const, function: { name, parameters: { type: 'object' } } });

/** An ordinary generated method gone wrong: it appends to a module-level cache, outside its state, and swallows its own out-of-memory error. */
const HOARDER: EnvironmentCode = {
  name: 'hoarder',
  className: 'Hoarder',
  source: `const cache = [];
  class Hoarder {
    constructor(s) { this.state = s; }
    remember({ mb }) {
      try { for (let i = 0; i < mb; i++) cache.push('h'.repeat(1 << 20) + i); } catch (e) {}
      return { success: true, data: cache.length };
    }
    work({ n }) { let x = 0; for (let i = 0; i < n; i++) x = (x + i) % 1000003; return { success: true, data: x }; }
  }`,
  tools: ['remember', 'work'].map(tool),
};

/** A well-behaved neighbour whose every call allocates a little more. */
const NOTES: EnvironmentCode = {
  name: 'notes',
  className: 'Notes',
  source: `class Notes {
    constructor(s) { this.state = { n: 0, notes: [] }; }
    add({ text }) {
      this.state.n += 1;
      const note = text + ' #' + this.state.n + ' ' + 'x'.repeat(this.state.n % 512);
      this.state.notes.push(note);
      return { success: true, data: { n: this.state.n, length: note.length, total: this.state.notes.length } };
    }
  }`,
  tools: [tool('add')],
};

const codes = (outcomes: readonly CallOutcome[]) => outcomes.map(o => o.runtimeError ?? 'ok');

describe('sandbox isolation between the environments of one pool thread', function () {
  // One thread, so every session below shares it. Its bound (192 MiB) is less than the hoarder
  // would take (240 MiB) if its own allowance (the default 64 MiB) did not stop it first.
  const LIMITS: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, heapMb: 192 };
  const pool = createSandboxPool({ pool: { threads: 1, tasksPerThread: 64 }, sandbox: LIMITS }, pino({ level: 'silent' }), SANDBOX_THREAD_FILE);
  before(() => pool.started());
  after(() => pool.close());

  it('charges the hoarder: the bystander finishes 1,000 calls with the results it gets alone; the hoarder ends with MEMORY_EXCEEDED', async () => {
    const alone = await pool.openSession(NOTES, {}, LIMITS);
    const expected: unknown[] = [];
    for (let i = 0; i < 1_000; i++) expected.push((await alone.call('add', { text: `note ${i}` })).result);
    const expectedState = await alone.snapshot();
    await alone.close();

    const hoarder = await pool.openSession(HOARDER, {}, LIMITS);
    const bystander = await pool.openSession(NOTES, {}, LIMITS);
    const hoarded: CallOutcome[] = [];
    const got: unknown[] = [];
    for (let i = 0; i < 1_000; i++) {
      // 60 × 4 MiB = 240 MiB kept outside the state, the out-of-memory error swallowed.
      if (i < 60) hoarded.push(await hoarder.call('remember', { mb: 4 }));
      got.push((await bystander.call('add', { text: `note ${i}` })).result);
    }
    expect(got).to.deep.equal(expected);
    expect(await bystander.snapshot()).to.deep.equal(expectedState);
    const ended = codes(hoarded).indexOf('MEMORY_EXCEEDED');
    expect(ended, 'the hoarder is stopped').to.be.greaterThan(0);
    expect(codes(hoarded.slice(0, ended)).every(c => c === 'ok')).to.equal(true);
    expect(codes(hoarded.slice(ended + 1)).every(c => c === 'ENV_DISPOSED')).to.equal(true);
    // Before it was stopped it held at most its allowance.
    expect((hoarded[ended - 1]!.result as { data: number }).data).to.be.at.most(64);
    await Promise.all([hoarder.close(), bystander.close()]);
  });

  it('ends a session that spends most of its deadline on every call with CPU_BUDGET_EXCEEDED; its neighbour keeps going', async () => {
    const slowLimits = { ...LIMITS, callDeadlineMs: 60_000, sessionCpuMs: 200 };
    const slow = await pool.openSession(HOARDER, {}, slowLimits);
    const bystander = await pool.openSession(NOTES, {}, LIMITS);
    const outcomes: CallOutcome[] = [];
    let n = 0;
    while (outcomes.length < 1_000 && !outcomes.at(-1)?.runtimeError) {
      const [o, b] = await Promise.all([slow.call('work', { n: 2_000_000 }), bystander.call('add', { text: 'between' })]);
      outcomes.push(o);
      n += 1;
      expect(b.result).to.deep.include({ success: true });
      expect((b.result as { data: { n: number } }).data.n).to.equal(n);
    }
    expect(outcomes.at(-1)!.runtimeError).to.equal('CPU_BUDGET_EXCEEDED');
    expect(codes(outcomes.slice(0, -1)).every(c => c === 'ok')).to.equal(true);
    expect((await slow.call('work', { n: 1 })).runtimeError).to.equal('ENV_DISPOSED');
    expect((await bystander.call('add', { text: 'after' })).runtimeError).to.equal(undefined);
    await Promise.all([slow.close(), bystander.close()]);
  });
});

describe("sandbox thread memory bound (the worker's ENVFLEET_SANDBOX_HEAP_MB)", function () {
  const pool = createSandboxPool({ pool: { threads: 1, tasksPerThread: 64 }, sandbox: { ...DEFAULT_SANDBOX_LIMITS, heapMb: 96 } }, pino({ level: 'silent' }), SANDBOX_THREAD_FILE);
  before(() => pool.started());
  after(() => pool.close());

  it('holds over all the heaps of the thread, whatever bound the run froze; the session that needs more is stopped, the others keep theirs', async () => {
    // The run says 512 MiB; the worker's 96 MiB applies.
    const limits: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, heapMb: 512 };
    const [a, b, c] = await Promise.all([0, 1, 2].map(() => pool.openSession(HOARDER, {}, limits)));
    expect((await a!.call('remember', { mb: 40 })).result).to.deep.equal({ success: true, data: 40 });
    expect((await b!.call('remember', { mb: 40 })).result).to.deep.equal({ success: true, data: 40 });
    expect((await c!.call('remember', { mb: 40 })).runtimeError).to.equal('SANDBOX_MEMORY_FULL');
    // A session opened later gets no fresh heap past the bound either.
    const d = await pool.openSession(HOARDER, {}, limits);
    expect((await d.call('remember', { mb: 40 })).runtimeError).to.equal('SANDBOX_MEMORY_FULL');
    expect((await a!.call('remember', { mb: 0 })).result).to.deep.equal({ success: true, data: 40 });
    expect((await b!.call('remember', { mb: 0 })).result).to.deep.equal({ success: true, data: 40 });
    await Promise.all([a!, b!, c!, d].map(s => s.close()));
  });
});
