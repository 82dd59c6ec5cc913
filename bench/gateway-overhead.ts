/**
 * How much the fleet layer costs per model call, as a ratio within one run:
 *   A. direct: the openai client calling the scripted server, N calls, C at a time;
 *   B. gateway: the same calls through the model gateway (Redis limiter, cache lookup, ledger);
 *   C. queue: the same calls as `model.call` jobs through BullMQ and a worker (concurrency C).
 * The scripted server answers instantly, so this isolates envfleet's own overhead; a real model
 * call takes 1–60 s, next to which these figures are negligible.
 *
 *   node --import tsx bench/gateway-overhead.ts [N=400] [C=8]
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { pino } from 'pino';
import { loadConfig } from '../config/index.js';
import { modelCallQueue } from '../queues/model-call.queue.js';
import { createModelGateway } from '../src/llm/gateway.js';
import { createRedisResponseCache } from '../src/llm/redis-cache.js';
import { createRedisLedger } from '../src/llm/redis-ledger.js';
import { createRedisLimiter } from '../src/llm/redis-limiter.js';
import { parseModelScript, startModelServer } from '../src/model-server/index.js';
import { startWorkerProcess } from '../workers/main.js';

const N = Number(process.argv[2] ?? 400);
const C = Number(process.argv[3] ?? 8);
const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';

async function inBatches(n: number, c: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  const start = performance.now();
  let next = 0;
  await Promise.all(
    [...Array(c).keys()].map(async () => {
      while (next < n) await fn(next++);
    }),
  );
  return performance.now() - start;
}

const server = await startModelServer({ script: parseModelScript({ rules: [{ respond: { json: { ok: true } } }] }) });
const prefix = `envfleet-bench-${randomUUID().slice(0, 8)}`;
const config = loadConfig({}, { overrides: { REDIS_URL, OPENAI_BASE_URL: server.url, ENVFLEET_REDIS_PREFIX: prefix, ENVFLEET_CACHE: 'false', LOG_LEVEL: 'silent' } });
const messages = (i: number) => [{ role: 'user' as const, content: `call ${i}` }];

const client = new OpenAI({ baseURL: server.url, apiKey: 'k', maxRetries: 0 });
// Warm up the server, the client and the JIT so the first measured path is not penalised.
await inBatches(Math.min(N, 300), C, i => client.chat.completions.create({ model: 'm', messages: messages(i) }));
const direct = await inBatches(N, C, i => client.chat.completions.create({ model: 'm', messages: messages(i) }, { headers: { 'X-Envfleet-Stage': 'model.call' } }));

const redis = new Redis(REDIS_URL);
const gateway = createModelGateway({
  config,
  cache: createRedisResponseCache(redis, prefix),
  limiter: createRedisLimiter(redis, prefix),
  ledger: createRedisLedger(redis, prefix),
  logger: pino({ level: 'silent' }),
});
const viaGateway = await inBatches(N, C, i => gateway.chat({ runId: 'bench', stage: 'model.call' }, { messages: messages(i) }));

const running = await startWorkerProcess(config, pino({ level: 'silent' }), { queues: [modelCallQueue.name], concurrency: C });
const queue = running.workers[0]!.queue;
const start = performance.now();
const ids = await Promise.all(
  [...Array(N).keys()].map(i =>
    modelCallQueue.enqueue(queue, { runId: 'bench-q', stage: 'model.call', key: String(i), messages: messages(i), output: { type: 'text' } }),
  ),
);
await new Promise<void>(resolve => {
  let done = 0;
  running.workers[0]!.worker.on('completed', () => {
    if (++done === ids.length) resolve();
  });
});
const viaQueue = performance.now() - start;

await running.stop();
await server.close();
const keys = await redis.keys(`${prefix}:*`);
if (keys.length) await redis.del(...keys);
redis.disconnect();

const row = (name: string, ms: number) =>
  `| ${name} | ${(N / (ms / 1000)).toFixed(0)} calls/s | ${(ms / N).toFixed(2)} ms | ${(ms / direct).toFixed(2)}× |`;
console.log(`N=${N} calls, ${C} at a time, scripted server on loopback, Redis ${REDIS_URL}`);
console.log('| path | throughput | per call | vs direct |');
console.log('|---|---|---|---|');
console.log(row('A. openai client → scripted server', direct));
console.log(row('B. model gateway (limiter, ledger; cache off)', viaGateway));
console.log(row('C. model.call jobs (BullMQ worker + gateway + artifact store)', viaQueue));
process.exit(0);
