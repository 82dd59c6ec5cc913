import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { diffStates, isEmptyDiff } from '../../../src/sandbox/diff.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../../src/sandbox/limits.js';
import { createLocalSandboxRunner } from '../../../src/sandbox/runner.js';
import { rejection } from '../../helpers/assert.js';

const LIMITS = { ...DEFAULT_SANDBOX_LIMITS, checkDeadlineMs: 200 };
const fixture = (name: string): unknown => JSON.parse(readFileSync(new URL(`../../../fixtures/reference/${name}`, import.meta.url), 'utf8'));

describe('check functions', function () {
  this.timeout(20_000);
  const runner = createLocalSandboxRunner();

  it('runs check(final, initial) in a fresh sandbox and scores the checklist', async () => {
    const result = await runner.checks({
      checks: [
        { item: 'a grew', check: 'function check(f, i) { return f.a > i.a; }' },
        { item: 'b is set', check: 'const check = (f) => f.b === true;' },
        { item: 'c is set', check: 'function check(f) { return f.c === 1; }' },
      ],
      finalState: { a: 2, b: true },
      initialState: { a: 1 },
      limits: LIMITS,
    });
    expect(result.results.map(r => r.passed)).to.deep.equal([true, true, false]);
    expect(result.reward).to.be.closeTo(2 / 3, 1e-9);
    expect(result.solved).to.equal(false);
  });

  it('fails every check with STATE_INVALID, saying why, when a state cannot be written as JSON (nested 5,000 and 100,000 deep, a cycle, a BigInt, none)', async () => {
    const deep = (n: number) => {
      let v: unknown = 'Zoë 😀';
      for (let i = 0; i < n; i += 1) v = [v];
      return v;
    };
    const cycle: Record<string, unknown> = { name: '客房' };
    cycle['self'] = cycle;
    const checks = [
      { item: 'one', check: 'function check(f) { return true; }' },
      { item: 'two', check: 'function check(f, i) { return true; }' },
    ];
    const cases: Array<[string, unknown, unknown, RegExp]> = [
      ['5,000 deep', { d: deep(5_000) }, { d: 1 }, /the final state cannot be written as JSON: it is nested too deeply/],
      ['100,000 deep', { d: deep(100_000) }, { d: 1 }, /the final state cannot be written as JSON: it is nested too deeply/],
      ['a cycle', cycle, {}, /the final state cannot be written as JSON: .*circular/i],
      ['a BigInt in the initial state', {}, { n: 10n }, /the initial state cannot be written as JSON: .*BigInt/],
      ['no state', undefined, {}, /the final state is not JSON/],
    ];
    for (const [what, finalState, initialState, message] of cases) {
      const result = await runner.checks({ checks, finalState, initialState, limits: LIMITS });
      expect(result.results.map(r => [r.item, r.passed, r.errorCode]), what).to.deep.equal([
        ['one', false, 'STATE_INVALID'],
        ['two', false, 'STATE_INVALID'],
      ]);
      expect(result.results[0]!.error, what).to.match(message);
      expect(result.reward, what).to.equal(0);
    }
  });

  it('counts a throw, a timeout, a non-boolean, a missing check() and a syntax error as false, with the reason', async () => {
    const result = await runner.checks({
      checks: [
        { item: 'throws', check: 'function check(f) { return f.missing.deep; }' },
        { item: 'loops', check: 'function check() { for (;;) {} }' },
        { item: 'truthy', check: 'function check() { return 1; }' },
        { item: 'no check', check: 'function verify() { return true; }' },
        { item: 'broken', check: 'function check( {' },
        { item: 'bomb', check: 'function check() { const a = []; for (;;) a.push(new Array(1e5).fill(1)); }' },
      ],
      finalState: {},
      initialState: {},
      limits: { ...LIMITS, envMemoryMb: 16, heapMb: 128 },
    });
    expect(result.results.map(r => [r.passed, r.errorCode])).to.deep.equal([
      [false, 'CHECK_THREW'],
      [false, 'DEADLINE_EXCEEDED'],
      [false, 'CHECK_NOT_BOOLEAN'],
      [false, 'CHECK_INVALID'],
      [false, 'CHECK_INVALID'],
      [false, 'MEMORY_EXCEEDED'],
    ]);
    expect(result.results[0]!.error).to.match(/undefined/);
    expect(result.reward).to.equal(0);
  });

  it('keeps checks from seeing each other: a check cannot change what the next one sees', async () => {
    const result = await runner.checks({
      checks: [
        { item: 'mutates', check: 'function check(f) { f.x = 99; globalThis.leak = 1; return true; }' },
        { item: 'sees the original', check: 'function check(f) { return f.x === 1 && typeof leak === "undefined"; }' },
      ],
      finalState: { x: 1 },
      initialState: {},
      limits: LIMITS,
    });
    expect(result.solved).to.equal(true);
  });

  it('keeps each check isolated when the states are parsed once per batch: in-place sorts, changes to the initial state, built-ins and globals, a timeout or a hoard before it change nothing', async () => {
    const sees = (item: string) => ({
      item,
      check: `function check(f, i) {
        return JSON.stringify(f.list) === '[3,1,2]' && f.map.k === 'v' && i.list.length === 3 && i.list[0] === 3 && i.nested.deep.n === 1
          && typeof leak === 'undefined' && [2, 1].sort()[0] === 1 && typeof Object.keys === 'function' && Object.isFrozen(f) === false;
      }`,
    });
    const result = await runner.checks({
      checks: [
        sees('sees the states first'),
        { item: 'sorts in place', check: 'function check(f, i) { f.list.sort(); i.list.sort(); return f.list[0] === 1 && i.list[0] === 1; }' },
        sees('after a sort in place'),
        { item: 'changes the initial state', check: 'function check(f, i) { i.list.length = 0; delete i.nested.deep; i.extra = 1; delete f.map.k; return true; }' },
        sees('after changes to the initial state'),
        { item: 'changes built-ins and globals', check: 'function check(f) { Array.prototype.sort = function () { return [9]; }; Object.keys = null; globalThis.leak = 1; Object.freeze(f); return true; }' },
        sees('after changes to built-ins'),
        { item: 'times out mid-change', check: 'function check(f, i) { f.list.reverse(); i.nested.deep.n = 2; for (;;) {} }' },
        sees('after a timeout'),
        { item: 'hoards', check: 'function check(f) { const a = []; for (;;) { a.push("z".repeat(1 << 20) + a.length); f.list.push(a.length); } }' },
        sees('after a hoard'),
      ],
      finalState: { list: [3, 1, 2], map: { k: 'v' } },
      initialState: { list: [3, 1, 2], nested: { deep: { n: 1 } } },
      limits: { ...LIMITS, envMemoryMb: 16, heapMb: 128 },
    });
    expect(result.results.map(r => [r.item, r.passed, r.errorCode ?? null])).to.deep.equal([
      ['sees the states first', true, null],
      ['sorts in place', true, null],
      ['after a sort in place', true, null],
      ['changes the initial state', true, null],
      ['after changes to the initial state', true, null],
      ['changes built-ins and globals', true, null],
      ['after changes to built-ins', true, null],
      ['times out mid-change', false, 'DEADLINE_EXCEEDED'],
      ['after a timeout', true, null],
      ['hoards', false, 'MEMORY_EXCEEDED'],
      ['after a hoard', true, null],
    ]);
  });

  it('gives the next batch on the same initial state that state as it was, whatever a check of an earlier batch did to it, and each batch its own final state', async () => {
    const limits = { ...LIMITS, envMemoryMb: 16 };
    const initialState = { list: [3, 1, 2], nested: { deep: { n: 1 } } };
    const spoil = { item: 'spoils the initial state', check: 'function check(f, i) { i.list.sort(); i.nested.deep.n = 9; i.added = true; Object.prototype.polluted = 1; return true; }' };
    const sees = (n: number) => ({
      item: `sees final ${n} and the initial state as given`,
      check: `function check(f, i) { return f.n === ${n} && JSON.stringify(i) === '{"list":[3,1,2],"nested":{"deep":{"n":1}}}' && ({}).polluted === undefined; }`,
    });
    for (let n = 1; n <= 3; n += 1) {
      const result = await runner.checks({ checks: [sees(n), spoil, sees(n)], finalState: { n }, initialState, limits });
      expect(result.results.map(r => r.passed)).to.deep.equal([true, true, true]);
    }
    // Another initial state between batches on the first one, and a batch whose final state does not fit the allowance.
    const other = await runner.checks({ checks: [{ item: 'other', check: 'function check(f, i) { return i.other === true; }' }], finalState: { n: 0 }, initialState: { other: true }, limits });
    expect(other.solved).to.equal(true);
    const failed = await runner.checks({ checks: [sees(4), sees(4)], finalState: { n: 4, big: 'x'.repeat(24 << 20) }, initialState, limits });
    expect(failed.results.map(r => [r.passed, r.errorCode])).to.deep.equal([[false, 'MEMORY_EXCEEDED'], [false, 'MEMORY_EXCEEDED']]);
    const again = await runner.checks({ checks: [sees(5), spoil, sees(5)], finalState: { n: 5 }, initialState, limits });
    expect(again.results.map(r => r.passed)).to.deep.equal([true, true, true]);
  });

  it("ends a session with finish: the final state's text and the checks on it, run in the session's thread as a checks task would run them, then the session is closed", async () => {
    const code = fixture('hotel-env.bundle.json') as never;
    const state = fixture('hotel-state.json') as Record<string, unknown>;
    const checks = [
      ...(fixture('hotel-checks.json') as { item: string; check: string }[]),
      { item: 'sorts the initial reservations in place', check: 'function check(f, i) { Object.values(i.reservations).sort(); i.reservations = {}; return true; }' },
      { item: 'reservations still there', check: 'function check(f, i) { return Object.keys(i.reservations).length === Object.keys(f.reservations).length - 1; }' },
    ];
    const session = await runner.openSession(code, state, LIMITS, JSON.stringify(state));
    const booked = await session.call('create_reservation', { guest_id: 'G0001', room_id: 'R111', check_in: '2026-03-20', check_out: '2026-03-22' });
    expect(booked.runtimeError).to.equal(undefined);
    const end = await session.finish(checks);
    expect(end.stateError).to.equal(null);
    const finalState = JSON.parse(end.stateJson!) as unknown;
    const alone = await runner.checks({ checks, finalState, initialState: state, limits: LIMITS });
    expect(end.checks).to.deep.equal(alone);
    expect(end.checks!.results.map(r => r.passed)).to.deep.equal([true, true, true, true, true, true]);
    const after = await rejection(session.call('get_guest', { guest_id: 'G0001' }));
    expect(after).to.have.property('code', 'SANDBOX_UNAVAILABLE');
  });

  it('answers finish on a discarded environment with the reason and no checks', async () => {
    const code = { name: 'spin', className: 'Spin', source: 'class Spin { constructor(s) { this.state = s; } spin() { for (;;) {} } }', tools: [{ type: 'function' as const, function: { name: 'spin', parameters: { type: 'object' } } }] };
    const session = await runner.openSession(code, { n: 1 }, LIMITS);
    expect((await session.call('spin', {})).runtimeError).to.equal('DEADLINE_EXCEEDED');
    const end = await session.finish([{ item: 'n is 1', check: 'function check(f) { return f.n === 1; }' }]);
    expect(end).to.deep.include({ stateJson: null, checks: null });
    expect(end.stateError).to.have.property('code', 'ENV_DISPOSED');
  });

  it('scores the reference environment checks on its initial state', async () => {
    const state = fixture('hotel-state.json');
    const result = await runner.checks({ checks: fixture('hotel-checks.json') as never, finalState: state, initialState: state, limits: LIMITS });
    expect(result.results.every(r => r.errorCode === undefined)).to.equal(true);
    expect(result.results.find(r => r.item.startsWith('more reservations'))?.passed).to.equal(false);
  });
});

