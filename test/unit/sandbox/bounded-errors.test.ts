import { expect } from 'chai';
import { createLanguageRouter, MAX_ERROR_CHARS } from '../../../src/sandbox/language-router.js';
import { SandboxError } from '../../../src/sandbox/errors.js';
import { DEFAULT_SANDBOX_LIMITS } from '../../../src/sandbox/limits.js';
import { createLocalSandboxRunner, type SandboxRunner } from '../../../src/sandbox/runner.js';
import { rejection } from '../../helpers/assert.js';

const LIMITS = { ...DEFAULT_SANDBOX_LIMITS, checkDeadlineMs: 2_000 };
/** A state with text of every UTF-8 length, as careless code pastes into its messages. */
const STATE = { guests: Array.from({ length: 400 }, (_, i) => ({ id: `G${i}`, name: `Zoë 李 ${i} 😀`, note: 'chambre calme — 安静' })) };

/** A Python runtime is not needed to hold the router to its bound: checks of both languages come back through it alike. */
const noPython = { probe: () => Promise.reject(new Error('no python')), checks: () => Promise.reject(new Error('no python')), openSession: () => Promise.reject(new Error('no python')), close: () => Promise.resolve() } as unknown as SandboxRunner;

describe('error messages of careless generated code are bounded (checks, and an environment that does not start)', function () {
  this.timeout(20_000);
  const router = createLanguageRouter({ js: createLocalSandboxRunner(), python: noPython });
  after(() => router.close());

  const bounded = (error: string | undefined) => {
    expect(error).to.be.a('string');
    expect(error!.length).to.be.at.most(MAX_ERROR_CHARS + 40);
    expect(error).to.match(/… \(\d+ characters\)$/);
    // Never half a surrogate pair before the cut mark.
    expect(error).to.not.match(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/);
  };

  it('cuts a check that throws with the whole state in its message, in checks() and in a session\'s finish; short messages stay whole', async () => {
    const checks = [
      { item: 'careless', check: 'function check(f) { throw new Error("état inattendu: " + JSON.stringify(f)); }' },
      { item: 'plain', check: 'function check(f) { return f.missing.deep; }' },
      { item: 'passes', check: 'function check(f) { return f.guests.length === 400; }' },
    ];
    const result = await router.checks({ checks, finalState: STATE, initialState: STATE, limits: LIMITS });
    expect(JSON.stringify(STATE).length).to.be.greaterThan(10 * MAX_ERROR_CHARS);
    bounded(result.results[0]!.error);
    expect(result.results[0]!.error).to.include('état inattendu: {"guests":[{"id":"G0","name":"Zoë 李 0 😀"');
    // the length said is in characters as Python counts them: each of the 400 emoji is one (it said two)
    const whole = `état inattendu: ${JSON.stringify(STATE)}`;
    expect(result.results[0]!.error!.endsWith(`… (${[...whole].length} characters)`), result.results[0]!.error!.slice(-40)).to.equal(true);
    expect(result.results[1]!.error).to.not.include('characters)');
    expect(result.results.map(r => r.passed)).to.deep.equal([false, false, true]);

    const session = await router.openSession({ name: 'careless', className: 'Env', source: 'class Env { constructor(s) { this.state = s; } ping() { return { ok: true }; } }', tools: [] }, STATE, LIMITS);
    const end = await session.finish(checks);
    bounded(end.checks!.results[0]!.error);
    expect(end.checks!.results.map(r => r.passed)).to.deep.equal([false, false, true]);
  });

  it('cuts the message of a constructor that throws with its whole input', async () => {
    const err = await rejection(router.openSession({ name: 'careless', className: 'Env', source: 'class Env { constructor(s) { throw new Error("bad state — " + JSON.stringify(s)); } }', tools: [] }, STATE, LIMITS));
    expect(err).to.be.instanceOf(SandboxError);
    bounded((err as Error).message);
    // A probe's too (envfleet sandbox run printed the whole message, 5 MB on one line, in a stranger's probe).
    const probe = await router.probe({ code: { name: 'careless', className: 'Env', source: 'class Env { constructor(s) { throw new Error("bad state — " + JSON.stringify(s)); } }', tools: [] }, initialState: STATE, calls: [], limits: LIMITS });
    expect(probe.createError?.code).to.equal('CONSTRUCTOR_FAILED');
    bounded(probe.createError?.message);
  });
});
