import type { ErrorCode } from '../errors.js';
import type { FunctionTool } from '../sandbox/bundle.js';
import type { StateDiff } from '../sandbox/diff.js';
import type { JudgeOutput, Operation, StateOutput, TopicOutput } from './schemas.js';

export interface SourceTask {
  readonly id: string;
  readonly task: string;
  readonly source?: string | undefined;
  /** Line order in the input file (decides dedup order among equal scores). */
  readonly index: number;
}

export interface EnvDescription {
  readonly summary: string;
  readonly introduction: string;
  readonly task?: string | undefined;
  readonly sourceTaskId?: string | undefined;
  readonly source?: string | undefined;
}

export type EnvStatus = 'building' | 'probing' | 'kept' | 'rejected' | 'failed';

export interface ToolQuality {
  total: number;
  positive: number;
  negative: number;
  pass: number;
  warning: number;
  fail: number;
}

export interface QualityReport {
  readonly round: number;
  readonly verdict: 'kept' | 'rejected';
  /** (pass + warning) / total. */
  readonly notFailRate: number;
  /** pass / total. */
  readonly passRate: number;
  readonly threshold: number;
  readonly counts: ToolQuality;
  readonly perTool: Record<string, ToolQuality>;
  /** Probe steps whose tester (or checker) answer could not be used (not counted against the environment). */
  readonly testerErrors: number;
  /** Negative cases the tool schema refused before the method ran: the tool was called, the method not judged. */
  readonly schemaRefusals?: number;
  /** Steps failed by rule: the method hit a sandbox limit (deadline, memory, CPU, stack) or broke its result or state. */
  readonly runtimeFailures?: number;
  readonly rejectionReason: string | null;
  /** Present when a repair round ran: what was regenerated and whether it saved the environment. */
  readonly repair?: { readonly attempted: boolean; readonly methods: readonly string[]; readonly saved: boolean; readonly before: { notFailRate: number } };
}

/** One environment as it moves through synthesis; exported as a line of environments.jsonl. Updated by writing a new record, never in place. */
export interface EnvironmentRecord {
  readonly id: string;
  readonly runId: string;
  readonly status: EnvStatus;
  readonly description: EnvDescription;
  readonly state?: StateOutput;
  readonly className?: string;
  readonly operations?: readonly Operation[];
  /** Method source per operation name (plus helpers under their own names). */
  readonly methods?: Readonly<Record<string, string>>;
  readonly helpers?: readonly string[];
  readonly source?: string;
  /** The language of `source`: absent (synthesized environments) is JavaScript; EnvScaler's imported classes are Python. */
  readonly language?: 'js' | 'python';
  readonly tools?: readonly FunctionTool[];
  /** Tools whose call ends an episode (τ-bench's transfer_to_human_agents): the rollout stops after that assistant message's calls, termination `tool-ended`. */
  readonly endTools?: readonly string[];
  readonly testState?: Readonly<Record<string, unknown>>;
  /** testState as Python reads the model's text, where JavaScript's reading differs (a Python environment's: 5.0, an integer past 2^53). */
  readonly testStateJson?: string;
  /** Assemble repair rounds used, and which methods they regenerated. */
  readonly assembleRepairs?: readonly { readonly round: number; readonly methods: readonly string[]; readonly problems: readonly string[] }[];
  /**
   * The methods the last assemble repair round sends back to the model, each with what it was and why, written with
   * that round's record before they are made again: a job retried after its worker died mid-round makes only those not
   * made yet, from the same inputs, and counts no round twice. Not exported.
   */
  readonly assemblePending?: Readonly<Record<string, { readonly previous: MethodDoc; readonly message: string }>>;
  readonly probeRound?: number;
  readonly quality?: QualityReport;
  readonly qualityHistory?: readonly QualityReport[];
  readonly failure?: ItemFailure | null;
  readonly lineage: {
    readonly runId: string;
    readonly sourceTaskId: string | null;
    readonly models: Readonly<Record<string, string>>;
    readonly prompts: Readonly<Record<string, string>>;
    readonly createdAt: string;
    /** Where an imported environment comes from (`envfleet import`); absent for synthesized ones. */
    readonly source?: ImportSource;
    /** Its ids and place in the files it was imported from. */
    readonly original?: ImportedFrom;
  };
}

