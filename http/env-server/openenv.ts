import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Express, NextFunction, Request, Response } from 'express';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { EnvServerError } from '../../src/env-server/errors.js';
import { NOT_SCORED_CODES, notScored, notScoredError, scoredResult, type ServerEndedResult, type SessionInfo, type SessionRegistry, type SessionResult } from '../../src/env-server/sessions.js';
import type { Logger } from '../../src/logger.js';
import type { FunctionTool } from '../../src/sandbox/bundle.js';
import type { CallOutcome } from '../../src/sandbox/quickjs-host.js';
import { SANDBOX_ERROR_CODES } from '../../src/sandbox/errors.js';
import { RawJson, stringifyJson } from '../../src/util/raw-json.js';
import { jsonMemberText } from '../../src/util/json-member.js';
import { cutUtf8 } from '../../src/util/text.js';
import { pathToken } from './path-token.js';
import { sendJson } from './reply.js';
import { bodyOf, bodyText, isObject, rpcArgumentsText } from './request-body.js';

/**
 * OpenEnv's surface (meta-pytorch/OpenEnv `http_server.py`, `types.py`, `mcp_types.py`; docs/env-server.md#openenv):
 * the WebSocket `/ws` (one episode per connection: reset with a scenario id, step with MCP-style `call_tool` /
 * `list_tools` actions, state, close), `GET /metadata`, `GET /schema`, `GET /openapi.json`, and the stateless
 * `POST /reset`, `POST /step`, `GET /state` (a throwaway session per request), and OpenEnv's JSON-RPC `POST /mcp`.
 */

/** The control-only action that ends the episode with its reward; never listed as a tool. */
export const FINISH_TOOL = '__envfleet_finish__';

/** Steps (tool calls) per WebSocket episode before it ends with its reward. */
export const DEFAULT_MAX_STEPS = 100;

export interface OpenEnvOptions {
  readonly token: string | null;
  readonly runId: string;
  readonly maxSteps?: number;
  /** How often each `/ws` client is pinged (ENVFLEET_SERVE_WS_PING_MS); one that missed the previous ping is dropped. 0 or absent: never. */
  readonly pingIntervalMs?: number;
}

/**
 * The largest `/ws` message the server reads: 16 MiB, as OpenEnv's own server (uvicorn's `ws_max_size`). The frame
 * header says the length, so a larger message is refused before it is held in memory (MESSAGE_TOO_LARGE, close 1009).
 */
export const MAX_WS_MESSAGE_BYTES = 16 * 1024 * 1024;
/**
 * Flow control of a `/ws` connection: while more than MAX_WS_UNSENT_BYTES of replies to a client are not yet flushed
 * to its connection (taken by the server's kernel: proof the client reads, though not that it read them), the server
 * answers none of its messages and reads no more of them; its next messages wait in its own socket and TCP holds its
 * sends. So a client that stopped reading costs the server at most the cap plus one reply (a reply can quote the
 * message it answers: an unknown type is echoed whole, so one reply is of the order of one message, ≤ 16 MiB before
 * JSON escapes). The server also stops reading while MAX_WS_QUEUED_MESSAGES messages, or MAX_WS_MESSAGE_BYTES of them,
 * wait their turn (a client that sends faster than its steps run); the messages of a read already under way still
 * arrive, so the queue can pass those by one read's worth: 64 KiB of small messages, or one more message of up to
 * MAX_WS_MESSAGE_BYTES. Without it, a client whose loop stopped while it still sent made the server keep every reply,
 * and every message, in memory. A flushed reply proves only that the connection still takes data; a client that
 * stopped reading is found by the heartbeat once its socket buffers (both kernels', a few MB measured) are full.
 */
export const MAX_WS_UNSENT_BYTES = 16 * 1024 * 1024;
export const MAX_WS_QUEUED_MESSAGES = 64;

/** A close frame's reason: at most 123 bytes of UTF-8 (RFC 6455 5.5: a control frame's 125 bytes, less the 2-byte code). */
export const MAX_CLOSE_REASON_BYTES = 123;

/** Close code 1009, "message too big" (RFC 6455 7.4.1). */
const CLOSE_TOO_BIG = 1009;

/** The codes of the errors `ws` emits after it closed a connection with 1009 for a message over the cap (or a frame longer than 2^53 - 1). */
const TOO_LARGE_ERRORS: ReadonlySet<string> = new Set(['WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH']);

/** A close reason cut to what a close frame carries, between characters (`ws` throws on a longer one). */
export const closeReason = (text: string): string => cutUtf8(text, MAX_CLOSE_REASON_BYTES);

const VERSION: string = (() => {
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'envfleet' && pkg.version) return pkg.version;
    } catch {
      // not there: the other layout (source or dist)
    }
  }
  return '0.0.0';
})();

/** The OpenEnv HTTP API this surface implements (OpenEnv's `create_fastapi_app` declares 1.0.0). */
export const OPENENV_HTTP_API_VERSION = '1.0.0';


type ToolErrorType = 'execution_error' | 'invalid_args' | 'transport_error' | 'tool_not_found' | 'timeout';

interface ObservationMessage {
  readonly observation: Record<string, unknown>;
  readonly reward: number | null;
  readonly done: boolean;
}

const toolDefsOf = (info: SessionInfo): readonly FunctionTool[] => (info as SessionInfo & { toolDefs?: readonly FunctionTool[] }).toolDefs ?? [];

/** The tools as OpenEnv's `ListToolsObservation` gives them (snake_case `input_schema`). */
function toolList(info: SessionInfo) {
  const defs = new Map(toolDefsOf(info).map(t => [t.function.name, t.function]));
  return info.tools.map(name => ({
    name,
    description: defs.get(name)?.description ?? '',
    input_schema: defs.get(name)?.parameters ?? { type: 'object', properties: {} },
  }));
}

/**
 * A result as a FastMCP-backed OpenEnv environment serializes its `CallToolResult`. With `text` (the runtime's own
 * JSON of the value: a Python tool's), the text and the value are sent as that text, so a client reads what the tool
 * returned (an integer past 2^53, 1.0), not the value as JavaScript wrote it again: replies go out by stringifyJson.
 */
function callResult(value: unknown, text?: string) {
  const sent = text === undefined ? value : new RawJson(text);
  return {
    content: [{ type: 'text', text: text ?? JSON.stringify(value) ?? 'null' }],
    structured_content: isObject(value) ? sent : { result: sent },
    data: sent,
    is_error: false,
  };
}

const errorTypeOf = (code: string): ToolErrorType => (code === 'INVALID_ARGUMENTS' ? 'invalid_args' : code === 'UNKNOWN_TOOL' ? 'tool_not_found' : code === 'DEADLINE_EXCEEDED' ? 'timeout' : 'execution_error');

