import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { expect } from 'chai';
import { pino } from 'pino';
import { loadConfig } from '../../config/index.js';
import type { CheckSpec, EnvironmentCode } from '../../src/sandbox/bundle.js';
import { DEFAULT_SANDBOX_LIMITS, type SandboxLimits } from '../../src/sandbox/limits.js';
import type { EnvSession } from '../../src/sandbox/runner.js';
import { SANDBOX_THREAD_FILE, createSandboxPool } from '../../workers/sandbox-pool.js';
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
    allocate({ mb, piece }) { const a = []; for (let i = 0; i < mb; i += piece) a.push('y'.repeat(piece << 20) + i); return { success: true, data: a.length }; }
    scan({ n }) { const a = new Array(1e6).fill(0); let found = 0; for (let i = 0; i < n; i++) found += a.indexOf(1); return { success: true, data: found }; }
  }`,
  tools: ['add', 'spin', 'bomb', 'allocate', 'scan'].map(name => ({ type: 'function' as const, function: { name, parameters: { type: 'object' } } })),
};

describe('sandbox pool (real piscina threads)', function () {
  const pool = createSandboxPool({ pool: { threads: 2, tasksPerThread: 64 }, sandbox: LIMITS }, pino({ level: 'silent' }), SANDBOX_THREAD_FILE);
  after(() => pool.close());

  it('starts: every thread loads the thread file and runs an environment', async () => {
    await pool.started();
    expect(pool.piscina.threads.length).to.equal(2);
  });

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

  it('fails every check with STATE_INVALID and the reason when a state cannot be written as JSON (too deep for V8, a cycle), instead of a bare RangeError from postMessage, and scores multi-byte states sent as text', async () => {
    const deep = (n: number) => {
      let v: unknown = 'Zoë';
      for (let i = 0; i < n; i += 1) v = [v];
      return v;
    };
    const cycle: Record<string, unknown> = {};
    cycle['me'] = cycle;
    const checks = [{ item: 'any', check: 'function check(f) { return true; }' }];
    for (const [what, finalState] of [['5,000 deep', { d: deep(5_000) }], ['100,000 deep', { d: deep(100_000) }], ['a cycle', cycle]] as const) {
      const result = await pool.checks({ checks, finalState, initialState: {}, limits: LIMITS });
      expect(result.results.map(r => [r.passed, r.errorCode]), what).to.deep.equal([[false, 'STATE_INVALID']]);
      expect(result.results[0]!.error, what).to.match(/the final state cannot be written as JSON/);
    }
    const texts = await pool.checks({
      checks: [{ item: 'names 😀', check: 'function check(f, i) { return f.name === "客房 😀" && i.name === "Zoë"; }' }],
      finalState: { name: '客房 😀' },
      initialState: { name: 'Zoë' },
      limits: LIMITS,
    });
    expect(texts).to.deep.include({ reward: 1, solved: true });
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

  it('gives every session its own initial state exactly, multi-byte text included, whether the threads decoded it before or it was pushed out since', async () => {
    const ECHO: EnvironmentCode = {
      name: 'echo',
      className: 'Echo',
      source: 'class Echo { constructor(s) { this.state = s; } note({ text }) { this.state.notes.push(text); return { success: true, data: this.state.notes.length }; } }',
      tools: [{ type: 'function', function: { name: 'note', parameters: { type: 'object' } } }],
    };
    // 40 distinct states (more than a thread keeps decoded), each sent to three sessions, in two passes.
    const stateOf = (i: number) => ({ guest: `Zoë 客房 🏨 #${i}`, notes: [`é${'😀'.repeat(i)}`], n: i });
    for (let pass = 0; pass < 2; pass += 1) {
      const sessions = await Promise.all([...Array(120).keys()].map(k => pool.openSession(ECHO, stateOf(k % 40), LIMITS, JSON.stringify(stateOf(k % 40)))));
      await Promise.all(sessions.map((s, k) => s.call('note', { text: `ü${k}` })));
      const ends = await Promise.all(sessions.map(s => s.finish([{ item: 'kept its initial notes', check: 'function check(f, i) { return f.notes[0] === i.notes[0] && f.notes.length === 2; }' }])));
      ends.forEach((end, k) => {
        expect(JSON.parse(end.stateJson!)).to.deep.equal({ ...stateOf(k % 40), notes: [...stateOf(k % 40).notes, `ü${k}`] });
        expect(end.checks).to.deep.include({ reward: 1 });
      });
    }
  });

  it("ends sessions with finish: each one's final state and the checks on it (against the initial state it was given as text), in its own thread", async () => {
    const initial = (i: number) => ({ n: i * 100 });
    const sessions = await Promise.all([...Array(12).keys()].map(i => pool.openSession(COUNTER, initial(i), LIMITS, JSON.stringify(initial(i)))));
    await Promise.all(sessions.map((s, i) => s.call('add', { k: i + 1 })));
    const checks = [
      { item: 'n grew by the session index + 1', check: 'function check(f, i) { f.log.sort(); return f.n - i.n === f.log[0]; }' },
      { item: 'log has one entry', check: 'function check(f) { return f.log.length === 1; }' },
    ];
    const ends = await Promise.all(sessions.map(s => s.finish(checks)));
    ends.forEach((end, i) => {
      expect(JSON.parse(end.stateJson!)).to.deep.equal({ n: i * 100 + i + 1, log: [i + 1] });
      expect(end.checks).to.deep.include({ reward: 1, solved: true });
    });
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

  it('stops a call that runs past its deadline inside a built-in that makes no interrupt checks (indexOf over a large array, in a loop): its thread is terminated, the call gets DEADLINE_EXCEEDED, new sessions are served', async () => {
    // A stranger's probe: 2,000 indexOf over a 1e6-element array ran 19.9 s against a 1 s deadline, returned success, and
    // every other environment of its thread waited as long. QuickJS asks its interrupt handler only every ~10,000 of its own
    // checks, and indexOf makes none. (2,000 of them take 10-40 s here; the watchdog stops the call 2 s past its deadline.)
    const bystanders = await Promise.all([...Array(6).keys()].map(() => pool.openSession(COUNTER, { n: 0 }, LIMITS)));
    const scanner = await pool.openSession(COUNTER, { n: 0 }, LIMITS);
    const [scanned, ...others] = await Promise.allSettled([scanner.call('scan', { n: 2_000 }), ...bystanders.map(s => s.call('add', { k: 1 }))]);
    expect(scanned.status).to.equal('fulfilled');
    const outcome = (scanned as PromiseFulfilledResult<Awaited<ReturnType<EnvSession['call']>>>).value;
    expect(outcome.runtimeError).to.equal('DEADLINE_EXCEEDED');
    expect((outcome.result as { error: string }).error).to.include('past its deadline of 300 ms, and did not stop').and.include('sandbox thread was terminated');
    expect((await scanner.call('add', { k: 1 })).runtimeError).to.equal('ENV_DISPOSED');
    // Its neighbours: answered (on the other thread, or before the scan began) or ended with their thread, never a late success of the scan's.
    for (const o of others) {
      if (o.status === 'rejected') expect(o.reason).to.have.property('code', 'SANDBOX_UNAVAILABLE');
      else expect(o.value.result).to.deep.equal({ success: true, data: 1 });
    }
    const fresh = await pool.openSession(COUNTER, { n: 7 }, LIMITS);
    expect((await fresh.call('add', { k: 1 })).result).to.deep.equal({ success: true, data: 8 });
    await fresh.close();
    await Promise.allSettled([scanner, ...bystanders].map(s => s.close()));
  });

  it('fails the check of a check task stuck the same way with DEADLINE_EXCEEDED (not piscina\'s bare "worker exited"), the others keep their verdicts, and checks run again after it', async () => {
    const stuck = 'function check(f) { const a = new Array(1e6).fill(0); let x = 0; for (let i = 0; i < 2000; i++) x += a.indexOf(1); return x < 0; }';
    const checks = [{ item: 'n is 3 ✓', check: 'function check(f) { return f.n === 3; }' }, { item: 'ids unique', check: stuck }, { item: 'n is 4', check: 'function check(f) { return f.n === 4; }' }];
    const failed = await pool.checks({ checks, finalState: { n: 3 }, initialState: {}, limits: { ...LIMITS, checkDeadlineMs: 300 } });
    // Each check alone after the batch's thread was terminated: the stuck one named, the one that passes passes (it failed with the batch before).
    expect(failed.results.map(r => [r.item, r.passed, r.errorCode])).to.deep.equal([['n is 3 ✓', true, undefined], ['ids unique', false, 'DEADLINE_EXCEEDED'], ['n is 4', false, undefined]]);
    expect(failed).to.deep.include({ reward: 1 / 3, solved: false });
    expect(failed.results[1]!.error).to.include('past its deadline of 300 ms, and did not stop');
    const result = await pool.checks({ checks: [{ item: 'n is 3', check: 'function check(f) { return f.n === 3; }' }], finalState: { n: 3 }, initialState: {}, limits: LIMITS });
    expect(result).to.deep.include({ reward: 1, solved: true });
  });

  it('rejects a session whose environment cannot be created, with the sandbox code', async () => {
    const err = await rejection(pool.openSession({ ...COUNTER, source: 'class Counter {' }, {}, LIMITS));
    expect(err).to.have.property('code', 'SOURCE_LOAD_FAILED');
  });

});

