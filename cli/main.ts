/**
 * The `envfleet` command line. This file only declares the commands and their options; each command's
 * modules are imported when it runs, so `envfleet --help` loads nothing but commander.
 */
import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import type { ExportCommandOptions } from './datasets.js';
import type { ImportBfclOptions, ImportEnvscalerOptions, ImportTauBenchOptions } from './import.js';
import type { BudgetOptions, ControlOptions, DeleteRunsOptions } from './runs.js';
import type { SandboxCommandOptions } from './sandbox.js';
import type { ServeOptions } from './serve.js';
import type { RolloutsOptions, ScenariosOptions, SynthOptions } from './submit.js';
import { isRedisConnectionError } from '../src/redis/connection-errors.js';
import { isRedisFull, REDIS_FULL_ADVICE } from '../src/redis/full.js';

/**
 * Numbers on the command line are plain decimals, as in the configuration (config/env.ts): "0x10", "1e3",
 * "1_000" or "" are almost always a mistake, which Number() would take. Commander puts the option and the
 * value before these messages ("option '--tokens <n>' argument '1.5' is invalid.").
 */
const WHOLE = /^\d+$/;
const DECIMAL = /^\d+(\.\d+)?$/;

/** A whole number ≥ `min`, in digits. */
function wholeNumber(min: number, hint = '') {
  return (value: string): number => {
    const n = Number(value);
    if (!WHOLE.test(value) || !Number.isSafeInteger(n) || n < min) {
      throw new InvalidArgumentError(`Expected a whole number ≥ ${min}, in digits (such as ${Math.max(min, 5)})${hint}. Give it again without a sign, point, exponent or 0x.`);
    }
    return n;
  };
}

const positiveInt = wholeNumber(1);

function synthLanguageOption(value: string): string {
  const v = value.trim().toLowerCase();
  if (v !== 'js' && v !== 'python') throw new InvalidArgumentError(`expected js (JavaScript classes, the default) or python (EnvScaler-style Python classes), not "${value}"`);
  return v;
}

/** A sandbox deadline, within the bounds of its settings (ENVFLEET_SANDBOX_DEADLINE_MS and the like: at most 10 minutes). */
function deadlineMs(value: string): number {
  const n = positiveInt(value);
  if (n > 600_000) throw new InvalidArgumentError('expected milliseconds between 1 and 600000 (10 minutes), as ENVFLEET_SANDBOX_DEADLINE_MS takes');
  return n;
}

function memoryMb(value: string): number {
  const n = positiveInt(value);
  if (n > 4_096) throw new InvalidArgumentError('expected megabytes between 1 and 4096');
  return n;
}

function port(value: string): number {
  const n = Number(value);
  if (!WHOLE.test(value) || n > 65_535) throw new InvalidArgumentError('Expected a port number, 0 to 65535 in digits (such as 8090).');
  return n;
}

/** A number ≥ 0 (at most `max`), in decimal digits with an optional fraction. */
function nonNegativeDecimal(hint: string, max = Infinity) {
  return (value: string): number => {
    const n = Number(value);
    if (!DECIMAL.test(value) || n > max) {
      throw new InvalidArgumentError(`Expected a number ${max === Infinity ? '≥ 0' : `from 0 to ${max}`} in decimal digits (such as ${max === Infinity ? '12.5' : '0.5'})${hint}. Give it again without a sign, exponent or 0x.`);
    }
    return n;
  };
}

/** A cost above 0 (resume raises a budget; 0 would remove the limit, which `envfleet budget --usd 0` does, said). */
function positiveUsd(value: string): number {
  const n = nonNegativeDecimal('')(value);
  if (n === 0) throw new InvalidArgumentError('Expected a cost above 0, the new budget (to remove the cost limit instead: envfleet budget --run NAME --usd 0).');
  return n;
}

/**
 * Prints an error a user can act on and exits non-zero: envfleet's own errors (a stable code such as
 * CONFIG_INVALID, docs/errors.md), commander's usage errors and the system's (a file that cannot be
 * read, with its syscall) say what to fix in their message; anything else is a bug, printed with its stack.
 */
