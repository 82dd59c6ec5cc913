/**
 * The worker process of bench/synthesis.ts: `startWorkerProcess` (workers/main.ts) for the ten
 * synthesis queues only (the only ones the benchmark feeds), with the fleet's limiter wrapped to time
 * each slot acquisition, so the report can separate the wait for a fleet-wide endpoint slot from the
 * rest of a job's non-model time. The stage (and cache salt) of each acquisition comes from an
 * AsyncLocalStorage set by a thin wrapper around the fleet's gateway.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { AppConfig } from '../../config/index.js';
import type { ModelGateway } from '../../src/llm/gateway.js';
import type { EndpointLimiter } from '../../src/llm/ports.js';
import type { Logger } from '../../src/logger.js';
import { QUEUE_NAMES } from '../../queues/index.js';
import { startWorkerProcess, type RunningWorker } from '../../workers/main.js';

/** One slot acquisition: how long the request waited for the limiter, and whether it got a slot. */
export interface LimiterWait {
  readonly stage: string | null;
  /** The call's cache salt (the operation name for skeleton.method, `round:step` for probe calls). */
  readonly salt: string | null;
  readonly startMs: number;
  readonly endMs: number;
  /** false: the limiter refused (cool-down after a 429, or the wait would exceed its maximum); the job went back to its queue. */
  readonly granted: boolean;
}

export interface BenchWorker extends RunningWorker {
  readonly waits: readonly LimiterWait[];
}

/** The queues of environment synthesis (the only ones this benchmark feeds). */
export const SYNTHESIS_QUEUES = QUEUE_NAMES.filter(name => /^(mine|skeleton|check)\./.test(name));

export async function startBenchWorker(config: AppConfig, logger: Logger, concurrency: number): Promise<BenchWorker> {
  const waits: LimiterWait[] = [];
  const callOf = new AsyncLocalStorage<{ stage: string; salt: string | null }>();
  const timed = (inner: EndpointLimiter): EndpointLimiter => ({
    async acquire(endpoint, options) {
      const startMs = Date.now();
      const { stage, salt } = callOf.getStore() ?? { stage: null, salt: null };
      try {
        const lease = await inner.acquire(endpoint, options);
        waits.push({ stage, salt, startMs, endMs: Date.now(), granted: true });
        return lease;
      } catch (err) {
        waits.push({ stage, salt, startMs, endMs: Date.now(), granted: false });
        throw err;
      }
    },
    coolDown: (endpoint, ms) => inner.coolDown(endpoint, ms),
  });
  const within = <T>(c: { stage: string; cacheSalt?: string | undefined }, fn: () => Promise<T>) => callOf.run({ stage: c.stage, salt: c.cacheSalt ?? null }, fn);
  const labelled = (inner: ModelGateway): ModelGateway => ({
    chat: (c, request) => within(c, () => inner.chat(c, request)),
    structured: (c, request) => within(c, () => inner.structured(c, request)),
    embed: (c, inputs) => within(c, () => inner.embed(c, inputs)),
  });
  const running = await startWorkerProcess(config, logger, { queues: SYNTHESIS_QUEUES, concurrency, hooks: { wrapLimiter: timed, wrapGateway: labelled } });
  return { ...running, waits };
}
