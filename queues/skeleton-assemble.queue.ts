import { EnvRef, defineStageQueue } from './stage-queue.js';

/** skeleton.assemble: assembles the class, validates it in the sandbox, repairs failing methods (fan-in). */
export const skeletonAssembleQueue = defineStageQueue('skeleton.assemble', EnvRef, 'assembles the class, validates it in the sandbox, repairs failing methods (fan-in)');
