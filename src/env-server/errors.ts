import { cutText } from '../util/text.js';

/**
 * The environment server's own codes: what a trainer's request can run into besides a tool's own
 * sandbox codes (INVALID_ARGUMENTS, UNKNOWN_TOOL, TOOL_THREW, … in src/sandbox/errors.ts).
 * Each protocol surface maps them to its own error shape and status.
 */
export const ENV_SERVER_ERROR_CODES = {
  UNKNOWN_SCENARIO: 'no scenario with that id in the served run',
  SCENARIO_NOT_READY: 'the scenario exists but is not ready (still building, or dropped): it has no checked initial state and checklist',
  NO_SESSION: 'the request carries no session: start one with seed_session first',
  UNKNOWN_SESSION: 'no session with that id on this server or any serve process sharing its Redis (never opened, or ended so long ago its result expired)',
  SESSION_CLOSED: 'the session has ended (finished, closed, idle timeout, an environment limit, or the server ended it); its final state and reward (none when the server ended it) are kept',
  SESSION_LOST: 'the serve process that held the session stopped without ending it (killed, or cut off from Redis): its environment and state are gone',
  PEER_UNREACHABLE: 'the serve process holding the session did not answer the forwarded request (it may be stopping, stalled or just killed)',
  OVER_CAPACITY: 'the server holds its maximum number of sessions: finish or close one, or retry later',
  SESSION_EVICTED: "the session's environment was stopped because its sandbox thread's memory bound (ENVFLEET_SANDBOX_HEAP_MB, shared by the sessions of the thread) was full, or was lost with its Python interpreter, which another session's environment took down (sandbox_code ENV_DISPOSED): the server's doing, not the agent's actions nor the environment's allowance, so the episode has no reward",
  SESSION_INTERRUPTED: 'the serve process holding the session was stopped gracefully (SIGTERM: a rolling restart, a scale-down, a preemption) during the episode and ended it (`ended_by: shutdown`): the server\'s doing, not the agent\'s, so the episode has no reward',
  ENVIRONMENT_FAILED: 'the environment did not start in the sandbox',
  MALFORMED_JSON: 'the request body is not JSON',
  INVALID_REQUEST_BODY: 'the request body is JSON of the wrong shape',
  UNAUTHORIZED: 'a valid token is required (Authorization: Bearer TOKEN)',
  NOT_FOUND: 'no such route',
  INTERNAL: 'the server failed on the request (a defect, or a dependency such as Redis failing)',
} as const;

export type EnvServerErrorCode = keyof typeof ENV_SERVER_ERROR_CODES;

/** How each surface opens a session, for messages that any surface may carry. */
export const NEW_SESSION_HOW = 'POST /seed_session (NeMo Gym), POST /sessions (MCP), openenv/session/create or a /ws reset (OpenEnv)';

/** How each surface reads an ended session's result and reward. */
export const RESULT_HOW = 'POST /verify, POST /sessions/{id}/verify or openenv/session/close';

/** An id a client sent, for a message: quoted, and cut to 200 characters (an id of megabytes is not sent back whole). */
export function shownId(id: string): string {
  if (id.length <= 200) return JSON.stringify(id);
  return `${JSON.stringify(cutText(id, 200))}… (${id.length} UTF-16 code units)`;
}

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

/** The HTTP status of each code on the NeMo Gym surface and the session routes (`{"error": {code, message, …}}`); other sandbox codes are 422. */
export const ENV_SERVER_HTTP_STATUS: Readonly<Record<EnvServerErrorCode | 'UNKNOWN_TOOL' | 'INVALID_ARGUMENTS', number>> = {
  UNKNOWN_SCENARIO: 404,
  SCENARIO_NOT_READY: 409,
  NO_SESSION: 400,
  UNKNOWN_SESSION: 404,
  SESSION_CLOSED: 410,
  SESSION_LOST: 410,
  PEER_UNREACHABLE: 502,
  OVER_CAPACITY: 503,
  SESSION_EVICTED: 503,
  SESSION_INTERRUPTED: 503,
  ENVIRONMENT_FAILED: 500,
  MALFORMED_JSON: 400,
  INVALID_REQUEST_BODY: 400,
  UNAUTHORIZED: 401,
  NOT_FOUND: 404,
  INTERNAL: 500,
  UNKNOWN_TOOL: 404,
  INVALID_ARGUMENTS: 400,
};