function fail(err: unknown): never {
  if (isRedisFull(err)) {
    process.stderr.write(`envfleet: [REDIS_FULL] ${REDIS_FULL_ADVICE} (${String((err as Error).message)})\n`);
    process.exit(1);
  }
  const e = err as { code?: unknown; syscall?: unknown; message?: unknown; stack?: unknown } | null;
  // Redis gone in the middle of a command (killed, restarting): ioredis's own error, not a bug of envfleet's. (A socket
  // error of its own, with a syscall, is printed as it is below: it may be another server's.)
  if (typeof e?.syscall !== 'string' && isRedisConnectionError(err)) {
    process.stderr.write(`envfleet: [REDIS_UNAVAILABLE] Redis stopped answering while the command ran (${String(e?.message)}); the command stopped there. Check that Redis runs (envfleet doctor), then run the command again\n`);
    process.exit(1);
  }
  const code = typeof e?.code === 'string' ? e.code : '';
  const own = /^[A-Z]+(_[A-Z]+)+$/.test(code) && !code.startsWith('ERR_');
  const actionable = own || code.startsWith('commander.') || typeof e?.syscall === 'string';
  // envfleet's own code goes first, as the logs and docs/errors.md name it (EXPORT_FOLDER_BUSY, …).
  process.stderr.write(`envfleet: ${own ? `[${code}] ` : ''}${actionable ? String(e?.message) : String(e?.stack ?? err)}\n`);
  process.exit(1);
}

/** Wraps a command's action so every failure ends in `fail`. */
function guarded<A extends unknown[]>(action: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await action(...args);
    } catch (err) {
      fail(err);
    }
  };
}

// A reader that stops early (`envfleet runs | head`) is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

/** envfleet's version, from its package.json: one folder up from cli/main.ts, two from dist/cli/main.js. */
function packageVersion(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'envfleet' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not in this layout: the other one
    }
  }
  return 'unknown (package.json not found beside the command)';
}

const program = new Command()
  .name('envfleet')
  .version(packageVersion(), '-V, --version', "print envfleet's version (from its package.json) and exit")
  .description('Synthesize executable tool-interaction environments for LLM agents and run rollouts against them, on a BullMQ worker fleet.')
  .showHelpAfterError();

const worker = program
  .command('worker')
  .description('consume queues until SIGTERM/SIGINT (any number of workers on any machines may share one Redis)')
  .option('--queues <names>', 'comma-separated stages to consume (default ENVFLEET_WORKER_QUEUES or all; listed below)')
  .option('--concurrency <n>', 'jobs at once per queue (default ENVFLEET_WORKER_CONCURRENCY)', positiveInt)
  .action(guarded(async (opts: { queues?: string; concurrency?: number }) => (await import('./worker.js')).workerCommand(opts)));
if (process.argv.slice(2, 4).includes('worker')) {
  // Only the worker's help (`envfleet worker --help`, `envfleet help worker`) lists the stages, so only it loads the pipeline declaration.
  const { PIPELINE_STAGES, STAGES } = await import('../queues/pipeline.js');
  worker.addHelpText('after', `\nStages (queues), in pipeline order:\n${PIPELINE_STAGES.map(s => `  ${s.padEnd(20)} ${STAGES[s].description}`).join('\n')}\n`);
}

program
  .command('model-server')
  .description('serve the OpenAI protocol from fixture scripts (for the demo, tests and offline runs)')
  .option('--script <path>', 'a JSON/YAML script, or a directory of them (default: the demo fixtures shipped with envfleet)')
  .option('--port <n>', 'port (0 = any free port)', port, 8787)
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .option('--api-key <key>', 'if set, requests must carry this Bearer key')
  .option('--log-file <path>', 'append every received request as a JSON line')
  .action(guarded(async (opts: { script?: string; port: number; host: string; apiKey?: string; logFile?: string }) => (await import('./servers.js')).modelServerCommand(opts)));

program
  .command('doctor')
  .description('check the configuration, Redis and the model endpoints, and say what to fix')
  .option('--json', 'print JSON')
  .action(guarded(async (opts: { json?: boolean }) => (await import('./doctor.js')).doctorCommand(opts)));

