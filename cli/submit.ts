import { mkdtempSync } from 'node:fs';
import { constants as osConstants, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { InvalidArgumentError } from 'commander';
import { waitForRun, type RunProgress } from '../queues/run-jobs.js';
import type { Entry } from '../queues/pipeline.js';
import { runFailures, type RunFailures } from '../queues/run-status.js';
import { submitRollouts, submitScenarios, submitSynthesis } from '../queues/submit.js';
import { RequestError } from '../src/errors.js';
import { createLogger, type Logger } from '../src/logger.js';
import type { RolloutMode } from '../src/rollouts/types.js';
import { startWorkerProcess } from '../workers/main.js';
import { withRuns, type CommandContext } from './context.js';
import { progressReporter } from './progress.js';

interface Waiting {
  readonly run: string;
  /** false with --no-wait. */
  readonly wait: boolean;
  /** Also run workers for every queue in this process. */
  readonly workers?: boolean;
  /** With --workers: their log goes to this file (appended) instead of stderr. */
  readonly logFile?: string;
}

/**
 * Where the in-process workers of --workers log: --log-file; on a terminal, a file of the temporary folder (their
 * JSON lines, a failed job's stack among them, would break the progress bars and bury the summary); else stderr.
 * The file is named on stderr at the start.
 */
function workersLogger(config: CommandContext['config'], opts: Waiting): Logger {
  if (opts.logFile === undefined && !process.stderr.isTTY) return createLogger(config);
  let path = opts.logFile ?? '';
  let destination;
  try {
    // The default: a folder of this user's own (mode 0700, an unpredictable name) in the temporary folder, since
    // the log can quote model output and environment content.
    if (opts.logFile === undefined) path = join(mkdtempSync(join(tmpdir(), 'envfleet-log-')), `${opts.run}.log`);
    destination = pino.destination({ dest: path, sync: true, append: true, mode: 0o600 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const where = opts.logFile === undefined ? `a log file in the temporary folder (${tmpdir()})` : resolve(path);
    throw new RequestError(`cannot write the workers' log to ${where}: ${(err as Error).message}${code === 'ENOENT' ? ' (its folder does not exist)' : ''}. Give --log-file a file in a folder you can write to.`);
  }
  process.stderr.write(`envfleet: the workers of this process log to ${resolve(path)}\n`);
  return createLogger(config, destination);
}

export interface SynthOptions extends Waiting {
  readonly tasks?: string;
  readonly descriptions?: string;
  readonly maxEnvs?: number;
  readonly probeSteps?: number;
  readonly language?: string;
}

export interface ScenariosOptions extends Waiting {
  readonly perEnv: number;
  readonly environments?: string;
  readonly verifyWith?: string;
  readonly tries?: number;
}

export interface RolloutsOptions extends Waiting {
  readonly samples: number;
  readonly mode: string;
  readonly model?: string;
  readonly policyVersion?: string;
  readonly userModel?: string;
  readonly maxSteps?: number;
  readonly maxTokens?: number;
  readonly maxWallMs?: number;
}

/**
 * The last line of a run with failed items: how many, with which codes, and what to do. Exported for
 * its test.
 */
export function failureLine(runId: string, failures: RunFailures): string {
  const parts: string[] = [];
  if (failures.total) {
    const codes = Object.entries(failures.byCode)
      .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
      .map(([code, n]) => `${code} ×${n}`)
      .join(', ');
    parts.push(`${failures.total} failed: ${codes} — fix the cause (envfleet status --run ${runId} shows where; docs/errors.md what each code means) and run the same command again to retry them`);
  }
  if (failures.modelErrorEpisodes) {
    parts.push(`${failures.modelErrorEpisodes} episodes of the run so far (every policy generation) ended with model-error (recorded as trajectories with reward null, not retried: roll out again under another --policy-version to replace them)`);
  }
  return `run ${runId}: ${parts.join('; ')}`;
}

/**
 * A submitting command: (with --workers) starts workers in this process, submits, then (unless
 * --no-wait) waits for the run with progress and prints `done`, or, when items of `entries` failed,
 * what failed and what to do, and exits 1.
 */
async function submitting(opts: Waiting, entries: readonly Entry[], submit: (c: CommandContext) => Promise<void>, done: (p: RunProgress) => string): Promise<void> {
  await withRuns(async c => {
    if (opts.logFile !== undefined && !opts.workers) throw new RequestError('--log-file is where the workers of --workers log; without --workers this command runs no worker (each `envfleet worker` logs to its own stderr)');
    const running = opts.workers ? await startWorkerProcess(c.config, workersLogger(c.config, opts)) : null;
    const stopOnce = running ? once(() => running.stop()) : null;
    const uninstall = stopOnce ? stopWorkersOnSignals(opts.run, stopOnce, c.config.worker.shutdownTimeoutMs) : () => undefined;
    try {
      await submit(c);
      if (!opts.wait) return;
      const progress = progressReporter(opts.run, process.stdout, c.config.worker.rateLimitPauseMs);
      const final = await waitForRun(c.store, opts.run, p => progress.report(p), { queues: c.at, control: c.control, redisAwayMs: c.config.redis.startupWaitMs, redisAt: c.config.redis });
      progress.stop();
      // A run cancelled meanwhile (envfleet cancel, from another terminal) has nothing outstanding either: it did not
      // finish, and the command says so and fails, as it does for a run deleted under it (RUN_GONE).
      const control = await c.control.get(opts.run);
      if (control.state === 'cancelled') {
        process.stdout.write(`run ${opts.run} was cancelled${control.since ? ` at ${control.since}` : ''}${control.reason ? ` (${control.reason})` : ''}: its outstanding jobs were removed and it takes no new work; what was done is kept (envfleet status --run ${opts.run}; envfleet export or sink write it)\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(`${done(final)}\n`);
      const failures = await runFailures(c.store, opts.run, entries);
      if (failures.total || failures.modelErrorEpisodes) {
        process.stdout.write(`${failureLine(opts.run, failures)}\n`);
        process.exitCode = 1;
      }
    } finally {
      uninstall();
      await stopOnce?.();
    }
  });
}

const once = <T>(fn: () => Promise<T>): (() => Promise<T>) => {
  let started: Promise<T> | undefined;
  return () => (started ??= fn());
};

/**
 * With --workers, Ctrl-C (SIGINT) or SIGTERM stops the in-process workers as `envfleet worker` stops:
 * no new job, jobs in flight finish or, past ENVFLEET_SHUTDOWN_TIMEOUT_MS, go back to their queues
 * with their attempt kept; then says what was done and exits 128 + the signal's number (130 for
 * SIGINT, 143 for SIGTERM). A second signal exits at once. Returns the function that removes the handlers.
 */
function stopWorkersOnSignals(runId: string, stop: () => Promise<void>, timeoutMs: number): () => void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    const code = 128 + (osConstants.signals[signal] ?? 2);
    if (stopping) {
      process.stderr.write(`envfleet: ${signal} again: exiting now; jobs still running in this process will be taken up by other workers once their locks expire\n`);
      process.exit(code);
    }
    stopping = true;
    process.stderr.write(`envfleet: ${signal}: stopping the workers of this process: no new job starts, jobs running now finish or go back to their queues within ${Math.round(timeoutMs / 1000)} s (ENVFLEET_SHUTDOWN_TIMEOUT_MS); ${signal} again exits at once\n`);
    stop().then(
      () => {
        process.stderr.write(`envfleet: the workers of this process stopped: the jobs they were running finished or went back to their queues, and what was done is kept. Run ${runId} goes on with other workers (envfleet worker); to go on here, run the same command again\n`);
        process.exit(code);
      },
      (err: unknown) => {
        process.stderr.write(`envfleet: stopping the workers failed (${String((err as Error)?.message ?? err)}); jobs they held are taken up by other workers once their locks expire. Run the same command again to go on\n`);
        process.exit(code);
      },
    );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

const retriedText = (n: number) => (n ? `, ${n} failed jobs retried` : '');

const problemsOf = (file: string | undefined, problems: readonly { line: number; problem: string }[]) => {
  for (const p of problems) process.stderr.write(`envfleet: ${file} line ${p.line} skipped: ${p.problem}\n`);
};

/** `envfleet synth`. */
export async function synthCommand(opts: SynthOptions): Promise<void> {
  await submitting(
    opts,
    ['tasks', 'descriptions'],
    async c => {
      const s = await submitSynthesis(c.config, c.redis, {
        runId: opts.run,
        ...(opts.tasks ? { tasks: opts.tasks } : {}),
        ...(opts.descriptions ? { descriptions: opts.descriptions } : {}),
        ...(opts.maxEnvs ? { maxEnvs: opts.maxEnvs } : {}),
        ...(opts.probeSteps ? { probeSteps: opts.probeSteps } : {}),
        ...(opts.language ? { language: opts.language } : {}),
      });
      problemsOf(opts.tasks ?? opts.descriptions, s.problems);
      process.stdout.write(`run ${s.runId}: ${s.created ? 'created' : 'exists (resuming)'}; ${s.items} input items, ${s.jobsAdded} jobs added${retriedText(s.jobsRetried)}${s.language === 'python' ? '; environments in Python' : ''}\n`);
    },
    final => `run ${opts.run} finished: ${JSON.stringify(final.environments)}. Export it with: envfleet export --run ${opts.run} --out DIR`,
  );
}

/** `envfleet scenarios`. */
export async function scenariosCommand(opts: ScenariosOptions): Promise<void> {
  // Without the gate there is no reference rollout to count: a --tries that would do nothing (and be frozen with the run's settings).
  if (opts.tries !== undefined && !opts.verifyWith) throw new InvalidArgumentError(`--tries sets how many reference rollouts --verify-with MODEL gets per scenario; give --verify-with too, or leave --tries out`);
  await submitting(
    opts,
    ['scenarios'],
    async c => {
      const s = await submitScenarios(c.config, c.redis, {
        runId: opts.run,
        perEnv: opts.perEnv,
        ...(opts.tries !== undefined ? { tries: opts.tries } : {}),
        ...(opts.environments ? { environments: opts.environments } : {}),
        ...(opts.verifyWith ? { verifyWith: opts.verifyWith } : {}),
      });
      problemsOf(opts.environments, s.problems);
      process.stdout.write(`run ${opts.run}: ${s.items} kept environments, ${s.jobsAdded} scenario.state jobs added${retriedText(s.jobsRetried)}\n`);
    },
    final => `run ${opts.run} finished: scenarios ${JSON.stringify(final.scenarios)}. Export with: envfleet export --run ${opts.run} --out DIR`,
  );
}

/** `envfleet rollouts`. */
export async function rolloutsCommand(opts: RolloutsOptions): Promise<void> {
  const modes = opts.mode === 'both' ? (['non-conversational', 'conversational'] as const) : [opts.mode];
  for (const m of modes) if (m !== 'non-conversational' && m !== 'conversational') throw new InvalidArgumentError(`--mode must be non-conversational, conversational or both, not "${m}"`);
  await submitting(
    opts,
    ['rollouts'],
    async c => {
      const r = await submitRollouts(c.config, c.redis, {
        runId: opts.run,
        samples: opts.samples,
        modes: modes as RolloutMode[],
        ...(opts.model ? { policyModel: opts.model } : {}),
        ...(opts.policyVersion ? { policyVersion: opts.policyVersion } : {}),
        ...(opts.userModel ? { userModel: opts.userModel } : {}),
        ...(opts.maxSteps ? { maxSteps: { 'non-conversational': opts.maxSteps, conversational: opts.maxSteps } } : {}),
        ...(opts.maxTokens ? { maxTokens: opts.maxTokens } : {}),
        ...(opts.maxWallMs ? { maxWallMs: opts.maxWallMs } : {}),
      });
      process.stdout.write(`run ${opts.run}: ${r.scenarios} ready scenarios, ${r.groupsAdded} groups of ${r.config.samples} added${retriedText(r.jobsRetried)} (modes ${r.config.modes.join(', ')})${r.policy ? `, policy generation ${r.policy}${r.config.policyVersion ? ` (version ${r.config.policyVersion})` : ''}` : ''}\n`);
    },
    () => `run ${opts.run}: rollouts finished. Write them with: envfleet sink --run ${opts.run} --out DIR`,
  );
}
