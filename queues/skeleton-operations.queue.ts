import { EnvRef, defineStageQueue } from './stage-queue.js';

/** skeleton.operations: lists the operations (tools) with their parameter schemas. */
export const skeletonOperationsQueue = defineStageQueue('skeleton.operations', EnvRef, 'lists the operations (tools) with their parameter schemas');