/** The reward sent for an ended episode: the checks' fraction (0 when none could run); none for one the server ended (evicted, or cut by its stop). */
const rewardOf = (r: SessionResult) => (notScored(r) ? null : (r.reward ?? 0));

const endSummary = (r: SessionResult) => ({ reward: r.reward, solved: r.solved, checks: r.checks, checks_error: r.checksError, ended_by: r.endedBy, detail: r.detail, calls: r.calls });

/** An error of the `{type: "error", data: {message, code, …}}` envelope. */
class OpenEnvError extends Error {
  constructor(
    readonly code: 'INVALID_JSON' | 'UNKNOWN_TYPE' | 'VALIDATION_ERROR' | 'EXECUTION_ERROR' | 'CAPACITY_REACHED' | 'FACTORY_ERROR' | 'SESSION_ERROR',
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/**
 * The server side of a `/ws` connection. When a message is over the size cap, `ws` stops reading it and closes the
 * connection with 1009 and no reason, before any listener hears of it (`close(1009)` from its receiver, then an
 * `error` event): a trainer saw a bare close. This class sends `tooLarge()`'s error message first, in the protocol's
 * error shape, then closes with 1009 and its reason, so OpenEnv's client raises with what to fix (the error is the
 * reply it reads) and any client sees the reason on the close.
 */
class EnvServerWebSocket extends WebSocket {
  tooLarge: (() => { readonly message: string; readonly reason: string }) | null = null;
  /** The session of the connection's live episode, for the log. */
  session: () => string | null = () => null;
  /** Whether the server itself holds the connection's reading while it works through the messages it has (the heartbeat spares it). */
  busy: () => boolean = () => false;

  override close(code?: number, data?: string | Buffer): void {
    // Only the receiver's own close: the server never closes with 1009 itself, and never without a reason.
    if (code === CLOSE_TOO_BIG && data === undefined && this.readyState === WebSocket.OPEN && this.tooLarge) {
      const { message, reason } = this.tooLarge();
      this.send(message);
      super.close(CLOSE_TOO_BIG, closeReason(reason));
      return;
    }
    super.close(code, data);
  }
}

/** Maps the registry's errors to OpenEnv's codes (the envfleet code kept as `envfleet_code`). */
function toOpenEnvError(err: unknown): OpenEnvError {
  if (err instanceof OpenEnvError) return err;
  if (err instanceof EnvServerError) {
    const extra = { envfleet_code: err.code };
    switch (err.code) {
      case 'OVER_CAPACITY':
        return new OpenEnvError('CAPACITY_REACHED', err.message, { ...extra, active_sessions: err.details['active'], max_sessions: err.details['max'], ...(err.details['room_at'] ? { room_at: err.details['room_at'] } : {}) });
      case 'ENVIRONMENT_FAILED':
        return new OpenEnvError('FACTORY_ERROR', err.message, { ...extra, factory_name: 'envfleet' });
      case 'UNKNOWN_SESSION':
      case 'SESSION_CLOSED':
        return new OpenEnvError('SESSION_ERROR', err.message, extra);
      case 'SESSION_EVICTED':
      case 'SESSION_INTERRUPTED':
        // The episode has ended without a reward: an error, never an observation with a reward to train on.
        return new OpenEnvError('SESSION_ERROR', err.message, { ...extra, ...err.details });
      default:
        return new OpenEnvError('VALIDATION_ERROR', err.message, extra);
    }
  }
  return new OpenEnvError('EXECUTION_ERROR', `the server failed on this message: ${(err as Error).message}`);
}

/** One episode: the session behind a WebSocket (or a stateless request). */
class Episode {
  sessionId: string | null = null;
  info: SessionInfo | null = null;
  episodeId: string | null = null;
  stepCount = 0;
  done = false;
  ended: SessionResult | null = null;

  constructor(
    private readonly registry: SessionRegistry,
    private readonly maxSteps: number,
  ) {}

  async reset(data: unknown): Promise<ObservationMessage> {
    if (!isObject(data)) throw new OpenEnvError('VALIDATION_ERROR', 'reset data must be a JSON object such as {"scenario_id": "ID"}');
    const scenarioId = [data['scenario_id'], data['scenario']].find(v => typeof v === 'string' && v !== '') as string | undefined;
    if (!scenarioId) throw new OpenEnvError('VALIDATION_ERROR', 'reset needs a scenario: send {"type": "reset", "data": {"scenario_id": "ID"}} with an id from the run\'s exports', { errors: [{ loc: ['scenario_id'], msg: 'required string' }] });
    // The new session is opened before the live episode is ended (`replaced`): a reset that is refused (an unknown
    // scenario, one not ready, an environment that does not start) leaves the episode as it was. Only where the server
    // is full is the episode ended first, to make the room the new one takes.
    let info: SessionInfo;
    try {
      info = await this.registry.open(scenarioId);
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'OVER_CAPACITY' || this.done || !this.sessionId) throw err;
      await this.end('replaced');
      info = await this.registry.open(scenarioId);
    }
    try {
      await this.end('replaced');
    } catch (err) {
      await this.registry.finish(info.id, 'closed').catch(() => undefined);
      throw err;
    }
    this.sessionId = info.id;
    this.info = info;
    this.episodeId = typeof data['episode_id'] === 'string' ? data['episode_id'] : info.id;
    this.stepCount = 0;
    this.done = false;
    this.ended = null;
    const meta = { task: info.task, session_id: info.id, mcp_path: `/sessions/${encodeURIComponent(info.id)}/mcp`, scenario_id: info.scenarioId, environment_id: info.environmentId, episode_id: this.episodeId, tools: info.tools, finish_tool: FINISH_TOOL, max_steps: this.maxSteps };
    return { observation: { ...meta, tools: toolList(info), metadata: meta }, reward: null, done: false };
  }

  /** The session ended without this episode ending it (idle timeout, the server's stop): the episode has ended too. */
  private endedElsewhere(): SessionResult | null {
    if (this.done || !this.sessionId) return null;
    return this.registry.result(this.sessionId);
  }

  /**
   * The answer to a step whose session ended meanwhile (idle timeout): the episode's end with its reward, `observation`
   * and an error saying so; SESSION_EVICTED / SESSION_INTERRUPTED (thrown) when the server ended it (its load, its stop);
   * null while it lives.
   */
  private endedMeanwhile(observation: Record<string, unknown>): ObservationMessage | null {
    const gone = this.endedElsewhere();
    if (!gone) return null;
    if (notScored(gone)) throw this.cut(gone);
    return this.finishWith(gone, { ...observation, error: { error_type: 'execution_error', message: `the episode had already ended (${gone.endedBy}${gone.detail ? `: ${gone.detail}` : ''}); this is its reward, reset starts a new one` } });
  }

  /** Marks the episode ended by the server (its session evicted, or cut by the stop) and returns the error to answer with (no reward). */
  private cut(result: ServerEndedResult): EnvServerError {
    this.done = true;
    this.ended = result;
    return notScoredError(result);
  }

  private live(): { id: string; info: SessionInfo } {
    if (!this.sessionId || !this.info) throw new OpenEnvError('VALIDATION_ERROR', 'no episode on this connection: send {"type": "reset", "data": {"scenario_id": "ID"}} first');
    if (this.ended && notScored(this.ended)) throw notScoredError(this.ended);
    if (this.done) throw new OpenEnvError('VALIDATION_ERROR', `the episode has ended (reward ${this.ended ? rewardOf(this.ended) : 'pending'}); reset starts a new one`, { envfleet_code: 'SESSION_CLOSED' });
    return { id: this.sessionId, info: this.info };
  }

  private finishWith(result: SessionResult, observation: Record<string, unknown>): ObservationMessage {
    this.done = true;
    this.ended = result;
    return { observation: { ...observation, metadata: { step_count: this.stepCount, ...endSummary(result) } }, reward: rewardOf(result), done: true };
  }

  /** `actionText`: the action's JSON text, when the caller has it: a Python tool reads its arguments from it (2.0 a float). */
  async step(action: unknown, actionText?: string): Promise<ObservationMessage> {
    if (!isObject(action)) throw new OpenEnvError('VALIDATION_ERROR', 'step data must be an action object: {"type": "call_tool", "tool_name": "NAME", "arguments": {…}} or {"type": "list_tools"}');
    const type = action['type'];
    if (type === 'list_tools') {
      const { id, info } = this.live();
      // An episode its session ended meanwhile (idle timeout, the server's stop) is over, as for call_tool; otherwise the
      // request restarts the session's idle clock, as every request does.
      const gone = this.endedMeanwhile({ tools: toolList(info) });
      if (gone) return gone;
      this.registry.info(id);
      return { observation: { tools: toolList(info), metadata: { step_count: this.stepCount } }, reward: null, done: false };
    }
    if (type !== 'call_tool') {
      throw new OpenEnvError('VALIDATION_ERROR', `unknown action type ${JSON.stringify(type)}: send "call_tool" (with tool_name and arguments) or "list_tools"`, { errors: [{ loc: ['type'], msg: 'must be "call_tool" or "list_tools"' }] });
    }
    const toolName = action['tool_name'];
    const args = action['arguments'] ?? {};
    const errors: { loc: string[]; msg: string }[] = [];
    if (typeof toolName !== 'string' || toolName === '') errors.push({ loc: ['tool_name'], msg: 'required non-empty string' });
    if (!isObject(args)) errors.push({ loc: ['arguments'], msg: 'must be a JSON object of named arguments' });
    const extra = Object.keys(action).filter(k => !['type', 'tool_name', 'arguments', 'metadata'].includes(k));
    if (extra.length) errors.push({ loc: extra, msg: 'extra fields not permitted' });
    if (errors.length) throw new OpenEnvError('VALIDATION_ERROR', `invalid call_tool action: ${errors.map(e => `${e.loc.join(', ')}: ${e.msg}`).join('; ')}`, { errors });
    const tool = toolName as string;
    const { id, info } = this.live();
    const gone = this.endedMeanwhile({ tool_name: tool, result: null });
    if (gone) return gone;
    if (tool === FINISH_TOOL) {
      const result = await this.registry.finish(id, 'finished');
      if (notScored(result)) throw this.cut(result);
      return this.finishWith(result, { tool_name: tool, result: callResult(endSummary(result)), error: null });
    }
    this.stepCount += 1;
    let observation: Record<string, unknown>;
    if (!info.tools.includes(tool)) {
      observation = { tool_name: tool, result: null, error: { error_type: 'tool_not_found', message: `no tool "${tool}" in this environment; the tools are: ${info.tools.join(', ')}` } };
    } else {
      let outcome: CallOutcome | null = null;
      try {
        const argsText = actionText !== undefined && isObject(action['arguments']) ? jsonMemberText(actionText, 'arguments') : undefined;
        outcome = await this.registry.call(id, tool, args, argsText);
      } catch (err) {
        const result = this.registry.result(id);
        if (err instanceof EnvServerError && NOT_SCORED_CODES.has(err.code) && result && notScored(result)) throw this.cut(result);
        if (!(err instanceof EnvServerError) || (err.code !== 'ENVIRONMENT_FAILED' && err.code !== 'SESSION_CLOSED')) throw err;
        // Ended meanwhile (an idle timeout, the server's stop) and maybe still ending: its result, once there, ends the episode below.
        if (err.code === 'SESSION_CLOSED' && !result) await this.registry.finish(id).catch(() => undefined);
        observation = { tool_name: tool, result: null, error: { error_type: 'execution_error', message: err.message } };
      }
      if (outcome?.runtimeError) {
        const r = outcome.result as { error?: unknown } | null;
        const message = typeof r?.error === 'string' ? r.error : SANDBOX_ERROR_CODES[outcome.runtimeError];
        observation = { tool_name: tool, result: null, error: { error_type: errorTypeOf(outcome.runtimeError), message: `${outcome.runtimeError}: ${message}` } };
      } else if (outcome) {
        observation = { tool_name: tool, result: callResult(outcome.result, outcome.resultJson), error: null };
      }
    }
    // The environment may have been discarded by that call (a sandbox limit): the episode ends with what the checks give.
    const ended = this.registry.result(id);
    if (ended && notScored(ended)) throw this.cut(ended);
    if (ended) return this.finishWith(ended, observation!);
    if (this.stepCount >= this.maxSteps) {
      const result = await this.registry.finish(id, 'finished');
      if (notScored(result)) throw this.cut(result);
      return this.finishWith(result, { ...observation!, step_limit: this.maxSteps });
    }
    return { observation: { ...observation!, metadata: { step_count: this.stepCount } }, reward: null, done: false };
  }

  /**
   * OpenEnv's `{"type": "mcp"}` message: a JSON-RPC request on this connection's episode, beside `step` (no reward,
   * no done, not a step). The same `tools/list` and `tools/call` as `POST /mcp`; `openenv/session/create` names the
   * episode's session (as OpenEnv names the WebSocket's); the episode itself ends only with close or the finish action.
   */
  async mcp(request: RpcRequest, argsText?: string): Promise<unknown> {
    const session = (): SessionInfo => {
      if (!this.sessionId || !this.info) throw new RpcError(-32600, `no episode on this connection: send {"type": "reset", "data": {"scenario_id": "ID"}} first, then ${request.method}`);
      if (this.ended && notScored(this.ended)) throw notScoredError(this.ended);
      if (this.done) throw new RpcError(-32602, `the episode has ended (reward ${this.ended ? rewardOf(this.ended) : 'pending'}); reset starts a new one`, { code: 'SESSION_CLOSED' });
      return this.registry.info(this.sessionId);
    };
    switch (request.method) {
      case 'tools/list':
        return rpcToolsList(session());
      case 'tools/call': {
        const info = session();
        try {
          return await rpcToolsCall(this.registry, info, request.params, argsText);
        } finally {
          // A call whose sandbox code discards the environment ends the episode (its reward is in state).
          const ended = this.registry.result(info.id);
          if (ended && !this.done) {
            this.done = true;
            this.ended = ended;
          }
        }
      }
      case 'openenv/session/create': {
        const info = session();
        return { session_id: info.id, scenario_id: info.scenarioId, task: info.task, tools: info.tools };
      }
      case 'openenv/session/close':
        throw new RpcError(-32600, 'the episode of a WebSocket is not closed over mcp: send {"type": "close"} or the finish action (sessions made with POST /mcp are closed there)');
      default:
        throw new RpcError(-32601, `method not found: ${request.method}; served on /ws: tools/list, tools/call`);
    }
  }

  /** The episode's state; while it is live, `reward_preview`: the checks on the current state (null when none could run). */
  async state() {
    // An episode its session ended meanwhile (idle timeout) is shown ended, but not marked so here: the next step
    // still answers done with the reward, as it would have without this look (OpenEnv's client takes an error there).
    const gone = this.endedElsewhere();
    const done = this.done || gone !== null;
    const ended = gone ?? this.ended;
    let preview: number | null = null;
    if (this.sessionId && !done) {
      try {
        preview = (await this.registry.preview(this.sessionId)).reward;
      } catch {
        preview = null;
      }
    }
    return {
      episode_id: this.episodeId,
      step_count: this.stepCount,
      done,
      reward: ended ? rewardOf(ended) : null,
      reward_preview: done ? null : preview,
      session_id: this.sessionId,
      scenario_id: this.info?.scenarioId ?? null,
      max_steps: this.maxSteps,
    };
  }

  /** Ends a live episode (scored); returns the result when this call ended it. */
  async end(endedBy: 'closed' | 'replaced'): Promise<SessionResult | null> {
    if (!this.sessionId || this.done) return null;
    const id = this.sessionId;
    this.done = true;
    const result = this.registry.result(id) ?? (await this.registry.finish(id, endedBy));
    this.ended = result;
    return result;
  }
}

const ACTION_SCHEMA = {
  title: 'CallToolAction',
  type: 'object',
  description: `An MCP-style action: {"type": "call_tool", "tool_name", "arguments"}, or {"type": "list_tools"}. The control-only tool "${FINISH_TOOL}" ends the episode with its reward.`,
  properties: {
    type: { type: 'string', enum: ['call_tool', 'list_tools'], default: 'call_tool' },
    tool_name: { type: 'string', description: 'A tool of the episode\'s environment (see list_tools)' },
    arguments: { type: 'object', description: 'The tool\'s named arguments (its input_schema)', additionalProperties: true },
    metadata: { type: 'object', additionalProperties: true },
  },
  required: ['type'],
  additionalProperties: false,
};
const OBSERVATION_SCHEMA = {
  title: 'CallToolObservation',
  type: 'object',
  description: 'After reset: task, session_id, scenario_id, tools; after list_tools: tools; after call_tool: tool_name, result, error.',
  properties: {
    tool_name: { type: 'string' },
    result: { description: '{content, structured_content, data, is_error}, or null when error is set' },
    error: {
      anyOf: [
        { type: 'null' },
        { type: 'object', properties: { error_type: { type: 'string', enum: ['execution_error', 'invalid_args', 'transport_error', 'tool_not_found', 'timeout'] }, message: { type: 'string' } }, required: ['error_type', 'message'] },
      ],
    },
    tools: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, description: { type: 'string' }, input_schema: { type: 'object' } } } },
    task: { type: ['string', 'null'] },
    done: { type: 'boolean' },
    reward: { type: ['number', 'null'] },
    metadata: { type: 'object', additionalProperties: true },
  },
  additionalProperties: true,
};
const STATE_SCHEMA = {
  title: 'State',
  type: 'object',
  properties: {
    episode_id: { type: ['string', 'null'] },
    step_count: { type: 'integer', minimum: 0 },
    done: { type: 'boolean' },
    reward: { type: ['number', 'null'] },
    reward_preview: { type: ['number', 'null'], description: 'while the episode is live: the fraction of checks true on the current state (the episode goes on)' },
    session_id: { type: ['string', 'null'] },
    scenario_id: { type: ['string', 'null'] },
  },
  required: ['episode_id', 'step_count'],
  additionalProperties: true,
};

