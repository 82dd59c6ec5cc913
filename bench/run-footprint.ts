/**
 * What a run costs to keep and to watch, through the same code the fleet runs:
 *   1. the demo pipeline (synthesis, scenarios, rollouts with the sink) on real workers and the scripted
 *      model server; then the Redis bytes per environment, scenario and trajectory as `envfleet status`
 *      shows them (the run's byte counters), next to what Redis itself reports (MEMORY USAGE summed
 *      over every key of the run, by family);
 *   2. `envfleet status` on runs of 1,000, 10,000 and 100,000 environments and outstanding jobs:
 *      Redis commands sent and wall time per call.
 *
 *   node --import tsx bench/run-footprint.ts [--sizes 1000,10000,100000]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { loadConfig } from '../config/index.js';
import { pendingKey } from '../queues/enqueuer.js';
import { waitForRun } from '../queues/run-jobs.js';
import { runStatus, type StatusDeps } from '../queues/run-status.js';
import { runOptionsFrom, submitRollouts, submitScenarios, submitSynthesis } from '../queues/submit.js';
import { runSink } from '../src/datasets/sink.js';
import { createRedisLedger } from '../src/llm/redis-ledger.js';
import { loadModelScript, startModelServer } from '../src/model-server/index.js';
import { createRedisRunControl } from '../src/runs/control.js';
import { runKey } from '../src/runs/keys.js';
import { createRedisRunStore } from '../src/runs/store.js';
import { fixturesPath } from '../src/util/package-root.js';
import { startWorkerProcess } from '../workers/main.js';
import { benchArgs } from './args.js';
import { deletePrefix } from './redis-keys.js';

const args = benchArgs(import.meta.url, { values: ['sizes'] });
const SIZES = args.ints('sizes', '1000,10000,100000');
const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const prefix = `envfleet-bench-footprint-${process.pid}`;
const kb = (n: number | null) => (n === null ? '–' : `${(n / 1000).toFixed(1)} KB`);

const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
let sent = 0;
const counted = new Redis(REDIS_URL);
const send = counted.sendCommand.bind(counted);
counted.sendCommand = (...a: Parameters<Redis['sendCommand']>) => ((sent += 1), send(...a));

try {
  // ---------------------------------------------------------------- 1. bytes per item
  const server = await startModelServer({ script: await loadModelScript(fixturesPath('demo')) });
  const config = loadConfig({}, { overrides: { REDIS_URL, OPENAI_BASE_URL: server.url, ENVFLEET_REDIS_PREFIX: prefix, LOG_LEVEL: 'silent' } });
  const running = await startWorkerProcess(config, pino({ level: 'silent' }));
  const dir = await mkdtemp(join(tmpdir(), 'envfleet-footprint-'));
  const store = createRedisRunStore(redis, prefix);
  const deps: StatusDeps = { store: createRedisRunStore(counted, prefix), ledger: createRedisLedger(counted, prefix), control: createRedisRunControl(counted, prefix) };
  try {
    await submitSynthesis(config, redis, { runId: 'demo', tasks: fixturesPath('demo', 'source-tasks.jsonl'), probeSteps: 8 });
    await waitForRun(store, 'demo', () => undefined);
    await submitScenarios(config, redis, { runId: 'demo', perEnv: 3 });
    await waitForRun(store, 'demo', () => undefined);
    await submitRollouts(config, redis, { runId: 'demo', samples: 2, modes: ['non-conversational', 'conversational'] });
    const sink = runSink({ redis, prefix, store, runId: 'demo', dir });
    await waitForRun(store, 'demo', () => undefined);
    await sink;
    const status = (await runStatus(deps, 'demo'))!;
    // What Redis itself holds for the run, by the same families.
    const root = runKey(prefix, 'demo');
    const family = (key: string) => {
      const rest = key.slice(root.length + 1);
      if (/^doc:(task|judge|topic|dedup|env|method):|^steps:|^probe-state:/.test(rest)) return 'environment';
      if (/^doc:scenario/.test(rest)) return 'scenario';
      if (/^doc:(trajectory|group|rollout-config):/.test(rest)) return 'trajectory';
      if (rest.startsWith('cache:')) return 'cache';
      return 'other';
    };
    const memory: Record<string, number> = {};
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${root}:*`, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) memory[family(key)] = (memory[family(key)] ?? 0) + Number(await redis.memory('USAGE', key));
    } while (cursor !== '0');
    const items = { environment: Object.values(status.environments).reduce((a, b) => a + b, 0), scenario: Object.values(status.scenarios).reduce((a, b) => a + b, 0), trajectory: status.trajectories.count };
    console.log(`## Redis bytes per item (the demo run: ${items.environment} environments, ${items.scenario} scenarios, ${items.trajectory} trajectories, sink on)`);
    console.log('| item | `envfleet status` (the run\'s byte counters, incl. its cached model responses) | Redis MEMORY USAGE of its documents and steps (no cache) |');
    console.log('|---|---|---|');
    for (const f of ['environment', 'scenario', 'trajectory'] as const) console.log(`| ${f} | ${kb(status.redis.perItem[f])} | ${kb(items[f] ? (memory[f] ?? 0) / items[f] : null)} |`);
    console.log(`| whole run | ${kb(status.redis.bytes)} counted | ${kb(Object.values(memory).reduce((a, b) => a + b, 0))} in Redis (cached responses ${kb(memory['cache'] ?? 0)}, other keys ${kb(memory['other'] ?? 0)}) |`);
  } finally {
    await running.stop();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }

  // ---------------------------------------------------------------- 2. status at size
  console.log('\n## `envfleet status` on a run of N environments with N outstanding jobs');
  console.log('| N | Redis commands per call | wall time per call (median of 5) |');
  console.log('|---|---|---|');
  for (const n of SIZES) {
    const runId = `size-${n}`;
    await store.createRun({ id: runId, createdAt: new Date().toISOString(), input: 'descriptions', options: runOptionsFrom(config) });
    for (let i = 0; i < n; i += 500) {
      const batch = Array.from({ length: Math.min(500, n - i) }, (_, k) => i + k);
      await Promise.all(batch.map(j => store.putDoc(runId, 'env', `env-${j}`, { id: `env-${j}`, runId, status: j % 3 ? 'building' : 'kept', description: { summary: `domain ${j}`, introduction: 'x' }, failure: null, lineage: { runId, sourceTaskId: null, models: {}, prompts: {}, createdAt: '' } })));
      await store.addPending(runId, batch.map(j => pendingKey('skeleton.state', `job-${j}`)));
    }
    const times: number[] = [];
    let commands = 0;
    for (let k = 0; k < 5; k += 1) {
      const before = sent;
      const t = performance.now();
      await runStatus(deps, runId);
      times.push(performance.now() - t);
      commands = sent - before;
    }
    times.sort((a, b) => a - b);
    console.log(`| ${n.toLocaleString('en')} | ${commands} | ${times[2]!.toFixed(1)} ms |`);
  }
  console.log(`\n- command: \`node --import tsx bench/run-footprint.ts${args.raw.length ? ` ${args.raw.join(' ')}` : ''}\`, ${new Date().toISOString()}, Redis ${REDIS_URL}`);
} finally {
  await deletePrefix(redis, prefix);
  redis.disconnect();
  counted.disconnect();
}
process.exit(0);
