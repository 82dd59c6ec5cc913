import { cutText } from '../util/text.js';
import { MAX_JSON_DEPTH } from './python/python-harness.mjs';

/**
 * Stable codes for everything the sandbox can refuse or stop. They appear in tool results
 * (`runtimeError`), check results (`error`), the CLI's JSON and the datasets.
 */
export const SANDBOX_ERROR_CODES = {
  DEADLINE_EXCEEDED: 'the call ran past its deadline and was interrupted',
  MEMORY_EXCEEDED: 'the environment ran out of its memory allowance (ENVFLEET_SANDBOX_ENV_MEMORY_MB), or needed more than its sandbox thread’s whole bound (ENVFLEET_SANDBOX_HEAP_MB) holds even alone in it, even if its code caught the out-of-memory error (environment discarded)',
  SANDBOX_MEMORY_FULL: 'the sandbox thread’s memory bound (ENVFLEET_SANDBOX_HEAP_MB, summed over its environments) left no room: the environment that needed more was stopped (discarded), or a new one could not be created; in the Python runtime, the interpreter’s heap (ENVFLEET_PYTHON_HEAP_MB, shared by its environments) had no room for a call while another environment held most of it (that one is stopped)',
  CPU_BUDGET_EXCEEDED: 'the session used up its CPU budget (ENVFLEET_SANDBOX_SESSION_CPU_MS, summed over its calls): the session ends (environment discarded)',
  STACK_OVERFLOW: 'the call recursed too deeply',
  INVALID_ARGUMENTS: 'the arguments do not match the tool’s JSON Schema',
  UNKNOWN_TOOL: 'no such tool in this environment',
  TOOL_THREW: 'the method threw an exception',
  NON_JSON_RESULT: `the method returned something that is not JSON (undefined, a cycle, a BigInt, a promise) or that JSON would write without a word (a Map, Set or typed array as {}, NaN or Infinity as null; the message names where), or a value nested more than ${MAX_JSON_DEPTH} levels deep (the session goes on)`,
  RESULT_TOO_LARGE: 'the result is larger than the result cap',
  STATE_TOO_LARGE: 'the state is larger than the state cap',
  STATE_INVALID: `this.state is missing or not JSON-serializable, or holds what JSON would write without a word (a Map, Set or typed array as {}, NaN or Infinity as null; the message names where), or a state nested more than ${MAX_JSON_DEPTH} levels deep: the environment's state, its initial state, or (in the Python runtime) a state given to checks (the session goes on)`,
  SOURCE_LOAD_FAILED: 'the environment source does not load (syntax error, import, or a throw at load time)',
  CLASS_MISSING: 'the source does not declare the named class',
  TOOL_SCHEMA_INVALID: 'a tool’s parameters schema does not compile: invalid JSON Schema, past the size or depth caps, or a "pattern" the linear-time regular expression engine refuses',
  CONSTRUCTOR_FAILED: 'the constructor threw on the initial state',
  ENV_DISPOSED: 'the environment was thrown away after hitting a limit, or (Python) lost with its interpreter, which another environment took down: a rollout then runs its episode again (its job comes back without using an attempt, as for SANDBOX_MEMORY_FULL, up to ENVFLEET_SANDBOX_FULL_WAITS times), a served session is evicted unscored (SESSION_EVICTED)',
  SANDBOX_UNAVAILABLE: 'the sandbox thread holding the environment ended, or the session was closed; at start-up, the sandbox pool could not start its threads (the worker does not start)',
  CHECK_INVALID: 'the check source does not load or does not define check()',
  CHECK_NOT_BOOLEAN: 'the check function returned something other than true or false',
  CHECK_THREW: 'the check function threw an exception',
  CHECK_NEEDS_EPISODE: 'the check reads the episode (its transcript) but none was given: a served session, or a state checked on its own',
} as const;

export type SandboxErrorCode = keyof typeof SANDBOX_ERROR_CODES;

/** Codes after which the environment is discarded: limits and unknown internal states. */
export const FATAL_CODES: ReadonlySet<SandboxErrorCode> = new Set<SandboxErrorCode>([
  'DEADLINE_EXCEEDED',
  'MEMORY_EXCEEDED',
  'SANDBOX_MEMORY_FULL',
  'CPU_BUDGET_EXCEEDED',
  'STACK_OVERFLOW',
]);

/** Codes after which a session's environment is gone: a caller opens a new session to go on. */
export const ENDS_SESSION: ReadonlySet<string> = new Set<string>([...FATAL_CODES, 'ENV_DISPOSED']);

