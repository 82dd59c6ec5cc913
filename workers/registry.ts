import { modelCallQueue } from '../queues/model-call.queue.js';
import { QUEUE_NAMES } from '../queues/index.js';
import { startQueueWorker, type QueueWorker, type WorkerSettings } from './bootstrap.js';
import type { FleetContext } from './fleet.js';
import { createModelCallProcessor } from './processors/model-call.processor.js';
import { synthesisProcessors, synthesisSettled } from './processors/synthesis.processors.js';

/** Starts a worker for each named queue, wiring each queue to its processor. */
export function startWorkers(ctx: FleetContext, queueNames: readonly string[], concurrency?: number): QueueWorker[] {
  const settings: WorkerSettings = {
    config: ctx.config,
    connection: ctx.workerConnection,
    logger: ctx.logger,
    runControl: ctx.runControl,
    metrics: ctx.metrics,
    ...(concurrency === undefined ? {} : { concurrency }),
  };
  const synthesis = new Map(synthesisProcessors(ctx).map(e => [e.def.name, e]));
  return queueNames.map(name => {
    if (name === modelCallQueue.name) return startQueueWorker(modelCallQueue, createModelCallProcessor(ctx), settings);
    const entry = synthesis.get(name);
    if (!entry) throw new Error(`unknown queue "${name}"; known queues: ${QUEUE_NAMES.join(', ')}`);
    const concurrency = name === 'rollout.run' && settings.concurrency === undefined ? ctx.config.worker.rolloutConcurrency : settings.concurrency;
    return startQueueWorker(entry.def, entry.processor, { ...settings, ...(concurrency === undefined ? {} : { concurrency }), onSettled: synthesisSettled(ctx, name) });
  });
}

/** Resolves the configured or requested queue list. */
export function resolveQueueNames(requested: readonly string[] | 'all'): string[] {
  if (requested === 'all') return [...QUEUE_NAMES];
  const unknown = requested.filter(q => !QUEUE_NAMES.includes(q));
  if (unknown.length) throw new Error(`unknown queue(s) ${unknown.join(', ')}; known queues: ${QUEUE_NAMES.join(', ')}`);
  return [...requested];
}
