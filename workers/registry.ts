import { modelCallQueue } from '../queues/model-call.queue.js';
import { QUEUE_NAMES } from '../queues/index.js';
import { startQueueWorker, type QueueWorker, type WorkerSettings } from './bootstrap.js';
import type { FleetContext } from './fleet.js';
import { createModelCallProcessor } from './processors/model-call.processor.js';

/** Starts a worker for each named queue, wiring each queue to its processor. */
export function startWorkers(ctx: FleetContext, queueNames: readonly string[], concurrency?: number): QueueWorker[] {
  const settings: WorkerSettings = {
    config: ctx.config,
    connection: ctx.workerConnection,
    logger: ctx.logger,
    ...(concurrency === undefined ? {} : { concurrency }),
  };
  return queueNames.map(name => {
    switch (name) {
      case modelCallQueue.name:
        return startQueueWorker(modelCallQueue, createModelCallProcessor(ctx), settings);
      default:
        throw new Error(`unknown queue "${name}"; known queues: ${QUEUE_NAMES.join(', ')}`);
    }
  });
}

/** Resolves the configured or requested queue list. */
export function resolveQueueNames(requested: readonly string[] | 'all'): string[] {
  if (requested === 'all') return [...QUEUE_NAMES];
  const unknown = requested.filter(q => !QUEUE_NAMES.includes(q));
  if (unknown.length) throw new Error(`unknown queue(s) ${unknown.join(', ')}; known queues: ${QUEUE_NAMES.join(', ')}`);
  return [...requested];
}
