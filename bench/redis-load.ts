/**
 * What one Redis carries for the fleet, measured on a private redis-server (nothing else talks to it):
 *   1. redis-benchmark against it: plain commands per second of its one core, without and with pipelining;
 *   2. the demo run on real in-process workers and the scripted model server, phase by phase
 *      (synthesis, scenarios, rollouts with the sink): Redis commands (INFO commandstats, with the
 *      microseconds Redis spent in each), Redis main-thread CPU (INFO cpu), bytes over the wire
 *      (INFO stats) and memory kept (INFO memory), per synthesized environment and per episode;
 *   3. the memory of episodes in flight: rollout jobs submitted with no worker running, per job;
 *   4. what that gives: episodes/s and environments/s one Redis core carries, and episodes in flight
 *      per GB of Redis memory.
 * With --scripts (one Redis only), the rollouts phase also logs every command (SLOWLOG at 0 µs) and reports the
 * time Redis spent in each script by its name (envfleet's own and BullMQ's, known by their SHA-1), per episode;
 * the logging itself costs Redis some CPU, so the phase's other figures of such a run are not comparable.
 * With --cluster, phase 2 runs on a local 3-master Redis Cluster instead (ENVFLEET_REDIS_CLUSTER_NODES)
 * and reports how the commands and the CPU of each phase fall on each master (no redis-benchmark, no
 * phase 3).
 *
 *   node --import tsx bench/redis-load.ts [--samples 8] [--inflight 2000] [--cluster | --scripts]
 *
 * --samples: rollouts per scenario and mode in phase 2 (the demo has a few scenarios, so more samples
 * give more episodes to average over); --inflight: how many rollout jobs phase 3 leaves waiting.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { freePort } from '../cli/private-redis.js';
import { loadConfig } from '../config/index.js';
import { waitForRun } from '../queues/run-jobs.js';
import { submitRollouts, submitScenarios, submitSynthesis } from '../queues/submit.js';
import { runSink } from '../src/datasets/sink.js';
import { loadModelScript, startModelServer } from '../src/model-server/index.js';
import { createRedisConnection, isCluster, waitForRedis, type RedisTarget } from '../src/redis/connection.js';
import { scriptDefinitions } from '../src/redis/scripts.js';
import { createRedisRunStore } from '../src/runs/store.js';
import { fixturesPath } from '../src/util/package-root.js';
import { startWorkerProcess, type RunningWorker } from '../workers/main.js';
import { startLocalCluster } from '../test/helpers/redis-cluster.js';
import { benchArgs } from './args.js';
import { commandStats } from './redis-keys.js';

const run = promisify(execFile);
const args = benchArgs(import.meta.url, { values: ['samples', 'inflight'], booleans: ['cluster', 'scripts'] });
const CLUSTER = args.flag('cluster');
const SCRIPTS = args.flag('scripts') && !CLUSTER;
const SAMPLES = args.int('samples', 8);
const INFLIGHT = args.int('inflight', 2_000);

const loadAtStart = loadavg();
const field = (info: string, name: string): number => Number(new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1] ?? NaN);

// ------------------------------------------------------------------ a private Redis, or a private cluster
const port = await freePort();
const dir = await mkdtemp(join(tmpdir(), 'envfleet-redis-load-'));
const url = `redis://127.0.0.1:${port}`;
let target: RedisTarget = { url, clusterNodes: [] };
let stopServers: () => Promise<void>;
if (CLUSTER) {
  const cluster = await startLocalCluster(3);
  target = { url: 'redis://127.0.0.1:6379', clusterNodes: cluster.nodes };
  stopServers = () => cluster.stop();
} else {
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction'], { stdio: 'ignore' });
  stopServers = async () => {
    server.kill('SIGTERM');
    await new Promise(resolve => server.once('exit', resolve));
  };
}
const redis = createRedisConnection(target, 'worker');
for (let i = 0; ; i += 1) {
  try {
    await waitForRedis(redis, target, 500);
    break;
  } catch (err) {
    if (i > 50) throw err;
    await new Promise(resolve => setTimeout(resolve, 100));
  }
}
/** The servers to read INFO from: the one Redis, or every master. */
const servers = isCluster(redis) ? redis.nodes('master') : [redis];
const version = (await servers[0]!.info('server')).match(/redis_version:(\S+)/)?.[1];
const flushAll = async () => {
  for (const s of servers) await s.flushall();
};

