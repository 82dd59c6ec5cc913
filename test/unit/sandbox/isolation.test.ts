import { expect } from 'chai';
import type { EnvironmentCode } from '../../../src/sandbox/bundle.js';
import { DEFAULT_SANDBOX_LIMITS, type SandboxLimits } from '../../../src/sandbox/limits.js';
import { quickjsBuild } from '../../../src/sandbox/quickjs-build.js';
import { QuickJSHost, type CallOutcome } from '../../../src/sandbox/quickjs-host.js';

const MiB = 1 << 20;
const tool = (name: string) => ({ type: 'function' as const, function: { name, parameters: { type: 'object' } } });

/**
 * An ordinary generated method gone wrong: it appends to a module-level cache, outside its state,
 * and swallows its own out-of-memory error.
 */
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
    huge({ mb }) { return { success: true, data: 'x'.repeat(mb << 20).length }; }
    work({ n }) { let x = 0; for (let i = 0; i < n; i++) x = (x + i) % 1000003; return { success: true, data: x }; }
    ok() { return { success: true, data: 'fine' }; }
  }`,
  tools: ['remember', 'huge', 'work', 'ok'].map(tool),
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

const LIMITS: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, envMemoryMb: 32 };

/** Calls `fn` until it reports a runtime error, at most `max` times; returns the outcomes. */
function until(fn: () => CallOutcome, max: number): CallOutcome[] {
  const out: CallOutcome[] = [];
  for (let i = 0; i < max; i++) {
    const o = fn();
    out.push(o);
    if (o.runtimeError) break;
  }
  return out;
}

describe('sandbox memory and CPU, per environment (one thread)', function () {
  this.timeout(60_000);

  it('stops an environment at its memory allowance even when it swallows its out-of-memory error, and throws it away', async () => {
    const host = new QuickJSHost(256);
    const env = await host.createEnvironment(HOARDER, {}, LIMITS);
    const outcomes = until(() => env.call('remember', { mb: 4 }), 64);
    const last = outcomes.at(-1)!;
    expect(last.runtimeError).to.equal('MEMORY_EXCEEDED');
    expect((last.result as { error: string }).error).to.match(/memory allowance \(32 MiB/);
    // It held less than its allowance before it was stopped.
    const held = outcomes.slice(0, -1).map(o => (o.result as { data: number }).data);
    expect(Math.max(0, ...held)).to.be.at.most(32);
    expect(env.disposed).to.equal(true);
    expect(env.call('ok', {}).runtimeError).to.equal('ENV_DISPOSED');
  });

  it('applies the allowance to one large allocation: a 256 MiB string against the default 64 MiB', async () => {
    const host = new QuickJSHost(DEFAULT_SANDBOX_LIMITS.heapMb);
    const env = await host.createEnvironment(HOARDER, {}, DEFAULT_SANDBOX_LIMITS);
    expect(env.call('huge', { mb: 256 }).runtimeError).to.equal('MEMORY_EXCEEDED');
    const other = await host.createEnvironment(HOARDER, {}, DEFAULT_SANDBOX_LIMITS);
    expect(other.call('huge', { mb: 16 }).result).to.deep.equal({ success: true, data: 16 * MiB });
    other.dispose();
  });

  it("enforces an allowance below the build's own 16 MiB minimum: all heap passes through the host", async () => {
    const build = await quickjsBuild();
    expect(build.patched).to.equal(true);
    expect(build.initialPages * 65_536).to.be.below(8 * MiB);
    const host = new QuickJSHost(256);
    const env = await host.createEnvironment(HOARDER, {}, { ...LIMITS, envMemoryMb: 4 });
    expect(env.call('remember', { mb: 2 }).result).to.deep.equal({ success: true, data: 2 });
    expect(env.call('remember', { mb: 4 }).runtimeError).to.equal('MEMORY_EXCEEDED');
  });

  it('charges the hoarder, not its neighbour: the neighbour gets the results it gets alone', async () => {
    const alone = new QuickJSHost(128);
    const solo = await alone.createEnvironment(NOTES, {}, LIMITS);
    const expected = [...Array(300).keys()].map(i => solo.call('add', { text: `note ${i}` }).result);
    solo.dispose();

    // A bound the hoarder alone could fill if its allowance did not stop it first.
    const host = new QuickJSHost(128);
    const hoarder = await host.createEnvironment(HOARDER, {}, { ...LIMITS, envMemoryMb: 64 });
    const neighbour = await host.createEnvironment(NOTES, {}, LIMITS);
    const got: unknown[] = [];
    const hoarded: (string | undefined)[] = [];
    for (let i = 0; i < 300; i++) {
      if (i < 40) hoarded.push(hoarder.call('remember', { mb: 4 }).runtimeError);
      got.push(neighbour.call('add', { text: `note ${i}` }).result);
    }
    expect(got).to.deep.equal(expected);
    expect(hoarded).to.include('MEMORY_EXCEEDED');
    expect(hoarded.filter(c => c !== undefined && c !== 'MEMORY_EXCEEDED')).to.satisfy((cs: string[]) => cs.every(c => c === 'ENV_DISPOSED'));
    expect(host.heapBytes()).to.be.at.most(128 * MiB);
    neighbour.dispose();
  });

  it('bounds the thread: the sum over its environments stays under heapMb; the one that needs more is stopped, the others keep what they hold', async () => {
    const host = new QuickJSHost(96);
    const limits = { ...LIMITS, envMemoryMb: 64 };
    const [a, b, c] = await Promise.all([0, 1, 2].map(() => host.createEnvironment(HOARDER, {}, limits)));
    expect(a!.call('remember', { mb: 40 }).result).to.deep.equal({ success: true, data: 40 });
    expect(b!.call('remember', { mb: 40 }).result).to.deep.equal({ success: true, data: 40 });
    const refused = c!.call('remember', { mb: 40 });
    expect(refused.runtimeError).to.equal('SANDBOX_MEMORY_FULL');
    expect((refused.result as { error: string }).error).to.match(/ENVFLEET_SANDBOX_HEAP_MB/);
    expect(c!.disposed).to.equal(true);
    expect(host.heapBytes()).to.be.at.most(96 * MiB);
    expect(a!.call('ok', {}).result).to.deep.equal({ success: true, data: 'fine' });
    expect(b!.call('remember', { mb: 0 }).result).to.deep.equal({ success: true, data: 40 });
    // Room comes back when an environment leaves.
    b!.dispose();
    const d = await host.createEnvironment(HOARDER, {}, limits);
    expect(d.call('remember', { mb: 30 }).result).to.deep.equal({ success: true, data: 30 });
    expect(host.heapBytes()).to.be.at.most(96 * MiB);
    a!.dispose();
    d.dispose();
  });

  it('refuses a new environment when the thread has no room for its module', async () => {
    const host = new QuickJSHost(16);
    const envs = [];
    let refusal: unknown = null;
    for (let i = 0; i < 32 && !refusal; i++) {
      try {
        envs.push(await host.createEnvironment(HOARDER, {}, LIMITS));
      } catch (err) {
        refusal = err;
      }
    }
    expect(refusal).to.have.property('code', 'SANDBOX_MEMORY_FULL');
    expect(String((refusal as Error).message)).to.match(/no room for a new environment/);
    expect(envs.length).to.be.greaterThan(1);
    expect(host.heapBytes()).to.be.at.most(16 * MiB);
    for (const e of envs) expect(e.call('ok', {}).result).to.deep.equal({ success: true, data: 'fine' });
    for (const e of envs) e.dispose();
  });

  it("tells an environment that would pass the thread's bound even alone (its own doing: MEMORY_EXCEEDED) from a thread full of others (SANDBOX_MEMORY_FULL)", async () => {
    // An allowance larger than the thread's bound: nothing else in the thread, and still no room for what it asks.
    const host = new QuickJSHost(24);
    const alone = await host.createEnvironment(HOARDER, {}, { ...LIMITS, envMemoryMb: 64 });
    const refused = alone.call('remember', { mb: 40 });
    expect(refused.runtimeError).to.equal('MEMORY_EXCEEDED');
    expect((refused.result as { error: string }).error).to.match(/whole bound .*even alone/);
    expect(alone.disposed).to.equal(true);
    // The same request, with room for it alone but not beside a neighbour: the thread is full of the neighbour.
    const shared = new QuickJSHost(48);
    const neighbour = await shared.createEnvironment(HOARDER, {}, { ...LIMITS, envMemoryMb: 64 });
    expect(neighbour.call('remember', { mb: 20 }).result).to.deep.equal({ success: true, data: 20 });
    const second = await shared.createEnvironment(HOARDER, {}, { ...LIMITS, envMemoryMb: 64 });
    expect(second.call('remember', { mb: 30 }).runtimeError).to.equal('SANDBOX_MEMORY_FULL');
    neighbour.dispose();
  });

  it('gives each environment a module of its own, reuses a small one, and drops one that grew', async () => {
    const host = new QuickJSHost(256);
    const a = await host.createEnvironment(HOARDER, {}, LIMITS);
    const b = await host.createEnvironment(HOARDER, {}, LIMITS);
    expect(host.moduleCount).to.equal(2);
    a.dispose();
    const c = await host.createEnvironment(HOARDER, {}, LIMITS);
    expect(host.moduleCount).to.equal(2); // c took a's module
    expect(c.call('ok', {}).result).to.deep.equal({ success: true, data: 'fine' });
    b.call('remember', { mb: 16 });
    const before = host.heapBytes();
    b.dispose();
    expect(host.moduleCount).to.equal(1);
    expect(host.heapBytes()).to.be.below(before - 16 * MiB);
    c.dispose();
  });

  it('gives each check function the allowance; a check that hoards fails alone', async () => {
    const host = new QuickJSHost(256);
    const results = await host.runChecks(
      [
        { item: 'before', check: 'function check(f) { return f.n === 1; }' },
        { item: 'hoards', check: 'function check(f) { const a = []; try { for (;;) a.push("z".repeat(1 << 20) + a.length); } catch (e) {} return true; }' },
        { item: 'after', check: 'function check(f, i) { return f.n > i.n; }' },
      ],
      { n: 1 },
      { n: 0 },
      { ...LIMITS, envMemoryMb: 16 },
    );
    expect(results.map(r => [r.item, r.passed, r.errorCode])).to.deep.equal([
      ['before', true, undefined],
      ['hoards', false, 'MEMORY_EXCEEDED'],
      ['after', true, undefined],
    ]);
  });

  it('ends a session that spends its CPU budget, call by call, with CPU_BUDGET_EXCEEDED', async () => {
    const host = new QuickJSHost(256);
    // Each call stays well within its own deadline; together they pass the session's budget.
    const slow = await host.createEnvironment(HOARDER, {}, { ...LIMITS, callDeadlineMs: 60_000, sessionCpuMs: 50 });
    const neighbour = await host.createEnvironment(NOTES, {}, LIMITS);
    const outcomes = until(() => {
      neighbour.call('add', { text: 'between' });
      return slow.call('work', { n: 2_000_000 });
    }, 1_000);
    const last = outcomes.at(-1)!;
    expect(last.runtimeError).to.equal('CPU_BUDGET_EXCEEDED');
    expect((last.result as { error: string }).error).to.match(/CPU budget/);
    expect(outcomes.slice(0, -1).every(o => o.runtimeError === undefined)).to.equal(true);
    expect(slow.call('ok', {}).runtimeError).to.equal('ENV_DISPOSED');
    expect(slow.cpuMs).to.be.at.least(50);
    expect(neighbour.call('add', { text: 'still here' }).runtimeError).to.equal(undefined);
    neighbour.dispose();
  });

  it('answers a snapshot of a session that spent its budget with ENV_DISPOSED', async () => {
    const host = new QuickJSHost(256);
    const slow = await host.createEnvironment(HOARDER, {}, { ...LIMITS, callDeadlineMs: 60_000, sessionCpuMs: 1 });
    until(() => slow.call('work', { n: 2_000_000 }), 1_000);
    expect(() => slow.snapshot()).to.throw().with.property('code', 'ENV_DISPOSED');
  });

  it('answers a reply the module has no room left to hand over (its UTF-8 copy) with MEMORY_EXCEEDED, never an empty text', async () => {
    // A state of wide text (two bytes a character in the guest, three in UTF-8) held in a 16 MiB
    // allowance: for some lengths JSON.stringify still fits and the UTF-8 copy of its text the host
    // reads does not. That copy's failure used to read as an empty reply: a snapshot "" (and a
    // tool's result "") with no error. The source names a toJSON, so its snapshots are the guest's
    // JSON.stringify (the way every snapshot went before the native encoder, and its fallback).
    const source = `class Wide { constructor(s) { this.state = s; }
      fill({ n }) { this.state = { s: '日本'.repeat(n) }; return { success: true }; }
      keep({ n }) { this.state = { s: '日本'.repeat(n) }; return this.state; } } // toJSON`;
    const code: EnvironmentCode = { name: 'wide', className: 'Wide', source, tools: [tool('fill'), tool('keep')] };
    const limits: SandboxLimits = { ...LIMITS, envMemoryMb: 16, maxResultBytes: 64 * MiB, callDeadlineMs: 60_000, sessionCpuMs: 1e9 };
    const host = new QuickJSHost(256);
    const outcomes: string[] = [];
    // The sweep goes up from lengths that fit to a few past the first that does not: where that is
    // depends on the module's exact heap (the harness's own size moves it by a whole block).
    let past = 0;
    for (let n = 600_000; n <= 2_000_000 && past < 4; n += 20_000) {
      const text = JSON.stringify({ s: '日本'.repeat(n) });
      const env = await host.createEnvironment(code, {}, limits);
      try {
        expect(env.call('fill', { n }).runtimeError).to.equal(undefined);
        let got: { text: string } | { code: string };
        try {
          got = { text: env.snapshotText() };
        } catch (err) {
          got = { code: (err as { code: string }).code };
        }
        // (compared as a flag: a diff of megabytes would bury the message)
        if ('text' in got) expect(got.text === text, `snapshot, n = ${n}: ${got.text.length} characters where ${text.length} were due`).to.equal(true);
        else expect(got.code, `snapshot, n = ${n}`).to.equal('MEMORY_EXCEEDED');
        outcomes.push('text' in got ? 'text' : got.code);
        if (!('text' in got)) past += 1;
      } finally {
        env.dispose();
      }
      const env2 = await host.createEnvironment(code, {}, limits);
      try {
        const kept = env2.callText('keep', { n });
        if (kept.runtimeError === undefined) expect(kept.resultJson === text, `result, n = ${n}: ${kept.resultJson.length} characters where ${text.length} were due`).to.equal(true);
        else expect(kept.runtimeError, `result, n = ${n}`).to.equal('MEMORY_EXCEEDED');
      } finally {
        env2.dispose();
      }
    }
    // Both sides of the allowance were reached.
    expect(outcomes).to.include('text').and.to.include('MEMORY_EXCEEDED');
  });
});
