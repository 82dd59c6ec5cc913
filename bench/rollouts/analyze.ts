/**
 * The figures of one bench/rollouts.ts configuration, computed from what the run left behind:
 * the scripted server's request timings, the trajectories' start and wall times, the samples of
 * each fleet (worker) process, the sink process's CPU, and the orchestrator's machine / Redis CPU
 * samples. With several worker processes, CPU and memory are summed over them, operation timings
 * pooled, and event-loop figures listed per process (the "main thread" ELU is the busiest one's).
 */
import type { ProfileSummary } from './profile.js';
import { CHAT_REQUEST, median, quantile, type FleetSample, type MemoryProbe, type ServerRecord, type Timings } from './common.js';

export interface ConfigSpec {
  readonly label: string;
  /** Episodes in flight per process (ENVFLEET_ROLLOUT_CONCURRENCY); the fleet's C is concurrency × processes. */
  readonly concurrency: number;
  /** Worker processes sharing the run's queues (each with its own sandbox pool). */
  readonly processes: number;
  readonly delayMs: number;
  readonly episodes: number;
  readonly steps: number;
  readonly baseline: boolean;
  /** Diagnostic: a one-guest initial state (instead of the 65 KB hotel state) and a single one-line check. */
  readonly light: boolean;
}

export interface EpisodeSummary {
  readonly start: number;
  readonly end: number;
  readonly turns: number;
  readonly toolSteps: number;
  readonly modelCalls: number;
  readonly reason: string;
  readonly reward: number | null;
  readonly checksError: string | null;
}

export interface HostSample {
  readonly t: number;
  readonly machineBusyS: number;
  readonly redisCpuS: number;
  readonly selfCpuUs: number;
}

export interface CpuSample {
  readonly t: number;
  readonly cpuUs: number;
}

/** C of the whole fleet: episodes in flight per process × processes. */
export const fleetConcurrency = (spec: ConfigSpec) => spec.concurrency * spec.processes;

/** What one worker process of a configuration left behind. */
export interface FleetRun {
  readonly pid: number;
  readonly samples: readonly FleetSample[];
  readonly timings: Timings;
  readonly memory: readonly MemoryProbe[];
  /** Threads counted as the sandbox pool's (FleetSample.poolCpuUs). */
  readonly poolTids: number;
}

export interface RunRaw {
  readonly spec: ConfigSpec;
  readonly prefix: string;
  readonly tasksPerThread: number;
  readonly poolThreads: number;
  readonly fleetStartupMs: number;
  readonly warmupEpisodes: number;
  readonly warmupMs: number;
  /** Epoch ms just before submitRollouts, and when it returned. */
  readonly t0: number;
  readonly tSubmitted: number;
  /** First poll (every 50 ms) that saw every episode recorded; and the run's outstanding set empty (group job done). */
  readonly tEpisodesDone: number;
  readonly tRunDone: number;
  readonly finished: boolean;
  readonly episodes: readonly EpisodeSummary[];
  readonly requests: readonly ServerRecord[];
  /** One entry per worker process. */
  readonly fleets: readonly FleetRun[];
  /** Main-thread CPU profile of the (first) fleet process (with --profile). */
  readonly profile: ProfileSummary | null;
  /** The sink's main thread (--profile with a sink). */
  readonly sinkProfile?: ProfileSummary | null;
  readonly host: readonly HostSample[];
  /** CPU of the sink process (`envfleet sink --follow` on the run), from sample-start until it had written every trajectory; null without a sink. */
  readonly sinkCpu: readonly CpuSample[] | null;
  /** Trajectory lines in the sink's shard files; null without a sink. */
  readonly sinkLines: number | null;
  /** Trajectory ids of the run in Redis (its ids:trajectory index). */
  readonly trajectoryIds: number;
  readonly serverCpu: readonly CpuSample[];
  readonly funnel: Record<string, number>;
  readonly keysLeft: number;
  /** Calls per Redis command over the timed run (INFO commandstats after − before; a script's own commands under their names too). */
  readonly redisCommands: Readonly<Record<string, number>>;
}

export interface Window {
  readonly from: number;
  readonly to: number;
  /** How the window was chosen. */
  readonly how: string;
}

