import { RoundRef, defineStageQueue } from './stage-queue.js';

/** check.verdict: decides kept or rejected, with one repair round for a rejected environment. */
export const checkVerdictQueue = defineStageQueue('check.verdict', RoundRef, 'decides kept or rejected, with one repair round for a rejected environment');
