/**
 * The pipeline, declared once: every stage (its queue, its job data, what moves through it, what its
 * funnel counts mean and how an item leaves it), the stages each one feeds, and the entry points
 * where the command line submits work. The worker's processors, the enqueuer, the funnel report,
 * `envfleet status`, the dashboard, docs/stages.md and docs/architecture.md all read this module;
 * nothing else spells the graph.
 */
import { z } from 'zod';
import type { ErrorCode } from '../src/errors.js';
import type { computeGroup, runRollout } from '../src/rollouts/stages.js';
import { ROLLOUT_MODES, TERMINATIONS } from '../src/rollouts/types.js';
import { groupIdOf, scenarioIdOf, trajectoryIdOf } from '../src/runs/ids.js';
import type { ScenarioOutcome } from '../src/scenarios/stages.js';
import type { ItemOutcome } from '../src/synthesis/environments.js';
import type { dedupDescriptions, inferTopic, judgeTask } from '../src/synthesis/mining.js';
import { definePipeline, type DataOf, type NameOf, type RunScoped, type StageSpec } from './define-pipeline.js';

// ---------------------------------------------------------------- job data (references only)

const id = z.string().min(1);
export const RunRef = z.strictObject({ runId: id });
export const TaskRef = z.strictObject({ runId: id, taskId: id });
export const EnvRef = z.strictObject({ runId: id, envId: id });
export const MethodRef = z.strictObject({ runId: id, envId: id, op: id });
export const RoundRef = z.strictObject({ runId: id, envId: id, round: z.number().int().positive() });
export const StateRef = z.strictObject({ runId: id, envId: id, index: z.number().int().nonnegative(), total: z.number().int().positive() });
export const ScenarioRef = z.strictObject({ runId: id, scenarioId: id });
export const RolloutMode = z.enum(ROLLOUT_MODES);
/** A policy generation of a run's rollouts (absent: the run's first): see policyKeyOf. */
const policy = z.string().regex(/^p-[0-9a-f]{12}$/).optional();
export const RolloutRef = z.strictObject({ runId: id, scenarioId: id, mode: RolloutMode, sample: z.number().int().nonnegative(), policy });
export const GroupRef = z.strictObject({ runId: id, scenarioId: id, mode: RolloutMode, samples: z.number().int().positive(), policy });

// ---------------------------------------------------------------- items

/**
 * What moves through a stage, and how it leaves the pipeline when a stage ends it (its funnel
 * counts `failed:CODE` or `dropped:CODE`) or when a job of the stage fails for good.
 */
export const ITEMS = {
  run: { leaves: 'failed', what: "the run's mining: a failed job is counted at its stage" },
  task: { leaves: 'failed', what: 'a source task: a failed job is counted at its stage' },
  environment: { leaves: 'failed', what: 'an environment: it ends failed, with the stage and code' },
  scenario: { leaves: 'dropped', what: 'a scenario: it is dropped, with the stage and code' },
  episode: { leaves: 'recorded', what: 'one rollout sample: a trajectory is recorded with reward null and termination environment-error or model-error' },
  group: { leaves: 'nothing', what: "a scenario's group of samples: nothing to end, its trajectories are recorded" },
} as const;
export type ItemKind = keyof typeof ITEMS;

// ---------------------------------------------------------------- stages

/** A stage of envfleet's pipeline: its item is one of ITEMS. */
const stage = <D extends RunScoped>(spec: StageSpec<D> & { readonly item: { readonly kind: ItemKind } }) => spec;

const MODEL_OUTPUT_INVALID = 'MODEL_OUTPUT_INVALID' satisfies ErrorCode;

