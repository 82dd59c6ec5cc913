import { randomUUID } from 'node:crypto';
import type { Logger } from '../logger.js';
import type { FunctionTool } from '../sandbox/bundle.js';
import { scoreFinalState } from '../rollouts/score.js';
import type { CheckResult } from '../rollouts/types.js';
import type { RunStore } from '../runs/store.js';
import { ENDS_SESSION } from '../sandbox/errors.js';
import type { SandboxLimits } from '../sandbox/limits.js';
import { errorOf, fullAtEnd, fullCheck, lostAtEnd, lostCheck } from '../sandbox/retry-when-full.js';
import type { ChecksResult } from '../sandbox/tasks.js';
import type { CallOutcome } from '../sandbox/quickjs-host.js';
import type { EnvSession, SandboxRunner } from '../sandbox/runner.js';
import type { ScenarioRecord } from '../scenarios/types.js';
import { deeperThan, MAX_JSON_DEPTH } from '../sandbox/python/python-harness.mjs';
import type { EnvironmentRecord } from '../synthesis/types.js';
import type { SessionDirectory } from './directory.js';
import { EnvServerError, NEW_SESSION_HOW, RESULT_HOW, shownId } from './errors.js';
import { RawJson, stringifyJson } from '../util/raw-json.js';

/** What a session needs of a scenario: the scenario, its environment, and the sandbox limits its run froze. */
export interface ServedScenario {
  readonly scenario: ScenarioRecord;
  readonly env: EnvironmentRecord;
  readonly limits: SandboxLimits;
}

/** Where the registry finds scenarios; rejects with UNKNOWN_SCENARIO or SCENARIO_NOT_READY. */
export interface ScenarioSource {
  scenario(scenarioId: string): Promise<ServedScenario>;
}

/** The scenarios of one run in the run store (read once each, then kept: a ready scenario never changes). */
export function runScenarioSource(store: Pick<RunStore, 'getDoc' | 'getRun'>, runId: string): ScenarioSource {
  const cache = new Map<string, ServedScenario>();
  return {
    async scenario(scenarioId) {
      const hit = cache.get(scenarioId);
      if (hit) return hit;
      const scenario = await store.getDoc(runId, 'scenario', scenarioId);
      if (!scenario) throw new EnvServerError('UNKNOWN_SCENARIO', `no scenario ${shownId(scenarioId)} in run ${runId}; use a scenario_id from the run's exports (rl-verl.json extra_info.scenario_id, rl-prompts.jsonl scenario_id)`);
      if (scenario.status !== 'ready' || !scenario.initialState) {
        throw new EnvServerError('SCENARIO_NOT_READY', `scenario "${scenarioId}" of run ${runId} is ${scenario.status}, not ready: serve only ready scenarios (envfleet status --run ${runId})`);
      }
      const env = await store.getDoc(runId, 'env', scenario.environmentId);
      if (!env?.source || !env.className) throw new EnvServerError('SCENARIO_NOT_READY', `the environment ${scenario.environmentId} of scenario "${scenarioId}" has no assembled code in run ${runId}`);
      const run = await store.getRun(runId);
      if (!run) throw new EnvServerError('UNKNOWN_SCENARIO', `run "${runId}" does not exist`);
      const served = { scenario, env, limits: run.options.limits };
      cache.set(scenarioId, served);
      return served;
    },
  };
}

/**
 * Why a session ended. Two endings are the server's doing, not the agent's nor its client's, and have no reward
 * (`notScored`): `evicted`, its sandbox thread's memory bound (shared by the thread's sessions) was full
 * (SANDBOX_MEMORY_FULL) or its Python interpreter was taken down by another session's environment (ENV_DISPOSED), and `shutdown`, the serve process was stopped (SIGTERM) during the episode. An
 * `idle-timeout` is scored: the time is the agent's (or its client's), like a time limit.
 */
export type SessionEnd = 'finished' | 'closed' | 'idle-timeout' | 'environment-error' | 'replaced' | 'shutdown' | 'evicted';