export interface OpStat {
  readonly name: string;
  readonly count: number;
  readonly median: number;
  readonly p99: number;
  readonly mean: number;
  /** Operations of this kind per episode. */
  readonly perEpisode: number;
}

export interface Analysis {
  readonly raw: RunRaw;
  readonly boundPerS: number;
  readonly wallS: number;
  readonly runWallS: number;
  readonly overallPerS: number;
  readonly window: Window;
  readonly windowS: number;
  /** Little's law in the steady window: mean episodes in flight ÷ mean episode wall time. */
  readonly steadyPerS: number;
  readonly steadyEnded: number;
  /** Episodes that finished in the steady window ÷ its length (biased for small C: episodes run in waves). */
  readonly steadyCountPerS: number;
  readonly modelInFlight: { readonly median: number; readonly max: number; readonly mean: number; readonly peakWholeRun: number };
  readonly episodesInFlight: { readonly median: number; readonly max: number };
  readonly serverTimeMs: { readonly median: number; readonly p99: number };
  readonly episodeWallMs: { readonly median: number; readonly p99: number; readonly max: number };
  /**
   * Where the gap to the bound is, as two factors whose product is achieved ÷ bound: the episodes' own time (the ideal
   * wall ÷ the wall if every wave took the mean episode wall and started at once, i.e. S × L ÷ mean episode wall) and
   * the waves (that wall ÷ the real one: the run's start, each wave's start spread, the last episodes' tail).
   */
  readonly gap: {
    readonly meanEpisodeWallMs: number;
    readonly episodeFactor: number;
    readonly wavesFactor: number;
    /** Submit → the first episode started; the first C episodes' starts, first → last. */
    readonly firstStartMs: number;
    readonly firstWaveSpreadMs: number;
    /**
     * The waves' loss as slot time: of the C slots × the wall, the shares no episode ran in — before each slot's
     * first episode (the first C starts: the submission, the first wave's spread), after each slot's last one (the
     * last C ends: the tail), and between one episode's end and the next one's start (the job's turnaround, a
     * paced start's wait). 1 − their sum is the waves factor (in flight never exceeds C, so each later start fills a
     * slot an end freed).
     */
    readonly idle: { readonly start: number; readonly between: number; readonly tail: number };
  };
  readonly requestsTotal: number;
  readonly requestsOk: number;
  readonly requestsOther: number;
  readonly check: { readonly ok: boolean; readonly lines: readonly string[] };
  readonly cpu: {
    /** All worker processes together (every figure of `cpu` is summed over them unless it says otherwise). */
    readonly fleetCores: number;
    readonly mainCores: number;
    /** Main-thread ELU of the busiest worker process, and of each. */
    readonly mainElu: number;
    readonly mainEluByProcess: readonly number[];
    /** The sandbox pool threads alone (the threads that appeared while each worker started); NaN if they could not be told apart. */
    readonly poolCores: number;
    readonly poolMsPerEpisode: number;
    /** Worker threads other than the main thread and the pool's (V8 platform and libuv helpers): other − pool. */
    readonly helperMsPerEpisode: number;
    /** The sink process (NaN without one). */
    readonly sinkCores: number;
    readonly sinkMsPerEpisode: number;
    /** Every fleet process: worker processes + sink. */
    readonly allMsPerEpisode: number;
    /** Fleet process minus its main thread: the sandbox pool threads and V8/libuv helper threads. */
    readonly otherThreadsCores: number;
    /** Time runnable but waiting for a CPU, per wall second (kernel run-queue delay): main thread, other threads of the fleet. */
    readonly mainRunDelay: number;
    readonly otherRunDelay: number;
    /** Share of the window the main thread spent in GC pauses, and the longest pause (ms). */
    readonly gcShare: number;
    readonly gcMaxMs: number;
    /** Every pool thread of every worker process; and grouped by process. */
    readonly poolElu: readonly number[];
    readonly poolEluByProcess: readonly (readonly number[])[];
    readonly serverCores: number;
    readonly redisCores: number;
    readonly selfCores: number;
    readonly machineCores: number;
    readonly otherCores: number;
    /** CPU over the whole timed run ÷ N episodes (or ÷ N × S model requests), ms: fleet process, its main thread, its other threads. */
    readonly fleetMsPerRequest: number;
    readonly fleetMsPerEpisode: number;
    readonly mainMsPerEpisode: number;
    readonly otherThreadsMsPerEpisode: number;
    /** Event-loop active time of the pool threads (wall time, CPU waits included) ÷ N. */
    readonly poolActiveMsPerEpisode: number;
    readonly serverMsPerRequest: number;
    readonly redisMsPerEpisode: number;
    readonly eldP50: number;
    readonly eldP99: number;
    readonly eldMax: number;
    readonly poolQueueMax: number;
  };
  /** Timed operations of the whole timed run. */
  readonly ops: readonly OpStat[];
  /** Mean wall time of all N episodes. */
  readonly meanWallMs: number;
  readonly memory: {
    readonly idle: MemoryProbe | null;
    readonly steady: MemoryProbe | null;
    readonly steadyRssMedian: number;
    readonly rssPerRolloutKb: number;
    readonly heapPerRolloutKb: number;
    readonly wasmPerRolloutKb: number | null;
  };
}

