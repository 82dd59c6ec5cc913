/**
 * The proof of issue 11 ("nothing lost, nothing killed"): the demo run (fixtures/demo) through
 * synthesis, scenarios and rollouts, done twice on real worker processes — first without faults, then
 * under chaos — and the two compared.
 *
 *   npm run chaos [-- --quick] [--samples N] [--keep]
 *
 * Both runs: a private redis-server started here (append-only file with `appendfsync always`: a
 * write Redis acknowledged is on disk, so a SIGKILL of Redis loses nothing acknowledged); 3
 * `envfleet worker` processes and `envfleet sink`, started as a user starts them (node
 * bin/envfleet.js, the build of `npm run build`); the scripted model server with the demo fixtures,
 * in this process, answering an identical request the same way each time (as a deterministic model
 * would: `replay`); the run `chaos` under a Redis key prefix of its own; submitted with
 * `envfleet synth --tasks`, `envfleet scenarios --per-env 3` and `envfleet rollouts --samples N
 * --mode both`; its datasets written by `envfleet export` next to the sink's shards.
 *
 * The chaos run, meanwhile: SIGKILLs a random worker or the sink every 2–5 s (1.5–3.5 s with
 * --quick) and starts it again; has the model server answer a few 5xx, truncated replies and 429s
 * during synthesis and scenarios; pauses the run (`envfleet pause`) before its rollouts are
 * submitted, so that every rollout job is parked, and holds it paused for 500 rechecks (150 with
 * --quick) of ENVFLEET_PAUSED_RECHECK_MS = 20 ms — the old code failed a paused job after 100
 * restarts of its recheck; then has the first rollout requests after `envfleet resume` answered by a
 * 429 storm, a burst of 5xx and a burst of truncated replies, in that order; and SIGKILLs Redis once
 * a quarter of the episodes are stored (started again on its files).
 *
 * Then prints a report on stdout (progress on stderr) and asserts, exiting 1 when one fails: every
 * item done or left with a reason; no trajectory lost; none written twice; the datasets identical,
 * as sorted lines, to the fault-free run's (scripts/compare-datasets.ts: timestamps, durations and
 * call ids set aside); no start used by a parked job while the run was paused; no process died by
 * itself; every fault injected was served. It prints the Redis bytes per item (`envfleet status
 * --json`) of both runs and the model requests repeated: requests the server received in the chaos
 * run beyond the fault-free run's, the injected faults excluded.
 *
 * Default: N = 625 samples, 4 ready scenarios × 2 modes × 625 = 5,000 episodes, ≈ 5,080 jobs.
 * --quick: N = 30 (≈ 320 jobs), a shorter pause, smaller bursts (part of npm test).
 * --keep: keep the temporary directory (logs of every process, both runs' datasets, Redis's files).
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { compareDatasets } from '../scripts/compare-datasets.js';
import { PIPELINE_STAGES } from '../queues/pipeline.js';
import { waitForRun, type RunProgress } from '../queues/run-jobs.js';
import type { RunStatus } from '../queues/run-status.js';
import { loadModelScript, startModelServer, type ModelServer, type ReceivedRequest, type ScriptRule } from '../src/model-server/index.js';
import { createRedisConnection, waitForRedis, type Redis } from '../src/redis/connection.js';
import { createRedisRunControl } from '../src/runs/control.js';
import { trajectoryIdOf } from '../src/runs/ids.js';
import { createRedisRunStore } from '../src/runs/store.js';
import { fixturesPath } from '../src/util/package-root.js';
import { benchArgs } from './args.js';
import type { RedisServerProcess } from '../cli/private-redis.js';
import { Managed, envfleet, killAll, sleep, startPrivateRedis, type Ending } from './chaos/processes.js';
import { machineBusyS } from './rollouts/common.js';

const args = benchArgs(import.meta.url, { values: ['samples'], booleans: ['quick', 'keep'] });
const QUICK = args.flag('quick');
const SAMPLES = args.int('samples', QUICK ? 30 : 625);
const KEEP = args.flag('keep');
const RUN = 'chaos';
const MODES = ['non-conversational', 'conversational'] as const;
const WORKERS = 3;
const RECHECK_MS = 20;
const PAUSE_RECHECKS = QUICK ? 150 : 500;
const KILL_EVERY_MS: readonly [number, number] = QUICK ? [1_500, 3_500] : [2_000, 5_000];
const RESTART_AFTER_MS: readonly [number, number] = [200, 1_500];
/**
 * 429s of the storm. After a 429 the whole fleet waits out the endpoint's cool-down (retry-after 1 s)
 * and then sends again, so the storm lasts about this many seconds: a count, not a duration.
 */
