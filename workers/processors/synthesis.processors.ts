import type { z } from 'zod';
import { checkConfigQueue } from '../../queues/check-config.queue.js';
import { checkProbeQueue } from '../../queues/check-probe.queue.js';
import { checkVerdictQueue } from '../../queues/check-verdict.queue.js';
import type { QueueDefinition } from '../../queues/define-queue.js';
import { mineDedupQueue } from '../../queues/mine-dedup.queue.js';
import { mineJudgeQueue } from '../../queues/mine-judge.queue.js';
import { mineTopicQueue } from '../../queues/mine-topic.queue.js';
import { pendingKey, type RunEnqueuer } from '../../queues/run-enqueuer.js';
import { skeletonAssembleQueue } from '../../queues/skeleton-assemble.queue.js';
import { skeletonMethodQueue } from '../../queues/skeleton-method.queue.js';
import { skeletonOperationsQueue } from '../../queues/skeleton-operations.queue.js';
import { skeletonStateQueue } from '../../queues/skeleton-state.queue.js';
import type { StageResult } from '../../queues/stage-queue.js';
import { scenarioCheckQueue } from '../../queues/scenario-check.queue.js';
import { scenarioChecklistQueue } from '../../queues/scenario-checklist.queue.js';
import { scenarioStateQueue } from '../../queues/scenario-state.queue.js';
import { scenarioTaskQueue } from '../../queues/scenario-task.queue.js';
import { scenarioVerifyQueue } from '../../queues/scenario-verify.queue.js';
import {
  dropScenario,
  generateScenarioChecklist,
  generateScenarioChecks,
  generateScenarioState,
  generateScenarioTask,
  scenarioIdOf,
  verifyScenario,
} from '../../src/scenarios/stages.js';
import type { ModelGateway } from '../../src/llm/gateway.js';
import type { SandboxRunner } from '../../src/sandbox/runner.js';
import {
  assembleEnvironment,
  buildMethod,
  buildOperations,
  buildState,
  decideEnvironment,
  dedupDescriptions,
  failEnv,
  inferTopic,
  judgeTask,
  makeTestConfig,
  probeEnvironment,
  type SynthesisDeps,
} from '../../src/synthesis/stages.js';
import type { SynthesisStore } from '../../src/synthesis/store.js';
import type { SettledHook, StageProcessor } from '../bootstrap.js';
import { rolloutGroupQueue } from '../../queues/rollout-group.queue.js';
import { rolloutRunQueue } from '../../queues/rollout-run.queue.js';
import { computeGroup, recordFailedRollout, runRollout } from '../../src/rollouts/stages.js';
import type { TrajectoryStream } from '../../src/rollouts/stream.js';

export interface SynthesisWiring {
  readonly gateway: ModelGateway;
  readonly sandbox: SandboxRunner;
  readonly store: SynthesisStore;
  readonly enqueuer: RunEnqueuer;
  readonly stream: TrajectoryStream;
}

type Entry = {
  readonly def: QueueDefinition<never, never>;
  readonly processor: StageProcessor<never, never>;
};

const result = (outcome: { ok: boolean; reason?: string | undefined }, detail?: Record<string, unknown>): StageResult => ({
  ok: outcome.ok,
  ...(outcome.reason ? { reason: outcome.reason } : {}),
  ...(detail ? { detail } : {}),
});

