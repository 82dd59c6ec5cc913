import { expect } from 'chai';
import { InterpreterLostError, SandboxFullError } from '../../../src/sandbox/errors.js';
import { retryWhenFull } from '../../../src/sandbox/retry-when-full.js';
import type { ChecksResult, ProbeResult } from '../../../src/sandbox/tasks.js';
import { rejection } from '../../helpers/assert.js';

/**
 * The worker's runner for probes and checks (check.probe, check.config, scenario.check): what a job cannot measure
 * (a full sandbox thread, an interpreter another environment took down) is thrown for the job to come back, never
 * handed to the stage as the environment's or the check's failure.
 */
describe('retryWhenFull: probes and checks that could not run', () => {
  const runnerAnswering = (checks: ChecksResult, probe?: ProbeResult) =>
    retryWhenFull({ checks: () => Promise.resolve(checks), probe: () => Promise.resolve(probe!), openSession: () => Promise.reject(new Error('not used')), close: () => Promise.resolve() });
  const probe = (p: Partial<ProbeResult>): ProbeResult => ({ createError: null, createMs: 1, steps: [], finalState: {}, finalStateError: null, ...p });
  const input = {} as never;

  it('throws InterpreterLostError for a check marked lost with its interpreter (scenario.check repaired or dropped a good check for it)', async () => {
    const lost = runnerAnswering({ results: [{ item: 'ok', passed: true }, { item: 'vérifié ✅', passed: false, error: 'the interpreter holding this environment was recycled', errorCode: 'ENV_DISPOSED', lostWith: 'interpreter' }], reward: 0.5, solved: false });
    const err = await rejection(lost.checks(input));
    expect(err).to.be.instanceOf(InterpreterLostError);
    expect((err as Error).message).to.include('the check "vérifié ✅" could not run');
    // The check's own failure (unmarked) is the stage's to judge.
    const own: ChecksResult = { results: [{ item: 'boucle', passed: false, error: 'not run', errorCode: 'ENV_DISPOSED' }], reward: 0, solved: false };
    expect(await runnerAnswering(own).checks(input)).to.deep.equal(own);
    expect(await rejection(runnerAnswering({ results: [{ item: 'x', passed: false, error: 'no room', errorCode: 'SANDBOX_MEMORY_FULL' }], reward: 0, solved: false }).checks(input))).to.be.instanceOf(SandboxFullError);
  });

  it('throws InterpreterLostError for a probe whose start, call or final state was lost with its interpreter', async () => {
    const gone = { code: 'ENV_DISPOSED' as const, message: 'the interpreter holding this environment was recycled', lostWith: 'interpreter' as const };
    const cases: [ProbeResult, string][] = [
      [probe({ createError: gone, finalState: null }), 'the environment did not start for its probe'],
      [probe({ steps: [{ tool: 'réserver', arguments: {}, result: { success: false, error: 'gone' }, runtimeError: 'ENV_DISPOSED', lostWith: 'interpreter', us: 0 }] }), "the probe's call of réserver found its environment gone"],
      [probe({ finalState: null, finalStateError: gone }), "the probe's final state could not be read"],
    ];
    for (const [result, where] of cases) {
      const err = await rejection(runnerAnswering({ results: [], reward: 0, solved: false }, result).probe(input));
      expect(err, where).to.be.instanceOf(InterpreterLostError);
      expect((err as Error).message, where).to.include(where);
    }
    // Its own limit (unmarked) stays the probe's result.
    const own = probe({ steps: [{ tool: 'boucle', arguments: {}, result: { success: false, error: 'deadline' }, runtimeError: 'DEADLINE_EXCEEDED', us: 0 }] });
    expect(await runnerAnswering({ results: [], reward: 0, solved: false }, own).probe(input)).to.equal(own);
  });
});