/** The endings the server caused: the episode was cut, not played out, so what the checks would say of it is no reward. */
export type ServerEnd = Extract<SessionEnd, 'evicted' | 'shutdown'>;

/** The result of a session the server ended. */
export type ServerEndedResult = SessionResult & { readonly endedBy: ServerEnd };

/** The code each server ending is answered with where a reward would be given. */
const SERVER_ENDS: Readonly<Record<ServerEnd, 'SESSION_EVICTED' | 'SESSION_INTERRUPTED'>> = { evicted: 'SESSION_EVICTED', shutdown: 'SESSION_INTERRUPTED' };

/** A session the server ended (evicted, or cut by its stop): no reward, SESSION_EVICTED / SESSION_INTERRUPTED instead. */
export const notScored = (result: SessionResult): result is ServerEndedResult => Object.hasOwn(SERVER_ENDS, result.endedBy);

/** The codes of a session the server ended (`notScored`), as the surfaces get them. */
export const NOT_SCORED_CODES: ReadonlySet<string> = new Set(Object.values(SERVER_ENDS));

/** The sandbox code of a thread whose memory bound was full (src/sandbox/errors.ts). */
const SANDBOX_FULL = 'SANDBOX_MEMORY_FULL';
/**
 * The sandbox code of an environment lost with its interpreter, which another session's environment took down (a
 * fatal error, a call past its deadline that ignored the interrupt: the Python child replaces the interpreter, and
 * every environment on it is gone). The session that caused it gets its own code; the others get this one.
 */
const INTERPRETER_LOST = 'ENV_DISPOSED';
/** The detail of a session evicted because its environment was lost with its interpreter. */
const interpreterLost = (what: string, message: string) =>
  `${what}: ${message} (another session's environment on the same interpreter failed fatally or ran past its deadline, and took this one with it)`;

/**
 * The error for a session the server ended (`notScored`), with its result: SESSION_EVICTED (its sandbox thread was
 * full) or SESSION_INTERRUPTED (the serve process was stopped). No reward: play the scenario again.
 */
export function notScoredError(result: ServerEndedResult): EnvServerError {
  const again = `the episode has no reward. Discard it and play scenario ${result.scenarioId} again in a new session`;
  if (result.endedBy === 'evicted') {
    const lost = result.evictedFor === INTERPRETER_LOST;
    return new EnvServerError(
      'SESSION_EVICTED',
      `session ${result.sessionId} was evicted: ${result.detail ?? 'its sandbox thread had no memory left'}. That is the server's ${lost ? 'doing (an environment of another session)' : 'load (the memory bound ENVFLEET_SANDBOX_HEAP_MB is shared by the sessions of a sandbox thread)'}, not the agent's doing: ${again}`,
      { session_ended: true, sandbox_code: lost ? INTERPRETER_LOST : SANDBOX_FULL, ended_by: result.endedBy, scenario_id: result.scenarioId },
    );
  }
  return new EnvServerError(
    'SESSION_INTERRUPTED',
    `session ${result.sessionId} was interrupted: the server stopped during the episode (a graceful stop: a restart, a scale-down or a preemption) and ended it after ${result.calls} tool call${result.calls === 1 ? '' : 's'}. That is the server's doing, not the agent's: ${again}`,
    { session_ended: true, ended_by: result.endedBy, scenario_id: result.scenarioId },
  );
}

/** The result of a session that ended with a reward to give; SESSION_EVICTED / SESSION_INTERRUPTED (no reward) for one the server ended. */
export function scoredResult(result: SessionResult): SessionResult {
  if (notScored(result)) throw notScoredError(result);
  return result;
}

export interface SessionInfo {
  readonly id: string;
  readonly scenarioId: string;
  readonly environmentId: string;
  readonly tools: readonly string[];
  /** The environment's tool definitions (OpenAI function tools, JSON Schema parameters). */
  readonly toolDefs: readonly FunctionTool[];
  readonly task: string | null;
  readonly openedAt: string;
}

