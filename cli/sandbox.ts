import { z } from 'zod';
import { loadConfig, type AppConfig } from '../config/index.js';
import { CheckSpec, EnvironmentCode, ToolCall } from '../src/sandbox/bundle.js';
import { InputFileError, readJsonFile, readJsonFileAsText, readJsonlLines, STDIN_PATH } from '../src/sandbox/files.js';
import type { SandboxLimits } from '../src/sandbox/limits.js';
import { createLanguageRouter } from '../src/sandbox/language-router.js';
import { createPythonSandboxRunner } from '../src/sandbox/python/python-runner.js';
import type { SandboxRunner } from '../src/sandbox/runner.js';
import { probeThroughSession } from '../src/sandbox/session-probe.js';
import { createSandboxPool, SANDBOX_THREAD_FILE, type SandboxPool } from '../workers/sandbox-pool.js';
import type { EpisodeRecord, ProbeCall } from '../src/sandbox/tasks.js';
import { createLogger } from '../src/logger.js';
import { jsonItemTexts, jsonMemberText } from '../src/util/json-member.js';
import { RawJson, stringifyJson } from '../src/util/raw-json.js';

export interface SandboxCliOptions {
  readonly deadlineMs?: number;
  readonly memoryMb?: number;
}

/**
 * The configured limits with the command's flags on top. `--memory-mb` is the environment's
 * allowance, as ENVFLEET_SANDBOX_ENV_MEMORY_MB is; the command's one thread is bounded by
 * ENVFLEET_SANDBOX_HEAP_MB, raised if needed so that the allowance fits in it.
 */
function limitsFrom(config: AppConfig, options: SandboxCliOptions): SandboxLimits {
  const envMemoryMb = options.memoryMb || config.sandbox.envMemoryMb;
  return {
    ...config.sandbox,
    ...(options.deadlineMs ? { callDeadlineMs: options.deadlineMs, createDeadlineMs: Math.max(options.deadlineMs, config.sandbox.createDeadlineMs), checkDeadlineMs: options.deadlineMs } : {}),
    envMemoryMb,
    heapMb: Math.max(config.sandbox.heapMb, envMemoryMb + 16),
  };
}

/**
 * JavaScript in one sandbox thread watched as a worker's are (a built-in that makes no interrupt checks, stuck past its
 * deadline, has its thread terminated: src/sandbox/watchdog.ts), its probe made of a session's calls so that the calls
 * before a stopped one keep their results; Python (language "python") in the Pyodide child process, which is only
 * forked when a Python environment or check comes; the thread likewise starts on the first JavaScript one. Closed by
 * the caller.
 */
function commandRunner(config: AppConfig, limits: SandboxLimits): SandboxRunner {
  // The command's answer is its JSON on stdout, which says what the runtime stopped and why: the runtime's own info
  // lines (an interpreter started, a thread replaced) are a service's log, not the command's output. LOG_LEVEL=debug
  // (or trace) still shows them; warnings and errors always.
  const logger = createLogger({ ...config, log: { ...config.log, level: config.log.level === 'info' ? 'warn' : config.log.level } });
  let starting: Promise<SandboxPool> | null = null;
  const pool = (): Promise<SandboxPool> =>
    (starting ??= (async () => {
      const started = createSandboxPool({ pool: { threads: 1, tasksPerThread: 1 }, sandbox: limits }, logger.child({ component: 'sandbox-pool' }), SANDBOX_THREAD_FILE);
      await started.started();
      return started;
    })());
  return createLanguageRouter({
    js: {
      probe: async input => {
        const started = await pool();
        return probeThroughSession((...args) => started.openSession(...args), input);
      },
      checks: async input => (await pool()).checks(input),
      openSession: async (...args) => (await pool()).openSession(...args),
      close: async () => (await starting?.catch(() => null))?.close(),
    },
    python: createPythonSandboxRunner({
      snapshotDir: config.python.snapshotDir,
      interpreters: 1,
      heapMb: config.python.heapMb,
      packages: config.python.packages,
      logger: logger.child({ component: 'python-sandbox' }),
    }),
  });
}

/**
 * `envfleet sandbox run`: loads a bundle, instantiates it on a state, runs the calls, prints JSON. The state file's and
 * each call's text reach a Python environment as written (5.0 a float, an integer past 2^53 exact), and its results and
 * final state are printed as it wrote them, as in a rollout.
 */
