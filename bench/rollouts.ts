/**
 * Rollout throughput: how many episodes per second the fleet (1 or more worker processes, plus the sink)
 * finishes when C episodes are in flight and every model answer takes L ms, against the bound C / (S × L),
 * and what an episode costs the fleet in CPU (issue 14, item 2).
 *
 *   node --import tsx bench/rollouts.ts [--quick] [--steps 5] [--delays 500,2000] [--concurrency 10,100,1000]
 *                                       [--processes 1,2] [--extra-delay 0] [--light 1000] [--threads 2]
 *                                       [--no-baseline] [--no-light] [--no-sink] [--no-pacing] [--profile [--profile-sink]]
 *                                       [--warmup N] [--from-source]
 *
 * The configurations: for each latency L of --delays, the baseline, then every C of --concurrency with
 * every P of --processes. Each configuration gets its own Redis prefix and P fresh worker processes
 * (bench/rollouts/fleet.ts: `startWorkerProcess` for rollout.run and rollout.group) sharing its queues,
 * each with ENVFLEET_ROLLOUT_CONCURRENCY = C / P (rounded up) and its own sandbox pool of --threads piscina
 * threads, so that the fleet as a whole has C in flight; and one sink process (`envfleet sink --run main
 * --follow`, from the build in dist/ as the fleet, the trajectory writer of src/datasets/sink.ts) writing the timed run's
 * trajectories to a temporary directory, whose CPU is counted with the fleet's (`--no-sink`: none, as
 * before). One kept environment (the reference hotel env, fixtures/reference/) and one ready scenario are
 * put straight into the run store; N samples of that scenario are submitted with `submitRollouts`
 * (non-conversational). The policy is the scripted model server (bench/rollouts/server.ts, in its own
 * process, shared by all configurations): exactly S agent turns per episode, S − 1 get_guest calls then a
 * text answer, every answer after L ms. A warm-up run (answers at once; one wave, C / P episodes per process,
 * unless --warmup N) precedes each timed run. The
 * baseline is the same workload with the seed's three sequential runners (C = 3, one process) at each L.
 * `--delay L` (without --delays) measures that one latency. `--extra-delay X` adds C = 1000 with L = X, one
 * process (default 0: none). `--light C` adds a diagnostic configuration (default C = 1000 at the first
 * latency, one process; 0 or --no-light: none): the same policy against a one-guest initial state and a
 * single one-line check, to separate the sandbox's per-episode cost from the rest. `--profile` writes a V8 CPU profile of
 * the (first) worker process of each C ≥ 1000 configuration and summarises its main thread; `--profile-sink` profiles
 * the sink process too (its CPU then includes the profiler's overhead). ENVFLEET_BENCH_KEEP_PROFILES=DIR keeps the .cpuprofile files.
 *
 * N = max(3 × C, 30), and 2 × C for C ≥ 1000; for L > 1 s (a wave of episodes takes S × L, 10 s at 2 s):
 * max(2 × C, 20), and 12 for the baseline. The full default run (2 latencies × (baseline + 3 C × 2 P) +
 * light = 15 configurations) should take about 10 minutes on 2 cores at the fleet cost of 2026-11-26 (an
 * estimate from per-configuration times, docs/benchmarks.md; C = 1,000 is the bulk of it, and a cheaper
 * fleet shortens it). `--quick`: L = 500 ms only, baseline, C = 10 and 100 with
 * P = 1 and 2, N = max(2 × C, 12), no light: about a minute.
 *
 * Prints a markdown report on stdout (progress on stderr): per configuration the throughput, CPU (fleet
 * CPU per episode by process kind: worker main threads, worker sandbox pool threads, other worker threads,
 * sink; summed over the worker processes; Redis CPU and commands per episode), operation times and memory, and a scaling table with one summary
 * line per latency (best fraction of the bound at the largest C, and its ratio to the baseline at that L).
 * Exits 1 if a configuration did not check out (request count ≠ N × S, model calls through the workers' gateways
 * ≠ N × S (an episode ran again), a request other than a chat completion (the gateway's outage probe), an episode without exactly S turns,
 * trajectory ids in Redis or lines the sink wrote ≠ N, a worker process that ran no episode, keys left in
 * Redis).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, type AppConfig } from '../config/index.js';
import { createRedisConnection, waitForRedis, type Redis } from '../src/redis/connection.js';
import { createRedisRunStore, type RunStore } from '../src/runs/store.js';
import type { ScenarioRecord } from '../src/scenarios/types.js';
import type { FunctionTool } from '../src/sandbox/bundle.js';
import type { Operation } from '../src/synthesis/schemas.js';
import type { EnvironmentRecord } from '../src/synthesis/types.js';
import { runOptionsFrom, submitRollouts } from '../queues/submit.js';
import { benchArgs } from './args.js';
import { commandStats } from './redis-keys.js';
import { trajectoryStreamKey } from '../src/rollouts/stream.js';
import { runKeys } from '../src/runs/keys.js';
import { analyse, fleetConcurrency, type Analysis, type ConfigSpec, type CpuSample, type EpisodeSummary, type HostSample, type RunRaw } from './rollouts/analyze.js';
import {
  WARMUP_MARK,
  deletePrefix,
  machineBusyS,
  processCpuUs,
  type FleetCommand,
  type FleetMessage,
  type FleetSettings,
  type MemoryProbe,
  type ServerCommand,
  type ServerMessage,
} from './rollouts/common.js';
import { summarizeProfile, type ProfileSummary } from './rollouts/profile.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
/** Extra Node flags for the worker processes (an experiment's knob, e.g. V8 heap flags): ENVFLEET_BENCH_FLEET_NODE_ARGS, space-separated. */
const FLEET_NODE_ARGS = (process.env['ENVFLEET_BENCH_FLEET_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
const args = benchArgs(import.meta.url, {
  values: ['steps', 'delay', 'delays', 'concurrency', 'processes', 'extra-delay', 'light', 'threads', 'warmup', 'waves', 'groups'],
  booleans: ['quick', 'no-baseline', 'profile', 'profile-sink', 'no-sink', 'no-light', 'from-source', 'no-pacing'],
});
const argv = args.raw;
const QUICK = args.flag('quick');
const PROFILE = args.flag('profile');
/** --profile-sink (with --profile): the sink process is profiled too (the profiler's overhead then counts in its CPU). */
const PROFILE_SINK = PROFILE && args.flag('profile-sink');
/** With --profile: copy the raw .cpuprofile files (worker threads, and the sink's under sink/) to DIR/<configuration> (env ENVFLEET_BENCH_KEEP_PROFILES=DIR). */
const KEEP_PROFILES = process.env['ENVFLEET_BENCH_KEEP_PROFILES'] ?? null;
const intArg = (name: string, fallback: number) => args.int(name, fallback);
/**
 * The worker processes and the sink run the build in dist/ (`tsc -p tsconfig.build.json`, made before the first
 * configuration), as `envfleet worker` and `envfleet sink` run; `--from-source` runs the TypeScript sources through tsx
 * instead, whose transform names every function it creates at run time (esbuild's keepNames: a call and an object per
 * closure), 4–7 % more fleet CPU per episode than the build in one A/B (docs/benchmarks.md, 2026-12-03).
 */
const FROM_SOURCE = args.flag('from-source');

const STEPS = intArg('steps', 5);
/**
 * Warm-up episodes per worker process before each timed run (`--warmup N`; default one wave, C / P, at
 * least 2 per pool thread): a fresh process compiles its hot code and instantiates a sandbox module per
 * session in flight during its first wave, a cost a long run pays once, so the timed run measures the
 * steady state (the spare modules it keeps then count in the "idle" memory figures). Before 2026-12-01 evening the
 * warm-up was max(2 × threads, min(C, 8)) episodes per process.
 */
const WARMUP = intArg('warmup', 0);
const DELAY = intArg('delay', 500);
/** Model latencies L to measure (`--delays`; `--delay L` alone means just that one). */
const DELAYS = args.ints('delays', argv.some(a => a === '--delay' || a.startsWith('--delay=')) ? String(DELAY) : QUICK ? '500' : '500,2000');
/** Worker processes sharing each configuration's queues (`--processes`); each runs C / P rollouts at once. */
const PROCESSES = args.ints('processes', '1,2');
const SINK = !args.flag('no-sink');
/** ENVFLEET_ROLLOUT_START_PACING of the fleet processes: auto (the default), or off with --no-pacing. */
const START_PACING = !args.flag('no-pacing');
const THREADS = intArg('threads', 2);
const CONCURRENCY = args.ints('concurrency', QUICK ? '10,100' : '10,100,1000');
const EXTRA_DELAY = intArg('extra-delay', 0);
const BASELINE_C = 3;
const progress = (line: string) => process.stderr.write(`[bench/rollouts] ${line}\n`);
const sleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms));