/** One row of the environment server's error table in docs/errors.md (scripts/gen-docs.ts). */
export interface EnvServerCodeDoc {
  readonly code: string;
  /** The HTTP status, or the protocol's shape, on each surface. */
  readonly shape: string;
  readonly means: string;
  readonly todo: string;
}

/** How each env-server code shows on the MCP and OpenEnv surfaces, beside its HTTP status. */
const ELSEWHERE: Record<EnvServerErrorCode, string> = {
  UNKNOWN_SCENARIO: 'OpenEnv `/ws`: `VALIDATION_ERROR` with `envfleet_code`; `POST /mcp`: `-32602`, `data.code`; stateless routes: 422',
  SCENARIO_NOT_READY: 'OpenEnv `/ws`: `VALIDATION_ERROR` with `envfleet_code`; `POST /mcp`: `-32602`, `data.code`; stateless routes: 422',
  NO_SESSION: 'NeMo Gym surface only (no cookie)',
  UNKNOWN_SESSION: 'MCP `/sessions/{id}/mcp`: HTTP 404, `-32001`; OpenEnv `POST /mcp`: `-32602`, `data.code`',
  SESSION_CLOSED: 'MCP `/sessions/{id}/mcp`: HTTP 410, `-32002`; OpenEnv `/ws`: `VALIDATION_ERROR` with `envfleet_code`; `POST /mcp`: `-32602`, `data.code`',
  SESSION_LOST: 'MCP `/sessions/{id}/mcp`: HTTP 410, `-32001`, `data.code`; OpenEnv `POST /mcp`: `-32602`, `data.code`',
  PEER_UNREACHABLE: '`Retry-After: 2`; MCP `/sessions/{id}/mcp`: HTTP 502, `-32603`, `data.code`; OpenEnv `POST /mcp`: `-32603`, `data.code`',
  OVER_CAPACITY: '`Retry-After: 1`; OpenEnv `/ws`: `CAPACITY_REACHED`; `POST /mcp`: `-32000`; stateless routes: 503',
  SESSION_EVICTED: 'on the tool call that met it and on verify (with `session_ended`, `sandbox_code`, `envfleet`); MCP `tools/call`: an `isError` result, `structuredContent.code`; OpenEnv `/ws`: `SESSION_ERROR` with `envfleet_code` (the step, the finish action, close); `POST /mcp` and the `/ws` `mcp` message: `-32000`, `data.code`; stateless routes: 503',
  SESSION_INTERRUPTED: 'on verify (`POST /verify`, `POST /sessions/{id}/verify`) through any process sharing the directory, with `session_ended`, `ended_by: shutdown`, `scenario_id` (tool calls and `/sessions/{id}/mcp` get `SESSION_CLOSED`); OpenEnv `/ws`: `SESSION_ERROR` with `envfleet_code`, sent to each connection whose episode the stop cut (instead of a final observation) and on the step, the finish action or close after it; `POST /mcp` and the `/ws` `mcp` message: `-32000`, `data.code`; stateless routes: 503',
  ENVIRONMENT_FAILED: 'OpenEnv `/ws`: `FACTORY_ERROR`; `POST /mcp`: `-32603`, `data.code`; stateless routes: 500',
  MALFORMED_JSON: 'OpenEnv: `INVALID_JSON`, `-32700`',
  INVALID_REQUEST_BODY: '413 over 4 MB; OpenEnv: `VALIDATION_ERROR`, `-32602`',
  UNAUTHORIZED: 'every surface, the `/ws` upgrade too',
  NOT_FOUND: '',
  INTERNAL: 'JSON-RPC endpoints: `-32603`',
};

