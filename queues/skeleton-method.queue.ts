import { MethodRef, defineStageQueue } from './stage-queue.js';

/** skeleton.method: writes one method (fanned out per operation). */
export const skeletonMethodQueue = defineStageQueue('skeleton.method', MethodRef, 'writes one method (fanned out per operation)');