/**
 * N at a latency L: episodesFor(C) up to L = 1 s; for L > 1 s, where one wave of C episodes takes S × L (10 s at
 * 2 s), max(2 × C, 20), and 12 for the baseline (C = 3, 40 s at 2 s), to bound the full run's time.
 */
function episodesAt(c: number, delayMs: number, baseline: boolean): number {
  if (WAVES > 0 && !baseline) return WAVES * c;
  if (QUICK || delayMs <= 1000) return episodesFor(c);
  return baseline ? 12 : Math.max(2 * c, 20);
}

/** N = max(3 × C, 30); 2 × C for C ≥ 1000, to bound the time (max(2 × C, 12) with --quick). */
function episodesFor(c: number): number {
  if (QUICK) return Math.max(2 * c, 12);
  if (c >= 1000) return 2 * c;
  return Math.max(3 * c, 30);
}

/**
 * The fleet's ENVFLEET_SANDBOX_HEAP_MB: the default (512), or 2 MiB per task of a thread when that is
 * more. Every session holds a module charged ≈1.6 MiB (docs/sandbox.md), so at the default a thread
 * holds about 320 sessions, and C = 1,000 on 2 threads (516 tasks each) ended most episodes with
 * SANDBOX_MEMORY_FULL.
 */
const heapMbFor = (tasksPerThread: number) => Math.max(512, 2 * tasksPerThread);

const LIGHT_C = intArg('light', QUICK ? 0 : 1000);
/** `--waves K`: N = K × C for every fleet configuration (not the baseline), instead of the defaults above. */
const WAVES = intArg('waves', 0);
/**
 * `--groups G`: the timed run's N episodes are G scenarios (copies of the one scenario under G ids) × N / G samples,
 * so G group jobs run during the run, each as its group's last sample ends (GRPO-style groups: 250 groups of 8 at
 * N = 2,000), instead of one group of N samples whose job runs at the end. G must divide every N of the run.
 */
const GROUPS = Math.max(1, intArg('groups', 1));
const makeSpec = (label: string, concurrency: number, delayMs: number, extra: Partial<ConfigSpec> = {}): ConfigSpec =>
  ({ label, concurrency, processes: 1, delayMs, episodes: episodesAt(concurrency, delayMs, extra.baseline ?? false), steps: STEPS, baseline: false, light: false, ...extra });
/** C in total over P processes: C / P each (rounded up, so the fleet's C is at least the one asked for). */
const fleetSpec = (c: number, delayMs: number, p: number): ConfigSpec =>
  makeSpec(`c${c}-l${delayMs}${p > 1 ? `-p${p}` : ''}`, Math.ceil(c / p), delayMs, { processes: p, episodes: episodesAt(c, delayMs, false) });
const specs: ConfigSpec[] = [
  ...DELAYS.flatMap(delay => [
    ...(args.flag('no-baseline') ? [] : [makeSpec(`baseline-c${BASELINE_C}-l${delay}`, BASELINE_C, delay, { baseline: true })]),
    ...CONCURRENCY.flatMap(c => PROCESSES.map(p => fleetSpec(c, delay, p))),
  ]),
  ...(EXTRA_DELAY > 0 && !DELAYS.includes(EXTRA_DELAY) ? [makeSpec(`c1000-l${EXTRA_DELAY}`, 1000, EXTRA_DELAY)] : []),
  ...(LIGHT_C > 0 && !args.flag('no-light') ? [makeSpec(`light-c${LIGHT_C}-l${DELAYS[0] ?? DELAY}`, LIGHT_C, DELAYS[0] ?? DELAY, { light: true })] : []),
];

for (const spec of specs) {
  if (!spec.baseline && spec.episodes % GROUPS !== 0) throw new Error(`--groups ${GROUPS} does not divide N = ${spec.episodes} of ${spec.label}; pick a G that divides every N (or --waves K so that N = K × C)`);
}

// ---------------------------------------------------------------- child processes

/** Spawns `node --import tsx FILE` with an IPC channel; its stdout/stderr go to our stderr. */
function spawnChild(file: string, args: string[], nodeArgs: string[] = []): ChildProcess {
  const env = { ...process.env, ENVFLEET_BENCH_DIST: FROM_SOURCE ? '0' : '1' };
  const child = spawn(process.execPath, ['--import', 'tsx', '--expose-gc', ...nodeArgs, file, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env });
  child.stdout?.on('data', (d: Buffer) => process.stderr.write(d));
  child.stderr?.on('data', (d: Buffer) => process.stderr.write(d));
  return child;
}

function nextMessage<M extends { type: string }, T extends M['type']>(child: ChildProcess, type: T, timeoutMs: number): Promise<Extract<M, { type: T }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no "${type}" message from child ${child.pid} within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (m: M) => {
      if (m.type !== type) return;
      cleanup();
      resolve(m as Extract<M, { type: T }>);
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`child ${child.pid} exited (${code}) before sending "${type}"`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

/** Terminations whose detail was printed already (one example each, on stderr). */
const seenDetails = new Set<string>();
const children = new Set<ChildProcess>();
function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}
const exited = (child: ChildProcess) =>
  child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>(resolve => child.once('exit', () => resolve()));

// ---------------------------------------------------------------- run records

const bundle = JSON.parse(readFileSync(`${ROOT}fixtures/reference/hotel-env.bundle.json`, 'utf8')) as { className: string; source: string; tools: FunctionTool[] };
const hotelState = JSON.parse(readFileSync(`${ROOT}fixtures/reference/hotel-state.json`, 'utf8')) as Record<string, unknown>;
const hotelChecks = JSON.parse(readFileSync(`${ROOT}fixtures/reference/hotel-checks.json`, 'utf8')) as { item: string; check: string }[];
const ENV_ID = 'env-hotel';
const SCENARIO_ID = 'scn-hotel-0';

/** The light diagnostic: the same environment code with only guest G0001, and one one-line check. */
const lightState: Record<string, unknown> = {
  hotel: hotelState['hotel'],
  rooms: {},
  guests: { G0001: (hotelState['guests'] as Record<string, unknown>)['G0001'] },
  reservations: {},
  room_reservations: {},
  guest_reservations: {},
  next_reservation_seq: hotelState['next_reservation_seq'],
};
const lightChecks = hotelChecks.filter(c => c.item === 'G0001 has no balance left');

