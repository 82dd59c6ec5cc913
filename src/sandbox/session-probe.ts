import { diffStates } from './diff.js';
import { SandboxError } from './errors.js';
import type { SandboxRunner } from './runner.js';
import type { ProbeInput, ProbeResult, ProbeStep, SandboxFailure } from './tasks.js';

const sandboxFailure = (err: unknown): SandboxFailure =>
  err instanceof SandboxError ? { code: err.code, message: err.message, ...(err.lostWith ? { lostWith: err.lostWith } : {}) } : { code: 'SANDBOX_UNAVAILABLE', message: String(err) };

/**
 * A probe made of a session's own calls, one message each: what a runner whose sessions are watched from outside (the
 * pool's watchdog, the Python child's deadlines) needs for a probe that keeps the steps before a call that had to be
 * stopped, that call's DEADLINE_EXCEEDED and the ENV_DISPOSED of the calls after it, as a rollout sees them. A session
 * that cannot be opened is the probe's `createError`, unless `rethrow(err)` says the runner itself is unusable.
 */
export async function probeThroughSession(
  openSession: SandboxRunner['openSession'],
  input: ProbeInput,
  rethrow: (err: unknown) => boolean = () => false,
): Promise<ProbeResult> {
  const started = performance.now();
  let session;
  try {
    session = await openSession(input.code, input.initialState, input.limits, input.initialStateJson);
  } catch (err) {
    if (rethrow(err)) throw err;
    return { createError: sandboxFailure(err), createMs: performance.now() - started, steps: [], finalState: null, finalStateError: null };
  }
  const createMs = performance.now() - started;
  const steps: ProbeStep[] = [];
  const snap = async () => session.snapshot().catch(() => null);
  try {
    let before: unknown = input.withStates ? await snap() : undefined;
    for (const call of input.calls) {
      const outcome = await session.call(call.tool, call.arguments, call.argumentsText);
      if (input.withStates) {
        const after = await snap();
        steps.push({ tool: call.tool, arguments: call.arguments, ...outcome, stateBefore: before, stateAfter: after, diff: diffStates(before, after) });
        before = after;
      } else {
        steps.push({ tool: call.tool, arguments: call.arguments, ...outcome });
      }
    }
    try {
      // A session that writes its state as text (Python's: 1.0 a float) keeps that text where parsing it would lose it.
      if (!session.snapshotJson) return { createError: null, createMs, steps, finalState: await session.snapshot(), finalStateError: null };
      const finalStateJson = await session.snapshotJson();
      const finalState = JSON.parse(finalStateJson) as unknown;
      return { createError: null, createMs, steps, finalState, ...(JSON.stringify(finalState) === finalStateJson ? {} : { finalStateJson }), finalStateError: null };
    } catch (err) {
      return { createError: null, createMs, steps, finalState: null, finalStateError: sandboxFailure(err) };
    }
  } finally {
    await session.close().catch(() => undefined);
  }
}
