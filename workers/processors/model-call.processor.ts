import type { modelCallQueue } from '../../queues/model-call.queue.js';
import { runModelCall, type ModelCallDeps } from '../../src/stages/model-call.js';
import type { StageProcessor } from '../bootstrap.js';

type Q = typeof modelCallQueue;

export function createModelCallProcessor(deps: ModelCallDeps): StageProcessor<Q['data'], Q['result']> {
  return (data, { job, signal, logger }) => runModelCall(deps, data, { id: job.id ?? 'unknown', signal, logger });
}