/** One kept environment and one ready scenario, straight into the run store (no synthesis). */
async function seedRun(config: AppConfig, store: RunStore, runId: string, task: string, light: boolean, groups = 1): Promise<void> {
  const createdAt = new Date().toISOString();
  await store.createRun({ id: runId, createdAt, input: 'descriptions', options: runOptionsFrom(config) });
  const operations: Operation[] = bundle.tools.map(t => ({
    name: t.function.name,
    kind: /^(get|find|search|list)_/.test(t.function.name) ? 'query' : 'state_change',
    description: t.function.description ?? t.function.name,
    parameters: t.function.parameters ?? { type: 'object' },
  }));
  const env: EnvironmentRecord = {
    id: ENV_ID,
    runId,
    status: 'kept',
    description: {
      summary: 'Hotel reservation system',
      introduction: 'A small hotel: rooms, guests and their reservations, with check-in, check-out, room changes, housekeeping and payments.',
    },
    className: bundle.className,
    source: bundle.source,
    tools: bundle.tools,
    state: { className: bundle.className, entities: [], rules: [], stateSchema: { type: 'object' }, exampleState: {} },
    operations,
    failure: null,
    lineage: { runId, sourceTaskId: null, models: {}, prompts: {}, createdAt },
  };
  const scenario: ScenarioRecord = {
    id: SCENARIO_ID,
    runId,
    environmentId: ENV_ID,
    index: 0,
    status: 'ready',
    initialState: light ? lightState : hotelState,
    task,
    userGoal: { goal: task, facts: [] },
    checklist: (light ? lightChecks : hotelChecks).map(c => ({ item: c.item, check: c.check })),
    lineage: { runId, environmentId: ENV_ID, models: {}, prompts: {}, createdAt },
  };
  await store.putDoc(runId, 'env', ENV_ID, env);
  await store.putDoc(runId, 'scenario', SCENARIO_ID, scenario);
  for (let g = 1; g < groups; g++) await store.putDoc(runId, 'scenario', `scn-hotel-${g}`, { ...scenario, id: `scn-hotel-${g}`, index: g });
}

async function redisCpuS(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const field = (name: string) => Number(new RegExp(`^${name}:(\\S+)`, 'm').exec(info)?.[1] ?? NaN);
  return field('used_cpu_sys') + field('used_cpu_user');
}

/** Redis commands of the timed run per episode: the total, then the eight most frequent. */
function redisCommandsPerEpisode(a: Analysis): string {
  const n = a.raw.spec.episodes;
  const rows = Object.entries(a.raw.redisCommands).sort((x, y) => y[1] - x[1]);
  const all = rows.reduce((sum, [, calls]) => sum + calls, 0);
  return `${f1(all / n)}; ${rows.slice(0, 8).map(([name, calls]) => `${name} ${f1(calls / n)}`).join(', ')}`;
}

/** Calls per command so far (INFO commandstats). */
async function redisCommandCalls(redis: Redis): Promise<Map<string, number>> {
  return new Map([...commandStats(await redis.info('commandstats'))].map(([name, { calls }]) => [name, calls]));
}

async function funnelOf(redis: Redis, prefix: string, runId: string): Promise<Record<string, number>> {
  const hash = await redis.hgetall(`${prefix}:run:${runId}:funnel`);
  return Object.fromEntries(Object.entries(hash).map(([k, v]) => [k, Number(v)]));
}
const episodesRecorded = (funnel: Record<string, number>) =>
  Object.entries(funnel).filter(([k]) => k.startsWith('rollout.run|')).reduce((a, [, n]) => a + n, 0);

/** Start, end, turns, … of every trajectory of a run (read after the timed part, in pipelined batches). */
async function episodeSummaries(redis: Redis, prefix: string, runId: string): Promise<EpisodeSummary[]> {
  const ids = await redis.zrange(`${prefix}:run:${runId}:ids:trajectory`, '0', '-1');
  const out: EpisodeSummary[] = [];
  for (let i = 0; i < ids.length; i += 100) {
    const pipe = redis.pipeline();
    for (const id of ids.slice(i, i + 100)) pipe.get(`${prefix}:run:${runId}:doc:trajectory:${id}`);
    for (const [err, raw] of (await pipe.exec()) ?? []) {
      if (err || typeof raw !== 'string') continue;
      const t = JSON.parse(raw) as {
        turns: number;
        steps: unknown[];
        usage: { modelCalls: number };
        termination: { reason: string; detail: string | null };
        reward: number | null;
        checksError: string | null;
        timings: { startedAt: string; wallMs: number };
      };
      if (t.termination.detail && !seenDetails.has(t.termination.reason)) {
        seenDetails.add(t.termination.reason);
        progress(`a trajectory ended with ${t.termination.reason}: ${t.termination.detail}`);
      }
      const start = Date.parse(t.timings.startedAt);
      out.push({ start, end: start + t.timings.wallMs, turns: t.turns, toolSteps: t.steps.length, modelCalls: t.usage.modelCalls, reason: t.termination.reason, reward: t.reward, checksError: t.checksError });
    }
  }
  return out;
}

// ---------------------------------------------------------------- one configuration

let activePrefix: string | null = null;

// ---------------------------------------------------------------- the sink

/**
 * `envfleet sink --run main --out DIR --follow` (bin/envfleet.js, the build; with --from-source cli/main.ts through tsx) on the
 * configuration's prefix: the trajectory writer as a process of its own, so its CPU is measured (from
 * /proc/PID/stat) and counted with the fleet's. --follow, so that it can start before the run has any
 * job; it is stopped (SIGTERM) once it has written every trajectory.
 */