function openApi() {
  const json = (schema: unknown) => ({ content: { 'application/json': { schema } } });
  const stepResponse = { type: 'object', properties: { observation: OBSERVATION_SCHEMA, reward: { type: ['number', 'null'] }, done: { type: 'boolean' } } };
  return {
    openapi: '3.1.0',
    // info.version is the OpenEnv HTTP API's version, as OpenEnv's servers declare it (`openenv validate` reads it as
    // the standard: "1.x" is the profile openenv-http/1.x); envfleet's own version is beside it (and in /metadata).
    info: { title: 'envfleet environment server (OpenEnv surface)', version: OPENENV_HTTP_API_VERSION, 'x-envfleet-version': VERSION },
    paths: {
      '/reset': { post: { summary: 'A throwaway episode: reset on a scenario, then closed', requestBody: json({ type: 'object', properties: { scenario_id: { type: 'string' }, seed: { type: 'integer' }, episode_id: { type: 'string' } }, additionalProperties: true }), responses: { '200': { description: 'observation', ...json(stepResponse) } } } },
      '/step': { post: { summary: 'A throwaway one-step episode on scenario_id: the action, then the checks', requestBody: json({ type: 'object', properties: { action: ACTION_SCHEMA, scenario_id: { type: 'string' } }, required: ['action'], additionalProperties: true }), responses: { '200': { description: 'observation', ...json(stepResponse) } } } },
      '/state': { get: { summary: 'The state of a fresh environment', responses: { '200': { description: 'state', ...json(STATE_SCHEMA) } } } },
      '/metadata': { get: { summary: 'Environment metadata', responses: { '200': { description: 'metadata' } } } },
      '/schema': { get: { summary: 'JSON Schemas of action, observation and state', responses: { '200': { description: 'schemas' } } } },
      '/mcp': { post: { summary: 'OpenEnv JSON-RPC: tools/list, tools/call, openenv/session/create, openenv/session/close', requestBody: json({ type: 'object' }), responses: { '200': { description: 'a JSON-RPC 2.0 response' } } } },
      '/health': { get: { summary: 'Health', responses: { '200': { description: '{"status": "healthy"}' } } } },
    },
  };
}

