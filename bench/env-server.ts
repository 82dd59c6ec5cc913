/**
 * The environment server (`envfleet serve`, issue 13), measured in one run against a server started in
 * this process as `envfleet serve` starts it (`startServing`: the sandbox pool, the session registry, the
 * HTTP surface) on the demo run (fixtures/demo), synthesized here by in-process workers and the scripted
 * model server under a private Redis key prefix (REDIS_URL, default redis://127.0.0.1:6379).
 *
 *   node --import tsx bench/env-server.ts [--sessions N] [--steps N]
 *
 * 1. Step latency of one tool call (`get_member {member_id: "M7"}` on the demo's "Iris Vance" scenario,
 *    read-only, so every call does the same work), `--steps` calls per surface (default 400), interleaved
 *    in 4 rounds: the registry directly (in-process `registry.call`), OpenEnv `/ws` (`call_tool` steps; a
 *    reset every 90 steps, untimed, as the server ends an episode at 100), MCP over `/sessions/{id}/mcp`
 *    with one persistent SDK client, and MCP with a new SDK client per call (connect + initialize + call +
 *    close, what a client reconnecting per call pays), NeMo Gym style `POST /{tool}` with the session cookie on
 *    the server holding the session, and the same sent to a second serve process on the same Redis, which
 *    forwards it (the directory lookup and one more HTTP hop). Median and p99, and the ratios to the in-process call.
 * 2. Sessions per process: `--sessions` (default 1,000) `POST /sessions` sent at once, with the default
 *    `--max-sessions` 64, with the max raised to N, and with the max raised to N and the sandbox pool's
 *    ENVFLEET_POOL_TASKS_PER_THREAD raised to N / threads (the pool queues session tasks beyond threads ×
 *    tasks per thread, so opens beyond that wait: counted as hung after 20 s): opened vs refused (503
 *    OVER_CAPACITY) vs hung, and memory per
 *    open session (RSS and main-thread heap, after a GC, divided by the sessions open; RSS includes the
 *    sandbox pool's threads, the heap is the main isolate's only).
 * Prints markdown on stdout (progress on stderr) with the machine (CPU model, nproc, load average before
 * and after). Timings matter only as ratios within one run.
 */
import os from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import WebSocket from 'ws';
import { startServing, type Serving } from '../cli/serve.js';
import { loadConfig } from '../config/index.js';
import { waitForRun } from '../queues/run-jobs.js';
import { submitScenarios, submitSynthesis } from '../queues/submit.js';
import { loadModelScript, startModelServer } from '../src/model-server/index.js';
import { createRedisRunStore } from '../src/runs/store.js';
import { fixturesPath } from '../src/util/package-root.js';
import { startWorkerProcess } from '../workers/main.js';
import { benchArgs } from './args.js';
import { deletePrefix } from './redis-keys.js';

const args = benchArgs(import.meta.url, { values: ['sessions', 'steps'] });
const SESSIONS = args.int('sessions', 1_000);
const STEPS = args.int('steps', 400);
const ROUNDS = 4;
/** A `POST /sessions` not answered by then counts as hung (the sandbox pool queues opens beyond threads × tasks per thread). */
const OPEN_TIMEOUT_MS = 20_000;
const DEFAULT_MAX = 64;
const TOOL = 'get_member';
const TOOL_ARGS = { member_id: 'M7' };
const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const RUN = 'bench';
const prefix = `envfleet-bench-envserver-${process.pid}`;
const firstErrors = new Set<string>();
const log = (msg: string) => process.stderr.write(`[bench/env-server] ${msg}\n`);

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const quiesce = async () => {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise(resolve => setTimeout(resolve, 100));
  }
};

const sorted = (xs: readonly number[]) => [...xs].sort((a, b) => a - b);
const median = (xs: readonly number[]) => sorted(xs)[Math.floor(xs.length / 2)] ?? NaN;
const p99 = (xs: readonly number[]) => sorted(xs)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.99) - 1)] ?? NaN;
const countBy = (keys: readonly string[]) => {
  const counts = new Map<string, number>();
  for (const k of keys) counts.set(k, (counts.get(k) ?? 0) + 1);
  return [...counts].map(([k, n]) => `${n} ${k}`).join(', ');
};
const loadavg = () => os.loadavg().map(x => x.toFixed(2)).join(' / ');