/** Values of a step function "how many intervals contain t", sampled every `stepMs` in [from, to). */
export function inFlightSeries(intervals: readonly (readonly [number, number])[], from: number, to: number, stepMs: number): number[] {
  const starts = intervals.map(i => i[0]).sort((a, b) => a - b);
  const ends = intervals.map(i => i[1]).sort((a, b) => a - b);
  const out: number[] = [];
  let si = 0;
  let ei = 0;
  for (let t = from; t < to; t += stepMs) {
    while (si < starts.length && starts[si]! <= t) si += 1;
    while (ei < ends.length && ends[ei]! <= t) ei += 1;
    out.push(si - ei);
  }
  return out;
}

/** Rate of a cumulative counter between the samples closest to the window's ends (per ms of wall time). */
function rateIn<T extends { t: number }>(samples: readonly T[], w: Window, get: (s: T) => number): { delta: number; ms: number } {
  const inside = samples.filter(s => s.t >= w.from && s.t <= w.to);
  const a = inside[0];
  const b = inside.at(-1);
  if (!a || !b || b.t <= a.t) return { delta: NaN, ms: NaN };
  return { delta: get(b) - get(a), ms: b.t - a.t };
}

function gapOf(raw: RunRaw, walls: readonly number[], wallS: number): Analysis['gap'] {
  const { spec } = raw;
  const c = fleetConcurrency(spec);
  const meanEpisodeWallMs = walls.length ? walls.reduce((a, b) => a + b, 0) / walls.length : NaN;
  const starts = raw.episodes.map(e => e.start).sort((a, b) => a - b);
  const firstWave = starts.slice(0, c);
  const ends = raw.episodes.map(e => e.end).sort((a, b) => a - b);
  const slotMs = c * wallS * 1000;
  const start = firstWave.reduce((a, t) => a + (t - raw.t0), 0) / slotMs;
  const tail = ends.slice(-c).reduce((a, t) => a + (raw.tEpisodesDone - t), 0) / slotMs;
  const busy = walls.reduce((a, b) => a + b, 0) / slotMs;
  return {
    meanEpisodeWallMs,
    episodeFactor: (spec.steps * spec.delayMs) / meanEpisodeWallMs,
    // Waves of the episodes recorded (as achieved ÷ bound counts them), not of those asked for: the product of the two
    // factors is then achieved ÷ bound.
    wavesFactor: ((walls.length / c) * meanEpisodeWallMs) / (wallS * 1000),
    firstStartMs: (starts[0] ?? NaN) - raw.t0,
    firstWaveSpreadMs: (firstWave.at(-1) ?? NaN) - (firstWave[0] ?? NaN),
    idle: { start, tail, between: 1 - busy - start - tail },
  };
}