describe("a sandbox thread's finishes wait for its calls and new sessions", function () {
  // One thread, so that every session's work queues on it; the reference hotel env, whose finish (a 65 KB
  // state's snapshot and four checks on it) costs milliseconds where a call costs a fraction of one.
  const pool = createSandboxPool({ pool: { threads: 1, tasksPerThread: 64 }, sandbox: LIMITS }, pino({ level: 'silent' }), SANDBOX_THREAD_FILE);
  after(() => pool.close());
  const hotel = fixture('hotel-env.bundle.json') as EnvironmentCode;
  const state = fixture('hotel-state.json');
  const checks = fixture('hotel-checks.json') as CheckSpec[];

  it('answers a call and starts a session sent after 24 finishes before all but the first few of those finishes are done', async () => {
    await pool.started();
    const ending = await Promise.all([...Array(24).keys()].map(() => pool.openSession(hotel, state, LIMITS)));
    const caller = await pool.openSession(hotel, state, LIMITS);
    // Each finish runs a busy check of its own besides the hotel's four (a finish's checks on a state it has seen are
    // not run again: check-memo.ts), so that finishes are milliseconds apart and this thread takes in each reply before
    // the next one comes. The first finish's loop is ten times as long (≈ 0.1–0.3 s of its 1 s check deadline): the
    // pool thread is in it while everything below is posted, so that the other finishes, the call and the new session
    // are all on the thread before its second finish can start, however the two threads are scheduled. (Posted
    // freely, the call came anywhere from 1st to 9th.)
    const busy = (i: number, loops: number): CheckSpec => ({ item: `busy ${i}`, check: `function check(f) { let x = 0; for (let i = 0; i < ${loops}; i++) x += i; return x > ${i}; }` });
    const checksOf = (i: number): CheckSpec[] => [...checks, busy(i, i === 0 ? 3_000_000 : 300_000)];
    const order: string[] = [];
    // All in one tick: the finishes first, then the call and the new session.
    const finished = ending.map((s, i) => s.finish(checksOf(i)).then(end => {
      expect(end.checks).to.deep.include({ reward: 0.8 });
      order.push(`finish ${i}`);
    }));
    const called = caller.call('get_guest', { guest_id: 'G0001' }).then(outcome => {
      expect(outcome.result).to.have.nested.property('data.guest_id', 'G0001');
      order.push('call');
    });
    const opened = pool.openSession(hotel, state, LIMITS).then(session => {
      order.push('open');
      return session;
    });
    await Promise.all([...finished, called]);
    const fresh = await opened;
    // Run in arrival order, each behind the 24 finishes, the call came 25th.
    expect(order.indexOf('call'), order.join(', ')).to.be.below(4);
    expect(order.indexOf('open'), order.join(', ')).to.be.within(0, 5);
    await Promise.all([caller.close(), fresh.close()]);
  });
});

