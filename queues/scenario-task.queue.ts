import { ScenarioRef, defineStageQueue } from './stage-queue.js';

/** scenario.task: writes the task of a scenario, as an instruction and as a user goal. */
export const scenarioTaskQueue = defineStageQueue('scenario.task', ScenarioRef, 'writes the task of a scenario, as an instruction and as a user goal');
