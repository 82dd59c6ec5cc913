import type { SandboxLimits } from '../sandbox/limits.js';
import type { SandboxRunner } from '../sandbox/runner.js';
import type { ChecksResult } from '../sandbox/tasks.js';
import { RawJson } from '../util/raw-json.js';
import type { ScenarioRecord } from '../scenarios/types.js';
import type { CheckResult } from './types.js';

export interface Score {
  readonly checks: CheckResult[];
  /** The fraction of the scenario's checks true on the final state; null when none could run. */
  readonly reward: number | null;
  readonly checksError: string | null;
}

/**
 * The reward of a final state: the scenario's check functions run in the sandbox on it (and the
 * initial state). One function for every place that scores an episode (a rollout, a served session),
 * so they all give what `envfleet sandbox check` gives. `readError` is why the final state could not
 * be read, when it could not. `ran`: the scenario's checklist already run on this final state (by
 * the session that held it, EnvSession.finish), so they are not run again.
 */
export async function scoreFinalState(
  sandbox: Pick<SandboxRunner, 'checks'>,
  scenario: Pick<ScenarioRecord, 'checklist' | 'initialState' | 'unscored'>,
  finalState: unknown,
  limits: SandboxLimits,
  readError: string | null = null,
  ran: ChecksResult | null = null,
): Promise<Score> {
  let checksError = readError;
  const checklist = scenario.checklist ?? [];
  if (checklist.length === 0 && scenario.unscored) checksError ??= 'UNSCORED: the scenario has no checks by design (an EnvScaler SFT scenario), so its episodes get no reward';
  else if (checklist.length === 0) checksError ??= 'EMPTY_CHECKLIST: the scenario has no checks, so no reward can be computed';
  else if (finalState === null) checksError ??= 'no final state: the environment did not run, so no reward can be computed';
  else {
    const result = ran ?? (await sandbox.checks({ checks: checklist, finalState: finalState instanceof RawJson ? finalState.value() : finalState, initialState: scenario.initialState, limits }));
    const checks = result.results.map(r => ({ item: r.item, passed: r.passed, ...(r.error ? { error: r.error } : {}), ...(r.errorCode ? { errorCode: r.errorCode } : {}) }));
    return { checks, reward: result.reward, checksError };
  }
  return { checks: [], reward: null, checksError };
}
