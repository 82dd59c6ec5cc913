import { isDeepStrictEqual } from 'node:util';
import { AppError, EndpointRefusedError, JobAbortedError, RunCancelledError, classifyError } from '../errors.js';
import type { ChatMessage, ChatTool } from '../llm/gateway.js';
import { looksLikeToolCall, parseTextToolCalls } from '../llm/text-tool-calls.js';
import { splitThinking } from '../llm/thinking.js';
import type { SandboxLimits } from '../sandbox/limits.js';
import { ENDS_SESSION, InterpreterLostError, lostWithInterpreter, SandboxError, SandboxFullError } from '../sandbox/errors.js';
import { errorOf, fullAtEnd, fullCheck, lostAtEnd, lostCheck } from '../sandbox/retry-when-full.js';
import type { ChecksResult } from '../sandbox/tasks.js';
import type { EnvSession } from '../sandbox/runner.js';
import type { ScenarioRecord } from '../scenarios/types.js';
import type { EnvironmentRecord } from '../synthesis/types.js';
import { AGENT_PREFIX, ROLLOUT_PROMPT_VERSIONS, STOP_TOKEN, USER_GREETING, UserSimulatorAnswer, agentSystemPrompt, userSimulatorPrompt } from './prompts.js';
import { scoreFinalState } from './score.js';
import type { PolicyTurn, RolloutLimits, RolloutMode, StepRecord, Termination, Trajectory } from './types.js';
import type { TokenRecord } from '../llm/request-shape.js';
import { trajectoryIdOf } from '../runs/ids.js';
import { hashOf } from '../util/canonical.js';
import { RawJson } from '../util/raw-json.js';
import type { StageDeps } from '../stage-deps.js';
import type { StartPacer } from './start-pacer.js';

/** An episode reads nothing from the run store: the rollout stage hands it what it needs. */
export type EpisodeDeps = Omit<StageDeps, 'store'> & {
  /** Told the latency of each uncached policy call (the worker's start pacer). */
  readonly pacer?: Pick<StartPacer, 'observe'> | undefined;
};

export interface EpisodeInput {
  readonly runId: string;
  readonly scenario: ScenarioRecord;
  /** `scenario.initialState` as JSON text, when the caller keeps it for many episodes (written once, not per episode). */
  readonly initialStateJson?: string;
  readonly env: EnvironmentRecord;
  readonly mode: RolloutMode;
  readonly sample: number;
  readonly limits: RolloutLimits;
  readonly sandboxLimits: SandboxLimits;
  /** Policy and user-simulator models (null: the stage profile's). */
  readonly policyModel: string | null;
  readonly userModel: string | null;
  readonly sampling: { readonly temperature: number; readonly maxTokens: number };
  /** The policy version given with `envfleet rollouts --policy-version` (null: none). */
  readonly policyVersion?: string | null;
  /** The policy generation of the run's rollouts (absent: the run's first; see policyKeyOf). */
  readonly policy?: string;
}



class EpisodeEnd extends Error {
  constructor(readonly reason: Termination, readonly detail: string | null) {
    super(reason);
  }
}

/**
 * A model call's failure that no episode of the run gets past and that is fixed where the workers read their
 * settings: the endpoint refused the API key (401). The run pauses (EndpointRefusedError). Not a 403 (some gateways
 * answer it per request, e.g. for moderation) nor a 404 (the model name may be frozen with the run): those end the
 * episode as model-error, as before.
 */
function refusesEveryEpisode(err: unknown): err is AppError {
  return err instanceof AppError && err.code === 'MODEL_AUTH' && (err.cause as { status?: unknown } | undefined)?.status === 401;
}

const isSandboxFull = (err: unknown): boolean => (err as { code?: unknown } | null)?.code === 'SANDBOX_MEMORY_FULL';

/**
 * How long an episode's environment may wait for room in a full Python interpreter before its job goes back to the
 * queue (SandboxFullError; OpenOptions.roomWaitMs): it waits for another episode's environment to end, its first model
 * calls made meanwhile. Before, it went back at once and ran again from the start after a backoff: τ-bench airline at 64
 * episodes per worker, of which about 30 fit an interpreter, took 3 times as long as at 8. With 120 s, 23 of 100 such
 * episodes still went back (at 64, an airline episode took a median 146 s beside the others: a stranger's re-probe).
 * Not counted in the episode's time limit (max-wall-ms): the time an episode waits for its environment to start is the
 * fleet's, not the policy's.
 */