// ---------- an OpenEnv /ws client: one reply per message, in order ----------
class Ws {
  private readonly queue: unknown[] = [];
  private waiting: ((m: unknown) => void) | null = null;
  private constructor(private readonly ws: WebSocket) {
    ws.on('message', raw => {
      const m: unknown = JSON.parse((raw as Buffer).toString('utf8'));
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = null;
        w(m);
      } else this.queue.push(m);
    });
  }
  static async connect(base: string): Promise<Ws> {
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/ws`);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new Ws(ws);
  }
  request(msg: unknown): Promise<{ type: string; data: { observation: { error?: unknown } } }> {
    this.ws.send(JSON.stringify(msg));
    const m = this.queue.shift();
    if (m) return Promise.resolve(m as never);
    return new Promise(resolve => (this.waiting = resolve as never));
  }
  close() {
    this.ws.close();
  }
}

async function mcpClient(url: string): Promise<Client> {
  const client = new Client({ name: 'envfleet-bench', version: '0.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  return client;
}

async function openSession(base: string, scenarioId: string): Promise<{ status: number; id: string | null; mcpUrl: string | null; code?: string | undefined }> {
  const res = await fetch(`${base}/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ scenario_id: scenarioId }), signal: AbortSignal.timeout(OPEN_TIMEOUT_MS) });
  const json = (await res.json()) as { session_id?: string; mcp_url?: string; error?: { code?: string; message?: string } };
  if (res.status !== 201 && res.status !== 503 && json.error?.message) firstErrors.add(`${res.status} ${json.error.code}: ${json.error.message.slice(0, 200)}`);
  return { status: res.status, id: json.session_id ?? null, mcpUrl: json.mcp_url ?? null, ...(json.error?.code ? { code: json.error.code } : {}) };
}

