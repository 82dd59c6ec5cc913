import { expect } from 'chai';
import type { EnvironmentCode } from '../../../src/sandbox/bundle.js';
import { SandboxError } from '../../../src/sandbox/errors.js';
import { DEFAULT_SANDBOX_LIMITS, type SandboxLimits } from '../../../src/sandbox/limits.js';
import { RESULT_CAP_ADVICE, STATE_CAP_ADVICE } from '../../../src/sandbox/python/python-harness.mjs';
import { CALL_WAYS, plainSnapshots, QuickJSHost, SNAPSHOT_WAYS, type SandboxEnvironment } from '../../../src/sandbox/quickjs-host.js';

/**
 * A state's snapshot through QuickJS's native encoder and bjson.ts (issue 14 item 1): the text must
 * be the guest's own JSON.stringify of the state, byte for byte, for every state, and the errors
 * those states gave must not change. The oracle is the guest's JSON.stringify, called by a tool of
 * the same environment on the same state.
 */
const tool = (name: string) => ({ type: 'function' as const, function: { name, parameters: { type: 'object' } } });

/** Random states built in the guest (a seeded generator): everything JSON can meet in careless code. */
const FUZZ_SOURCE = String.raw`
const KEYS = ['a', 'id', 'name', '0', '1', '2', '10', '9', '4294967294', '4294967295', '2147483647', '2147483648',
  '01', '-1', '1.5', '1e3', '', ' ', 'é', 'ÿ', '日本', '😀', 'a"b', 'back\\slash', '\n', '\u0000', '\ud800', '\udfff',
  '__pro' + 'to__', 'constructor', 'length', 'status', 'guest_id', 'κλειδί'];
class Fuzz {
  constructor(s) { this.state = s; }
  fill({ seed }) {
    let s = seed >>> 0;
    const rnd = () => { s = (s + 0x6D2B79F5) | 0; let t = Math.imul(s ^ (s >>> 15), 1 | s); t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
    const int = n => Math.floor(rnd() * n);
    const pool = [];
    const view = new DataView(new ArrayBuffer(8));
    const num = () => {
      const r = int(9);
      // (NaN and the infinities are refused, not written: the cases below)
      if (r === 0) return [0, -0, 1e300, -1e-300, 1e21, 1e-7, 5e-324, 0.1 + 0.2, 2 ** 53, 2 ** 31, -(2 ** 31), 2 ** 31 - 1, 1.7976931348623157e308, 123456789.125, -5e-324][int(15)];
      if (r === 1) return int(2 ** 32) - 2 ** 31;
      if (r === 2) return int(1000);
      if (r === 3) return (rnd() - 0.5) * 10 ** (int(40) - 20);
      view.setUint32(0, int(2 ** 32)); view.setUint32(4, int(2 ** 32));
      const d = view.getFloat64(0);
      return d - d === 0 ? d : 0;
    };
    const str = () => {
      const n = int(12);
      let out = '';
      const wide = rnd() < 0.4;
      for (let i = 0; i < n; i++) {
        const r = int(10);
        if (r === 0) out += String.fromCharCode(int(32));
        else if (r === 1) out += '"\\/'[int(3)];
        else if (r === 2) out += String.fromCharCode(0x80 + int(0x80));
        else if (r === 3 && wide) out += String.fromCharCode(0xd800 + int(0x800));
        else if (r === 4 && wide) out += String.fromCharCode(0x100 + int(0xfe00));
        else if (r === 5 && wide) out += '😀日本'[int(4)];
        else out += String.fromCharCode(32 + int(95));
      }
      return out;
    };
    const prim = () => {
      const r = int(8);
      if (r === 0) return null;
      if (r === 1) return undefined;
      if (r === 2) return rnd() < 0.5;
      if (r <= 4) return num();
      return str();
    };
    const gen = depth => {
      const r = rnd();
      if (depth > 5 || r < 0.4) return prim();
      if (r < 0.47 && pool.length) return pool[int(pool.length)];
      if (r < 0.7) {
        const a = [];
        const n = int(7);
        for (let i = 0; i < n; i++) a.push(gen(depth + 1));
        if (rnd() < 0.15) a[n + 1 + int(3)] = gen(depth + 1);
        if (rnd() < 0.1) a.length = a.length + 2;
        if (rnd() < 0.1) a.extra = 'dropped by JSON';
        if (rnd() < 0.3) pool.push(a);
        return a;
      }
      const o = rnd() < 0.1 ? JSON.parse('{"__pro' + 'to__": 1}') : {};
      const n = int(8);
      for (let i = 0; i < n; i++) o[KEYS[int(KEYS.length)]] = gen(depth + 1);
      if (rnd() < 0.2) delete o[KEYS[int(KEYS.length)]];
      if (rnd() < 0.3) pool.push(o);
      return o;
    };
    const state = {};
    for (let i = 0; i < 6; i++) state[KEYS[int(KEYS.length)]] = gen(0);
    this.state = state;
    return { success: true };
  }
  oracle() {
    try { return { text: JSON.stringify(this.state) }; } catch (e) { return { error: String(e.message) }; }
  }
  echo() { return this.state; }
}`;

const FUZZ: EnvironmentCode = { name: 'fuzz', className: 'Fuzz', source: FUZZ_SOURCE, tools: [tool('fill'), tool('oracle'), tool('echo')] };

