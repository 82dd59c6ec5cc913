import { modelCallQueue } from './model-call.queue.js';

export { modelCallQueue } from './model-call.queue.js';
export { baseJobOptions, defineQueue, type QueueDefinition } from './define-queue.js';

/** Every queue of the fleet, by name. `envfleet worker --queues` chooses among these. */
export const QUEUES = {
  [modelCallQueue.name]: modelCallQueue,
} as const;
export const QUEUE_NAMES = Object.keys(QUEUES);
