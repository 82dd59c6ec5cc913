import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import { ZodError } from 'zod';
import { ConfigError } from '../config/index.js';
import { isRedisFull } from './redis/full.js';
import { lostWithInterpreter, SANDBOX_ERROR_CODES, SandboxError } from './sandbox/errors.js';

export { ConfigError, isRedisFull };

/** What a job that fails with a code does next (decided by `classifyError`, applied by the worker bootstrap). */
export type ErrorAction = 'retry' | 'give-up' | 'rate-limit' | 'pause-run' | 'wait';

/** Where a failure comes from: a rollout that ends on an `environment` code is an environment error, otherwise a model error. */
export type ErrorArea = 'model' | 'environment' | 'item' | 'run' | 'fleet';

export interface CodeSpec {
  readonly area: ErrorArea;
  readonly action: ErrorAction;
  /** What the code means, for docs/errors.md. */
  readonly means: string;
  /** For docs/errors.md, where the action's usual words do not say what becomes of the job. */
  readonly outcome?: string;
}

const sandboxCodes = Object.fromEntries(
  Object.entries(SANDBOX_ERROR_CODES).map(([code, means]) => [code, { area: 'environment', action: 'retry', means } satisfies CodeSpec]),
) as { readonly [K in keyof typeof SANDBOX_ERROR_CODES]: CodeSpec };

/** The longest one wait for a full sandbox thread (SANDBOX_MEMORY_FULL) lasts; the waits double up to it from ENVFLEET_JOB_BACKOFF_MS. */
export const SANDBOX_FULL_MAX_DELAY_MS = 30_000;

/**
 * Every code an envfleet failure carries, defined once: job failures, the reasons a stage ends an item
 * (an environment failed, a scenario dropped) and the sandbox's codes. Each says where it comes from
 * and what its job does next. docs/errors.md is generated from this table.
 */
