import type { QueueDefinition } from './define-queue.js';
import { checkConfigQueue } from './check-config.queue.js';
import { checkProbeQueue } from './check-probe.queue.js';
import { checkVerdictQueue } from './check-verdict.queue.js';
import { mineDedupQueue } from './mine-dedup.queue.js';
import { mineJudgeQueue } from './mine-judge.queue.js';
import { mineTopicQueue } from './mine-topic.queue.js';
import { modelCallQueue } from './model-call.queue.js';
import { rolloutGroupQueue } from './rollout-group.queue.js';
import { rolloutRunQueue } from './rollout-run.queue.js';
import { scenarioCheckQueue } from './scenario-check.queue.js';
import { scenarioChecklistQueue } from './scenario-checklist.queue.js';
import { scenarioStateQueue } from './scenario-state.queue.js';
import { scenarioTaskQueue } from './scenario-task.queue.js';
import { scenarioVerifyQueue } from './scenario-verify.queue.js';
import { skeletonAssembleQueue } from './skeleton-assemble.queue.js';
import { skeletonMethodQueue } from './skeleton-method.queue.js';
import { skeletonOperationsQueue } from './skeleton-operations.queue.js';
import { skeletonStateQueue } from './skeleton-state.queue.js';

export { baseJobOptions, defineQueue, type QueueDefinition } from './define-queue.js';
export {
  checkConfigQueue,
  checkProbeQueue,
  checkVerdictQueue,
  mineDedupQueue,
  mineJudgeQueue,
  mineTopicQueue,
  modelCallQueue,
  rolloutGroupQueue,
  rolloutRunQueue,
  scenarioCheckQueue,
  scenarioChecklistQueue,
  scenarioStateQueue,
  scenarioTaskQueue,
  scenarioVerifyQueue,
  skeletonAssembleQueue,
  skeletonMethodQueue,
  skeletonOperationsQueue,
  skeletonStateQueue,
};

/** Every queue of the fleet, by name. `envfleet worker --queues` chooses among these. */
export const QUEUES: Readonly<Record<string, QueueDefinition<never, never>>> = Object.fromEntries(
  [
    modelCallQueue,
    mineJudgeQueue,
    mineTopicQueue,
    mineDedupQueue,
    skeletonStateQueue,
    skeletonOperationsQueue,
    skeletonMethodQueue,
    skeletonAssembleQueue,
    checkConfigQueue,
    checkProbeQueue,
    checkVerdictQueue,
    scenarioStateQueue,
    scenarioTaskQueue,
    scenarioChecklistQueue,
    scenarioCheckQueue,
    scenarioVerifyQueue,
    rolloutRunQueue,
    rolloutGroupQueue,
  ].map(q => [q.name, q as unknown as QueueDefinition<never, never>]),
);
export const QUEUE_NAMES = Object.keys(QUEUES);
