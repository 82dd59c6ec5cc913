import { expect } from 'chai';
import { DEFAULT_SANDBOX_LIMITS, type SandboxLimits } from '../../../src/sandbox/limits.js';
import { QuickJSHost, type SandboxEnvironment } from '../../../src/sandbox/quickjs-host.js';
import type { EnvironmentCode } from '../../../src/sandbox/bundle.js';
import { rejection } from '../../helpers/assert.js';

const LIMITS: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, callDeadlineMs: 200, createDeadlineMs: 300, checkDeadlineMs: 200, envMemoryMb: 32, heapMb: 160, maxResultBytes: 64 * 1024 };

/** Every method is one hostile probe; each returns what it could reach, as JSON. */
const HOSTILE = `
function sloppyProbe() { return sloppyProbe.caller; }
class Hostile {
  constructor(s) { this.state = s; }
  reach() {
    const g = globalThis;
    const names = Object.getOwnPropertyNames(g);
    const viaFunction = (() => {}).constructor('return this')();
    const viaObject = ({}).constructor.constructor('return typeof process')();
    const viaAsync = (async () => {}).constructor;
    return { success: true, data: {
      process: typeof process, require: typeof require, module: typeof module, console: typeof console,
      setTimeout: typeof setTimeout, setInterval: typeof setInterval, queueMicrotask: typeof queueMicrotask, fetch: typeof fetch,
      SharedArrayBuffer: typeof SharedArrayBuffer, Atomics: typeof Atomics, WebAssembly: typeof WebAssembly,
      globalNames: names, sameGlobal: viaFunction === g, viaObject, viaFunctionProcess: typeof viaFunction.process,
      asyncCtor: typeof viaAsync,
    } };
  }
  logs() {
    // What model-written code does all the time: it must not fail the call, and must write nothing anywhere.
    const methods = ['log', 'info', 'warn', 'error', 'debug', 'trace', 'dir', 'table', 'group', 'groupEnd', 'time', 'timeEnd', 'count', 'assert'];
    const returned = methods.map(m => console[m]('guest says', m, this.state, { nested: [1, 2] }));
    let replaced = 'unchanged';
    try { console.log = () => 'mine'; } catch (e) { replaced = e.name; }
    let added = 'not added';
    try { console.extra = 1; } catch (e) { added = e.name; }
    return { success: true, data: {
      returned, replaced, added, frozen: Object.isFrozen(console), fnFrozen: Object.isFrozen(console.log),
      viaConstructor: console.log.constructor('return typeof process')(), sameGlobal: console.log.constructor('return this')() === globalThis,
      kinds: methods.map(m => typeof console[m]),
    } };
  }
  caller() {
    const chain = [];
    let c = sloppyProbe();
    for (let i = 0; c && i < 10; i++) {
      chain.push(c.constructor('return typeof process')());
      try { c = c.caller; } catch (e) { chain.push(e.name); break; }
    }
    let strictError = null;
    try { (function () { 'use strict'; return arguments.callee; })(); } catch (e) { strictError = e.name; }
    return { success: true, data: { chain, strictError } };
  }
  prepareStack() {
    Error.prepareStackTrace = (e, frames) => frames.map(f => f.getThis && f.getThis());
    const stack = new Error('x').stack;
    return { success: true, data: typeof stack };
  }
  dynamicImport() { return import('node:fs'); }
  spin() { for (;;) {} }
  spinCatching() { for (;;) { try { for (;;) {} } catch (e) {} } }
  redos() { return { success: true, data: /^(a+)+$/.test('a'.repeat(40) + 'b') }; }
  bomb() { const xs = []; for (;;) xs.push('x'.repeat(1 << 16) + xs.length); }
  recurse({ n }) { const f = k => k === 0 ? 0 : 1 + f(k - 1); return { success: true, data: f(n) }; }
  huge() { return { success: true, data: 'y'.repeat(200 * 1024) }; }
  cyclic() { const o = { success: true }; o.self = o; return o; }
  bigint() { return { success: true, data: 10n }; }
  nothing() {}
  throws() { throw new Error('the fridge is empty'); }
  throwsString() { throw 'plain string'; }
  ownOverflow() { throw new RangeError('Maximum call stack size exceeded'); }
  throwsObject() { throw { code: 'OUT_OF_STOCK', detail: 'plus de pommes 🍎' }; }
  throwsEmpty() { throw new TypeError(); }
  throwsLongObject() { throw { list: '😀'.repeat(3000) }; }
  ownMemory() { throw new Error('the printer is out of memory'); }
  caughtOverflow() { try { const f = k => 1 + f(k); f(0); } catch (e) { return { success: false, error: e.name + ': ' + e.message }; } }
  wait() { const sab = new ArrayBuffer(8); return { success: true, data: typeof sab }; }
  grow({ n }) { for (let i = 0; i < n; i++) this.state['k' + i] = 'z'.repeat(1000); return { success: true }; }
  ok() { return { success: true, data: 'fine' }; }
}`;