export const ERROR_CODES = {
  MODEL_RATE_LIMITED: { area: 'model', action: 'rate-limit', means: '429 from the endpoint (or the fleet-wide limiter is saturated): the whole queue waits for retry-after (none, or one of no wait such as 0: ENVFLEET_RATE_LIMIT_FALLBACK_MS), every process stops sending to that endpoint, and the job goes back without using an attempt; a job still rate limited after ENVFLEET_RATE_LIMIT_PAUSE_MS pauses its run; the message carries what the endpoint said (an exhausted quota, which waiting does not fix)' },
  MODEL_SERVER_ERROR: { area: 'model', action: 'retry', means: '5xx, 408 or 409 from the endpoint: retried with exponential backoff' },
  MODEL_TIMEOUT: { area: 'model', action: 'retry', means: 'no answer within ENVFLEET_MODEL_TIMEOUT_MS: retried; the request counts in the ledger as one without token usage (the endpoint may go on generating, and billing, after the wait ends)' },
  MODEL_CONNECTION: { area: 'model', action: 'retry', means: 'the connection to the endpoint failed after it was made (reset before any answer), or its host name is unknown: retried' },
  MODEL_UNREACHABLE: { area: 'model', action: 'rate-limit', means: 'the endpoint cannot be reached (connection refused, no route to its host, a temporary DNS failure): a server restarting or gone for a while. Treated as a 429 without retry-after: the whole queue waits ENVFLEET_RATE_LIMIT_FALLBACK_MS, every process stops sending to that endpoint meanwhile, and the job goes back without using an attempt; a job still waiting after ENVFLEET_RATE_LIMIT_PAUSE_MS pauses its run' },
  MODEL_UNAVAILABLE: { area: 'model', action: 'rate-limit', means: "the endpoint answered 500, 502, 503 or 504 (or Cloudflare's 520 to 524, its origin down), did not answer within ENVFLEET_MODEL_TIMEOUT_MS, or reset the connection; this worker process has had no other answer from it since the request was sent, and its GET /models (asked at most once per ENVFLEET_RATE_LIMIT_FALLBACK_MS) gets a 5xx or no answer either: an outage (a model server down behind its proxy, loading, or hung), waited for as MODEL_UNREACHABLE is (a 503's Retry-After is honoured), no attempt used; a job still waiting after ENVFLEET_RATE_LIMIT_PAUSE_MS pauses its run. While the endpoint answers other requests or GET /models (any status but a 5xx), the same failures are this request's own and use attempts (MODEL_SERVER_ERROR, MODEL_TIMEOUT, MODEL_CONNECTION), except that 3 answers in a row of 502, 503, 504 (or Cloudflare's 520 to 524) with no other answer between are an outage even while GET /models answers: a gateway (LiteLLM, OpenRouter) lists its models itself while the server behind it is down" },
  MODEL_RESPONSE_MALFORMED: { area: 'model', action: 'retry', means: 'a body that is not JSON, a cut connection or event stream, no choices: retried; an answer that could not be read counts in the ledger as a request without token usage' },
  MODEL_AUTH: { area: 'model', action: 'give-up', means: '401/403: fails at once; fix the API key' },
  MODEL_NOT_FOUND: { area: 'model', action: 'give-up', means: '404: fails at once; fix the base URL or the model name' },
  MODEL_BAD_REQUEST: { area: 'model', action: 'give-up', means: 'any other 4xx: fails at once' },
  MODEL_OUTPUT_INVALID: { area: 'model', action: 'give-up', means: 'structured output still invalid after the repair rounds: the item ends with every validation error recorded' },
  ENDPOINT_REFUSED: { area: 'run', action: 'pause-run', means: "the model endpoint refused the API key (401) in an episode (a rollout, or a reference rollout of scenarios --verify-with): every episode would end the same way, so instead of ending them as model-error (recorded for good, not retried) the run pauses and its jobs are parked, no attempt used; fix the key where the workers read it, restart the workers and resume the run. A 403 or 404 still ends the episode as model-error" },
  BUDGET_EXCEEDED: { area: 'run', action: 'pause-run', means: 'the run reached a token or cost budget: the run pauses and its jobs are parked, no attempt used, until the budget is raised and the run resumed' },
  RUN_CANCELLED: { area: 'run', action: 'give-up', means: 'the run was cancelled: its waiting jobs end without running, a running one at its next model call or when it would write its item' },
  RUN_PAUSED: { area: 'run', action: 'pause-run', means: "the run was paused while the job ran: the job sends no model request after the one on its way; it is parked there, no attempt used, and when the run resumes it runs again, its earlier model calls answered from the response cache (ENVFLEET_CACHE)" },
  SINK_LOCK_LOST: { area: 'fleet', action: 'give-up', means: "the sink's lock on its run expired while Redis was away (or Redis restarted without it, or the sink was stopped longer than the lock lives) and another sink took it: this sink stops, since two sinks of one run would write some trajectories twice. It looks at the lock before each write and again after it: a sink held back between the look and the write says how many lines it wrote late, which the shards may then hold twice (an export keeps one per id); keep one sink per run" },
  SINK_OUTPUT_GONE: { area: 'fleet', action: 'give-up', means: "the shard file the sink was writing was deleted, moved or replaced under it (its output folder removed, say): the sink stops before acknowledging the batch it wrote there, so those trajectories stay in Redis and a sink started again writes them; trajectories acknowledged earlier into a deleted file are lost with it (Redis keeps only their summaries)" },
  RUN_GONE: { area: 'run', action: 'give-up', means: "a command waiting for a run, or a job of it, found the run no longer in Redis: Redis restarted without its data (no AOF or RDB) or the run was deleted; its jobs, documents and counters are gone (the sink's files stay on disk). The command says so instead of reporting the run finished; a job ends without a retry and without writing anything of the run, and each worker process says it once per run" },
  JOB_ABORTED: { area: 'fleet', action: 'retry', means: 'the job was cancelled or its worker is shutting down: a graceful shutdown puts it back in its queue' },
  REDIS_FULL: { area: 'fleet', action: 'wait', outcome: 'the job comes back later (10 s), no attempt used, until Redis has room', means: "Redis refused a write because it has reached its maxmemory (an OOM error under the noeviction policy envfleet requires): nothing of the job is lost, and it goes on once Redis has room. Raise maxmemory (CONFIG SET maxmemory, or the server's configuration) or free room (envfleet runs delete for finished runs)" },
  JOB_TAKEN_OVER: { area: 'fleet', action: 'wait', outcome: 'this worker lets the job go; the worker that took it over goes on; no attempt used', means: "a worker held back past its lock (stopped, a suspended machine, a long pause) found another worker had taken its job over and recorded the step it was making: it lets the job go (no attempt of its own, no failure recorded) and the other worker goes on from the checkpoint; nothing is lost or made twice" },
  JOB_FAILED: { area: 'fleet', action: 'give-up', means: 'the job stalled more than 20 times (the workers running it kept dying: a job that crashes its worker), or BullMQ failed it before its stage ran' },
  INVALID_JOB_DATA: { area: 'fleet', action: 'give-up', means: "job data does not match its queue's schema: refused at enqueue, fails at once in a worker" },
  INVALID_DATA: { area: 'fleet', action: 'give-up', means: 'a value read back does not match its schema: fails at once' },
  UNEXPECTED: { area: 'fleet', action: 'retry', means: 'an error envfleet did not foresee: retried, and logged with its stack' },
  CONFIG_INVALID: { area: 'fleet', action: 'give-up', means: 'a variable or the models file is wrong: the process does not start; the message says what to fix' },
  EXPORT_FOLDER_BUSY: { area: 'fleet', action: 'give-up', means: 'another export is writing into the same folder (export --out) now: two at once would put files of both under one manifest; the message names the other export (its run, process, host and start) and its lock file, to remove only when no export is running (a machine that restarted mid-export)' },
  INVALID_REQUEST: { area: 'fleet', action: 'give-up', means: 'a command asked for something that cannot be done (an unknown run, a bad run name, both or neither of --tasks and --descriptions, resuming a cancelled run): the message says what to fix' },
  INPUT_FILE_INVALID: { area: 'fleet', action: 'give-up', means: 'an input file (tasks, descriptions, bundles, states) is malformed: the command names the file, line and problem' },
  REDIS_UNAVAILABLE: { area: 'fleet', action: 'retry', means: 'Redis does not answer: the process does not start' },
  REDIS_REFUSED: { area: 'fleet', action: 'give-up', means: 'Redis answers but refuses the connection: the credentials of REDIS_URL (NOAUTH, WRONGPASS) or the database it names (beyond the server\'s `databases`); the process does not start, the message says what to fix' },
  REDIS_UNSAFE: { area: 'fleet', action: 'give-up', means: '`maxmemory-policy` is not `noeviction` (or persistence is off and required): a worker does not start' },
  OUTPUT_NOT_WRITABLE: { area: 'fleet', action: 'give-up', means: 'an output folder (export --out, sink --out) cannot be created, or an export file or a sink\'s shard cannot be written: the message names the folder or file and the reason (read-only file system, permission denied, a file in the way, a virtual file system such as /proc, a full disk, a file-size limit); nothing half-written is left under an export file\'s name, and a sink stops before acknowledging what it could not write (started again, it cuts a half-written last line and writes those trajectories)' },
  TRAJECTORY_ARCHIVE_MISSING: { area: 'fleet', action: 'give-up', means: "the sink or an export needs a trajectory's full line and the shard the sink wrote it to is gone or moved: run it where the sink's output directory is, or pass export --trajectories DIR; a shard lost for good: export --skip-missing writes the others and counts those left out (--format verl,prompts,rl reads no shard at all)" },
  CLASS_DOES_NOT_LOAD: { area: 'item', action: 'give-up', means: 'skeleton.assemble: the assembled class still does not load or instantiate after the repair rounds; the environment fails' },
  METHODS_INVALID: { area: 'item', action: 'give-up', means: 'skeleton.assemble: some methods are still missing or do not load after the repair rounds; the environment fails' },
  DUPLICATE_STATE: { area: 'item', action: 'give-up', means: 'scenario.state: the same initial state as a scenario of the environment with a lower index; the scenario is dropped' },
  DUPLICATE_TASK: { area: 'item', action: 'give-up', means: 'scenario.task: the same task (normalized text) as a scenario of the environment with a lower index; the scenario is dropped' },
  LOWER_INDEX_PENDING: { area: 'item', action: 'wait', means: 'scenario.state, scenario.task: a scenario of the same environment with a lower index has not claimed its initial state (or task) yet; duplicates are decided in index order (the lower index is kept), so the job comes back a moment later without using an attempt' },
  ALREADY_SOLVED: { area: 'item', action: 'give-up', means: 'scenario.check: every check is already true on the initial state; the scenario is dropped' },
  UNSOLVABLE: { area: 'item', action: 'give-up', means: 'scenario.verify: no reference rollout solved the scenario; it is dropped' },
  ...sandboxCodes,
  ENV_DISPOSED: {
    area: 'environment',
    action: 'retry',
    outcome:
      'retried with exponential backoff (ENVFLEET_JOB_ATTEMPTS); one lost with a Python interpreter another environment took down comes back later without using an attempt, as SANDBOX_MEMORY_FULL does (ENVFLEET_SANDBOX_FULL_WAITS)',
    means: SANDBOX_ERROR_CODES.ENV_DISPOSED,
  },
  SANDBOX_MEMORY_FULL: {
    area: 'environment',
    action: 'wait',
    means:
      `${SANDBOX_ERROR_CODES.SANDBOX_MEMORY_FULL}. A job that meets it (a rollout, a reference rollout, a probe or a check) met a thread full of the environments of other work of its worker, not a fault of its own environment (one environment is held to ENVFLEET_SANDBOX_ENV_MEMORY_MB and ends with MEMORY_EXCEEDED, also when it alone would not fit the thread's bound): ` +
      `it comes back later without using an attempt, after ENVFLEET_JOB_BACKOFF_MS doubled on each wait, at most ${SANDBOX_FULL_MAX_DELAY_MS / 1000} s, up to ENVFLEET_SANDBOX_FULL_WAITS times (about an hour with the defaults); past them it uses its attempts (ENVFLEET_JOB_ATTEMPTS) as other failures do, and a rollout is then recorded as environment-error with the number of waits in its detail`,
  },
} as const satisfies Record<string, CodeSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;