/** The unauthenticated descriptions (like /health: nothing about sessions): /metadata, /schema, /openapi.json. */
export function mountOpenEnvPublic(app: Express, options: OpenEnvOptions): void {
  app.get('/metadata', (_req, res) => {
    res.json({
      name: `envfleet-${options.runId}`,
      description: `The scenarios of envfleet run ${options.runId}: reset with {"scenario_id": ID}, then call_tool actions; the reward (the scenario's checks) comes once, when the episode ends (the ${FINISH_TOOL} action, the step limit, or close).`,
      version: VERSION,
      author: 'envfleet',
      documentation_url: null,
      readme_content: null,
    });
  });
  app.get('/schema', (_req, res) => {
    res.json({ action: ACTION_SCHEMA, observation: OBSERVATION_SCHEMA, state: STATE_SCHEMA });
  });
  app.get('/openapi.json', (_req, res) => {
    res.json(openApi());
  });
}

/** The stateless POST /reset, POST /step, GET /state (behind the token): each request is a throwaway episode. */
export function mountOpenEnvStateless(app: Express, registry: SessionRegistry, options: OpenEnvOptions): void {
  const parse = (req: Request): Record<string, unknown> => {
    const body = bodyOf(req, err => new OpenEnvError('INVALID_JSON', `the request body is not JSON (${err.message})`));
    if (!isObject(body)) throw new OpenEnvError('VALIDATION_ERROR', 'the request body must be a JSON object');
    return body;
  };
  const handle = (fn: (episode: Episode, body: Record<string, unknown>, text: string) => Promise<unknown>) => (req: Request, res: Response, _next: NextFunction) => {
    const episode = new Episode(registry, options.maxSteps ?? DEFAULT_MAX_STEPS);
    (async () => fn(episode, parse(req), bodyText(req)))().then(
      out => sendJson(res, out),
      err => {
        const e = toOpenEnvError(err);
        res.status(e.code === 'CAPACITY_REACHED' || NOT_SCORED_CODES.has(String(e.extra['envfleet_code'])) ? 503 : e.code === 'EXECUTION_ERROR' || e.code === 'FACTORY_ERROR' ? 500 : 422).json({ detail: [{ type: e.code, loc: ['body'], msg: e.message, input: null }], error: { code: e.code, message: e.message, ...e.extra } });
      },
    ).finally(() => void episode.end('closed').catch(() => undefined));
  };
  app.post('/reset', handle((episode, body) => episode.reset(body)));
  app.post('/step', handle(async (episode, body, text) => {
    const action = body['action'];
    const scenarioId = body['scenario_id'];
    if (typeof scenarioId !== 'string') throw new OpenEnvError('VALIDATION_ERROR', 'a stateless step runs on a fresh environment: send {"scenario_id": "ID", "action": {…}}; use the WebSocket /ws for episodes');
    await episode.reset({ scenario_id: scenarioId });
    const out = await episode.step(action, jsonMemberText(text, 'action'));
    if (out.done) return out;
    const result = await episode.end('closed');
    return { observation: { ...out.observation, metadata: { ...(out.observation['metadata'] as object), ...(result ? endSummary(result) : {}) } }, reward: result ? rewardOf(result) : null, done: true };
  }));
  app.get('/state', (_req, res) => {
    void new Episode(registry, options.maxSteps ?? DEFAULT_MAX_STEPS).state().then(state => sendJson(res, state));
  });
  app.post('/mcp', (req, res) => {
    void jsonRpc(registry, () => bodyText(req)).then(reply => sendJson(res, reply));
  });
}