/** The processors of the synthesis queues: each runs its stage, then enqueues what follows. */
export function synthesisProcessors(w: SynthesisWiring): Entry[] {
  const deps = (signal: AbortSignal, logger: SynthesisDeps['logger']): SynthesisDeps => ({ gateway: w.gateway, sandbox: w.sandbox, store: w.store, signal, logger });
  const entry = <D extends z.ZodType<{ runId: string }>>(def: QueueDefinition<D, typeof skeletonStateQueue.result>, processor: StageProcessor<D, typeof skeletonStateQueue.result>): Entry => ({
    def: def as unknown as Entry['def'],
    processor: processor,
  });
  return [
    entry(mineJudgeQueue, async (d, c) => {
      const r = await judgeTask(deps(c.signal, c.logger), d.runId, d.taskId);
      return result({ ok: true }, r);
    }),
    entry(mineTopicQueue, async (d, c) => {
      const r = await inferTopic(deps(c.signal, c.logger), d.runId, d.taskId);
      return result({ ok: true }, r);
    }),
    entry(mineDedupQueue, async (d, c) => {
      const { envIds } = await dedupDescriptions(deps(c.signal, c.logger), d.runId);
      for (const envId of envIds) await w.enqueuer.add(skeletonStateQueue, { runId: d.runId, envId });
      return result({ ok: true }, { environments: envIds.length });
    }),
    entry(skeletonStateQueue, async (d, c) => {
      const r = await buildState(deps(c.signal, c.logger), d.runId, d.envId);
      if (r.ok) await w.enqueuer.add(skeletonOperationsQueue, d);
      return result(r);
    }),
    entry(skeletonOperationsQueue, async (d, c) => {
      const r = await buildOperations(deps(c.signal, c.logger), d.runId, d.envId);
      if (r.ok && r.operations) await w.enqueuer.methodsFlow(d.runId, d.envId, r.operations);
      return result(r, r.operations ? { operations: r.operations.length } : undefined);
    }),
    entry(skeletonMethodQueue, async (d, c) => result(await buildMethod(deps(c.signal, c.logger), d.runId, d.envId, d.op))),
    entry(skeletonAssembleQueue, async (d, c) => {
      const r = await assembleEnvironment(deps(c.signal, c.logger), d.runId, d.envId);
      if (r.ok) await w.enqueuer.add(checkConfigQueue, d);
      return result(r);
    }),
    entry(checkConfigQueue, async (d, c) => {
      const r = await makeTestConfig(deps(c.signal, c.logger), d.runId, d.envId);
      if (r.ok) await w.enqueuer.add(checkProbeQueue, { ...d, round: 1 });
      return result(r);
    }),
    entry(checkProbeQueue, async (d, c) => {
      const r = await probeEnvironment(deps(c.signal, c.logger), d.runId, d.envId, d.round);
      if (r.ok) await w.enqueuer.add(checkVerdictQueue, d);
      return result(r);
    }),
    entry(checkVerdictQueue, async (d, c) => {
      const r = await decideEnvironment(deps(c.signal, c.logger), d.runId, d.envId, d.round);
      if (r.nextRound && r.nextRound > d.round) await w.enqueuer.add(checkProbeQueue, { runId: d.runId, envId: d.envId, round: r.nextRound });
      return result(r, r.nextRound ? { nextRound: r.nextRound } : undefined);
    }),
    entry(scenarioStateQueue, async (d, c) => {
      const r = await generateScenarioState(deps(c.signal, c.logger), d.runId, d.envId, d.index, d.total);
      if (r.ok) await w.enqueuer.add(scenarioTaskQueue, { runId: d.runId, scenarioId: r.scenarioId });
      return result(r, { scenarioId: r.scenarioId });
    }),
    entry(scenarioTaskQueue, async (d, c) => {
      const r = await generateScenarioTask(deps(c.signal, c.logger), d.runId, d.scenarioId);
      if (r.ok) await w.enqueuer.add(scenarioChecklistQueue, d);
      return result(r);
    }),
    entry(scenarioChecklistQueue, async (d, c) => {
      const r = await generateScenarioChecklist(deps(c.signal, c.logger), d.runId, d.scenarioId);
      if (r.ok) await w.enqueuer.add(scenarioCheckQueue, d);
      return result(r);
    }),
    entry(scenarioCheckQueue, async (d, c) => {
      const r = await generateScenarioChecks(deps(c.signal, c.logger), d.runId, d.scenarioId);
      if (r.ok && r.verify) await w.enqueuer.add(scenarioVerifyQueue, d);
      return result(r);
    }),
    entry(scenarioVerifyQueue, async (d, c) => result(await verifyScenario(deps(c.signal, c.logger), d.runId, d.scenarioId))),
    entry(rolloutRunQueue, async (d, c) => {
      const t = await runRollout({ ...deps(c.signal, c.logger), stream: w.stream }, d.runId, d.scenarioId, d.mode, d.sample);
      return result({ ok: true }, { trajectoryId: t.id, reward: t.reward, termination: t.termination.reason });
    }),
    entry(rolloutGroupQueue, async d => {
      const g = await computeGroup(w.store, d.runId, d.scenarioId, d.mode, d.samples);
      return result({ ok: true }, { mean: g.mean, std: g.std, passAtK: g.passAtK });
    }),
  ];
}

/**
 * When a synthesis job is finished for good: it leaves its run's outstanding set, and if it
 * failed (attempts exhausted, or given up) its environment ends with the recorded reason.
 */
export function synthesisSettled(w: Pick<SynthesisWiring, 'store' | 'gateway' | 'sandbox' | 'stream'>, queue: string): SettledHook {
  return async (data, jobId, outcome) => {
    const d = data as { runId?: string; envId?: string };
    if (!d.runId) return;
    // A method that could not be written is not the end of its environment: skeleton.assemble
    // regenerates missing methods. Every other stage's final failure ends the environment.
    const code = /^\[([A-Z_]+)\]/.exec(outcome.reason ?? '')?.[1] ?? 'JOB_FAILED';
    const scenarioId = (data as { scenarioId?: string }).scenarioId;
    if (outcome.status === 'failed' && code === 'RUN_CANCELLED' && queue.startsWith('rollout.')) {
      // not run: a cancelled run's episodes leave no record
    } else if (outcome.status === 'failed' && queue === 'rollout.run') {
      const r = data as { scenarioId: string; mode: 'non-conversational' | 'conversational'; sample: number };
      const reason = /SANDBOX|ENV_|SOURCE|CLASS|STATE/.test(code) ? 'environment-error' : 'model-error';
      await recordFailedRollout({ store: w.store, stream: w.stream }, d.runId, r.scenarioId, r.mode, r.sample, reason, outcome.reason ?? 'the job failed');
    } else if (outcome.status === 'failed' && queue === 'rollout.group') {
      // nothing to drop: the trajectories are recorded
    } else if (outcome.status === 'failed' && scenarioId) {
      await dropScenario(w, d.runId, scenarioId, queue, code, outcome.reason ?? 'the job failed');
    } else if (outcome.status === 'failed' && d.envId && queue === 'scenario.state') {
      const index = (data as { index?: number }).index ?? 0;
      await dropScenario(w, d.runId, scenarioIdOf(d.runId, d.envId, index), queue, code, outcome.reason ?? 'the job failed');
    } else if (outcome.status === 'failed' && d.envId && queue !== 'skeleton.method') {
      await failEnv({ gateway: w.gateway, sandbox: w.sandbox, store: w.store }, d.runId, d.envId, queue, code, outcome.reason ?? 'the job failed');
    }
    await w.store.donePending(d.runId, pendingKey(queue, jobId));
    await w.store.tick(d.runId);
  };
}
