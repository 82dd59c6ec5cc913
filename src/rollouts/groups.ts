import { groupIdOf } from '../runs/ids.js';
import type { RolloutMode, Trajectory } from './types.js';

/** What group statistics read of a trajectory (present in full and archived documents alike). */
export type GroupMember = Pick<Trajectory, 'id' | 'sample' | 'reward' | 'solved' | 'termination'>;

/** Statistics of the K samples of one scenario in one mode (a GRPO-style group). */
export interface GroupStats {
  readonly id: string;
  readonly runId: string;
  readonly scenarioId: string;
  readonly environmentId: string;
  readonly mode: RolloutMode;
  /** The policy generation (absent: the run's first). */
  readonly policy?: string;
  /** The generation's policy model (null: the rollout.policy profile's) and version (null: none), from its rollout settings. */
  readonly policyModel?: string | null;
  readonly policyVersion?: string | null;
  readonly samples: number;
  readonly trajectoryIds: readonly string[];
  /** Rewards in sample order; a trajectory without a reward counts 0. */
  readonly rewards: readonly number[];
  /**
   * Samples without a reward among them (counted 0 above): episodes the model endpoint or the environment failed
   * for good (`model-error`, `environment-error`), checks that could not run, samples with no trajectory. Scores
   * are over the planned samples, so an environment that breaks episodes does not look better; a trainer that
   * must not learn from an outage's zeros skips groups with unscored > 0.
   */
  readonly unscored: number;
  readonly mean: number;
  /** Population standard deviation of the rewards. */
  readonly std: number;
  readonly solved: number;
  /** Fraction of samples that solved the scenario. */
  readonly passAt1: number;
  /** Whether at least one of the K samples solved it (pass@K with n = K). */
  readonly passAtK: boolean;
  readonly terminations: Record<string, number>;
}

export function groupStats(runId: string, scenarioId: string, environmentId: string, mode: RolloutMode, trajectories: readonly GroupMember[], planned = trajectories.length, policy?: string): GroupStats {
  const sorted = [...trajectories].sort((a, b) => a.sample - b.sample);
  // Scores are over the planned samples: one without a trajectory counts 0.
  const rewards = [...sorted.map(t => t.reward ?? 0), ...Array<number>(Math.max(0, planned - sorted.length)).fill(0)];
  const n = rewards.length;
  const mean = n ? rewards.reduce((a, b) => a + b, 0) / n : 0;
  const std = n ? Math.sqrt(rewards.reduce((a, r) => a + (r - mean) ** 2, 0) / n) : 0;
  const solved = sorted.filter(t => t.solved).length;
  const terminations: Record<string, number> = {};
  for (const t of sorted) terminations[t.termination.reason] = (terminations[t.termination.reason] ?? 0) + 1;
  if (planned > sorted.length) terminations['missing'] = planned - sorted.length;
  const round = (x: number) => Math.round(x * 1e6) / 1e6;
  return {
    id: groupIdOf(scenarioId, mode, policy),
    ...(policy ? { policy } : {}),
    runId,
    scenarioId,
    environmentId,
    mode,
    samples: n,
    trajectoryIds: sorted.map(t => t.id),
    rewards,
    unscored: sorted.filter(t => t.reward === null).length + Math.max(0, planned - sorted.length),
    mean: round(mean),
    std: round(std),
    solved,
    passAt1: n ? round(solved / n) : 0,
    passAtK: solved > 0,
    terminations,
  };
}