type RpcReply = { jsonrpc: '2.0'; id: unknown; result?: unknown; error?: { code: number; message: string; data?: unknown } };

class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
    /** The id of the request it answers, when it is known before the request is accepted. */
    readonly requestId: unknown = null,
  ) {
    super(message);
  }
}

interface RpcRequest {
  readonly id: unknown;
  readonly method: string;
  readonly params: Record<string, unknown>;
}

const RPC_METHODS = '"tools/list" | "tools/call" | "openenv/session/create" | "openenv/session/close"';

/** A JSON-RPC 2.0 request, or -32600 (not a request; `{}` too) / -32602 (params not an object). */
function rpcRequestOf(msg: unknown): RpcRequest {
  if (!isObject(msg) || msg['jsonrpc'] !== '2.0' || typeof msg['method'] !== 'string') {
    throw new RpcError(-32600, `invalid request: send {"jsonrpc": "2.0", "id": 1, "method": ${RPC_METHODS}, "params": {…}}`);
  }
  const id = msg['id'] ?? null;
  const params = msg['params'] ?? {};
  if (!isObject(params)) throw new RpcError(-32602, 'params must be a JSON object', undefined, id);
  return { id, method: msg['method'], params };
}

/** `tools/list`: each tool with its description and JSON Schema as `inputSchema`. */
const rpcToolsList = (info: SessionInfo) => ({ tools: toolList(info).map(t => ({ name: t.name, description: t.description, inputSchema: t.input_schema })) });

/**
 * `tools/call {name, arguments}` on a session: an MCP `CallToolResult` (`content`, `structuredContent`, `isError`).
 * An unknown tool, arguments that do not match the schema and sandbox codes are `isError: true` results.
 */
async function rpcToolsCall(registry: SessionRegistry, info: SessionInfo, params: Record<string, unknown>, argsText: string | undefined) {
  const name = typeof params['name'] === 'string' && params['name'] !== '' ? params['name'] : null;
  const args = params['arguments'] ?? {};
  if (!name || !isObject(args)) throw new RpcError(-32602, 'tools/call needs params.name (a tool) and params.arguments (an object)');
  const errorResult = (code: string, message: string, extra: Record<string, unknown> = {}) => {
    const body = { success: false, error: message, code, ...extra };
    return { content: [{ type: 'text', text: JSON.stringify(body) }], structuredContent: body, isError: true };
  };
  if (!info.tools.includes(name)) return errorResult('UNKNOWN_TOOL', `no tool "${name}"; the tools are: ${info.tools.join(', ')}`, { tools: info.tools });
  const outcome = await registry.call(info.id, name, args, argsText);
  if (outcome.runtimeError) {
    const r = outcome.result as { error?: unknown } | null;
    return errorResult(outcome.runtimeError, typeof r?.error === 'string' ? r.error : SANDBOX_ERROR_CODES[outcome.runtimeError], { session_ended: registry.result(info.id) !== null });
  }
  const sent = outcome.resultJson === undefined ? outcome.result : new RawJson(outcome.resultJson);
  // The environment's own failure ({"success": false, …}) is an isError result, as on a session's MCP endpoint.
  const failed = isObject(outcome.result) && outcome.result['success'] === false;
  return { content: [{ type: 'text', text: outcome.resultJson ?? JSON.stringify(outcome.result) ?? 'null' }], structuredContent: isObject(outcome.result) ? sent : { result: sent }, isError: failed };
}