/** The projects `envfleet import` reads. */
export type ImportSource = 'envscaler' | 'bfcl' | 'tau-bench';

/** Where an imported document comes from: the ids it had there, and the file (base name) and record (index or key) it was read from. */
export interface ImportedFrom {
  readonly envId: string;
  readonly className?: string;
  readonly taskId?: string;
  /** EnvScaler's scenario sets: `rl` (with check functions), `sft` (without); τ-bench's task splits: `test`, `dev`, `train`. */
  readonly split?: 'rl' | 'sft' | 'test' | 'dev' | 'train';
  /** τ-bench: the task's user_id (the customer the simulated user plays). */
  readonly userId?: string;
  /** τ-bench: the database hash the task's gold actions give (the gold-hash check compares the final database's with it). */
  readonly goldHash?: string;
  /** τ-bench: what the gold hash was computed from (the generated module and the task as parsed); a re-import with the same key does not replay. */
  readonly goldKey?: string;
  /** BFCL: the entry's category (base, miss_func, miss_param, long_context). */
  readonly category?: string;
  /** A hash of everything the document was made from (entry, gold answer, class sources): a re-import with the same one reuses the document. */
  readonly contentHash?: string;
  readonly file: string;
  readonly record: number | string;
}

/** Why an item (environment or scenario) left the pipeline: the stage, a code of ERROR_CODES, and what happened. */
export interface ItemFailure {
  readonly stage: string;
  readonly code: ErrorCode;
  readonly message: string;
}

/** The judge's decision on a source task (doc 'judge'); `failed` when the model's answer was unusable. */
export type JudgeRecord = JudgeOutput & { readonly failed?: boolean };

/** The inferred environment of a judged task and whether it is a candidate (doc 'topic'). */
export interface InferredTopic extends TopicOutput {
  readonly taskId: string;
  readonly index: number;
  readonly candidate: boolean;
  readonly reason: string;
  readonly failed?: false;
}

/** A judged task whose topic the model never gave in a usable form: not a candidate (doc 'topic'). */
export interface FailedTopic {
  readonly taskId: string;
  readonly index: number;
  readonly candidate: false;
  readonly reason: string;
  readonly failed: true;
}

export type TopicRecord = InferredTopic | FailedTopic;

/** Whether a candidate description was kept or dropped as a near-duplicate (doc 'dedup'). */
export interface DedupDecision {
  readonly taskId: string;
  readonly summary: string;
  readonly kept: boolean;
  readonly nearest: { readonly taskId: string; readonly summary: string; readonly similarity: number } | null;
  readonly reason: string;
  readonly envId: string | null;
}

/** One generated method of an environment (doc 'method', id `<envId>.<operation>`). */
export interface MethodDoc {
  readonly source: string;
  readonly helpers: readonly string[];
}

export interface ProbeStepRecord {
  readonly index: number;
  readonly tool: string;
  readonly arguments: unknown;
  readonly caseType: 'positive' | 'negative';
  readonly thought: string;
  readonly result: unknown;
  readonly runtimeError: string | null;
  /**
   * What the call changed. The states themselves are not kept with each step (a 65 KB state twice per
   * step was most of a run's bytes): only the state after the latest step, to resume from
   * (RunStore.probeStateJson).
   */
  readonly diff: StateDiff;
  readonly verdict: 'pass' | 'warning' | 'fail' | 'not-judged';
  /**
   * 'checker' (the model judged, or its answer was unusable), 'runtime' (failed by rule: a sandbox limit
   * or a broken result or state), 'schema' (the tool's schema refused the arguments of a negative case
   * before the method ran: not judged), 'tester' (unusable tester answer). Steps 'not-judged' do not count.
   */
  readonly judgedBy: 'checker' | 'runtime' | 'schema' | 'tester';
  readonly checker: { readonly analysis: string; readonly reason: string } | null;
}