export const isErrorCode = (value: string): value is ErrorCode => Object.hasOwn(ERROR_CODES, value);

/**
 * Whether an item that ended with `code` ended for a cause outside the item (the endpoint, the API
 * key, the fleet), which the person running the command can fix and then retry by running the same
 * command again: a model or fleet code, except unusable model output (the item's own answer). The
 * submitting commands report these and exit non-zero (cli/submit.ts); item and environment codes (a
 * class that does not load, a duplicate scenario) are outcomes of the pipeline, not failures.
 */
export const isOutsideFailure = (code: string): boolean => isErrorCode(code) && (ERROR_CODES[code].area === 'model' || ERROR_CODES[code].area === 'fleet') && code !== 'MODEL_OUTPUT_INVALID';

/** The code of a failed job's `failedReason` (`[CODE] message`, as the workers record it), or UNEXPECTED. */
export function codeOfFailedReason(reason: string | undefined): ErrorCode {
  const code = /^\[([A-Z_]+)\]/.exec(reason ?? '')?.[1];
  return code !== undefined && isErrorCode(code) ? code : 'UNEXPECTED';
}

/**
 * Every error envfleet raises on purpose is an AppError with a stable `code` from ERROR_CODES.
 * `classifyError` is the one place that decides what a failure means for its job.
 */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;
  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options.details ?? {};
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/** A command asked for something that cannot be done; the message says what to do instead. */
export class RequestError extends AppError {
  constructor(message: string) {
    super('INVALID_REQUEST', message);
  }
}

