import { GroupRef, defineStageQueue } from './stage-queue.js';

/** rollout.group: the statistics of a scenario's K samples (flow parent of its rollout.run jobs). */
export const rolloutGroupQueue = defineStageQueue('rollout.group', GroupRef, 'the statistics of a scenario’s K samples (flow parent of its rollout.run jobs)');
