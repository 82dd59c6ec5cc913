import type { CodeLanguage } from '../sandbox/bundle.js';
import type { SandboxLimits } from '../sandbox/limits.js';

/** The languages `envfleet synth --language` writes environments in. */
export const SYNTH_LANGUAGES: readonly CodeLanguage[] = ['js', 'python'];

/** The language a run synthesizes its environments in: absent (every run made before Python synthesis, and the default) is JavaScript. */
export const synthLanguageOf = (options: Pick<RunOptions, 'language'>): CodeLanguage => options.language ?? 'js';

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
  /**
   * The language every synthesis stage writes the run's environments in (`envfleet synth --language`):
   * `python` for EnvScaler-style Python classes run by the Python runtime. Absent is JavaScript (kept
   * absent for JavaScript runs, so their frozen options are as they were before the option existed).
   */
  readonly language?: CodeLanguage;
  /** Model per stage, for lineage. */
  readonly models: Readonly<Record<string, string>>;
}
