import { expect } from 'chai';
import type { EnvironmentCode } from '../../../src/sandbox/bundle.js';
import { DEFAULT_SANDBOX_LIMITS, type SandboxLimits } from '../../../src/sandbox/limits.js';
import { RESULT_CAP_ADVICE } from '../../../src/sandbox/python/python-harness.mjs';
import { QuickJSHost, type SandboxEnvironment } from '../../../src/sandbox/quickjs-host.js';
import { createLocalSandboxRunner } from '../../../src/sandbox/runner.js';

/**
 * The per-call path (issue 14 item 4): the FFI-level call, tool names kept as guest strings, the
 * harness's unwrapped reply and the cap measured on the length the wrapped reply had, the result as
 * text for sessions. What a call returns must not have changed.
 */
const CAP = 1000;
const LIMITS: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, maxResultBytes: CAP };

const SOURCE = `
class Base { inherited() { return { success: true, data: 'from Base' }; } }
class Shifty extends Base {
  constructor(s) { super(); this.state = s; }
  echo(args) { return { success: true, data: args }; }
  pad({ n, ch }) { return { d: ch.repeat(n) }; }
  fail({ message }) { throw new Error(message); }
  swap() {
    Shifty.prototype.echo = function () { return { success: true, data: 'swapped' }; };
    return { success: true };
  }
  unplug() { delete Shifty.prototype.echo; return { success: true }; }
  shadow() { this.echo = () => ({ success: true, data: 'own property' }); return { success: true }; }
  rebase() { Object.setPrototypeOf(Shifty.prototype, { inherited() { return { success: true, data: 'rebased' }; } }); return { success: true }; }
  plantOnObject() { Object.prototype.planted = () => ({ success: true, data: 'planted' }); return { success: true }; }
  breakGlobals() {
    globalThis.Object = { prototype: null, getPrototypeOf: () => null, hasOwn: () => false };
    Function.prototype.call = function () { return false; };
    Function.prototype.apply = function () { return false; };
    String.prototype.charAt = () => '_';
    return { success: true };
  }
  本を読む({ 題 }) { return { success: true, data: '読んだ: ' + 題 }; }
  _secret() { return { success: true, data: 'secret' }; }
}`;

const tool = (name: string, parameters: Record<string, unknown> = { type: 'object' }) => ({ type: 'function' as const, function: { name, parameters } });
const CODE: EnvironmentCode = {
  name: 'shifty',
  className: 'Shifty',
  source: SOURCE,
  tools: [
    ...['echo', 'swap', 'unplug', 'shadow', 'rebase', 'inherited', 'plantOnObject', 'planted', 'breakGlobals', '_secret', 'constructor', 'toString'].map(n => tool(n)),
    tool('pad', { type: 'object', properties: { n: { type: 'integer', minimum: 0 }, ch: { type: 'string' } }, required: ['n', 'ch'] }),
    tool('fail', { type: 'object', properties: { message: { type: 'string' } }, required: ['message'] }),
    tool('本を読む', { type: 'object', properties: { 題: { type: 'string' } }, required: ['題'] }),
  ],
};

/** The length of a result's JSON text (ASCII here: its UTF-8 bytes). Until 2026-12-06 the cap was on {"ok":<result JSON>}, 7 bytes more. */
const jsonLength = (result: unknown) => JSON.stringify(result).length;

