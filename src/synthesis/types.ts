import type { FunctionTool } from '../sandbox/bundle.js';
import type { StateDiff } from '../sandbox/diff.js';
import type { Operation, StateOutput } from './schemas.js';

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
  /** Probe steps whose tester answer could not be used (not counted against the environment). */
  readonly testerErrors: number;
  readonly rejectionReason: string | null;
  /** Present when a repair round ran: what was regenerated and whether it saved the environment. */
  readonly repair?: { readonly attempted: boolean; readonly methods: readonly string[]; readonly saved: boolean; readonly before: { notFailRate: number } };
}

/** One environment as it moves through synthesis; exported as a line of environments.jsonl. */
export interface EnvironmentRecord {
  readonly id: string;
  readonly runId: string;
  status: EnvStatus;
  description: EnvDescription;
  state?: StateOutput;
  className?: string;
  operations?: Operation[];
  /** Method source per operation name (plus helpers under their own names). */
  methods?: Record<string, string>;
  helpers?: string[];
  source?: string;
  tools?: FunctionTool[];
  testState?: Record<string, unknown>;
  /** Assemble repair rounds used, and which methods they regenerated. */
  assembleRepairs?: { round: number; methods: string[]; problems: string[] }[];
  probeRound?: number;
  quality?: QualityReport;
  qualityHistory?: QualityReport[];
  failure?: { stage: string; code: string; message: string } | null;
  lineage: {
    runId: string;
    sourceTaskId: string | null;
    models: Record<string, string>;
    prompts: Record<string, string>;
    createdAt: string;
  };
}

export interface ProbeStepRecord {
  readonly index: number;
  readonly tool: string;
  readonly arguments: unknown;
  readonly caseType: 'positive' | 'negative';
  readonly thought: string;
  readonly result: unknown;
  readonly runtimeError: string | null;
  readonly stateBefore: unknown;
  readonly stateAfter: unknown;
  readonly diff: StateDiff;
  readonly verdict: 'pass' | 'warning' | 'fail' | 'not-judged';
  /** 'checker' (the model judged, or its answer was unusable), 'schema' (the tool's schema refused the arguments of a negative case before the method ran), 'tester' (unusable tester answer). Steps 'not-judged' do not count. */
  readonly judgedBy: 'checker' | 'schema' | 'tester';
  readonly checker: { readonly analysis: string; readonly reason: string } | null;
}