/** Job data did not match its queue's schema: a retry cannot fix it. */
export class InvalidJobDataError extends AppError {
  constructor(queue: string, issues: string) {
    super('INVALID_JOB_DATA', `invalid job data for queue "${queue}": ${issues}`);
  }
}

/**
 * Not this job's turn yet: it decides something in an order other jobs of its run must reach first
 * (a scenario's duplicates, after the scenarios with lower indexes). Back in `retryAfterMs`, no attempt used.
 */
export class LowerIndexPendingError extends AppError {
  readonly retryAfterMs: number;
  constructor(message: string, retryAfterMs = 1_000) {
    super('LOWER_INDEX_PENDING', message);
    this.retryAfterMs = retryAfterMs;
  }
}

/** The endpoint answered 429, or the fleet-wide limiter is saturated: slow the queue, keep the attempt. */
export class RateLimitedError extends AppError {
  readonly retryAfterMs: number;
  constructor(message: string, retryAfterMs: number, options: { cause?: unknown; details?: Record<string, unknown> } = {}, code: 'MODEL_RATE_LIMITED' | 'MODEL_UNREACHABLE' | 'MODEL_UNAVAILABLE' = 'MODEL_RATE_LIMITED') {
    super(code, message, options);
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * The endpoint cannot be reached at all (refused, no route, DNS for now: MODEL_UNREACHABLE), or it is reached and
 * serves nothing (5xx, no answer, resets, with no other answer since: MODEL_UNAVAILABLE): another attempt in a moment
 * fails the same way until it is back. The queue waits as for a 429, the attempt is kept.
 */
export class EndpointUnreachableError extends RateLimitedError {
  constructor(message: string, retryAfterMs: number, options: { cause?: unknown; details?: Record<string, unknown> } = {}, code: 'MODEL_UNREACHABLE' | 'MODEL_UNAVAILABLE' = 'MODEL_UNREACHABLE') {
    super(message, retryAfterMs, options, code);
  }
}

/** A model request failed; its code (from `modelCodeOfStatus` for HTTP answers) says whether another attempt may fix it. */
export class ModelError extends AppError {}

/** The model's output never matched the stage's schema within the repair bound. */
export class ModelOutputError extends AppError {
  constructor(message: string, details: Record<string, unknown>) {
    super('MODEL_OUTPUT_INVALID', message, { details });
  }
}

/** The run reached a hard budget (tokens or dollars). */
export class BudgetExceededError extends AppError {
  /** `details.stage`: the stage whose own budget was reached, or null for the whole run's (budgetStageOf reads it). */
  constructor(message: string, details: Record<string, unknown> & { readonly stage: string | null }) {
    super('BUDGET_EXCEEDED', message, { details });
  }
}

/** The stage whose own budget a BUDGET_EXCEEDED error names, or null for the whole run's budget. */
export function budgetStageOf(err: unknown): string | null {
  const stage = err instanceof AppError ? err.details['stage'] : undefined;
  return typeof stage === 'string' ? stage : null;
}

/**
 * An episode's model call refused for a reason no episode of the run can get past (the API key, 401): the run pauses
 * (ENDPOINT_REFUSED) rather than ending every remaining episode as model-error.
 */
export class EndpointRefusedError extends AppError {
  constructor(cause: AppError) {
    super('ENDPOINT_REFUSED', `${cause.message} [${cause.code}]`, { cause, details: { ...cause.details } });
  }
}

/** A model call of a run paused while its job ran: the job is parked (workers/bootstrap.ts), not failed. */
export class RunPausedError extends AppError {
  constructor(runId: string, reason: string | null) {
    super('RUN_PAUSED', `run ${runId} was paused${reason ? `: ${reason}` : ''}; the job is parked until it resumes`);
  }
}

/** The run was cancelled: a job of it ends without running. */
export class RunCancelledError extends AppError {
  constructor(runId: string, reason: string | null) {
    super('RUN_CANCELLED', `run ${runId} was cancelled${reason ? `: ${reason}` : ''}`);
  }
}

/**
 * A run that a command was waiting for is no longer in Redis (a Redis that restarted without its data, or a
 * deleted run): said as such, never reported as a run with nothing left to do.
 */
export class RunGoneError extends AppError {
  /**
   * `where`: Redis as describeRedis names it (its password hidden). `afterOutage`: the caller saw Redis stop answering
   * before it found the run gone (so Redis restarted without its data); otherwise the run may as well have been deleted.
   */
  constructor(runId: string, where: string | undefined, afterOutage: boolean) {
    const at = where === undefined ? '' : ` at ${where}`;
    const gone = "Its queued jobs, documents, counters and cached model answers are gone; trajectories a sink wrote stay in its files. Nothing more will happen to it";
    super(
      'RUN_GONE',
      afterOutage
        ? `run "${runId}" is no longer in Redis${at}, which has just come back: Redis restarted without its data (persistence off: no AOF or RDB snapshot) or the run was deleted. ` +
            `${gone}: submit it again (a new run), on a Redis with persistence on (appendonly yes).`
        : `run "${runId}" is no longer in Redis${at}: it was deleted (envfleet runs delete), or Redis restarted without its data (persistence off: no AOF or RDB snapshot). ` +
            `${gone}; if Redis restarted, submit it again (a new run) on a Redis with persistence on (appendonly yes).`,
      { details: { runId } },
    );
  }
}

/** The sink's lock on its run is held by another sink (this one lost it while Redis was away): it stops before writing. */
export class SinkLockLostError extends AppError {
  /** @param wroteAfter trajectories this sink wrote to its shard after the lock had lapsed (it was held back between its look at the lock and its write) */
  constructor(runId: string, lockKey: string, wroteAfter = 0) {
    const after =
      wroteAfter === 0
        ? 'this one stopped before writing anything more'
        : `this one was held back (stopped, suspended) between its look at the lock and its write, and wrote ${wroteAfter} trajector${wroteAfter === 1 ? 'y' : 'ies'} after the lock had lapsed: the sink that took over may write ${wroteAfter === 1 ? 'it' : 'them'} too, so the shards can hold ${wroteAfter === 1 ? 'it' : 'them'} twice (an export keeps one line per trajectory id)`;
    super(
      'SINK_LOCK_LOST',
      `the sink of run "${runId}" lost its lock (${lockKey}) while Redis was away or restarted, or while the sink was held back longer than the lock lives, and another sink holds it now; ${after}. ` +
        'Everything it acknowledged is on disk. Keep one sink per run: stop the other, or let it go on; running this one again waits for the lock.',
      { details: { runId, lockKey, wroteAfter } },
    );
  }
}

/** The shard a sink was writing is no longer at its path (deleted, moved or replaced): its batch is not acknowledged. */
export class SinkOutputGoneError extends AppError {
  constructor(runId: string, path: string, batch: number) {
    super(
      'SINK_OUTPUT_GONE',
      `the sink of run "${runId}" was writing ${path}, and that file was deleted, moved or replaced (its folder removed?): ` +
        `the ${batch} trajector${batch === 1 ? 'y' : 'ies'} it had just written there ${batch === 1 ? 'is' : 'are'} not acknowledged and stay${batch === 1 ? 's' : ''} in Redis; run the sink again (it makes its folder again) and it writes them. ` +
        'Trajectories this sink acknowledged earlier into that file were in it: if it was deleted, their transcripts are gone (Redis keeps only their summaries), unless the file is put back at its path.',
      { details: { runId, path, batch } },
    );
  }
}

/** Another export holds the folder's lock (src/datasets/export.ts). */
export class ExportFolderBusyError extends AppError {
  constructor(dir: string, lockPath: string, holder: string) {
    super(
      'EXPORT_FOLDER_BUSY',
      `another export is writing into ${dir} (${holder}): wait for it to end, or export into another folder. ` +
        `If no export is running there (its machine restarted mid-export, or its process id was reused since), remove ${lockPath} and export again.`,
      { details: { dir, lockPath } },
    );
  }
}

/** Redis is unreachable or configured in a way that loses jobs. */
export class RedisUnsafeError extends AppError {}

/** The job's own abort signal fired (cancelled, or the worker is shutting down). */
export class JobAbortedError extends AppError {
  constructor(message = 'the job was aborted') {
    super('JOB_ABORTED', message);
  }
}

/** Another worker took this job over (this one was held back past its lock) and recorded the step first. */
export class JobTakenOverError extends AppError {
  constructor(message: string) {
    super('JOB_TAKEN_OVER', message);
  }
}

/** A trajectory's full line is not where the sink archived it (a moved or deleted output directory). */
export class ArchivedTrajectoryMissingError extends AppError {
  /** How many trajectories the file does not give. */
  readonly count: number;
  /** Which (all of them). */
  readonly ids: readonly string[];
  /** The file, and what is wrong with it (gone, unreadable, lacking them, a damaged line), without the advice. */
  readonly place: string;
  /** `damaged`: the line of the file that is not a whole trajectory (the file was cut or changed after the sink wrote it). */
  constructor(ids: readonly string[], path: string, cause?: unknown, damaged?: { readonly line: number; readonly problem: string }) {
    const n = ids.length;
    const where = damaged
      ? `, whose line ${damaged.line} is not a whole trajectory (${damaged.problem})`
      : cause
        ? `, which cannot be read (${(cause as Error).message})`
        : `, which does not hold ${n === 1 ? 'it' : 'them'}`;
    const what = damaged
      ? "the file was cut or changed after the sink wrote it (a copy that did not finish, a full disk; the sink itself trims a line it could not finish when it starts again). Copy the shard again from where the sink wrote it (pass export --trajectories DIR if it is elsewhere now); Redis keeps only a summary of a trajectory the sink has written."
      : "Redis keeps only a summary of a trajectory once the sink has written it. Run this where the sink's output directory is, at the same path, or pass export --trajectories DIR with the directory that holds the part-NNNNN.jsonl files now; if the file is lost for good, export --skip-missing writes the others and counts these.";
    super('TRAJECTORY_ARCHIVE_MISSING', `${n} trajector${n === 1 ? 'y' : 'ies'} (first ${ids[0] ?? '?'}) ${n === 1 ? 'was' : 'were'} written by the sink to ${path}${where}; ${what}`, {
      cause,
      details: { path, ids: ids.slice(0, 20), ...(damaged ? { line: damaged.line } : {}) },
    });
    this.count = n;
    this.ids = ids;
    this.place = `${path}${where}`;
  }
}

/**
 * The one mapping from an HTTP status of a model endpoint to a code (and, through ERROR_CODES, to
 * retry / give up / rate-limit). Status 0 is an answer without a status (a proxy that cut the body).
 */
export function modelCodeOfStatus(status: number): ErrorCode {
  if (status === 429) return 'MODEL_RATE_LIMITED';
  if (status === 401 || status === 403) return 'MODEL_AUTH';
  if (status === 404) return 'MODEL_NOT_FOUND';
  if (status === 0 || status === 408 || status === 409 || status >= 500) return 'MODEL_SERVER_ERROR';
  return 'MODEL_BAD_REQUEST';
}

export interface ErrorClass {
  readonly action: ErrorAction;
  readonly code: ErrorCode;
  /** For 'rate-limit': how long the queue should wait; for 'wait': how long the job waits. */
  readonly delayMs?: number;
  /**
   * SANDBOX_MEMORY_FULL (or an environment lost with its Python interpreter) past its bound: the job has waited this
   * many times for sandbox room already, so this failure uses an attempt ('retry') instead.
   */
  readonly waitsSpent?: number;
}

/** What `classifyError` needs to know of the job for a bounded wait: how often it waited for a full sandbox thread, and the bound. */
export interface WaitContext {
  /** Times the job went back for sandbox room (usesSandboxWaits) without using an attempt (workers/bootstrap.ts keeps the count). */
  readonly sandboxFullWaits: number;
  /** ENVFLEET_SANDBOX_FULL_WAITS. */
  readonly maxSandboxFullWaits: number;
  /** ENVFLEET_JOB_BACKOFF_MS: the first wait. */
  readonly backoffMs: number;
}

/** The `waits`-th wait (from 0) for a full sandbox thread: `backoffMs` doubled on each, at most SANDBOX_FULL_MAX_DELAY_MS. */
export function sandboxFullDelayMs(waits: number, backoffMs: number): number {
  return Math.min(SANDBOX_FULL_MAX_DELAY_MS, backoffMs * 2 ** Math.min(waits, 30));
}

/** The code a thrown value carries (UNEXPECTED for errors envfleet did not raise). */
export function codeOf(err: unknown): ErrorCode {
  if (err instanceof AppError || err instanceof SandboxError) return err.code;
  if (err instanceof ConfigError) return 'CONFIG_INVALID';
  if (err instanceof ZodError) return 'INVALID_DATA';
  if (err instanceof APIUserAbortError) return 'JOB_ABORTED';
  if (err instanceof APIConnectionTimeoutError) return 'MODEL_TIMEOUT';
  if (err instanceof APIConnectionError) return 'MODEL_CONNECTION';
  if (err instanceof APIError) return modelCodeOfStatus((err.status as number | undefined) ?? 0);
  if (isRedisFull(err)) return 'REDIS_FULL';
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && isErrorCode(code) ? code : 'UNEXPECTED';
}

/**
 * Decides, for any thrown value, whether its job is retried with backoff, given up, put back
 * without using an attempt while the whole queue waits (rate limit), put back while its run is
 * paused (budget reached), or put back later without using an attempt (wait: not its turn yet, or
 * its sandbox thread full of other work's memory). The only such decision in the code base: it reads
 * ERROR_CODES, and for SANDBOX_MEMORY_FULL (and an environment lost with its Python interpreter, usesSandboxWaits) the job's waits so far (`job`; a job past
 * ENVFLEET_SANDBOX_FULL_WAITS uses its attempts, so a thread that never frees cannot keep it for ever).
 */
export function classifyError(err: unknown, job: WaitContext = { sandboxFullWaits: 0, maxSandboxFullWaits: 1, backoffMs: 2_000 }): ErrorClass {
  const code = codeOf(err);
  const { action } = ERROR_CODES[code];
  if (action === 'rate-limit') return { action, code, delayMs: err instanceof RateLimitedError ? err.retryAfterMs : 5_000 };
  // An environment lost with the Python interpreter another environment took down waits as one that met a full heap:
  // the interpreter is the load's, not the episode's (a stranger's re-probe of τ-bench airline: interpreters stopped 8
  // times under memory pressure took 19 episodes' every attempt, and they were recorded environment-error for good).
  if (usesSandboxWaits(err)) {
    if (job.sandboxFullWaits >= job.maxSandboxFullWaits) return { action: 'retry', code, waitsSpent: job.sandboxFullWaits };
    return { action: 'wait', code, delayMs: sandboxFullDelayMs(job.sandboxFullWaits, job.backoffMs) };
  }
  if (action === 'wait') return { action, code, delayMs: err instanceof LowerIndexPendingError ? err.retryAfterMs : code === 'REDIS_FULL' ? REDIS_FULL_WAIT_MS : 1_000 };
  return { action, code };
}

/**
 * Whether `err` comes back without using an attempt, its waits counted against ENVFLEET_SANDBOX_FULL_WAITS: a full sandbox
 * (SANDBOX_MEMORY_FULL), or an environment lost with the Python interpreter another environment took down.
 */
export const usesSandboxWaits = (err: unknown): boolean => {
  const code = codeOf(err);
  return code === 'SANDBOX_MEMORY_FULL' || (code === 'ENV_DISPOSED' && lostWithInterpreter(err));
};

/** How long a job that met a full Redis waits before it tries again (no attempt used). */
export const REDIS_FULL_WAIT_MS = 10_000;

/** Normalises any thrown value into an Error (for logging and wrapping). */
export function castToError(err: unknown): Error {
  if (err instanceof Error) return err;
  if (typeof err === 'string') return new Error(err);
  try {
    return new Error(JSON.stringify(err));
  } catch {
    return new Error(String(err));
  }
}