describe('the sandbox call path', function () {
  this.timeout(30_000);
  const host = new QuickJSHost(DEFAULT_SANDBOX_LIMITS.heapMb);
  let env: SandboxEnvironment;
  beforeEach(async () => {
    env = await host.createEnvironment(CODE, { n: 1 }, LIMITS);
  });
  afterEach(() => env.dispose());

  it('finds a method replaced on the prototype between calls, and none once it is deleted', () => {
    expect(env.call('echo', { a: 1 }).result).to.deep.equal({ success: true, data: { a: 1 } });
    expect(env.call('swap', {}).runtimeError).to.equal(undefined);
    expect(env.call('echo', { a: 1 }).result).to.deep.equal({ success: true, data: 'swapped' });
    env.call('unplug', {});
    expect(env.call('echo', {})).to.deep.include({ result: { success: false, error: 'the class has no method echo' }, runtimeError: 'UNKNOWN_TOOL' });
  });

  it("looks methods up on the instance's prototype chain only: not its own properties, not Object.prototype, wherever the chain goes", () => {
    env.call('shadow', {});
    expect(env.call('echo', { a: 2 }).result).to.deep.equal({ success: true, data: { a: 2 } });
    expect(env.call('inherited', {}).result).to.deep.equal({ success: true, data: 'from Base' });
    env.call('rebase', {});
    expect(env.call('inherited', {}).result).to.deep.equal({ success: true, data: 'rebased' });
    env.call('plantOnObject', {});
    expect(env.call('planted', {}).result).to.deep.equal({ success: false, error: 'the class has no method planted' });
    expect(env.call('toString', {}).result).to.deep.equal({ success: false, error: 'the class has no method toString' });
  });

  it('keeps refusing constructor, names starting with _ and Object.prototype methods after the guest replaced the globals the lookup could use', () => {
    expect(env.call('breakGlobals', {}).runtimeError).to.equal(undefined);
    expect(env.call('echo', { a: 3 }).result).to.deep.equal({ success: true, data: { a: 3 } });
    expect(env.call('_secret', {})).to.deep.include({ runtimeError: 'UNKNOWN_TOOL', result: { success: false, error: '_secret is not a tool' } });
    expect(env.call('constructor', {})).to.deep.include({ runtimeError: 'UNKNOWN_TOOL', result: { success: false, error: 'constructor is not a tool' } });
    expect(env.call('toString', {})).to.deep.include({ runtimeError: 'UNKNOWN_TOOL', result: { success: false, error: 'the class has no method toString' } });
  });

  it('caps the result on its own JSON text, as the Python runtime does: a result at the cap passes, one character more does not', () => {
    const at = env.call('pad', { n: CAP - jsonLength({ d: '' }), ch: 'x' });
    expect(at.runtimeError).to.equal(undefined);
    expect(jsonLength(at.result)).to.equal(CAP);
    const over = env.call('pad', { n: CAP - jsonLength({ d: '' }) + 1, ch: 'x' });
    expect(over).to.deep.include({ runtimeError: 'RESULT_TOO_LARGE', result: { success: false, error: `the result of pad is ${CAP + 1} bytes; the cap is ${CAP}${RESULT_CAP_ADVICE}` } });
    expect(env.disposed).to.equal(false);
  });

  it('counts the cap in UTF-8 bytes, as the Python runtime does, for multi-byte results too (an emoji is 4, a CJK character 3, an accent 2)', () => {
    const room = CAP - jsonLength({ d: '' });
    const emoji = Math.floor(room / 4);
    const fits = env.call('pad', { n: emoji, ch: '😀' });
    expect(fits.runtimeError).to.equal(undefined);
    expect(fits.result).to.deep.equal({ d: '😀'.repeat(emoji) });
    expect(env.call('pad', { n: emoji + 1, ch: '😀' }).runtimeError).to.equal('RESULT_TOO_LARGE');
    const cjk = Math.floor(room / 3);
    expect(env.call('pad', { n: cjk, ch: '書' }).result).to.deep.equal({ d: '書'.repeat(cjk) });
    const over = jsonLength({ d: '' }) + 3 * (cjk + 1);
    expect(env.call('pad', { n: cjk + 1, ch: '書' })).to.deep.include({ runtimeError: 'RESULT_TOO_LARGE', result: { success: false, error: `the result of pad is ${over} bytes; the cap is ${CAP}${RESULT_CAP_ADVICE}` } });
    const accents = Math.floor(room / 2);
    expect(env.call('pad', { n: accents, ch: 'é' }).runtimeError).to.equal(undefined);
    expect(env.call('pad', { n: accents + 1, ch: 'é' }).runtimeError).to.equal('RESULT_TOO_LARGE');
  });

  it('caps an error reply on its own length, as before', () => {
    const room = CAP - JSON.stringify({ err: 'TOOL_THREW', message: '' }).length;
    expect(env.call('fail', { message: 'e'.repeat(room) })).to.deep.include({ runtimeError: 'TOOL_THREW', result: { success: false, error: 'e'.repeat(room) } });
    // Said as the error it is, with its start (200 characters, never half of one), as the Python runtime says it: a
    // stranger's probe saw "the result of raise_huge is 5000033 bytes" and none of the message.
    expect(env.call('fail', { message: 'e'.repeat(room + 1) })).to.deep.include({ runtimeError: 'RESULT_TOO_LARGE', result: { success: false, error: `the error (TOOL_THREW) of fail is ${CAP + 1} bytes; the cap is ${CAP} (ENVFLEET_SANDBOX_MAX_RESULT_KB); it began: ${'e'.repeat(200)}` } });
    const wide = '⚠️ stock introuvable 在庫なし 📦 '.repeat(Math.ceil(room / 10));
    const said = (env.call('fail', { message: wide }).result as { error: string }).error;
    expect(said).to.match(/^the error \(TOOL_THREW\) of fail is \d+ bytes; the cap is \d+ \(ENVFLEET_SANDBOX_MAX_RESULT_KB\); it began: ⚠️ stock introuvable/);
    expect(said.endsWith(wide.slice(0, 200)) || said.endsWith(wide.slice(0, 199)), said).to.equal(true);
  });

  it('passes multi-byte arguments and results through unchanged, short and long, and tool names that are not ASCII', () => {
    for (const text of ['é', '書名', '😀', 'a😀b', '\u{1F469}\u200D\u{1F52C}', 'ñ'.repeat(40), '漢字かな交じり文'.repeat(18), '😀'.repeat(100), 'line\nbreak "quoted" \\ \u2028 \u0000 end', '']) {
      expect(env.call('echo', { text, [text]: 1 }).result, JSON.stringify(text)).to.deep.equal({ success: true, data: { text, [text]: 1 } });
    }
    expect(env.call('本を読む', { 題: '吾輩は猫である' }).result).to.deep.equal({ success: true, data: '読んだ: 吾輩は猫である' });
    expect(env.call('本を読む', { 題: '😀' }).result).to.deep.equal({ success: true, data: '読んだ: 😀' });
  });

  it('gives a lone surrogate in the arguments back as JSON.stringify escapes it', () => {
    expect(env.call('echo', { text: 'a\uD800b' }).result).to.deep.equal({ success: true, data: { text: 'a\uD800b' } });
  });

  it('gives the same outcome as text (callText) as parsed (call), for results and errors', () => {
    const pairs: [string, unknown][] = [['echo', { a: '😀' }], ['fail', { message: 'no' }], ['pad', { n: CAP, ch: 'x' }], ['nope', {}], ['pad', { n: 'x' }], ['_secret', {}]];
    for (const [name, args] of pairs) {
      const parsed = env.call(name, args);
      const text = env.callText(name, args);
      expect(JSON.parse(text.resultJson), name).to.deep.equal(parsed.result);
      expect(text.runtimeError, name).to.equal(parsed.runtimeError);
      expect(Object.keys(text), name).to.deep.equal(Object.keys(parsed).map(k => (k === 'result' ? 'resultJson' : k)));
    }
  });
});

