import { EnvRef, defineStageQueue } from './stage-queue.js';

/** skeleton.state: designs the state (entities, rules, JSON Schema, an example state). */
export const skeletonStateQueue = defineStageQueue('skeleton.state', EnvRef, 'designs the state (entities, rules, JSON Schema, an example state)');
