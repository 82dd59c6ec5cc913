import { languageOf, type CheckSpec } from './bundle.js';
import type { CheckOutcome } from './quickjs-host.js';
import type { EnvSession, SandboxRunner } from './runner.js';
import type { ChecksInput, ChecksResult, ProbeResult, SandboxFailure, SessionEnd } from './tasks.js';
import { SandboxError } from './errors.js';
import { RawJson } from '../util/raw-json.js';
import { charCount, cutText } from '../util/text.js';

/**
 * The longest error message of a check, or of an environment that did not start, that is kept (characters). Careless
 * generated code raises with the whole state in its message (`assert ok, f"{state}"`, `throw new Error(JSON.stringify(s))`):
 * every check of every episode then carried the state again into its trajectory and the scenario's validation.
 */
export const MAX_ERROR_CHARS = 2_000;

/**
 * `message` cut to MAX_ERROR_CHARS UTF-16 units (whole characters: an emoji takes two), saying how long it was in
 * characters as Python counts them (an emoji one).
 */
export function boundedError(message: string): string {
  return message.length <= MAX_ERROR_CHARS ? message : `${cutText(message, MAX_ERROR_CHARS)}… (${charCount(message)} characters)`;
}

function boundedChecks(r: ChecksResult): ChecksResult {
  if (!r.results.some(x => x.error !== undefined && x.error.length > MAX_ERROR_CHARS)) return r;
  return { ...r, results: r.results.map(x => (x.error !== undefined && x.error.length > MAX_ERROR_CHARS ? { ...x, error: boundedError(x.error) } : x)) };
}

/** A probe's errors of an environment that did not start, or whose final state could not be read, bounded. */
function boundedProbe(r: ProbeResult): ProbeResult {
  const bound = (f: SandboxFailure | null) => (f && f.message.length > MAX_ERROR_CHARS ? { ...f, message: boundedError(f.message) } : f);
  if (bound(r.createError) === r.createError && bound(r.finalStateError) === r.finalStateError) return r;
  return { ...r, createError: bound(r.createError), finalStateError: bound(r.finalStateError) };
}

/** The session with another finish (given the checks to run). */
function withFinish(session: EnvSession, finish: EnvSession['finish']): EnvSession {
  const text = session.snapshotJson?.bind(session);
  return {
    tools: session.tools,
    call: (tool, args, argsText) => session.call(tool, args, argsText),
    snapshot: () => session.snapshot(),
    ...(text ? { snapshotJson: () => text() } : {}),
    initialState: () => session.initialState(),
    close: () => session.close(),
    finish,
  };
}

/** The session with its finish's check errors bounded. */
function boundedSession(session: EnvSession): EnvSession {
  return withFinish(session, async checks => {
    const end = await session.finish(checks);
    return end.checks ? { ...end, checks: boundedChecks(end.checks) } : end;
  });
}

/**
 * `runner` with the error messages it hands back bounded (MAX_ERROR_CHARS): a check's, an environment's that did not
 * start (a session's or a probe's), a probe's final state's, and those of a session's finish. The language router is one; a caller that holds one runtime's runner
 * directly (`envfleet import`, which replays gold actions in Python) wraps it too, so a careless message reaches no
 * summary or record whole.
 */
export function boundedRunner(runner: SandboxRunner): SandboxRunner {
  return {
    probe: async input => boundedProbe(await runner.probe(input)),
    checks: async input => boundedChecks(await runner.checks(input)),
    async openSession(code, initialState, limits, initialStateJson, options) {
      try {
        return boundedSession(await runner.openSession(code, initialState, limits, initialStateJson, options));
      } catch (err) {
        if (err instanceof SandboxError) err.message = boundedError(err.message);
        throw err;
      }
    },
    close: () => runner.close(),
  };
}

/**
 * One SandboxRunner over two runtimes: environments and checks go to `js` (QuickJS) or `python`
 * (Pyodide) by their `language` (absent = JavaScript). A checks list may mix both; each runtime
 * runs its own and the results keep the list's order. Error messages are bounded (boundedRunner).
 */
