import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
  RateLimitError,
} from 'openai';
import { ZodError } from 'zod';
import { ConfigError } from '../config/index.js';

export { ConfigError };

/**
 * Every error envfleet raises on purpose is an AppError with a stable `code` (listed in the
 * README). `classifyError` is the one place that decides what a failure means for its job.
 */
export class AppError extends Error {
  readonly code: string;
  readonly details: Readonly<Record<string, unknown>>;
  constructor(code: string, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options.details ?? {};
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/** Job data did not match its queue's schema: a retry cannot fix it. */
export class InvalidJobDataError extends AppError {
  constructor(queue: string, issues: string) {
    super('INVALID_JOB_DATA', `invalid job data for queue "${queue}": ${issues}`);
  }
}

/** The endpoint answered 429, or the fleet-wide limiter is saturated: slow the queue, keep the attempt. */
export class RateLimitedError extends AppError {
  readonly retryAfterMs: number;
  constructor(message: string, retryAfterMs: number, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super('MODEL_RATE_LIMITED', message, options);
    this.retryAfterMs = retryAfterMs;
  }
}

/** A model request failed in a way another attempt may fix (5xx, timeout, connection, unreadable body). */
export class ModelTransientError extends AppError {}

/** A model request failed in a way no retry fixes (401/403/404/400/422). */
export class ModelRequestError extends AppError {}

/** The model's output never matched the stage's schema within the repair bound. */
export class ModelOutputError extends AppError {
  constructor(message: string, details: Record<string, unknown>) {
    super('MODEL_OUTPUT_INVALID', message, { details });
  }
}

/** The run reached a hard budget (tokens or dollars). */
export class BudgetExceededError extends AppError {
  constructor(message: string, details: Record<string, unknown>) {
    super('BUDGET_EXCEEDED', message, { details });
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

/** A trajectory's full line is not where the sink archived it (a moved or deleted output directory). */
export class ArchivedTrajectoryMissingError extends AppError {
  constructor(ids: readonly string[], path: string, cause?: unknown) {
    const n = ids.length;
    const where = cause ? `, which cannot be read (${(cause as Error).message})` : `, which does not hold ${n === 1 ? 'it' : 'them'}`;
    super(
      'TRAJECTORY_ARCHIVE_MISSING',
      `${n} trajector${n === 1 ? 'y' : 'ies'} (first ${ids[0] ?? '?'}) ${n === 1 ? 'was' : 'were'} written by the sink to ${path}${where}; ` +
        "Redis keeps only a summary of a trajectory once the sink has written it. Run this where the sink's output directory is, at the same path, or pass export --trajectories DIR with the directory that holds the part-NNNNN.jsonl files now.",
      { cause, details: { path, ids: ids.slice(0, 20) } },
    );
  }
}

export type ErrorAction = 'retry' | 'give-up' | 'rate-limit' | 'pause-run';

export interface ErrorClass {
  readonly action: ErrorAction;
  readonly code: string;
  /** For 'rate-limit': how long the queue should wait. */
  readonly delayMs?: number;
}

/**
 * Decides, for any thrown value, whether its job is retried with backoff, given up, put back
 * without using an attempt while the whole queue waits (rate limit), or put back while its run is
 * paused (budget reached). The only such decision in the code base.
 */
export function classifyError(err: unknown): ErrorClass {
  if (err instanceof RateLimitedError) return { action: 'rate-limit', code: err.code, delayMs: err.retryAfterMs };
  if (err instanceof AppError) {
    switch (err.code) {
      case 'INVALID_JOB_DATA':
      case 'CONFIG_INVALID':
      case 'MODEL_OUTPUT_INVALID':
      case 'MODEL_AUTH':
      case 'MODEL_BAD_REQUEST':
      case 'MODEL_NOT_FOUND':
        return { action: 'give-up', code: err.code };
      case 'BUDGET_EXCEEDED':
        // The run stops spending: its jobs wait (no attempt used) until the budget is raised and the run resumed.
        return { action: 'pause-run', code: err.code };
      default:
        return err instanceof ModelRequestError ? { action: 'give-up', code: err.code } : { action: 'retry', code: err.code };
    }
  }
  if (err instanceof ConfigError) return { action: 'give-up', code: err.code };
  if (err instanceof ZodError) return { action: 'give-up', code: 'INVALID_DATA' };
  if (err instanceof RateLimitError) return { action: 'rate-limit', code: 'MODEL_RATE_LIMITED', delayMs: 5_000 };
  if (err instanceof APIUserAbortError) return { action: 'retry', code: 'JOB_ABORTED' };
  if (err instanceof APIConnectionTimeoutError) return { action: 'retry', code: 'MODEL_TIMEOUT' };
  if (err instanceof APIConnectionError) return { action: 'retry', code: 'MODEL_CONNECTION' };
  if (err instanceof APIError) {
    const status: number = (err.status as number | undefined) ?? 0;
    if (status === 408 || status === 409 || status >= 500) return { action: 'retry', code: 'MODEL_SERVER_ERROR' };
    if (status > 0) return { action: 'give-up', code: 'MODEL_BAD_REQUEST' };
  }
  return { action: 'retry', code: 'UNEXPECTED' };
}

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
