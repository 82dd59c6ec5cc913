import type { StageResult } from '../queues/define-pipeline.js';
import type { STAGES, StageOutputs } from '../queues/pipeline.js';
import type { Logger } from '../src/logger.js';
import { computeGroup, runRollout } from '../src/rollouts/stages.js';
import type { StartPacer } from '../src/rollouts/start-pacer.js';
import type { TrajectoryStream } from '../src/rollouts/stream.js';
import { generateScenarioChecklist, generateScenarioChecks, generateScenarioState, generateScenarioTask, verifyScenario } from '../src/scenarios/stages.js';
import type { StageDeps } from '../src/stage-deps.js';
import type { StageProcessors } from './stage-workers.js';
import { decideEnvironment, makeTestConfig, probeEnvironment } from '../src/synthesis/check.js';
import { dedupDescriptions, inferTopic, judgeTask } from '../src/synthesis/mining.js';
import { assembleEnvironment, buildMethod, buildOperations, buildState } from '../src/synthesis/skeleton.js';

/** What a processor gets besides its job data: the stage dependencies bound to the job's signal and logger. */
export interface ProcessorDeps extends StageDeps {
  readonly stream: TrajectoryStream;
  /** Paces episode starts (rollout.run) in this process; absent when ENVFLEET_ROLLOUT_START_PACING leaves it off. */
  readonly pacer?: StartPacer | undefined;
  readonly signal: AbortSignal;
  readonly logger: Logger;
}


/** An item outcome as a job result: ok, the reason it did not go on, and any detail. */
const outcome = (o: { readonly ok: boolean; readonly reason?: string | undefined }, detail?: Record<string, unknown>): StageResult => ({
  ok: o.ok,
  ...(o.reason ? { reason: o.reason } : {}),
  ...(detail ? { detail } : {}),
});

/** The processor of every stage of envfleet's pipeline. Adding a stage adds one entry here. */
export const PROCESSORS: StageProcessors<typeof STAGES, StageOutputs, ProcessorDeps> = {
  'mine.judge': { run: (d, deps) => judgeTask(deps, d.runId, d.taskId), result: o => outcome({ ok: true }, o) },
  'mine.topic': { run: (d, deps) => inferTopic(deps, d.runId, d.taskId), result: o => outcome({ ok: true }, o) },
  'mine.dedup': { run: (d, deps) => dedupDescriptions(deps, d.runId), result: o => outcome({ ok: true }, { environments: o.envIds.length }) },
  'skeleton.state': { run: (d, deps) => buildState(deps, d.runId, d.envId), result: o => outcome(o) },
  'skeleton.operations': { run: (d, deps) => buildOperations(deps, d.runId, d.envId), result: o => outcome(o, o.operations ? { operations: o.operations.length } : undefined) },
  'skeleton.method': { run: (d, deps) => buildMethod(deps, d.runId, d.envId, d.op), result: o => outcome(o) },
  'skeleton.assemble': { run: (d, deps) => assembleEnvironment(deps, d.runId, d.envId), result: o => outcome(o) },
  'check.config': { run: (d, deps) => makeTestConfig(deps, d.runId, d.envId), result: o => outcome(o) },
  'check.probe': { run: (d, deps) => probeEnvironment(deps, d.runId, d.envId, d.round), result: o => outcome(o) },
  'check.verdict': { run: (d, deps) => decideEnvironment(deps, d.runId, d.envId, d.round), result: o => outcome(o, o.nextRound ? { nextRound: o.nextRound } : undefined) },
  'scenario.state': { run: (d, deps) => generateScenarioState(deps, d.runId, d.envId, d.index, d.total), result: o => outcome(o, { scenarioId: o.scenarioId }) },
  'scenario.task': { run: (d, deps) => generateScenarioTask(deps, d.runId, d.scenarioId), result: o => outcome(o) },
  'scenario.checklist': { run: (d, deps) => generateScenarioChecklist(deps, d.runId, d.scenarioId), result: o => outcome(o) },
  'scenario.check': { run: (d, deps) => generateScenarioChecks(deps, d.runId, d.scenarioId), result: o => outcome(o) },
  'scenario.verify': { run: (d, deps) => verifyScenario(deps, d.runId, d.scenarioId), result: o => outcome(o) },
  'rollout.run': {
    run: (d, deps) => runRollout(deps, d.runId, d.scenarioId, d.mode, d.sample, d.policy),
    result: t => outcome({ ok: true }, { trajectoryId: t.id, reward: t.reward, termination: t.termination.reason }),
  },
  'rollout.group': {
    run: (d, deps) => computeGroup(deps.store, d.runId, d.scenarioId, d.mode, d.samples, d.policy),
    result: g => outcome({ ok: true }, { mean: g.mean, std: g.std, passAtK: g.passAtK }),
  },
};
