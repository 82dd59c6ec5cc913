import { EnvRef, defineStageQueue } from './stage-queue.js';

/** check.config: generates a test initial state valid against the schema. */
export const checkConfigQueue = defineStageQueue('check.config', EnvRef, 'generates a test initial state valid against the schema');
