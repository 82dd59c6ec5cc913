import { ScenarioRef, defineStageQueue } from './stage-queue.js';

/** scenario.checklist: writes the checklist a task implies. */
export const scenarioChecklistQueue = defineStageQueue('scenario.checklist', ScenarioRef, 'writes the checklist a task implies');