describe('the memory allowance of ENVFLEET_SANDBOX_ENV_MEMORY_MB, through the worker path', function () {
  const silent = pino({ level: 'silent' });

  /** A pool and limits made from the environment as a worker and a submitter make them. */
  async function withWorkerConfig(env: Record<string, string>, fn: (pool: ReturnType<typeof createSandboxPool>, limits: SandboxLimits) => Promise<void>) {
    const config = loadConfig({ ENVFLEET_POOL_THREADS: '1', ...env });
    const pool = createSandboxPool(config, silent, SANDBOX_THREAD_FILE);
    try {
      await pool.started();
      await fn(pool, config.sandbox);
    } finally {
      await pool.close();
    }
  }

  it('applies ENVFLEET_SANDBOX_ENV_MEMORY_MB=16: a method that allocates 128 MiB is stopped, 8 MiB fits', async () => {
    await withWorkerConfig({ ENVFLEET_SANDBOX_ENV_MEMORY_MB: '16' }, async (pool, limits) => {
      expect(limits.envMemoryMb).to.equal(16);
      const probe = await pool.probe({ code: COUNTER, initialState: { n: 0 }, calls: [{ tool: 'allocate', arguments: { mb: 128, piece: 1 } }], limits });
      expect(probe.steps[0]!.runtimeError).to.equal('MEMORY_EXCEEDED');
      expect((probe.steps[0]!.result as { error: string }).error).to.match(/16 MiB/);
      const fits = await pool.probe({ code: COUNTER, initialState: { n: 0 }, calls: [{ tool: 'allocate', arguments: { mb: 8, piece: 1 } }], limits });
      expect(fits.steps[0]!.result).to.deep.equal({ success: true, data: 8 });
    });
  });

  it('applies the documented 64 MiB when nothing is set: a 256 MiB string is refused, a 32 MiB one is not', async () => {
    await withWorkerConfig({}, async (pool, limits) => {
      expect(limits.envMemoryMb).to.equal(64);
      const session = await pool.openSession(COUNTER, { n: 0 }, limits);
      expect((await session.call('allocate', { mb: 32, piece: 32 })).result).to.deep.equal({ success: true, data: 1 });
      expect((await session.call('allocate', { mb: 256, piece: 256 })).runtimeError).to.equal('MEMORY_EXCEEDED');
      expect((await session.call('add', { k: 1 })).runtimeError).to.equal('ENV_DISPOSED');
      await session.close();
    });
  });
});