/** The stages in pipeline order. A stage's name is its queue's name and its funnel row. */
export const STAGES = {
  'mine.judge': stage({
    description: 'judges whether a source task needs a stateful environment',
    data: TaskRef,
    item: { kind: 'task', id: d => d.taskId },
    onFailure: 'ends-item',
    funnel: { passed: ['needs-environment'], left: ['no-environment'] },
    ends: [MODEL_OUTPUT_INVALID],
    models: ['mine.judge'],
  }),
  'mine.topic': stage({
    description: 'infers the environment summary, introduction and scores of a judged task',
    data: TaskRef,
    item: { kind: 'task', id: d => d.taskId },
    onFailure: 'ends-item',
    funnel: { passed: ['candidate'], left: ['low-scores'] },
    ends: [MODEL_OUTPUT_INVALID],
    models: ['mine.topic'],
  }),
  'mine.dedup': stage({
    description: 'embeds the candidate descriptions of a run and drops near-duplicates; the rest become environments',
    data: RunRef,
    item: { kind: 'run', id: d => d.runId },
    onFailure: 'ends-item',
    funnel: { passed: ['kept'], left: ['duplicate', 'over-limit'] },
    models: ['mine.dedup'],
  }),
  'skeleton.state': stage({
    description: 'designs the state (entities, rules, JSON Schema, an example state)',
    data: EnvRef,
    item: { kind: 'environment', id: d => d.envId },
    onFailure: 'ends-item',
    funnel: { passed: ['done'] },
    ends: [MODEL_OUTPUT_INVALID],
    models: ['skeleton.state'],
  }),
  'skeleton.operations': stage({
    description: 'lists the operations (tools) with their parameter schemas',
    data: EnvRef,
    item: { kind: 'environment', id: d => d.envId },
    onFailure: 'ends-item',
    funnel: { passed: ['done'], measures: ['operations'] },
    ends: [MODEL_OUTPUT_INVALID],
    models: ['skeleton.operations'],
  }),
  'skeleton.method': stage({
    description: 'writes one method, checked in the sandbox',
    data: MethodRef,
    item: { kind: 'environment', id: d => d.envId },
    // skeleton.assemble regenerates a method that could not be written.
    onFailure: 'item-goes-on',
    funnel: { passed: ['done'], measures: ['invalid'] },
    models: ['skeleton.method'],
  }),
  'skeleton.assemble': stage({
    description: 'assembles the class, loads and instantiates it in the sandbox, sends missing or broken methods back (bounded rounds)',
    data: EnvRef,
    item: { kind: 'environment', id: d => d.envId },
    onFailure: 'ends-item',
    funnel: { passed: ['assembled', 'assembled-after-repair'] },
    ends: ['CLASS_DOES_NOT_LOAD', 'METHODS_INVALID', MODEL_OUTPUT_INVALID],
    models: [],
  }),
  'check.config': stage({
    description: 'generates a test state valid against the schema, instantiated in the sandbox',
    data: EnvRef,
    item: { kind: 'environment', id: d => d.envId },
    onFailure: 'ends-item',
    funnel: { passed: ['done'] },
    ends: [MODEL_OUTPUT_INVALID],
    models: ['check.config'],
  }),
  'check.probe': stage({
    description: 'runs the dual-agent probe (tester, sandbox, checker) in a sandbox session, checkpointing every step',
    data: RoundRef,
    item: { kind: 'environment', id: d => d.envId },
    onFailure: 'ends-item',
    funnel: { passed: ['done'], measures: ['round-*'] },
    ends: [MODEL_OUTPUT_INVALID],
    models: ['check.probe.tester', 'check.probe.checker'],
  }),
  'check.verdict': stage({
    description: 'decides kept or rejected, with a repair round for a rejected environment',
    data: RoundRef,
    item: { kind: 'environment', id: d => d.envId },
    onFailure: 'ends-item',
    funnel: { passed: ['kept', 'kept-after-repair'], left: ['rejected', 'rejected-after-repair'], measures: ['repair-round'] },
    ends: [MODEL_OUTPUT_INVALID],
    models: ['check.repair'],
  }),
  'scenario.state': stage({
    description: 'generates the index-th initial state of a kept environment, valid and instantiating; exact duplicates dropped',
    data: StateRef,
    item: { kind: 'scenario', id: d => scenarioIdOf(d.runId, d.envId, d.index) },
    onFailure: 'ends-item',
    funnel: { passed: ['done'], measures: ['requested'] },
    ends: ['DUPLICATE_STATE', MODEL_OUTPUT_INVALID],
    models: ['scenario.state'],
  }),
  'scenario.task': stage({
    description: 'writes the task as an instruction and as a user goal; it must change the state; duplicate tasks dropped',
    data: ScenarioRef,
    item: { kind: 'scenario', id: d => d.scenarioId },
    onFailure: 'ends-item',
    funnel: { passed: ['done'] },
    ends: ['DUPLICATE_TASK', MODEL_OUTPUT_INVALID],
    models: ['scenario.task'],
  }),
  'scenario.checklist': stage({
    description: 'writes the checklist of verifiable items the task implies',
    data: ScenarioRef,
    item: { kind: 'scenario', id: d => d.scenarioId },
    onFailure: 'ends-item',
    funnel: { passed: ['done'], measures: ['items'] },
    ends: [MODEL_OUTPUT_INVALID],
    models: ['scenario.checklist'],
  }),
  'scenario.check': stage({
    description: 'writes one check function per item, each run on the initial state in the sandbox; the set must not be all true',
    data: ScenarioRef,
    item: { kind: 'scenario', id: d => d.scenarioId },
    onFailure: 'ends-item',
    funnel: { passed: ['ready', 'ready-after-repair'] },
    ends: ['CHECK_INVALID', 'ALREADY_SOLVED', MODEL_OUTPUT_INVALID],
    models: ['scenario.check'],
  }),
  'scenario.verify': stage({
    description: 'the solvability gate: reference rollouts until one solves the scenario',
    data: ScenarioRef,
    item: { kind: 'scenario', id: d => d.scenarioId },
    onFailure: 'ends-item',
    funnel: { passed: ['solvable'] },
    ends: ['UNSOLVABLE'],
    // Its reference rollouts spend the rollout.policy model stage, which the ledger counts under rollout.run.
    models: [],
  }),
  'rollout.run': stage({
    description: "one episode of the policy against a scenario (one sample of its group); the trajectory goes to the run's stream",
    data: RolloutRef,
    item: { kind: 'episode', id: d => trajectoryIdOf(d.runId, d.scenarioId, d.mode, d.sample, d.policy) },
    onFailure: 'ends-item',
    // An episode the model or the environment failed (its job failed for good) is recorded without a reward: it
    // left, it did not pass (status showed a run whose endpoint was down as every episode passed).
    funnel: { passed: TERMINATIONS.filter(t => t !== 'model-error' && t !== 'environment-error'), left: ['model-error', 'environment-error'] },
    models: ['rollout.policy', 'rollout.user'],
    concurrency: 'rollout',
  }),
  'rollout.group': stage({
    description: "the reward statistics of a scenario's K samples in one mode",
    data: GroupRef,
    item: { kind: 'group', id: d => groupIdOf(d.scenarioId, d.mode, d.policy) },
    onFailure: 'item-goes-on',
    funnel: { passed: ['done'], measures: ['samples-missing'] },
    models: [],
  }),
} as const satisfies { readonly [S in keyof StageOutputs]: StageSpec };