export const EPISODE_ROOM_WAIT_MS = 300_000;
/** How often an episode waiting for its environment to start asks whether its run was cancelled or paused. */
const RUN_CHECK_EVERY_MS = 2_000;

/**
 * One episode of a policy model against a scenario: the environment lives in a sandbox session
 * (a pool thread) for the whole episode, every model call goes through the gateway. Every tool
 * call of an assistant message runs, in order; bad arguments come back to the agent as an error
 * result. The episode ends with one recorded reason; the reward is the fraction of the scenario's
 * checks true on the final state. Transient model failures are thrown (the job retries the
 * episode); failures no retry fixes end the episode as `model-error`, except a refused API key (401), which
 * no episode gets past: that pauses the run (EndpointRefusedError). An environment that met a full sandbox thread
 * (SandboxFullError), or that was lost with a Python interpreter another environment took down (InterpreterLostError),
 * is no measure of the policy either: those are thrown, and the job runs the episode again.
 */
export async function runEpisode(deps: EpisodeDeps, input: EpisodeInput): Promise<Trajectory> {
  const { scenario, env, mode, limits } = input;
  const started = Date.now();
  const startedAt = new Date(started).toISOString();
  const allTools = (env.tools ?? []) as ChatTool[];
  const nameOf = (t: ChatTool) => (t.type === 'function' ? t.function.name : '');
  // A scripted multi-turn scenario (BFCL): fixed user turns, no user simulator, tools withheld until their turn.
  const script = scenario.script && scenario.script.turns.length > 0 ? scenario.script : null;
  const hidden = new Set([...(script?.excludedTools ?? []), ...(script?.withheldTools ?? [])]);
  let tools = script ? allTools.filter(t => !hidden.has(nameOf(t))) : allTools;
  let toolNames = tools.map(nameOf).filter(Boolean);
  const turnStates: unknown[] = [];
  let scriptTurn = 0;
  let stepsInTurn = 0;
  const maxStepsPerTurn = script?.maxStepsPerTurn ?? Number.POSITIVE_INFINITY;
  const messages: ChatMessage[] = [{ role: 'system', content: agentSystemPrompt(mode, env.description.introduction) }];
  const userMessages: ChatMessage[] | null = mode === 'conversational' && !script ? [userSimulatorPrompt(scenario.userGoal?.goal ?? scenario.task ?? '', scenario.userGoal?.facts ?? [])] : null;
  const steps: StepRecord[] = [];
  const usage = { promptTokens: 0, completionTokens: 0, modelCalls: 0 };
  let envUs = 0;
  let turns = 0;
  const policyTurns: PolicyTurn[] = [];
  const id = trajectoryIdOf(input.runId, scenario.id, mode, input.sample, input.policy);
  /** One seed per episode, from its id: sent where the profile's shape says so (`seed: true`). */
  const seed = Number.parseInt(hashOf(id, 8), 16) & 0x7fffffff;
  let samplingSent: Readonly<Record<string, unknown>> | undefined;
  /** The full prompt and completion ids of the previous turn, to store only what the next prompt appends. */
  let lastIds: number[] | null = null;
  const policyTurnOf = (turn: number, reply: { model: string; finishReason: string; tokens: TokenRecord | null }): PolicyTurn => {
    const t = reply.tokens;
    let prompt: Pick<PolicyTurn, 'promptTokenIds' | 'promptTokenIdsAppended'> = {};
    if (t?.promptTokenIds) {
      const before = lastIds;
      const isPrefix = before !== null && before.length <= t.promptTokenIds.length && before.every((id, i) => t.promptTokenIds![i] === id);
      prompt = isPrefix ? { promptTokenIdsAppended: t.promptTokenIds.slice(before.length) } : { promptTokenIds: t.promptTokenIds };
      lastIds = t.tokenIds ? [...t.promptTokenIds, ...t.tokenIds] : null;
    } else lastIds = null;
    return { turn, model: reply.model, finishReason: reply.finishReason, ...(t?.logprobs ? { logprobs: t.logprobs } : {}), ...(t?.tokenIds ? { tokenIds: t.tokenIds } : {}), ...prompt };
  };
  let termination: { reason: Termination; detail: string | null };
  let session: EnvSession | null = null;
  /** How long the episode waited, at its first tool call, for its environment to start (a full Python interpreter holds a start until there is room): not counted in its time limit. */
  let startWaitMs = 0;
  let modelUsed: string | null = input.policyModel;
  let finalState: unknown = null;
  // The cache salt names the sample and turn, and the policy generation when it is not the run's first:
  // another version of the policy (even under the same model name) never gets this one's answers.
  const salt = (what: string) => `${input.policy ? `${input.policy}:` : ''}${scenario.id}:${mode}:${input.sample}:${what}`;

  const account = (u: { promptTokens: number; completionTokens: number }) => {
    usage.promptTokens += u.promptTokens;
    usage.completionTokens += u.completionTokens;
    usage.modelCalls += 1;
    if (limits.maxTokens > 0 && usage.promptTokens + usage.completionTokens > limits.maxTokens) {
      throw new EpisodeEnd('token-limit', `${usage.promptTokens + usage.completionTokens} tokens used; the limit is ${limits.maxTokens}`);
    }
  };
  const checkTime = () => {
    const ran = Date.now() - started - startWaitMs;
    if (ran > limits.maxWallMs) throw new EpisodeEnd('time-limit', `ran ${ran} ms${startWaitMs >= 1 ? ` (not counting the ${startWaitMs} ms it waited for its environment to start)` : ''}; the limit is ${limits.maxWallMs} ms`);
  };
  /** The simulated user's next reply; a stop token only counts in the reply, and never before the agent has spoken. */
  const userSays = async (agentText: string | null): Promise<{ reply: string; stop: boolean }> => {
    checkTime();
    userMessages!.push({ role: 'user', content: `${AGENT_PREFIX}${agentText ?? USER_GREETING}` });
    const { value, usage: u } = await deps.gateway.structured(
      { runId: input.runId, stage: 'rollout.user', signal: deps.signal, logger: deps.logger, cacheSalt: salt(`user-${turns}`) },
      { messages: userMessages!, schema: UserSimulatorAnswer, model: input.userModel ?? undefined },
    );
    account(u);
    userMessages!.push({ role: 'assistant', content: JSON.stringify(value) });
    const stop = agentText !== null && value.reply.includes(STOP_TOKEN);
    const reply = agentText === null ? value.reply.replaceAll(STOP_TOKEN, '').trim() || value.reply : value.reply;
    return { reply, stop };
  };

  // The environment starts while the first model calls are made: it is needed only at the first tool call (or at the
  // end), so its start (a pool thread's queue under a burst of episodes; tens of milliseconds for a Python environment)
  // is not added to the episode's time. A start that fails ends the episode where the environment is first needed,
  // as before (environment-error; a full sandbox thread: the job waits, and its model calls replay from the cache). A
  // Python interpreter full of running episodes' environments holds the start until one ends (EPISODE_ROOM_WAIT_MS).
  // A start still waiting for room is given up when the job is aborted (a stopping worker) or the episode ends without
  // it (closeSession: a cancelled or paused run, a budget reached, a model error), instead of holding the job up to
  // EPISODE_ROOM_WAIT_MS and then creating an environment only to close it (a reviewer's finding).
  // (The job's own signal is looked at while the start waits, whileStarting: AbortSignal.any over both, one per episode,
  // cost the bench's worker ~0.4 ms of main-thread CPU per episode.)
  const startGivenUp = new AbortController();
  const opening = (async () => deps.sandbox.openSession({ name: env.description.summary, className: env.className!, source: env.source!, tools: env.tools ?? [], ...(env.language ? { language: env.language } : {}) }, scenario.initialState, input.sandboxLimits, input.initialStateJson, { roomWaitMs: EPISODE_ROOM_WAIT_MS, signal: startGivenUp.signal }))();
  // (also the handler of its rejection: awaited where the environment is needed, ready, or closed, closeSession)
  let startSettled = false;
  const startDone = opening.then(
    () => (startSettled = true),
    () => (startSettled = true),
  );
  /**
   * Resolves once the environment's start has settled, asking the run's gate every RUN_CHECK_EVERY_MS meanwhile: a start
   * waiting for room holds the episode between model calls, where a cancel or a pause was not seen (a stranger's probe:
   * a cancelled run's waiting episodes took 3 minutes to end), and whether the job was aborted (a stopping worker).
   * Throws RunCancelledError / RunPausedError / JobAbortedError; the episode's end then gives the start up.
   */
  const whileStarting = async (): Promise<void> => {
    const check = deps.gateway.checkRun?.bind(deps.gateway);
    // (most starts have settled by the first tool call: no timer for them)
    if (startSettled || (!check && !deps.signal)) return;
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const done = await Promise.race([startDone, new Promise<boolean>(resolve => (timer = setTimeout(resolve, RUN_CHECK_EVERY_MS, false)))]);
      clearTimeout(timer);
      if (done) return;
      if (deps.signal?.aborted) throw new JobAbortedError('the job was aborted while its environment waited to start');
      await check?.(input.runId);
    }
  };
  /** The environment, once it has started; throws the episode's end (or SandboxFullError) when it did not. */
  const ready = async (): Promise<EnvSession> => {
    if (session) return session;
    const askedAt = Date.now();
    await whileStarting();
    try {
      session = await opening;
      startWaitMs = Date.now() - askedAt;
      return session;
    } catch (err) {
      // (a start given up as the job was aborted, while it waited for room: the abort, not a full sandbox)
      if (deps.signal?.aborted) throw new JobAbortedError(`the environment did not start: the job was aborted (${(err as Error).message})`);
      if (isSandboxFull(err)) throw SandboxFullError.at('the environment did not start', (err as Error).message);
      if (lostWithInterpreter(err)) throw InterpreterLostError.at('the environment did not start', (err as Error).message);
      throw new EpisodeEnd('environment-error', `the environment did not start: ${(err as Error).message}`);
    }
  };
  /** Closes the environment, started or still starting. */
  const closeSession = () => {
    startGivenUp.abort();
    return opening.then(s => s.close()).catch(() => undefined);
  };

  try {
    /** The environment's state at the end of a scripted turn, for the episode checks. */
    const recordTurnState = async () => {
      const env = await ready();
      try {
        // As the session wrote it (RawJson): a Python state's 100.0 and integers past 2^53 reach the episode checks and
        // the trajectory exactly, as its final state does.
        turnStates.push(env.snapshotJson ? new RawJson(await env.snapshotJson()) : await env.snapshot());
      } catch (err) {
        if (isSandboxFull(err)) throw SandboxFullError.at(`the state at the end of turn ${scriptTurn + 1} could not be read`, (err as Error).message);
        if (lostWithInterpreter(err)) throw InterpreterLostError.at(`the state at the end of turn ${scriptTurn + 1} could not be read`, (err as Error).message);
        throw new EpisodeEnd('environment-error', `the state at the end of turn ${scriptTurn + 1} could not be read: ${(err as Error).message}`);
      }
    };
    /** Opens scripted turn `i`: its tools added, its user messages appended. */
    const openTurn = (i: number) => {
      const turn = script!.turns[i]!;
      if (turn.addTools?.length) {
        for (const name of turn.addTools) hidden.delete(name);
        tools = allTools.filter(t => !hidden.has(nameOf(t)));
        toolNames = tools.map(nameOf).filter(Boolean);
      }
      for (const text of turn.messages) messages.push({ role: 'user', content: text });
      scriptTurn = i;
      stepsInTurn = 0;
    };
    if (script) {
      openTurn(0);
    } else if (mode === 'non-conversational') {
      messages.push({ role: 'user', content: scenario.task ?? '' });
    } else {
      const opening = await userSays(null);
      messages.push({ role: 'user', content: opening.reply });
    }
    for (;;) {
      if (turns >= limits.maxSteps) throw new EpisodeEnd('step-limit', `${turns} agent turns; the limit is ${limits.maxSteps}`);
      checkTime();
      turns += 1;
      const asked = performance.now();
      const reply = await deps.gateway.chat(
        { runId: input.runId, stage: 'rollout.policy', signal: deps.signal, logger: deps.logger, cacheSalt: salt(`agent-${turns}`) },
        { messages, tools, temperature: input.sampling.temperature, maxTokens: input.sampling.maxTokens, model: input.policyModel ?? undefined, seed },
      );
      if (!reply.cached) deps.pacer?.observe(performance.now() - asked);
      account(reply.usage);
      modelUsed = reply.model;
      samplingSent ??= reply.sampling;
      policyTurns.push(policyTurnOf(turns, reply));
      const m = reply.message;
      // A call the endpoint sent without an id (or with the id of another call of the reply) gets one here, on the call
      // itself: the transcript sent back next turn, the trajectory and the SFT files pair each result with its call.
      const seenIds = new Set<string>();
      let calls: { id: string; type: 'function'; function: { name: string; arguments: string } }[] = (m.tool_calls ?? [])
        .filter(c => c.type === 'function')
        .map((c, i) => {
          let id = typeof c.id === 'string' && c.id !== '' && !seenIds.has(c.id) ? c.id : `call_${turns}_${i}`;
          // A made id another call of the reply already has (the endpoint's own `call_1_1`) is made again.
          for (let k = 2; seenIds.has(id); k += 1) id = `call_${turns}_${i}_${k}`;
          seenIds.add(id);
          return id === c.id ? c : { ...c, id };
        });
      let content = m.content ?? null;
      // Reasoning written in the text (no reasoning parser on the server) goes where a parser would put it.
      let reasoning = m.reasoning_content ?? null;
      if (content !== null && (content.includes('<think>') || content.includes('</think>'))) {
        const split = splitThinking(content);
        content = split.answer || null;
        if (split.reasoning) reasoning = reasoning ? `${reasoning}\n\n${split.reasoning}` : split.reasoning;
      }
      // Tool calls the model wrote in its text (served without a tool-call parser) become the same tool
      // calls; a reply that looks like a call but cannot be read is never taken for an answer.
      let unparsed: string | null = null;
      if (calls.length === 0 && content && tools.length) {
        const parsed = parseTextToolCalls(content, reply.toolCallFormat, toolNames, tools);
        if (parsed.kind === 'calls') {
          calls = parsed.calls.map((c, i) => ({ id: `call_${turns}_${i}`, type: 'function' as const, function: { name: c.name, arguments: c.arguments } }));
          content = parsed.content;
        } else if (parsed.kind === 'malformed') {
          unparsed = parsed.problem;
        } else if (reply.toolCallFormat !== 'native' && looksLikeToolCall(content, toolNames)) {
          // The profile's format found nothing, but the reply still reads like a call (a call after prose, another format).
          unparsed = `the reply looks like a tool call the ${reply.toolCallFormat} format cannot read`;
        }
      } else if (calls.length && content && tools.length) {
        // A server that returns the calls in tool_calls and leaves them in the text too (a parser that keeps the text):
        // the text's copy goes, or every SFT file would train the model to write each call twice. Text that calls
        // something else is the model's own, and stays.
        const parsed = parseTextToolCalls(content, 'auto', toolNames, tools);
        if (parsed.kind === 'calls' && sameCalls(parsed.calls, calls)) content = parsed.content;
      }
      messages.push({
        role: 'assistant',
        content,
        ...(calls.length ? { tool_calls: calls } : {}),
        ...(reasoning ? { reasoning_content: reasoning } : {}),
      });
      // A reply cut off at the token limit is no answer and no call (its last call may be half written): nothing of it
      // runs, the episode ends, and the exports never take it for a training target (src/datasets/trajectories.ts).
      if (reply.finishReason === 'length') {
        throw new EpisodeEnd(
          'token-limit',
          `the policy's reply in turn ${turns} was cut off at its token limit (finish_reason "length", max tokens ${input.sampling.maxTokens}: the maxTokens of the rollout.policy profile in ENVFLEET_MODELS_FILE)` +
            (calls.length ? `; its ${calls.length} tool call${calls.length === 1 ? '' : 's'} did not run` : ''),
        );
      }
      // A reply the endpoint's moderation withheld or cut (finish_reason "content_filter", OpenAI and Azure's filters) is
      // no answer either: its text may be empty or stop mid-sentence, and its calls may be half written.
      if (reply.finishReason === 'content_filter') {
        throw new EpisodeEnd(
          'content-filtered',
          `the endpoint's content filter withheld or cut the policy's reply in turn ${turns} (finish_reason "content_filter")` +
            (calls.length ? `; its ${calls.length} tool call${calls.length === 1 ? '' : 's'} did not run` : ''),
        );
      }
      if (unparsed !== null) throw new EpisodeEnd('unparsed-tool-call', unparsed);
      // An empty reply ends an episode as an answer would, but says so: vLLM with a reasoning parser answers this way
      // when the whole output went to its reasoning, and a trainer filters such samples by their detail.
      const emptyReply = calls.length === 0 && !(content ?? '').trim()
        ? `the policy's reply in turn ${turns} was empty (no text and no tool call${reasoning ? '; it wrote only reasoning, no answer after it' : ''})`
        : null;
      if (calls.length === 0) {
        if (script) {
          await recordTurnState();
          if (scriptTurn + 1 < script.turns.length) {
            openTurn(scriptTurn + 1);
            continue;
          }
          termination = { reason: 'agent-finished', detail: emptyReply };
          break;
        }
        if (mode === 'non-conversational') {
          termination = { reason: 'agent-finished', detail: emptyReply };
          break;
        }
        // What the agent said, without the reasoning it wrote in its text: the user never reads the agent's thoughts.
        const answer = await userSays(content ?? '');
        messages.push({ role: 'user', content: answer.reply });
        if (answer.stop) {
          termination = { reason: 'user-stopped', detail: null };
          break;
        }
        continue;
      }
      const live = await ready();
      for (const call of calls) {
        const id = call.id;
        let args: unknown;
        let outcome: { result: unknown; resultJson?: string; runtimeError?: string; lostWith?: 'interpreter'; us: number };
        try {
          args = call.function.arguments.trim() === '' ? {} : (JSON.parse(call.function.arguments) as unknown);
          outcome =
            script && !toolNames.includes(call.function.name)
              ? { result: { success: false, error: `unknown tool "${call.function.name}"; the tools are: ${toolNames.join(', ')}` }, runtimeError: 'TOOL_NOT_OFFERED', us: 0 }
              : await live.call(call.function.name, args, call.function.arguments);
        } catch (err) {
          if (err instanceof SyntaxError) {
            outcome = { result: { success: false, error: `the arguments are not valid JSON (${err.message}); send one JSON object of named arguments` }, runtimeError: 'INVALID_ARGUMENTS', us: 0 };
          } else {
            throw new EpisodeEnd('environment-error', `the environment failed: ${(err as Error).message}`);
          }
        }
        envUs += outcome.us;
        // The step keeps the result as the runtime wrote it too (a RawJson: the stored trajectory holds that text).
        steps.push({ turn: turns, tool: call.function.name, toolCallId: id, rawArguments: call.function.arguments, result: outcome.resultJson === undefined ? outcome.result : new RawJson(outcome.resultJson), runtimeError: outcome.runtimeError ?? null, us: Math.round(outcome.us) });
        // The result as the runtime wrote it when it has the text (Python: 2**64 + 1, 1.0 as written), else as JSON writes it.
        messages.push({ role: 'tool', tool_call_id: id, content: outcome.resultJson ?? JSON.stringify(outcome.result) });
        if (outcome.runtimeError === 'SANDBOX_MEMORY_FULL') throw SandboxFullError.at(`${call.function.name} was stopped`, errorOf(outcome.result));
        if (outcome.runtimeError === 'ENV_DISPOSED' && lostWithInterpreter(outcome)) throw InterpreterLostError.at(`${call.function.name} found its environment gone`, errorOf(outcome.result));
        if (outcome.runtimeError && ENDS_SESSION.has(outcome.runtimeError)) {
          throw new EpisodeEnd('environment-error', `${outcome.runtimeError} in ${call.function.name}; the environment was discarded`);
        }
      }
      // BFCL's per-turn limit counts the steps that made calls, after they ran: past the limit the turn
      // (and the entry) is forced to quit; a step that answers in text always gets its chance.
      stepsInTurn += 1;
      if (stepsInTurn > maxStepsPerTurn) throw new EpisodeEnd('step-limit', `${stepsInTurn} tool-calling steps in user turn ${scriptTurn + 1}; the scenario allows ${maxStepsPerTurn} per turn`);
      // A tool that ends the episode (τ-bench's transfer_to_human_agents), once the message's calls have their results.
      const ender = env.endTools?.length ? calls.find(c => env.endTools!.includes(c.function.name)) : undefined;
      if (ender) {
        termination = { reason: 'tool-ended', detail: `${ender.function.name} ends the episode` };
        break;
      }
    }
  } catch (err) {
    if (err instanceof EpisodeEnd) termination = { reason: err.reason, detail: err.detail };
    else if (refusesEveryEpisode(err)) {
      // Every episode of the run would end the same way (a wrong or revoked key): the run pauses until it is
      // fixed, instead of recording them all, for good, as model-error.
      await closeSession();
      throw new EndpointRefusedError(err);
    } else if (classifyError(err).action === 'give-up' && !(err instanceof RunCancelledError)) termination = { reason: 'model-error', detail: (err as Error).message };
    else {
      await closeSession();
      throw err;
    }
  }
  // An episode that ended before it needed its environment (an answer in text at once, a model error) has its checks
  // run on the environment's state as any other (a model error's gives no reward, below); one whose environment did
  // not start ends as it would have at the start.
  let live: EnvSession | null = null;
  try {
    live = await ready();
  } catch (err) {
    if (!(err instanceof EpisodeEnd)) throw err; // a full sandbox thread: the job waits
    termination = { reason: err.reason, detail: err.detail };
  }

  let readError: string | null = null;
  let ran: ChecksResult | null = null;
  const episodeChecks = scenario.checklist?.some(c => c.episode) === true;
  // Episode checks run after the session: they get the initial state its own checks saw (a Python instance's constructed state).
  let initialState: unknown = scenario.initialState;
  try {
    // The final state and the checks on it, in the session's thread, and the session closed: one round trip.
    if (live) {
      // Episode checks read the transcript too: they run after the session (scoreFinalState), the others in it.
      // The text the session kept at its start (no code runs); only a session that is gone fails to give it, and then
      // finish says why. It never keeps finish from running.
      if (episodeChecks) initialState = await live.initialState().then(json => new RawJson(json), () => scenario.initialState);
      const end = await live.finish((scenario.checklist ?? []).filter(c => !c.episode));
      const full = fullAtEnd(end);
      if (full) throw SandboxFullError.at(full.where, full.message);
      const lost = lostAtEnd(end);
      if (lost) throw InterpreterLostError.at(lost.where, lost.message);
      if (end.stateJson === null) throw new SandboxError(end.stateError?.code ?? 'STATE_INVALID', end.stateError?.message ?? 'no final state');
      // Kept as the sandbox wrote it: the trajectory is stored with this text, never parsed here.
      finalState = new RawJson(end.stateJson);
      ran = end.checks;
    }
  } catch (err) {
    if (err instanceof SandboxFullError || err instanceof InterpreterLostError) throw err; // the session is closed below
    readError = `the final state could not be read: ${(err as Error).message}`;
  } finally {
    await live?.close().catch(() => undefined);
  }
  const episodeRecord = episodeChecks ? { messages, turnStates: script ? turnStates : null } : null;
  const scored = await scoreFinalState(deps.sandbox, { ...scenario, initialState }, finalState, input.sandboxLimits, readError, ran, episodeRecord);
  const { checks, checksError } = scored;
  // An episode the model endpoint cut short is no measure of the policy: its checks are kept (what the state had come
  // to), but it has no reward, as the groups' `unscored` and the datasets say, so a trainer never learns from an
  // outage's partial scores.
  const reward = termination.reason === 'model-error' ? null : scored.reward;
  const fullScore = fullCheck(checks);
  if (fullScore) throw SandboxFullError.at(fullScore.where, fullScore.message);
  const lostScore = lostCheck(checks);
  if (lostScore) throw InterpreterLostError.at(lostScore.where, lostScore.message);
  return {
    id,
    runId: input.runId,
    scenarioId: scenario.id,
    environmentId: env.id,
    mode,
    sample: input.sample,
    ...(input.policy ? { policy: input.policy } : {}),
    model: modelUsed ?? 'rollout.policy profile',
    userModel: mode === 'conversational' && !script ? (input.userModel ?? 'profile:rollout.user') : null,
    sampling: input.sampling,
    ...(samplingSent ? { samplingSent } : {}),
    policyVersion: input.policyVersion ?? null,
    policyTurns,
    tools,
    messages,
    userMessages,
    steps,
    checks,
    reward,
    solved: reward === 1,
    checksError,
    termination,
    turns,
    usage,
    timings: { startedAt, wallMs: Date.now() - started, envUs: Math.round(envUs) },
    finalState,
    ...(script ? { turnStates } : {}),
    lineage: { runId: input.runId, scenarioId: scenario.id, environmentId: env.id, prompts: { ...ROLLOUT_PROMPT_VERSIONS }, scenarioLineage: scenario.lineage },
  };
}

/** Whether calls written in a reply's text are its tool calls, one for one in order (names equal, arguments equal as JSON). */
function sameCalls(written: readonly { name: string; arguments: string }[], calls: readonly { function: { name: string; arguments: string } }[]): boolean {
  if (written.length !== calls.length) return false;
  return written.every((w, i) => {
    const c = calls[i]!.function;
    if (w.name !== c.name) return false;
    try {
      return isDeepStrictEqual(JSON.parse(w.arguments), JSON.parse(c.arguments || '{}'));
    } catch {
      return false;
    }
  });
}
