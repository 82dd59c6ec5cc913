import { MessageChannel, type MessagePort } from 'node:worker_threads';
import type { CheckSpec, EnvironmentCode } from './bundle.js';
import { disposedAfter, SandboxError } from './errors.js';
import { MAX_JSON_DEPTH } from './python/python-harness.mjs';
import { DEFAULT_SANDBOX_LIMITS, type SandboxLimits } from './limits.js';
import { QuickJSHost, type CallOutcome, type CallTextOutcome } from './quickjs-host.js';
import {
  runChecks,
  runProbe,
  runSession,
  type ChecksInput,
  type ChecksResult,
  type ProbeInput,
  type ProbeResult,
  type SessionEnd,
  type SessionReply,
  type SessionRequest,
} from './tasks.js';

type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

/** A live environment held by a sandbox thread for one episode. */
export interface EnvSession {
  readonly tools: readonly string[];
  /**
   * `argsText`: the JSON text `args` was parsed from, when the caller has it (a model's tool call). A Python session
   * reads the arguments from it, as Python parses them (an integer past 2^53 exact, 2.0 a float); JavaScript ignores it.
   */
  call(tool: string, args: unknown, argsText?: string): Promise<CallOutcome>;
  /** The current state (parsed JSON). Rejects with SandboxError (STATE_TOO_LARGE, …). */
  snapshot(): Promise<unknown>;
  /**
   * The current state as the runtime wrote it (JSON text), where parsing it would lose what it says: a Python session's
   * (1.0 a float, an integer past 2^53). Absent for a JavaScript session, whose snapshot loses nothing.
   */
  snapshotJson?(): Promise<string>;
  /**
   * The JSON text of the initial state the session's own checks see, for checks run outside it (an episode's, a
   * served session's reward preview, the other language's): a Python session's is its constructed instance's state
   * (what `__init__` set, floats as floats), which may differ from the config it was given; a JavaScript session's
   * is the state it was given. Rejects with SandboxError as `snapshot` does.
   */
  initialState(): Promise<string>;
  /**
   * Ends the session in one round trip: the final state as JSON text, and `checks` run on it (and
   * on the initial state) in the session's own thread, so neither state crosses threads for them.
   * The session is closed afterwards. Rejects with SandboxError (SANDBOX_UNAVAILABLE) when the
   * thread went away; a state that cannot be read is `stateError`.
   */
  finish(checks: readonly CheckSpec[]): Promise<SessionEnd>;
  close(): Promise<void>;
}

/** How a session is opened, beyond its code, state and limits. */
export interface OpenOptions {
  /**
   * How long the start may wait for room where the sandbox is full of other environments before it is refused
   * (SANDBOX_MEMORY_FULL), in ms. A Python interpreter waits for another environment to end (a rollout's episode: its
   * job would otherwise go back to the queue and run the episode again); a JavaScript thread answers at once whatever it
   * is given, as does every start without it (a served session's open, answered OVER_CAPACITY).
   */
  readonly roomWaitMs?: number;
  /**
   * Aborted when its caller no longer wants the session (a cancelled run, a worker stopping): a start still waiting for
   * room stops waiting and is refused (SANDBOX_MEMORY_FULL). One already being created goes on, and its session is
   * handed back as usual, for the caller to close.
   */
  readonly signal?: AbortSignal;
}

/**
 * What stages need from the sandbox. The pool implementation (workers/sandbox-pool.ts) runs
 * everything in piscina threads; the local one runs in the calling thread (tests, the CLI).
 */
export interface SandboxRunner {
  probe(input: ProbeInput): Promise<ProbeResult>;
  checks(input: ChecksInput): Promise<ChecksResult>;
  /** `initialStateJson`: the same state as JSON.stringify writes it, when the caller keeps it (it is then not written again). */
  openSession(code: EnvironmentCode, initialState: unknown, limits: SandboxLimits, initialStateJson?: string, options?: OpenOptions): Promise<EnvSession>;
  close(): Promise<void>;
}

/** The initial state's JSON text for a session task; rejects a state JSON cannot write as createEnvironment does. */
export function sessionStateJson(initialState: unknown, initialStateJson?: string): string {
  const json = initialStateJson ?? JSON.stringify(initialState);
  if (json === undefined) throw new SandboxError('STATE_INVALID', 'the initial state is not JSON');
  return json;
}

/** A call's outcome as the session's thread sent it (the result as JSON text), with the result parsed. */
function outcomeOf(sent: CallTextOutcome): CallOutcome {
  const result: unknown = JSON.parse(sent.resultJson);
  return sent.runtimeError === undefined ? { result, us: sent.us } : { result, runtimeError: sent.runtimeError, us: sent.us };
}

/**
 * Whether `value` nests arrays and objects more than `max` levels deep, walked without recursion: a model's tool call
 * can nest its arguments thousands of levels deep, and a structured clone of them (postMessage) then overflowed the
 * host's stack (RangeError) and took the whole probe or episode down with it.
 */
export function nestsDeeperThan(value: unknown, max: number): boolean {
  if (value === null || typeof value !== 'object') return false;
  const stack: [object, number][] = [[value, 1]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (depth > max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (child !== null && typeof child === 'object') stack.push([child as object, depth + 1]);
    }
  }
  return false;
}

