/**
 * CPU of the worker's main thread per model call through the gateway, as an episode makes them: the
 * response cache (salted per call, so every call is a miss and a write), the fleet-wide limiter, the
 * budgets lookup, the ledger and the latency metric, over the openai client, against the scripted
 * server in a process of its own (so its CPU is not counted). The request is the size of a reference
 * (hotel) episode's: a 1.5 KB system prompt, 13 tools (≈4 KB) and a few turns. Prints the process's
 * CPU (all its threads) and its main thread's (/proc/self/task/PID/stat) per call.
 *
 *   node --import tsx bench/gateway-cpu.ts [--calls 6000] [--concurrency 200] [--rounds 2] [--budget] [--pipelined]
 *
 * `--budget` gives the run a token budget (never reached), so that every call also reads the ledger's totals, as a
 * run with budgets does. `--pipelined` sends the Redis commands over an auto-pipelined connection, as a worker does.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import { loadConfig } from '../config/index.js';
import { createModelGateway, type ChatMessage, type ChatTool } from '../src/llm/gateway.js';
import { createRedisResponseCache } from '../src/llm/redis-cache.js';
import { createRedisLedger } from '../src/llm/redis-ledger.js';
import { createRedisLimiter } from '../src/llm/redis-limiter.js';
import { createRedisConnection } from '../src/redis/connection.js';
import { createRedisRunControl } from '../src/runs/control.js';
import { createRedisMetrics } from '../src/runs/metrics.js';
import { deletePrefix } from './redis-keys.js';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const CALLS = arg('calls', 6000);
const C = arg('concurrency', 200);
const ROUNDS = arg('rounds', 2);
const BUDGET = process.argv.includes('--budget');
const PIPELINED = process.argv.includes('--pipelined');
const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';

// The scripted server, in a child process: one get_guest call for every request.
const serverCode = `
import { parseModelScript, startModelServer } from './src/model-server/index.js';
const s = await startModelServer({ script: parseModelScript({ rules: [{ respond: { toolCalls: [{ name: 'get_guest', arguments: { guest_id: 'G0001' } }], usage: { prompt_tokens: 1500, completion_tokens: 20 } } }] }) });
process.stdout.write(s.url + '\\n');
`;
const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', serverCode], { stdio: ['ignore', 'pipe', 'inherit'] });
const url = await new Promise<string>((resolve, reject) => {
  child.stdout.once('data', (d: Buffer) => resolve(d.toString().trim()));
  child.once('exit', code => reject(new Error(`the server exited (${code})`)));
});

const prefix = `envfleet-bench-gwcpu-${randomUUID().slice(0, 8)}`;
const config = loadConfig({}, { overrides: { REDIS_URL, OPENAI_BASE_URL: url, ENVFLEET_REDIS_PREFIX: prefix, LOG_LEVEL: 'silent', ENVFLEET_MODEL_MAX_CONCURRENCY: '0' } });
const redis = createRedisConnection(REDIS_URL, 'worker', PIPELINED ? { enableAutoPipelining: true } : {});
const subscriber = createRedisConnection(REDIS_URL, 'worker');
const control = createRedisRunControl(redis, prefix);
const metrics = createRedisMetrics(redis, prefix);
const gateway = createModelGateway({
  config,
  budgets: runId => control.budgets(runId),
  observe: (stage, seconds, ok) => metrics.observe('model_request', { stage, outcome: ok ? 'ok' : 'error' }, seconds),
  cache: createRedisResponseCache(redis, prefix),
  limiter: createRedisLimiter(redis, prefix, { subscriber }),
  ledger: createRedisLedger(redis, prefix),
  logger: pino({ level: 'silent' }),
});

const tools: ChatTool[] = Array.from({ length: 13 }, (_, i) => ({
  type: 'function',
  function: { name: `tool_${i}`, description: `Does thing ${i} of the hotel: ${'x'.repeat(150)}`, parameters: { type: 'object', properties: { guest_id: { type: 'string', description: 'The guest id, e.g. G0001' }, note: { type: 'string' } }, required: ['guest_id'] } },
}));
const messages: ChatMessage[] = [
  { role: 'system', content: `You are a hotel agent. ${'Rules. '.repeat(210)}` },
  { role: 'user', content: 'Check the reservation of guest G0001 and tell me the room.' },
  { role: 'assistant', content: null, tool_calls: [{ id: 'bench-t1', type: 'function', function: { name: 'get_guest', arguments: '{"guest_id":"G0001"}' } }] },
  { role: 'tool', tool_call_id: 'bench-t1', content: JSON.stringify({ id: 'G0001', name: 'Zoë Ørsted', room: 101, reservations: ['R1', 'R2'] }) },
];

const mainCpuMs = () => {
  const f = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) * 10; // utime + stime, 10 ms ticks
};
let serial = 0;
async function round(n: number) {
  const cpu0 = process.cpuUsage();
  const main0 = mainCpuMs();
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: C }, async () => {
      while (next < n) {
        next += 1;
        await gateway.chat({ runId: 'bench', stage: 'rollout.policy', cacheSalt: `s${serial++}` }, { messages, tools, temperature: 1, maxTokens: 1024 });
      }
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  return { wallMs: performance.now() - t0, cpuUs: (cpu.user + cpu.system) / n, mainUs: ((mainCpuMs() - main0) * 1000) / n };
}

try {
  if (BUDGET) await control.setBudgets('bench', { usd: 0, tokens: 1e15, byStage: {} });
  await round(Math.min(1000, CALLS));
  console.log(`${CALLS} calls, ${C} at a time (cache on, salted: every call a miss and a write; limiter, budgets, ledger, metric)${BUDGET ? '; a run budget (the ledger read per call)' : ''}${PIPELINED ? '; Redis auto-pipelined' : ''}`);
  console.log('| round | calls/s | process CPU per call | main thread CPU per call |');
  console.log('|---|---|---|---|');
  for (let r = 1; r <= ROUNDS; r += 1) {
    const m = await round(CALLS);
    console.log(`| ${r} | ${(CALLS / (m.wallMs / 1000)).toFixed(0)} | ${(m.cpuUs / 1000).toFixed(3)} ms | ${(m.mainUs / 1000).toFixed(3)} ms |`);
  }
} finally {
  child.kill('SIGTERM');
  await metrics.flush(); // before the clean-up, or its timer writes the last observations back
  await deletePrefix(redis, prefix);
  redis.disconnect();
  subscriber.disconnect();
}
process.exit(0);