type Out<F extends (...args: never[]) => unknown> = Awaited<ReturnType<F>>;

/** What each stage's processor returns (from its src/ function), which the stages it feeds read. */
export interface StageOutputs {
  'mine.judge': Out<typeof judgeTask>;
  'mine.topic': Out<typeof inferTopic>;
  'mine.dedup': Out<typeof dedupDescriptions>;
  'skeleton.state': ItemOutcome;
  'skeleton.operations': ItemOutcome & { readonly operations?: readonly string[] };
  'skeleton.method': ItemOutcome;
  'skeleton.assemble': ItemOutcome;
  'check.config': ItemOutcome;
  'check.probe': ItemOutcome;
  'check.verdict': ItemOutcome & { readonly nextRound?: number };
  'scenario.state': ScenarioOutcome;
  'scenario.task': ScenarioOutcome;
  'scenario.checklist': ScenarioOutcome;
  'scenario.check': ScenarioOutcome;
  'scenario.verify': ScenarioOutcome;
  'rollout.run': Out<typeof runRollout>;
  'rollout.group': Out<typeof computeGroup>;
}

// ---------------------------------------------------------------- the pipeline

/** What the command line submits to an entry point. */
export type EntryInputs = {
  /** `envfleet synth --tasks`: the run's source tasks. */
  readonly tasks: { readonly runId: string; readonly taskIds: readonly string[] };
  /** `envfleet synth --descriptions`: environments created from descriptions. */
  readonly descriptions: { readonly runId: string; readonly envIds: readonly string[] };
  /** `envfleet scenarios`: M initial states per kept environment. */
  readonly scenarios: { readonly runId: string; readonly envIds: readonly string[]; readonly perEnv: number };
  /** `envfleet rollouts`: one group of K samples of one scenario in one mode. */
  readonly rollouts: { readonly runId: string; readonly scenarioId: string; readonly mode: z.infer<typeof RolloutMode>; readonly samples: number; readonly policy?: string };
};
export type Entry = keyof EntryInputs;

/**
 * envfleet's pipeline: the stages above, what each feeds once its job has run (a stage absent from
 * `feeds` ends its item's way through the pipeline), and the entry points.
 */