program
  .command('demo')
  .description('run the pipeline end to end on real queues and workers with the scripted model server')
  .option('--run <name>', 'name of the demo run (default: demo-TIMESTAMP-PID)')
  .option('--dashboard', 'keep the dashboard up on the demo run until Ctrl-C')
  .action(
    guarded(async (opts: { run?: string; dashboard?: boolean }) => {
      await (await import('./demo.js')).runDemo(undefined, { dashboard: opts.dashboard ?? false, ...(opts.run ? { runId: opts.run } : {}) });
      process.exit(0);
    }),
  );

program
  .command('synth')
  .description('synthesize environments: from source tasks (mining, skeleton, dual-agent check) or from descriptions (skipping mining)')
  .requiredOption('--run <name>', 'run name (re-running the same command resumes it and adds nothing)')
  .option('--tasks <file>', 'JSONL, one {"task": TEXT, "id"?, "source"?} per line')
  .option('--descriptions <file>', 'JSONL, one {"summary": TEXT, "introduction": TEXT} per line')
  .option('--max-envs <n>', 'build at most N environments (default: no limit)', positiveInt)
  .option('--probe-steps <n>', 'dual-agent probe steps per environment (default ENVFLEET_PROBE_STEPS)', positiveInt)
  .option('--language <lang>', 'the language the environments are written in: js (JavaScript classes, the default) or python (EnvScaler-style Python classes, run by the Python runtime); frozen with the run', synthLanguageOption)
  .option('--no-wait', 'enqueue and return without waiting for the run to finish')
  .option('--workers', 'also run workers for every queue in this process (otherwise start `envfleet worker` somewhere)')
  .option('--log-file <path>', "with --workers: append the workers' log (JSON lines) to this file instead of stderr; on a terminal it goes to a file of the temporary folder, named at the start")
  .action(guarded(async (opts: SynthOptions) => (await import('./submit.js')).synthCommand(opts)));

program
  .command('scenarios')
  .description('generate scenarios (initial states, tasks, checklists, check functions) for the kept environments of a run')
  .requiredOption('--run <name>', 'run name (its kept environments, or the environments imported with --environments)')
  .option('--per-env <m>', 'initial states (scenarios) per environment', positiveInt, 5)
  .option('--environments <file>', 'environments.jsonl (export format) to import into the run first')
  .option('--verify-with <model>', 'solvability gate: keep a scenario only when this reference policy model solves it')
  .option('--tries <r>', 'reference rollouts per scenario for --verify-with (default: 3)', positiveInt)
  .option('--no-wait', 'enqueue and return without waiting')
  .option('--workers', 'also run workers for every queue in this process')
  .option('--log-file <path>', "with --workers: append the workers' log (JSON lines) to this file instead of stderr; on a terminal it goes to a file of the temporary folder, named at the start")
  .action(guarded(async (opts: ScenariosOptions) => (await import('./submit.js')).scenariosCommand(opts)));

const importing = program.command('import').description("import environments and scenarios from another project's published files into a run (as kept environments and ready scenarios)");

importing
  .command('envscaler')
  .description("EnvScaler's environments (Python classes) and RL/SFT scenarios: the GitHub files (a JSON object keyed by env_id, JSON lists) or the Hugging Face rows (JSON-string fields), JSON or JSON Lines; a malformed record is skipped and reported")
  .requiredOption('--run <name>', 'run to import into (created when absent; importing the same files again adds nothing)')
  .option('--from <dir>', 'directory holding 191_env_metadata.json and rl_scenario_metadata.json and/or sft_scenario_metadata.json (interact_with_env/envscaler_env/data in a checkout)')
  .option('--envs <file>', 'instead of --from: the env metadata file')
  .option('--scenarios <file>', 'with --envs: a scenario metadata file (repeat for RL and SFT)', (value: string, previous: string[]) => [...previous, value], [] as string[])
  .option('--split <which>', 'rl (scenarios with check functions), sft (without) or all', 'all')
  .option('--limit <n>', 'at most N environments (the first selected, in the env file order), with their scenarios', positiveInt)
  .option('--append', 'import into a run that holds synthesized environments')
  .option('--json', 'print the summary as JSON (every skipped record with its reason)')
  .action(guarded(async (opts: ImportEnvscalerOptions) => (await import('./import.js')).importEnvscalerCommand(opts)));

