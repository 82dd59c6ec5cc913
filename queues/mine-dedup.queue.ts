import { RunRef, defineStageQueue } from './stage-queue.js';

/** mine.dedup: embeds the candidate descriptions of a run and drops near-duplicates (fan-in of mine.topic). */
export const mineDedupQueue = defineStageQueue('mine.dedup', RunRef, 'embeds the candidate descriptions of a run and drops near-duplicates (fan-in of mine.topic)');