/** Runs a JSON-RPC method: its result, or the error it threw. */
async function rpcReply(id: unknown, run: () => Promise<unknown>): Promise<RpcReply> {
  try {
    return { jsonrpc: '2.0', id, result: await run() };
  } catch (err) {
    return rpcErrorReply(id, err);
  }
}

/** The JSON-RPC error a thrown error maps to (the envfleet code as `data.code`). */
function rpcErrorReply(id: unknown, err: unknown): RpcReply {
  if (err instanceof RpcError) return { jsonrpc: '2.0', id, error: { code: err.code, message: err.message, ...(err.data === undefined ? {} : { data: err.data }) } };
  if (err instanceof EnvServerError) {
    if (err.code === 'OVER_CAPACITY') return { jsonrpc: '2.0', id, error: { code: -32000, message: err.message, data: { code: err.code, active_sessions: err.details['active'], max_sessions: err.details['max'] } } };
    if (NOT_SCORED_CODES.has(err.code)) return { jsonrpc: '2.0', id, error: { code: -32000, message: err.message, data: { code: err.code, ...err.details } } };
    return { jsonrpc: '2.0', id, error: { code: err.code === 'ENVIRONMENT_FAILED' ? -32603 : -32602, message: err.message, data: { code: err.code } } };
  }
  return { jsonrpc: '2.0', id, error: { code: -32603, message: `internal error: ${(err as Error).message}` } };
}

/** Parses a request and runs it (the id of a request whose params are wrong is kept); -32700/-32600 have id null. */
async function rpcHandle(parse: () => RpcRequest, run: (request: RpcRequest) => Promise<unknown>): Promise<RpcReply> {
  let request: RpcRequest;
  try {
    request = parse();
  } catch (err) {
    return rpcErrorReply(err instanceof RpcError ? err.requestId : null, err);
  }
  return rpcReply(request.id, () => run(request));
}

/**
 * OpenEnv's JSON-RPC `POST /mcp` (plain JSON, always HTTP 200; not MCP Streamable HTTP — that is
 * /sessions/{id}/mcp): `openenv/session/create {scenario_id}`, `openenv/session/close {session_id}`,
 * `tools/list {session_id}`, `tools/call {name, arguments, session_id}`; without a session_id, a
 * `scenario_id` gives a throwaway session for that one request.
 */
function jsonRpc(registry: SessionRegistry, body: () => string): Promise<RpcReply> {
  let text = '';
  const parse = (): RpcRequest => {
    let msg: unknown;
    try {
      // A body that is not UTF-8 text is a parse error too, saying where.
      text = body();
      msg = JSON.parse(text);
    } catch (err) {
      throw new RpcError(-32700, `parse error: ${(err as Error).message}`);
    }
    return rpcRequestOf(msg);
  };
  return rpcHandle(parse, async ({ method, params }) => {
    const str = (k: string) => (typeof params[k] === 'string' && params[k] !== '' ? params[k] : null);
    // The session to use: the one named, or a throwaway one on scenario_id.
    const withSession = async <T>(fn: (info: SessionInfo) => Promise<T>): Promise<T> => {
      const sid = str('session_id');
      if (sid) return fn(registry.info(sid));
      const scenarioId = str('scenario_id');
      if (!scenarioId) throw new RpcError(-32602, `${method} needs params.session_id (from openenv/session/create) or params.scenario_id (a throwaway session)`);
      const info = await registry.open(scenarioId);
      try {
        return await fn(info);
      } finally {
        await registry.finish(info.id, 'closed').catch(() => undefined);
      }
    };
    switch (method) {
      case 'openenv/session/create': {
        const scenarioId = str('scenario_id');
        if (!scenarioId) throw new RpcError(-32602, 'openenv/session/create needs params.scenario_id');
        const info = await registry.open(scenarioId);
        return { session_id: info.id, scenario_id: info.scenarioId, task: info.task, tools: info.tools };
      }
      case 'openenv/session/close': {
        const sid = str('session_id');
        if (!sid) throw new RpcError(-32602, 'openenv/session/close needs params.session_id');
        const r = scoredResult(await registry.finish(sid, 'closed'));
        return { session_id: sid, closed: true, reward: r.reward, solved: r.solved };
      }
      case 'tools/list':
        return withSession(info => Promise.resolve(rpcToolsList(info)));
      case 'tools/call':
        // The arguments as the client wrote them: a Python tool reads them as Python would (2.0 a float).
        return withSession(info => rpcToolsCall(registry, info, params, rpcArgumentsText(text, params['arguments'])));
      default:
        throw new RpcError(-32601, `method not found: ${method}; served: tools/list, tools/call, openenv/session/create, openenv/session/close`);
    }
  });
}

/** The token of an upgrade request: in the path (`/t/TOKEN/ws`), else `Authorization: Bearer`, else `?token=`. */
function tokenOk(req: IncomingMessage, inPath: string | null, token: string): boolean {
  const url = new URL(req.url ?? '/', 'http://x');
  const given = inPath ?? req.headers.authorization?.replace(/^Bearer\s+/i, '') ?? url.searchParams.get('token') ?? '';
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Attaches the WebSocket `/ws` to the HTTP server; returns a closer that ends every connection. */
export function attachOpenEnvWebSocket(server: Server, registry: SessionRegistry, logger: Logger, options: OpenEnvOptions): { close(): Promise<void> } {
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_WS_MESSAGE_BYTES, WebSocket: EnvServerWebSocket });
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // OpenEnv's clients send no headers and append /ws to their base URL: BASE/t/TOKEN/ws carries the token.
    const inPath = pathToken(req.url ?? '/');
    const path = new URL(inPath ? inPath.rest : (req.url ?? '/'), 'http://x').pathname;
    if (path !== '/ws') {
      // Another surface may own this path; if none does, answer 404.
      if (server.listenerCount('upgrade') > 1) return;
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    if (options.token && !tokenOk(req, inPath?.token ?? null, options.token)) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Type: application/json\r\n\r\n{"error":{"code":"UNAUTHORIZED","message":"a valid token is required: Authorization: Bearer TOKEN, ?token=TOKEN, or the path BASE/t/TOKEN/ws"}}');
      return;
    }
    wss.handleUpgrade(req, socket, head, ws => wss.emit('connection', ws, req));
  };
  server.on('upgrade', onUpgrade);
  const hooks = new Set<ShutdownHook>();
  wss.on('connection', (ws: EnvServerWebSocket) => serveConnection(ws, registry, logger, options.maxSteps ?? DEFAULT_MAX_STEPS, hooks));
  const heartbeat = options.pingIntervalMs ? startHeartbeat(wss, options.pingIntervalMs, logger) : null;
  return {
    /** Each connection whose episode the stop cut is told so (SESSION_INTERRUPTED, no reward; the registry ends sessions first), then is closed. */
    async close() {
      server.off('upgrade', onUpgrade);
      if (heartbeat) clearInterval(heartbeat);
      await Promise.all([...hooks].map(hook => hook().catch(() => undefined)));
      for (const ws of wss.clients) ws.terminate();
      await new Promise<void>(resolve => wss.close(() => resolve()));
    },
  };
}

