import { StateRef, defineStageQueue } from './stage-queue.js';

/** scenario.state: generates the index-th initial state of a kept environment (one job per state). */
export const scenarioStateQueue = defineStageQueue('scenario.state', StateRef, 'generates the index-th initial state of a kept environment (one job per state)');
