import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Queue } from 'bullmq';
import { loadConfig, type AppConfig } from '../config/index.js';
import { modelCallQueue } from '../queues/model-call.queue.js';
import { createLogger } from '../src/logger.js';
import { startModelServer } from '../src/model-server/index.js';
import { loadModelScript } from '../src/model-server/fixtures.js';
import { sleep } from '../src/util/sleep.js';
import { startWorkerProcess } from './main.js';
import { chooseRedis } from './private-redis.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/demo/', import.meta.url));

/** The JSON the mine.judge call must return (validated, with repair rounds, by the gateway). */
const JUDGE_SCHEMA = {
  type: 'object',
  properties: {
    needsEnvironment: { type: 'boolean' },
    domain: { type: ['string', 'null'] },
    reason: { type: 'string', minLength: 1 },
  },
  required: ['needsEnvironment', 'domain', 'reason'],
  additionalProperties: false,
};

const JUDGE_PROMPT =
  'You decide whether a user task needs a stateful, domain-specific tool environment (records that tools read and change, ' +
  'such as bookings, orders or inventories) to be solved by an agent. Answer with one JSON object: ' +
  '{"needsEnvironment": boolean, "domain": string or null, "reason": string}. ' +
  'Example: for "Cancel my flight and rebook the next one" answer ' +
  '{"needsEnvironment": true, "domain": "airline reservations", "reason": "Rebooking reads and changes reservations and seat inventory."}';

interface SourceTask {
  id: string;
  task: string;
}

/**
 * `envfleet demo`: the whole product as it stands, end to end on real queues and workers — a Redis
 * (the configured one, or a private one), the scripted model server (or the real endpoint given
 * by OPENAI_BASE_URL), source tasks judged through the model gateway with its faults handled,
 * a re-submission that adds nothing, and the ledger.
 */
export async function runDemo(out: (line: string) => void = line => process.stdout.write(`${line}\n`)): Promise<void> {
  const started = Date.now();
  const base = loadConfig();
  const redis = await chooseRedis(base.redis.url, line => out(`[demo] ${line}`));
  const useReal = base.explicit.includes('OPENAI_BASE_URL');
  const server = useReal ? null : await startModelServer({ script: await loadModelScript(FIXTURES) });
  out(useReal ? `[demo] using the model endpoint ${base.endpoints['default']?.baseURL}` : `[demo] scripted model server at ${server?.url}`);

  const config: AppConfig = loadConfig(undefined, {
    overrides: {
      REDIS_URL: redis.url,
      ...(server ? { OPENAI_BASE_URL: server.url, OPENAI_API_KEY: 'envfleet-local' } : {}),
      ENVFLEET_JOB_BACKOFF_MS: base.explicit.includes('ENVFLEET_JOB_BACKOFF_MS') ? String(base.jobs.backoffMs) : '300',
      ENVFLEET_SHUTDOWN_TIMEOUT_MS: '5000',
    },
  });
  const logger = createLogger({ log: { level: base.explicit.includes('LOG_LEVEL') ? base.log.level : 'error' } });
  const running = await startWorkerProcess(config, logger, { queues: [modelCallQueue.name], concurrency: 4 });
  const queue = running.workers[0]!.queue;
  let cleaned: Promise<void> | undefined;
  const cleanup = () =>
    (cleaned ??= (async () => {
      await running.stop();
      await server?.close();
      await redis.stop();
    })());
  // Ctrl-C still stops the workers and removes the private Redis.
  const interrupt = () => {
    out('[demo] interrupted; cleaning up');
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  try {
    const runId = `demo-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}-${process.pid}`;
    const tasks = (await readFile(`${FIXTURES}source-tasks.jsonl`, 'utf8'))
      .split('\n')
      .filter(line => line.trim())
      .map(line => JSON.parse(line) as SourceTask);
    out(`[demo] run ${runId}: judging ${tasks.length} source tasks (stage mine.judge) through queue ${modelCallQueue.name}`);
    const submit = () =>
      Promise.all(
        tasks.map(t =>
          modelCallQueue.enqueue(queue, {
            runId,
            stage: 'mine.judge',
            key: t.id,
            messages: [
              { role: 'system', content: JUDGE_PROMPT },
              { role: 'user', content: `Task: ${t.task}` },
            ],
            output: { type: 'json', schema: JUDGE_SCHEMA },
          }),
        ),
      );
    const submitted = await submit();
    await waitForJobs(queue, submitted.map(s => s.jobId), out);

    const again = await submit();
    out(`[demo] submitted the same ${tasks.length} tasks again: ${again.filter(s => s.added).length} new jobs (job ids are deterministic)`);

    out('[demo] results:');
    for (const [i, { jobId }] of submitted.entries()) {
      const job = await queue.getJob(jobId);
      const task = tasks[i]!;
      if (!job) continue;
      const state = await job.getState();
      if (state === 'completed') {
        const result = modelCallQueue.parseResult(job.returnvalue);
        const artifact = await running.ctx.artifacts.get<{ output: { needsEnvironment: boolean; domain: string | null } }>(result.ref);
        const o = artifact?.output;
        out(`  ${task.id} ${o?.needsEnvironment ? 'needs an environment' : 'no environment    '} ${o?.domain ?? ''}  (${result.calls} call${result.calls > 1 ? 's' : ''}, attempts ${job.attemptsMade})`);
      } else {
        out(`  ${task.id} ${state}: ${job.failedReason}`);
      }
    }
    const totals = await running.ctx.ledger.totals(runId);
    out(`[demo] ledger: ${totals.requests} requests, ${totals.promptTokens} prompt + ${totals.completionTokens} completion tokens, $${totals.costUsd.toFixed(6)} (model ${config.profiles['mine.judge'].model})`);
    if (server) {
      const log = server.log();
      const faults = log.filter(e => e.fault).map(e => e.fault);
      out(`[demo] model server received ${log.length} requests; injected faults: ${faults.join(', ') || 'none'}`);
    }
    out(`[demo] done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
    await cleanup();
  }
}

async function waitForJobs(queue: Queue, ids: readonly string[], out: (line: string) => void): Promise<void> {
  let last = '';
  for (;;) {
    const states = await Promise.all(ids.map(async id => (await queue.getJob(id))?.getState() ?? 'missing'));
    const done = states.filter(s => s === 'completed' || s === 'failed').length;
    const line = `[demo] ${done}/${ids.length} finished (${summarize(states)})`;
    if (line !== last) out(line);
    last = line;
    if (done === ids.length) return;
    await sleep(250);
  }
}

function summarize(states: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const s of states) counts.set(s, (counts.get(s) ?? 0) + 1);
  return [...counts].map(([s, n]) => `${n} ${s}`).join(', ');
}
