import { ScenarioRef, defineStageQueue } from './stage-queue.js';

/** scenario.check: writes one check function per checklist item and validates them in the sandbox. */
export const scenarioCheckQueue = defineStageQueue('scenario.check', ScenarioRef, 'writes one check function per checklist item and validates them in the sandbox');
