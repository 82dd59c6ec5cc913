/**
 * The worker process of bench/synthesis.ts: `startWorkerProcess` (workers/main.ts) for the ten
 * synthesis queues only (the only ones the benchmark feeds), with the fleet's slot acquisitions
 * recovered from the model gateway's own debug log, so the report can separate the wait for a
 * fleet-wide endpoint slot from the rest of a job's non-model time.
 *
 * The worker gets a pino logger at level debug whose destination parses each line and keeps only
 * the gateway's two per-request lines (everything else, of every level, is dropped):
 * - 'model call' (written when a request has been answered): the slot was granted when the request
 *   started, at `time - ms`, after a wait of `limiterWaitMs`;
 * - 'model call found no fleet-wide slot' (written when the limiter refused): the wait ended at
 *   `time`, after `limiterWaitMs`, without a slot (the job went back to its queue).
 * Both carry the call's stage and cache salt. Answers served from the response cache take no slot
 * and write neither line, as before.
 */
import { pino, type DestinationStream } from 'pino';
import type { AppConfig } from '../../config/index.js';
import type { Logger } from '../../src/logger.js';
import { PIPELINE_STAGES } from '../../queues/pipeline.js';
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
export const SYNTHESIS_QUEUES = PIPELINE_STAGES.filter(name => /^(mine|skeleton|check)\./.test(name));

const GRANTED = 'model call';
const REFUSED = 'model call found no fleet-wide slot';

/** The fields of the gateway's debug lines this module reads (see src/llm/gateway.ts). */
interface GatewayLine {
  readonly msg?: string;
  readonly time?: number;
  readonly stage?: string;
  readonly cacheSalt?: string | null;
  readonly limiterWaitMs?: number;
  readonly ms?: number;
}

/** A pino destination that turns the gateway's per-request debug lines into `LimiterWait`s. */
function limiterLog(waits: LimiterWait[]): DestinationStream {
  return {
    write(line: string) {
      // Cheap test first: the fleet writes many other debug lines.
      if (!line.includes('"msg":"model call')) return;
      let entry: GatewayLine;
      try {
        entry = JSON.parse(line) as GatewayLine;
      } catch {
        return;
      }
      if (typeof entry.time !== 'number' || typeof entry.limiterWaitMs !== 'number') return;
      const stage = entry.stage ?? null;
      const salt = entry.cacheSalt ?? null;
      if (entry.msg === GRANTED && typeof entry.ms === 'number') {
        const endMs = entry.time - entry.ms;
        waits.push({ stage, salt, startMs: endMs - entry.limiterWaitMs, endMs, granted: true });
      } else if (entry.msg === REFUSED) {
        waits.push({ stage, salt, startMs: entry.time - entry.limiterWaitMs, endMs: entry.time, granted: false });
      }
    },
  };
}

/** Starts the synthesis queues, logging at debug level into `limiterLog` (nothing reaches stdout or stderr). */
export async function startBenchWorker(config: AppConfig, concurrency: number): Promise<BenchWorker> {
  const waits: LimiterWait[] = [];
  const logger: Logger = pino({ level: 'debug' }, limiterLog(waits));
  const running = await startWorkerProcess(config, logger, { queues: SYNTHESIS_QUEUES, concurrency });
  return { ...running, waits };
}
