import type { MessagePort } from 'node:worker_threads';
import type { CheckSpec, EnvironmentCode, ToolCall } from './bundle.js';
import { diffStates, type StateDiff } from './diff.js';
import { SandboxError, type SandboxErrorCode } from './errors.js';
import type { SandboxLimits } from './limits.js';
import type { CallOutcome, CheckOutcome, QuickJSHost, SandboxEnvironment } from './quickjs-host.js';
import { watchSession } from './watchdog.js';

/**
 * The work a sandbox thread does. Tasks take and return plain, structured-cloneable data; the
 * same functions run in a pool thread (workers/sandbox-pool.ts) or in the calling thread
 * (runner.ts, createLocalSandboxRunner). Each thread has one QuickJSHost.
 */

export interface SandboxFailure {
  readonly code: SandboxErrorCode;
  readonly message: string;
  /** ENV_DISPOSED only: the environment was lost with its Python interpreter, which another environment took down. */
  readonly lostWith?: 'interpreter';
}

/** A call a probe makes; `argumentsText` as EnvSession.call's `argsText` (a Python session reads the arguments from it). */
export type ProbeCall = ToolCall & { readonly argumentsText?: string };

export interface ProbeInput {
  readonly code: EnvironmentCode;
  readonly initialState: unknown;
  /** The initial state's JSON text, when the caller has it: a Python environment is made from it (5.0 stays a float); JavaScript ignores it. */
  readonly initialStateJson?: string;
  readonly calls: readonly ProbeCall[];
  readonly limits: SandboxLimits;
  /** Record the state and its diff after each call (dual-agent probing needs both). */
  readonly withStates?: boolean;
}

export interface ProbeStep extends CallOutcome {
  readonly tool: string;
  readonly arguments: unknown;
  readonly stateBefore?: unknown;
  readonly stateAfter?: unknown;
  readonly diff?: StateDiff;
}

export interface ProbeResult {
  /** Null when the environment could not be created. */
  readonly createError: SandboxFailure | null;
  readonly createMs: number;
  readonly steps: readonly ProbeStep[];
  readonly finalState: unknown;
  /** The final state as the runtime wrote it, where parsing it loses what it says (a Python environment's: 1.0, an integer past 2^53). */
  readonly finalStateJson?: string;
  readonly finalStateError: SandboxFailure | null;
}

/** What an episode check (CheckSpec.episode) reads besides the states: the transcript, and the state after each scripted user turn. */
export interface EpisodeRecord {
  /** The agent's messages in OpenAI chat format (system, user, assistant with tool_calls, tool). */
  readonly messages: readonly unknown[];
  /** The environment's state at the end of each user turn of a scripted multi-turn episode; null otherwise. */
  readonly turnStates: readonly unknown[] | null;
}

export interface ChecksInput {
  readonly checks: readonly CheckSpec[];
  readonly finalState: unknown;
  readonly initialState: unknown;
  readonly limits: SandboxLimits;
  /** For checks with `episode: true`; without it they fail with CHECK_NEEDS_EPISODE. */
  readonly episode?: EpisodeRecord;
}

export interface ChecksResult {
  readonly results: readonly CheckOutcome[];
  /** Fraction of checks that passed (0 when there are none). */
  readonly reward: number;
  /** Every check passed (and there is at least one). */
  readonly solved: boolean;
}

/** Messages of the session protocol, host → thread. */
export type SessionRequest =
  | { readonly id: number; readonly op: 'call'; readonly tool: string; readonly arguments: unknown }
  | { readonly id: number; readonly op: 'snapshot' }
  | { readonly id: number; readonly op: 'finish'; readonly checks: readonly CheckSpec[] }
  | { readonly id: number; readonly op: 'close' };

/**
 * The answer to `finish`: the final state's JSON text (or why it could not be read), and the
 * checks run on it and on the initial state in the session's thread (null when there were none to
 * run, or no final state). The session is closed once it is sent.
 */
export interface SessionEnd {
  readonly stateJson: string | null;
  readonly stateError: SandboxFailure | null;
  readonly checks: ChecksResult | null;
}

/** Messages of the session protocol, thread → host. `id: 0` is the ready/failed message. */
export type SessionReply =
  | { readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly id: number; readonly ok: false; readonly error: SandboxFailure };

export interface SessionSummary {
  readonly calls: number;
  readonly closedBy: 'host' | 'create-failed' | 'port-closed';
}

const failure = (err: unknown): SandboxFailure =>
  err instanceof SandboxError ? { code: err.code, message: err.message } : { code: 'TOOL_THREW', message: String(err) };

export async function runProbe(host: QuickJSHost, input: ProbeInput): Promise<ProbeResult> {
  const started = performance.now();
  let env: SandboxEnvironment;
  try {
    env = await host.createEnvironment(input.code, input.initialState, input.limits);
  } catch (err) {
    return { createError: failure(err), createMs: performance.now() - started, steps: [], finalState: null, finalStateError: null };
  }
  const createMs = performance.now() - started;
  const steps: ProbeStep[] = [];
  try {
    let before: unknown = input.withStates ? safeSnapshot(env) : undefined;
    for (const call of input.calls) {
      const outcome = env.call(call.tool, call.arguments);
      if (input.withStates) {
        const after = safeSnapshot(env);
        steps.push({ tool: call.tool, arguments: call.arguments, ...outcome, stateBefore: before, stateAfter: after, diff: diffStates(before, after) });
        before = after;
      } else {
        steps.push({ tool: call.tool, arguments: call.arguments, ...outcome });
      }
    }
    try {
      return { createError: null, createMs, steps, finalState: env.snapshot(), finalStateError: null };
    } catch (err) {
      return { createError: null, createMs, steps, finalState: null, finalStateError: failure(err) };
    }
  } finally {
    env.dispose();
  }
}

