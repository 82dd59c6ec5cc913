import { expect } from 'chai';
import {
  APIConnectionError,
  APIConnectionTimeoutError,
  AuthenticationError,
  BadRequestError,
  InternalServerError,
  RateLimitError,
} from 'openai';
import { ZodError } from 'zod';
import {
  BudgetExceededError,
  ConfigError,
  InvalidJobDataError,
  ModelOutputError,
  ModelRequestError,
  ModelTransientError,
  RateLimitedError,
  castToError,
  classifyError,
} from '../../src/errors.js';

const headers = new Headers();

describe('classifyError', () => {
  it('gives up on what no retry can fix', () => {
    for (const err of [
      new InvalidJobDataError('q', 'bad'),
      new ConfigError('bad'),
      new ModelOutputError('bad', {}),
      new ModelRequestError('MODEL_AUTH', '401'),
      new ZodError([]),
      new BadRequestError(400, undefined, 'bad', headers),
      new AuthenticationError(401, undefined, 'no', headers),
    ]) {
      expect(classifyError(err).action, err.constructor.name).to.equal('give-up');
    }
  });

  it('retries transient failures', () => {
    for (const err of [
      new ModelTransientError('MODEL_SERVER_ERROR', '500'),
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

  it('pauses the run when a budget is reached', () => {
    expect(classifyError(new BudgetExceededError('over', {}))).to.deep.equal({ action: 'pause-run', code: 'BUDGET_EXCEEDED' });
  });

  it('keeps stable codes', () => {
    expect(classifyError(new ModelOutputError('x', {})).code).to.equal('MODEL_OUTPUT_INVALID');
    expect(classifyError(new ModelTransientError('MODEL_TIMEOUT', 'x')).code).to.equal('MODEL_TIMEOUT');
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