describe('diffStates', () => {
  it('lists added, removed and changed paths as JSON Pointers', () => {
    const diff = diffStates(
      { users: { 'a/b': { n: 1 }, gone: 1 }, list: [1, 2, 3], t: 'x' },
      { users: { 'a/b': { n: 2 }, fresh: { y: 1 } }, list: [1, 5], t: 3 },
    );
    expect(diff.changed).to.deep.equal([
      { path: '/users/a~1b/n', before: 1, after: 2 },
      { path: '/list/1', before: 2, after: 5 },
      { path: '/t', before: 'x', after: 3 },
    ]);
    expect(diff.removed).to.deep.equal([{ path: '/users/gone', value: 1 }, { path: '/list/2', value: 3 }]);
    expect(diff.added).to.deep.equal([{ path: '/users/fresh', value: { y: 1 } }]);
  });

  it('is empty for equal states', () => {
    expect(isEmptyDiff(diffStates({ a: [1, { b: null }] }, { a: [1, { b: null }] }))).to.equal(true);
  });
});

describe('the reference environment (hotel reservations)', function () {
  this.timeout(20_000);
  const runner = createLocalSandboxRunner();
  const code = fixture('hotel-env.bundle.json') as never;
  const state = fixture('hotel-state.json') as { hotel: { current_date: string }; guests: Record<string, { loyalty_tier: string }> };

  it('enforces its rules and records every change in the diff', async () => {
    const gold = Object.entries(state.guests).find(([, g]) => g.loyalty_tier === 'gold')![0];
    const probe = await runner.probe({
      code,
      initialState: state,
      limits: DEFAULT_SANDBOX_LIMITS,
      withStates: true,
      calls: [
        { tool: 'search_available_rooms', arguments: { check_in: '2026-03-20', check_out: '2026-03-22', room_type: 'suite' } },
        { tool: 'create_reservation', arguments: { guest_id: gold, room_id: 'R111', check_in: '2026-03-20', check_out: '2026-03-18' } },
        { tool: 'create_reservation', arguments: { guest_id: gold, room_id: 'R111', check_in: '2026-01-01', check_out: '2026-01-03' } },
        { tool: 'pay_balance', arguments: { guest_id: gold, amount: -1 } },
      ],
    });
    expect(probe.createError).to.equal(null);
    const [search, backwards, past, negative] = probe.steps;
    expect(search!.result).to.have.property('success', true);
    expect(backwards!.result).to.deep.equal({ success: false, error: 'check_out must be after check_in' });
    expect(past!.result).to.deep.equal({ success: false, error: 'check_in is in the past' });
    expect(negative!.runtimeError).to.equal('INVALID_ARGUMENTS');
    for (const step of probe.steps) expect(isEmptyDiff(step.diff!)).to.equal(true);
  });

  it('books a free room with the loyalty discount and shows the new reservation in the diff', async () => {
    const probe = await runner.probe({ code, initialState: state, limits: DEFAULT_SANDBOX_LIMITS, withStates: true, calls: [
      { tool: 'search_available_rooms', arguments: { check_in: '2026-04-01', check_out: '2026-04-03', room_type: 'double', limit: 1 } },
    ] });
    const room = ((probe.steps[0]!.result as { data: { room_id: string; total: number }[] }).data)[0]!;
    const gold = Object.entries(state.guests).find(([, g]) => g.loyalty_tier === 'gold')![0];
    const booked = await runner.probe({ code, initialState: state, limits: DEFAULT_SANDBOX_LIMITS, withStates: true, calls: [
      { tool: 'create_reservation', arguments: { guest_id: gold, room_id: room.room_id, check_in: '2026-04-01', check_out: '2026-04-03' } },
      { tool: 'create_reservation', arguments: { guest_id: gold, room_id: room.room_id, check_in: '2026-04-02', check_out: '2026-04-04' } },
    ] });
    const made = booked.steps[0]!;
    expect(made.result).to.have.nested.property('data.total', Math.round(room.total * 0.9 * 100) / 100);
    expect(made.diff!.added.map(a => a.path)).to.include.members([`/reservations/${(made.result as { data: { reservation_id: string } }).data.reservation_id}`]);
    expect(booked.steps[1]!.result).to.have.property('success', false);
  });
});
