import type { CheckSpec } from '../sandbox/bundle.js';
import type { ImportedFrom, ImportSource, ItemFailure } from '../synthesis/types.js';

export type ScenarioStatus = 'building' | 'ready' | 'dropped';

/** Why a scenario was dropped; `item` names the checklist item whose check function failed, when one did (scenario.check). */
export interface ScenarioDropReason extends ItemFailure {
  readonly item?: string;
}

/** How a run's scenarios are made (doc 'scenario-config', frozen at the first `envfleet scenarios`). */
export interface ScenarioConfig {
  readonly perEnv: number;
  /** Reference policy model for the solvability gate, or null for no gate. */
  readonly verifyWith: string | null;
  readonly tries: number;
}

export interface ScenarioValidation {
  /** Each check run on the initial state (as both final and initial): all must be booleans without error. */
  readonly onInitialState: readonly { readonly item: string; readonly passed: boolean }[];
  /** Check functions sent back to the model, with what happened. */
  readonly repairs: readonly { readonly item: string; readonly problem: string }[];
  /** The solvability gate (`--verify-with`): reference rollouts, in order, until one solved it. */
  readonly verification?: {
    readonly model: string;
    readonly tries: readonly { readonly reward: number | null; readonly termination: string }[];
    readonly solved: boolean;
  };
}

/** One scripted user turn: its user messages, and the tools offered from this turn on (BFCL's missed functions). */
export interface ScriptedTurn {
  readonly messages: readonly string[];
  readonly addTools?: readonly string[];
}

export interface ScenarioScript {
  readonly turns: readonly ScriptedTurn[];
  /** Tools of the environment never offered in this scenario (BFCL's excluded functions). */
  readonly excludedTools?: readonly string[];
  /** Tools withheld until the turn that adds them (the union of the turns' addTools). */
  readonly withheldTools?: readonly string[];
  /** Agent steps (assistant messages) allowed per turn; the episode ends with step-limit past it (BFCL: 20). They count toward the run's step limit too. */
  readonly maxStepsPerTurn?: number;
}

/** One scenario: an initial state, a task in two forms, and a checklist with check functions. Updated by writing a new record, never in place. */
export interface ScenarioRecord {
  readonly id: string;
  readonly runId: string;
  readonly environmentId: string;
  /** Which of the environment's M states this is. */
  readonly index: number;
  readonly status: ScenarioStatus;
  readonly initialState?: Readonly<Record<string, unknown>>;
  /**
   * `initialState` as Python reads the source's text, where JavaScript's reading differs (an imported EnvScaler
   * init_config with `5.0` or an integer past 2^53): the Python sessions of the scenario are made from this text.
   */
  readonly initialStateJson?: string;
  readonly stateHash?: string;
  readonly task?: string;
  readonly userGoal?: { readonly goal: string; readonly facts: readonly string[] };
  readonly expectedTools?: readonly string[];
  readonly checklistItems?: readonly string[];
  /**
   * Check functions: JavaScript `check(finalState, initialState)` unless `language` is 'python' (EnvScaler's `check_func(final_state)`).
   * `episode: true` (Python): the check reads the episode too (the transcript; imported τ-bench `outputs`, BFCL's per-turn judgement).
   */
  readonly checklist?: readonly CheckSpec[];
  /**
   * The scenario has no checks by design (EnvScaler's SFT scenarios): its episodes get no reward
   * (reward null, checksError UNSCORED), and the RL exports leave it out.
   */
  readonly unscored?: boolean;
  /**
   * A scripted multi-turn scenario (imported BFCL entries): the user's turns are fixed, so no
   * user-simulator model is called whatever the rollout mode. The first turn opens the episode; each
   * time the agent answers with text (no tool call) the next turn is appended; the episode ends after
   * the last turn's answer. The environment's state is recorded at the end of every turn
   * (episode.turn_states for episode checks).
   */
  readonly script?: ScenarioScript;
  readonly validation?: ScenarioValidation;
  readonly dropReason?: ScenarioDropReason | null;
  readonly lineage: {
    readonly runId: string;
    readonly environmentId: string;
    readonly models: Readonly<Record<string, string>>;
    readonly prompts: Readonly<Record<string, string>>;
    readonly createdAt: string;
    /** Where an imported scenario comes from (`envfleet import`); absent for generated ones. */
    readonly source?: ImportSource;
    readonly original?: ImportedFrom;
  };
}