const tool = (name: string, parameters: Record<string, unknown> = { type: 'object' }) => ({ type: 'function' as const, function: { name, parameters } });
const CODE: EnvironmentCode = {
  name: 'hostile',
  className: 'Hostile',
  source: HOSTILE,
  tools: [
    ...['reach', 'logs', 'caller', 'prepareStack', 'dynamicImport', 'spin', 'spinCatching', 'redos', 'bomb', 'huge', 'cyclic', 'bigint', 'nothing', 'throws', 'throwsString', 'ownOverflow', 'throwsObject', 'throwsEmpty', 'throwsLongObject', 'ownMemory', 'caughtOverflow', 'wait', 'ok', 'missingMethod'].map(n => tool(n)),
    tool('recurse', { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] }),
    tool('grow', { type: 'object', properties: { n: { type: 'integer', minimum: 0 } }, required: ['n'], additionalProperties: false }),
  ],
};

describe('sandbox containment (QuickJS)', function () {
  this.timeout(30_000);
  const host = new QuickJSHost(LIMITS.heapMb);
  let env: SandboxEnvironment;
  let bystander: SandboxEnvironment;

  beforeEach(async () => {
    env = await host.createEnvironment(CODE, { n: 1 }, LIMITS);
    bystander = await host.createEnvironment(CODE, { n: 2 }, LIMITS);
  });
  afterEach(() => {
    env.dispose();
    // The bystander in the same heap must keep working whatever the other one did.
    expect(bystander.call('ok', {})).to.deep.include({ result: { success: true, data: 'fine' } });
    expect(bystander.snapshot()).to.deep.equal({ n: 2 });
    bystander.dispose();
  });

  it('reaches no host object: process, require, timers, fetch, SharedArrayBuffer, Atomics, WebAssembly', () => {
    const { result, runtimeError } = env.call('reach', {});
    expect(runtimeError).to.equal(undefined);
    const data = (result as { data: Record<string, unknown> }).data;
    for (const name of ['process', 'require', 'module', 'setTimeout', 'setInterval', 'queueMicrotask', 'fetch', 'SharedArrayBuffer', 'Atomics', 'WebAssembly']) {
      expect(data[name], name).to.equal('undefined');
    }
    // console is the harness's: frozen functions that do nothing (below).
    expect(data['console']).to.equal('object');
    const globals = data['globalNames'] as string[];
    for (const name of ['process', 'require', 'Buffer', 'global', 'WebAssembly', 'SharedArrayBuffer', 'Atomics', 'setTimeout']) {
      expect(globals, name).not.to.include(name);
    }
    // The Function constructor, reached through any object, only yields the guest's own global.
    expect(data['sameGlobal']).to.equal(true);
    expect(data['viaObject']).to.equal('undefined');
    expect(data['viaFunctionProcess']).to.equal('undefined');
  });

  it('gives the guest a console whose methods do nothing: the call succeeds, nothing reaches the host, and it cannot be changed', () => {
    // Everything the host could write through, replaced for the call (own properties, deleted after: the prototypes' come back).
    const written: unknown[] = [];
    const capture = (...args: unknown[]) => {
      written.push(args);
      return true;
    };
    const targets: [object, string][] = [[process.stdout, 'write'], [process.stderr, 'write'], ...['log', 'info', 'warn', 'error', 'debug', 'trace'].map(m => [console, m] as [object, string])];
    const saved = targets.map(([o, key]) => Object.getOwnPropertyDescriptor(o, key));
    targets.forEach(([o, key]) => Object.defineProperty(o, key, { value: capture, writable: true, configurable: true }));
    let outcome;
    try {
      outcome = env.call('logs', {});
    } finally {
      targets.forEach(([o, key], i) => {
        const was = saved[i];
        if (was) Object.defineProperty(o, key, was);
        else delete (o as Record<string, unknown>)[key];
      });
    }
    expect(outcome.runtimeError, JSON.stringify(outcome.result)).to.equal(undefined);
    expect(written, 'nothing written on the host').to.deep.equal([]);
    const data = (outcome.result as { data: Record<string, unknown> }).data;
    expect(data['returned']).to.deep.equal(new Array(14).fill(null)); // undefined, written as null in an array
    expect(data['kinds']).to.deep.equal(new Array(14).fill('function'));
    expect(data).to.include({ replaced: 'TypeError', added: 'TypeError', frozen: true, fnFrozen: true, viaConstructor: 'undefined', sameGlobal: true });
  });

  it('gives fn.caller nothing from the host, and strict callee access throws inside the guest', () => {
    const { result, runtimeError } = env.call('caller', {});
    expect(runtimeError).to.equal(undefined);
    const data = (result as { data: { chain: string[]; strictError: unknown } }).data;
    // Whatever the caller chain yields, it is guest code: no process behind any of it.
    for (const entry of data.chain) expect(['undefined', 'TypeError']).to.include(entry);
    expect(data.strictError).to.equal('TypeError');
  });

  it('ignores Error.prepareStackTrace (no V8 CallSite API in the guest)', () => {
    expect(env.call('prepareStack', {}).result).to.deep.equal({ success: true, data: 'string' });
  });

  it('refuses import(): a promise is not a result', () => {
    expect(env.call('dynamicImport', {})).to.deep.include({ runtimeError: 'NON_JSON_RESULT' });
  });

  it('refuses a source with a static import', async () => {
    const err = await rejection(host.createEnvironment({ ...CODE, source: `import fs from 'fs';\n${HOSTILE}` }, {}, LIMITS));
    expect(err).to.have.property('code', 'SOURCE_LOAD_FAILED');
  });

  for (const method of ['spin', 'spinCatching', 'redos']) {
    it(`interrupts ${method} at the deadline and throws the environment away`, () => {
      const out = env.call(method, {});
      expect(out).to.deep.include({ runtimeError: 'DEADLINE_EXCEEDED' });
      // The message says the deadline and the setting that sets it (a stranger's probe read only "interrupted at the deadline").
      expect((out.result as { error: string }).error).to.equal(`interrupted at its deadline of ${LIMITS.callDeadlineMs} ms (ENVFLEET_SANDBOX_DEADLINE_MS)`);
      expect(env.disposed).to.equal(true);
      expect(env.call('ok', {})).to.deep.include({ runtimeError: 'ENV_DISPOSED' });
    });
  }

  it('interrupts an endless loop in the constructor', async () => {
    const err = await rejection(host.createEnvironment({ ...CODE, source: 'class Hostile { constructor() { for (;;) {} } }' }, {}, LIMITS));
    expect(err).to.have.property('code', 'DEADLINE_EXCEEDED');
    expect((err as Error).message).to.include(`deadline of ${LIMITS.createDeadlineMs} ms (ENVFLEET_SANDBOX_CREATE_DEADLINE_MS)`);
  });

  it('stops a memory bomb with MEMORY_EXCEEDED', () => {
    expect(env.call('bomb', {})).to.deep.include({ runtimeError: 'MEMORY_EXCEEDED' });
    expect(env.disposed).to.equal(true);
  });

  it('stops deep recursion with STACK_OVERFLOW, and allows shallow recursion', () => {
    expect(env.call('recurse', { n: 100 }).result).to.deep.equal({ success: true, data: 100 });
    const deep = env.call('recurse', { n: 10_000_000 });
    expect(deep).to.deep.include({ runtimeError: 'STACK_OVERFLOW' });
    // what happened, how deep the runtime goes, and what to write instead (it said "InternalError: stack overflow")
    expect((deep.result as { error: string }).error).to.equal(
      "the call recursed too deeply (stack overflow): the JavaScript runtime's stack (256 KiB) holds about 1,000–2,000 nested calls; write a deep recursion as a loop over an array used as a stack, or recurse over less at a time",
    );
  });

  it('takes an error the code threw itself for its own, whatever its message says of the stack or memory', async () => {
    // Careless code, not a limit: the session goes on. Only the engine's InternalError is a limit.
    expect(env.call('ownOverflow', {})).to.deep.include({ runtimeError: 'TOOL_THREW', result: { success: false, error: 'Maximum call stack size exceeded' } });
    expect(env.call('ownMemory', {})).to.deep.include({ runtimeError: 'TOOL_THREW' });
    expect(env.call('caughtOverflow', {}).result).to.deep.equal({ success: false, error: 'InternalError: stack overflow' });
    expect(env.disposed).to.equal(false);
    expect(env.call('ok', {}).result).to.deep.equal({ success: true, data: 'fine' });
    for (const [thrown, code] of [
      ["throw new Error('Device out of memory');", 'SOURCE_LOAD_FAILED'],
      ["throw new RangeError('Maximum call stack size exceeded');", 'SOURCE_LOAD_FAILED'],
      ["const deep = k => 1 + deep(k); deep(0);", 'STACK_OVERFLOW'],
    ] as const) {
      const err = await rejection(host.createEnvironment({ ...CODE, source: `${thrown}\n${HOSTILE}` }, {}, LIMITS));
      expect(err, thrown).to.have.property('code', code);
    }
    const ctor = await rejection(host.createEnvironment({ ...CODE, source: "class Hostile { constructor() { throw new RangeError('Maximum call stack size exceeded'); } }" }, {}, LIMITS));
    expect(ctor).to.have.property('code', 'CONSTRUCTOR_FAILED');
  });

  it('says what a thrown object holds (its JSON, cut at 2,000 whole characters) and names an Error without a message, not "[object Object]" or ""', () => {
    const error = (tool: string) => {
      const outcome = env.call(tool, {});
      expect(outcome.runtimeError, tool).to.equal('TOOL_THREW');
      return (outcome.result as { error: string }).error;
    };
    expect(error('throwsObject')).to.equal('{"code":"OUT_OF_STOCK","detail":"plus de pommes 🍎"}');
    expect(error('throwsEmpty')).to.equal('TypeError');
    const long = error('throwsLongObject');
    expect(long.startsWith('{"list":"😀😀')).to.equal(true);
    expect(long.endsWith('…')).to.equal(true);
    // Cut between whole characters: no half of an emoji left at the end.
    expect(/[\uD800-\uDBFF]$/.test(long.slice(0, -1))).to.equal(false);
    expect(long.length).to.equal(2000); // 1,999 characters and the ellipsis: the 2,000th was the first half of an emoji
    expect(error('throwsString')).to.equal('plain string');
  });

  it('refuses a result over the cap', () => {
    const outcome = env.call('huge', {});
    expect(outcome.runtimeError).to.equal('RESULT_TOO_LARGE');
    expect(outcome.result).to.deep.include({ success: false });
  });

  it('refuses cyclic, BigInt and undefined results', () => {
    expect(env.call('cyclic', {}).runtimeError).to.equal('NON_JSON_RESULT');
    expect(env.call('bigint', {})).to.deep.include({ runtimeError: 'NON_JSON_RESULT', result: { success: false, error: 'the result holds a BigInt (JSON cannot write it; keep it as a number, or as a string of digits past 2^53) at /data; keep it to objects, arrays, strings, finite numbers, booleans and null' } });
    expect(env.call('nothing', {}).runtimeError).to.equal('NON_JSON_RESULT');
    expect(env.call('ok', {}).runtimeError).to.equal(undefined);
  });

  it('reports a throw as an error result with its message, and the environment lives on', () => {
    expect(env.call('throws', {})).to.deep.include({ runtimeError: 'TOOL_THREW', result: { success: false, error: 'the fridge is empty' } });
    expect(env.call('throwsString', {}).result).to.deep.equal({ success: false, error: 'plain string' });
    expect(env.call('ok', {}).result).to.deep.equal({ success: true, data: 'fine' });
  });

  it('reports unknown tools, private helpers and tools without a method', () => {
    expect(env.call('launch', {}).runtimeError).to.equal('UNKNOWN_TOOL');
    expect(String((env.call('launch', {}).result as { error: string }).error)).to.match(/the tools are: reach/);
    expect(env.call('missingMethod', {}).runtimeError).to.equal('UNKNOWN_TOOL');
    expect(env.call('constructor', {}).runtimeError).to.equal('UNKNOWN_TOOL');
  });

  it('refuses arguments that fail the schema and says which argument', () => {
    const outcome = env.call('grow', { n: 'many' });
    expect(outcome.runtimeError).to.equal('INVALID_ARGUMENTS');
    expect((outcome.result as { error: string }).error).to.match(/at n: must be integer/);
    expect((env.call('grow', { n: 1, extra: true }).result as { error: string }).error).to.match(/must NOT have additional properties \("extra"\)/);
    expect(env.call('grow', []).runtimeError).to.equal('INVALID_ARGUMENTS');
  });

  it('refuses a state over the state cap at snapshot', async () => {
    const small = await host.createEnvironment(CODE, {}, { ...LIMITS, maxStateBytes: 10_000 });
    try {
      small.call('grow', { n: 12 });
      expect(() => small.snapshot()).to.throw().with.property('code', 'STATE_TOO_LARGE');
      // It names the setting, and what to do; up to twice the cap, with the state's size.
      expect(() => small.snapshot()).to.throw(/^the state is 12\d{3} bytes; the cap is 10000 \(ENVFLEET_SANDBOX_MAX_STATE_KB\): keep/);
      small.call('grow', { n: 50 });
      expect(() => small.snapshot()).to.throw(/^the state is more than 20000 bytes; the cap is 10000 \(ENVFLEET_SANDBOX_MAX_STATE_KB\): keep in the state only what later calls need \(an environment that keeps everything each call gives it, such as a copy of every result or a log of every request, grows past any cap\), or raise ENVFLEET_SANDBOX_MAX_STATE_KB \(a run uses the value it was submitted with\)$/);
    } finally {
      small.dispose();
    }
  });

  it('reads a state exactly as the guest wrote it, multi-byte text included, and names one JSON cannot write', async () => {
    const source = `class S {
      constructor(s) { this.state = s; }
      loop() { this.state.self = this.state; return { success: true }; }
      big() { this.state.n = 10n; return { success: true }; }
      gone() { this.state.toJSON = () => undefined; return { success: true }; }
      note({ text }) { this.state.notes.push(text); return { success: true }; }
    }`;
    const tools = ['loop', 'big', 'gone', 'note'].map(name => ({ type: 'function' as const, function: { name, parameters: { type: 'object' } } }));
    const open = () => host.createEnvironment({ name: 's', className: 'S', source, tools }, { notes: ['Zoë'], '!': 1 }, LIMITS);
    const env = await open();
    env.call('note', { text: '客房 🏨 "quoted" \\ back' });
    expect(env.snapshotText()).to.equal(JSON.stringify({ notes: ['Zoë', '客房 🏨 "quoted" \\ back'], '!': 1 }));
    env.dispose();
    for (const [tool, message] of [['loop', /circular/i], ['big', /BigInt/i], ['gone', /not JSON/]] as const) {
      const broken = await open();
      broken.call(tool, {});
      expect(() => broken.snapshotText(), tool).to.throw().with.property('code', 'STATE_INVALID');
      expect(() => broken.snapshotText(), tool).to.throw(message);
      broken.dispose();
    }
  });
});