export function createLanguageRouter(runners: { readonly js: SandboxRunner; readonly python: SandboxRunner }): SandboxRunner {
  const runnerFor = (language: 'js' | 'python') => (language === 'python' ? runners.python : runners.js);
  const checks = async (input: ChecksInput): Promise<ChecksResult> => {
    // A state kept as its JSON text goes to Python as that text (1.0 stays a float); QuickJS threads get the value.
    const value = (state: unknown): unknown => (state instanceof RawJson ? state.value() : state);
    const forJs = (i: ChecksInput): ChecksInput => ({ ...i, finalState: value(i.finalState), initialState: value(i.initialState) });
    const python = input.checks.filter(c => languageOf(c) === 'python');
    if (python.length === 0) return runners.js.checks(forJs(input));
    if (python.length === input.checks.length) return runners.python.checks(input);
    const js = input.checks.filter(c => languageOf(c) !== 'python');
    const [jsResult, pyResult] = await Promise.all([runners.js.checks(forJs({ ...input, checks: js })), runners.python.checks({ ...input, checks: python })]);
    return merge(input.checks, jsResult.results, pyResult.results);
  };
  return boundedRunner({
    probe: input => runnerFor(languageOf(input.code)).probe(input),
    checks,
    async openSession(code, initialState, limits, initialStateJson, options) {
      const session = await runnerFor(languageOf(code)).openSession(code, initialState, limits, initialStateJson, options);
      const foreign = languageOf(code) !== 'python' ? 'python' : 'js';
      return withForeignChecks(session, foreign, runners[foreign], limits);
    },
    async close() {
      await Promise.all([runners.js.close(), runners.python.close()]);
    },
  });
}

/**
 * Checks of the session's own language run where its state is; the others run on the final state's JSON in the other
 * runtime, with the initial state the session's own checks see (a Python session's constructed one).
 */
function withForeignChecks(session: EnvSession, foreign: 'js' | 'python', other: SandboxRunner, limits: ChecksInput['limits']): EnvSession {
  const isForeign = (c: CheckSpec) => (languageOf(c) === 'python') === (foreign === 'python');
  return withFinish(session, async checks => {
    const foreignChecks = checks.filter(isForeign);
    if (foreignChecks.length === 0) return session.finish(checks);
    const own = checks.filter(c => !isForeign(c));
    // Read before the session ends (the text it kept at the start: no code runs). It fails only for a session that
    // is gone, whose finish says why; should finish still give a state, these checks fail with the read's reason.
    const initial = await session.initialState().then(
      json => ({ json, error: null }),
      (err: unknown) => ({ json: null, error: err instanceof SandboxError ? err : new SandboxError('SANDBOX_UNAVAILABLE', String(err)) }),
    );
    const end = await session.finish(own);
    if (end.stateJson === null) return end;
    const text = (json: string) => (foreign === 'python' ? new RawJson(json) : (JSON.parse(json) as unknown));
    const theirs =
      initial.json === null
        ? { results: foreignChecks.map(c => ({ item: c.item, passed: false, error: `the initial state could not be read from the session: ${initial.error.message}`, errorCode: initial.error.code })) }
        : await other.checks({ checks: foreignChecks, finalState: text(end.stateJson), initialState: text(initial.json), limits });
    return { ...end, checks: merge(checks, end.checks?.results ?? [], theirs.results, isForeign) } satisfies SessionEnd;
  });
}

/** The results of both runtimes in the order of `checks`. */
function merge(checks: readonly CheckSpec[], first: readonly CheckOutcome[], second: readonly CheckOutcome[], isSecond: (c: CheckSpec) => boolean = c => languageOf(c) === 'python'): ChecksResult {
  let i = 0;
  let j = 0;
  const results = checks.map(c => (isSecond(c) ? second[j++] : first[i++])).filter((r): r is CheckOutcome => r !== undefined);
  const passed = results.filter(r => r.passed).length;
  return { results, reward: results.length ? passed / results.length : 0, solved: results.length > 0 && passed === results.length };
}