function spawnSink(prefix: string, dir: string, profileDir: string | null): ChildProcess {
  const prof = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${join(profileDir, 'sink')}`] : [];
  const entry = FROM_SOURCE ? ['--import', 'tsx', 'cli/main.ts'] : ['bin/envfleet.js'];
  const child = spawn(process.execPath, [...prof, ...entry, 'sink', '--run', 'main', '--out', dir, '--follow'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, REDIS_URL, ENVFLEET_REDIS_PREFIX: prefix, LOG_LEVEL: 'silent' },
  });
  child.stdout?.on('data', (d: Buffer) => process.stderr.write(d));
  child.stderr?.on('data', (d: Buffer) => process.stderr.write(d));
  return child;
}

/** The sink holds its run's lock once it has started (and created its consumer group). */
async function sinkStarted(redis: Redis, prefix: string, sink: ChildProcess): Promise<void> {
  const lock = runKeys(prefix, 'main', false).sinkLock;
  for (const started = Date.now(); !(await redis.exists(lock)); await sleep(50)) {
    if (sink.exitCode !== null || sink.signalCode !== null) throw new Error(`the sink exited (${sink.exitCode ?? sink.signalCode}) before it started`);
    if (Date.now() - started > 60_000) throw new Error('the sink did not start within 60 s');
  }
}

/** Waits until the sink has written (acknowledged and deleted) every entry of the run's trajectory stream. */
async function sinkDrained(redis: Redis, prefix: string, sink: ChildProcess, label: string): Promise<void> {
  const stream = trajectoryStreamKey(prefix, 'main');
  for (const started = Date.now(); (await redis.xlen(stream)) > 0; await sleep(50)) {
    if (sink.exitCode !== null || sink.signalCode !== null || Date.now() - started > 60_000) {
      progress(`${label}: the sink did not write every trajectory (${await redis.xlen(stream)} left in the stream)`);
      return;
    }
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  await Promise.race([exited(child), sleep(10_000)]);
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await exited(child);
  }
}

/** The episodes as the sink wrote them (DIR/trajectories/part-*.jsonl): the same summary as episodeSummaries, and the number of lines. */
function shardSummaries(dir: string): { episodes: EpisodeSummary[]; lines: number } {
  const episodes: EpisodeSummary[] = [];
  let lines = 0;
  const shardDir = join(dir, 'trajectories');
  for (const file of readdirSync(shardDir).filter(f => /^part-\d{5}\.jsonl$/.test(f)).sort()) {
    for (const line of readFileSync(join(shardDir, file), 'utf8').split('\n')) {
      if (!line) continue;
      lines += 1;
      const t = JSON.parse(line) as {
        turns: number;
        steps: unknown[];
        usage: { modelCalls: number };
        termination: { reason: string };
        reward: number | null;
        checksError: string | null;
        timings: { startedAt: string; wallMs: number };
      };
      const start = Date.parse(t.timings.startedAt);
      episodes.push({ start, end: start + t.timings.wallMs, turns: t.turns, toolSteps: t.steps.length, modelCalls: t.usage.modelCalls, reason: t.termination.reason, reward: t.reward, checksError: t.checksError });
    }
  }
  return { episodes, lines };
}

async function runConfiguration(spec: ConfigSpec, server: ChildProcess, modelUrl: string, serverCpu: CpuSample[]): Promise<Analysis> {
  const prefix = `envfleet-bench-rollouts-${randomUUID().slice(0, 8)}-${spec.label}`;
  activePrefix = prefix;
  const tasksPerThread = Math.ceil(spec.concurrency / THREADS) + 16;
  const heapMb = heapMbFor(tasksPerThread);
  server.send({ type: 'script', steps: spec.steps, delayMs: spec.delayMs } satisfies ServerCommand);
  await nextMessage<ServerMessage, 'script-ok'>(server, 'script-ok', 10_000);

  const settings: FleetSettings = { redisUrl: REDIS_URL, prefix, modelUrl, concurrency: spec.concurrency, poolThreads: THREADS, tasksPerThread, heapMb, startPacing: START_PACING };
  const spawnedAt = Date.now();
  const profileDir = PROFILE && fleetConcurrency(spec) >= 1000 && !spec.baseline ? mkdtempSync(join(os.tmpdir(), 'envfleet-bench-prof-')) : null;
  // P worker processes on the same prefix (so the same queues); the first is the profiled one with --profile.
  const fleets = Array.from({ length: spec.processes }, (_, i) =>
    track(spawnChild('bench/rollouts/fleet.ts', [JSON.stringify(settings)], [...FLEET_NODE_ARGS, ...(profileDir && i === 0 ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])])));
  const memory: MemoryProbe[][] = fleets.map(() => []);
  fleets.forEach((child, i) => child.on('message', (m: FleetMessage) => {
    if (m.type === 'memory') memory[i]!.push(m.probe);
  }));
  const toFleet = (cmd: FleetCommand) => {
    for (const child of fleets) child.send(cmd);
  };
  const config = loadConfig({}, { overrides: { REDIS_URL, ENVFLEET_REDIS_PREFIX: prefix, OPENAI_BASE_URL: modelUrl, LOG_LEVEL: 'silent' } });
  const redis = createRedisConnection(REDIS_URL, 'producer');
  await waitForRedis(redis, REDIS_URL);
  const store = createRedisRunStore(redis, prefix);
  // The timed run exists (no rollouts yet) before its sink starts: `envfleet sink` refuses a run that does not.
  await seedRun(config, store, 'main', 'Look up guest G0001 and report their balance.', spec.light, spec.baseline ? 1 : GROUPS);
  // The sink (`envfleet sink --follow` on the timed run), a process of its own, started with the workers.
  const sinkDir = SINK ? mkdtempSync(join(os.tmpdir(), 'envfleet-bench-sink-')) : null;
  const sink = sinkDir ? track(spawnSink(prefix, sinkDir, PROFILE_SINK ? profileDir : null)) : null;
  const ready = await Promise.all(fleets.map(child => nextMessage<FleetMessage, 'ready'>(child, 'ready', 60_000)));
  const fleetStartupMs = Date.now() - spawnedAt;
  const poolTids = ready.map(r => r.poolTids?.length ?? 0);

  let samplerTimer: NodeJS.Timeout | undefined;
  try {
    // Warm-up: a few episodes whose answers come at once (JIT, ajv schemas and QuickJS in every pool thread, HTTP connections).
    const warmupEpisodes = spec.processes * (WARMUP > 0 ? WARMUP : Math.max(2 * THREADS, Math.ceil(spec.concurrency / spec.processes)));
    const warmStart = Date.now();
    await seedRun(config, store, 'warmup', `${WARMUP_MARK}: look up guest G0001 and report the balance.`, spec.light);
    await submitRollouts(config, redis, { runId: 'warmup', samples: warmupEpisodes, modes: ['non-conversational'] });
    while ((await store.pendingCount('warmup')) > 0) {
      if (Date.now() - warmStart > 300_000) throw new Error('the warm-up run did not finish within 300 s');
      await sleep(50);
    }
    const warmupMs = Date.now() - warmStart;
    await sleep(300);
    const idleProbes = fleets.map(child => nextMessage<FleetMessage, 'memory'>(child, 'memory', 30_000));
    toFleet({ type: 'memory', label: 'idle', gc: true });
    await Promise.all(idleProbes);
    if (sink) await sinkStarted(redis, prefix, sink);
    server.send({ type: 'collect' } satisfies ServerCommand);
    await nextMessage<ServerMessage, 'records'>(server, 'records', 30_000);

    // The timed run (seeded before the sink started).
    const host: HostSample[] = [];
    const sinkCpu: CpuSample[] = [];
    let sampling = false;
    const sampleHost = async () => {
      if (sampling) return;
      sampling = true;
      try {
        const u = process.cpuUsage();
        if (sink?.pid) sinkCpu.push({ t: Date.now(), cpuUs: processCpuUs(sink.pid) });
        host.push({ t: Date.now(), machineBusyS: machineBusyS(), redisCpuS: await redisCpuS(redis), selfCpuUs: u.user + u.system });
      } finally {
        sampling = false;
      }
    };
    const commandsBefore = await redisCommandCalls(redis);
    toFleet({ type: 'sample-start' });
    await sampleHost();
    samplerTimer = setInterval(() => void sampleHost(), 200);
    const serverCpuFrom = serverCpu.length;

    const t0 = Date.now();
    await submitRollouts(config, redis, { runId: 'main', samples: spec.baseline ? spec.episodes : spec.episodes / GROUPS, modes: ['non-conversational'] });
    const tSubmitted = Date.now();
    // Memory is probed once mid-way through the steady phase (about (N − C) / 2 episodes done).
    const probeAt = Math.max(1, Math.floor((spec.episodes - fleetConcurrency(spec)) / 2));
    let probed = false;
    let tEpisodesDone = 0;
    let tRunDone = 0;
    const deadline = t0 + 240_000;
    let lastReport = 0;
    for (;;) {
      const done = episodesRecorded(await funnelOf(redis, prefix, 'main'));
      const now = Date.now();
      if (!probed && done >= probeAt) {
        probed = true;
        toFleet({ type: 'memory', label: 'steady', gc: false });
      }
      if (!tEpisodesDone && done >= spec.episodes) tEpisodesDone = now;
      if (tEpisodesDone && (await store.pendingCount('main')) === 0) {
        tRunDone = Date.now();
        break;
      }
      if (now > deadline) break;
      if (now - lastReport > 5_000) {
        lastReport = now;
        progress(`${spec.label}: ${done}/${spec.episodes} episodes after ${((now - t0) / 1000).toFixed(1)} s`);
      }
      await sleep(50);
    }
    const finished = tRunDone > 0;
    // The sink's CPU counts until it has written the last trajectory (the run's stream is empty once it has).
    if (sink && finished) await sinkDrained(redis, prefix, sink, spec.label);
    clearInterval(samplerTimer);
    await sampleHost();
    const redisCommands: Record<string, number> = {};
    for (const [name, calls] of await redisCommandCalls(redis)) {
      const n = calls - (commandsBefore.get(name) ?? 0);
      if (n > 0) redisCommands[name] = n;
    }
    if (!probed) {
      toFleet({ type: 'memory', label: 'steady', gc: false });
    }
    await sleep(200);

    const stopped = fleets.map(child => nextMessage<FleetMessage, 'samples'>(child, 'samples', 60_000));
    toFleet({ type: 'stop' });
    const collected = await Promise.all(stopped);
    await Promise.all(fleets.map(exited));
    const { hrFromUs, hrToUs } = collected[0]!;
    if (sink) await stopChild(sink);
    let profile: ProfileSummary | null = null;
    let sinkProfile: ProfileSummary | null = null;
    if (profileDir) {
      if (KEEP_PROFILES) {
        const kept = join(KEEP_PROFILES, spec.label);
        cpSync(profileDir, kept, { recursive: true });
        progress(`${spec.label}: CPU profiles kept in ${kept}`);
      }
      if (sink && PROFILE_SINK) {
        try {
          // The sink's main thread; its timed part is from the start of the timed run to its stop (hrtime is per machine on Linux).
          const dir = join(profileDir, 'sink');
          const file = readdirSync(dir).find(f => /^CPU\.\d+\.\d+\.\d+\.0\.\d+\.cpuprofile$/.test(f));
          if (!file) throw new Error(`no sink profile in ${dir}`);
          sinkProfile = summarizeProfile(join(dir, file), hrFromUs, Number.MAX_SAFE_INTEGER);
        } catch (err) {
          progress(`${spec.label}: could not read the sink's CPU profile: ${(err as Error).message}`);
        }
      }
      try {
        // One profile per thread (the module loader's and the pool's too); the main thread's has thread id 0.
        const file = readdirSync(profileDir).find(f => /^CPU\.\d+\.\d+\.\d+\.0\.\d+\.cpuprofile$/.test(f));
        if (!file) throw new Error(`no main-thread profile in ${profileDir}`);
        profile = summarizeProfile(join(profileDir, file), hrFromUs, hrToUs);
      } catch (err) {
        progress(`${spec.label}: could not read the CPU profile: ${(err as Error).message}`);
      }
    }
    server.send({ type: 'collect' } satisfies ServerCommand);
    const { records } = await nextMessage<ServerMessage, 'records'>(server, 'records', 30_000);
    // With the sink, the dataset it wrote is what is checked (its documents in Redis are summaries by then).
    const sunk = sinkDir ? shardSummaries(sinkDir) : null;
    const episodes = sunk ? sunk.episodes : await episodeSummaries(redis, prefix, 'main');
    const trajectoryIds = await redis.zcard(`${prefix}:run:main:ids:trajectory`);
    const funnel = await funnelOf(redis, prefix, 'main');
    const keysLeft = await deletePrefix(redis, prefix);
    activePrefix = null;
    const raw: RunRaw = {
      spec,
      prefix,
      tasksPerThread,
      poolThreads: THREADS,
      fleetStartupMs,
      warmupEpisodes,
      warmupMs,
      t0,
      tSubmitted,
      tEpisodesDone: tEpisodesDone || Date.now(),
      tRunDone: tRunDone || Date.now(),
      finished,
      episodes,
      requests: records,
      fleets: collected.map((c, i) => ({ pid: ready[i]!.pid, samples: c.samples, timings: c.timings, memory: memory[i]!, poolTids: poolTids[i]! })),
      profile,
      sinkProfile,
      host,
      sinkCpu: sink ? sinkCpu : null,
      sinkLines: sunk ? sunk.lines : null,
      trajectoryIds,
      serverCpu: serverCpu.slice(serverCpuFrom),
      funnel,
      keysLeft,
      redisCommands,
    };
    return analyse(raw);
  } finally {
    if (profileDir) rmSync(profileDir, { recursive: true, force: true });
    clearInterval(samplerTimer);
    for (const child of fleets) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited(child);
      }
    }
    if (sink) await stopChild(sink);
    if (sinkDir) rmSync(sinkDir, { recursive: true, force: true });
    if (activePrefix) {
      await deletePrefix(redis, activePrefix).catch(() => undefined);
      activePrefix = null;
    }
    redis.disconnect();
  }
}

