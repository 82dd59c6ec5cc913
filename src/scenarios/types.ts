export type ScenarioStatus = 'building' | 'ready' | 'dropped';

/** How a run's scenarios are made (doc 'scenario-config', frozen at the first `envfleet scenarios`). */
export interface ScenarioConfig {
  readonly perEnv: number;
  /** Reference policy model for the solvability gate, or null for no gate. */
  readonly verifyWith: string | null;
  readonly tries: number;
}

/** One scenario: an initial state, a task in two forms, and a checklist with check functions. */
export interface ScenarioRecord {
  readonly id: string;
  readonly runId: string;
  readonly environmentId: string;
  /** Which of the environment's M states this is. */
  readonly index: number;
  status: ScenarioStatus;
  initialState?: Record<string, unknown>;
  stateHash?: string;
  task?: string;
  userGoal?: { goal: string; facts: string[] };
  expectedTools?: string[];
  checklistItems?: string[];
  checklist?: { item: string; check: string }[];
  validation?: {
    /** Each check run on the initial state (as both final and initial): all must be booleans without error. */
    onInitialState: { item: string; passed: boolean }[];
    /** Check functions sent back to the model, with what happened. */
    repairs: { item: string; problem: string }[];
    /** The solvability gate (`--verify-with`): reference rollouts, in order, until one solved it. */
    verification?: { model: string; tries: { reward: number | null; termination: string }[]; solved: boolean };
  };
  dropReason?: { stage: string; code: string; message: string } | null;
  lineage: { runId: string; environmentId: string; models: Record<string, string>; prompts: Record<string, string>; createdAt: string };
}