/**
 * ENV_DISPOSED's message for the calls (and the snapshot) after the one that met a limit: which limit it was, and what
 * it said (at most 300 characters), so that a later call does not read as if it had met the limit itself. The Python
 * child words it the same (python-child.mjs, lostMessage).
 */
export function disposedAfter(code: string, message: string): string {
  return `the environment was thrown away after an earlier call hit a limit (${code}: ${cutText(message, 300)}${message.length > 300 ? '…' : ''})`;
}

export class SandboxError extends Error {
  readonly code: SandboxErrorCode;
  /** ENV_DISPOSED only: the environment was lost with its Python interpreter, which another environment took down. */
  readonly lostWith?: 'interpreter';
  constructor(code: SandboxErrorCode, message: string, lostWith?: 'interpreter') {
    super(message);
    this.name = new.target.name;
    this.code = code;
    if (lostWith) this.lostWith = lostWith;
  }
}

/**
 * SANDBOX_MEMORY_FULL met by an episode (a rollout, or a reference rollout of scenario.verify): its sandbox thread
 * had no room, which says how busy the worker was rather than what the environment does. Thrown out of the
 * episode, so that its job comes back later without using an attempt instead of recording it (src/rollouts/episode.ts;
 * classifyError's 'wait', bounded by ENVFLEET_SANDBOX_FULL_WAITS per job).
 */
export class SandboxFullError extends SandboxError {
  constructor(message: string) {
    super('SANDBOX_MEMORY_FULL', message);
  }

  /**
   * The error for work that met a full thread `where` (the environment did not start, a call was stopped, a check could
   * not run…), with the sandbox's `message`. That says how busy the worker's thread was (ENVFLEET_SANDBOX_HEAP_MB, summed
   * over the environments of its concurrent work), not what the environment does (one environment is held to
   * ENVFLEET_SANDBOX_ENV_MEMORY_MB, well below the thread's bound, and stopped with MEMORY_EXCEEDED first): the job comes
   * back later without using an attempt, up to ENVFLEET_SANDBOX_FULL_WAITS times (its model calls come from the response cache).
   */
  static at(where: string, message: string): SandboxFullError {
    // A Python interpreter's heap (its message names the setting) is shared as a JavaScript sandbox thread's is.
    const [what, room] = message.includes('ENVFLEET_PYTHON_HEAP_MB')
      ? ["A Python interpreter's memory", 'ENVFLEET_PYTHON_HEAP_MB or ENVFLEET_PYTHON_INTERPRETERS']
      : ["The sandbox thread's memory", 'ENVFLEET_SANDBOX_HEAP_MB or ENVFLEET_POOL_THREADS'];
    return new SandboxFullError(
      `${where}: ${message}. ${what} is shared by the environments of the work the worker runs at once, so the job comes back later without using an attempt; if this keeps happening, raise ${room}, or lower ENVFLEET_ROLLOUT_CONCURRENCY (or ENVFLEET_WORKER_CONCURRENCY)`,
    );
  }
}

/**
 * An episode's environment lost with its Python interpreter, which another environment took down (a call that swallowed
 * the interrupt, a fatal error, tampering: the runtime marks such an environment `lostWith: 'interpreter'`; never the
 * one whose own call did it, which ends with its own failure). The episode played nothing wrong, so it is not recorded:
 * thrown out of it, its job comes back and runs it again without using an attempt (classifyError's 'wait', counted as
 * SANDBOX_MEMORY_FULL's waits are: past ENVFLEET_SANDBOX_FULL_WAITS it uses attempts, so an interpreter taken down again
 * and again cannot hold the job for ever); its model calls come from the response cache.
 */
export class InterpreterLostError extends SandboxError {
  constructor(message: string) {
    super('ENV_DISPOSED', message, 'interpreter');
  }

  static at(where: string, message: string): InterpreterLostError {
    return new InterpreterLostError(
      `${where}: ${message}. Another environment took down the Python interpreter this one shared, so nothing of it is recorded: such an episode's job runs it again without using an attempt while it has waits left (ENVFLEET_SANDBOX_FULL_WAITS), then with its attempts (ENVFLEET_JOB_ATTEMPTS); model calls come from the response cache`,
    );
  }
}

/** Whether `err` (a SandboxError, a call's outcome, a state's failure) says its environment was lost with an interpreter another environment took down. */
export const lostWithInterpreter = (err: unknown): boolean => (err as { lostWith?: unknown } | null | undefined)?.lostWith === 'interpreter';
