import { expect } from 'chai';
import type { CheckSpec } from '../../../src/sandbox/bundle.js';
import { CheckMemo, memoizable } from '../../../src/sandbox/check-memo.js';
import { DEFAULT_SANDBOX_LIMITS, type SandboxLimits } from '../../../src/sandbox/limits.js';
import { QuickJSHost } from '../../../src/sandbox/quickjs-host.js';

/**
 * Check outcomes remembered per thread (issue 14 item 1): a batch run again on the same checks, limits and state
 * texts is answered from the memo, with the outcomes a fresh run gives; anything that could change an outcome
 * (a character of either state, a limit, a check's text) is a new batch; clocks, random numbers and errors are
 * never remembered.
 */
const limits: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, heapMb: 256 };

const initial = { guests: { G1: { name: 'Zoë 😀', balance: 10 }, G2: { name: '山田', balance: 0 } }, list: [3, 1, 2], reservations: ['r1'] };
const final = { guests: { G1: { name: 'Zoë 😀', balance: 0 }, G2: { name: '山田', balance: 0 } }, list: [3, 1, 2], reservations: ['r1', 'r2'] };
const CHECKS: CheckSpec[] = [
  // Sorts the final state's list in place: the next check must still see it unsorted.
  { item: 'sorted copy', check: 'function check(s) { s.list.sort(); return s.list.join() === "1,2,3"; }' },
  { item: 'list untouched', check: 'function check(s) { return s.list.join() === "3,1,2"; }' },
  { item: 'G1 paid 😀', check: 'function check(s) { return s.guests.G1.balance === 0 && s.guests.G1.name.endsWith("😀"); }' },
  { item: 'more reservations', check: 'function check(s, i) { return s.reservations.length > i.reservations.length; }' },
  { item: 'dates', check: 'function check(s) { return Date.parse("2026-12-02T00:00:00Z") < new Date("2027-01-01").getTime() && Date.UTC(2026, 0, 1) > 0; }' },
];

async function fresh(checks: readonly CheckSpec[], f: unknown, i: unknown, l = limits) {
  const host = new QuickJSHost(l.heapMb);
  return host.runChecksOnText(checks, JSON.stringify(f), JSON.stringify(i), l);
}