describe('sandbox pool start-up', function () {
  const silent = pino({ level: 'silent' });
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'envfleet-pool-start-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const refusal = async (threadFile: URL): Promise<Error> => {
    const pool = createSandboxPool({ pool: { threads: 2, tasksPerThread: 4 }, sandbox: DEFAULT_SANDBOX_LIMITS }, silent, threadFile);
    try {
      return (await rejection(pool.started())) as Error;
    } finally {
      await pool.close();
    }
  };

  it('refuses to start, naming the file and the cause, when the thread file is missing', async () => {
    const missing = pathToFileURL(join(dir, 'sandbox-thread.js'));
    const err = await refusal(missing);
    expect(err).to.have.property('code', 'SANDBOX_UNAVAILABLE');
    expect(err.message).to.include('the sandbox pool cannot start its threads from').and.to.include(join(dir, 'sandbox-thread.js'));
    expect(err.message).to.match(/Cannot find module/);
  });

  it('refuses to start when the thread file throws as it loads', async () => {
    const file = join(dir, 'throws.mjs');
    await writeFile(file, "throw new Error('this thread cannot load');\n");
    const err = await refusal(pathToFileURL(file));
    expect(err).to.have.property('code', 'SANDBOX_UNAVAILABLE');
    expect(err.message).to.match(/this thread cannot load/);
  });

  it('survives threads terminated while they load the thread file (a worker that stops as its pool starts): no require(esm) abort', async function () {
    // 300 pools take 15-30 s on this 2-core machine, by its load: the wait is the child's own (spawnSync's timeout).
    this.timeout(310_000);
    // An ES module with a default export: on Node 20.19+ a thread terminated as require() finishes loading such a
    // module aborts the whole process (SIGABRT, "Assertion failed: facade->InstantiateModule"). The child terminates
    // each pool's threads 0-6 ms after their evaluation began (it takes 2 ms); without the fix it aborted within 300 (2 runs of 3 within 100).
    const file = join(dir, 'slow-start.mjs');
    const mark = join(dir, 'evaluating');
    await writeFile(file, `import { writeFileSync } from 'node:fs';\nwriteFileSync(${JSON.stringify(mark)}, 'x');\nconst t = Date.now(); while (Date.now() - t < 2) {}\nexport default async () => ({ ok: true });\n`);
    const child = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../helpers/pool-churn.ts', import.meta.url)), pathToFileURL(file).href, '300', '6'], {
      encoding: 'utf8',
      timeout: 300_000,
      env: { ...process.env, CHURN_MARK: mark },
    });
    expect(child.stderr).to.not.match(/Assertion failed/);
    expect(child.status, child.stderr).to.equal(0);
    expect(child.stdout).to.include('300 pools made and terminated');
  });

  it('refuses to start when a thread cannot run an environment', async () => {
    const file = join(dir, 'broken.mjs');
    await writeFile(file, "export default async () => { throw new Error('no QuickJS here'); };\n");
    const err = await refusal(pathToFileURL(file));
    expect(err.message).to.match(/no QuickJS here/);
  });
});