importing
  .command('bfcl')
  .description("BFCL's multi-turn entries (Berkeley Function-Calling Leaderboard): one Python environment per combination of classes, one scripted multi-turn scenario per entry, BFCL's per-turn judgement as its check (gold calls replayed in the sandbox at import)")
  .requiredOption('--run <name>', 'run to import into (created when absent; importing the same checkout again adds nothing)')
  .requiredOption('--from <path>', 'a gorilla checkout, its berkeley-function-call-leaderboard folder, or its bfcl_eval folder')
  .option('--category <list>', 'comma-separated: base, miss_func, miss_param, long_context', 'base,miss_func,miss_param,long_context')
  .option('--limit <n>', 'at most N entries of each category (the first ones, in file order)', positiveInt)
  .option('--append', 'import into a run that holds other environments')
  .option('--json', 'print the summary as JSON (every skipped entry with its reason)')
  .action(guarded(async (opts: ImportBfclOptions) => (await import('./import.js')).importBfclCommand(opts)));

importing
  .command('tau-bench')
  .description("τ-bench v1's domains (retail, airline): one Python environment per domain (a class over its tools/*.py holding the database, data/*.json, as self.data; wiki.md as its policy) and one scenario per task of tasks_<split>.py, checked by τ-bench's database hash after the gold actions (replayed in the sandbox at import) and, for tasks with outputs, by the transcript")
  .requiredOption('--from <path>', 'a checkout of sierra-research/tau-bench, or its tau_bench/envs folder, or one domain folder')
  .requiredOption('--run <name>', 'run to import into (created when absent, with the sandbox limits τ-bench needs; importing the same files again adds nothing)')
  .option('--domain <names>', 'comma-separated domains (folder names under tau_bench/envs; default: every domain found)')
  .option('--split <splits>', 'comma-separated task splits: test, dev, train', 'test')
  .option('--limit <n>', 'at most N tasks per split and domain (the first ones)', positiveInt)
  .option('--append', 'import into a run that holds other environments')
  .option('--json', 'print the summary as JSON (every skipped task with its reason)')
  .action(guarded(async (opts: ImportTauBenchOptions) => (await import('./import.js')).importTauBenchCommand(opts)));

program
  .command('rollouts')
  .description('run K episodes of the policy per ready scenario of a run, in one or both modes; trajectories go to the run’s stream (write them with envfleet sink)')
  .requiredOption('--run <name>', 'run name')
  .option('--samples <k>', 'episodes per scenario and mode (a group)', positiveInt, 4)
  .option('--mode <mode>', 'non-conversational, conversational or both', 'both')
  .option('--model <name>', 'policy model (default: the rollout.policy profile)')
  .option('--policy-version <v>', 'the policy’s version (a checkpoint step, a tag), recorded with every trajectory for off-policy correction; another version (or --model) on the same run is a generation of its own')
  .option('--user-model <name>', 'user-simulator model (default: the rollout.user profile)')
  .option('--max-steps <n>', 'agent turns per episode (default 30 non-conversational, 40 conversational)', positiveInt)
  .option('--max-tokens <n>', 'tokens per episode (default: no limit)', positiveInt)
  .option('--max-wall-ms <n>', 'wall time per episode (default 600000)', positiveInt)
  .option('--no-wait', 'enqueue and return')
  .option('--workers', 'also run workers for every queue in this process')
  .option('--log-file <path>', "with --workers: append the workers' log (JSON lines) to this file instead of stderr; on a terminal it goes to a file of the temporary folder, named at the start")
  .action(guarded(async (opts: RolloutsOptions) => (await import('./submit.js')).rolloutsCommand(opts)));

program
  .command('sink')
  .description('write a run’s trajectories from its Redis stream to DIR/trajectories/*.jsonl, exactly once; resumes after a crash')
  .requiredOption('--run <name>', 'run name')
  .requiredOption('--out <dir>', 'output directory')
  .option('--follow', 'keep running after the run has no outstanding job')
  .action(guarded(async (opts: { run: string; out: string; follow?: boolean }) => (await import('./datasets.js')).sinkCommand(opts)));