describe('check outcomes remembered per thread (CheckMemo)', function () {
  this.timeout(60_000);

  it('answers a batch run again on the same texts from the memo, with the outcomes a fresh run gives', async () => {
    const host = new QuickJSHost(limits.heapMb);
    const expected = await fresh(CHECKS, final, initial);
    expect(expected.map(o => o.passed)).to.deep.equal([true, true, true, true, true]);
    const first = await host.runChecksOnText(CHECKS, JSON.stringify(final), JSON.stringify(initial), limits);
    expect(host.checkMemo).to.include({ hits: 0, misses: 1, size: 1 });
    // Other string objects of the same texts, as every session's finish brings.
    const again = await host.runChecksOnText(structuredClone(CHECKS), JSON.stringify(structuredClone(final)), `${JSON.stringify(initial)}`, { ...limits });
    expect(host.checkMemo).to.include({ hits: 1, misses: 1, size: 1 });
    expect(first).to.deep.equal(expected);
    expect(again).to.deep.equal(expected);
    // A caller that changes what it got does not change what the memo answers next.
    (again[0] as { passed: boolean }).passed = false;
    expect(await host.runChecksOnText(CHECKS, JSON.stringify(final), JSON.stringify(initial), limits)).to.deep.equal(expected);
  });

  it('runs the checks again when a character of either state, a limit or a check differs', async () => {
    const host = new QuickJSHost(limits.heapMb);
    await host.runChecksOnText(CHECKS, JSON.stringify(final), JSON.stringify(initial), limits);
    const variants: Array<[string, readonly CheckSpec[], unknown, unknown, SandboxLimits]> = [
      ['another emoji in the final state', CHECKS, { ...final, guests: { ...final.guests, G1: { name: 'Zoë 😁', balance: 0 } } }, initial, limits],
      ['a CJK character of the initial state', CHECKS, final, { ...initial, guests: { ...initial.guests, G2: { name: '山本', balance: 0 } } }, limits],
      ['an initial state with as many reservations', CHECKS, final, { ...initial, reservations: ['r1', 'r2'] }, limits],
      ['a check deadline', CHECKS, final, initial, { ...limits, checkDeadlineMs: limits.checkDeadlineMs + 1 }],
      ['a stack limit', CHECKS, final, initial, { ...limits, stackBytes: limits.stackBytes * 2 }],
      ['a check text', [...CHECKS.slice(0, 4), { item: 'dates', check: 'function check(s) { return false; }' }], final, initial, limits],
      ['a check item', [...CHECKS.slice(0, 4), { item: 'dátes', check: CHECKS[4]!.check }], final, initial, limits],
    ];
    let misses = host.checkMemo.misses;
    for (const [what, checks, f, i, l] of variants) {
      const got = await host.runChecksOnText(checks, JSON.stringify(f), JSON.stringify(i), l);
      misses += 1;
      expect(host.checkMemo.misses, what).to.equal(misses);
      expect(host.checkMemo.hits, what).to.equal(0);
      expect(got, what).to.deep.equal(await fresh(checks, f, i, l));
    }
    // The variants that score differently do: the emoji check and the reservations check.
    expect((await fresh(CHECKS, variants[0]![2], initial)).map(o => o.passed)).to.deep.equal([true, true, false, true, true]);
    expect((await fresh(CHECKS, final, variants[2]![3])).map(o => o.passed)).to.deep.equal([true, true, true, false, true]);
  });

  it('never remembers a check list that reads the clock, random numbers or the collector', async () => {
    const unsteady = [
      'function check(s) { return Date.now() > 0; }',
      'function check(s) { return new Date() > 0; }',
      'function check(s) { return new Date > 0; }',
      'function check(s) { return typeof Date() === "string"; }',
      'function check(s) { const D = Date; return D.now() > 0; }',
      'function check(s) { return Math.random() < 1; }',
      'function check(s) { return typeof WeakRef !== "number"; }',
    ];
    for (const check of unsteady) {
      const host = new QuickJSHost(limits.heapMb);
      const checks = [CHECKS[1]!, { item: 'unsteady', check }];
      expect(memoizable(checks), check).to.equal(false);
      for (let n = 0; n < 2; n += 1) {
        const got = await host.runChecksOnText(checks, JSON.stringify(final), JSON.stringify(initial), limits);
        expect(got.map(o => o.passed), check).to.deep.equal([true, true]);
      }
      expect(host.checkMemo, check).to.include({ hits: 0, misses: 0, size: 0 });
    }
    expect(memoizable([{ item: 'episode', check: 'def check(final_state, initial_state, episode): return True', language: 'python', episode: true }])).to.equal(false);
  });

  it('never remembers a batch with an error in it: a throw, a deadline, a check that is not one', async () => {
    const failing = [
      ['CHECK_THREW', 'function check(s) { throw new Error("nope é"); }'],
      ['DEADLINE_EXCEEDED', 'function check(s) { for (;;) {} }'],
      ['CHECK_INVALID', 'const notACheck = 1;'],
    ] as const;
    for (const [code, check] of failing) {
      const host = new QuickJSHost(limits.heapMb);
      const checks = [CHECKS[1]!, { item: 'failing', check }];
      const l = { ...limits, checkDeadlineMs: 200 };
      for (let n = 0; n < 2; n += 1) {
        const got = await host.runChecksOnText(checks, JSON.stringify(final), JSON.stringify(initial), l);
        expect(got[0]!.passed, check).to.equal(true);
        expect(got[1]!.errorCode, check).to.equal(code);
      }
      expect(host.checkMemo, check).to.include({ hits: 0, misses: 2, size: 0 });
    }
  });

  it('is bounded by entries and by the characters of state text it holds', () => {
    const outcome = [{ item: 'a', passed: true }];
    const memo = new CheckMemo(2, 4_000);
    memo.set('k', 'f1', 'i', outcome);
    memo.set('k', 'f2', 'i', outcome);
    memo.get('k', 'f1', 'i'); // f1 is now the most recent
    memo.set('k', 'f3', 'i', outcome); // f2 goes
    expect(memo.size).to.equal(2);
    expect(memo.get('k', 'f2', 'i')).to.equal(undefined);
    expect(memo.get('k', 'f1', 'i')).to.deep.equal(outcome);
    expect(memo.get('k', 'f3', 'i')).to.deep.equal(outcome);
    // A batch over a quarter of the bound is not kept; entries that together pass the bound push the oldest out.
    memo.set('k', 'x'.repeat(1_001), 'i', outcome);
    expect(memo.size).to.equal(2);
    const big = new CheckMemo(10, 4_000);
    for (const c of 'abcd') big.set('k', c.repeat(900), 'i', outcome);
    expect(big.size).to.equal(4);
    big.set('k', 'e'.repeat(900), 'i', outcome);
    expect(big.size).to.equal(4);
    expect(big.get('k', 'a'.repeat(900), 'i')).to.equal(undefined);
    expect(big.get('k', 'e'.repeat(900), 'i')).to.deep.equal(outcome);
    // Outcomes with an error are not kept.
    memo.set('k', 'f4', 'i', [{ item: 'a', passed: false, error: 'x', errorCode: 'CHECK_THREW' }]);
    expect(memo.get('k', 'f4', 'i')).to.equal(undefined);
  });
});