/** What a session leaves when it ends: kept after the environment is gone. */
export interface SessionResult {
  readonly sessionId: string;
  readonly scenarioId: string;
  readonly environmentId: string;
  readonly endedBy: SessionEnd;
  readonly detail: string | null;
  readonly endedAt: string;
  readonly calls: number;
  /**
   * The final state as the runtime wrote it (a Python state's 1.0 and integers past 2^53 as they are), kept as that
   * text only: never parsed here, so a kept result costs about its text (a τ-bench state is over a megabyte of JSON,
   * several as objects) and the directory stores it once. Null when it could not be read.
   */
  readonly finalState: RawJson | null;
  /** The fraction of the scenario's checks true on the final state (as a rollout's reward); null when none could run. */
  readonly reward: number | null;
  readonly solved: boolean;
  readonly checks: readonly CheckResult[];
  readonly checksError: string | null;
  /** For an `evicted` session, the sandbox's code of what ended it when it was not a full memory bound: ENV_DISPOSED. */
  readonly evictedFor?: typeof INTERPRETER_LOST;
}

export interface SessionRegistryOptions {
  /** At most this many live sessions (opening ones count); one more is refused with OVER_CAPACITY. */
  readonly maxSessions: number;
  /** A session with no request for this long ends (`idle-timeout`); 0: never. */
  readonly idleTimeoutMs: number;
  /** How many ended sessions' results are kept in memory (the oldest are forgotten first; default 10,000). */
  readonly keepResults?: number;
  /** At most about this many bytes of kept results (their final states; default 256 MiB). */
  readonly keepResultBytes?: number;
  /** A kept result older than this is forgotten (the directory's copy expires at the same age). */
  readonly keepResultsForMs?: number;
}

export interface SessionRegistryDeps {
  readonly sandbox: Pick<SandboxRunner, 'openSession' | 'checks'>;
  readonly scenarios: ScenarioSource;
  readonly logger?: Logger;
  /** Shared with the other serve processes on the same Redis: who holds which session, and ended sessions' results. */
  readonly directory?: SessionDirectory;
}

export interface SessionRegistry {
  /** Opens a session on the scenario's initial state; OVER_CAPACITY (with active and max) when full. */
  open(scenarioId: string): Promise<SessionInfo>;
  /** A live session; UNKNOWN_SESSION or SESSION_CLOSED otherwise. */
  info(sessionId: string): SessionInfo;
  /**
   * Calls a tool: the outcome as an episode gets it (sandbox codes in `runtimeError`). A code that discards the environment
   * ends the session. `argsText`: the JSON text `args` came as, when the caller has it (a Python tool reads the arguments
   * from it: 2.0 a float).
   */
  call(sessionId: string, tool: string, args: unknown, argsText?: string): Promise<CallOutcome>;
  /** The reward the session would get if it ended now (its current state read and checked); the session goes on. */
  preview(sessionId: string): Promise<Pick<SessionResult, 'reward' | 'checks' | 'checksError'>>;
  /** Ends the session (final state, reward from the checks; none for `shutdown` and `evicted`) and returns its result; the kept result when it has ended already. */
  finish(sessionId: string, endedBy?: SessionEnd): Promise<SessionResult>;
  /** The kept result of an ended session, or null. */
  result(sessionId: string): SessionResult | null;
  stats(): { readonly active: number; readonly max: number };
  /** Whether this process knows the session itself (live, ended here, or learnt with `remember`). */
  knows(sessionId: string): boolean;
  /** Keeps the result of a session another process ended (from the directory), so every surface answers as for its own. */
  remember(result: SessionResult): void;

  /** Ends every live session (`shutdown`: not scored, the server cut it); new ones are refused. */
  closeAll(): Promise<void>;
}

interface Live {
  info: SessionInfo | null;
  served: ServedScenario | null;
  env: EnvSession | null;
  calls: number;
  timer: NodeJS.Timeout | null;
  /** Requests being served: the idle clock runs only while there are none. */
  busy: number;
  ending: Promise<SessionResult> | null;
}

