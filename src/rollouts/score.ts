import type { SandboxLimits } from '../sandbox/limits.js';
import type { SandboxRunner } from '../sandbox/runner.js';
import type { CheckOutcome } from '../sandbox/quickjs-host.js';
import type { ChecksResult, EpisodeRecord } from '../sandbox/tasks.js';
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
 * be read, when it could not. `ran`: the scenario's checks other than episode checks already run on
 * this final state (by the session that held it, EnvSession.finish), so they are not run again.
 * Episode checks (`episode: true`) run here, with `episode` (the transcript, and the state after each
 * scripted user turn); without it (a served session) they fail with CHECK_NEEDS_EPISODE.
 */
export async function scoreFinalState(
  sandbox: Pick<SandboxRunner, 'checks'>,
  scenario: Pick<ScenarioRecord, 'checklist' | 'unscored'> & { readonly initialState?: unknown },
  finalState: unknown,
  limits: SandboxLimits,
  readError: string | null = null,
  ran: ChecksResult | null = null,
  episode: EpisodeRecord | null = null,
): Promise<Score> {
  let checksError = readError;
  const checklist = scenario.checklist ?? [];
  if (checklist.length === 0 && scenario.unscored) checksError ??= 'UNSCORED: the scenario has no checks by design (an EnvScaler SFT scenario), so its episodes get no reward';
  else if (checklist.length === 0) checksError ??= 'EMPTY_CHECKLIST: the scenario has no checks, so no reward can be computed';
  else if (finalState === null) checksError ??= 'no final state: the environment did not run, so no reward can be computed';
  else {
    const plain = checklist.filter(c => !c.episode);
    const later = checklist.filter(c => c.episode);
    let parsed: unknown;
    const state = () => (parsed ??= finalState instanceof RawJson ? finalState.value() : finalState);
    const [first, second] = await Promise.all([
      // A state kept as text goes to Python checks as that text (the runner of Python checks reads it); parsed otherwise.
      plain.length === 0 ? null : (ran ?? sandbox.checks({ checks: plain, finalState: finalState instanceof RawJson && plain.some(c => c.language === 'python') ? finalState : state(), initialState: scenario.initialState, limits })),
      // The text itself when the state is kept as text: a Python check then sees the floats the environment wrote.
      later.length === 0 ? null : episode ? sandbox.checks({ checks: later, finalState: finalState instanceof RawJson ? finalState : state(), initialState: scenario.initialState, limits, episode }) : null,
    ]);
    const needsEpisode = (item: string): CheckOutcome => ({
      item,
      passed: false,
      error: 'the check reads the episode (its transcript) and there is none here: a served session is scored on its final state alone',
      errorCode: 'CHECK_NEEDS_EPISODE',
    });
    let i = 0;
    let j = 0;
    const results = checklist.map(c => (c.episode ? (second?.results[j++] ?? needsEpisode(c.item)) : first!.results[i++]!));
    const checks = results.map(r => ({ item: r.item, passed: r.passed, ...(r.error ? { error: r.error } : {}), ...(r.errorCode ? { errorCode: r.errorCode } : {}), ...(r.lostWith ? { lostWith: r.lostWith } : {}) }));
    if (later.length && !episode) {
      // Checks that read the transcript cannot be run on a served session: counted as failed, the gold calls of a BFCL
      // entry got 0, and a τ-bench task with outputs 0.5 (a stranger's probe). No reward, saying why, rather than a wrong one.
      checksError ??=
        `CHECK_NEEDS_EPISODE: ${later.length} of the scenario's ${checklist.length} checks read the episode (its transcript: BFCL's turn-by-turn replay, ` +
        "τ-bench's outputs said to the user), which a session served by envfleet serve does not have, so no reward is given; score such scenarios with envfleet rollouts";
      return { checks, reward: null, checksError };
    }
    return { checks, reward: checks.filter(c => c.passed).length / checks.length, checksError };
  }
  return { checks: [], reward: null, checksError };
}