// ---------------------------------------------------------------- report

const f0 = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : '–');
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '–');
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '–');
const pct = (x: number) => (Number.isFinite(x) ? `${(x * 100).toFixed(0)} %` : '–');
const pct1 = (x: number) => (Number.isFinite(x) ? `${(x * 100).toFixed(1)} %` : '–');
const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
const row = (cells: readonly (string | number)[]) => `| ${cells.join(' | ')} |`;

function report(results: readonly Analysis[], redisVersion: string, startedMs: number): string {
  const out: string[] = [];
  const push = (...lines: string[]) => out.push(...lines);
  const cpu = os.cpus()[0];
  const name = (a: Analysis) =>
    a.raw.spec.baseline
      ? `baseline C = ${a.raw.spec.concurrency}${DELAYS.length > 1 ? `, L = ${a.raw.spec.delayMs} ms` : ''}`
      : `${a.raw.spec.light ? 'light ' : ''}C = ${fleetConcurrency(a.raw.spec)}, L = ${a.raw.spec.delayMs} ms${a.raw.spec.processes > 1 ? `, ${a.raw.spec.processes} processes` : ''}`;
  const table = (rows: [string, (a: Analysis) => string][]) => {
    push(row(['', ...results.map(name)]), row(['---', ...results.map(() => '---')]));
    for (const [label, f] of rows) push(row([label, ...results.map(f)]));
    push('');
  };

  push('# Rollout throughput benchmark', '');
  push(`- machine: ${cpu?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.type()} ${os.release()}, Node ${process.version}, Redis ${redisVersion}`);
  push(`- code measured: ${FROM_SOURCE ? 'the TypeScript sources through tsx (--from-source)' : 'the build in dist/, as `envfleet worker` and `envfleet sink` run it'}`);
  push(`- episode starts: ${START_PACING ? 'ENVFLEET_ROLLOUT_START_PACING=auto, the default (a worker process running 256 episodes or more at once starts at most C / P of them per mean latency of its uncached policy calls)' : 'not paced (--no-pacing: ENVFLEET_ROLLOUT_START_PACING=off)'}`);
  push(`- date: ${new Date().toISOString()}`);
  push(`- command: \`${FLEET_NODE_ARGS.length ? `ENVFLEET_BENCH_FLEET_NODE_ARGS="${FLEET_NODE_ARGS.join(" ")}" ` : ""}node --import tsx bench/rollouts.ts${argv.length ? ` ${argv.join(" ")}` : ""}\` (whole benchmark ${f1((Date.now() - startedMs) / 1000)} s)`);
  push(`- workload: one kept environment (reference hotel env, 65 KB state, 4 checks) and ${GROUPS > 1 ? `${GROUPS} ready scenarios (copies of one, ids apart), N / ${GROUPS} samples of each (a group each; the baseline: one scenario)` : 'one ready scenario, N samples of it'}, non-conversational; the scripted policy makes exactly S = ${STEPS} agent turns per episode (${STEPS - 1} × get_guest, then a text answer), each answered after L ms (a \`delay\` fault)`);
  push(`- fleet: P fresh worker processes per configuration (\`startWorkerProcess\`, queues rollout.run and rollout.group, all on the configuration's prefix), each with ENVFLEET_ROLLOUT_CONCURRENCY = C / P and its own sandbox pool of ${THREADS} threads × ceil(C / P / ${THREADS}) + 16 tasks, ENVFLEET_SANDBOX_HEAP_MB = max(512, 2 × tasks per thread), ENVFLEET_MODEL_MAX_CONCURRENCY = 0, log level silent; a warm-up run (answers at once; ${WARMUP > 0 ? `${WARMUP} episodes` : 'one wave, C / P episodes'} per process) before each timed run`);
  push(SINK
    ? `- sink: \`envfleet sink --run main --out DIR --follow\` (${FROM_SOURCE ? 'cli/main.ts through tsx' : 'bin/envfleet.js, the build'}) in a process of its own per configuration, writing the timed run's trajectories to a temporary directory (fsync per batch) and replacing their Redis documents by summaries; its CPU is counted from the start of the timed run until it has written the last trajectory, and the checks read the episodes from its shard files`
    : '- sink: none (--no-sink); the trajectories stay in Redis and the fleet CPU counts the worker processes only');
  push('- model server: the scripted server in a child process of its own (not sharing the fleet\'s event loop), on the same machine; the benchmark itself (submission, polling, sampling) in a third process');
  push('- bound: C / (S × L) rollouts/s, i.e. every episode is nothing but S model waits of L ms and the fleet keeps C episodes in flight');
  if (results.some(a => a.raw.spec.light)) {
    push('- "light" (diagnostic, not the workload of the bar): the same environment code and policy, but an initial state with only guest G0001 (≈0.3 KB instead of 65 KB) and one one-line check instead of four, to separate the sandbox\'s per-episode cost from the rest of the fleet');
  }
  push('');

  push('## Throughput', '');
  table([
    ['episodes N', a => String(a.raw.spec.episodes)],
    ['bound C / (S × L)', a => `${f1(a.boundPerS)} /s`],
    ['wall: submit → all episodes recorded', a => `${f2(a.wallS)} s`],
    ['… → run finished (incl. the rollout.group job)', a => `${f2(a.runWallS)} s`],
    ['submitRollouts call', a => `${f0(a.raw.tSubmitted - a.raw.t0)} ms`],
    ['**rollouts/s (N ÷ wall)**', a => `**${f1(a.overallPerS)}**`],
    ['**achieved ÷ bound**', a => `**${pct(a.overallPerS / a.boundPerS)}**`],
    ['ideal wall ⌈N / C⌉ × S × L', a => `${f2((Math.ceil(a.raw.spec.episodes / fleetConcurrency(a.raw.spec)) * a.raw.spec.steps * a.raw.spec.delayMs) / 1000)} s`],
    ['steady window (first episode done → last episode started)', a => `${f2(a.windowS)} s${a.window.how.startsWith('whole') ? ' (whole run)' : ''}`],
    ['rollouts/s in the steady window: Little\'s law (mean in flight ÷ mean episode wall) / episodes finished ÷ window', a => `${f1(a.steadyPerS)} / ${f1(a.steadyCountPerS)}`],
    ['steady ÷ bound', a => pct(a.steadyPerS / a.boundPerS)],
    ['episodes in flight (steady): median / max', a => `${f0(a.episodesInFlight.median)} / ${f0(a.episodesInFlight.max)}`],
    ['model requests in flight at the server (steady): median / max', a => `${f0(a.modelInFlight.median)} / ${f0(a.modelInFlight.max)}`],
    ['model requests in flight ÷ C (steady, median)', a => pct(a.modelInFlight.median / fleetConcurrency(a.raw.spec))],
    ['server time per request (arrival → answer): median / p99', a => `${f0(a.serverTimeMs.median)} / ${f0(a.serverTimeMs.p99)} ms`],
    ['episode wall time: median / p99', a => `${f0(a.episodeWallMs.median)} / ${f0(a.episodeWallMs.p99)} ms`],
    ['episode time outside the server (median wall − S × median server time)', a => `${f0(a.episodeWallMs.median - a.raw.spec.steps * a.serverTimeMs.median)} ms`],
    ['achieved ÷ bound as two factors: the episodes (S × L ÷ mean episode wall) × the waves (episodes recorded ÷ C × mean episode wall ÷ wall: the start, each wave\'s spread, the tail)', a => `${pct(a.gap.episodeFactor)} (mean episode wall ${f0(a.gap.meanEpisodeWallMs)} ms) × ${pct(a.gap.wavesFactor)}`],
    ['submit → first episode started / the first C episodes\' starts, first → last', a => `${f0(a.gap.firstStartMs)} / ${f0(a.gap.firstWaveSpreadMs)} ms`],
    ['the waves\' loss as idle slot time (C × wall): before each slot\'s first episode / between episodes / after its last', a => `${pct1(a.gap.idle.start)} / ${pct1(a.gap.idle.between)} / ${pct1(a.gap.idle.tail)}`],
    ['model requests: answered / expected N × S', a => `${a.requestsOk} / ${a.raw.spec.episodes * a.raw.spec.steps}${a.requestsOther ? ` (+${a.requestsOther} other)` : ''}`],
    ['result check', a => (a.check.ok ? 'PASS' : '**FAIL**')],
  ]);

  push('## CPU and event loop', '');
  push('Cores and shares are over the steady window; "per episode" and "per model request" figures are the whole timed run\'s CPU ÷ N (or N × S). Cores = CPU seconds per wall second. Fleet process = all its threads (main + sandbox pool + V8/libuv helpers); main thread from /proc/self/task; ' +
    'event-loop utilisation (ELU) from `performance.eventLoopUtilization()` (main) and `worker.performance.eventLoopUtilization()` (each pool thread); ' +
    'event-loop delay from `monitorEventLoopDelay` (10 ms resolution) per 200 ms sample; run-queue delay (runnable, but no CPU free) from /proc/self/task/*/schedstat; ' +
    'Redis from `INFO cpu`; machine from /proc/stat; "other" = machine − the four processes of the benchmark.', '');
  table([
    ['fleet process (all worker processes)', a => `${f2(a.cpu.fleetCores)} cores`],
    ['… main thread', a => `${f2(a.cpu.mainCores)} cores (ELU ${pct(a.cpu.mainElu)})`],
    ['… other threads (sandbox pool + V8/libuv helpers)', a => `${f2(a.cpu.otherThreadsCores)} cores`],
    ['… sandbox pool threads ELU', a => a.cpu.poolEluByProcess.map(p => p.map(pct).join(', ')).join('; ')],
    ['… … sandbox pool threads (CPU)', a => `${f2(a.cpu.poolCores)} cores`],
    ['… main-thread ELU per worker process', a => a.cpu.mainEluByProcess.map(pct).join('; ')],
    ['sink process', a => (a.raw.sinkCpu ? `${f2(a.cpu.sinkCores)} cores` : '–')],
    ['… waiting for a CPU (run-queue delay): main thread / other threads', a => `${f2(a.cpu.mainRunDelay)} / ${f2(a.cpu.otherRunDelay)} thread-s per s`],
    ['… main-thread GC pauses: share of the window / longest', a => `${pct(a.cpu.gcShare)} / ${f0(a.cpu.gcMaxMs)} ms`],
    ['scripted model server (child)', a => `${f2(a.cpu.serverCores)} cores`],
    ['Redis', a => `${f2(a.cpu.redisCores)} cores`],
    ['benchmark process (submit, poll, sample)', a => `${f2(a.cpu.selfCores)} cores`],
    ['other processes on the machine', a => `${f2(a.cpu.otherCores)} cores`],
    ['whole machine', a => `${f2(a.cpu.machineCores)} of ${os.cpus().length} cores`],
    ['**fleet CPU per episode** (worker processes, whole run ÷ N): all / main thread / other threads', a => `**${f1(a.cpu.fleetMsPerEpisode)} ms** / ${f1(a.cpu.mainMsPerEpisode)} / ${f1(a.cpu.otherThreadsMsPerEpisode)} ms`],
    ['**fleet CPU per episode by process kind**: worker main threads / worker pool threads / other worker threads / sink = all', a =>
      `${f2(a.cpu.mainMsPerEpisode)} / ${f2(a.cpu.poolMsPerEpisode)} / ${f2(a.cpu.helperMsPerEpisode)} / ${a.raw.sinkCpu ? f2(a.cpu.sinkMsPerEpisode) : '–'} = **${f2(a.cpu.allMsPerEpisode)} ms**`],
    ['pool threads\' event-loop active time per episode (whole run ÷ N)', a => `${f1(a.cpu.poolActiveMsPerEpisode)} ms`],
    ['fleet CPU per model request (whole run ÷ N × S)', a => `${f2(a.cpu.fleetMsPerRequest)} ms`],
    ['server CPU per model request (whole run)', a => `${f2(a.cpu.serverMsPerRequest)} ms`],
    ['Redis CPU per episode (whole run; Redis is shared with other users)', a => `${f2(a.cpu.redisMsPerEpisode)} ms`],
    ['Redis commands per episode (whole run, INFO commandstats: a script\'s own commands counted under their names too; the benchmark\'s polling and other users\' commands included): all; the most frequent', a => redisCommandsPerEpisode(a)],
    ['event-loop delay of the fleet: median p50 / max p99 / max', a => `${f1(a.cpu.eldP50)} / ${f1(a.cpu.eldP99)} / ${f1(a.cpu.eldMax)} ms`],
    ['piscina queue (tasks waiting for a slot), max', a => String(a.cpu.poolQueueMax)],
  ]);

  push('## Where an episode\'s time goes (all N episodes)', '');
  push('Wall time of each operation as the episode sees it (queueing included), from wrappers around the worker process\'s own gateway and sandbox runner; ' +
    'median / p99 per operation over the whole timed run, and its total ÷ N (the mean time an episode spends in it). "rest" = mean episode wall − the timed operations: ' +
    'the run store (Redis reads of the scenario, environment, run; the trajectory write), BullMQ, and anything the main thread does between them.', '');
  const opNames = ['model call', 'session open', 'tool call', 'snapshot', 'session close', 'checks', 'finish'];
  const opOf = (a: Analysis, n: string) => a.ops.find(o => o.name === n);
  table([
    ...opNames.map((n): [string, (a: Analysis) => string] => [n, a => {
      const o = opOf(a, n);
      return o && o.count ? `${f0(o.median)} / ${f0(o.p99)} ms → ${f0(o.mean * o.perEpisode)} ms` : '–';
    }]),
    ['rest', a => `${f0(a.meanWallMs - opNames.reduce((sum, n) => sum + (opOf(a, n) ? opOf(a, n)!.mean * opOf(a, n)!.perEpisode : 0), 0))} ms`],
    ['mean episode wall', a => `${f0(a.meanWallMs)} ms`],
    ['model call in the fleet − server time (median)', a => `${f0((opOf(a, 'model call')?.median ?? NaN) - a.serverTimeMs.median)} ms`],
  ]);

  /** A profile's self time by category and its top functions, as two tables. */
  const profileTables = (p: ProfileSummary, episodes: number) => {
    push(row(['self time by category', 'ms', 'share', 'per episode']), row(['---', '---', '---', '---']));
    for (const [cat, ms] of p.categories.slice(0, 14)) push(row([cat, f0(ms), pct(ms / p.totalMs), `${f2(ms / episodes)} ms`]));
    push('');
    push(row(['function (self time)', 'where', 'ms', 'share']), row(['---', '---', '---', '---']));
    for (const [fn, where, ms] of p.top) push(row([`\`${fn}\``, where, f0(ms), pct(ms / p.totalMs)]));
    push('');
  };
  for (const a of results.filter(r => r.raw.sinkProfile)) {
    const p = a.raw.sinkProfile!;
    push(`## CPU profile of the sink process, ${name(a)}`, '');
    push(`\`node --cpu-prof\` on the sink (\`envfleet sink --follow\`), its main thread from the start of the timed run until it was stopped. ` +
      `${f0(p.totalMs)} ms of non-idle samples (and ${f0(p.idleMs)} ms idle), i.e. ${f2(p.totalMs / a.raw.spec.episodes)} ms per episode (wall-clock samples: read the shares).`, '');
    profileTables(p, a.raw.spec.episodes);
  }

  for (const a of results.filter(r => r.raw.profile)) {
    const p = a.raw.profile!;
    push(`## Main-thread CPU profile of the fleet process, ${name(a)}`, '');
    push(`\`node --cpu-prof\` on the worker process (sampling profiler on; its figures in the tables above are from this profiled run). ` +
      `${f0(p.totalMs)} ms of non-idle samples${p.restricted ? ' in the timed run' : ' (whole process lifetime: the profile clock did not match)'} (and ${f0(p.idleMs)} ms idle), ` +
      `i.e. ${f2(p.totalMs / a.raw.spec.episodes)} ms per episode. Samples are wall-clock time: when the thread is runnable but waits for a CPU the wait is counted ` +
      `in the function it was in, so read the shares, and the main thread's CPU per episode above for the absolute cost.`, '');
    profileTables(p, a.raw.spec.episodes);
  }

  push('## Memory of the fleet process', '');
  push('idle = after the warm-up run and a forced GC (main thread); steady = median of the 200 ms samples in the steady window (RSS, main-thread heap) and one probe mid-way (WebAssembly). ' +
    'The sandbox heap is the resident part of the process\'s WebAssembly memories (QuickJS in the pool threads), read from /proc/self/smaps (each is an rw mapping followed by its guard reservation, 8 GiB together).', '');
  table([
    ['RSS idle → steady', a => (a.memory.idle ? `${mib(a.memory.idle.rss)} → ${mib(a.memory.steadyRssMedian)}` : '–')],
    ['**RSS per rollout in flight**', a => `**${f0(a.memory.rssPerRolloutKb)} KB**`],
    ['main-thread JS heap per rollout in flight', a => `${f0(a.memory.heapPerRolloutKb)} KB`],
    ['sandbox WebAssembly heap idle → steady', a => (a.memory.idle?.wasmRss != null && a.memory.steady?.wasmRss != null ? `${mib(a.memory.idle.wasmRss)} → ${mib(a.memory.steady.wasmRss)} (${a.memory.steady.wasmMemories} memories)` : '–')],
    ['sandbox heap per rollout in flight', a => (a.memory.wasmPerRolloutKb === null ? '–' : `${f0(a.memory.wasmPerRolloutKb)} KB`)],
  ]);

  push('## Result checks', '');
  for (const a of results) {
    push(`- ${name(a)}: **${a.check.ok ? 'PASS' : 'FAIL'}**`);
    for (const l of a.check.lines) push(`  - ${l}`);
    push(`  - fleet start ${f1(a.raw.fleetStartupMs / 1000)} s; warm-up ${a.raw.warmupEpisodes} episodes in ${f1(a.raw.warmupMs / 1000)} s; Redis keys left under ${a.raw.prefix}:* after clean-up: ${a.raw.keysLeft}`);
  }
  push('');

  const top = results.filter(a => !a.raw.spec.baseline && !a.raw.spec.light && fleetConcurrency(a.raw.spec) >= 1000);
  push('## The 95 % bar at C = 1,000', '');
  if (!top.length) push('- not measured in this run (C = 1,000 not among the configurations).');
  for (const a of top) {
    const ratio = a.overallPerS / a.boundPerS;
    push(`- L = ${a.raw.spec.delayMs} ms: ${f1(a.overallPerS)} rollouts/s of a ${f1(a.boundPerS)} /s bound = **${pct(ratio)}** (steady window ${pct(a.steadyPerS / a.boundPerS)}): **${ratio >= 0.95 ? 'holds' : 'does not hold'}**. ` +
      `Machine busy ${f2(a.cpu.machineCores)} of ${os.cpus().length} cores in the steady window (fleet ${f2(a.cpu.fleetCores)}, model server ${f2(a.cpu.serverCores)}, Redis ${f2(a.cpu.redisCores)}, other processes ${f2(a.cpu.otherCores)}); ` +
      `the fleet's threads waited ${f2(a.cpu.mainRunDelay + a.cpu.otherRunDelay)} thread-seconds per second for a CPU. ` +
      `At the bound the fleet${a.raw.sinkCpu ? ' (sink included)' : ''} would need ${f1(a.boundPerS)} × ${f1(a.cpu.allMsPerEpisode)} ms = **${f1((a.boundPerS * a.cpu.allMsPerEpisode) / 1000)} cores** ` +
      `(its main thread${a.raw.spec.processes > 1 ? 's' : ''} alone ${f2((a.boundPerS * a.cpu.mainMsPerEpisode) / 1000)} cores); with all ${os.cpus().length} cores it could do at most ${f0((os.cpus().length * 1000) / a.cpu.allMsPerEpisode)} episodes/s.`);
  }
  for (const a of results.filter(r => r.raw.spec.light)) {
    push(`- diagnostic, light scenario (C = ${fleetConcurrency(a.raw.spec)}, L = ${a.raw.spec.delayMs} ms): ${f1(a.overallPerS)} rollouts/s = ${pct(a.overallPerS / a.boundPerS)} of the bound; fleet CPU ${f1(a.cpu.fleetMsPerEpisode)} ms per episode ` +
      `(main thread ${f1(a.cpu.mainMsPerEpisode)} ms, ELU ${pct(a.cpu.mainElu)}; other threads ${f1(a.cpu.otherThreadsMsPerEpisode)} ms); model call in the fleet − at the server: ${f0((a.ops.find(o => o.name === 'model call')?.median ?? NaN) - a.serverTimeMs.median)} ms (median).`);
  }
  for (const base of results.filter(a => a.raw.spec.baseline)) {
    push(`- baseline (C = ${base.raw.spec.concurrency}, the seed's three sequential runners, L = ${base.raw.spec.delayMs} ms): ${f2(base.overallPerS)} rollouts/s of a ${f2(base.boundPerS)} /s bound (${pct(base.overallPerS / base.boundPerS)}).`);
  }
  push('');
  push(...scalingSummary(results));
  return out.join('\n');
}