const machine = { cpu: os.cpus()[0]?.model ?? 'unknown', nproc: os.availableParallelism(), loadBefore: loadavg(), node: process.version };
const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
const server = await startModelServer({ script: await loadModelScript(fixturesPath('demo')) });
const config = loadConfig({}, { overrides: { REDIS_URL, OPENAI_BASE_URL: server.url, OPENAI_API_KEY: 'bench-key', ENVFLEET_REDIS_PREFIX: prefix, LOG_LEVEL: 'silent' } });
const logger = pino({ level: 'silent' });
let serving: Serving | undefined;
try {
  // ---------- the demo run ----------
  log('synthesizing the demo run and its scenarios (in-process workers, scripted model)');
  const store = createRedisRunStore(redis, prefix);
  const workers = await startWorkerProcess(config, logger);
  try {
    await submitSynthesis(config, redis, { runId: RUN, tasks: fixturesPath('demo', 'source-tasks.jsonl'), probeSteps: 8 });
    await waitForRun(store, RUN, () => undefined);
    await submitScenarios(config, redis, { runId: RUN, perEnv: 3 });
    await waitForRun(store, RUN, () => undefined);
  } finally {
    await workers.stop();
  }
  let scenarioId: string | null = null;
  let ready = 0;
  for (const id of await store.listDocIds(RUN, 'scenario')) {
    const s = (await store.getDoc(RUN, 'scenario', id))!;
    if (s.status !== 'ready') continue;
    ready += 1;
    if (s.task?.includes('Iris Vance')) scenarioId = s.id;
  }
  if (!scenarioId) throw new Error('the demo run has no ready "Iris Vance" scenario');
  log(`${ready} ready scenarios; measuring on ${scenarioId}`);

  // ---------- 1. step latency ----------
  serving = await startServing(config, logger, { run: RUN, port: 0, host: '127.0.0.1', maxSessions: DEFAULT_MAX, idleTimeout: 0 });
  const s = serving;
  const direct = await s.registry.open(scenarioId);
  const mcpOpened = await openSession(s.url, scenarioId);
  const reconnectOpened = await openSession(s.url, scenarioId);
  const persistent = await mcpClient(mcpOpened.mcpUrl!);
  const ws = await Ws.connect(s.url);
  // A second serve process (in this process) on the same Redis: it forwards requests about s's sessions to s.
  const peer = await startServing(config, logger, { run: RUN, port: 0, host: '127.0.0.1', maxSessions: DEFAULT_MAX, idleTimeout: 0 });
  const seeded = await fetch(`${s.url}/seed_session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ scenario_id: scenarioId }) });
  const cookie = seeded.headers.getSetCookie()[0]!.split(';')[0]!;
  const nemo = async (base: string) => {
    const r = await fetch(`${base}/${TOOL}`, { method: 'POST', headers: { 'content-type': 'application/json', cookie }, body: JSON.stringify(TOOL_ARGS) });
    await r.text();
    if (r.status !== 200) failures += 1;
  };
  let wsSteps = 0;
  const wsReset = async () => {
    const m = await ws.request({ type: 'reset', data: { scenario_id: scenarioId } });
    if (m.type !== 'observation') throw new Error(`reset: ${JSON.stringify(m)}`);
    wsSteps = 0;
  };
  await wsReset();
  let failures = 0;
  const surfaces: { name: string; call: () => Promise<void>; lat: number[] }[] = [
    {
      name: 'in-process `registry.call`',
      lat: [],
      call: async () => {
        const o = await s.registry.call(direct.id, TOOL, TOOL_ARGS);
        if (o.runtimeError) failures += 1;
      },
    },
    {
      name: 'OpenEnv `/ws` `call_tool` step',
      lat: [],
      call: async () => {
        const m = await ws.request({ type: 'step', data: { type: 'call_tool', tool_name: TOOL, arguments: TOOL_ARGS } });
        if (m.type !== 'observation' || m.data.observation.error) failures += 1;
        wsSteps += 1;
      },
    },
    {
      name: 'MCP `tools/call`, persistent SDK client',
      lat: [],
      call: async () => {
        const r = await persistent.callTool({ name: TOOL, arguments: TOOL_ARGS });
        if (r.isError) failures += 1;
      },
    },
    {
      name: 'MCP, new SDK client per call (connect, initialize, call, close)',
      lat: [],
      call: async () => {
        const c = await mcpClient(reconnectOpened.mcpUrl!);
        const r = await c.callTool({ name: TOOL, arguments: TOOL_ARGS });
        await c.close();
        if (r.isError) failures += 1;
      },
    },
    { name: 'NeMo Gym `POST /{tool}` (cookie), the process holding the session', lat: [], call: () => nemo(s.url) },
    { name: 'NeMo Gym `POST /{tool}` sent to another serve process, forwarded', lat: [], call: () => nemo(peer.url) },
  ];
  log(`latency: ${STEPS} calls per surface in ${ROUNDS} interleaved rounds (plus 20 warm-up calls each)`);
  for (const surface of surfaces) for (let i = 0; i < 20; i++) await surface.call();
  await wsReset();
  const perRound = Math.ceil(STEPS / ROUNDS);
  for (let round = 0; round < ROUNDS; round++) {
    for (const surface of surfaces) {
      for (let i = 0; i < perRound && surface.lat.length < STEPS; i++) {
        if (surface.name.includes('/ws') && wsSteps >= 90) await wsReset();
        const t = performance.now();
        await surface.call();
        surface.lat.push((performance.now() - t) * 1000);
      }
    }
  }
  await persistent.close();
  ws.close();
  await peer.close();
  await s.close();
  serving = undefined;

  // ---------- 2. sessions per process and memory per session ----------
  const capacity: { label: string; opened: number; refused: number; other: number; pending: number; otherBy: string; wallMs: number; rssKb: number; heapKb: number }[] = [];
  const raised = Math.max(SESSIONS, DEFAULT_MAX);
  const tasks = Math.ceil(raised / config.pool.threads);
  const cases = [
    { label: `--max-sessions ${DEFAULT_MAX} (default)`, max: DEFAULT_MAX, config },
    { label: `--max-sessions ${raised}`, max: raised, config },
    { label: `--max-sessions ${raised}, ENVFLEET_POOL_TASKS_PER_THREAD=${tasks}`, max: raised, config: { ...config, pool: { ...config.pool, tasksPerThread: tasks } } },
  ];
  for (const c of cases) {
    log(`capacity: ${SESSIONS} sessions at once, ${c.label}`);
    try {
      serving = await startServing(c.config, logger, { run: RUN, port: 0, host: '127.0.0.1', maxSessions: c.max, idleTimeout: 0 });
    } catch (err) {
      // More sessions than the pool holds is refused at start-up (they would wait unanswered).
      log(`  refused at start-up: ${(err as Error).message}`);
      capacity.push({ label: `${c.label}: refused at start-up`, opened: 0, refused: 0, other: 0, pending: 0, otherBy: '', wallMs: 0, rssKb: NaN, heapKb: NaN });
      continue;
    }
    const warm = await openSession(serving.url, scenarioId); // the pool's threads warm, so their start is not counted per session
    await fetch(`${serving.url}/sessions/${warm.id}`, { method: 'DELETE' });
    await quiesce();
    const before = process.memoryUsage();
    const t = performance.now();
    const results = await Promise.all(Array.from({ length: SESSIONS }, () => openSession(serving!.url, scenarioId).catch(() => ({ status: 0, id: null, mcpUrl: null, code: undefined }))));
    const wallMs = performance.now() - t;
    await quiesce();
    const after = process.memoryUsage();
    const opened = results.filter(r => r.status === 201).length;
    const refused = results.filter(r => r.status === 503).length;
    capacity.push({
      label: c.label,
      opened,
      refused,
      other: SESSIONS - opened - refused,
      pending: results.filter(r => r.status === 0).length,
      otherBy: countBy(results.filter(r => r.status !== 201 && r.status !== 503).map(r => (r.status ? `HTTP ${r.status}${r.code ? ` ${r.code}` : ''}` : 'no answer'))),
      wallMs,
      rssKb: opened ? (after.rss - before.rss) / 1024 / opened : NaN,
      heapKb: opened ? (after.heapUsed - before.heapUsed) / 1024 / opened : NaN,
    });
    const closing = serving.close();
    serving = undefined;
    if ((await Promise.race([closing.then(() => 'closed'), new Promise(resolve => setTimeout(() => resolve('late'), 30_000).unref())])) === 'late') log('the server took more than 30 s to close; going on');
  }

  // ---------- report ----------
  const base = median(surfaces[0]!.lat);
  const basep = p99(surfaces[0]!.lat);
  console.log(`## Environment server (\`node --import tsx bench/env-server.ts${args.raw.length ? ` ${args.raw.join(' ')}` : ''}\`)\n`);
  console.log(`- ${new Date().toISOString()}; ${machine.cpu}, nproc ${machine.nproc}, Node ${machine.node}; load average (1/5/15 min) before ${machine.loadBefore}, after ${loadavg()}`);
  console.log(`- the demo run (${ready} ready scenarios), scenario ${scenarioId}, tool \`${TOOL}\` ${JSON.stringify(TOOL_ARGS)}; ${STEPS} timed calls per surface; failed calls: ${failures}\n`);
  console.log('| surface | median µs | p99 µs | median / in-process | p99 / in-process |');
  console.log('|---|---|---|---|---|');
  for (const x of surfaces) {
    const m = median(x.lat);
    const p = p99(x.lat);
    console.log(`| ${x.name} | ${m.toFixed(0)} | ${p.toFixed(0)} | ${(m / base).toFixed(2)}× | ${(p / basep).toFixed(2)}× |`);
  }
  console.log(`\n- sandbox pool: ENVFLEET_POOL_THREADS ${config.pool.threads} × ENVFLEET_POOL_TASKS_PER_THREAD ${config.pool.tasksPerThread} by default; "hung": no answer within ${OPEN_TIMEOUT_MS / 1000} s\n`);
  console.log(`| ${SESSIONS} \`POST /sessions\` at once | opened | refused (503) | hung or failed | wall ms | RSS KB per open session | main heap KB per open session |`);
  console.log('|---|---|---|---|---|---|---|');
  for (const c of capacity) console.log(`| ${c.label} | ${c.opened} | ${c.refused} | ${c.other}${c.otherBy ? ` (${c.otherBy})` : ''} | ${c.wallMs.toFixed(0)} | ${c.pending ? 'n/a (opens still pending)' : c.rssKb.toFixed(1)} | ${c.pending ? 'n/a' : c.heapKb.toFixed(1)} |`);
  for (const e of [...firstErrors].slice(0, 5)) console.log(`- an error answered: ${e}`);
} finally {
  await serving?.close().catch(() => undefined);
  await server.close();
  await deletePrefix(redis, prefix);
  redis.disconnect();
}
process.exit(0);