program
  .command('export')
  .description('write the datasets of a run: DIR/environments.jsonl (every environment), DIR/scenarios.jsonl and DIR/scenarios-dropped.jsonl, and the SFT and RL files of its trajectories')
  .requiredOption('--run <name>', 'run name')
  .requiredOption('--out <dir>', 'output directory (created if missing)')
  .option('--format <f>', 'dataset formats, comma-separated: openai, sharegpt, llamafactory, hf, rl, verl, prompts (default: all)')
  .option('--reasoning <mode>', 'SFT exports: keep or drop the policy’s reasoning (reasoning_content), the same way in every file (default: drop)')
  .option('--filter <which>', 'SFT exports: "solved" keeps only solved trajectories')
  .option('--min-reward <x>', 'SFT exports: keep trajectories with at least this reward (0 to 1); one without a reward (unscored: a model or environment error) is left out, even at 0', nonNegativeDecimal('', 1))
  .option('--trajectories <dir>', "where the sink's shard files are now, if its output directory was moved (the directory holding part-NNNNN.jsonl)")
  .option('--skip-missing', "SFT exports: leave out (and count) the trajectories whose sink file is gone or damaged for good, instead of stopping (TRAJECTORY_ARCHIVE_MISSING)")
  .action(guarded(async (opts: ExportCommandOptions) => (await import('./datasets.js')).exportCommand(opts)));

program
  .command('dashboard')
  .description('serve bull-board (/queues), the run overview (/), Prometheus metrics (/metrics) and /healthz')
  .option('--port <n>', 'port (default ENVFLEET_DASHBOARD_PORT)', port)
  .option('--host <host>', 'address (default ENVFLEET_DASHBOARD_HOST)')
  .action(guarded(async (opts: { port?: number; host?: string }) => (await import('./servers.js')).dashboardCommand(opts)));

program
  .command('serve')
  .description('serve the ready scenarios of a run, or of an export, to RL trainers: NeMo Gym style (POST /seed_session, /{tool}, /verify), MCP (/sessions/{id}/mcp), OpenEnv (/ws, POST /mcp); several processes share one Redis; docs/env-server.md')
  .option('--run <name>', 'the run whose ready scenarios are served (from Redis)')
  .option('--environments <file>', "instead of --run: an export's environments.jsonl (envfleet export), with --scenarios")
  .option('--scenarios <file>', "the same export's scenarios.jsonl (its ready scenarios)")
  .option('--port <n>', 'port (0: any free port)', port, 8090)
  .option('--host <host>', 'address (anything but loopback needs --token)', '127.0.0.1')
  .option('--max-sessions <n>', 'live sessions at most; one more is answered 503 OVER_CAPACITY', positiveInt, 64)
  .option('--idle-timeout <ms>', 'a session with no request for this long (ms) ends, its reward kept (0: never)', wholeNumber(0, '; 0: never'), 600_000)
  .option('--token <token>', 'required from clients as Authorization: Bearer TOKEN (needed unless bound to loopback; default ENVFLEET_SERVE_TOKEN, which keeps it out of the process list)')
  .option('--advertise-url <url>', 'where the other serve processes sharing this Redis reach this one, to forward requests about its sessions (default http://HOST:PORT; the machine name for 0.0.0.0)')
  .option('--result-ttl <seconds>', "how long an ended session's result (reward, final state) stays readable through every serve process", positiveInt, 600)
  .action(guarded(async (opts: ServeOptions) => (await import('./serve.js')).serveCommand(opts)));

program
  .command('runs')
  .description('list the runs (state, outstanding jobs, creation time), or delete them')
  .option('--json', 'print JSON')
  .action(guarded(async (opts: { json?: boolean }) => (await import('./runs.js')).runsCommand(opts)))
  .command('delete')
  .description('delete a run, or every run finished before a date: its documents, counters, cached model responses, ledger and finished jobs (a run with outstanding jobs must be cancelled first)')
  .option('--run <name>', 'the run to delete')
  .option('--finished-before <date>', 'delete every run that finished before this date (ISO 8601, e.g. 2026-11-01 or 2026-11-01T12:00Z)')
  .option('--dry-run', 'only list what would be deleted')
  .option('--force', 'delete a run even when it has trajectories no envfleet sink has written to disk (Redis holds their only copy)')
  .action(guarded(async (opts: DeleteRunsOptions) => (await import('./runs.js')).deleteRunsCommand(opts)));

program
  .command('status')
  .description('show a run: per stage waiting, active, done, and left with reasons; tokens and cost; rate and time left; the funnel')
  .requiredOption('--run <name>', 'run name')
  .option('--json', 'print JSON')
  .action(guarded(async (opts: { run: string; json?: boolean }) => (await import('./runs.js')).statusCommand(opts)));