/**
 * Issue 14 item 2 in one table: per latency, the seed's baseline and each C × P against the bound, fleet CPU
 * per episode by process kind; then a line per latency with the best fraction of the bound at C = 1,000 and
 * the ratio of that throughput to the baseline's at the same latency (bars: ≥ 95 % at L = 2 s, ≥ 300×).
 */
function scalingSummary(results: readonly Analysis[]): string[] {
  const out: string[] = ['## Scaling: fraction of the bound by C, L and worker processes', ''];
  const fleetRuns = results.filter(a => !a.raw.spec.light && !a.raw.spec.baseline);
  const delays = [...new Set(results.filter(a => !a.raw.spec.light).map(a => a.raw.spec.delayMs))].sort((x, y) => x - y);
  if (!fleetRuns.length) return [];
  out.push('Throughput = N ÷ wall (submit → every episode recorded); bound = C / (S × L). CPU per episode = whole timed run ÷ N, summed over the worker processes; ' +
    '"pool" = the threads that appeared while a worker process started (its sandbox pool), "other" = the rest of the worker threads (V8, libuv); the sink is its own process.', '');
  out.push(row(['L', 'configuration', 'N', 'rollouts/s', 'bound', '**÷ bound**', '÷ baseline', 'CPU ms per episode: main / pool / other / sink = **all**', 'check']));
  out.push(row(['---', '---', '---', '---', '---', '---', '---', '---', '---']));
  const baselineAt = (delay: number) => results.find(a => a.raw.spec.baseline && a.raw.spec.delayMs === delay);
  const cpuCell = (a: Analysis) => `${f2(a.cpu.mainMsPerEpisode)} / ${f2(a.cpu.poolMsPerEpisode)} / ${f2(a.cpu.helperMsPerEpisode)} / ${a.raw.sinkCpu ? f2(a.cpu.sinkMsPerEpisode) : '–'} = **${f2(a.cpu.allMsPerEpisode)}**`;
  for (const delay of delays) {
    const base = baselineAt(delay);
    const runs = results.filter(a => !a.raw.spec.light && a.raw.spec.delayMs === delay)
      .sort((x, y) => Number(y.raw.spec.baseline) - Number(x.raw.spec.baseline) || fleetConcurrency(x.raw.spec) - fleetConcurrency(y.raw.spec) || x.raw.spec.processes - y.raw.spec.processes);
    for (const a of runs) {
      const what = a.raw.spec.baseline ? `baseline: ${a.raw.spec.concurrency} sequential runners` : `C = ${fleetConcurrency(a.raw.spec)}, ${a.raw.spec.processes} process${a.raw.spec.processes > 1 ? 'es' : ''}`;
      out.push(row([`${delay} ms`, what, String(a.raw.spec.episodes), f1(a.overallPerS), `${f1(a.boundPerS)} /s`, `**${pct(a.overallPerS / a.boundPerS)}**`,
        base && !a.raw.spec.baseline ? `${f0(a.overallPerS / base.overallPerS)}×` : '–', cpuCell(a), a.check.ok ? 'PASS' : '**FAIL**']));
    }
  }
  out.push('');
  for (const delay of delays) {
    const at = fleetRuns.filter(a => a.raw.spec.delayMs === delay);
    if (!at.length) continue;
    const maxC = Math.max(...at.map(a => fleetConcurrency(a.raw.spec)));
    const best = at.filter(a => fleetConcurrency(a.raw.spec) === maxC).sort((x, y) => y.overallPerS / y.boundPerS - x.overallPerS / x.boundPerS)[0]!;
    const base = baselineAt(delay);
    const frac = best.overallPerS / best.boundPerS;
    const ratio = base ? best.overallPerS / base.overallPerS : NaN;
    const bar = maxC >= 1000 && delay >= 2000 ? ` (bar ≥ 95 %: **${frac >= 0.95 ? 'met' : 'not met'}**)` : '';
    out.push(`- **L = ${delay} ms**: best at C = ${maxC.toLocaleString('en-US')}${maxC < 1000 ? ' (C = 1,000 not measured in this run)' : ''}: ` +
      `${best.raw.spec.processes} process${best.raw.spec.processes > 1 ? 'es' : ''}, ${f1(best.overallPerS)} rollouts/s = **${pct(frac)} of the bound**${bar}; ` +
      (base
        ? `${f0(ratio)}× the seed baseline at the same latency (${f2(base.overallPerS)} rollouts/s; ` +
          (maxC >= 1000 ? `bar ≥ 300×: **${ratio >= 300 ? 'met' : 'not met'}**)` : `the 300× bar is not evaluated below C = 1,000: C = ${maxC} allows at most ${f0(maxC / BASELINE_C)}×)`)
        : 'no baseline in this run') +
      `; fleet CPU ${f2(best.cpu.allMsPerEpisode)} ms per episode.`);
  }
  out.push('');
  return out;
}