/** Whether a connection answered since the last ping (a pong, any message, or a reply its peer took: each proves the peer is there). */
const answered = new WeakSet<WebSocket>();

/**
 * The server's heartbeat: every `intervalMs`, a connection that has not answered since the previous ping is dropped
 * (`terminate`: a peer that does not answer would not complete a close handshake either), the others are pinged. A
 * dropped connection is a disconnect: its `close` event ends its episode as any disconnect does (scored, kept, its
 * capacity freed). The pings also keep proxies, NATs and load balancers from dropping an idle connection. They are
 * not requests: a session's idle timeout runs on.
 */
function startHeartbeat(wss: WebSocketServer, intervalMs: number, logger: Logger): NodeJS.Timeout {
  wss.on('connection', (ws: WebSocket) => {
    answered.add(ws);
    ws.on('pong', () => answered.add(ws));
    ws.on('message', () => answered.add(ws));
  });
  const timer = setInterval(() => {
    for (const ws of wss.clients as Set<EnvServerWebSocket>) {
      if (ws.readyState !== WebSocket.OPEN) continue;
      // A connection whose reading the server holds while it works through its messages cannot show a pong.
      if (!answered.has(ws) && !ws.busy()) {
        logger.info({ session: ws.session(), intervalMs }, 'an OpenEnv /ws client did not answer a ping within the interval: dropping the connection (its episode ends as on a disconnect)');
        ws.terminate();
        continue;
      }
      answered.delete(ws);
      ws.ping();
    }
  }, intervalMs);
  timer.unref();
  return timer;
}

const textOf = (raw: RawData): string => (Array.isArray(raw) ? Buffer.concat(raw) : Buffer.isBuffer(raw) ? raw : Buffer.from(raw)).toString('utf8');

/**
 * The message that ends a connection's episode (close, the server's stop): its reward; for one the server ended (evicted,
 * or cut by the stop) an error, SESSION_ERROR with `envfleet_code` SESSION_EVICTED / SESSION_INTERRUPTED, never a reward.
 */
function endMessage(result: SessionResult, stepCount: number) {
  if (notScored(result)) {
    const e = toOpenEnvError(notScoredError(result));
    return { type: 'error', data: { message: e.message, code: e.code, ...e.extra } };
  }
  return { type: 'observation', data: { observation: { closed: true, metadata: { step_count: stepCount, ...endSummary(result) } }, reward: rewardOf(result), done: true } };
}

/**
 * What a client whose message was over the size cap is told before the close (1009): what was too large, the limit,
 * what to do, and that the connection's episode ends as on a disconnect (scored, kept: verify gives its reward).
 */
function tooLargeMessage(sessionId: string | null): { message: string; reason: string } {
  const limit = `${MAX_WS_MESSAGE_BYTES / (1024 * 1024)} MiB (${MAX_WS_MESSAGE_BYTES} bytes)`;
  const episode = sessionId
    ? ` This connection's episode ends as on a disconnect (scored and kept: POST /sessions/${encodeURIComponent(sessionId)}/verify gives its reward); connect again and reset to play on.`
    : ' Connect again to go on.';
  const e = new OpenEnvError(
    'VALIDATION_ERROR',
    `the message is larger than the ${limit} a /ws message may be, so the server did not read it and closes the connection (1009 message too big). Send smaller messages: keep a step's tool arguments (the whole JSON message) under ${limit}.${episode}`,
    { envfleet_code: 'MESSAGE_TOO_LARGE', max_bytes: MAX_WS_MESSAGE_BYTES, errors: [{ loc: [], msg: `message larger than ${MAX_WS_MESSAGE_BYTES} bytes` }], ...(sessionId ? { session_id: sessionId, session_ended: true } : {}) },
  );
  return {
    message: JSON.stringify({ type: 'error', data: { message: e.message, code: e.code, ...e.extra } }),
    reason: `over the ${limit} limit of a /ws message; send smaller messages`,
  };
}

/** What a connection does when the server stops: tells it the stop cut its episode (SESSION_INTERRUPTED, no reward), then closes. */
type ShutdownHook = () => Promise<void>;

