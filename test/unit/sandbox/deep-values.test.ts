import { expect } from 'chai';
import type { EnvironmentCode } from '../../../src/sandbox/bundle.js';
import { DEFAULT_SANDBOX_LIMITS, type SandboxLimits } from '../../../src/sandbox/limits.js';
import { MAX_JSON_DEPTH } from '../../../src/sandbox/python/python-harness.mjs';
import { CALL_WAYS, QuickJSHost, SNAPSHOT_WAYS, type SandboxEnvironment } from '../../../src/sandbox/quickjs-host.js';
import { nestsDeeperThan } from '../../../src/sandbox/runner.js';
import { rejection } from '../../helpers/assert.js';

/**
 * Careless code, not hostile: a tool that returns a category tree, or keeps a linked list in its state, thousands of
 * levels deep. A JavaScript result or state nested more than MAX_JSON_DEPTH (1,000) levels is refused as the Python
 * runtime refuses it (NON_JSON_RESULT, STATE_INVALID), saying how deep, where and what to do, and the session goes on;
 * before, the sandbox wrote it, and V8's own JSON.stringify of it (a rollout's transcript, a served reply) overflowed
 * its stack from about 4,100 levels on, and past ~10,000 the guest's stringify ran into the call's deadline.
 */
const SOURCE = `class Deep {
  constructor(s) { this.state = s; }
  // A result 'levels' containers deep: the reply is one, data two, then its children.
  tree({ levels, date }) {
    const root = {};
    let o = root;
    for (let i = 2; i < levels; i++) { o.child = { level: i }; o = o.child; }
    if (date) o.when = new Date(0);
    return { success: true, data: root };
  }
  // The state is one level, history two, then its entries.
  nest({ n, date }) { let h = date ? { at: new Date(0) } : null; for (let i = 0; i < n; i++) h = { v: i, next: h }; this.state.history = h; return { success: true, data: 'kept ' + n }; }
  forget() { delete this.state.history; return { success: true }; }
  ok() { return { success: true, data: 'fine' }; }
}`;
const tool = (name: string) => ({ type: 'function' as const, function: { name, parameters: { type: 'object' } } });
const TOOLS = ['tree', 'nest', 'forget', 'ok'].map(tool);
/** The same class, through each way a value is written: QuickJS's native encoder read by bjson.ts, or the guest's JSON.stringify (a source naming toJSON). */
const WAYS: readonly [string, EnvironmentCode][] = [
  ['native encoder', { name: 'deep', className: 'Deep', source: SOURCE, tools: TOOLS }],
  ['guest stringify', { name: 'deep', className: 'Deep', source: `${SOURCE}\n// (no toJSON here)`, tools: TOOLS }],
];
const LIMITS: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, callDeadlineMs: 5_000, sessionCpuMs: 60_000 };
const ADVICE = `: the JavaScript runtime passes on JSON values up to ${MAX_JSON_DEPTH} levels of containers inside containers, as the Python runtime does`;