// ---------------------------------------------------------------- main

if (!FROM_SOURCE) {
  process.stderr.write('building dist/ (tsc -p tsconfig.build.json) for the worker processes and the sink …\n');
  const built = spawnSync(process.execPath, [createRequire(import.meta.url).resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: ['ignore', 2, 2] });
  if (built.status !== 0) throw new Error(`the build failed (exit ${built.status ?? built.signal}); fix it, or measure the sources with --from-source`);
}
const startedMs = Date.now();
const admin = createRedisConnection(REDIS_URL, 'producer');
await waitForRedis(admin, REDIS_URL);
const redisVersion = /redis_version:(\S+)/.exec(await admin.info('server'))?.[1] ?? 'unknown';

const server = track(spawnChild('bench/rollouts/server.ts', []));
const serverCpu: CpuSample[] = [];
server.on('message', (m: ServerMessage) => {
  if (m.type === 'cpu') serverCpu.push({ t: m.t, cpuUs: m.cpuUs });
});

process.once('SIGINT', () => {
  progress('interrupted: stopping the child processes and deleting this run\'s Redis keys');
  for (const c of children) c.kill('SIGTERM');
  const prefix = activePrefix;
  void (prefix ? deletePrefix(admin, prefix) : Promise.resolve(0)).finally(() => process.exit(130));
});

