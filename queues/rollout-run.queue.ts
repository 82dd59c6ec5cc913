import { RolloutRef, defineStageQueue } from './stage-queue.js';

/** rollout.run: one episode of the policy against a scenario (one sample of its group). */
export const rolloutRunQueue = defineStageQueue('rollout.run', RolloutRef, 'one episode of the policy against a scenario (one sample of its group)');