describe('JavaScript results and states nested more than 1,000 levels deep (QuickJS)', function () {
  this.timeout(60_000);
  const host = new QuickJSHost(256);

  for (const [way, code] of WAYS) {
    describe(`through the ${way}`, () => {
      let env: SandboxEnvironment;
      beforeEach(async () => {
        env = await host.createEnvironment(code, { title: '日記 📓' }, LIMITS);
      });
      afterEach(() => env.dispose());

      it('passes a result 1,000 levels deep, and refuses one 1,001 or 4,200 levels deep with NON_JSON_RESULT saying where and what to do; the session goes on', () => {
        for (const date of [false, true]) {
          const native = CALL_WAYS.native;
          const at = env.callText('tree', { levels: MAX_JSON_DEPTH, date });
          expect(at.runtimeError, `1000 levels, date ${date}`).to.equal(undefined);
          // (A value 1,000 levels deep is still the native encoder's where it can write it: plain data, nothing but objects.)
          expect(CALL_WAYS.native - native).to.equal(way === 'native encoder' && !date ? 1 : 0);
          expect((at.resultJson.match(/\{/g) ?? []).length).to.equal(MAX_JSON_DEPTH);
          for (const levels of [MAX_JSON_DEPTH + 1, 4_200]) {
            const deep = env.call('tree', { levels, date });
            expect(deep.runtimeError, `${levels} levels, date ${date}`).to.equal('NON_JSON_RESULT');
            const error = (deep.result as { error: string }).error;
            expect(error).to.include(`the result nests containers more than ${MAX_JSON_DEPTH} levels deep (${MAX_JSON_DEPTH + 1} containers down to /data/child/child/child/child/…/child/child)${ADVICE}`);
            expect(error).to.match(/keep it flatter, e\.g\. a linked list as an array, a tree as an object of nodes by id/);
          }
          expect(env.call('ok', {}).result).to.deep.equal({ success: true, data: 'fine' });
        }
        expect(env.snapshot()).to.deep.equal({ title: '日記 📓' });
      });

      it('refuses a state nested 1,001 or 5,000 levels deep with STATE_INVALID, and reads it again once it is flatter', () => {
        for (const date of [false, true]) {
          expect(env.call('nest', { n: MAX_JSON_DEPTH - 1 - (date ? 1 : 0), date }).runtimeError).to.equal(undefined);
          const native = SNAPSHOT_WAYS.native;
          expect(env.snapshotText().startsWith('{"title":"日記 📓","history":{"v":')).to.equal(true);
          expect(SNAPSHOT_WAYS.native - native).to.equal(way === 'native encoder' && !date ? 1 : 0);
          for (const n of [MAX_JSON_DEPTH - (date ? 1 : 0), 5_000]) {
            expect(env.call('nest', { n, date }).runtimeError).to.equal(undefined);
            const err = (() => {
              try {
                env.snapshotText();
              } catch (e) {
                return e as { code: string; message: string };
              }
              throw new Error(`a state ${n + 1} levels deep was read`);
            })();
            expect(err.code, `${n} entries, date ${date}`).to.equal('STATE_INVALID');
            expect(err.message).to.include(`this.state nests containers more than ${MAX_JSON_DEPTH} levels deep (${MAX_JSON_DEPTH + 1} containers down to /history/next/next/next/next/…/next/next)${ADVICE}`);
          }
          expect(env.call('forget', {}).runtimeError).to.equal(undefined);
          expect(env.snapshot()).to.deep.equal({ title: '日記 📓' });
        }
      });
    });
  }

  it('cuts each key of the place it names at 40 characters as Python counts them, never between the halves of an emoji', async () => {
    const source = `class Keys { constructor(s) { this.state = s; }
      deep({ key }) { let o = {}; const r = o; for (let i = 0; i < 1005; i++) { o[key] = {}; o = o[key]; } return { success: true, data: r }; } }`;
    for (const code of [source, `${source}\n// toJSON`]) {
      const env = await host.createEnvironment({ name: 'keys', className: 'Keys', source: code, tools: [tool('deep')] }, {}, LIMITS);
      try {
        for (const key of [`a${'😀'.repeat(30)}`, 'é'.repeat(45), `${'x'.repeat(39)}🇫🇷`, `${'x'.repeat(38)}🇫🇷`]) {
          const error = (env.call('deep', { key }).result as { error: string }).error;
          const chars = [...key];
          const seg = chars.length <= 40 ? key : `${chars.slice(0, 40).join('')}…`;
          expect(error, key).to.include(`(1001 containers down to /data/${seg}/${seg}/${seg}/${seg}/…/${seg}/${seg})`);
          expect(Buffer.from(error, 'utf8').toString('utf8'), 'no lone surrogate').to.equal(error);
        }
      } finally {
        env.dispose();
      }
    }
  });

  it('refuses an initial state nested more than 1,000 levels deep with STATE_INVALID, as the Python runtime does', async () => {
    let chain: unknown = null;
    for (let i = 0; i < MAX_JSON_DEPTH; i++) chain = { next: chain };
    const err = (await rejection(host.createEnvironment(WAYS[0]![1], { chain }, LIMITS))) as { code: string; message: string };
    expect(err.code).to.equal('STATE_INVALID');
    expect(err.message).to.include(`the initial state nests containers more than ${MAX_JSON_DEPTH} levels deep${ADVICE}`);
    let flatter: unknown = null;
    for (let i = 0; i < MAX_JSON_DEPTH - 1; i++) flatter = { next: flatter };
    const env = await host.createEnvironment(WAYS[0]![1], { chain: flatter }, LIMITS);
    expect(env.call('ok', {}).runtimeError).to.equal(undefined);
    env.dispose();
  });
});

describe('nestsDeeperThan (a session call\'s arguments, before they are copied to the thread)', () => {
  const nest = (levels: number): unknown => {
    let v: unknown = 'é 東京 🌸';
    for (let i = 0; i < levels; i++) v = i % 2 ? [v] : { k: v };
    return v;
  };

  it('counts levels as JSON text does, without recursion, and stops on a cycle', () => {
    expect(nestsDeeperThan('text', 0)).to.equal(false);
    expect(nestsDeeperThan(nest(MAX_JSON_DEPTH), MAX_JSON_DEPTH)).to.equal(false);
    expect(nestsDeeperThan(nest(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH)).to.equal(true);
    // Far past what a recursive walk (or a structured clone) survives.
    expect(nestsDeeperThan(nest(200_000), MAX_JSON_DEPTH)).to.equal(true);
    const cycle: Record<string, unknown> = { a: [1, 2] };
    cycle['self'] = cycle;
    expect(nestsDeeperThan(cycle, MAX_JSON_DEPTH)).to.equal(true);
    expect(nestsDeeperThan({ wide: Array.from({ length: 10_000 }, (_, i) => ({ i })) }, 3)).to.equal(false);
  });
});