const results: Analysis[] = [];
try {
  const { url, pid } = await nextMessage<ServerMessage, 'ready'>(server, 'ready', 60_000);
  progress(`scripted model server at ${url} (pid ${pid}); configurations: ${specs.map(s => `${s.label} (N = ${s.episodes})`).join(', ')}`);
  for (const spec of specs) {
    progress(`${spec.label}: C = ${fleetConcurrency(spec)}${spec.processes > 1 ? ` (${spec.processes} processes × ${spec.concurrency})` : ''}, L = ${spec.delayMs} ms, N = ${spec.episodes}, S = ${spec.steps}`);
    const a = await runConfiguration(spec, server, url, serverCpu);
    progress(`${spec.label}: ${a.overallPerS.toFixed(1)} rollouts/s of ${a.boundPerS.toFixed(1)} (${((a.overallPerS / a.boundPerS) * 100).toFixed(0)} %), steady ${a.steadyPerS.toFixed(1)}; check ${a.check.ok ? 'PASS' : 'FAIL'}`);
    results.push(a);
  }
} finally {
  if (server.exitCode === null && server.signalCode === null) {
    server.send({ type: 'exit' } satisfies ServerCommand);
    await Promise.race([exited(server), sleep(5_000)]);
    if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
  }
  admin.disconnect();
}
process.stdout.write(`${report(results, redisVersion, startedMs)}\n`);
if (!results.every(a => a.check.ok)) process.exitCode = 1;
