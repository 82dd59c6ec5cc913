import { expect } from 'chai';
import {
  APIConnectionError,
  APIError,
  APIConnectionTimeoutError,
  AuthenticationError,
  BadRequestError,
  InternalServerError,
  RateLimitError,
} from 'openai';
import { ZodError } from 'zod';
import {
  BudgetExceededError,
  EndpointUnreachableError,
  ConfigError,
  InvalidJobDataError,
  ERROR_CODES,
  ModelError,
  ModelOutputError,
  RateLimitedError,
  RunCancelledError,
  SANDBOX_FULL_MAX_DELAY_MS,
  castToError,
  classifyError,
  modelCodeOfStatus,
  usesSandboxWaits,
} from '../../src/errors.js';
import { InterpreterLostError, SandboxError, SandboxFullError, SANDBOX_ERROR_CODES } from '../../src/sandbox/errors.js';

const headers = new Headers();

describe('classifyError', () => {
  it('gives up on what no retry can fix', () => {
    for (const err of [
      new InvalidJobDataError('q', 'bad'),
      new ConfigError('bad'),
      new ModelOutputError('bad', {}),
      new ModelError('MODEL_AUTH', '401'),
      new RunCancelledError('r', null),
      new ZodError([]),
      new BadRequestError(400, undefined, 'bad', headers),
      new AuthenticationError(401, undefined, 'no', headers),
    ]) {
      expect(classifyError(err).action, err.constructor.name).to.equal('give-up');
    }
  });

  it('retries transient failures', () => {
    for (const err of [
      new ModelError('MODEL_SERVER_ERROR', '500'),
      new SandboxError('SANDBOX_UNAVAILABLE', 'thread ended'),
      new InternalServerError(500, undefined, 'boom', headers),
      new APIConnectionError({ message: 'refused' }),
      new APIConnectionTimeoutError(),
      new Error('something unexpected'),
    ]) {
      expect(classifyError(err).action, err.constructor.name).to.equal('retry');
    }
  });

  it('rate-limits on 429s, with the wait carried by our error', () => {
    expect(classifyError(new RateLimitedError('429', 1234))).to.deep.equal({ action: 'rate-limit', code: 'MODEL_RATE_LIMITED', delayMs: 1234 });
    expect(classifyError(new RateLimitError(429, undefined, 'slow down', headers)).action).to.equal('rate-limit');
  });

  it('waits for an endpoint that cannot be reached as for a 429 (the queue waits, no attempt used), with the wait carried by our error', () => {
    expect(classifyError(new EndpointUnreachableError('refused', 4321))).to.deep.equal({ action: 'rate-limit', code: 'MODEL_UNREACHABLE', delayMs: 4321 });
  });

  it('pauses the run when a budget is reached', () => {
    expect(classifyError(new BudgetExceededError('over', { stage: null }))).to.deep.equal({ action: 'pause-run', code: 'BUDGET_EXCEEDED' });
  });

  it("names the settings of the runtime whose memory was full: a JavaScript sandbox thread's, or a Python interpreter's", () => {
    expect(SandboxFullError.at('the environment did not start', 'no room').message).to.match(/The sandbox thread's memory is shared .* raise ENVFLEET_SANDBOX_HEAP_MB or ENVFLEET_POOL_THREADS,/);
    const py = SandboxFullError.at('work was stopped', "the Python interpreter's memory (ENVFLEET_PYTHON_HEAP_MB=192, shared by the environments on it) had no room for the call");
    expect(py.message).to.match(/A Python interpreter's memory is shared .* raise ENVFLEET_PYTHON_HEAP_MB or ENVFLEET_PYTHON_INTERPRETERS,/);
    expect(py.message).to.not.include('ENVFLEET_SANDBOX_HEAP_MB');
  });

  it('puts a job that met a sandbox thread full of other work back later, no attempt used, the waits growing, until its bound', () => {
    const full = SandboxFullError.at('the environment did not start', 'no room');
    const job = (sandboxFullWaits: number) => ({ sandboxFullWaits, maxSandboxFullWaits: 12, backoffMs: 2_000 });
    expect(classifyError(full, job(0))).to.deep.equal({ action: 'wait', code: 'SANDBOX_MEMORY_FULL', delayMs: 2_000 });
    expect(classifyError(full, job(1))).to.deep.equal({ action: 'wait', code: 'SANDBOX_MEMORY_FULL', delayMs: 4_000 });
    expect(classifyError(full, job(3))).to.deep.equal({ action: 'wait', code: 'SANDBOX_MEMORY_FULL', delayMs: 16_000 });
    expect(classifyError(full, job(4)).delayMs).to.equal(SANDBOX_FULL_MAX_DELAY_MS);
    expect(classifyError(full, job(11)).delayMs).to.equal(SANDBOX_FULL_MAX_DELAY_MS);
    // Past ENVFLEET_SANDBOX_FULL_WAITS, the thread that stayed full costs attempts, as before the waits.
    expect(classifyError(full, job(12))).to.deep.equal({ action: 'retry', code: 'SANDBOX_MEMORY_FULL', waitsSpent: 12 });
    expect(classifyError(full, { sandboxFullWaits: 0, maxSandboxFullWaits: 0, backoffMs: 2_000 })).to.deep.equal({ action: 'retry', code: 'SANDBOX_MEMORY_FULL', waitsSpent: 0 });
    // The sandbox's own code, thrown as it is, waits the same way; an environment past its own allowance does not.
    expect(classifyError(new SandboxError('SANDBOX_MEMORY_FULL', 'x'), job(0)).action).to.equal('wait');
    expect(classifyError(new SandboxError('MEMORY_EXCEEDED', 'x'), job(0))).to.deep.equal({ action: 'retry', code: 'MEMORY_EXCEEDED' });
  });

  it('puts a job whose environment was lost with a Python interpreter another environment took down back later the same way, no attempt used; an environment thrown away for its own limit uses one', () => {
    const job = (sandboxFullWaits: number) => ({ sandboxFullWaits, maxSandboxFullWaits: 12, backoffMs: 2_000 });
    const lost = InterpreterLostError.at('the final state could not be read', 'the Python interpreter thread ended');
    expect(usesSandboxWaits(lost)).to.equal(true);
    expect(lost.message).to.include('without using an attempt while it has waits left (ENVFLEET_SANDBOX_FULL_WAITS), then with its attempts');
    expect(classifyError(lost, job(0))).to.deep.equal({ action: 'wait', code: 'ENV_DISPOSED', delayMs: 2_000 });
    expect(classifyError(lost, job(12))).to.deep.equal({ action: 'retry', code: 'ENV_DISPOSED', waitsSpent: 12 });
    // As the sandbox gives it (a call's outcome marked lostWith), and an environment that met its own limit.
    expect(usesSandboxWaits(new SandboxError('ENV_DISPOSED', 'gone', 'interpreter'))).to.equal(true);
    const own = new SandboxError('ENV_DISPOSED', 'the environment was thrown away after DEADLINE_EXCEEDED');
    expect(usesSandboxWaits(own)).to.equal(false);
    expect(classifyError(own, job(0))).to.deep.equal({ action: 'retry', code: 'ENV_DISPOSED' });
  });

  it('keeps stable codes', () => {
    expect(classifyError(new ModelOutputError('x', {})).code).to.equal('MODEL_OUTPUT_INVALID');
    expect(classifyError(new ModelError('MODEL_TIMEOUT', 'x')).code).to.equal('MODEL_TIMEOUT');
    expect(classifyError(new SandboxError('DEADLINE_EXCEEDED', 'x')).code).to.equal('DEADLINE_EXCEEDED');
  });
});

describe('castToError', () => {
  it('turns any thrown value into an Error', () => {
    expect(castToError('boom').message).to.equal('boom');
    expect(castToError({ a: 1 }).message).to.equal('{"a":1}');
    const e = new Error('x');
    expect(castToError(e)).to.equal(e);
  });
});

describe('the error codes', () => {
  it('decide every HTTP status of a model endpoint in one mapping, and classifyError agrees with it', () => {
    const cases: [number, string, string][] = [
      [400, 'MODEL_BAD_REQUEST', 'give-up'],
      [401, 'MODEL_AUTH', 'give-up'],
      [403, 'MODEL_AUTH', 'give-up'],
      [404, 'MODEL_NOT_FOUND', 'give-up'],
      [408, 'MODEL_SERVER_ERROR', 'retry'],
      [409, 'MODEL_SERVER_ERROR', 'retry'],
      [422, 'MODEL_BAD_REQUEST', 'give-up'],
      [429, 'MODEL_RATE_LIMITED', 'rate-limit'],
      [500, 'MODEL_SERVER_ERROR', 'retry'],
      [503, 'MODEL_SERVER_ERROR', 'retry'],
    ];
    for (const [status, code, action] of cases) {
      expect(modelCodeOfStatus(status), String(status)).to.equal(code);
      const err = APIError.generate(status, { error: { message: 'x' } }, 'x', new Headers());
      expect(classifyError(err), String(status)).to.deep.include({ code, action });
    }
  });

  it('hold every sandbox code, as environment failures', () => {
    for (const code of Object.keys(SANDBOX_ERROR_CODES)) {
      expect(ERROR_CODES, code).to.have.property(code);
      if (code !== 'CHECK_INVALID') expect(ERROR_CODES[code as keyof typeof ERROR_CODES].area, code).to.equal('environment');
    }
  });
});