export async function sandboxRun(
  config: AppConfig,
  files: { bundle: string; state: string; calls: string },
  options: SandboxCliOptions,
): Promise<unknown> {
  const code = await readJsonFile(files.bundle, EnvironmentCode);
  const state = await readJsonFileAsText(files.state);
  const calls: ProbeCall[] = (await readJsonlLines(files.calls, ToolCall)).map(({ value, text }) => {
    const argumentsText = jsonMemberText(text, 'arguments');
    return argumentsText === undefined ? value : { ...value, argumentsText };
  });
  const limits = limitsFrom(config, options);
  const runner = commandRunner(config, limits);
  const probe = await runner.probe({ code, initialState: state.value(), initialStateJson: state.json, calls, limits }).finally(() => runner.close());
  if (probe.createError) {
    return { results: [], finalState: null, createError: probe.createError };
  }
  return {
    results: probe.steps.map((s, i) => ({
      tool: s.tool,
      arguments: calls[i]?.argumentsText === undefined ? s.arguments : new RawJson(calls[i].argumentsText),
      result: s.resultJson === undefined ? s.result : new RawJson(s.resultJson),
      ...(s.runtimeError ? { runtimeError: s.runtimeError } : {}),
    })),
    finalState: probe.finalStateJson === undefined ? probe.finalState : new RawJson(probe.finalStateJson),
    ...(probe.finalStateError ? { finalStateError: probe.finalStateError } : {}),
  };
}

/** `--episode FILE`: a trajectory (messages, turnStates) or the episode as a check sees it (messages, turn_states). */
const EpisodeFile = z
  .object({ messages: z.array(z.unknown()), turnStates: z.array(z.unknown()).nullish(), turn_states: z.array(z.unknown()).nullish() })
  .refine(e => !(e.turnStates && e.turn_states), 'give the turn states once, as turnStates or turn_states');

/**
 * The episode of `--episode FILE`, its turn states as the file writes them (RawJson), as a rollout's episode checks
 * see the sessions' states: a Python check then reads 100.0 as a float and an integer past 2^53 exactly.
 */
async function readEpisode(path: string): Promise<EpisodeRecord> {
  const e = await readJsonFile(path, EpisodeFile);
  const text = (await readJsonFileAsText(path)).json;
  const name = e.turnStates ? 'turnStates' : e.turn_states ? 'turn_states' : null;
  const items = name === null ? undefined : jsonItemTexts(jsonMemberText(text, name) ?? '');
  const turnStates = items && items.length === (e.turnStates ?? e.turn_states)!.length ? items.map(t => new RawJson(t)) : (e.turnStates ?? e.turn_states ?? null);
  return { messages: e.messages, turnStates };
}

/** `envfleet sandbox check`: runs check functions on a final and an initial state (and an episode, for episode checks), prints JSON. */
export async function sandboxCheck(
  config: AppConfig,
  files: { checks: string; initial: string; final: string; episode?: string | undefined },
  options: SandboxCliOptions,
): Promise<unknown> {
  const checks = await readJsonFile(files.checks, z.array(CheckSpec));
  // Both states as their files' text: a Python check sees 1.0 as a float, as the rollout's checks saw the session's
  // states. A Python check's initial_state in a rollout is the constructed instance's state (vars after __init__ and
  // the config), so the file to give is that state, not the scenario's config, for the same verdict.
  const initial = await readJsonFileAsText(files.initial);
  const final = await readJsonFileAsText(files.final);
  const episode = files.episode === undefined ? undefined : await readEpisode(files.episode);
  const limits = limitsFrom(config, options);
  const runner = commandRunner(config, limits);
  const result = await runner.checks({ checks, finalState: final, initialState: initial, limits, ...(episode ? { episode } : {}) }).finally(() => runner.close());
  return {
    results: result.results.map(r => ({ item: r.item, passed: r.passed, ...(r.error ? { error: r.error, errorCode: r.errorCode } : {}) })),
    reward: result.reward,
    solved: result.solved,
  };
}

export interface SandboxCommandOptions extends SandboxCliOptions {
  readonly state?: string;
  readonly calls?: string;
  readonly initial?: string;
  readonly final?: string;
  readonly episode?: string;
}

/** `envfleet sandbox run | check`: prints the result as one JSON line. */
export async function sandboxCommand(kind: 'run' | 'check', file: string, opts: SandboxCommandOptions): Promise<void> {
  const config = loadConfig();
  // Standard input (`-`) gives one file: two could not both be read from it.
  const given = kind === 'run' ? { bundle: file, '--state': opts.state, '--calls': opts.calls } : { checks: file, '--initial': opts.initial, '--final': opts.final, '--episode': opts.episode };
  const fromStdin = Object.entries(given).filter(([, path]) => path === STDIN_PATH).map(([name]) => name);
  if (fromStdin.length > 1) throw new InputFileError(`${fromStdin.join(' and ')} each say "-" (standard input), which can give only one file; write the others to files`);
  const out =
    kind === 'run'
      ? await sandboxRun(config, { bundle: file, state: opts.state!, calls: opts.calls! }, opts)
      : await sandboxCheck(config, { checks: file, initial: opts.initial!, final: opts.final!, episode: opts.episode }, opts);
  process.stdout.write(`${stringifyJson(out)}\n`);
}
