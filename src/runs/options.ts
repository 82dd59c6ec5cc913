import type { SandboxLimits } from '../sandbox/limits.js';

/** Options of a run, frozen into its record at creation so every worker, on any machine, uses the same ones. */
export interface RunOptions {
  readonly minUsefulness: number;
  readonly minModelability: number;
  /** Cosine similarity at or above which a description duplicates a kept one. */
  readonly dedupThreshold: number;
  /** At most this many environments are built (0 = no limit). */
  readonly maxEnvs: number;
  readonly probeSteps: number;
  /** Kept when (pass + warning) / judged steps reaches this. */
  readonly notFailThreshold: number;
  /** Rounds in which skeleton.assemble sends failing methods back to the model. */
  readonly assembleRounds: number;
  /** Repair rounds for an environment the checker rejected (methods regenerated, then re-probed). */
  readonly verdictRepairRounds: number;
  readonly limits: SandboxLimits;
  /** Model per stage, for lineage. */
  readonly models: Readonly<Record<string, string>>;
}