try {
  // ---------------------------------------------------------------- 1. redis-benchmark
  const bench = async (extra: string[]) => {
    const { stdout } = await run('redis-benchmark', ['-p', String(port), '-q', '-n', '200000', '-c', '50', '-t', 'set,get,incr,lpush,hset,zadd', ...extra]);
    const rates: Record<string, number> = {};
    for (const m of stdout.matchAll(/([A-Z_]+)[^:\n]*: ([\d.]+) requests per second/g)) rates[m[1]!] = Number(m[2]);
    return rates;
  };
  const plain = CLUSTER ? {} : await bench([]);
  const piped = CLUSTER ? {} : await bench(['-P', '16']);
  // A Lua script costs a call of its own on top of its commands: measured with a script of one HINCRBY.
  await flushAll();
  const evalOut = CLUSTER ? '' : (await run('redis-benchmark', ['-p', String(port), '-q', '-n', '200000', '-c', '50', 'EVAL', "return redis.call('HINCRBY', KEYS[1], 'f', 1)", '1', 'bench:h'])).stdout;
  const evalRate = Number(/([\d.]+) requests per second/.exec(evalOut)?.[1] ?? NaN);
  const median = (o: Record<string, number>) => {
    const v = Object.values(o).sort((a, b) => a - b);
    return v[Math.floor(v.length / 2)] ?? NaN;
  };
  await flushAll();

  // ---------------------------------------------------------------- 2. the demo, phase by phase
  const model = await startModelServer({ script: await loadModelScript(fixturesPath('demo')) });
  const prefix = 'envfleet-load';
  const config = loadConfig({}, { overrides: { REDIS_URL: target.url, ...(CLUSTER ? { ENVFLEET_REDIS_CLUSTER_NODES: target.clusterNodes.join(',') } : {}), OPENAI_BASE_URL: model.url, ENVFLEET_REDIS_PREFIX: prefix, LOG_LEVEL: 'silent' } });
  const store = createRedisRunStore(redis, prefix);
  let workers: RunningWorker | null = await startWorkerProcess(config, pino({ level: 'silent' }));
  const out = await mkdtemp(join(tmpdir(), 'envfleet-load-sink-'));

  /**
   * Time per command from SLOWLOG entries ([id, time, µs, [command, ...args], ...]), a script (EVALSHA) by its name:
   * envfleet's by their label, BullMQ's by the name in its scripts' index (the SHA-1 of the text ioredis sends).
   */
  function scriptTimes(entries: unknown[][]): { name: string; calls: number; usec: number }[] {
    const sha1 = (text: string) => createHash('sha1').update(text).digest('hex');
    const names = new Map<string, string>();
    for (const [command, { lua }] of Object.entries(scriptDefinitions())) names.set(sha1(lua), command.replace(/^envfleet_/, '').replace(/_[0-9a-f]{12}(_large)?$/, ''));
    const bull = createRequire(import.meta.url)('bullmq/dist/cjs/scripts/index.js') as Record<string, { name?: string; content?: string }>;
    for (const script of Object.values(bull)) if (script?.name && script.content) names.set(sha1(script.content), `bullmq ${script.name}`);
    const by = new Map<string, { name: string; calls: number; usec: number }>();
    for (const entry of entries) {
      const argv = entry[3] as string[];
      const command = String(argv[0]).toLowerCase();
      if (['slowlog', 'config', 'info'].includes(command)) continue;
      const name = command === 'evalsha' ? (names.get(String(argv[1])) ?? `script ${String(argv[1]).slice(0, 12)}`) : command === 'eval' ? 'eval (text)' : command;
      const t = by.get(name) ?? { name, calls: 0, usec: 0 };
      t.calls += 1;
      t.usec += Number(entry[2]);
      by.set(name, t);
    }
    return [...by.values()].sort((a, b) => b.usec - a.usec);
  }

  interface Phase {
    readonly calls: number;
    readonly usec: number;
    readonly byCommand: Record<string, { calls: number; usec: number }>;
    readonly cpuMain: number;
    readonly netIn: number;
    readonly netOut: number;
    readonly memory: number;
    readonly seconds: number;
    /** Commands and main-thread CPU seconds on each server (one entry without a cluster). */
    readonly perServer: { calls: number; cpu: number }[];
  }
  const infos = (section: string) => Promise.all(servers.map(s => s.info(section)));
  const sum = (texts: string[], name: string) => texts.reduce((a, t) => a + field(t, name), 0);
  /**
   * Memory the data takes: used_memory without the clients' buffers (mem_clients_normal), which move with the
   * connections open at the moment. Other memory moves too (allocator, stream trimming): with a few hundred
   * waiting jobs the in-flight figure still came out negative, so a capacity is derived only from a positive one.
   */
  const dataMemory = (texts: string[]) => sum(texts, 'used_memory') - sum(texts, 'mem_clients_normal');
  const measure = async (work: () => Promise<void>): Promise<Phase> => {
    const memBefore = dataMemory(await infos('memory'));
    for (const s of servers) await s.config('RESETSTAT');
    const cpu0 = await infos('cpu');
    const t0 = performance.now();
    await work();
    const seconds = (performance.now() - t0) / 1000;
    const [stats, cpu1, commandstats, memory] = await Promise.all([infos('stats'), infos('cpu'), infos('commandstats'), infos('memory')]);
    const byCommand: Record<string, { calls: number; usec: number }> = {};
    const perServer: { calls: number; cpu: number }[] = [];
    const cpuMain = (i: string) => field(i, 'used_cpu_user_main_thread') + field(i, 'used_cpu_sys_main_thread');
    commandstats.forEach((text, i) => {
      let calls = 0;
      for (const [name, stat] of commandStats(text)) {
        // This bench's own INFO/CONFIG/SLOWLOG calls (and the cluster client's CLUSTER SLOTS) are not the fleet's.
        // Redis 7 names a subcommand `command|sub` (config|set, slowlog|get): the command decides.
        if (['info', 'config', 'cluster', 'slowlog'].includes(name.split('|')[0]!)) continue;
        const c = (byCommand[name] ??= { calls: 0, usec: 0 });
        c.calls += stat.calls;
        c.usec += stat.usec;
        calls += stat.calls;
      }
      perServer.push({ calls, cpu: cpuMain(cpu1[i]!) - cpuMain(cpu0[i]!) });
    });
    return {
      calls: Object.values(byCommand).reduce((a, c) => a + c.calls, 0),
      usec: Object.values(byCommand).reduce((a, c) => a + c.usec, 0),
      byCommand,
      cpuMain: perServer.reduce((a, p) => a + p.cpu, 0),
      netIn: sum(stats, 'total_net_input_bytes'),
      netOut: sum(stats, 'total_net_output_bytes'),
      memory: dataMemory(memory) - memBefore,
      seconds,
      perServer,
    };
  };
  const wait = () => waitForRun(store, 'demo', () => undefined);

  const synthesis = await measure(async () => {
    await submitSynthesis(config, redis, { runId: 'demo', tasks: fixturesPath('demo', 'source-tasks.jsonl'), probeSteps: 8 });
    await wait();
  });
  const environments = (await store.listDocIds('demo', 'env')).length;
  const scenarios = await measure(async () => {
    await submitScenarios(config, redis, { runId: 'demo', perEnv: 3 });
    await wait();
  });
  const scenarioCount = (await store.listDocIds('demo', 'scenario')).length;
  let logged: { name: string; calls: number; usec: number }[] = [];
  const rollouts = await measure(async () => {
    if (SCRIPTS) {
      await redis.config('SET', 'slowlog-log-slower-than', '0');
      await redis.config('SET', 'slowlog-max-len', '1000000');
      await redis.slowlog('RESET');
    }
    await submitRollouts(config, redis, { runId: 'demo', samples: SAMPLES, modes: ['non-conversational', 'conversational'] });
    const sink = runSink({ redis, prefix, store, runId: 'demo', dir: out });
    await wait();
    await sink;
    if (SCRIPTS) {
      await redis.config('SET', 'slowlog-log-slower-than', '-1');
      logged = scriptTimes((await redis.slowlog('GET', '-1')) as unknown[][]);
      await redis.slowlog('RESET');
    }
  });
  const episodes = (await store.listDocIds('demo', 'trajectory')).length;

  if (CLUSTER) {
    await workers.stop();
    const share = (p: Phase) => p.perServer.map(x => `${((100 * x.calls) / p.calls).toFixed(0)} % of commands, ${(x.cpu * 1000).toFixed(0)} ms CPU`).join(' / ');
    console.log(`## The demo on a local 3-master Redis Cluster (${environments} environments, ${scenarioCount} scenarios, ${episodes} episodes): each master's share`);
    console.log('| phase | commands | master 1 / master 2 / master 3 |');
    console.log('|---|---|---|');
    for (const [name, p] of [['synthesis', synthesis], ['scenarios', scenarios], ['rollouts (sink on)', rollouts]] as const) console.log(`| ${name} | ${p.calls.toLocaleString('en')} | ${share(p)} |`);
    console.log(`\n- command: \`node --import tsx bench/redis-load.ts ${args.raw.join(' ')}\`, ${new Date().toISOString()}; Redis ${version} ×3 (cluster-enabled, no persistence), Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? '?'}, load average at the start ${loadAtStart.map(l => l.toFixed(2)).join(' ')}, at the end ${loadavg().map(l => l.toFixed(2)).join(' ')}`);
    await model.close();
    await rm(out, { recursive: true, force: true });
  } else {
    // ---------------------------------------------------------------- 3. episodes in flight
    await workers.stop();
    workers = null;
    const before = await store.pendingCount('demo');
    const inflightSamples = Math.max(1, Math.ceil(INFLIGHT / Math.max(1, 2 * (await store.statusCounts('demo', 'scenario'))['ready']!)));
    const waiting = await measure(async () => {
      await submitRollouts(config, redis, { runId: 'demo', samples: inflightSamples, modes: ['non-conversational', 'conversational'], policyVersion: 'in-flight' });
    });
    const waitingJobs = (await store.pendingCount('demo')) - before;

    // ---------------------------------------------------------------- report
    const per = (phase: Phase, n: number) => ({
      commands: phase.calls / n,
      usec: phase.usec / n,
      cpuMs: (phase.cpuMain * 1000) / n,
      wire: (phase.netIn + phase.netOut) / n,
      memory: phase.memory / n,
    });
    const env = per(synthesis, environments);
    const scen = per(scenarios, scenarioCount);
    const epi = per(rollouts, episodes);
    const kb = (n: number) => `${(n / 1000).toFixed(1)} KB`;
    /** The eight commands with the most calls or the most µs in a phase, per item. */
    const top = (phase: Phase, n: number, by: 'calls' | 'usec') =>
      Object.entries(phase.byCommand)
        .sort((a, b) => b[1][by] - a[1][by])
        .slice(0, 8)
        .map(([c, s]) => (by === 'calls' ? `${c} ${(s.calls / n).toFixed(1)}` : `${c} ${(s.usec / n).toFixed(0)} µs`))
        .join(', ');
    /** A capacity from a memory figure, or why there is none (a figure at or below zero is noise, not a capacity). */
    const perGb = (bytes: number) => (bytes > 0 ? `**${Math.round(1e9 / bytes).toLocaleString('en')}**` : `not measurable (the memory fell by ${kb(-bytes)} each; submit more with --inflight)`);
    const plainOps = median(plain);
    console.log(`## One Redis core (redis-benchmark, 50 clients, 200,000 requests each)`);
    console.log(`| | ${Object.keys(plain).join(' | ')} | EVAL (1 HINCRBY) |`);
    console.log(`|---|${Object.keys(plain).map(() => '---|').join('')}---|`);
    console.log(`| ops/s, no pipelining | ${Object.values(plain).map(v => Math.round(v).toLocaleString('en')).join(' | ')} | ${Math.round(evalRate).toLocaleString('en')} |`);
    console.log(`| ops/s, -P 16 | ${Object.values(piped).map(v => Math.round(v).toLocaleString('en')).join(' | ')} | |`);
    console.log(`\n## What the fleet sends (the demo: ${environments} environments, ${scenarioCount} scenarios, ${episodes} episodes)`);
    console.log('| per | Redis commands | µs in commands (commandstats: a script and its own commands both counted) | Redis main-thread CPU | bytes over the wire (in + out) | memory kept | wall time of the phase |');
    console.log('|---|---|---|---|---|---|---|');
    console.log(`| synthesized environment (synthesis phase) | ${env.commands.toFixed(0)} | ${env.usec.toFixed(0)} µs | ${env.cpuMs.toFixed(2)} ms | ${kb(env.wire)} | ${kb(env.memory)} | ${synthesis.seconds.toFixed(1)} s |`);
    console.log(`| scenario (scenarios phase) | ${scen.commands.toFixed(0)} | ${scen.usec.toFixed(0)} µs | ${scen.cpuMs.toFixed(2)} ms | ${kb(scen.wire)} | ${kb(scen.memory)} | ${scenarios.seconds.toFixed(1)} s |`);
    console.log(`| episode (rollouts phase, sink on) | ${epi.commands.toFixed(0)} | ${epi.usec.toFixed(0)} µs | ${epi.cpuMs.toFixed(2)} ms | ${kb(epi.wire)} | ${kb(epi.memory)} | ${rollouts.seconds.toFixed(1)} s |`);
    console.log(`\nMost frequent commands per environment: ${top(synthesis, environments, 'calls')}`);
    console.log(`Most frequent commands per episode: ${top(rollouts, episodes, 'calls')}`);
    console.log(`Where Redis's time goes per environment (commandstats: a script's µs include its own commands, which are also counted under their names): ${top(synthesis, environments, 'usec')}`);
    console.log(`Where Redis's time goes per episode: ${top(rollouts, episodes, 'usec')}`);
    if (SCRIPTS) {
      const total = logged.reduce((a, t) => a + t.usec, 0);
      console.log(`\n## Per episode, by command and script (SLOWLOG, every command of the rollouts phase: ${(total / episodes).toFixed(0)} µs per episode; a script's µs include its own commands, which are also listed)`);
      console.log('| command or script | calls | µs | share |');
      console.log('|---|---|---|---|');
      for (const t of logged.slice(0, 16)) console.log(`| ${t.name} | ${(t.calls / episodes).toFixed(1)} | ${(t.usec / episodes).toFixed(0)} | ${((100 * t.usec) / total).toFixed(0)} % |`);
    }
    console.log(`\n## Episodes in flight: ${waitingJobs} rollout jobs submitted with no worker running`);
    console.log(`| per waiting episode | Redis commands to submit | memory |`);
    console.log('|---|---|---|');
    console.log(`| | ${(waiting.calls / waitingJobs).toFixed(1)} | ${kb(waiting.memory / waitingJobs)} |`);
    const cpuEpisodesPerS = 1000 / epi.cpuMs;
    const callEpisodesPerS = plainOps / epi.commands;
    const cpuEnvPerS = 1000 / env.cpuMs;
    console.log(`\n## What one Redis carries (derived)`);
    console.log(`- episodes/s, from Redis main-thread CPU per episode (${epi.cpuMs.toFixed(2)} ms): **${Math.round(cpuEpisodesPerS).toLocaleString('en')}**`);
    console.log(`- episodes/s, from commands per episode (${epi.commands.toFixed(0)}) at the median plain redis-benchmark rate (${Math.round(plainOps).toLocaleString('en')} ops/s): **${Math.round(callEpisodesPerS).toLocaleString('en')}**`);
    console.log(`- synthesized environments/s, from Redis CPU per environment (${env.cpuMs.toFixed(1)} ms): **${cpuEnvPerS.toFixed(0)}**`);
    console.log(`- episodes in flight per GB of Redis memory (${kb(waiting.memory / waitingJobs)} each): ${perGb(waiting.memory / waitingJobs)}; episodes kept after they end (completed job kept 30 days + summary): ${kb(epi.memory)} each, ${perGb(epi.memory)} per GB`);
    console.log(
      `\n- command: \`node --import tsx bench/redis-load.ts${args.raw.length ? ` ${args.raw.join(' ')}` : ''}\`, ${new Date().toISOString()}; Redis ${version} (private, port ${port}, no persistence, noeviction), Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? '?'}, load average (1, 5, 15 min) at the start ${loadAtStart.map(l => l.toFixed(2)).join(' ')}, at the end ${loadavg()
        .map(l => l.toFixed(2))
        .join(' ')}`,
    );
    await model.close();
    await rm(out, { recursive: true, force: true });
  }
} finally {
  redis.disconnect();
  await stopServers();
  await rm(dir, { recursive: true, force: true });
}
process.exit(0);
