import type { ChatMessage } from '../llm/gateway.js';

export const ROLLOUT_MODES = ['non-conversational', 'conversational'] as const;
export type RolloutMode = (typeof ROLLOUT_MODES)[number];

/** Why an episode ended: every trajectory records exactly one. */
export const TERMINATIONS = ['agent-finished', 'user-stopped', 'step-limit', 'time-limit', 'token-limit', 'content-filtered', 'unparsed-tool-call', 'model-error', 'environment-error', 'tool-ended'] as const;
export type Termination = (typeof TERMINATIONS)[number];

export interface RolloutLimits {
  /** Agent turns (assistant messages); seed: 30 non-conversational, 40 conversational. */
  readonly maxSteps: number;
  /** Prompt + completion tokens of the whole episode (policy and user simulator); 0 = no limit. */
  readonly maxTokens: number;
  /** Wall time of the episode. */
  readonly maxWallMs: number;
}

export interface CheckResult {
  readonly item: string;
  readonly passed: boolean;
  readonly error?: string;
  readonly errorCode?: string;
  /** The check could not run: its Python interpreter was taken down by another environment (no score is its measure). */
  readonly lostWith?: 'interpreter';
}

export interface StepRecord {
  /** Agent turn (1-based). */
  readonly turn: number;
  readonly tool: string;
  readonly toolCallId: string;
  /** The arguments exactly as the model sent them (a string). */
  readonly rawArguments: string;
  readonly result: unknown;
  readonly runtimeError: string | null;
  /** Time inside the sandbox, microseconds. */
  readonly us: number;
}

export interface PolicyTurn {
  readonly turn: number;
  readonly model: string;
  readonly finishReason: string;
  readonly logprobs?: readonly number[];
  readonly tokenIds?: readonly number[];
  readonly promptTokenIds?: readonly number[];
  readonly promptTokenIdsAppended?: readonly number[];
}

/** One trajectory: the record written to trajectories/*.jsonl (docs/formats.md). */
export interface Trajectory {
  readonly id: string;
  readonly runId: string;
  readonly scenarioId: string;
  readonly environmentId: string;
  readonly mode: RolloutMode;
  /** Sample index within the scenario's group. */
  readonly sample: number;
  /** The policy generation, when it is not the run's first (see `envfleet rollouts --policy-version`). */
  readonly policy?: string;
  readonly model: string;
  readonly userModel: string | null;
  readonly sampling: { readonly temperature: number; readonly maxTokens: number };
  /** The sampling parameters the policy's requests carried: temperature where the profile sends it, seed, top_k… (absent when no request was made). */
  readonly samplingSent?: Readonly<Record<string, unknown>>;
  /** `envfleet rollouts --policy-version` (null when none was given; absent in trajectories of older versions). */
  readonly policyVersion?: string | null;
  /**
   * One record per policy reply, in order: the model the server reported, the finish reason, and, when the
   * profile asked for them (`logprobs`, `returnTokenIds`) and the endpoint returned them, the completion's
   * log-probabilities and token ids and the prompt's token ids — only what the prompt appended to the
   * previous turn's prompt and completion when it extends them (`promptTokenIdsAppended`).
   */
  readonly policyTurns?: readonly PolicyTurn[];
  readonly tools: readonly unknown[];
  /** OpenAI chat format: system, user, assistant (with tool_calls and reasoning_content as returned), tool. */
  readonly messages: readonly ChatMessage[];
  /** The user simulator's own transcript (conversational mode), for auditing. */
  readonly userMessages: readonly ChatMessage[] | null;
  readonly steps: readonly StepRecord[];
  readonly checks: readonly CheckResult[];
  /** Fraction of checks true on the final state; null when it could not be computed (see checksError). */
  readonly reward: number | null;
  readonly solved: boolean;
  readonly checksError: string | null;
  readonly termination: { readonly reason: Termination; readonly detail: string | null };
  readonly turns: number;
  readonly usage: { readonly promptTokens: number; readonly completionTokens: number; readonly modelCalls: number };
  readonly timings: { readonly startedAt: string; readonly wallMs: number; readonly envUs: number };
  /** The final state (null when none could be read); in the worker that ran the episode, its JSON text as a RawJson until it is stored. */
  readonly finalState: unknown;
  /** A scripted multi-turn episode (BFCL): the environment's state at the end of each user turn, as its episode checks saw it (`envfleet sandbox check --episode` re-scores from it). Absent otherwise. */
  readonly turnStates?: readonly unknown[];
  readonly lineage: Readonly<Record<string, unknown>>;
}

/** The parts of a trajectory that only the dataset files keep once the sink has written them. */
export type TranscriptField = 'tools' | 'messages' | 'userMessages' | 'steps' | 'finalState' | 'policyTurns' | 'turnStates';

/**
 * What stays in Redis of a trajectory once the sink has written its line to a shard and synced it:
 * everything but the transcript, the steps and the final state (the bulk of it), and where the full
 * line is. Group statistics, status and retries need only this.
 */
export type ArchivedTrajectory = Omit<Trajectory, TranscriptField> & {
  readonly archived: { readonly path: string };
};

/** A trajectory document in the run store: full until the sink archives it. */
export type StoredTrajectory = Trajectory | ArchivedTrajectory;

export const isArchived = (t: StoredTrajectory): t is ArchivedTrajectory => 'archived' in t;

/** A trajectory without its transcript, steps and final state: the archived form without its path. */
export type TrajectorySummary = Omit<Trajectory, TranscriptField>;

/**
 * The summary of a trajectory. The worker that ran the episode publishes it with the trajectory's id
 * (src/rollouts/stream.ts), so that the sink need not parse the whole document to archive it.
 */
export function trajectorySummary(t: Trajectory): TrajectorySummary {
  const { tools: _tools, messages: _messages, userMessages: _userMessages, steps: _steps, finalState: _finalState, policyTurns: _policyTurns, turnStates: _turnStates, ...rest } = t;
  return rest;
}

/** The archived form of a trajectory whose line is in the shard at `path`. */
export function archivedTrajectory(t: StoredTrajectory, path: string): ArchivedTrajectory {
  if (isArchived(t)) return { ...t, archived: { path } };
  return { ...trajectorySummary(t), archived: { path } };
}

/** Rollout settings of a run, frozen at the first `envfleet rollouts` (doc 'rollout-config'). */
export interface RolloutConfig {
  readonly samples: number;
  readonly modes: readonly RolloutMode[];
  readonly limits: Readonly<Record<RolloutMode, RolloutLimits>>;
  readonly policyModel: string | null;
  readonly userModel: string | null;
  readonly temperature: number;
  readonly maxTokensPerTurn: number;
  /** `--policy-version`, absent when none was given; the first generation's, or that of the generation this document belongs to. */
  readonly policyVersion?: string;
}
