import { TaskRef, defineStageQueue } from './stage-queue.js';

/** mine.judge: judges whether a source task needs a stateful environment. */
export const mineJudgeQueue = defineStageQueue('mine.judge', TaskRef, 'judges whether a source task needs a stateful environment');