/** States with what the encoder refuses or JSON treats its own way; each tool puts one in place. */
const ODD_CASES: Record<string, string> = {
  date: `this.state = { at: new Date(86400000), n: 1 }`,
  map: `this.state = { m: new Map([[1, 2]]), s: new Set([1]) }`,
  fn: `this.state = { keep: 1, f() { return 1; }, arrow: () => 2, list: [1, () => 3, 4] }`,
  getter: `this.state = { get g() { return 'got'; }, plain: 1 }`,
  symbolKey: `this.state = { [Symbol('k')]: 1, visible: 2, sym: [Symbol('v')] }`,
  bigint: `this.state = { big: 10n }`,
  typed: `this.state = { bytes: new Uint8Array([1, 2]), buffer: new ArrayBuffer(2) }`,
  boxed: `this.state = { n: new Number(3), s: new String('x'), b: new Boolean(false) }`,
  cycle: `const o = { a: 1 }; o.self = o; this.state = o`,
  arrayCycle: `const a = [1]; a.push({ back: a }); this.state = { a }`,
  shared: `const o = { a: [1, 2] }; this.state = { x: o, y: o, z: [o, o.a] }`,
  classInstance: `class Point { constructor() { this.x = 1; this.y = 2; } area() { return 0; } } this.state = { p: new Point() }`,
  error: `this.state = { e: new Error('boom') }`,
  regexp: `this.state = { r: /x/g }`,
  args: `this.state = { args: (function () { return arguments; })(1, 2) }`,
  proxy: `this.state = { p: new Proxy({ a: 1 }, {}) }`,
  notObject: `this.state = 'just text'`,
  nullState: `this.state = null`,
  undefinedState: `this.state = undefined`,
  numberState: `this.state = 42`,
  deep: `let o = {}; for (let i = 0; i < 100000; i++) o = { o }; this.state = o`,
  wideKeys: `this.state = { 'ключ': 1, '鍵': { '😀': [ '\\ud83d', 'ok' ] } }`,
  frozen: `this.state = Object.freeze({ a: Object.freeze([1, 2]) })`,
  nullProto: `const o = JSON.parse('{"a":1}'); this.state = { o, list: [1, , 3] }`,
  sparse: `const a = []; a[5] = 1; a[2] = 'two'; this.state = { a, big: [] }; this.state.big[200] = true`,
  nonIndexNumericKeys: `this.state = { b: 1, 4294967295: 'not an index', 4294967294: 'index', 7: 'seven', '007': 'x', a: 2 }`,
  nan: `this.state = { ok: [0.5], list: [1, { at: 'x', avg: 0 / 0 }] }`,
  infinity: `this.state = { min: -1 / 0 }`,
  deepSet: `this.state = { 'a/b': { '~k': [1, new Set([2])] } }`,
  weak: `this.state = { seen: new WeakSet() }`,
  view: `this.state = { dv: [new DataView(new ArrayBuffer(4))] }`,
  topNaN: `this.state = NaN`,
  boxedNaN: `this.state = { avg: new Number(0 / 0) }`,
  // The pointer names where JSON meets the value: not through an array's own non-index key.
  pointerAsJsonWalks: `const inner = { m: new Map() }; const list = [1]; list.byId = inner; this.state = { list, other: inner }`,
  // A pointer as long as the keys: the message is cut.
  longKeys: `let o = { s: new Set() }; for (let i = 0; i < 50; i++) o = { ['k' + i + 'x'.repeat(200)]: o }; this.state = o`,
};
/** The states holding themselves, and the JSON pointer of the member that closes the cycle. */
const CYCLES: Record<string, string> = { cycle: '/self', arrayCycle: '/a/1/back' };
/**
 * What JSON.stringify writes without a word (a Map or Set as {}, a typed array as an object of indices, NaN as
 * null): refused, naming where (a JSON pointer). The guest's JSON.stringify (the oracle) writes these.
 */
const REFUSED: Record<string, RegExp> = {
  bigint: /^this\.state holds a BigInt \(JSON cannot write it; keep it as a number, or as a string of digits past 2\^53\) at \/big; keep it to objects/,
  map: /^this\.state holds a Map \(JSON writes \{\}, its entries lost; use an object\) at \/m; keep it to objects, arrays/,
  typed: /^this\.state holds a typed array or buffer .* at \/bytes;/,
  nan: /^this\.state holds NaN \(JSON writes null\) at \/list\/1\/avg;/,
  infinity: /^this\.state holds -Infinity \(JSON writes null\) at \/min;/,
  deepSet: /^this\.state holds a Set \(JSON writes \{\}, its items lost; use an array\) at \/a~1b\/~0k\/1;/,
  weak: /^this\.state holds a WeakMap or WeakSet \(JSON writes \{\}\) at \/seen;/,
  view: /^this\.state holds a typed array or buffer .* at \/dv\/0;/,
  topNaN: /^this\.state holds NaN \(JSON writes null\) at its top;/,
  error: /^this\.state holds an Error \(JSON writes \{\}, its message lost; keep the message as a string\) at \/e;/,
  regexp: /^this\.state holds a RegExp \(JSON writes \{\}; keep its source as a string\) at \/r;/,
  boxedNaN: /^this\.state holds a Number object holding NaN \(JSON writes null\) at \/avg;/,
  pointerAsJsonWalks: /^this\.state holds a Map .* at \/other\/m;/,
  longKeys: /^this\.state holds a Set .*…$/,
};
/** The cases the native way writes (the rest it hands to JSON.stringify). */
const NATIVE = new Set(['shared', 'classInstance', 'notObject', 'nullState', 'numberState', 'wideKeys', 'frozen', 'nullProto', 'sparse', 'nonIndexNumericKeys']);
const oddSource = `class Odd {
  constructor(s) { this.state = s; }
${Object.entries(ODD_CASES)
  .map(([name, body]) => `  ${name}() { ${body}; return { success: true }; }`)
  .join('\n')}
  oracle() {
    try { const text = JSON.stringify(this.state); return text === undefined ? { error: 'undefined' } : { text }; } catch (e) { return { error: String(e.message) }; }
  }
  echo() { return this.state; }
  nothing() { return undefined; }
  later() { return Promise.resolve(1); }
  fnResult() { return () => 1; }
  symResult() { return Symbol('s'); }
  bang() { return '!not an error'; }
  threw() { throw new Error('tool failed: ü 日本'); }
  text({ n }) { return 'é日😀'.repeat(n); }
}`;
const RESULT_TOOLS = ['nothing', 'later', 'fnResult', 'symResult', 'bang', 'threw'];
const ODD: EnvironmentCode = {
  name: 'odd',
  className: 'Odd',
  source: oddSource,
  tools: [
    ...[...Object.keys(ODD_CASES), 'oracle', 'echo', ...RESULT_TOOLS].map(tool),
    { type: 'function', function: { name: 'text', parameters: { type: 'object', properties: { n: { type: 'integer' } } } } },
  ],
};
/** The same environment snapshotted the way it was before (its source names a toJSON, in a comment). */
const ODD_BEFORE: EnvironmentCode = { ...ODD, source: `${oddSource}\n// toJSON` };