function serveConnection(ws: EnvServerWebSocket, registry: SessionRegistry, logger: Logger, maxSteps: number, hooks: Set<ShutdownHook>): void {
  const episode = new Episode(registry, maxSteps);
  const liveSession = () => (episode.sessionId && !episode.done ? episode.sessionId : null);
  ws.tooLarge = () => tooLargeMessage(liveSession());
  ws.session = liveSession;
  let chain = Promise.resolve();
  let closing = false;
  // Flow control (MAX_WS_UNSENT_BYTES): bytes of replies not yet flushed to the connection, messages (and their bytes)
  // read but not yet answered; the messages waiting to be answered until the replies drain.
  let unsentBytes = 0;
  let peakUnsentBytes = 0;
  let queuedMessages = 0;
  let queuedBytes = 0;
  let stalledSince: number | null = null;
  let waitingForDrain: Array<() => void> = [];
  const stalled = () => unsentBytes >= MAX_WS_UNSENT_BYTES;
  const backlogged = () => queuedMessages >= MAX_WS_QUEUED_MESSAGES || queuedBytes >= MAX_WS_MESSAGE_BYTES;
  const releaseWaiting = () => {
    const waiting = waitingForDrain;
    waitingForDrain = [];
    for (const go of waiting) go();
  };
  /** Resolves when the next message may be answered: the replies drained below the cap, or the connection is ending. */
  const drained = (): Promise<void> => (closing || !stalled() || ws.readyState !== ws.OPEN ? Promise.resolve() : new Promise(resolve => waitingForDrain.push(resolve)));
  ws.busy = () => ws.isPaused && !stalled() && backlogged();
  const flow = () => {
    if (ws.readyState !== ws.OPEN) {
      // A connection that is closing must be read: its peer's close frame ends the handshake (else ws waits 30 s).
      if (ws.isPaused) ws.resume();
      releaseWaiting();
      return;
    }
    if ((stalled() || backlogged()) && !ws.isPaused) ws.pause();
    else if (!stalled() && !backlogged() && ws.isPaused) ws.resume();
    if (stalled() && stalledSince === null) {
      stalledSince = Date.now();
      logger.info({ session: liveSession(), unsentBytes, queuedMessages, maxUnsentBytes: MAX_WS_UNSENT_BYTES }, 'an OpenEnv /ws client is not taking its replies: its messages are not answered, nor read, until it does');
    } else if (!stalled() && stalledSince !== null) {
      logger.info({ session: liveSession(), stalledMs: Date.now() - stalledSince, peakUnsentBytes, maxUnsentBytes: MAX_WS_UNSENT_BYTES }, 'an OpenEnv /ws client took its replies again: answering and reading it again');
      stalledSince = null;
      peakUnsentBytes = unsentBytes; // the next stall logs its own peak
    }
    if (!stalled()) releaseWaiting();
  };
  const send = (msg: unknown) => {
    if (ws.readyState !== ws.OPEN) return;
    const text = stringifyJson(msg) ?? 'null';
    const bytes = Buffer.byteLength(text, 'utf8');
    unsentBytes += bytes;
    peakUnsentBytes = Math.max(peakUnsentBytes, unsentBytes);
    ws.send(text, err => {
      unsentBytes -= bytes;
      // Flushed to a connection still open: the peer reads, so it is there. An error means the connection is gone.
      if (!err && ws.readyState === ws.OPEN) answered.add(ws);
      flow();
    });
    flow();
  };
  const handle = async (raw: RawData): Promise<void> => {
    // No reply is made while the client's earlier ones wait for it: what it costs the server stays bounded.
    await drained();
    if (closing) return;
    try {
      let msg: unknown;
      const text = textOf(raw);
      try {
        msg = JSON.parse(text);
      } catch (err) {
        throw new OpenEnvError('INVALID_JSON', `the message is not JSON: ${(err as Error).message}`);
      }
      if (!isObject(msg) || typeof msg['type'] !== 'string') throw new OpenEnvError('VALIDATION_ERROR', 'a message is {"type": "reset"|"step"|"state"|"mcp"|"close", "data": {…}}', { errors: [{ loc: ['type'], msg: 'required string' }] });
      switch (msg['type']) {
        case 'reset':
          send({ type: 'observation', data: await episode.reset(msg['data'] ?? {}) });
          return;
        case 'step':
          if (msg['data'] === undefined) throw new OpenEnvError('VALIDATION_ERROR', 'step needs data: the action', { errors: [{ loc: ['data'], msg: 'field required' }] });
          send({ type: 'observation', data: await episode.step(msg['data'], jsonMemberText(text, 'data')) });
          return;
        case 'state':
          send({ type: 'state', data: await episode.state() });
          return;
        case 'mcp': {
          // OpenEnv's WSMCPMessage: data must be an object (else VALIDATION_ERROR); a bad JSON-RPC request is a JSON-RPC error.
          const data = msg['data'];
          if (!isObject(data)) throw new OpenEnvError('VALIDATION_ERROR', 'mcp needs data: a JSON-RPC 2.0 request such as {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}', { errors: [{ loc: ['data'], msg: 'required JSON object' }] });
          // The JSON-RPC request's text (the message's data member), for a tools/call's arguments as the client wrote them.
          const rpcText = jsonMemberText(text, 'data');
          send({ type: 'mcp', data: await rpcHandle(() => rpcRequestOf(data), request => episode.mcp(request, rpcText === undefined ? undefined : rpcArgumentsText(rpcText, request.params['arguments']))) });
          return;
        }
        case 'close': {
          closing = true;
          const result = await episode.end('closed');
          // The reward of an episode ended by close goes out once, before the socket closes.
          if (result) send(endMessage(result, episode.stepCount));
          ws.close(1000, 'closed');
          flow();
          return;
        }
        default:
          throw new OpenEnvError('UNKNOWN_TYPE', `unknown message type ${JSON.stringify(msg['type'])}: send reset, step, state, mcp or close`);
      }
    } catch (err) {
      const e = toOpenEnvError(err);
      if (e.code === 'EXECUTION_ERROR') logger.warn({ err }, 'openenv message failed');
      send({ type: 'error', data: { message: e.message, code: e.code, ...e.extra } });
    }
  };
  ws.on('message', (raw: RawData) => {
    const bytes = Array.isArray(raw) ? raw.reduce((n, b) => n + b.length, 0) : raw.byteLength;
    queuedMessages += 1;
    queuedBytes += bytes;
    flow();
    chain = chain
      .then(() => handle(raw))
      .finally(() => {
        queuedMessages -= 1;
        queuedBytes -= bytes;
        flow();
      });
  });
  const onShutdown: ShutdownHook = async () => {
    closing = true;
    releaseWaiting();
    await chain.catch(() => undefined);
    const result = episode.sessionId && !episode.done ? registry.result(episode.sessionId) : null;
    if (result) send(endMessage(result, episode.stepCount));
    if (ws.readyState === ws.OPEN) {
      ws.close(1001, 'the server is stopping');
      flow();
      await Promise.race([new Promise(resolve => ws.once('close', resolve)), new Promise(resolve => setTimeout(resolve, 1_000).unref())]);
    }
    ws.terminate();
  };
  hooks.add(onShutdown);
  ws.on('close', (code: number, reason: Buffer) => {
    logger.debug({ session: liveSession(), code, reason: reason.toString('utf8') }, 'an OpenEnv /ws connection closed');
    hooks.delete(onShutdown);
    closing = true;
    releaseWaiting();
    chain = chain.then(() => episode.end('closed').then(() => undefined)).catch(err => logger.warn({ err }, 'ending an OpenEnv episode on disconnect failed'));
  });
  ws.on('error', err => {
    // A message over the cap is the client's: it was told (MESSAGE_TOO_LARGE, then the close 1009).
    if (TOO_LARGE_ERRORS.has(String((err as Error & { code?: unknown }).code))) logger.info({ err, session: liveSession(), maxBytes: MAX_WS_MESSAGE_BYTES }, 'an OpenEnv /ws client sent a message over the size cap: told MESSAGE_TOO_LARGE, connection closed (1009)');
    else logger.warn({ err }, 'openenv websocket error');
  });
}
