/**
 * How much the fleet layer costs per model call, as a ratio within one run:
 *   A. direct: the openai client calling the scripted server, N calls, C at a time;
 *   B. gateway: the same calls through the model gateway (Redis limiter, cache lookup, ledger);
 *   C. queue: N `mine.judge` jobs of a real run (`submitSynthesis` of N one-line source tasks)
 *      through BullMQ and a worker for mine.judge only (concurrency C): each job reads its task
 *      from the run store, calls the gateway, stores the judgement and counts it (the flow parents
 *      mine.topic and mine.dedup are enqueued by the submission too, but no worker takes them).
 *      Timed from the submission (which also stores the N tasks) to the N-th completed job.
 * The scripted server answers instantly, so this isolates envfleet's own overhead; a real model
 * call takes 1–60 s, next to which these figures are negligible. Paths A and B use the stage
 * header / stage mine.judge as well.
 *
 *   node --import tsx bench/gateway-overhead.ts [N=400] [C=8]
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { pino } from 'pino';
import { loadConfig } from '../config/index.js';
import { submitSynthesis } from '../queues/submit.js';
import { createModelGateway } from '../src/llm/gateway.js';
import { createRedisResponseCache } from '../src/llm/redis-cache.js';
import { createRedisLedger } from '../src/llm/redis-ledger.js';
import { createRedisLimiter } from '../src/llm/redis-limiter.js';
import { parseModelScript, startModelServer } from '../src/model-server/index.js';
import { startWorkerProcess } from '../workers/main.js';
import { deletePrefix } from './redis-keys.js';

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

const STAGE = 'mine.judge';
const server = await startModelServer({
  script: parseModelScript({
    rules: [
      { stage: STAGE, respond: { json: { needsEnvironment: true, reason: 'x' } } },
      { respond: { json: { ok: true } } },
    ],
  }),
});
const prefix = `envfleet-bench-${randomUUID().slice(0, 8)}`;
const config = loadConfig({}, { overrides: { REDIS_URL, OPENAI_BASE_URL: server.url, ENVFLEET_REDIS_PREFIX: prefix, ENVFLEET_CACHE: 'false', LOG_LEVEL: 'silent' } });
const messages = (i: number) => [{ role: 'user' as const, content: `call ${i}` }];

const client = new OpenAI({ baseURL: server.url, apiKey: 'k', maxRetries: 0 });
// Warm up the server, the client and the JIT so the first measured path is not penalised.
await inBatches(Math.min(N, 300), C, i => client.chat.completions.create({ model: 'm', messages: messages(i) }));
const direct = await inBatches(N, C, i => client.chat.completions.create({ model: 'm', messages: messages(i) }, { headers: { 'X-Envfleet-Stage': STAGE } }));

const redis = new Redis(REDIS_URL);
const gateway = createModelGateway({
  config,
  cache: createRedisResponseCache(redis, prefix),
  limiter: createRedisLimiter(redis, prefix),
  ledger: createRedisLedger(redis, prefix),
  logger: pino({ level: 'silent' }),
});
const viaGateway = await inBatches(N, C, i => gateway.chat({ runId: 'bench', stage: STAGE }, { messages: messages(i) }));

const tmp = mkdtempSync(join(os.tmpdir(), 'envfleet-bench-gateway-'));
const tasksFile = join(tmp, 'tasks.jsonl');
writeFileSync(tasksFile, [...Array(N).keys()].map(i => `${JSON.stringify({ id: `t${i}`, task: `call ${i}` })}\n`).join(''));
const running = await startWorkerProcess(config, pino({ level: 'silent' }), { queues: [STAGE], concurrency: C });
let viaQueue: number;
try {
  // From the first job's start to the last one's end: the submission (N task documents written one
  // by one before the jobs exist) is not part of the job path being measured.
  let firstStart = Infinity;
  let lastEnd = 0;
  const judged = new Promise<void>((resolve, reject) => {
    let done = 0;
    const worker = running.workers[0]!.worker;
    worker.on('completed', job => {
      firstStart = Math.min(firstStart, job.processedOn ?? Infinity);
      lastEnd = Math.max(lastEnd, job.finishedOn ?? 0);
      if (++done === N) resolve();
    });
    worker.on('failed', (job, err) => reject(new Error(`${STAGE} job ${job?.id ?? '?'} failed: ${err.message}`)));
  });
  judged.catch(() => undefined); // awaited below; keeps an early failure from being an unhandled rejection
  const submission = await submitSynthesis(config, redis, { runId: 'bench-q', tasks: tasksFile });
  if (submission.items !== N) throw new Error(`submitted ${submission.items} of ${N} tasks`);
  await judged;
  viaQueue = lastEnd - firstStart;
} finally {
  await running.stop();
  await server.close();
  rmSync(tmp, { recursive: true, force: true });
  await deletePrefix(redis, prefix);
  redis.disconnect();
}

const row = (name: string, ms: number) =>
  `| ${name} | ${(N / (ms / 1000)).toFixed(0)} calls/s | ${(ms / N).toFixed(2)} ms | ${(ms / direct).toFixed(2)}× |`;
console.log(`N=${N} calls, ${C} at a time, scripted server on loopback, Redis ${REDIS_URL}`);
console.log('| path | throughput | per call | vs direct |');
console.log('|---|---|---|---|');
console.log(row('A. openai client → scripted server', direct));
console.log(row('B. model gateway (limiter, ledger; cache off)', viaGateway));
console.log(row('C. mine.judge jobs (BullMQ worker + gateway + run store)', viaQueue));
process.exit(0);
