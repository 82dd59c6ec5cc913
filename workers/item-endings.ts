import { STAGES, type PipelineStage, type StageData } from '../queues/pipeline.js';
import { countCancelled } from '../queues/run-jobs.js';
import { ERROR_CODES } from '../src/errors.js';
import { recordFailedRollout } from '../src/rollouts/stages.js';
import type { TrajectoryStream } from '../src/rollouts/stream.js';
import type { RunStore } from '../src/runs/store.js';
import { dropScenario, dropScenarioCancelled } from '../src/scenarios/stages.js';
import { endEnvCancelled, failEnv } from '../src/synthesis/environments.js';
import type { EndItem } from './stage-workers.js';

/**
 * How an item of envfleet's pipeline ends when a job of its stage failed for good, by the item's kind
 * (queues/pipeline.ts ITEMS): a task or the run's mining is counted as failed at the stage, an
 * environment ends failed, a scenario is dropped, an episode is recorded as a trajectory without a
 * reward (a cancelled run's episodes leave no record), a group needs nothing.
 */
export function endEnvfleetItem(deps: { readonly store: RunStore; readonly stream: TrajectoryStream }): EndItem<typeof STAGES> {
  return async <S extends PipelineStage>(stage: S, data: StageData<S>, failure: { code: keyof typeof ERROR_CODES; message: string }) => {
    const id = (STAGES[stage].item as { id(d: StageData<S>): string }).id(data);
    // Recorded as the job's failedReason reads: `[CODE] message`.
    const reason = `[${failure.code}] ${failure.message}`;
    // A job of a cancelled run (running when the cancel came, so not removed by it): its item was ended by the cancel
    // (an environment or scenario marked so) or is no item any more (an episode); counted where it stopped, so the
    // stage's row adds up (it was counted nowhere).
    if (failure.code === 'RUN_CANCELLED') {
      await countCancelled(deps.store, data.runId, stage);
      // (an item made after the cancel marked what was being built, by a job that ran on meanwhile: marked now)
      if (STAGES[stage].item.kind === 'environment') await endEnvCancelled(deps.store, data.runId, id, failure.message);
      if (STAGES[stage].item.kind === 'scenario') await dropScenarioCancelled(deps.store, data.runId, id, failure.message);
      return;
    }
    switch (STAGES[stage].item.kind) {
      case 'run':
      case 'task':
        await deps.store.count(data.runId, stage, `failed:${failure.code}`);
        await deps.store.noteReason(data.runId, stage, `failed:${failure.code}`, `${id}: ${reason}`);
        return;
      case 'environment':
        await failEnv(deps, data.runId, id, stage, failure.code, reason);
        return;
      case 'scenario':
        await dropScenario(deps, data.runId, id, stage, failure.code, reason);
        return;
      case 'episode': {
        const d = data as StageData<'rollout.run'>;
        const termination = ERROR_CODES[failure.code].area === 'environment' ? 'environment-error' : 'model-error';
        await recordFailedRollout(deps, d.runId, d.scenarioId, d.mode, d.sample, termination, reason, d.policy);
        return;
      }
      case 'group':
        return;
    }
  };
}