const STORM_429 = QUICK ? 30 : 120;
const BURST_5XX = QUICK ? 40 : 400;
const BURST_TRUNCATED = QUICK ? 20 : 200;
/** Faults while synthesis and scenarios run (small: those stages make few requests). */
const EARLY_FAULTS: ScriptRule[] = [
  { name: 'early-5xx', stage: 'skeleton.*', times: 3, fault: { type: 'server_error', status: 502 } },
  { name: 'early-truncated', stage: 'check.probe.*', times: 2, fault: { type: 'truncated' } },
  { name: 'early-429', stage: 'mine.topic', times: 2, fault: { type: 'rate_limit', retryAfterS: 0.5 } },
  { name: 'early-scenario-5xx', stage: 'scenario.*', times: 3, fault: { type: 'server_error', status: 500 } },
  { name: 'early-scenario-truncated', stage: 'scenario.*', times: 2, fault: { type: 'truncated' } },
];

const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;
const progress = (line: string) => process.stderr.write(`[chaos +${elapsed()}] ${line}\n`);
const between = ([lo, hi]: readonly [number, number]) => lo + Math.random() * (hi - lo);

const tmp = mkdtempSync(join(os.tmpdir(), 'envfleet-chaos-'));
let redis: RedisServerProcess | null = null;
let cleaned = false;
/** 0 once every assertion held; until then a failure, whose logs are kept. */
let exitCode = 1;
const cleanup = () => {
  if (cleaned) return;
  cleaned = true;
  killAll();
  // A failed run keeps its logs and datasets: what went wrong can be read afterwards.
  if (!KEEP && exitCode === 0) rmSync(tmp, { recursive: true, force: true });
};
process.once('exit', cleanup);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    progress(`${signal}: stopping every process started here`);
    cleanup();
    process.exit(130);
  });
}

/** The environment of every envfleet process of a run: nothing from the caller's envfleet settings. */
function childEnv(prefix: string, modelUrl: string): NodeJS.ProcessEnv {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(ENVFLEET_|OPENAI_|REDIS_URL$|LOG_LEVEL$)/.test(k)));
  return {
    ...base,
    REDIS_URL: redis!.url,
    ENVFLEET_REDIS_PREFIX: prefix,
    ENVFLEET_REQUIRE_PERSISTENCE: 'true',
    OPENAI_BASE_URL: modelUrl,
    OPENAI_API_KEY: 'envfleet-chaos',
    ENVFLEET_PAUSED_RECHECK_MS: String(RECHECK_MS),
    // A killed worker's jobs come back once their lock expires: 10 s, not the default minute.
    ENVFLEET_LOCK_DURATION_MS: '10000',
    ENVFLEET_STALLED_INTERVAL_MS: '2500',
    ENVFLEET_SHUTDOWN_TIMEOUT_MS: '5000',
    LOG_LEVEL: 'warn',
  };
}

