import type { AnyStages, DataOf, EntryInputsOf, NameOf, OutputsOf, Pipeline, StageResult } from '../queues/define-pipeline.js';
import { createRunEnqueuer, pendingKey, type RunEnqueuer } from '../queues/enqueuer.js';
import { startQueueWorker, type JobOutcome, type ProcessorContext, type QueueWorker } from './bootstrap.js';
import { ERROR_CODES, RunGoneError, codeOf } from '../src/errors.js';
import type { FleetContext } from './fleet.js';

/**
 * How a stage's job is processed: `run` calls the stage's function in src/ and returns its output
 * (the stages it feeds read it, as the pipeline declares); `result` is the small summary the job
 * returns (shown in bull-board).
 */
export interface StageProcessor<In, Out, Deps> {
  run(data: In, deps: Deps): Promise<Out>;
  result(output: Out): StageResult;
}

/** One processor per stage of a pipeline. */
export type StageProcessors<St extends AnyStages, Out extends OutputsOf<St>, Deps> = { readonly [S in NameOf<St>]: StageProcessor<DataOf<St, S>, Out[S], Deps> };

/** Ends the item of a job of `stage` that failed for good (the declaration says how its kind leaves the pipeline). */
export type EndItem<St extends AnyStages> = <S extends NameOf<St>>(stage: S, data: DataOf<St, S>, failure: Extract<JobOutcome, { status: 'failed' }>) => Promise<void>;

export interface StageWorkersOptions<St extends AnyStages, Out extends OutputsOf<St>, En extends EntryInputsOf, Deps> {
  readonly pipeline: Pipeline<St, Out, En>;
  readonly processors: StageProcessors<St, Out, Deps>;
  /** The stages to consume (queues of the pipeline). */
  readonly stages: readonly NameOf<St>[];
  /** A job's dependencies, from the fleet and the job's signal and logger. */
  deps(job: ProcessorContext): Deps;
  readonly endItem: EndItem<St>;
  /** Overrides the configured concurrency of every stage. */
  readonly concurrency?: number;
}

/**
 * Starts one worker per stage: a job runs its stage's processor, enqueues what the stage feeds, and
 * returns the processor's summary. A job finished for good leaves its run's outstanding set; one that
 * failed ends its item when the stage's declaration says so.
 */
export function startStageWorkers<St extends AnyStages, Out extends OutputsOf<St>, En extends EntryInputsOf, Deps>(
  ctx: FleetContext,
  options: StageWorkersOptions<St, Out, En, Deps>,
): { readonly workers: QueueWorker[]; readonly enqueuer: RunEnqueuer<St, Out, En> } {
  const { pipeline } = options;
  const enqueuer = createRunEnqueuer(pipeline, ctx.redis, { prefix: ctx.config.redis.prefix, jobs: ctx.config.jobs, store: ctx.store });
  const start = <S extends NameOf<St>>(stage: S): QueueWorker => {
    const spec = pipeline.stages[stage]!;
    const processor = options.processors[stage];
    const configured = spec.concurrency === 'rollout' ? ctx.config.worker.rolloutConcurrency : ctx.config.worker.concurrency;
    return startQueueWorker(
      pipeline.queues[stage],
      async (data, job) => {
        // Status shows what is running per stage from these marks (a crash leaves a mark until the job's next start or end).
        const jobId = job.job.id ?? '';
        await ctx.store.running(data.runId, stage, jobId, true);
        try {
          let output: Out[S];
          try {
            output = await processor.run(data, options.deps(job));
          } catch (err) {
            // A job whose run is gone (deleted, or Redis restarted without its data, where jobs in flight then enqueued
            // what they feed) fails on whatever it reads first: a document "not found", the run's options. Said as such.
            // (Not asked for an endpoint's answer, a 429 say: those come by the thousand, and say nothing of the run.)
            const code = codeOf(err);
            if (code !== 'RUN_GONE' && ERROR_CODES[code].area !== 'model' && !(await ctx.store.getRun(data.runId).catch(() => true))) throw new RunGoneError(data.runId, undefined, false);
            throw err;
          }
          await enqueuer.follow(stage, data, output);
          return processor.result(output);
        } finally {
          await ctx.store.running(data.runId, stage, jobId, false);
        }
      },
      {
        config: ctx.config,
        connection: ctx.workerConnection,
        logger: ctx.logger,
        runControl: ctx.runControl,
        metrics: ctx.metrics,
        concurrency: options.concurrency ?? configured,
        // A job parked or ended before its processor ran (taken again after a worker died with it, then parked by a
        // pause or ended by a cancel) clears the dead worker's running mark here: status showed it active for ever.
        async onParked(raw, jobId) {
          const runId = (raw as { runId?: unknown } | null)?.runId;
          if (typeof runId === 'string') await ctx.store.running(runId, stage, jobId, false);
        },
        async onWaited(raw, _jobId, code) {
          const runId = (raw as { runId?: unknown } | null)?.runId;
          if (typeof runId === 'string') await ctx.store.count(runId, 'waits', code);
        },
        async onSettled(raw, jobId, outcome) {
          const runId = (raw as { runId?: unknown } | null)?.runId;
          if (typeof runId !== 'string') return;
          // Only a job given up before its processor ran (its run cancelled, or stalled too often) can hold a mark the
          // processor did not clear: no round trip more for other jobs (an endpoint outage fails episodes by the hundred).
          if (outcome.status === 'failed' && (outcome.code === 'RUN_CANCELLED' || outcome.code === 'JOB_FAILED')) await ctx.store.running(runId, stage, jobId, false);
          if (outcome.status === 'failed' && spec.onFailure === 'ends-item') {
            // A job can fail for good because its data is invalid: then there is no item to end.
            const data = pipeline.queues[stage].data.safeParse(raw);
            if (data.success) await options.endItem(stage, data.data, outcome);
            else ctx.logger.warn({ queue: stage, jobId, code: outcome.code }, 'a job with invalid data failed; no item to end');
          }
          // Counted once, and not for a run that is gone (that would make its keys again in an emptied Redis).
          await ctx.store.finishPending(runId, pendingKey(stage, jobId));
        },
      },
    );
  };
  return { workers: options.stages.map(s => start(s)), enqueuer };
}