export function createSessionRegistry(deps: SessionRegistryDeps, options: SessionRegistryOptions): SessionRegistry {
  const live = new Map<string, Live>();
  // Ended sessions' results, oldest first, bounded by count, by the bytes of their final states and by age.
  const ended = new Map<string, { result: SessionResult; bytes: number; at: number }>();
  const keep = options.keepResults ?? 10_000;
  const keepBytes = options.keepResultBytes ?? 256 * 1024 * 1024;
  let endedBytes = 0;
  const forgetOldest = () => {
    const [id, e] = ended.entries().next().value!;
    ended.delete(id);
    endedBytes -= e.bytes;
  };
  /** `jsonLength`: the length of the result as JSON text (what it holds is mostly its final state). */
  const keepResult = (result: SessionResult, jsonLength: number) => {
    const old = ended.get(result.sessionId);
    if (old) {
      ended.delete(result.sessionId);
      endedBytes -= old.bytes;
    }
    const bytes = 2 * jsonLength + 1024;
    ended.set(result.sessionId, { result, bytes, at: Date.now() });
    endedBytes += bytes;
    while (ended.size > 1 && (ended.size > keep || endedBytes > keepBytes)) forgetOldest();
  };
  const endedResult = (id: string): SessionResult | undefined => {
    const e = ended.get(id);
    if (!e) return undefined;
    if (options.keepResultsForMs !== undefined && Date.now() - e.at > options.keepResultsForMs) {
      ended.delete(id);
      endedBytes -= e.bytes;
      return undefined;
    }
    return e.result;
  };
  let shuttingDown = false;

  /** Restarts the idle clock (stopped while a request is being served: a long call is not idleness). */
  const touch = (id: string, s: Live) => {
    if (options.idleTimeoutMs <= 0) return;
    if (s.timer) clearTimeout(s.timer);
    s.timer = null;
    if (s.busy > 0 || s.ending) return;
    s.timer = setTimeout(() => {
      void finish(id, 'idle-timeout', `no request for ${options.idleTimeoutMs} ms`).catch(err => deps.logger?.warn({ err, session: id }, 'ending an idle session failed'));
    }, options.idleTimeoutMs);
    s.timer.unref();
  };

  const liveOrThrow = (id: string): Live => {
    const s = live.get(id);
    if (s && !s.ending && s.info) return s;
    const done = endedResult(id);
    if (s?.ending || done) {
      const next = done && notScored(done) ? `the server ended it, so it has no reward (its result says ${notScoredError(done).code}): play scenario ${done.scenarioId} again in a new session (${NEW_SESSION_HOW})` : `its result and reward are kept (${RESULT_HOW}); start a new session with ${NEW_SESSION_HOW}`;
      throw new EnvServerError('SESSION_CLOSED', `session ${id} has ended${done ? ` (${done.endedBy}${done.detail ? `: ${done.detail}` : ''})` : ''}; ${next}`, { ended_by: done?.endedBy ?? 'ending' });
    }
    throw new EnvServerError('UNKNOWN_SESSION', `no session ${shownId(id)} on this server; start one with ${NEW_SESSION_HOW}`);
  };

  async function finish(id: string, endedBy: SessionEnd, detail: string | null = null, evictedFor?: typeof INTERPRETER_LOST): Promise<SessionResult> {
    const done = endedResult(id);
    if (done) return done;
    const s = live.get(id);
    if (!s?.info || !s.served) throw new EnvServerError('UNKNOWN_SESSION', `no session ${shownId(id)} on this server; start one with ${NEW_SESSION_HOW}`);
    if (s.ending) return s.ending;
    if (s.timer) clearTimeout(s.timer);
    const { info, served } = s;
    s.ending = (async () => {
      let finalState: RawJson | null = null;
      let readError: string | null = null;
      let ran: ChecksResult | null = null;
      // The thread's memory bound met while ending (reading the state, or a check): the episode is evicted too.
      let full: string | null = endedBy === 'evicted' ? detail : null;
      let lostFor = endedBy === 'evicted' ? evictedFor : undefined;
      // Cut by the server's stop: the final state is kept (to see where the episode was), but no check runs on it.
      const interrupted = endedBy === 'shutdown';
      if (!full) {
        try {
          // The final state and the checks on it in the session, as an episode ends (episode.ts): a Python
          // check then sees the live state (1.0 stays a float; through JSON it would come back as 1).
          const end = await s.env!.finish(interrupted ? [] : (served.scenario.checklist ?? []).filter(c => !c.episode));
          const atEnd = fullAtEnd(end);
          const lost = lostAtEnd(end);
          if (atEnd) full = `${atEnd.where}: ${atEnd.message}`;
          // Lost with an interpreter another environment took down: not the episode's doing. (ENV_DISPOSED without
          // the mark follows the environment's own limit: scored as its failure.)
          else if (lost && endedBy !== 'environment-error') {
            full = interpreterLost(lost.where, lost.message);
            lostFor = INTERPRETER_LOST;
          }
          if (end.stateJson === null) throw new Error(end.stateError?.message ?? 'no final state');
          // Held to the bound the Python runtime holds states to, counted without recursion: deeper, V8's own writing of
          // it (here, in the reply, in another serve process) would overflow its stack, at a depth no check can foresee.
          if (deeperThan(end.stateJson, MAX_JSON_DEPTH)) throw new Error(`it nests containers more than ${MAX_JSON_DEPTH} levels deep, more than the server passes on; keep the environment's state flatter (a linked list as a list, a tree as a dict of nodes by id)`);
          finalState = new RawJson(end.stateJson);
          ran = end.checks;
        } catch (err) {
          // Nothing of a state that cannot be passed on stays in the result (it could not be written either).
          finalState = null;
          readError = `the final state could not be read: ${(err as Error).message}`;
        }
      }
      await s.env!.close().catch(() => undefined);
      // No reward for an episode the server cut (its load, its stop): what the checks would say of it is not the agent's score.
      const evictedScore = () => ({ checks: [], reward: null, checksError: `not scored: the session was evicted (${full})` });
      let score: Awaited<ReturnType<typeof scoreFinalState>>;
      if (full) score = evictedScore();
      else if (interrupted) score = { checks: [], reward: null, checksError: 'not scored: the server stopped during the episode' };
      else {
        try {
          score = await scoreFinalState(deps.sandbox, served.scenario, finalState, served.limits, readError, ran);
        } catch (err) {
          score = { checks: [], reward: null, checksError: `the checks could not run: ${(err as Error).message}` };
        }
        const fullScore = fullCheck(score.checks);
        const lostScore = lostCheck(score.checks);
        if (fullScore) {
          full = `${fullScore.where}: ${fullScore.message}`;
          score = evictedScore();
        } else if (lostScore) {
          // A check whose interpreter another environment took down: no score is the agent's measure.
          full = interpreterLost(lostScore.where, lostScore.message);
          lostFor = INTERPRETER_LOST;
          score = evictedScore();
        }
      }
      let result: SessionResult = {
        sessionId: id,
        scenarioId: info.scenarioId,
        environmentId: info.environmentId,
        endedBy: full ? 'evicted' : endedBy,
        detail: full && endedBy !== 'evicted' ? `${endedBy}, then ${full}` : detail,
        endedAt: new Date().toISOString(),
        calls: s.calls,
        finalState,
        reward: score.reward,
        solved: score.reward === 1,
        checks: score.checks,
        checksError: score.checksError,
        ...(full && lostFor ? { evictedFor: lostFor } : {}),
      };
      // Serialized once: its length bounds what this process keeps, and the directory stores the text. Should that
      // fail, the result is kept without its state (a session must leave `live` with a result, or it would hold one of
      // --max-sessions for good and answer verify with an error).
      let json: string;
      try {
        json = stringifyJson(result)!;
      } catch (err) {
        result = { ...result, finalState: null, reward: null, solved: false, checks: [], checksError: `the result could not be written as JSON (${(err as Error).message}), so it is kept without its final state and reward` };
        json = stringifyJson(result)!;
      }
      keepResult(result, json.length);
      live.delete(id);
      // Then every process sharing the directory answers with this result (verify through another one).
      await deps.directory?.release(id, json).catch(err => deps.logger?.warn({ err, session: id }, 'the session directory did not take the result; only this process knows it'));
      return result;
    })();
    return s.ending;
  }

  return {
    async open(scenarioId) {
      if (shuttingDown) throw new EnvServerError('OVER_CAPACITY', 'the server is shutting down; open the session on another server', { active: live.size, max: 0 });
      // Full: an unknown scenario (or one not ready) is said first. A seed or a reset on the cookie of a live session ends
      // that session for the room only on OVER_CAPACITY; a typo must not cost the episode it meant to replace.
      if (live.size >= options.maxSessions) await deps.scenarios.scenario(scenarioId);
      if (shuttingDown) throw new EnvServerError('OVER_CAPACITY', 'the server is shutting down; open the session on another server', { active: live.size, max: 0 });
      if (live.size >= options.maxSessions) {
        const active = live.size;
        // Behind several serve processes: say where there is room (a WebSocket cannot be forwarded).
        // (not the peers that have just refused this open: their heartbeats still say they have room)
        const room = deps.directory ? await deps.directory.peersWithRoom(true).catch(() => []) : [];
        const where = room.length ? `; ${room.length} other serve process${room.length > 1 ? 'es have' : ' has'} room: ${room.slice(0, 3).map(p => p.url).join(', ')}` : '';
        throw new EnvServerError('OVER_CAPACITY', `the server holds ${active} sessions, its maximum (--max-sessions ${options.maxSessions}): finish or close a session (verify ends it), or retry later${where}`, { active, max: options.maxSessions, ...(room.length ? { room_at: room.map(p => p.url) } : {}) });
      }
      const id = randomUUID();
      // The slot is taken before anything is awaited, so sessions opened at once never pass the maximum.
      const s: Live = { info: null, served: null, env: null, calls: 0, timer: null, busy: 0, ending: null };
      live.set(id, s);
      try {
        const served = await deps.scenarios.scenario(scenarioId);
        const { scenario, env } = served;
        const start = (): Promise<EnvSession> => deps.sandbox.openSession({ name: env.description.summary, className: env.className!, source: env.source!, tools: env.tools ?? [], ...(env.language ? { language: env.language } : {}) }, scenario.initialState, served.limits, scenario.initialStateJson);
        let started: EnvSession;
        try {
          // A start whose Python interpreter another session's environment took down (not this environment's doing)
          // is made once more, on the interpreter that replaced it.
          started = await start().catch((err: unknown) => {
            if ((err as { lostWith?: unknown }).lostWith === 'interpreter') return start();
            throw err;
          });
        } catch (err) {
          // The sandbox thread's memory bound is full: a capacity limit like --max-sessions, not a broken environment.
          if ((err as { code?: unknown }).code === 'SANDBOX_MEMORY_FULL') {
            const active = live.size - 1;
            throw new EnvServerError('OVER_CAPACITY', `the sandbox has no memory left for another environment with ${active} sessions open (${(err as Error).message}): finish or close a session, or retry later; raise ENVFLEET_SANDBOX_HEAP_MB or ENVFLEET_POOL_THREADS if the machine has room`, { active, max: options.maxSessions });
          }
          throw new EnvServerError('ENVIRONMENT_FAILED', `the environment of scenario "${scenarioId}" did not start: ${(err as Error).message}`);
        }
        s.env = started;
        s.served = served;
        s.info = { id, scenarioId, environmentId: env.id, tools: started.tools, toolDefs: env.tools ?? [], task: scenario.task ?? null, openedAt: new Date().toISOString() };
        // Without this entry the session still works through this process; the others answer UNKNOWN_SESSION for it.
        await deps.directory?.claim(id).catch(err => deps.logger?.warn({ err, session: id }, 'the session directory did not record the session; other serve processes will not find it'));
      } catch (err) {
        live.delete(id);
        throw err;
      }
      if (shuttingDown) {
        await finish(id, 'shutdown');
        throw new EnvServerError('OVER_CAPACITY', 'the server is shutting down; open the session on another server', { active: live.size, max: 0 });
      }
      touch(id, s);
      return s.info;
    },
    info(id) {
      const s = liveOrThrow(id);
      touch(id, s);
      return s.info!;
    },
    async call(id, tool, args, argsText) {
      const s = liveOrThrow(id);
      s.busy += 1;
      touch(id, s);
      s.calls += 1;
      let outcome: CallOutcome;
      try {
        outcome = await s.env!.call(tool, args, argsText);
      } catch (err) {
        s.busy -= 1;
        // The sandbox thread holding the environment is gone: the session ends with what can be read.
        await finish(id, 'environment-error', `the environment failed: ${(err as Error).message}`).catch(() => undefined);
        throw new EnvServerError('ENVIRONMENT_FAILED', `the environment of session ${id} failed: ${(err as Error).message}; the session has ended, verify returns its result`);
      }
      s.busy -= 1;
      if (outcome.runtimeError === SANDBOX_FULL) {
        // Not the environment's failure: the thread's other sessions left it no memory. No reward, a clear error.
        const where = s.served?.env.language === 'python' ? 'its Python interpreter had none left (ENVFLEET_PYTHON_HEAP_MB' : 'its sandbox thread had none left (ENVFLEET_SANDBOX_HEAP_MB';
        const result = await finish(id, 'evicted', `${tool} needed more memory and ${where} reached with ${live.size} sessions open)`);
        throw notScored(result) ? notScoredError(result) : new EnvServerError('SESSION_CLOSED', `session ${id} has ended (${result.endedBy})`);
      }
      if (outcome.runtimeError === INTERPRETER_LOST && outcome.lostWith === 'interpreter') {
        // Its environment is gone with an interpreter another session's environment took down: no reward.
        const result = await finish(id, 'evicted', interpreterLost(`${tool} found its environment gone`, errorOf(outcome.result)), INTERPRETER_LOST);
        throw notScored(result) ? notScoredError(result) : new EnvServerError('SESSION_CLOSED', `session ${id} has ended (${result.endedBy})`);
      }
      if (outcome.runtimeError && ENDS_SESSION.has(outcome.runtimeError)) {
        await finish(id, 'environment-error', `${outcome.runtimeError} in ${tool}; the environment was discarded`);
      } else touch(id, s);
      return outcome;
    },
    async preview(id) {
      const s = liveOrThrow(id);
      s.busy += 1;
      touch(id, s);
      let state: unknown;
      let initialState: RawJson;
      try {
        // With the initial state the session's own checks see (a Python instance's constructed one), so the preview is
        // what ending the episode now would score.
        // A Python session's state as its text, so a Python check there sees 1.0 as the float it is.
        const env = s.env!;
        const [now, initial] = await Promise.all([env.snapshotJson ? env.snapshotJson().then(json => new RawJson(json)) : env.snapshot(), env.initialState()]);
        state = now;
        initialState = new RawJson(initial);
      } catch (err) {
        return { reward: null, checks: [], checksError: `the current state could not be read: ${(err as Error).message}` };
      } finally {
        s.busy -= 1;
        touch(id, s);
      }
      const score = await scoreFinalState(deps.sandbox, { ...s.served!.scenario, initialState }, state, s.served!.limits, null);
      // A check whose interpreter another session took down says nothing of this state: no preview rather than a low one.
      const lost = lostCheck(score.checks);
      return lost ? { reward: null, checks: [], checksError: interpreterLost(lost.where, lost.message) } : score;
    },
    finish: (id, endedBy = 'finished') => finish(id, endedBy),
    result: id => endedResult(id) ?? null,
    stats: () => ({ active: live.size, max: options.maxSessions }),
    knows: id => live.has(id) || endedResult(id) !== undefined,
    remember(result) {
      if (live.has(result.sessionId)) return;
      keepResult(result, stringifyJson(result)!.length);
    },

    async closeAll() {
      shuttingDown = true;
      await Promise.all([...live.entries()].filter(([, s]) => s.info).map(([id]) => finish(id, 'shutdown').catch(() => undefined)));
    },
  };
}
