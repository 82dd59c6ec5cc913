import { z } from 'zod';
import { baseJobOptions, defineQueue } from './define-queue.js';

/** What every synthesis stage job returns: small, never the artifacts (they live in the run store). */
export const StageResult = z.strictObject({
  ok: z.boolean(),
  reason: z.string().optional(),
  detail: z.record(z.string(), z.unknown()).optional(),
});
export type StageResult = z.infer<typeof StageResult>;

export const RunRef = z.strictObject({ runId: z.string().min(1) });
export const TaskRef = z.strictObject({ runId: z.string().min(1), taskId: z.string().min(1) });
export const EnvRef = z.strictObject({ runId: z.string().min(1), envId: z.string().min(1) });
export const MethodRef = z.strictObject({ runId: z.string().min(1), envId: z.string().min(1), op: z.string().min(1) });
export const RoundRef = z.strictObject({ runId: z.string().min(1), envId: z.string().min(1), round: z.number().int().positive() });

/** A synthesis stage queue: data is references only; identity is the whole data (ids are deterministic). */
export function defineStageQueue<D extends z.ZodType<{ runId: string }>>(name: string, data: D, description: string) {
  return defineQueue({
    name,
    description,
    data,
    result: StageResult,
    jobOptions: jobs => baseJobOptions(jobs),
    identity: d => d,
  });
}
export const StateRef = z.strictObject({ runId: z.string().min(1), envId: z.string().min(1), index: z.number().int().nonnegative(), total: z.number().int().positive() });
export const ScenarioRef = z.strictObject({ runId: z.string().min(1), scenarioId: z.string().min(1) });
export const RolloutMode = z.enum(['non-conversational', 'conversational']);
export const RolloutRef = z.strictObject({ runId: z.string().min(1), scenarioId: z.string().min(1), mode: RolloutMode, sample: z.number().int().nonnegative() });
export const GroupRef = z.strictObject({ runId: z.string().min(1), scenarioId: z.string().min(1), mode: RolloutMode, samples: z.number().int().positive() });