function safeSnapshot(env: SandboxEnvironment): unknown {
  try {
    return env.snapshot();
  } catch {
    return null;
  }
}

export async function runChecks(host: QuickJSHost, input: ChecksInput): Promise<ChecksResult> {
  return checksResult(await host.runChecks(input.checks, input.finalState, input.initialState, input.limits));
}

/** A checks task as a pool sends it: both states as JSON text (checkStateTexts). */
export interface ChecksTextInput {
  readonly checks: readonly CheckSpec[];
  readonly finalJson: string;
  readonly initialJson: string;
  readonly limits: SandboxLimits;
}

export async function runChecksText(host: QuickJSHost, input: ChecksTextInput): Promise<ChecksResult> {
  return checksResult(await host.runChecksOnText(input.checks, input.finalJson, input.initialJson, input.limits));
}

export function checksResult(results: readonly CheckOutcome[]): ChecksResult {
  const passed = results.filter(r => r.passed).length;
  return { results, reward: results.length ? passed / results.length : 0, solved: results.length > 0 && passed === results.length };
}

/** What a session task gets: the initial state as JSON text (a string crosses threads as one copy, an object graph as a structured clone). */
export interface SessionInput {
  readonly code: EnvironmentCode;
  readonly initialStateJson: string;
  readonly limits: SandboxLimits;
  readonly port: MessagePort;
  /** The number the pool's watchdog knows this session by (workers/sandbox-pool.ts); 0 or absent: none. */
  readonly watchId?: number;
}

/**
 * A thread's sessions' finishes (the state's snapshot and the checks: milliseconds each, where a
 * call or a session's start takes a fraction of one), run one per turn of the event loop
 * (setImmediate), after the messages that arrived meanwhile: a call or a new session waits for at
 * most one finish, not for every finish queued before it. Run in arrival order (FIFO), one per turn,
 * they cannot be starved by calls. Without this, an episode that ended in a wave of a thousand queued
 * its successor's start behind the rest of the wave's finishes (seconds), and the successors all
 * started together when the wave was done, so the next wave came as one burst again.
 */
const finishes: (() => Promise<void>)[] = [];
let finishing = false;

function queueFinish(work: () => Promise<void>): void {
  finishes.push(work);
  if (!finishing) {
    finishing = true;
    setImmediate(runNextFinish);
  }
}

function runNextFinish(): void {
  const work = finishes.shift();
  if (!work) {
    finishing = false;
    return;
  }
  // finishSession answers its own failures; the next one is scheduled when this one is done.
  void work().finally(() => setImmediate(runNextFinish));
}

/**
 * Serves one environment over a MessagePort until the host closes it (`close`) or ends it
 * (`finish`: the final state and the checks on it, run here, where the final state already is):
 * the environment lives in this thread for the whole episode while other sessions share the thread.
 */
export async function runSession(host: QuickJSHost, input: SessionInput): Promise<SessionSummary> {
  const { port } = input;
  const watchId = input.watchId ?? 0;
  watchSession(watchId);
  let env: SandboxEnvironment;
  try {
    env = await host.createEnvironmentFromText(input.code, input.initialStateJson, input.limits);
  } catch (err) {
    // The host closes the port after reading this (closing here could overtake the message).
    port.postMessage({ id: 0, ok: false, error: failure(err) } satisfies SessionReply);
    return { calls: 0, closedBy: 'create-failed' };
  }
  port.postMessage({ id: 0, ok: true, value: { tools: env.toolNames } } satisfies SessionReply);
  watchSession(0);
  let calls = 0;
  return new Promise<SessionSummary>(resolve => {
    let done = false;
    const finish = (closedBy: SessionSummary['closedBy']) => {
      if (done) return;
      done = true;
      env.dispose();
      port.removeAllListeners();
      resolve({ calls, closedBy });
    };
    /** The final state, the environment disposed (its module free for the checks), then the checks on the state's text. */
    const finishSession = async (id: number, checks: readonly CheckSpec[]): Promise<void> => {
      watchSession(watchId);
      let reply: SessionReply;
      try {
        let stateJson: string | null = null;
        let stateError: SandboxFailure | null = null;
        try {
          stateJson = env.snapshotText();
        } catch (err) {
          stateError = failure(err);
        }
        env.dispose();
        const results = stateJson !== null && checks.length ? await host.runChecksOnText(checks, stateJson, input.initialStateJson, input.limits) : null;
        reply = { id, ok: true, value: { stateJson, stateError, checks: results && checksResult(results) } satisfies SessionEnd };
      } catch (err) {
        reply = { id, ok: false, error: failure(err) };
      }
      port.postMessage(reply);
      finish('host');
      watchSession(0);
    };
    port.on('close', () => finish('port-closed'));
    port.on('message', (msg: SessionRequest) => {
      watchSession(watchId);
      let reply: SessionReply;
      switch (msg.op) {
        case 'call':
          calls += 1;
          // The result crosses as the guest's JSON text (a CallTextOutcome): one string to copy, parsed once by the host (runner.ts).
          reply = { id: msg.id, ok: true, value: env.callText(msg.tool, msg.arguments) };
          break;
        case 'snapshot':
          try {
            reply = { id: msg.id, ok: true, value: env.snapshotText() };
          } catch (err) {
            reply = { id: msg.id, ok: false, error: failure(err) };
          }
          break;
        case 'finish':
          queueFinish(() => finishSession(msg.id, msg.checks));
          return;
        case 'close':
          port.postMessage({ id: msg.id, ok: true, value: null } satisfies SessionReply);
          finish('host');
          return;
      }
      port.postMessage(reply);
      watchSession(0);
    });
  });
}