export function analyse(raw: RunRaw): Analysis {
  const { spec } = raw;
  const boundPerS = fleetConcurrency(spec) / ((spec.steps * spec.delayMs) / 1000);
  const wallS = (raw.tEpisodesDone - raw.t0) / 1000;
  const runWallS = (raw.tRunDone - raw.t0) / 1000;
  const eps = raw.episodes;

  // Steady state: from the first episode's end (the pipeline is full) to the last episode's start
  // (the queue is empty from then on and the number in flight falls).
  const firstEnd = Math.min(...eps.map(e => e.end));
  const lastStart = Math.max(...eps.map(e => e.start));
  const window: Window =
    lastStart - firstEnd >= 500
      ? { from: firstEnd, to: lastStart, how: 'first episode finished → last episode started' }
      : { from: raw.t0, to: raw.tEpisodesDone, how: 'whole run (the steady phase was shorter than 0.5 s)' };
  const windowMs = window.to - window.from;
  const endedIn = eps.filter(e => e.end > window.from && e.end <= window.to);
  const steadyEnded = endedIn.length;

  const policy = raw.requests.filter(r => r[4] === CHAT_REQUEST && !(r[3] ?? '').startsWith('warm-'));
  // Anything but a chat request, warm-up included: the gateway's outage probe (`GET /v1/models`) follows a request that
  // failed on its connection, and the episode then ran again (its earlier turns from the response cache).
  const notChat: Record<string, number> = {};
  for (const r of raw.requests) if (r[4] !== CHAT_REQUEST) notChat[r[4]] = (notChat[r[4]] ?? 0) + 1;
  const intervals = policy.map(r => [r[0], r[1]] as const);
  const modelSeries = inFlightSeries(intervals, window.from, window.to, 10);
  const wholeSeries = inFlightSeries(intervals, raw.t0, raw.tEpisodesDone, 10);
  const epSeries = inFlightSeries(eps.map(e => [e.start, e.end] as const), window.from, window.to, 10);
  const serverTimes = policy.filter(r => r[2] === 200).map(r => r[1] - r[0]).sort((a, b) => a - b);
  const walls = eps.map(e => e.end - e.start).sort((a, b) => a - b);
  // Throughput in the steady window by Little's law (mean episodes in flight ÷ mean episode wall
  // time): counting the episodes that end inside the window is biased when C is small and the
  // episodes run in synchronised waves.
  const meanWallMs = (endedIn.length ? endedIn : eps).reduce((a, e) => a + e.end - e.start, 0) / Math.max(1, (endedIn.length ? endedIn : eps).length);
  const meanEpisodesInFlight = epSeries.reduce((a, b) => a + b, 0) / Math.max(1, epSeries.length);
  const steadyPerS = meanEpisodesInFlight / (meanWallMs / 1000);

  // Checks: every request answered, exactly S per episode, every episode S turns and finished by the agent.
  const requestsOk = policy.filter(r => r[2] === 200).length;
  const lines: string[] = [];
  const expected = spec.episodes * spec.steps;
  lines.push(`model requests answered: ${requestsOk} (expected N × S = ${spec.episodes} × ${spec.steps} = ${expected}); other statuses: ${policy.length - requestsOk}`);
  const perRule: Record<string, number> = {};
  for (const r of policy) perRule[r[3] ?? 'none'] = (perRule[r[3] ?? 'none'] ?? 0) + 1;
  const rulesOk = Object.keys(perRule).length === spec.steps && Object.values(perRule).every(n => n === spec.episodes);
  lines.push(`requests per policy rule: ${Object.entries(perRule).sort().map(([k, n]) => `${k} ${n}`).join(', ')}`);
  const wrongTurns = eps.filter(e => e.turns !== spec.steps || e.toolSteps !== spec.steps - 1 || e.modelCalls !== spec.steps).length;
  const reasons: Record<string, number> = {};
  for (const e of eps) reasons[e.reason] = (reasons[e.reason] ?? 0) + 1;
  const rewards: Record<string, number> = {};
  for (const e of eps) rewards[String(e.reward)] = (rewards[String(e.reward)] ?? 0) + 1;
  lines.push(`trajectories: ${eps.length} of ${spec.episodes}; with exactly ${spec.steps} turns, ${spec.steps - 1} tool steps and ${spec.steps} model calls: ${eps.length - wrongTurns}; terminations ${JSON.stringify(reasons)}; rewards ${JSON.stringify(rewards)}`);
  lines.push(`trajectory ids in Redis: ${raw.trajectoryIds} of ${spec.episodes}` + (raw.sinkLines === null ? ' (no sink)' : `; lines the sink wrote: ${raw.sinkLines}`));
  const sinkOk = raw.sinkLines === null || raw.sinkLines === spec.episodes;
  // Which process ran how many episodes: its model calls ÷ S (every call of a timed-run episode goes through its gateway).
  const perProcess = raw.fleets.map(run => (run.timings['model call']?.length ?? 0) / spec.steps);
  const everyProcessWorked = perProcess.every(n => n > 0);
  lines.push(`episodes per worker process (its model calls ÷ S): ${perProcess.map(n => n.toFixed(0)).join(' + ')}; sandbox pool threads counted per process: ${raw.fleets.map(run => run.poolTids).join(' + ')}`);
  // Every call through a worker's gateway, answered from the cache or not: more than N × S means an episode ran again.
  const gatewayCalls = raw.fleets.reduce((a, run) => a + (run.timings['model call']?.length ?? 0), 0);
  lines.push(`model calls through the workers' gateways: ${gatewayCalls} (expected N × S = ${expected}; more: an episode ran again after a failed call)`);
  lines.push(`requests other than chat completions: ${Object.keys(notChat).length ? Object.entries(notChat).map(([k, n]) => `${k} ${n}`).join(', ') + ' (a GET /v1/models is the gateway\'s outage probe after a request failed on its connection)' : 'none'}`);
  const ok = raw.finished && requestsOk === expected && policy.length === expected && rulesOk && eps.length === spec.episodes && wrongTurns === 0 && reasons['agent-finished'] === spec.episodes && raw.keysLeft === 0 &&
    raw.trajectoryIds === spec.episodes && sinkOk && everyProcessWorked &&
    gatewayCalls === expected && Object.keys(notChat).length === 0;

  // CPU in the window, summed over the worker processes.
  const fleets = raw.fleets;
  const sumOver = (f: (run: FleetRun) => number) => fleets.reduce((a, run) => a + f(run), 0);
  const rateSum = (w: Window, get: (s: FleetSample) => number) => {
    const parts = fleets.map(run => rateIn(run.samples, w, get));
    return { delta: parts.reduce((a, r) => a + r.delta / r.ms, 0), ms: 1 };
  };
  const fleetCpu = rateSum(window, s => s.cpuUs);
  const mainCpu = rateSum(window, s => s.mainCpuUs);
  const poolCpu = rateSum(window, s => s.poolCpuUs);
  const mainEluByProcess = fleets.map(run => {
    const r = rateIn(run.samples, window, s => s.mainActiveMs);
    return r.delta / r.ms;
  });
  const threadIdsOf = (run: FleetRun) => [...new Set(run.samples.flatMap(s => Object.keys(s.poolActiveMs)))];
  const poolEluByProcess = fleets.map(run => threadIdsOf(run).map(id => {
    const r = rateIn(run.samples.filter(s => id in s.poolActiveMs), window, s => s.poolActiveMs[id] ?? 0);
    return r.delta / r.ms;
  }));
  const server = rateIn(raw.serverCpu, window, s => s.cpuUs);
  const machine = rateIn(raw.host, window, s => s.machineBusyS * 1e6);
  const redis = rateIn(raw.host, window, s => s.redisCpuS * 1e6);
  const self = rateIn(raw.host, window, s => s.selfCpuUs);
  const sink = raw.sinkCpu ? rateIn(raw.sinkCpu, window, s => s.cpuUs) : { delta: NaN, ms: NaN };
  const cores = (r: { delta: number; ms: number }) => r.delta / 1000 / r.ms;
  const fleetCores = cores(fleetCpu);
  const serverCores = cores(server);
  const redisCores = cores(redis);
  const selfCores = cores(self);
  const machineCores = cores(machine);
  const sinkCores = raw.sinkCpu ? cores(sink) : NaN;
  const fleetInWindow = fleets.flatMap(run => run.samples.filter(s => s.t >= window.from && s.t <= window.to));
  // CPU per episode over the whole timed run (from the submission to the run's end, the group job
  // included), so that it does not depend on how the steady window is chosen.
  const wholeOf = (run: FleetRun): Window => ({ from: run.samples[0]?.t ?? raw.t0, to: run.samples.at(-1)?.t ?? raw.tRunDone, how: 'whole timed run' });
  const n = Math.max(1, eps.length);
  const wholeFleet = sumOver(run => rateIn(run.samples, wholeOf(run), s => s.cpuUs).delta) / 1000;
  const wholeMain = sumOver(run => rateIn(run.samples, wholeOf(run), s => s.mainCpuUs).delta) / 1000;
  const wholePool = sumOver(run => rateIn(run.samples, wholeOf(run), s => s.poolCpuUs).delta) / 1000;
  const wholePoolActive = sumOver(run => threadIdsOf(run).reduce((sum, id) => sum + rateIn(run.samples.filter(s => id in s.poolActiveMs), wholeOf(run), s => s.poolActiveMs[id] ?? 0).delta, 0));
  const whole: Window = { from: Math.min(...fleets.map(run => wholeOf(run).from)), to: Math.max(...fleets.map(run => wholeOf(run).to)), how: 'whole timed run' };
  const wholeServer = rateIn(raw.serverCpu, whole, s => s.cpuUs).delta / 1000;
  const wholeRedis = rateIn(raw.host, whole, s => s.redisCpuS * 1e6).delta / 1000;
  // The sink: from sample-start until it had written the last trajectory (its own first and last samples).
  const sinkFirst = raw.sinkCpu?.find(s => Number.isFinite(s.cpuUs));
  const sinkLast = raw.sinkCpu?.findLast(s => Number.isFinite(s.cpuUs));
  const wholeSink = sinkFirst && sinkLast ? (sinkLast.cpuUs - sinkFirst.cpuUs) / 1000 : NaN;

  // Over the whole timed run (every operation belongs to one of its N episodes), so that the
  // per-episode sums add up to the mean episode wall time.
  const timings: Record<string, number[]> = {};
  for (const run of fleets) for (const [name, list] of Object.entries(run.timings)) (timings[name] ??= []).push(...list.map(([, d]) => d));
  const ops: OpStat[] = Object.entries(timings)
    .filter(([name]) => name !== 'gc')
    .map(([name, list]) => {
      const ms = [...list].sort((a, b) => a - b);
      return { name, count: ms.length, median: quantile(ms, 0.5), p99: quantile(ms, 0.99), mean: ms.reduce((a, b) => a + b, 0) / Math.max(1, ms.length), perEpisode: ms.length / Math.max(1, eps.length) };
    });
  const meanWallAllMs = eps.reduce((a, e) => a + e.end - e.start, 0) / Math.max(1, eps.length);
  // GC pauses per process (each has its own main thread): the largest share, the longest pause.
  const gcInByProcess = fleets.map(run => (run.timings['gc'] ?? []).filter(([end]) => end > window.from && end <= window.to).map(([, d]) => d));

  // Memory: RSS in the window against the idle process after warm-up, summed over the processes.
  const sumProbes = (label: string): MemoryProbe | null => {
    const probes = fleets.map(run => run.memory.find(m => m.label === label) ?? null);
    if (!probes.length || probes.some(p => p === null)) return null;
    const ps = probes as MemoryProbe[];
    const total = (f: (p: MemoryProbe) => number) => ps.reduce((a, p) => a + f(p), 0);
    return {
      label,
      t: Math.max(...ps.map(p => p.t)),
      rss: total(p => p.rss),
      heapUsed: total(p => p.heapUsed),
      external: total(p => p.external),
      arrayBuffers: total(p => p.arrayBuffers),
      wasmRss: ps.some(p => p.wasmRss === null) ? null : total(p => p.wasmRss ?? 0),
      wasmMemories: total(p => p.wasmMemories),
      smapsMs: Math.max(...ps.map(p => p.smapsMs)),
    };
  };
  const idle = sumProbes('idle');
  const steady = sumProbes('steady');
  const inWindow = (run: FleetRun) => run.samples.filter(s => s.t >= window.from && s.t <= window.to);
  const steadyRssMedian = sumOver(run => median(inWindow(run).map(s => s.rss)));
  const steadyHeapMedian = sumOver(run => median(inWindow(run).map(s => s.heapUsed)));
  const kbPer = (bytes: number) => bytes / 1024 / fleetConcurrency(spec);

  return {
    raw,
    boundPerS,
    wallS,
    runWallS,
    overallPerS: eps.length / wallS,
    window,
    windowS: windowMs / 1000,
    steadyPerS,
    steadyEnded,
    steadyCountPerS: steadyEnded / (windowMs / 1000),
    modelInFlight: {
      median: median(modelSeries),
      max: Math.max(0, ...modelSeries),
      mean: modelSeries.reduce((a, b) => a + b, 0) / Math.max(1, modelSeries.length),
      peakWholeRun: Math.max(0, ...wholeSeries),
    },
    episodesInFlight: { median: median(epSeries), max: Math.max(0, ...epSeries) },
    serverTimeMs: { median: quantile(serverTimes, 0.5), p99: quantile(serverTimes, 0.99) },
    episodeWallMs: { median: quantile(walls, 0.5), p99: quantile(walls, 0.99), max: walls.at(-1) ?? NaN },
    gap: gapOf(raw, walls, wallS),
    requestsTotal: policy.length,
    requestsOk,
    requestsOther: policy.length - requestsOk,
    check: { ok, lines },
    cpu: {
      fleetCores,
      mainCores: cores(mainCpu),
      mainElu: Math.max(...mainEluByProcess),
      mainEluByProcess,
      otherThreadsCores: fleetCores - cores(mainCpu),
      poolCores: cores(poolCpu),
      poolMsPerEpisode: wholePool / n,
      helperMsPerEpisode: (wholeFleet - wholeMain - wholePool) / n,
      sinkCores,
      sinkMsPerEpisode: wholeSink / n,
      allMsPerEpisode: (wholeFleet + (raw.sinkCpu ? wholeSink : 0)) / n,
      mainRunDelay: cores(rateSum(window, s => s.mainRunDelayUs)),
      otherRunDelay: cores(rateSum(window, s => s.otherRunDelayUs)),
      gcShare: Math.max(0, ...gcInByProcess.map(gc => gc.reduce((a, b) => a + b, 0) / windowMs)),
      gcMaxMs: Math.max(0, ...gcInByProcess.flat()),
      poolElu: poolEluByProcess.flat(),
      poolEluByProcess,
      serverCores,
      redisCores,
      selfCores,
      machineCores,
      otherCores: machineCores - fleetCores - serverCores - redisCores - selfCores - (Number.isFinite(sinkCores) ? sinkCores : 0),
      fleetMsPerRequest: wholeFleet / (n * spec.steps),
      fleetMsPerEpisode: wholeFleet / n,
      mainMsPerEpisode: wholeMain / n,
      otherThreadsMsPerEpisode: (wholeFleet - wholeMain) / n,
      poolActiveMsPerEpisode: wholePoolActive / n,
      serverMsPerRequest: wholeServer / (n * spec.steps),
      redisMsPerEpisode: wholeRedis / n,
      eldP50: median(fleetInWindow.map(s => s.eldP50)),
      eldP99: Math.max(0, ...fleetInWindow.map(s => s.eldP99)),
      eldMax: Math.max(0, ...fleetInWindow.map(s => s.eldMax)),
      poolQueueMax: Math.max(0, ...fleetInWindow.map(s => s.poolQueue)),
    },
    ops,
    meanWallMs: meanWallAllMs,
    memory: {
      idle,
      steady,
      steadyRssMedian,
      rssPerRolloutKb: idle ? kbPer(steadyRssMedian - idle.rss) : NaN,
      heapPerRolloutKb: idle ? kbPer(steadyHeapMedian - idle.heapUsed) : NaN,
      wasmPerRolloutKb: idle?.wasmRss != null && steady?.wasmRss != null ? kbPer(steady.wasmRss - idle.wasmRss) : null,
    },
  };
}