describe('sandbox loading errors', () => {
  const host = new QuickJSHost(64);
  const base = { name: 'x', className: 'X', tools: [] };
  const code = async (source: string, state: unknown = {}) => (await rejection(host.createEnvironment({ ...base, source }, state, LIMITS))) as { code: string; message: string };

  it('names a syntax error', async () => {
    const err = await code('class X { constructor( { }');
    expect(err.code).to.equal('SOURCE_LOAD_FAILED');
    expect(err.message).to.match(/SyntaxError/);
  });
  it('names a missing class', async () => {
    expect((await code('class Y { constructor(s) { this.state = s; } }')).code).to.equal('CLASS_MISSING');
  });
  it('names a tool whose parameters schema does not compile (a pattern RE2 refuses), with the tool', async () => {
    const tools = [{ type: 'function' as const, function: { name: 'find_guest', description: 'x', parameters: { type: 'object', properties: { name: { type: 'string', pattern: '^(?=é)日本' } } } } }];
    const err = (await rejection(host.createEnvironment({ ...base, tools, source: 'class X { constructor(s) { this.state = s; } find_guest() { return {}; } }' }, {}, LIMITS))) as { code: string; message: string };
    expect(err.code).to.equal('TOOL_SCHEMA_INVALID');
    expect(err.message).to.match(/^tool find_guest: .*linear-time/);
  });
  it('names a constructor that throws', async () => {
    const err = await code('class X { constructor(s) { throw new Error("no rooms"); } }');
    expect(err).to.deep.include({ code: 'CONSTRUCTOR_FAILED' });
    expect(err.message).to.match(/no rooms/);
  });
  it('requires this.state', async () => {
    expect((await code('class X { constructor(s) {} }')).code).to.equal('STATE_INVALID');
  });
  it('counts the state cap in UTF-8 bytes, as the Python runtime does: 911 characters of CJK text are 2,711 bytes', async () => {
    const source = 'class X { constructor(s) { this.state = s; } add({ t }) { this.state.more = t; return { success: true }; } }';
    const tools = [{ type: 'function' as const, function: { name: 'add', parameters: { type: 'object' } } }];
    const big = { t: '書'.repeat(900) };
    const err = await rejection(host.createEnvironment({ ...base, source, tools }, big, { ...LIMITS, maxStateBytes: 1000 }));
    expect(err).to.have.property('code', 'STATE_TOO_LARGE');
    expect(String((err as Error).message)).to.include(`is ${Buffer.byteLength(JSON.stringify(big))} bytes; the cap is 1000 (ENVFLEET_SANDBOX_MAX_STATE_KB): give the scenario a smaller initial state, or raise ENVFLEET_SANDBOX_MAX_STATE_KB (a run uses the value it was submitted with)`);
    const env = await host.createEnvironment({ ...base, source, tools }, { t: 'é' }, { ...LIMITS, maxStateBytes: 1000 });
    try {
      expect(env.call('add', { t: '😀'.repeat(250) }).runtimeError).to.equal(undefined); // the state: 519 UTF-16 units, 1,020 bytes
      expect(() => env.snapshot()).to.throw().with.property('code', 'STATE_TOO_LARGE');
    } finally {
      env.dispose();
    }
  });
  it('refuses an initial state over the cap', async () => {
    const err = await rejection(host.createEnvironment({ ...base, source: 'class X { constructor(s) { this.state = s; } }' }, { big: 'x'.repeat(5000) }, { ...LIMITS, maxStateBytes: 1000 }));
    expect(err).to.have.property('code', 'STATE_TOO_LARGE');
  });
});