/** What a client does about each env-server code. */
const TODO: Record<EnvServerErrorCode, string> = {
  UNKNOWN_SCENARIO: "use a scenario_id from the run's exports (rl-verl.json `extra_info.scenario_id`, rl-prompts.jsonl `scenario_id`)",
  SCENARIO_NOT_READY: 'serve only ready scenarios (`envfleet status --run RUN`); skip this one',
  NO_SESSION: 'seed a session first (`POST /seed_session`) and send its cookie back',
  UNKNOWN_SESSION: 'open a new session; behind several serve processes, check they share one Redis (`REDIS_URL` or `ENVFLEET_REDIS_CLUSTER_NODES`, and `ENVFLEET_REDIS_PREFIX`)',
  SESSION_CLOSED: 'verify (or DELETE) still returns its reward (or `SESSION_EVICTED` / `SESSION_INTERRUPTED`: the server ended it, no reward); open a new session to go on',
  SESSION_LOST: 'open a new session and play the episode again; nothing of the lost one can be recovered',
  PEER_UNREACHABLE: 'retry in a few seconds: a stalled process answers again, and the session of a killed one turns SESSION_LOST once its heartbeat expires (10 s)',
  OVER_CAPACITY: 'finish or close a session, or retry later; raise `--max-sessions` if the machine has room',
  SESSION_EVICTED: 'discard the episode (do not train on it: no reward is given) and play its scenario again in a new session; if it repeats, the server holds more sessions than its sandbox memory: lower `--max-sessions`, or raise `ENVFLEET_SANDBOX_HEAP_MB` or `ENVFLEET_POOL_THREADS`',
  SESSION_INTERRUPTED: 'discard the episode (do not train on it: no reward is given) and play its scenario again in a new session, on a process that is not stopping (behind a load balancer, the same address)',
  ENVIRONMENT_FAILED: "open a new session; if it repeats, the environment's code or the sandbox pool is broken: see the server's log",
  MALFORMED_JSON: 'send a JSON body',
  INVALID_REQUEST_BODY: 'send the shape the message names (e.g. `{"scenario_id": "ID"}`), under 4 MB',
  UNAUTHORIZED: 'send `Authorization: Bearer TOKEN` (or `?token=TOKEN` on the `/ws` upgrade)',
  NOT_FOUND: 'check the route (docs/env-server.md)',
  INTERNAL: "retry; if it repeats, report it with the server's log",
};

/**
 * The environment server's error table: its own codes, the sandbox codes as its surfaces show them,
 * the JSON-RPC codes of its MCP and OpenEnv endpoints, and OpenEnv's `/ws` error codes.
 */
