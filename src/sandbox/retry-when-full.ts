import { InterpreterLostError, lostWithInterpreter, SandboxFullError } from './errors.js';
import type { SandboxRunner } from './runner.js';
import type { ChecksResult, ProbeResult, SessionEnd } from './tasks.js';

/**
 * The worker's runner: a probe or a checks run that met a sandbox thread full of other work's environments
 * (SANDBOX_MEMORY_FULL) throws SandboxFullError, so its job comes back later without using an attempt, instead of handing the stage a
 * result that blames the environment. Without it, under load from concurrent rollouts, check.config asked the model to
 * repair a state that was fine ("the environment does not instantiate on it: no room…"), check.probe failed the tool
 * whose call was stopped (SANDBOX_MEMORY_FULL is a fatal runtime error there) and could reject a good environment, and
 * scenario.check took a check that could not run for a failing one. Sessions are the episode's to handle (runEpisode).
 * So is one whose Python interpreter another environment took down (`lostWith`: InterpreterLostError, which comes back
 * as SandboxFullError does, its waits counted the same): scenario.check asked the model to repair a good check, or
 * dropped its scenario as CHECK_INVALID.
 */
export function retryWhenFull(runner: SandboxRunner): SandboxRunner {
  return {
    async probe(input) {
      return fullProbe(await runner.probe(input));
    },
    async checks(input) {
      return fullChecks(await runner.checks(input));
    },
    openSession: (...args) => runner.openSession(...args),
    close: () => runner.close(),
  };
}

function fullProbe(r: ProbeResult): ProbeResult {
  if (r.createError?.code === 'SANDBOX_MEMORY_FULL') throw SandboxFullError.at('the environment did not start for its probe', r.createError.message);
  const step = r.steps.find(s => s.runtimeError === 'SANDBOX_MEMORY_FULL');
  if (step) throw SandboxFullError.at(`the probe's call of ${step.tool} was stopped`, errorOf(step.result));
  if (r.finalStateError?.code === 'SANDBOX_MEMORY_FULL') throw SandboxFullError.at("the probe's final state could not be read", r.finalStateError.message);
  if (lostWithInterpreter(r.createError)) throw InterpreterLostError.at('the environment did not start for its probe', r.createError!.message);
  const lost = r.steps.find(s => lostWithInterpreter(s));
  if (lost) throw InterpreterLostError.at(`the probe's call of ${lost.tool} found its environment gone`, errorOf(lost.result));
  if (lostWithInterpreter(r.finalStateError)) throw InterpreterLostError.at("the probe's final state could not be read", r.finalStateError!.message);
  return r;
}

function fullChecks(r: ChecksResult): ChecksResult {
  const full = fullCheck(r.results);
  if (full) throw SandboxFullError.at(full.where, full.message);
  const lost = lostCheck(r.results);
  if (lost) throw InterpreterLostError.at(lost.where, lost.message);
  return r;
}

/** Where a full thread stopped a check of `results` (and the sandbox's message), or null. */
export function fullCheck(results: readonly { readonly item: string; readonly error?: string | undefined; readonly errorCode?: string | undefined }[]): { readonly where: string; readonly message: string } | null {
  const full = results.find(c => c.errorCode === 'SANDBOX_MEMORY_FULL');
  return full ? { where: `the check "${full.item}" could not run`, message: full.error ?? 'no room' } : null;
}

/** Where a check of `results` lost its Python interpreter to another environment (and the sandbox's message), or null. */
export function lostCheck(results: readonly { readonly item: string; readonly error?: string | undefined; readonly lostWith?: 'interpreter' | undefined }[]): { readonly where: string; readonly message: string } | null {
  const lost = results.find(c => lostWithInterpreter(c));
  return lost ? { where: `the check "${lost.item}" could not run`, message: lost.error ?? 'ENV_DISPOSED' } : null;
}

/** Where a session's end (its final state, or a check run in it) was lost with its Python interpreter, or null. */
export function lostAtEnd(end: SessionEnd): { readonly where: string; readonly message: string } | null {
  if (end.stateJson === null && lostWithInterpreter(end.stateError)) return { where: 'the final state could not be read', message: end.stateError!.message };
  return lostCheck(end.checks?.results ?? []);
}

/** Where a full thread stopped a session's end (its final state, or a check run in it), or null. */
export function fullAtEnd(end: SessionEnd): { readonly where: string; readonly message: string } | null {
  if (end.stateError?.code === 'SANDBOX_MEMORY_FULL') return { where: 'the final state could not be read', message: end.stateError.message };
  return fullCheck(end.checks?.results ?? []);
}

/** A tool result's error text (the sandbox's results are `{ success: false, error }`). */
export function errorOf(result: unknown): string {
  const error = (result as { error?: unknown } | null)?.error;
  return typeof error === 'string' ? error : 'no room';
}