/** A call's outcome as a thread sends one that a limit ended: {success: false, error} with the code. */
const failedCall = (code: SandboxError['code'], message: string): CallTextOutcome => ({ resultJson: JSON.stringify({ success: false, error: message }), runtimeError: code, us: 0 });

/** The host end of a session port; `started` resolves once the thread has created the environment. */
export function connectSession(port: MessagePort, initialStateJson: string): { started: Promise<EnvSession>; stop(err: SandboxError): void } {
  let seq = 0;
  const pending = new Map<number, { op: SessionRequest['op']; resolve(v: unknown): void; reject(e: Error): void }>();
  let closed = false;
  let rejectStarted: ((err: Error) => void) | undefined;
  /**
   * Ends the session from this side with `err` (its thread is being terminated: src/sandbox/watchdog.ts): a call
   * waiting for its answer gets it as the call's outcome ({success: false, error}, runtimeError the code), as a
   * deadline met inside the thread gives it; anything else waiting is rejected with it.
   */
  let stoppedBy: SandboxError | null = null;
  const stop = (err: SandboxError): void => {
    if (closed) return;
    closed = true;
    // Said as what it is for the calls after it (they did not run): the call that was stopped, and why.
    stoppedBy = new SandboxError('ENV_DISPOSED', disposedAfter(err.code, err.message));
    for (const p of pending.values()) {
      if (p.op === 'call') p.resolve(failedCall(err.code, err.message));
      else p.reject(err);
    }
    pending.clear();
    rejectStarted?.(err);
    port.close();
  };
  const failAll = (message: string) => {
    closed = true;
    for (const p of pending.values()) p.reject(new SandboxError('SANDBOX_UNAVAILABLE', message));
    pending.clear();
  };
  const request = (msg: WithoutId<SessionRequest>): Promise<unknown> => {
    if (closed && stoppedBy && msg.op === 'call') return Promise.resolve(failedCall('ENV_DISPOSED', stoppedBy.message));
    if (closed) return Promise.reject(stoppedBy ?? new SandboxError('SANDBOX_UNAVAILABLE', 'the session is closed'));
    const id = ++seq;
    return new Promise((resolve, reject) => {
      pending.set(id, { op: msg.op, resolve, reject });
      port.postMessage({ ...msg, id });
    });
  };
  const started = new Promise<EnvSession>((resolveStart, rejectStart) => {
    rejectStarted = rejectStart;
    port.on('close', () => {
      failAll('the sandbox thread holding this environment ended');
      rejectStart(new SandboxError('SANDBOX_UNAVAILABLE', 'the sandbox thread ended before the environment was created'));
    });
    port.on('message', (reply: SessionReply) => {
      if (reply.id === 0) {
        if (!reply.ok) {
          closed = true;
          port.close();
          rejectStart(new SandboxError(reply.error.code, reply.error.message));
          return;
        }
        const tools = (reply.value as { tools: string[] }).tools;
        resolveStart({
          tools,
          call: async (tool, args) => {
            // Refused here, before the copy to the thread (the environment never sees them, and goes on).
            if (nestsDeeperThan(args, MAX_JSON_DEPTH)) return outcomeOf(failedCall('INVALID_ARGUMENTS', `the arguments of ${tool} nest arrays and objects more than ${MAX_JSON_DEPTH} levels deep: give them flatter`));
            return outcomeOf((await request({ op: 'call', tool, arguments: args })) as CallTextOutcome);
          },
          snapshot: async () => JSON.parse((await request({ op: 'snapshot' })) as string) as unknown,
          initialState: () => (closed ? Promise.reject(new SandboxError('SANDBOX_UNAVAILABLE', 'the session is closed')) : Promise.resolve(initialStateJson)),
          finish: async checks => {
            const end = (await request({ op: 'finish', checks })) as SessionEnd;
            closed = true;
            port.close();
            return end;
          },
          close: async () => {
            if (closed) return;
            try {
              await request({ op: 'close' });
            } catch (err) {
              // Already gone (its thread ended): closing it is done.
              if (!(err instanceof SandboxError && err.code === 'SANDBOX_UNAVAILABLE')) throw err;
            }
            closed = true;
            port.close();
          },
        });
        return;
      }
      const p = pending.get(reply.id);
      if (!p) return;
      pending.delete(reply.id);
      if (reply.ok) p.resolve(reply.value);
      else p.reject(new SandboxError(reply.error.code, reply.error.message));
    });
  });
  return { started, stop };
}

/**
 * Runs the sandbox in the calling thread (still QuickJS: untrusted code never runs in Node itself),
 * with `heapMb` as the bound on its WebAssembly memory.
 */
export function createLocalSandboxRunner(heapMb: number = DEFAULT_SANDBOX_LIMITS.heapMb): SandboxRunner {
  const host = new QuickJSHost(heapMb);
  return {
    probe: input => runProbe(host, input),
    checks: input => runChecks(host, input),
    async openSession(code, initialState, limits, initialStateJson) {
      const json = sessionStateJson(initialState, initialStateJson);
      const { port1, port2 } = new MessageChannel();
      void runSession(host, { code, initialStateJson: json, limits, port: port2 });
      return connectSession(port1, json).started;
    },
    close: () => Promise.resolve(),
  };
}