/** `envfleet ARGS`, tried again while it fails (a command started while Redis restarts fails fast, by design). */
async function cli(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<string> {
  for (let attempt = 1; ; attempt += 1) {
    const r = await envfleet(argv, env);
    if (r.code === 0) return r.stdout;
    if (attempt >= 10) throw new Error(`envfleet ${argv.join(' ')} failed ${attempt} times; last: code ${r.code}: ${r.stderr.trim().slice(-600)}`);
    progress(`envfleet ${argv[0]} failed (code ${r.code}: ${r.stderr.trim().split('\n').at(-1)?.slice(0, 200)}); again in 1 s`);
    await sleep(1_000);
  }
}

interface PauseRecord {
  /** Jobs parked when the hold began. */
  readonly parked: number;
  /** BullMQ starts (attemptsStarted) the parked jobs gained while the run stayed paused. */
  readonly startsWhileParked: number;
  /** Parked jobs not in the delayed set any more at the end of the hold (none expected). */
  readonly notDelayed: number;
  readonly settleMs: number;
  readonly holdMs: number;
  readonly resumeOutput: string;
}

interface ChaosRecord {
  readonly kills: Record<string, number>;
  readonly redisDownMs: number | null;
  readonly redisRestartedAt: string | null;
  readonly pause: PauseRecord | null;
  readonly injected: string[];
}

interface RunResult {
  readonly kind: 'fault-free' | 'chaos';
  readonly dir: string;
  readonly wallMs: number;
  readonly status: RunStatus;
  readonly jobs: { completed: number; failed: number; byQueue: Record<string, { completed: number; failed: number }> };
  readonly requests: ReceivedRequest[];
  readonly readyScenarios: string[];
  readonly unexpected: Ending[];
  readonly chaos: ChaosRecord | null;
  readonly sinkExit: string;
}

/** Outstanding jobs of a run that are waiting or running (parked and waiting-for-children ones excluded). */
async function liveJobs(queues: readonly Queue[]): Promise<number> {
  let n = 0;
  for (const q of queues) {
    const c = await q.getJobCounts('wait', 'active', 'prioritized');
    n += (c['wait'] ?? 0) + (c['active'] ?? 0) + (c['prioritized'] ?? 0);
  }
  return n;
}

async function runOnce(kind: RunResult['kind']): Promise<RunResult> {
  const chaos = kind === 'chaos';
  const runStarted = Date.now();
  const prefix = `envfleet-chaos-${process.pid}-${kind}`;
  const dir = join(tmp, kind);
  const logs = join(tmp, 'logs');
  const server: ModelServer = await startModelServer({ script: await loadModelScript(fixturesPath('demo')), replay: true });
  const env = childEnv(prefix, server.url);
  const conn: Redis = createRedisConnection(redis!.url, 'worker');
  await waitForRedis(conn, redis!.url);
  const store = createRedisRunStore(conn, prefix);
  const control = createRedisRunControl(conn, prefix);
  const queues = new Map(
    PIPELINE_STAGES.map(s => {
      const q = new Queue(s, { connection: conn, prefix });
      // Redis is SIGKILLed on purpose: its connection errors are expected here (the connection reconnects).
      q.on('error', () => undefined);
      return [s, q] as const;
    }),
  );
  const at = { connection: conn, prefix };
  const workers = Array.from({ length: WORKERS }, (_, i) => new Managed(`${kind}-worker-${i + 1}`, ['worker'], env, logs, progress));
  const sink = new Managed(`${kind}-sink`, ['sink', '--run', RUN, '--out', dir], env, logs, progress, true);
  const kills: Record<string, number> = {};
  const injected: string[] = [];
  let redisDownMs: number | null = null;
  let redisRestartedAt: string | null = null;
  let pause: PauseRecord | null = null;
  let killing = false;
  let killer: Promise<void> = Promise.resolve();
  const inject = (rules: ScriptRule[]) => {
    server.inject(rules);
    for (const r of rules) injected.push(`${r.name} ×${r.times}`);
    progress(`model server: injected ${rules.map(r => `${r.name} ×${r.times}`).join(', ')}`);
  };
  const report = (what: string) => {
    let last = '';
    return (p: RunProgress) => {
      const line = `${what}: ${p.outstanding} jobs outstanding; environments ${JSON.stringify(p.environments)} scenarios ${JSON.stringify(p.scenarios)}`;
      if (line !== last) progress(line);
      last = line;
    };
  };

  try {
    for (const w of workers) w.start();
    if (chaos) {
      killing = true;
      killer = (async () => {
        while (killing) {
          const until = Date.now() + between(KILL_EVERY_MS);
          while (killing && Date.now() < until) await sleep(100);
          if (!killing) break;
          const targets = [...workers, sink].filter(t => t.running);
          // The sink runs only while rollouts do (half a minute in a quick run): its first kill is not left to chance.
          const target = sink.running && !sink.kills ? sink : targets[Math.floor(Math.random() * targets.length)];
          if (!target) continue;
          progress(`SIGKILL ${target.name}`);
          kills[target.name.replace(/-\d+$/, '')] = (kills[target.name.replace(/-\d+$/, '')] ?? 0) + 1;
          await target.kill(between(RESTART_AFTER_MS));
        }
      })();
      inject(EARLY_FAULTS);
    }

    progress(`${kind}: envfleet synth`);
    progress(await cli(['synth', '--tasks', fixturesPath('demo', 'source-tasks.jsonl'), '--run', RUN, '--probe-steps', '8', '--no-wait'], env));
    await waitForRun(store, RUN, report(`${kind} synthesis`), { queues: at });
    progress(await cli(['scenarios', '--run', RUN, '--per-env', '3', '--no-wait'], env));
    await waitForRun(store, RUN, report(`${kind} scenarios`), { queues: at });
    // The chaos run is paused before its rollouts are submitted: every rollout job is parked when a worker
    // takes it, whatever the machine's speed (a quick run's rollouts end in seconds once they go).
    let pausedAt = 0;
    if (chaos) {
      progress(await cli(['pause', '--run', RUN, '--reason', 'chaos: paused for longer than the old limit in starts'], env));
      pausedAt = Date.now();
    }
    progress(await cli(['rollouts', '--run', RUN, '--samples', String(SAMPLES), '--mode', 'both', '--no-wait'], env));
    const ready = (await store.statusCounts(RUN, 'scenario'))['ready'] ?? 0;
    const planned = ready * MODES.length * SAMPLES;
    sink.start();

    const episodes = async () => Object.values((await store.counters(RUN))['rollout.run'] ?? {}).reduce((a, b) => a + b, 0);
    const during = chaos
      ? (async () => {
          // Each at the first look that finds this share of the episodes stored, in this order.
          const at = (share: number) => async () => {
            while ((await episodes()) < share * planned) await sleep(100);
          };
          pause = await holdAndResume();
          await at(0.25)();
          progress('SIGKILL redis-server; starting it again on its append-only file in 1 s');
          redisRestartedAt = elapsed();
          redisDownMs = await redis!.killAndRestart(1_000);
          progress(`redis-server is back after ${redisDownMs} ms`);
        })()
      : Promise.resolve();

    /**
     * Once nothing of the paused run waits or runs (all parked), hold; then the 429 storm and the bursts of
     * 5xx and truncated replies, in that order, for the first requests after `envfleet resume`.
     */
    async function holdAndResume(): Promise<PauseRecord> {
      while ((await liveJobs([...queues.values()])) === 0 && (await episodes()) === 0 && Date.now() - pausedAt < 5_000) await sleep(100);
      while ((await liveJobs([...queues.values()])) > 0 && Date.now() - pausedAt < 180_000) await sleep(200);
      const settleMs = Date.now() - pausedAt;
      const parkedJobs: { queue: Queue; jobId: string; starts: number }[] = [];
      for await (const batch of control.parked(RUN)) {
        for (const p of batch) {
          const [name, jobId] = p.key.split('|') as [string, string];
          const queue = queues.get(name as (typeof PIPELINE_STAGES)[number])!;
          const job = await queue.getJob(jobId);
          if (job) parkedJobs.push({ queue, jobId, starts: job.attemptsStarted });
        }
      }
      const holdMs = PAUSE_RECHECKS * RECHECK_MS;
      progress(`run paused: ${parkedJobs.length} jobs parked after ${settleMs} ms; holding ${holdMs} ms = ${PAUSE_RECHECKS} rechecks of ENVFLEET_PAUSED_RECHECK_MS=${RECHECK_MS}`);
      await sleep(holdMs);
      let startsWhileParked = 0;
      let notDelayed = 0;
      for (const p of parkedJobs) {
        const job = await p.queue.getJob(p.jobId);
        startsWhileParked += (job?.attemptsStarted ?? p.starts) - p.starts;
        if (!job || (await job.getState()) !== 'delayed') notDelayed += 1;
      }
      inject([
        { name: 'storm-429', stage: 'rollout.*', times: STORM_429, fault: { type: 'rate_limit', retryAfterS: 1 } },
        { name: 'burst-5xx', stage: 'rollout.*', times: BURST_5XX, fault: { type: 'server_error', status: 503 } },
        { name: 'burst-truncated', stage: 'rollout.*', times: BURST_TRUNCATED, fault: { type: 'truncated' } },
      ]);
      const resumeOutput = (await cli(['resume', '--run', RUN], env)).trim();
      progress(resumeOutput);
      return { parked: parkedJobs.length, startsWhileParked, notDelayed, settleMs, holdMs, resumeOutput };
    }

    await Promise.all([during, waitForRun(store, RUN, report(`${kind} rollouts (${planned} episodes)`), { queues: at })]);
    killing = false;
    await killer;
    progress(`${kind}: no job outstanding; waiting for the sink to write the last trajectories and exit`);
    const sinkEnd = await Promise.race([sink.finishing(), sleep(300_000).then(() => null)]);
    const sinkExit = sinkEnd ? `exit ${sinkEnd.code}` : 'did not finish within 300 s';
    const status = JSON.parse(await cli(['status', '--run', RUN, '--json'], env)) as RunStatus;
    progress((await cli(['export', '--run', RUN, '--out', dir], env)).trim());
    const byQueue: RunResult['jobs']['byQueue'] = {};
    let completed = 0;
    let failed = 0;
    for (const [name, q] of queues) {
      const c = await q.getJobCounts('completed', 'failed');
      if (c['completed'] || c['failed']) byQueue[name] = { completed: c['completed'] ?? 0, failed: c['failed'] ?? 0 };
      completed += c['completed'] ?? 0;
      failed += c['failed'] ?? 0;
    }
    const readyScenarios = readLines(join(dir, 'scenarios.jsonl')).map(l => (JSON.parse(l) as { id: string }).id);
    return {
      kind,
      dir,
      wallMs: Date.now() - runStarted,
      status,
      jobs: { completed, failed, byQueue },
      requests: server.log(),
      readyScenarios,
      unexpected: [...workers, sink].flatMap(m => m.unexpected),
      chaos: chaos ? { kills, redisDownMs, redisRestartedAt, pause, injected } : null,
      sinkExit,
    };
  } finally {
    killing = false;
    await killer.catch(() => undefined);
    await Promise.all([...workers, sink].map(m => m.stop()));
    for (const m of [...workers, sink]) m.close();
    for (const q of queues.values()) await q.close().catch(() => undefined);
    await server.close();
    conn.disconnect();
  }
}

function readLines(path: string): string[] {
  try {
    return readFileSync(path, 'utf8').split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

/** The sink's shard files: lines, distinct ids, lines that do not parse. */
function shards(dir: string): { lines: number; ids: Map<string, number>; torn: number; files: string[]; terminations: Record<string, number> } {
  const sub = join(dir, 'trajectories');
  const files = readdirSync(sub).filter(f => /^part-\d{5}\.jsonl$/.test(f)).sort();
  const ids = new Map<string, number>();
  const terminations: Record<string, number> = {};
  let lines = 0;
  let torn = 0;
  for (const f of files) {
    const text = readFileSync(join(sub, f), 'utf8');
    if (text.length && !text.endsWith('\n')) torn += 1;
    for (const line of text.split('\n').filter(Boolean)) {
      lines += 1;
      try {
        const t = JSON.parse(line) as { id: string; termination?: { reason?: string } };
        ids.set(t.id, (ids.get(t.id) ?? 0) + 1);
        const why = t.termination?.reason ?? '(none)';
        terminations[why] = (terminations[why] ?? 0) + 1;
      } catch {
        torn += 1;
      }
    }
  }
  return { lines, ids, torn, files, terminations };
}

/** Requests the model server received, by what happened to them. */
function requestSummary(log: readonly ReceivedRequest[]) {
  const faults: Record<string, number> = {};
  const byStage: Record<string, number> = {};
  let answered = 0;
  let abandoned = 0;
  let replayed = 0;
  for (const e of log) {
    if (e.fault && e.fault !== 'delay') {
      faults[e.fault] = (faults[e.fault] ?? 0) + 1;
      continue;
    }
    byStage[e.stage ?? '(none)'] = (byStage[e.stage ?? '(none)'] ?? 0) + 1;
    if (e.status === null) abandoned += 1;
    else answered += 1;
    if (e.replayed) replayed += 1;
  }
  return { total: log.length, faults, nonFault: answered + abandoned, answered, abandoned, replayed, byStage };
}

// ---------------------------------------------------------------- main

const checks: { name: string; ok: boolean; detail: string }[] = [];
const check = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });
const out = (line = '') => process.stdout.write(`${line}\n`);
const busyAtStart = machineBusyS();
const loadAtStart = os.loadavg();
try {
  progress(`temporary directory ${tmp}${KEEP ? ' (kept: --keep)' : ''}`);
  redis = await startPrivateRedis(join(tmp, 'redis'));
  progress(`private redis-server on port ${redis.port} (appendonly yes, appendfsync always)`);
  const base = await runOnce('fault-free');
  const chaos = await runOnce('chaos');
  const wallS = (Date.now() - started) / 1000;
  const busy = (machineBusyS() - busyAtStart) / wallS;

  // ------------------------------------------------------------ assertions
  const planned = chaos.readyScenarios.length * MODES.length * SAMPLES;
  const plannedIds = chaos.readyScenarios.flatMap(s => MODES.flatMap(m => Array.from({ length: SAMPLES }, (_, k) => trajectoryIdOf(RUN, s, m, k))));
  const runs = [base, chaos];
  const shardOf = new Map(runs.map(r => [r.kind, shards(r.dir)]));
  for (const r of runs) {
    const s = shardOf.get(r.kind)!;
    const envs = readLines(join(r.dir, 'environments.jsonl')).map(l => JSON.parse(l) as { id: string; status: string; quality?: { rejectionReason?: string | null } | null; failure?: unknown });
    const dropped = readLines(join(r.dir, 'scenarios-dropped.jsonl')).map(l => JSON.parse(l) as { id: string; reason?: { code?: string } | null });
    const groups = readLines(join(r.dir, 'rl-groups.jsonl')).length;
    const envProblems = envs.filter(e => !(e.status === 'kept' || (e.status === 'rejected' && e.quality?.rejectionReason) || (e.status === 'failed' && e.failure)));
    const undeclared = r.status.funnel.filter(f => Object.keys(f.undeclared).length);
    const noReason = Object.entries(s.terminations).filter(([why]) => why === '(none)');
    check(
      `${r.kind}: every item done or left with a reason`,
      r.status.outstanding === 0 &&
        r.status.state === 'finished' &&
        envs.length > 0 &&
        envProblems.length === 0 &&
        dropped.every(d => d.reason?.code) &&
        !r.status.scenarios['building'] &&
        s.ids.size === r.readyScenarios.length * MODES.length * SAMPLES &&
        r.status.trajectories.count === s.ids.size &&
        groups === r.readyScenarios.length * MODES.length &&
        undeclared.length === 0 &&
        noReason.length === 0 &&
        r.sinkExit === 'exit 0',
      `state ${r.status.state}, ${r.status.outstanding} outstanding; environments ${JSON.stringify(r.status.environments)} (${envProblems.length} without a reason); ` +
        `scenarios ${JSON.stringify(r.status.scenarios)} (${dropped.filter(d => !d.reason?.code).length} dropped without a reason); ` +
        `${s.ids.size} trajectories of ${r.readyScenarios.length * MODES.length * SAMPLES} planned (envfleet status counts ${r.status.trajectories.count}), by termination ${JSON.stringify(s.terminations)}; ${groups} groups; ` +
        `jobs ${r.jobs.completed} completed, ${r.jobs.failed} failed for good; sink ${r.sinkExit}` +
        (undeclared.length ? `; undeclared outcomes in ${undeclared.map(f => f.stage).join(', ')}` : ''),
    );
  }
  const cs = shardOf.get('chaos')!;
  const lost = plannedIds.filter(id => !cs.ids.has(id));
  check('chaos: 0 trajectories lost', lost.length === 0 && plannedIds.length === planned && planned > 0, `${planned} planned, ${planned - lost.length} on disk, ${lost.length} lost${lost.length ? ` (e.g. ${lost.slice(0, 3).join(', ')})` : ''}`);
  const twice = [...cs.ids.values()].filter(n => n > 1).length;
  check('chaos: 0 written twice', twice === 0 && cs.lines === cs.ids.size && cs.torn === 0, `${cs.lines} lines in ${cs.files.length} shard file(s), ${cs.ids.size} distinct ids, ${twice} ids written more than once, ${cs.torn} torn lines`);
  const diffLines: string[] = [];
  const differing = compareDatasets(base.dir, chaos.dir, { mergeShards: true, log: line => diffLines.push(line) });
  check('chaos: datasets identical to the fault-free run (sorted lines)', differing === 0, `${diffLines.length - differing} files the same, ${differing} different`);

  const c = chaos.chaos!;
  const pause = c.pause;
  check(
    'chaos: a pause longer than the old limit in starts used no start',
    pause !== null && pause.parked > 0 && pause.startsWhileParked === 0 && pause.notDelayed === 0 && PAUSE_RECHECKS > 100,
    pause ? `${pause.parked} jobs parked; held ${pause.holdMs} ms = ${PAUSE_RECHECKS} rechecks (the old code failed a paused job after 100); starts meanwhile ${pause.startsWhileParked}; parked jobs no longer delayed ${pause.notDelayed}` : 'the run never reached the pause',
  );
  const unexpected = runs.flatMap(r => r.unexpected);
  // The end of a dead process's log says why it died.
  const lastWords = (name: string) => {
    const lines = readLines(join(tmp, 'logs', `${name}.log`));
    const end = lines.findLastIndex(l => l.startsWith('===== ') && l.includes('exit code'));
    return lines.slice(Math.max(0, end - 6), end).join(' ⏎ ').slice(-1_200);
  };
  check('no process died by itself', unexpected.length === 0, unexpected.length ? unexpected.map(u => `${u.name} code ${u.code} signal ${u.signal}: ${lastWords(u.name)}`).join('; ') : 'every exit was ours');
  const cr = requestSummary(chaos.requests);
  const br = requestSummary(base.requests);
  const killed = Object.values(c.kills).reduce((a, b) => a + b, 0);
  const servedByRule = new Map<string, number>();
  for (const e of chaos.requests) if (e.fault && e.rule) servedByRule.set(e.rule, (servedByRule.get(e.rule) ?? 0) + 1);
  const unserved = c.injected.map(i => i.split(' ')[0]!).filter(name => !servedByRule.get(name));
  check(
    'chaos: every fault applied',
    unserved.length === 0 &&
    (c.kills[`chaos-worker`] ?? 0) > 0 && (c.kills['chaos-sink'] ?? 0) > 0 && c.redisDownMs !== null && (cr.faults['rate_limit'] ?? 0) > 0 && (cr.faults['server_error'] ?? 0) > 0 && (cr.faults['truncated'] ?? 0) > 0,
    `${killed} SIGKILLs (${Object.entries(c.kills).map(([k, n]) => `${k} ${n}`).join(', ')}); Redis SIGKILLed at +${c.redisRestartedAt} and back after ${c.redisDownMs} ms; faults served ${JSON.stringify(cr.faults)}, by rule ${JSON.stringify(Object.fromEntries(servedByRule))}${unserved.length ? `; never served: ${unserved.join(', ')}` : ''}`,
  );

  // ------------------------------------------------------------ report
  const kb = (n: number | null | undefined) => (n === null || n === undefined ? '–' : `${(n / 1000).toFixed(1)} KB`);
  out(`# Chaos run (${QUICK ? '--quick' : 'full'}): ${new Date(started).toISOString()}`);
  out();
  out(`- command: \`npm run chaos${args.raw.length ? ` -- ${args.raw.join(' ')}` : ''}\``);
  out(`- machine: ${os.cpus()[0]?.model ?? '?'}, nproc ${os.availableParallelism()}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${os.release()}, Node ${process.version}, redis-server on loopback (AOF, appendfsync always)`);
  out(`- load average at start ${loadAtStart.map(l => l.toFixed(2)).join(' ')}, at end ${os.loadavg().map(l => l.toFixed(2)).join(' ')}; machine busy ${busy.toFixed(2)} cores on average over the ${wallS.toFixed(0)} s (both runs, everything on the machine)`);
  out(`- run: ${chaos.readyScenarios.length} ready scenarios × ${MODES.length} modes × ${SAMPLES} samples = ${planned} episodes; ${WORKERS} worker processes + the sink; ENVFLEET_PAUSED_RECHECK_MS=${RECHECK_MS}, lock 10 s, stalled check 2.5 s`);
  out();
  out('| | fault-free | chaos |');
  out('|---|---|---|');
  out(`| wall time | ${(base.wallMs / 1000).toFixed(1)} s | ${(chaos.wallMs / 1000).toFixed(1)} s |`);
  out(`| jobs completed / failed for good | ${base.jobs.completed.toLocaleString('en')} / ${base.jobs.failed} | ${chaos.jobs.completed.toLocaleString('en')} / ${chaos.jobs.failed} |`);
  out(`| environments | ${JSON.stringify(base.status.environments)} | ${JSON.stringify(chaos.status.environments)} |`);
  out(`| scenarios | ${JSON.stringify(base.status.scenarios)} | ${JSON.stringify(chaos.status.scenarios)} |`);
  out(`| trajectories on disk (lines / distinct ids) | ${shardOf.get('fault-free')!.lines} / ${shardOf.get('fault-free')!.ids.size} | ${cs.lines} / ${cs.ids.size} |`);
  out(`| Redis bytes per environment / scenario / trajectory (\`envfleet status\`) | ${kb(base.status.redis.perItem.environment)} / ${kb(base.status.redis.perItem.scenario)} / ${kb(base.status.redis.perItem.trajectory)} | ${kb(chaos.status.redis.perItem.environment)} / ${kb(chaos.status.redis.perItem.scenario)} / ${kb(chaos.status.redis.perItem.trajectory)} |`);
  out(`| Redis bytes of the run | ${kb(base.status.redis.bytes)} | ${kb(chaos.status.redis.bytes)} |`);
  out(`| model requests received | ${br.total.toLocaleString('en')} | ${cr.total.toLocaleString('en')} |`);
  out(`| … injected faults | ${JSON.stringify(br.faults)} | ${JSON.stringify(cr.faults)} |`);
  out(`| … others (answered + client gone before the answer) | ${br.nonFault.toLocaleString('en')} (${br.answered} + ${br.abandoned}) | ${cr.nonFault.toLocaleString('en')} (${cr.answered} + ${cr.abandoned}) |`);
  out(`| ledger: requests (from the cache) | ${base.status.ledger.requests.toLocaleString('en')} (${base.status.ledger.cachedRequests.toLocaleString('en')}) | ${chaos.status.ledger.requests.toLocaleString('en')} (${chaos.status.ledger.cachedRequests.toLocaleString('en')}) |`);
  out();
  const repeated = cr.nonFault - br.nonFault;
  const perStage = Object.keys({ ...br.byStage, ...cr.byStage })
    .map(s => [s, (cr.byStage[s] ?? 0) - (br.byStage[s] ?? 0)] as const)
    .filter(([, n]) => n !== 0)
    .map(([s, n]) => `${s} ${n > 0 ? '+' : ''}${n}`);
  out(`**Model requests repeated: ${repeated}** (requests of the chaos run beyond the fault-free run's, injected faults excluded; by stage: ${perStage.join(', ') || 'none'}). ` +
    `${cr.abandoned} of the chaos run's requests were still in flight when their worker was killed (the server never delivered the answer); ` +
    `the rest were answered, but their worker died before it stored the answer in the response cache (or the job ran twice at once after a lock was lost).`);
  out();
  out(`Chaos: ${killed} SIGKILLs (${Object.entries(c.kills).map(([k, n]) => `${k} ${n}`).join(', ')}), Redis SIGKILLed at +${c.redisRestartedAt} (down ${c.redisDownMs} ms); injected ${c.injected.join(', ')}.`);
  if (pause) out(`Pause: ${pause.parked} jobs parked (settled in ${pause.settleMs} ms), held ${pause.holdMs} ms = ${PAUSE_RECHECKS} rechecks; ${pause.resumeOutput}`);
  out();
  out('Datasets, chaos vs fault-free:');
  for (const l of diffLines) out(`  ${l}`);
  out();
  out('| assertion | result | detail |');
  out('|---|---|---|');
  for (const ch of checks) out(`| ${ch.name} | ${ch.ok ? 'PASS' : '**FAIL**'} | ${ch.detail} |`);
  exitCode = checks.every(ch => ch.ok) ? 0 : 1;
  out();
  out(exitCode === 0 ? `chaos: all ${checks.length} assertions hold` : `chaos: ${checks.filter(ch => !ch.ok).length} of ${checks.length} assertions FAILED`);
  if (KEEP || exitCode !== 0) out(`(logs and datasets kept in ${tmp})`);
} catch (err) {
  process.stderr.write(`[chaos] failed: ${(err as Error).stack ?? String(err)}\n(logs kept in ${tmp})\n`);
} finally {
  await redis?.stop().catch(() => undefined);
  cleanup();
}
process.exit(exitCode);
