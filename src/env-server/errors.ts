/**
 * The environment server's own codes: what a trainer's request can run into besides a tool's own
 * sandbox codes (INVALID_ARGUMENTS, UNKNOWN_TOOL, TOOL_THREW, … in src/sandbox/errors.ts).
 * Each protocol surface maps them to its own error shape and status.
 */
export const ENV_SERVER_ERROR_CODES = {
  UNKNOWN_SCENARIO: 'no scenario with that id in the served run',
  SCENARIO_NOT_READY: 'the scenario exists but is not ready (still building, or dropped): it has no checked initial state and checklist',
  NO_SESSION: 'the request carries no session: start one with seed_session first',
  UNKNOWN_SESSION: 'no session with that id on this server (never opened here, or ended so long ago it was forgotten)',
  SESSION_CLOSED: 'the session has ended (finished, closed, idle timeout or an environment limit); its final state and reward are kept',
  OVER_CAPACITY: 'the server holds its maximum number of sessions: finish or close one, or retry later',
  ENVIRONMENT_FAILED: 'the environment did not start in the sandbox',
  MALFORMED_JSON: 'the request body is not JSON',
  INVALID_REQUEST_BODY: 'the request body is JSON of the wrong shape',
  UNAUTHORIZED: 'a valid token is required (Authorization: Bearer TOKEN)',
  NOT_FOUND: 'no such route',
} as const;

export type EnvServerErrorCode = keyof typeof ENV_SERVER_ERROR_CODES;

export class EnvServerError extends Error {
  readonly code: EnvServerErrorCode;
  readonly details: Readonly<Record<string, unknown>>;
  constructor(code: EnvServerErrorCode, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.details = details;
  }
}