export function envServerCodeDocs(): EnvServerCodeDoc[] {
  const own = (Object.keys(ENV_SERVER_ERROR_CODES) as EnvServerErrorCode[]).map(code => ({
    code,
    shape: [`HTTP ${ENV_SERVER_HTTP_STATUS[code]}`, ELSEWHERE[code]].filter(Boolean).join('; '),
    means: ENV_SERVER_ERROR_CODES[code],
    todo: TODO[code],
  }));
  return [
    ...own,
    { code: 'UNKNOWN_TOOL', shape: `HTTP ${ENV_SERVER_HTTP_STATUS.UNKNOWN_TOOL}; MCP and \`POST /mcp\`: an \`isError\` result, \`structuredContent.code\`; OpenEnv \`/ws\`: observation \`error.error_type: tool_not_found\``, means: 'not a tool of the session\'s environment (the message, or `tools`, lists them)', todo: 'call one of the listed tools; the session goes on' },
    { code: 'INVALID_ARGUMENTS', shape: `HTTP ${ENV_SERVER_HTTP_STATUS.INVALID_ARGUMENTS}; MCP and \`POST /mcp\`: an \`isError\` result; OpenEnv \`/ws\`: \`invalid_args\``, means: "the arguments are not an object, or do not match the tool's JSON Schema", todo: 'fix the arguments; the session goes on' },
    { code: 'other sandbox codes', shape: 'HTTP 422 with `session_ended`; MCP and `POST /mcp`: an `isError` result with `code` (and `session_ended`); OpenEnv `/ws`: `timeout` (`DEADLINE_EXCEEDED`) or `execution_error`, and `done: true` with the reward when the environment was discarded', means: '`TOOL_THREW`, `DEADLINE_EXCEEDED`, `MEMORY_EXCEEDED`, `CPU_BUDGET_EXCEEDED`, … (the sandbox codes above): the environment failed the call', todo: 'when `session_ended` is true, the environment was discarded and the session has ended: verify gives its kept result (`ended_by: environment-error`); open a new session to go on. Otherwise the session goes on' },
    { code: '`-32700`', shape: 'JSON-RPC: MCP endpoint (HTTP 400), OpenEnv `POST /mcp` (HTTP 200)', means: 'parse error: the body is not JSON', todo: 'send a JSON-RPC 2.0 message' },
    { code: '`-32600`', shape: 'JSON-RPC: OpenEnv `POST /mcp`, and the `{"type": "mcp"}` message on `/ws`', means: 'not a JSON-RPC request (e.g. `{}`); on `/ws`, also an `mcp` message before `reset`, or `openenv/session/close` of the connection\'s own session', todo: 'send `{"jsonrpc": "2.0", "id", "method", "params"}`' },
    { code: '`-32601`', shape: 'JSON-RPC: OpenEnv `POST /mcp` (and the MCP SDK for methods it does not serve)', means: 'method not found (`initialize` too on `POST /mcp`)', todo: 'use `openenv/session/create`, `tools/list`, `tools/call`, `openenv/session/close`' },
    { code: '`-32602`', shape: 'JSON-RPC: OpenEnv `POST /mcp` and the `/ws` `mcp` message, `data.code` the envfleet code', means: 'bad params, or an unknown scenario or session, a closed session (`UNKNOWN_SCENARIO`, `UNKNOWN_SESSION`, `SESSION_CLOSED`, …)', todo: 'as for `data.code`' },
    { code: '`-32603`', shape: 'JSON-RPC: OpenEnv `POST /mcp` (`data.code: ENVIRONMENT_FAILED`), MCP endpoint (HTTP 500)', means: 'the environment failed, or the server failed on the request', todo: "open a new session; see the server's log" },
    { code: '`-32000`', shape: 'JSON-RPC: OpenEnv `POST /mcp`, `data: {code, active_sessions, max_sessions}`; MCP endpoint: HTTP 405 to GET and DELETE', means: 'over capacity; or a method the stateless MCP endpoint does not serve', todo: 'retry later; POST each MCP message' },
    { code: '`-32001`', shape: 'JSON-RPC: MCP `/sessions/{id}/mcp`, HTTP 404, `data.code: UNKNOWN_SESSION`', means: 'the session in the URL is not known to this server', todo: 'open a session with `POST /sessions`' },
    { code: '`-32002`', shape: 'JSON-RPC: MCP `/sessions/{id}/mcp`, HTTP 410, `data.code: SESSION_CLOSED`', means: 'the session in the URL has ended', todo: '`POST /sessions/{id}/verify` gives its reward; open a new session to go on' },
    { code: 'INVALID_JSON', shape: 'OpenEnv `/ws` `{"type": "error", "data": {message, code}}`, stateless routes 422', means: 'the message is not JSON', todo: 'send JSON; the connection stays open' },
    { code: 'UNKNOWN_TYPE', shape: 'OpenEnv `/ws` error message', means: 'not `reset`, `step`, `state`, `close` or `mcp`', todo: 'send one of those' },
    { code: 'VALIDATION_ERROR', shape: 'OpenEnv `/ws` error message (`errors: [{loc, msg}]`, `envfleet_code`), stateless routes 422', means: 'a malformed action, a step before reset or after the end, an unknown or not-ready scenario', todo: 'fix the message; after the end, `reset` starts a new episode' },
    { code: 'MESSAGE_TOO_LARGE', shape: 'OpenEnv `/ws`: a `VALIDATION_ERROR` error message with `envfleet_code: MESSAGE_TOO_LARGE`, `max_bytes` (and `session_id`, `session_ended: true` when an episode was live), then the close 1009 with a reason', means: 'a `/ws` message over 16 MiB (16,777,216 bytes, the limit of OpenEnv\'s own server): not read; the connection closes and its episode ends as on a disconnect (scored, kept)', todo: 'send smaller messages (a step\'s tool arguments are most of one); `POST /sessions/{id}/verify` gives the ended episode\'s reward; connect again and reset to go on' },
    { code: 'CAPACITY_REACHED', shape: 'OpenEnv `/ws` error message (`active_sessions`, `max_sessions`), stateless routes 503', means: 'over capacity at reset; the connection stays', todo: 'reset again later' },
    { code: 'FACTORY_ERROR', shape: 'OpenEnv `/ws` error message, stateless routes 500', means: 'the environment did not start', todo: "reset again; see the server's log if it repeats" },
    { code: 'SESSION_ERROR', shape: 'OpenEnv `/ws` error message', means: "the connection's session is unknown or closed on the server", todo: 'reset to start a new episode' },
    { code: 'EXECUTION_ERROR', shape: 'OpenEnv `/ws` error message, stateless routes 500', means: 'the server failed on the message', todo: "see the server's log" },
  ];
}