const CONTROL = {
  pause: 'pause a run: no job of it starts and no model request is sent; a job in flight is parked at its next model call and goes on from there after resume (its calls so far answered from the response cache)',
  resume: 'resume a paused run (after a budget pause, raise the budget first with envfleet budget or the options here)',
  cancel: 'cancel a run: its waiting jobs are removed, jobs in flight finish, nothing new starts; the results so far stay',
} as const;
for (const action of ['pause', 'resume', 'cancel'] as const) {
  const command = program
    .command(action)
    .description(CONTROL[action])
    .requiredOption('--run <name>', 'run name')
    .option('--reason <text>', 'why (recorded with the run)', `${action} requested from the command line`);
  // Only resume raises a budget; pause and cancel refuse the options as unknown (commander names them).
  if (action === 'resume') {
    command.option('--budget-usd <x>', 'the new cost budget in US dollars, set before the run goes on', positiveUsd).option('--budget-tokens <n>', 'the new token budget, set before the run goes on', positiveInt);
  }
  command.action(guarded(async (opts: ControlOptions) => (await import('./runs.js')).controlCommand(action, opts)));
}

program
  .command('budget')
  .description('set a run’s budget (tokens and/or US dollars), for the whole run or one stage; 0 removes a limit')
  .requiredOption('--run <name>', 'run name')
  .option('--usd <x>', 'cost budget in US dollars', nonNegativeDecimal('; 0 removes the limit'))
  .option('--tokens <n>', 'token budget (prompt + completion)', wholeNumber(0, '; 0 removes the limit'))
  .option('--stage <name>', 'limit only this model stage (e.g. rollout.policy)')
  .option('--json', 'print the budgets as JSON')
  .action(guarded(async (opts: BudgetOptions) => (await import('./runs.js')).budgetCommand(opts)));

const sandbox = program.command('sandbox').description('run environment code in the sandbox, for people debugging environments and check functions');

sandbox
  .command('run')
  .description('instantiate BUNDLE on STATE, run CALLS (JSONL of {"tool", "arguments"}) and print the results and final state as JSON')
  .argument('<bundle>', 'environment bundle JSON (name, className, source, tools)')
  .requiredOption('--state <file>', 'initial state JSON')
  .requiredOption('--calls <file>', 'JSONL, one {"tool": NAME, "arguments": {...}} per line ("-": standard input, as for any one of the files)')
  .option('--deadline-ms <n>', 'deadline of one call, 1 to 600000 (default ENVFLEET_SANDBOX_DEADLINE_MS)', deadlineMs)
  .option('--memory-mb <n>', "memory cap of a JavaScript environment (default ENVFLEET_SANDBOX_ENV_MEMORY_MB); a Python one has its interpreter's, ENVFLEET_PYTHON_HEAP_MB", memoryMb)
  .action(guarded(async (bundle: string, opts: SandboxCommandOptions) => (await import('./sandbox.js')).sandboxCommand('run', bundle, opts)));

sandbox
  .command('check')
  .description('run check functions as check(final, initial) and print the results, reward and solved as JSON')
  .argument('<checks>', 'JSON array of {"item": TEXT, "check": SOURCE, "language"?: "js" | "python", "episode"?: true}')
  .requiredOption('--initial <file>', 'initial state JSON')
  .requiredOption('--final <file>', 'final state JSON')
  .option('--episode <file>', 'for episode checks (episode: true): a trajectory JSON (its messages and turnStates), or {"messages": [...], "turn_states": [...]}')
  .option('--deadline-ms <n>', 'deadline of one check, 1 to 600000 (default ENVFLEET_SANDBOX_CHECK_DEADLINE_MS)', deadlineMs)
  .option('--memory-mb <n>', "memory cap of JavaScript checks (default ENVFLEET_SANDBOX_ENV_MEMORY_MB); Python checks have their interpreter's, ENVFLEET_PYTHON_HEAP_MB", memoryMb)
  .action(guarded(async (checks: string, opts: SandboxCommandOptions) => (await import('./sandbox.js')).sandboxCommand('check', checks, opts)));

await program.parseAsync(process.argv);
