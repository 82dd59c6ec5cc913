import { TaskRef, defineStageQueue } from './stage-queue.js';

/** mine.topic: infers the environment summary, introduction and scores of a judged task. */
export const mineTopicQueue = defineStageQueue('mine.topic', TaskRef, 'infers the environment summary, introduction and scores of a judged task');
