import { ScenarioRef, defineStageQueue } from './stage-queue.js';

/** scenario.verify: the solvability gate — reference rollouts until one solves the scenario. */
export const scenarioVerifyQueue = defineStageQueue('scenario.verify', ScenarioRef, 'the solvability gate: reference rollouts until one solves the scenario');