export const PIPELINE = definePipeline<typeof STAGES, StageOutputs, EntryInputs>({
  stages: STAGES,
  feeds: {
    'mine.dedup': [{ each: 'skeleton.state', data: (d, o) => o.envIds.map(envId => ({ runId: d.runId, envId })) }],
    'skeleton.state': [{ next: 'skeleton.operations', data: (d, o) => (o.ok ? d : null) }],
    'skeleton.operations': [
      { fanIn: 'skeleton.assemble', through: ['skeleton.method'], data: (d, o) => (o.ok && o.operations ? { parent: d, children: o.operations.map(op => ({ ...d, op })) } : null) },
    ],
    'skeleton.assemble': [{ next: 'check.config', data: (d, o) => (o.ok ? d : null) }],
    'check.config': [{ next: 'check.probe', data: (d, o) => (o.ok ? { ...d, round: 1 } : null) }],
    'check.probe': [{ next: 'check.verdict', data: (d, o) => (o.ok ? d : null) }],
    'check.verdict': [{ next: 'check.probe', data: (d, o) => (o.nextRound && o.nextRound > d.round ? { ...d, round: o.nextRound } : null) }],
    'scenario.state': [{ next: 'scenario.task', data: (d, o) => (o.ok ? { runId: d.runId, scenarioId: o.scenarioId } : null) }],
    'scenario.task': [{ next: 'scenario.checklist', data: (d, o) => (o.ok ? d : null) }],
    'scenario.checklist': [{ next: 'scenario.check', data: (d, o) => (o.ok ? d : null) }],
    'scenario.check': [{ next: 'scenario.verify', data: (d, o) => (o.ok && o.verify ? d : null) }],
  },
  entries: {
    tasks: {
      command: 'envfleet synth --tasks',
      feed: { fanIn: 'mine.dedup', through: ['mine.judge', 'mine.topic'], data: i => ({ parent: { runId: i.runId }, children: i.taskIds.map(taskId => ({ runId: i.runId, taskId })) }) },
    },
    descriptions: {
      command: 'envfleet synth --descriptions',
      feed: { each: 'skeleton.state', data: i => i.envIds.map(envId => ({ runId: i.runId, envId })) },
    },
    scenarios: {
      command: 'envfleet scenarios',
      feed: { each: 'scenario.state', data: i => i.envIds.flatMap(envId => Array.from({ length: i.perEnv }, (_, index) => ({ runId: i.runId, envId, index, total: i.perEnv }))) },
    },
    rollouts: {
      command: 'envfleet rollouts',
      feed: {
        fanIn: 'rollout.group',
        through: ['rollout.run'],
        data: i => ({ parent: i, children: Array.from({ length: i.samples }, (_, sample) => ({ runId: i.runId, scenarioId: i.scenarioId, mode: i.mode, sample, ...(i.policy ? { policy: i.policy } : {}) })) }),
      },
    },
  },
});

export type PipelineStage = NameOf<typeof STAGES>;
export type StageData<S extends PipelineStage> = DataOf<typeof STAGES, S>;
export const PIPELINE_STAGES = PIPELINE.names;
export const STAGE_QUEUES = PIPELINE.queues;
export const isPipelineStage = (name: string): name is PipelineStage => PIPELINE.isStage(name);
/** The stage that runs episodes: its counters are the trajectories' terminations. */
export const EPISODE_STAGE = PIPELINE.stagesOfKind('episode')[0]!;

// ---------------------------------------------------------------- counters that are not stages

/** Run counters that count events, not items of a stage (the funnel report leaves them out; status reads them). */
export const RUN_COUNTERS = {
  input: 'source items submitted (tasks, descriptions)',
  import: 'documents imported from another project (envfleet import envscaler): environments, scenarios, checks',
  environments: 'environments created (from mined tasks or from descriptions)',
  sandbox: 'tool calls the sandbox stopped, by code',
  checks: "episodes' checks that ended in an error (each counted as false), by code",
  waits:
    'times jobs came back later without using an attempt for want of sandbox room, by code: SANDBOX_MEMORY_FULL (the sandbox thread or Python interpreter full of other environments), ENV_DISPOSED (lost with a Python interpreter another environment took down)',
  run: 'run events (cancelled; cancelled:STAGE: jobs of episodes and groups a cancel ended, which are no trajectories)',
  'rollout.outcome': 'sums over trajectories: reward in millionths (reward-micro), solved episodes, episodes without a reward (unscored)',
} as const;