/** What the guest's JSON.stringify gives for the environment's state now: its text, or its error. */
function oracle(env: SandboxEnvironment): { text?: string; error?: string } {
  const outcome = env.call('oracle', {});
  expect(outcome.runtimeError, JSON.stringify(outcome.result)).to.equal(undefined);
  return outcome.result as { text?: string; error?: string };
}

function snapshotOutcome(env: SandboxEnvironment): { text?: string; code?: string; message?: string } {
  try {
    return { text: env.snapshotText() };
  } catch (err) {
    if (!(err instanceof SandboxError)) throw err;
    return { code: err.code, message: err.message };
  }
}

describe('snapshots through the native encoder', function () {
  this.timeout(120_000);
  const host = new QuickJSHost(DEFAULT_SANDBOX_LIMITS.heapMb);

  it('the code under test goes the native way (the bars of plainSnapshots do not match it)', () => {
    expect(plainSnapshots(FUZZ_SOURCE)).to.equal(true);
    expect(plainSnapshots(oddSource)).to.equal(true);
    expect(plainSnapshots('class A { toJSON() { return 1; } }')).to.equal(false);
    expect(plainSnapshots('const o = Object.create(new Date());')).to.equal(false);
    expect(plainSnapshots('Object.prototype.x = 1;')).to.equal(false);
    expect(plainSnapshots('Object.defineProperty(a, 0, { enumerable: false, value: 1 });')).to.equal(false);
  });

  it('writes the text JSON.stringify writes, for 400 random states of careless code (keys, numbers, strings, holes, shared objects)', async () => {
    const env = await host.createEnvironment(FUZZ, {}, DEFAULT_SANDBOX_LIMITS);
    const native = SNAPSHOT_WAYS.native;
    try {
      for (let seed = 1; seed <= 400; seed += 1) {
        expect(env.call('fill', { seed }).runtimeError).to.equal(undefined);
        const want = oracle(env);
        expect(want.error, `seed ${seed}`).to.equal(undefined);
        expect(env.snapshotText(), `seed ${seed}`).to.equal(want.text);
      }
      // every one of them went the native way (none holds what the encoder refuses)
      expect(SNAPSHOT_WAYS.native - native).to.equal(400);
    } finally {
      env.dispose();
    }
  });

  for (const name of Object.keys(ODD_CASES)) {
    it(`gives the text or the error it gave before: ${name}`, async () => {
      const outcomes = [];
      const native = SNAPSHOT_WAYS.native;
      for (const code of [ODD, ODD_BEFORE]) {
        const env = await host.createEnvironment(code, {}, DEFAULT_SANDBOX_LIMITS);
        try {
          expect(env.call(name, {}).runtimeError).to.equal(undefined);
          outcomes.push(snapshotOutcome(env));
        } finally {
          env.dispose();
        }
      }
      expect(SNAPSHOT_WAYS.native - native, 'snapshots written the native way').to.equal(NATIVE.has(name) ? 1 : 0);
      expect(plainSnapshots(ODD_BEFORE.source)).to.equal(false);
      expect(outcomes[0]).to.deep.equal(outcomes[1]);
      if (REFUSED[name]) {
        expect(outcomes[0]).to.have.property('code', 'STATE_INVALID');
        expect(outcomes[0]!.message).to.match(REFUSED[name]);
        // and the same value as a tool's result, both ways
        for (const code of [ODD, ODD_BEFORE]) {
          const env = await host.createEnvironment(code, {}, DEFAULT_SANDBOX_LIMITS);
          try {
            env.call(name, {});
            const echoed = env.call('echo', {});
            expect(echoed.runtimeError, name).to.equal('NON_JSON_RESULT');
            expect(echoed.result).to.deep.equal({ success: false, error: outcomes[0]!.message!.replace(/^this\.state/, 'the result') });
          } finally {
            env.dispose();
          }
        }
      } else if (name !== 'deep') {
        // and the guest's JSON.stringify agrees (a state this deep overflows the host's stack in it)
        const env = await host.createEnvironment(ODD, {}, DEFAULT_SANDBOX_LIMITS);
        try {
          env.call(name, {});
          const want = oracle(env);
          if (want.text !== undefined) expect(outcomes[0]).to.deep.equal({ text: want.text });
          else if (CYCLES[name]) {
            // The guest's error, and where the cycle closes (a JSON pointer).
            expect(outcomes[0]).to.deep.equal({ code: 'STATE_INVALID', message: `${want.error}: this.state holds itself at ${CYCLES[name]} (a member that leads back to an object it is inside); JSON has no cycles` });
          } else expect(outcomes[0]).to.include({ code: 'STATE_INVALID', ...(want.error === 'undefined' ? {} : { message: want.error }) });
        } finally {
          env.dispose();
        }
      }
    });
  }

  it('checks what JSON writes: a Map with a toJSON of its own is written as what that gives, a Set a toJSON gives is refused', async () => {
    const source = `class Tally extends Map { toJSON() { return Object.fromEntries(this); } }
      class W { constructor(s) { this.state = s; }
        tally() { this.state = { t: new Tally([['a', 1]]) }; return { success: true }; }
        wraps() { this.state = { w: { toJSON() { return { inner: new Set([1]) }; } } }; return { success: true }; } }`;
    const env = await host.createEnvironment({ name: 'w', className: 'W', source, tools: [tool('tally'), tool('wraps')] }, {}, DEFAULT_SANDBOX_LIMITS);
    try {
      env.call('tally', {});
      expect(snapshotOutcome(env)).to.deep.equal({ text: '{"t":{"a":1}}' });
      env.call('wraps', {});
      const refused = snapshotOutcome(env);
      expect(refused).to.have.property('code', 'STATE_INVALID');
      expect(refused.message).to.match(/^this\.state holds a Set \(JSON writes \{\}, its items lost; use an array\) at key "inner";/);
    } finally {
      env.dispose();
    }
  });

  it('writes every tool result as before: 400 random results, each odd state as a result, and results that are not JSON', async () => {
    const env = await host.createEnvironment(FUZZ, {}, DEFAULT_SANDBOX_LIMITS);
    const native = CALL_WAYS.native;
    try {
      for (let seed = 1; seed <= 400; seed += 1) {
        env.call('fill', { seed });
        const want = oracle(env).text!;
        const native0 = CALL_WAYS.native;
        expect(env.callText('echo', {}), `seed ${seed}`).to.deep.include({ resultJson: want });
        expect(CALL_WAYS.native - native0).to.equal(1);
      }
      expect(CALL_WAYS.native - native).to.be.greaterThanOrEqual(400 + 400 * 2); // fill and oracle went the native way too
    } finally {
      env.dispose();
    }
    const outcomeOf = (e: SandboxEnvironment, name: string, args: object = {}) => {
      const { us: _us, ...rest } = e.callText(name, args);
      return rest;
    };
    for (const name of [...Object.keys(ODD_CASES), ...RESULT_TOOLS]) {
      const outcomes = [];
      for (const code of [ODD, ODD_BEFORE]) {
        const e = await host.createEnvironment(code, {}, DEFAULT_SANDBOX_LIMITS);
        try {
          if (name in ODD_CASES) {
            e.call(name, {});
            outcomes.push(outcomeOf(e, 'echo'));
          } else {
            outcomes.push(outcomeOf(e, name));
          }
        } catch (err) {
          outcomes.push({ thrown: String(err) });
        } finally {
          e.dispose();
        }
      }
      expect(outcomes[0], name).to.deep.equal(outcomes[1]);
    }
  });

  it('gives an error reply as it is where the heap is short for the native way (the harness then stringifies)', async () => {
    // A 3 MB reply first: the next call's room check (four times twice that) fails in a 16 MiB
    // allowance, so its reply goes through encodeOf, which must hand an error reply back unchanged.
    // (3.2 MB of UTF-8: 4.5 MB, the JSON text and its UTF-8 copy left too little of the allowance
    // for a few hundred more bytes of harness, and the reply was MEMORY_EXCEEDED.)
    const limits: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, envMemoryMb: 16 };
    const outcomes = [];
    for (const code of [ODD, ODD_BEFORE]) {
      const e = await host.createEnvironment(code, {}, limits);
      try {
        expect(e.callText('text', { n: 350_000 }).runtimeError).to.equal('RESULT_TOO_LARGE');
        const stringified = CALL_WAYS.stringify;
        const { us: _us, ...threw } = e.callText('threw', {});
        if (code === ODD) expect(CALL_WAYS.stringify - stringified, 'the reply went through encodeOf').to.equal(1);
        outcomes.push(threw);
      } finally {
        e.dispose();
      }
    }
    expect(outcomes[1]).to.include({ runtimeError: 'TOOL_THREW' });
    expect(outcomes[0]).to.deep.equal(outcomes[1]);
  });

  it('applies the result cap as before, in bytes, at and around it, with 2-, 3- and 4-byte characters', async () => {
    const limits: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, maxResultBytes: 400 };
    const envs = [await host.createEnvironment(ODD, {}, limits), await host.createEnvironment(ODD_BEFORE, {}, limits)];
    try {
      for (let n = 30; n <= 50; n += 1) {
        const [a, b] = envs.map(e => {
          const { us: _us, ...rest } = e.callText('text', { n });
          return rest;
        });
        expect(a, `n = ${n}`).to.deep.equal(b);
      }
      expect(envs[0]!.callText('text', { n: 30 }).runtimeError).to.equal(undefined);
      expect(envs[0]!.callText('text', { n: 50 }).runtimeError).to.equal('RESULT_TOO_LARGE');
    } finally {
      for (const e of envs) e.dispose();
    }
  });

  it('stops writing a result or a state far past its cap there, natively and in the guest, and the environment goes on', async () => {
    const source = `class Many { constructor(s) { this.state = s; }
      many({ n }) { const out = []; for (let i = 0; i < n; i++) out.push('item-' + i); return out; }
      keep({ n }) { this.state.items = this.many({ n }); return n; }
      repeated({ n }) { const s = 'x'.repeat(1000000); const out = []; for (let i = 0; i < n; i++) out.push(s); return out; }
      small() { return 'fine'; } }`;
    const plain: EnvironmentCode = { name: 'many', className: 'Many', source, tools: ['many', 'keep', 'repeated', 'small'].map(tool) };
    const before: EnvironmentCode = { ...plain, source: `${source}\n// toJSON` };
    const limits: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, envMemoryMb: 32, maxResultBytes: 1000, maxStateBytes: 2000 };
    for (const code of [plain, before]) {
      const env = await host.createEnvironment(code, {}, limits);
      try {
        const stringified = CALL_WAYS.stringify;
        // 20,000 items: 230 KB of JSON, not written past 2,000 bytes
        expect(env.call('many', { n: 20_000 })).to.deep.include({ runtimeError: 'RESULT_TOO_LARGE', result: { success: false, error: `the result of many is more than 2000 bytes; the cap is 1000${RESULT_CAP_ADVICE}` } });
        if (code === plain) expect(CALL_WAYS.stringify - stringified, 'the native reader stopped it: no JSON.stringify').to.equal(0);
        expect(env.call('small', {}).result).to.equal('fine');
        expect(env.call('keep', { n: 20_000 }).result).to.equal(20_000);
        expect(snapshotOutcome(env)).to.deep.equal({ code: 'STATE_TOO_LARGE', message: `the state is more than 4000 bytes; the cap is 2000${STATE_CAP_ADVICE}` });
        expect(env.call('small', {}).result).to.equal('fine');
      } finally {
        env.dispose();
      }
    }
    // Keys count only where their members are written: an object of cleared entries (undefined values, left out of the
    // JSON) whose keys alone are past twice the cap is a short state, not one over the cap.
    const cleared = await host.createEnvironment({ ...plain, source: source.replace('small() {', "clear({ n }) { this.state = { kept: 'é' }; for (let i = 0; i < n; i++) this.state['cleared-entry-' + i] = undefined; return n; }\n      small() {"), tools: [...plain.tools, tool('clear')] }, {}, limits);
    try {
      expect(cleared.call('clear', { n: 200_000 }).result).to.equal(200_000);
      expect(snapshotOutcome(cleared)).to.deep.equal({ text: '{"kept":"é"}' });
    } finally {
      cleared.dispose();
    }
    // 200 times one string of 1 MB is 200 MB of text, past the 32 MiB allowance: the guest's JSON.stringify stops at
    // twice the cap, and so does the native encoder, which writes each member's string again and would have grown
    // the module past its allowance (it was MEMORY_EXCEEDED, the environment thrown away). It stops at a few
    // megabytes of growth, and the result is then written the guest's way.
    for (const code of [plain, before]) {
      const env = await host.createEnvironment(code, {}, limits);
      try {
        const stopped = SNAPSHOT_WAYS.stopped;
        const heap = host.heapBytes();
        expect(env.call('repeated', { n: 200 }), code.source).to.deep.include({ runtimeError: 'RESULT_TOO_LARGE', result: { success: false, error: `the result of repeated is more than 2000 bytes; the cap is 1000${RESULT_CAP_ADVICE}` } });
        if (code === plain) expect(SNAPSHOT_WAYS.stopped - stopped, 'the native encoder was stopped for room').to.equal(1);
        // at its ceiling (10 × the 2,000 bytes it may write, plus 1 MiB), not at the 32 MiB allowance: the guest's own
        // megabyte string, and a few more for the allocator's steps
        expect(host.heapBytes() - heap, 'the module grew by a few MiB at most').to.be.below(6 << 20);
        expect(env.call('small', {}).result).to.equal('fine');
        expect(env.call('repeated', { n: 200 }).runtimeError).to.equal('RESULT_TOO_LARGE');
        expect(env.snapshotText()).to.equal('{}');
      } finally {
        env.dispose();
      }
    }
  });

  it('refuses a state over the cap with its size up to twice the cap, and as more than that past it, also when shared objects would repeat past it', async () => {
    const limits: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, maxStateBytes: 2000 };
    const env = await host.createEnvironment(ODD, {}, limits);
    try {
      env.call('shared', {});
      expect(snapshotOutcome(env).text).to.be.a('string');
    } finally {
      env.dispose();
    }
    const source = `class Big { constructor(s) { this.state = s; }
      grow({ n }) { const row = { name: 'é日本😀'.repeat(10) }; const rows = []; for (let i = 0; i < n; i++) rows.push(row); this.state = { rows }; return { success: true }; }
      oracle() { return { text: JSON.stringify(this.state) }; } }`;
    const big = await host.createEnvironment({ name: 'big', className: 'Big', source, tools: [tool('grow'), tool('oracle')] }, {}, limits);
    try {
      const advice = ' (ENVFLEET_SANDBOX_MAX_STATE_KB): keep in the state only what later calls need (an environment that keeps everything each call gives it, such as a copy of every result or a log of every request, grows past any cap), or raise ENVFLEET_SANDBOX_MAX_STATE_KB (a run uses the value it was submitted with)';
      const said = new Set<string>();
      for (const n of [3, 4, 5, 20, 40, 5000]) {
        big.call('grow', { n });
        const text = oracle(big).text!;
        const bytes = Buffer.byteLength(text);
        const got = snapshotOutcome(big);
        if (bytes <= 2000) expect(got, `n = ${n}`).to.deep.equal({ text });
        else if (bytes <= 4000) expect(got, `n = ${n}`).to.deep.equal({ code: 'STATE_TOO_LARGE', message: `the state is ${bytes} bytes; the cap is 2000${advice}` });
        else expect(got, `n = ${n}`).to.deep.equal({ code: 'STATE_TOO_LARGE', message: `the state is more than 4000 bytes; the cap is 2000${advice}` });
        said.add(bytes <= 2000 ? 'under' : bytes <= 4000 ? 'size' : 'more');
      }
      expect([...said]).to.deep.equal(['under', 'size', 'more']);
    } finally {
      big.dispose();
    }
  });

  it('keeps JSON.stringify for code that names a toJSON, and shows why: a toJSON named at run time is not seen', async () => {
    const named = `class Named { constructor(s) { this.state = s; }
      put() { class Money { constructor(c) { this.cents = c; } toJSON() { return (this.cents / 100).toFixed(2); } } this.state = { price: new Money(1250) }; return { success: true }; } }`;
    const env = await host.createEnvironment({ name: 'named', className: 'Named', source: named, tools: [tool('put')] }, {}, DEFAULT_SANDBOX_LIMITS);
    try {
      env.call('put', {});
      expect(env.snapshotText()).to.equal('{"price":"12.50"}');
    } finally {
      env.dispose();
    }
    // The documented limit (quickjs-host.ts, plainSnapshots): a name built at run time passes the
    // bars, and the encoder writes the object's own data. It also shows this suite's states went
    // the native way: the guest's JSON.stringify would have called the method.
    const hidden = `class Hidden { constructor(s) { this.state = s; }
      put() { const k = 'to' + 'JS' + 'ON'; class Money { constructor(c) { this.cents = c; } [k]() { return 'called'; } } this.state = { price: new Money(1250) }; return { success: true }; } }`;
    expect(plainSnapshots(hidden)).to.equal(true);
    const env2 = await host.createEnvironment({ name: 'hidden', className: 'Hidden', source: hidden, tools: [tool('put')] }, {}, DEFAULT_SANDBOX_LIMITS);
    try {
      env2.call('put', {});
      expect(env2.snapshotText()).to.equal('{"price":{"cents":1250}}');
    } finally {
      env2.dispose();
    }
  });

  it('gives back the memory of every snapshot: a thousand snapshots of a 50 KB state fit an 8 MiB allowance', async () => {
    const limits: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, envMemoryMb: 8, sessionCpuMs: 1e9 };
    const rows = Array.from({ length: 700 }, (_, i) => ({ id: `R${i}`, name: `ルーム ${i} — café`, beds: i % 4, rate: 99.5 + i }));
    const env = await host.createEnvironment(FUZZ, { rows }, limits);
    try {
      const native = SNAPSHOT_WAYS.native;
      const first = env.snapshotText();
      expect(Buffer.byteLength(first)).to.be.greaterThan(40_000);
      for (let i = 0; i < 1000; i += 1) expect(env.snapshotText()).to.equal(first);
      expect(SNAPSHOT_WAYS.native - native).to.equal(1001);
    } finally {
      env.dispose();
    }
  });

  it('needs no more of the allowance than JSON.stringify did: where the encoder runs out of room, the guest stringifies, as before', async () => {
    // Wide text (two bytes a character in the guest and in the encoding, three in UTF-8) in a 16 MiB
    // allowance: the encoder holds its buffer, a copy as an ArrayBuffer and the host's copy of that
    // at its peak, and runs out of room for states the guest's JSON.stringify writes. The module
    // must go on as if it had not tried (no guest code ran meanwhile), and give what it gave before.
    const source = `class Wide { constructor(s) { this.state = s; }
      fill({ n }) { this.state = { s: '日本'.repeat(n), n }; return { success: true }; }
      more() { this.state.more = 'after'; return { success: true }; } }`;
    const limits: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, envMemoryMb: 16, callDeadlineMs: 60_000, sessionCpuMs: 1e9 };
    const outcomes: string[] = [];
    const restored = SNAPSHOT_WAYS.restored;
    // (compared by length and a flag: a diff of megabytes would bury the message)
    const shown = (outcome: { text?: string }, want: string) => (outcome.text === undefined ? outcome : { length: outcome.text.length, right: outcome.text === want });
    // Where the encoder and JSON.stringify run out depends on the module's exact heap (the harness's own size
    // moves it by a whole block), so the length is swept up from one both write until the encoder has run
    // out a few times. Where it wrote the text it is the right text; where it ran out, the outcome is the
    // guest's JSON.stringify's (the same environment with a toJSON in its source goes that way from the start).
    let ranOut = 0;
    for (let n = 850_000; n <= 3_000_000 && ranOut < 3; n += 50_000) {
      const got = [];
      let restoredHere = 0;
      for (const code of [source, `${source} // toJSON`]) {
        const env = await host.createEnvironment({ name: 'wide', className: 'Wide', source: code, tools: [tool('fill'), tool('more')] }, {}, limits);
        try {
          expect(env.call('fill', { n }).runtimeError).to.equal(undefined);
          const before = SNAPSHOT_WAYS.restored;
          const first = shown(snapshotOutcome(env), JSON.stringify({ s: '日本'.repeat(n), n }));
          if (code === source) restoredHere = SNAPSHOT_WAYS.restored - before;
          // and the environment goes on as it did
          const more = env.call('more', {}).runtimeError ?? 'ok';
          got.push({ first, more, second: shown(snapshotOutcome(env), JSON.stringify({ s: '日本'.repeat(n), n, more: 'after' })) });
        } finally {
          env.dispose();
        }
      }
      for (const g of got) if ('right' in g.first) expect(g.first, `n = ${n}`).to.include({ right: true });
      if (restoredHere > 0) {
        ranOut += 1;
        expect(got[0], `n = ${n}`).to.deep.equal(got[1]);
      }
      outcomes.push((got[0]!.first as { code?: string }).code ?? 'text', (got[1]!.first as { code?: string }).code ?? 'text');
    }
    // Both sides of the allowance were reached, and the encoder did run out on the way.
    expect(outcomes).to.include('text').and.to.include('MEMORY_EXCEEDED');
    expect(SNAPSHOT_WAYS.restored - restored).to.be.greaterThan(0);
  });

  it('does the linear work JSON.stringify does: objects with index keys nested deep go to JSON.stringify when reordering them would cost more', async () => {
    // An object whose array-index keys come after other keys is rewritten with them first, its
    // members moved; nested 999 deep around a 1 MB string (the state: 1,000 levels, the most a
    // state may nest: MAX_JSON_DEPTH), every level moved the megabyte
    // again (a gigabyte of copying in one snapshot, seconds where JSON.stringify takes
    // milliseconds, in host code no deadline stops). Keys already in order move nothing.
    const source = `class Chain { constructor(s) { this.state = s; }
      build({ sorted }) { let a = 'x'.repeat(1 << 20); for (let i = 0; i < 999; i++) a = sorted ? { 1: a, b: i } : { b: i, 1: a }; this.state = { a }; return { success: true }; }
      oracle() { return { text: JSON.stringify(this.state) }; } }`;
    const limits: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, callDeadlineMs: 60_000, sessionCpuMs: 1e9, maxResultBytes: 8 << 20 };
    const env = await host.createEnvironment({ name: 'chain', className: 'Chain', source, tools: [tool('build'), tool('oracle')] }, {}, limits);
    try {
      for (const sorted of [true, false]) {
        expect(env.call('build', { sorted }).runtimeError).to.equal(undefined);
        const want = oracle(env).text!;
        const ways = { ...SNAPSHOT_WAYS };
        const text = env.snapshotText();
        expect(text === want, `sorted: ${sorted}`).to.equal(true);
        // sorted: the native way, with nothing moved; not: JSON.stringify's (linear) way
        expect(SNAPSHOT_WAYS.native - ways.native, `sorted: ${sorted}`).to.equal(sorted ? 1 : 0);
      }
    } finally {
      env.dispose();
    }
  });

  it('stops the encoder at the first allocation the allowance refuses: a sparse array is not walked to its end', async () => {
    // QuickJS's encoder writes into a DynBuf that, once out of room, skips what it is given and
    // goes on; it writes each hole of a sparse array (a[3e8] = 1: 3e8 of them, 4e9 at most) and
    // checks no interrupt. Out of room after 64 MiB, it went on for the rest: seconds (a[3e8]: 6 s,
    // a[3e9]: 150 s) in host code where the guest's JSON.stringify ran out within one. Its stack
    // check is what stops it: the allowance's refusal sets the runtime's stack limit so that the
    // next check fails, and the limit is set back after. The outcome is the one the guest's
    // JSON.stringify gives (MEMORY_EXCEEDED). (What this stops is time, which a test cannot assert:
    // it asserts that the encoder was stopped, and what follows.)
    const source = `class Sparse { constructor(s) { this.state = s; }
      fill() { const a = []; a[3e8] = 1; this.state = { a }; return { success: true }; } }`;
    const limits: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, callDeadlineMs: 60_000, sessionCpuMs: 1e9 };
    const outcomes = [];
    const stopped = SNAPSHOT_WAYS.stopped;
    for (const s of [source, `${source} // toJSON`]) {
      const env = await host.createEnvironment({ name: 'sparse', className: 'Sparse', source: s, tools: [tool('fill')] }, {}, limits);
      try {
        expect(env.call('fill', {}).runtimeError).to.equal(undefined);
        outcomes.push(snapshotOutcome(env));
      } finally {
        env.dispose();
      }
    }
    expect(outcomes[1]).to.have.property('code', 'MEMORY_EXCEEDED');
    expect(outcomes[0]).to.deep.equal(outcomes[1]);
    expect(SNAPSHOT_WAYS.stopped - stopped, 'native attempts stopped at the refusal').to.equal(1);
    // Stopped where its memory was copied first (see the test above): the module goes on, with the
    // runtime's own stack limit.
    // Where the stop comes depends on the module's exact heap, so the string's length is swept until
    // an attempt is stopped and its copy written back (at least one must be), in text of two widths: which of the
    // encoder and JSON.stringify runs out first at a length moves with the module's layout (the harness's own
    // size moves it), and the case asserted here needs the encoder to run out where JSON.stringify does not.
    const shapes = [
      { unit: '日本', from: 850_000, to: 1_500_000, step: 25_000 },
      { unit: 'ab', from: 1_500_000, to: 5_000_000, step: 25_001 },
    ];
    const wide = `class Wide { constructor(s) { this.state = s; }
      fill({ n, unit }) { this.state = { s: unit.repeat(n) }; return { success: true }; }
      depth() { let n = 0; const f = () => { n++; f(); }; try { f(); } catch (e) {} return { n }; } }`;
    const fillTool = { type: 'function' as const, function: { name: 'fill', parameters: { type: 'object', properties: { n: { type: 'integer' }, unit: { type: 'string' } } } } };
    let seen = 0;
    for (const { unit, from, to, step } of shapes) for (let n = from; n <= to && seen === 0; n += step) {
      const env = await host.createEnvironment({ name: 'wide', className: 'Wide', source: wide, tools: [fillTool, tool('depth')] }, {}, { ...limits, envMemoryMb: 16 });
      try {
        const depth = (env.call('depth', {}).result as { n: number }).n;
        if (env.call('fill', { n, unit }).runtimeError !== undefined) continue;
        const ways = { ...SNAPSHOT_WAYS };
        const got = snapshotOutcome(env);
        if (SNAPSHOT_WAYS.stopped - ways.stopped === 0) continue;
        expect(SNAPSHOT_WAYS.restored - ways.restored, `n = ${n}`).to.equal(1);
        if (got.code === 'MEMORY_EXCEEDED') continue; // JSON.stringify ran out too: the module is gone
        expect(got, `n = ${n}`).to.deep.equal({ text: JSON.stringify({ s: unit.repeat(n) }) });
        expect((env.call('depth', {}).result as { n: number }).n, `n = ${n}`).to.equal(depth);
        seen += 1;
      } finally {
        env.dispose();
      }
    }
    expect(seen, 'a native attempt stopped where the module was copied first').to.equal(1);
  });

  it('gives an error that escapes the harness while it reads the state the code it had before', async () => {
    // A getter that throws a revoked proxy: the harness's error handler itself throws on it
    // (instanceof reads its prototype), so the error leaves the harness as an exception.
    const source = `class Revoked { constructor(s) { this.s = s; this.armed = false; }
      arm() { this.armed = true; return { success: true }; }
      get state() { if (!this.armed) return {}; const r = Proxy.revocable({}, {}); r.revoke(); throw r.proxy; } }`;
    const outcomes = [];
    for (const code of [source, `${source} // toJSON`]) {
      const env = await host.createEnvironment({ name: 'revoked', className: 'Revoked', source: code, tools: [tool('arm')] }, {}, DEFAULT_SANDBOX_LIMITS);
      try {
        env.call('arm', {});
        outcomes.push(snapshotOutcome(env));
      } finally {
        env.dispose();
      }
    }
    expect(outcomes[1]).to.have.property('code', 'TOOL_THREW');
    expect(outcomes[0]).to.deep.equal(outcomes[1]);
  });

  it('gives the error of a state getter that throws as before, with room for the native way and without', async () => {
    // Without room (a 3 MB reply first in a 16 MiB allowance) and without memory copies (a build
    // whose layout is not known: `copies` off), the harness's error reply goes through snapshotOf.
    const plainHost = new QuickJSHost(DEFAULT_SANDBOX_LIMITS.heapMb);
    (plainHost as unknown as { copies: boolean }).copies = false;
    const source = `class Throwing { constructor(s) { this.s = s; this.armed = false; }
      arm() { this.armed = true; return { success: true }; }
      big() { return 'x'.repeat(3e6); }
      get state() { if (!this.armed) return {}; throw new Error('no state: 日本 😀'); } }`;
    const tools = [tool('arm'), tool('big')];
    for (const short of [false, true]) {
      const outcomes = [];
      for (const code of [source, `${source} // toJSON`]) {
        const env = await (short ? plainHost : host).createEnvironment({ name: 'throwing', className: 'Throwing', source: code, tools }, {}, { ...DEFAULT_SANDBOX_LIMITS, envMemoryMb: 16 });
        try {
          if (short) env.call('big', {}); // the heap grows by its text and more: four times that is not left
          env.call('arm', {});
          const ways = { ...SNAPSHOT_WAYS };
          outcomes.push(snapshotOutcome(env));
          if (short && code === source) expect(SNAPSHOT_WAYS.stringify - ways.stringify, 'through snapshotOf').to.equal(1);
        } finally {
          env.dispose();
        }
      }
      expect(outcomes[1], `short of room: ${short}`).to.deep.equal({ code: 'STATE_INVALID', message: 'no state: 日本 😀' });
      expect(outcomes[0], `short of room: ${short}`).to.deep.equal(outcomes[1]);
    }
  });

  it('gives back the memory of every native reply: 20,000 replies of about 1 KB fit an 8 MiB allowance', async () => {
    const source = `class L { constructor(s) { this.state = s; }
      make() { return { rows: Array.from({ length: 20 }, (_, i) => ({ id: 'R' + i, name: 'ルーム ' + i })) }; } }`;
    const env = await host.createEnvironment({ name: 'l', className: 'L', source, tools: [tool('make')] }, {}, { ...DEFAULT_SANDBOX_LIMITS, envMemoryMb: 8, sessionCpuMs: 1e9 });
    try {
      const native = CALL_WAYS.native;
      const first = env.callText('make', {}).resultJson;
      expect(first.length).to.be.greaterThan(500);
      for (let i = 0; i < 20_000; i += 1) expect(env.callText('make', {}).resultJson).to.equal(first);
      expect(CALL_WAYS.native - native).to.equal(20_001);
    } finally {
      env.dispose();
    }
  });

  it('reads a state getter once, also when the encoder cannot write what it returns', async () => {
    const source = `class Counting { constructor(s) { this.s = s; this.reads = 0; }
      get state() { this.reads += 1; return { reads: this.reads, when: this.reads > 1 ? 'again' : 'once', f: () => 1 }; }
      reads() { return { reads: this.reads }; } }`;
    const env = await host.createEnvironment({ name: 'counting', className: 'Counting', source, tools: [tool('reads')] }, {}, DEFAULT_SANDBOX_LIMITS);
    try {
      const before = (env.call('reads', {}).result as { reads: number }).reads;
      expect(env.snapshotText()).to.equal(`{"reads":${before + 1},"when":"${before + 1 > 1 ? 'again' : 'once'}"}`);
      expect((env.call('reads', {}).result as { reads: number }).reads).to.equal(before + 1);
    } finally {
      env.dispose();
    }
  });
});