describe('the sandbox call path and module reuse', function () {
  this.timeout(60_000);

  // Sessions on the thread's session layout start from memory copies, which would hide a leak; an
  // environment with another stack size than the layout's is made the plain way, in a reused module.
  for (const [path, stackBytes] of [['a module on the session layout', LIMITS.stackBytes], ['a module reused the plain way', LIMITS.stackBytes + 64 * 1024]] as const) {
  it(`leaves nothing behind in ${path}: the calls' scratch block and tool names go with the environment`, async () => {
    const host = new QuickJSHost(DEFAULT_SANDBOX_LIMITS.heapMb);
    (await host.createEnvironment(CODE, { n: 0 }, LIMITS)).dispose();
    const limits = { ...LIMITS, stackBytes, maxResultBytes: 1 << 20 };
    const tenant = async () => {
      const env = await host.createEnvironment(CODE, { n: 1 }, limits);
      for (const size of [10, 1000, 60_000]) expect(env.call('echo', { text: 'x'.repeat(size) }).runtimeError).to.equal(undefined);
      env.dispose();
    };
    await tenant();
    const heap = host.heapBytes();
    for (let i = 0; i < 30; i++) await tenant();
    expect(host.heapBytes()).to.equal(heap);
  });
  }
});

describe('the sandbox call path through a session', function () {
  this.timeout(30_000);

  it("returns the outcome env.call returns, the result parsed on the host's side", async () => {
    const runner = createLocalSandboxRunner();
    const host = new QuickJSHost(DEFAULT_SANDBOX_LIMITS.heapMb);
    const session = await runner.openSession(CODE, { n: 1 }, LIMITS);
    const direct = await host.createEnvironment(CODE, { n: 1 }, LIMITS);
    try {
      for (const [name, args] of [['echo', { a: '書😀' }], ['fail', { message: 'no' }], ['pad', { n: CAP, ch: 'x' }], ['nope', {}], ['swap', {}], ['echo', {}]] as const) {
        const viaSession = await session.call(name, args);
        const outcome = direct.call(name, args);
        expect(Object.keys(viaSession), name).to.deep.equal(Object.keys(outcome));
        expect({ ...viaSession, us: 0 }, name).to.deep.equal({ ...outcome, us: 0 });
      }
    } finally {
      direct.dispose();
      await session.close();
      await runner.close();
    }
  });
});
