import { Command, InvalidArgumentError } from 'commander';
import { ConfigError, STAGE_NAMES, isStageName, loadConfig } from '../config/index.js';
import { QUEUES } from '../queues/index.js';
import { AppError } from '../src/errors.js';
import { createLogger } from '../src/logger.js';
import { loadModelScript } from '../src/model-server/fixtures.js';
import { InputFileError } from '../src/sandbox/files.js';
import { startModelServer } from '../src/model-server/index.js';
import { runDemo } from './demo.js';
import { formatChecks, runDoctor } from './doctor.js';
import { startWorkerProcess } from './main.js';
import { sandboxCheck, sandboxRun } from './sandbox-cli.js';
import {
  DATASET_FORMATS,
  exportRun,
  formatFunnel,
  submitRollouts,
  submitScenarios,
  submitSynthesis,
  waitForRun,
  withProducerRedis,
  type DatasetFormat,
} from './synth-cli.js';
import { runSink } from '../src/rollouts/sink.js';
import { createRedisRunControl } from '../src/runs/control.js';
import { createRedisLedger } from '../src/llm/redis-ledger.js';
import { formatStatus, runStatus } from './run-status.js';
import { startDashboard } from './dashboard.js';
import { cancelRun, listRuns, progressReporter } from './run-commands.js';
import { createRedisSynthesisStore } from '../src/synthesis/store.js';
import { onTerminationSignals } from './shutdown.js';

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

function memoryMb(value: string): number {
  const n = positiveInt(value);
  if (n < 1 || n > 4_096) throw new InvalidArgumentError('expected megabytes between 1 and 4096');
  return n;
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65_535) throw new InvalidArgumentError('expected a port number (0-65535)');
  return n;
}

/** Prints an error a user can act on and exits non-zero. */
function fail(err: unknown): never {
  if (err instanceof ConfigError || err instanceof AppError || err instanceof InputFileError) {
    process.stderr.write(`envfleet: ${err.message}\n`);
  } else {
    process.stderr.write(`envfleet: ${(err as Error).stack ?? String(err)}\n`);
  }
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

const program = new Command()
  .name('envfleet')
  .description('Synthesize executable tool-interaction environments for LLM agents and run rollouts against them, on a BullMQ worker fleet.')
  .showHelpAfterError();

program
  .command('worker')
  .description('consume queues until SIGTERM/SIGINT (any number of workers on any machines may share one Redis)')
  .option('--queues <names>', `comma-separated queues (default ENVFLEET_WORKER_QUEUES or all): ${Object.keys(QUEUES).join(', ')}`)
  .option('--concurrency <n>', 'jobs at once per queue (default ENVFLEET_WORKER_CONCURRENCY)', positiveInt)
  .action(
    guarded(async (opts: { queues?: string; concurrency?: number }) => {
      const config = loadConfig();
      const logger = createLogger(config);
      const running = await startWorkerProcess(config, logger, {
        ...(opts.queues ? { queues: opts.queues.split(',').map(q => q.trim()).filter(Boolean) } : {}),
        ...(opts.concurrency ? { concurrency: opts.concurrency } : {}),
      });
      onTerminationSignals(() => running.stop(), logger);
    }),
  );

program
  .command('model-server')
  .description('serve the OpenAI protocol from fixture scripts (for the demo, tests and offline runs)')
  .option('--script <path>', 'a JSON/YAML script, or a directory of them', 'fixtures/demo')
  .option('--port <n>', 'port (0 = any free port)', port, 8787)
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .option('--api-key <key>', 'if set, requests must carry this Bearer key')
  .option('--log-file <path>', 'append every received request as a JSON line')
  .action(
    guarded(async (opts: { script: string; port: number; host: string; apiKey?: string; logFile?: string }) => {
      const script = await loadModelScript(opts.script);
      const server = await startModelServer({
        script,
        port: opts.port,
        host: opts.host,
        ...(opts.apiKey ? { apiKey: opts.apiKey } : {}),
        ...(opts.logFile ? { logFile: opts.logFile } : {}),
      });
      process.stdout.write(`scripted model server listening at ${server.url} (${script.rules?.length ?? 0} rules from ${opts.script})\n`);
      const stop = () => {
        server.close().then(() => process.exit(0), () => process.exit(1));
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    }),
  );

program
  .command('doctor')
  .description('check the configuration, Redis and the model endpoints, and say what to fix')
  .option('--json', 'print JSON')
  .action(
    guarded(async (opts: { json?: boolean }) => {
      const checks = await runDoctor();
      process.stdout.write(opts.json ? `${JSON.stringify(checks)}\n` : `${formatChecks(checks)}\n`);
      process.exitCode = checks.some(c => c.status === 'fail') ? 1 : 0;
    }),
  );

program
  .command('demo')
  .description('run the pipeline end to end on real queues and workers with the scripted model server')
  .option('--dashboard', 'keep the dashboard up on the demo run until Ctrl-C')
  .action(
    guarded(async (opts: { dashboard?: boolean }) => {
      await runDemo(undefined, { dashboard: opts.dashboard ?? false });
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
  .option('--no-wait', 'enqueue and return without waiting for the run to finish')
  .option('--workers', 'also run workers for every queue in this process (otherwise start `envfleet worker` somewhere)')
  .action(
    guarded(async (opts: { run: string; tasks?: string; descriptions?: string; maxEnvs?: number; probeSteps?: number; wait: boolean; workers?: boolean }) => {
      const config = loadConfig();
      const logger = createLogger(config);
      const running = opts.workers ? await startWorkerProcess(config, logger) : null;
      try {
        await withProducerRedis(config, async redis => {
          const submission = await submitSynthesis(config, redis, {
            runId: opts.run,
            ...(opts.tasks ? { tasks: opts.tasks } : {}),
            ...(opts.descriptions ? { descriptions: opts.descriptions } : {}),
            ...(opts.maxEnvs ? { maxEnvs: opts.maxEnvs } : {}),
            ...(opts.probeSteps ? { probeSteps: opts.probeSteps } : {}),
          });
          for (const p of submission.problems) process.stderr.write(`envfleet: ${opts.tasks ?? opts.descriptions} line ${p.line} skipped: ${p.problem}\n`);
          process.stdout.write(`run ${submission.runId}: ${submission.created ? 'created' : 'exists (resuming)'}; ${submission.items} input items, ${submission.jobsAdded} jobs added\n`);
          if (!opts.wait) return;
          const store = createRedisSynthesisStore(redis, config.redis.prefix);
          const progress = progressReporter(submission.runId);
          const final = await waitForRun(store, submission.runId, p => progress.report(p), undefined, { redis, prefix: config.redis.prefix });
          progress.stop();
          process.stdout.write(`run ${submission.runId} finished: ${JSON.stringify(final.environments)}. Export it with: envfleet export --run ${submission.runId} --out DIR\n`);
        });
      } finally {
        await running?.stop();
      }
    }),
  );

program
  .command('scenarios')
  .description('generate scenarios (initial states, tasks, checklists, check functions) for the kept environments of a run')
  .requiredOption('--run <name>', 'run name (its kept environments, or the environments imported with --environments)')
  .option('--per-env <m>', 'initial states (scenarios) per environment', positiveInt, 5)
  .option('--environments <file>', 'environments.jsonl (export format) to import into the run first')
  .option('--verify-with <model>', 'solvability gate: keep a scenario only when this reference policy model solves it')
  .option('--tries <r>', 'reference rollouts per scenario for --verify-with', positiveInt, 3)
  .option('--no-wait', 'enqueue and return without waiting')
  .option('--workers', 'also run workers for every queue in this process')
  .action(
    guarded(async (opts: { run: string; perEnv: number; environments?: string; verifyWith?: string; tries: number; wait: boolean; workers?: boolean }) => {
      const config = loadConfig();
      const logger = createLogger(config);
      const running = opts.workers ? await startWorkerProcess(config, logger) : null;
      try {
        await withProducerRedis(config, async redis => {
          const submission = await submitScenarios(config, redis, {
            runId: opts.run,
            perEnv: opts.perEnv,
            tries: opts.tries,
            ...(opts.environments ? { environments: opts.environments } : {}),
            ...(opts.verifyWith ? { verifyWith: opts.verifyWith } : {}),
          });
          for (const p of submission.problems) process.stderr.write(`envfleet: ${opts.environments} line ${p.line} skipped: ${p.problem}\n`);
          process.stdout.write(`run ${opts.run}: ${submission.items} kept environments, ${submission.jobsAdded} scenario.state jobs added\n`);
          if (!opts.wait) return;
          const store = createRedisSynthesisStore(redis, config.redis.prefix);
          const progress = progressReporter(opts.run);
          const final = await waitForRun(store, opts.run, p => progress.report(p), undefined, { redis, prefix: config.redis.prefix });
          progress.stop();
          process.stdout.write(`run ${opts.run} finished: scenarios ${JSON.stringify(final.scenarios)}. Export with: envfleet export --run ${opts.run} --out DIR\n`);
        });
      } finally {
        await running?.stop();
      }
    }),
  );

program
  .command('rollouts')
  .description('run K episodes of the policy per ready scenario of a run, in one or both modes; trajectories go to the run’s stream (write them with envfleet sink)')
  .requiredOption('--run <name>', 'run name')
  .option('--samples <k>', 'episodes per scenario and mode (a group)', positiveInt, 4)
  .option('--mode <mode>', 'non-conversational, conversational or both', 'both')
  .option('--model <name>', 'policy model (default: the rollout.policy profile)')
  .option('--user-model <name>', 'user-simulator model (default: the rollout.user profile)')
  .option('--max-steps <n>', 'agent turns per episode (default 30 non-conversational, 40 conversational)', positiveInt)
  .option('--max-tokens <n>', 'tokens per episode (default: no limit)', positiveInt)
  .option('--max-wall-ms <n>', 'wall time per episode (default 600000)', positiveInt)
  .option('--no-wait', 'enqueue and return')
  .option('--workers', 'also run workers for every queue in this process')
  .action(
    guarded(async (opts: { run: string; samples: number; mode: string; model?: string; userModel?: string; maxSteps?: number; maxTokens?: number; maxWallMs?: number; wait: boolean; workers?: boolean }) => {
      const modes = opts.mode === 'both' ? (['non-conversational', 'conversational'] as const) : [opts.mode];
      for (const m of modes) if (m !== 'non-conversational' && m !== 'conversational') throw new InvalidArgumentError(`--mode must be non-conversational, conversational or both, not "${m}"`);
      const config = loadConfig();
      const logger = createLogger(config);
      const running = opts.workers ? await startWorkerProcess(config, logger) : null;
      try {
        await withProducerRedis(config, async redis => {
          const r = await submitRollouts(config, redis, {
            runId: opts.run,
            samples: opts.samples,
            modes: modes as ('non-conversational' | 'conversational')[],
            ...(opts.model ? { policyModel: opts.model } : {}),
            ...(opts.userModel ? { userModel: opts.userModel } : {}),
            ...(opts.maxSteps ? { maxSteps: { 'non-conversational': opts.maxSteps, conversational: opts.maxSteps } } : {}),
            ...(opts.maxTokens ? { maxTokens: opts.maxTokens } : {}),
            ...(opts.maxWallMs ? { maxWallMs: opts.maxWallMs } : {}),
          });
          process.stdout.write(`run ${opts.run}: ${r.scenarios} ready scenarios, ${r.groupsAdded} groups of ${r.config.samples} added (modes ${r.config.modes.join(', ')})\n`);
          if (!opts.wait) return;
          const store = createRedisSynthesisStore(redis, config.redis.prefix);
          const progress = progressReporter(opts.run);
          await waitForRun(store, opts.run, p => progress.report(p), undefined, { redis, prefix: config.redis.prefix });
          progress.stop();
          process.stdout.write(`run ${opts.run}: rollouts finished. Write them with: envfleet sink --run ${opts.run} --out DIR\n`);
        });
      } finally {
        await running?.stop();
      }
    }),
  );

program
  .command('sink')
  .description('write a run’s trajectories from its Redis stream to DIR/trajectories/*.jsonl, exactly once; resumes after a crash')
  .requiredOption('--run <name>', 'run name')
  .requiredOption('--out <dir>', 'output directory')
  .option('--follow', 'keep running after the run has no outstanding job')
  .action(
    guarded(async (opts: { run: string; out: string; follow?: boolean }) => {
      const config = loadConfig();
      await withProducerRedis(config, async () => {
        const { createRedisConnection, waitForRedis } = await import('../src/redis/connection.js');
        const redis = createRedisConnection(config.redis.url, 'worker');
        await waitForRedis(redis, config.redis.url);
        const controller = new AbortController();
        process.once('SIGINT', () => controller.abort());
        process.once('SIGTERM', () => controller.abort());
        try {
          const result = await runSink({ redis, prefix: config.redis.prefix, store: createRedisSynthesisStore(redis, config.redis.prefix), runId: opts.run, dir: opts.out, follow: opts.follow ?? false, signal: controller.signal });
          process.stdout.write(`wrote ${result.written} trajectories to ${opts.out}/trajectories (${result.shards.join(', ')}); ${result.skippedDuplicates} duplicates skipped\n`);
        } catch (err) {
          if (!controller.signal.aborted) throw err;
          process.stdout.write('sink stopped; everything acknowledged is on disk\n');
        } finally {
          redis.disconnect();
        }
      });
    }),
  );

/** Store, ledger and run control on a producer connection. */
async function runTools<T>(fn: (t: { config: ReturnType<typeof loadConfig>; redis: Parameters<Parameters<typeof withProducerRedis>[1]>[0]; store: ReturnType<typeof createRedisSynthesisStore>; control: ReturnType<typeof createRedisRunControl>; ledger: ReturnType<typeof createRedisLedger> }) => Promise<T>): Promise<T> {
  const config = loadConfig();
  return withProducerRedis(config, redis =>
    fn({ config, redis, store: createRedisSynthesisStore(redis, config.redis.prefix), control: createRedisRunControl(redis, config.redis.prefix), ledger: createRedisLedger(redis, config.redis.prefix) }),
  );
}

async function requireRun(store: ReturnType<typeof createRedisSynthesisStore>, runId: string) {
  if (!(await store.getRun(runId))) throw new Error(`run "${runId}" does not exist (see envfleet runs; check REDIS_URL and ENVFLEET_REDIS_PREFIX)`);
}

program
  .command('dashboard')
  .description('serve bull-board (/queues), the run overview (/), Prometheus metrics (/metrics) and /healthz')
  .option('--port <n>', 'port (default ENVFLEET_DASHBOARD_PORT)', port)
  .option('--host <host>', 'address (default ENVFLEET_DASHBOARD_HOST)')
  .action(
    guarded(async (opts: { port?: number; host?: string }) => {
      const config = loadConfig();
      const logger = createLogger(config);
      const dashboard = await startDashboard(config, logger, { port: opts.port ?? config.dashboard.port, host: opts.host ?? config.dashboard.host, token: config.dashboard.token });
      process.stdout.write(`envfleet dashboard at ${dashboard.url} (${config.dashboard.token ? 'token required' : 'no token: loopback only'})\n`);
      const stop = () => {
        dashboard.close().then(() => process.exit(0), () => process.exit(1));
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    }),
  );

program
  .command('runs')
  .description('list the runs: state, outstanding jobs, creation time')
  .option('--json', 'print JSON')
  .action(
    guarded(async (opts: { json?: boolean }) => {
      await runTools(async ({ store, control }) => {
        const runs = await listRuns(store, control);
        if (opts.json) process.stdout.write(`${JSON.stringify(runs)}\n`);
        else if (!runs.length) process.stdout.write('no runs yet (start one with envfleet synth)\n');
        else for (const r of runs) process.stdout.write(`${r.id.padEnd(40)} ${r.state.padEnd(10)} ${String(r.outstanding).padStart(6)} outstanding   ${r.createdAt}   ${r.input}\n`);
      });
    }),
  );

program
  .command('status')
  .description('show a run: per stage waiting, active, done, and left with reasons; tokens and cost; rate and time left; the funnel')
  .requiredOption('--run <name>', 'run name')
  .option('--json', 'print JSON')
  .action(
    guarded(async (opts: { run: string; json?: boolean }) => {
      await runTools(async ({ config, redis, store, control, ledger }) => {
        const status = await runStatus({ redis, prefix: config.redis.prefix, store, ledger, control }, opts.run);
        if (!status) throw new Error(`run "${opts.run}" does not exist (see envfleet runs; check REDIS_URL and ENVFLEET_REDIS_PREFIX)`);
        process.stdout.write(opts.json ? `${JSON.stringify(status)}\n` : `${formatStatus(status)}\n\n${formatFunnel(status.funnel)}\n`);
      });
    }),
  );

for (const action of ['pause', 'resume', 'cancel'] as const) {
  program
    .command(action)
    .description(
      action === 'pause'
        ? 'pause a run: no job of it starts and no model request is sent; jobs in flight finish and are kept'
        : action === 'resume'
          ? 'resume a paused run (after a budget pause, raise the budget first with envfleet budget or the options here)'
          : 'cancel a run: its waiting jobs are removed, jobs in flight finish, nothing new starts; the results so far stay',
    )
    .requiredOption('--run <name>', 'run name')
    .option('--reason <text>', 'why (recorded with the run)', `${action} requested from the command line`)
    .option('--budget-usd <x>', 'resume: the new cost budget', Number)
    .option('--budget-tokens <n>', 'resume: the new token budget', positiveInt)
    .action(
      guarded(async (opts: { run: string; reason: string; budgetUsd?: number; budgetTokens?: number }) => {
        await runTools(async ({ config, redis, store, control }) => {
          await requireRun(store, opts.run);
          if (action === 'pause') {
            await control.pause(opts.run, opts.reason);
            process.stdout.write(`run ${opts.run} paused; jobs already running finish and are kept\n`);
          } else if (action === 'resume') {
            if (opts.budgetUsd !== undefined || opts.budgetTokens !== undefined) {
              const current = (await control.budgets(opts.run)) ?? { ...config.budgets, byStage: {} };
              await control.setBudgets(opts.run, { ...current, ...(opts.budgetUsd !== undefined ? { usd: opts.budgetUsd } : {}), ...(opts.budgetTokens !== undefined ? { tokens: opts.budgetTokens } : {}) });
            }
            await control.resume(opts.run);
            process.stdout.write(`run ${opts.run} resumed\n`);
          } else {
            const r = await cancelRun(redis, config.redis.prefix, store, control, opts.run, opts.reason);
            process.stdout.write(`run ${opts.run} cancelled: ${r.removed} waiting jobs removed, ${r.running} running jobs finish\n`);
          }
        });
      }),
    );
}

program
  .command('budget')
  .description('set a run’s budget (tokens and/or US dollars), for the whole run or one stage; 0 removes a limit')
  .requiredOption('--run <name>', 'run name')
  .option('--usd <x>', 'cost budget in US dollars', Number)
  .option('--tokens <n>', 'token budget (prompt + completion)', Number)
  .option('--stage <name>', 'limit only this stage (e.g. rollout.policy)')
  .option('--json', 'print the budgets as JSON')
  .action(
    guarded(async (opts: { run: string; usd?: number; tokens?: number; stage?: string; json?: boolean }) => {
      for (const [name, v] of [['--usd', opts.usd], ['--tokens', opts.tokens]] as const) {
        if (v !== undefined && !(Number.isFinite(v) && v >= 0)) throw new InvalidArgumentError(`${name} takes a number ≥ 0`);
      }
      if (opts.stage && !isStageName(opts.stage)) throw new InvalidArgumentError(`unknown stage "${opts.stage}"; stages: ${STAGE_NAMES.join(', ')}`);
      await runTools(async ({ config, store, control }) => {
        await requireRun(store, opts.run);
        const current = (await control.budgets(opts.run)) ?? { ...config.budgets, byStage: {} };
        const patch = { ...(opts.usd !== undefined ? { usd: opts.usd } : {}), ...(opts.tokens !== undefined ? { tokens: Math.floor(opts.tokens) } : {}) };
        const next = opts.stage
          ? { ...current, byStage: { ...current.byStage, [opts.stage]: { usd: 0, tokens: 0, ...current.byStage[opts.stage], ...patch } } }
          : { ...current, ...patch };
        await control.setBudgets(opts.run, next);
        process.stdout.write(opts.json ? `${JSON.stringify(next)}\n` : `run ${opts.run} budgets: ${JSON.stringify(next)}\n`);
      });
    }),
  );

program
  .command('export')
  .description('write the datasets of a run: DIR/environments.jsonl (every environment), DIR/scenarios.jsonl and DIR/scenarios-dropped.jsonl')
  .requiredOption('--run <name>', 'run name')
  .requiredOption('--out <dir>', 'output directory (created if missing)')
  .option('--format <f>', `dataset formats, comma-separated: ${DATASET_FORMATS.join(', ')} (default: all)`)
  .option('--filter <which>', 'SFT exports: "solved" keeps only solved trajectories')
  .option('--min-reward <x>', 'SFT exports: keep trajectories with at least this reward', Number)
  .option('--trajectories <dir>', "where the sink's shard files are now, if its output directory was moved (the directory holding part-NNNNN.jsonl)")
  .action(
    guarded(async (opts: { run: string; out: string; format?: string; filter?: string; minReward?: number; trajectories?: string }) => {
      const formats = opts.format ? opts.format.split(',').map(f => f.trim()) : [...DATASET_FORMATS];
      for (const f of formats) if (!DATASET_FORMATS.includes(f as DatasetFormat)) throw new InvalidArgumentError(`unknown --format "${f}"; use ${DATASET_FORMATS.join(', ')}`);
      if (opts.filter !== undefined && opts.filter !== 'solved') throw new InvalidArgumentError('--filter takes "solved"');
      if (opts.minReward !== undefined && !(opts.minReward >= 0 && opts.minReward <= 1)) throw new InvalidArgumentError('--min-reward takes a number between 0 and 1');
      const config = loadConfig();
      await withProducerRedis(config, async redis => {
        const result = await exportRun(createRedisSynthesisStore(redis, config.redis.prefix), opts.run, opts.out, {
          formats: formats as DatasetFormat[],
          filter: { solvedOnly: opts.filter === 'solved', minReward: opts.minReward ?? null },
          ...(opts.trajectories ? { trajectoriesDir: opts.trajectories } : {}),
        });
        for (const [file, n] of Object.entries(result.datasets)) process.stdout.write(`wrote ${n} records to ${opts.out}/${file}\n`);
        process.stdout.write(`wrote ${result.count} environments to ${result.path} ${JSON.stringify(result.byStatus)}\n`);
        if (result.scenarios.path) {
          process.stdout.write(`wrote ${result.scenarios.ready} scenarios to ${result.scenarios.path} (${result.scenarios.dropped} dropped, with reasons, in scenarios-dropped.jsonl)\n`);
        }
      });
    }),
  );

const sandbox = program
  .command('sandbox')
  .description('run environment code in the sandbox, for people debugging environments and check functions');

sandbox
  .command('run')
  .description('instantiate BUNDLE on STATE, run CALLS (JSONL of {"tool", "arguments"}) and print the results and final state as JSON')
  .argument('<bundle>', 'environment bundle JSON (name, className, source, tools)')
  .requiredOption('--state <file>', 'initial state JSON')
  .requiredOption('--calls <file>', 'JSONL, one {"tool": NAME, "arguments": {...}} per line')
  .option('--deadline-ms <n>', 'deadline of one call (default ENVFLEET_SANDBOX_DEADLINE_MS)', positiveInt)
  .option('--memory-mb <n>', 'memory cap (default ENVFLEET_SANDBOX_ENV_MEMORY_MB)', memoryMb)
  .action(
    guarded(async (bundle: string, opts: { state: string; calls: string; deadlineMs?: number; memoryMb?: number }) => {
      const out = await sandboxRun(loadConfig(), { bundle, state: opts.state, calls: opts.calls }, opts);
      process.stdout.write(`${JSON.stringify(out)}\n`);
    }),
  );

sandbox
  .command('check')
  .description('run check functions as check(final, initial) and print the results, reward and solved as JSON')
  .argument('<checks>', 'JSON array of {"item": TEXT, "check": SOURCE}')
  .requiredOption('--initial <file>', 'initial state JSON')
  .requiredOption('--final <file>', 'final state JSON')
  .option('--deadline-ms <n>', 'deadline of one check (default ENVFLEET_SANDBOX_CHECK_DEADLINE_MS)', positiveInt)
  .option('--memory-mb <n>', 'memory cap', memoryMb)
  .action(
    guarded(async (checks: string, opts: { initial: string; final: string; deadlineMs?: number; memoryMb?: number }) => {
      const out = await sandboxCheck(loadConfig(), { checks, initial: opts.initial, final: opts.final }, opts);
      process.stdout.write(`${JSON.stringify(out)}\n`);
    }),
  );

await program.parseAsync(process.argv);
