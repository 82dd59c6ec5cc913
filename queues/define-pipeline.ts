import { z } from 'zod';
import type { ModelStage } from '../config/index.js';
import type { ErrorCode } from '../src/errors.js';
import { baseJobOptions, defineQueue, type QueueDefinition } from './define-queue.js';

/**
 * The vocabulary of a pipeline declaration (queues/pipeline.ts is envfleet's): stages with their job
 * data and funnel, the edges by which a stage feeds the next, and the entry points where submitted
 * work comes in. `definePipeline` checks a declaration and derives each stage's queue and the graph;
 * the enqueuer, the workers, status and the docs are written against a `Pipeline`, never against
 * stage names.
 */

/** What every stage job returns: small, never the artifacts (they live in the run store). */
export const StageResult = z.strictObject({
  ok: z.boolean(),
  reason: z.string().optional(),
  detail: z.record(z.string(), z.unknown()).optional(),
});
export type StageResult = z.infer<typeof StageResult>;

export type RunScoped = z.ZodType<{ runId: string }>;

export interface StageSpec<D extends RunScoped = RunScoped> {
  /** What a job of this stage does (worker --help, docs). */
  readonly description: string;
  /** The job data: references to documents in the run store, never the documents. */
  readonly data: D;
  /** What moves through the stage, and which item a job's data names. */
  readonly item: { readonly kind: string; id(data: z.infer<D>): string };
  /** When a job fails for good: the item ends here, or a later stage deals with it (`item-goes-on`). */
  readonly onFailure: 'ends-item' | 'item-goes-on';
  /**
   * The outcomes the stage counts: `passed` items go on, `left` items leave on purpose, `measures` are
   * not items (a trailing `*` matches any suffix). `failed:CODE` / `dropped:CODE` are always "left".
   */
  readonly funnel: { readonly passed: readonly string[]; readonly left?: readonly string[]; readonly measures?: readonly string[] };
  /** The codes with which the stage itself ends an item (beyond those of a failed job). */
  readonly ends?: readonly ErrorCode[];
  /** The model stages (X-Envfleet-Stage) whose tokens its jobs spend. */
  readonly models?: readonly ModelStage[];
  /** Which configured concurrency its workers use (default: ENVFLEET_WORKER_CONCURRENCY). */
  readonly concurrency?: 'rollout';
}

export type AnyStages = Readonly<Record<string, StageSpec>>;
export type NameOf<St extends AnyStages> = keyof St & string;
/** Job data of a stage, as validated (DataOf) and as enqueued (DataIn). */
export type DataOf<St extends AnyStages, S extends NameOf<St>> = z.infer<St[S]['data']>;
export type DataIn<St extends AnyStages, S extends NameOf<St>> = z.input<St[S]['data']>;

/**
 * How a stage (or an entry point) feeds the next. `data` returns what to enqueue, or null (or no
 * children) when the item does not go on.
 * - `next`: one job of the target stage.
 * - `each`: one job of the target per element (fan-out).
 * - `fanIn`: one job of the target that runs once every child has ended (a BullMQ flow); each child
 *   is a chain of the `through` stages run in order, each taking the same data.
 */
export type Feed<St extends AnyStages, D, O> =
  | { readonly [T in NameOf<St>]: { readonly next: T; readonly data: (data: D, out: O) => DataIn<St, T> | null } }[NameOf<St>]
  | { readonly [T in NameOf<St>]: { readonly each: T; readonly data: (data: D, out: O) => readonly DataIn<St, T>[] } }[NameOf<St>]
  | {
      readonly [T in NameOf<St>]: {
        readonly fanIn: T;
        readonly through: readonly [NameOf<St>, ...NameOf<St>[]];
        readonly data: (data: D, out: O) => { readonly parent: DataIn<St, T>; readonly children: readonly { readonly runId: string }[] } | null;
      };
    }[NameOf<St>];

/** What each stage's processor returns, by stage (the stages it feeds read it). */
export type OutputsOf<St extends AnyStages> = { readonly [S in NameOf<St>]: unknown };
/** What each entry point takes, by entry. */
export type EntryInputsOf = Readonly<Record<string, unknown>>;

export interface PipelineDeclaration<St extends AnyStages, Out extends OutputsOf<St>, En extends EntryInputsOf> {
  /** The stages, in pipeline order. A stage's name is its queue's name and its funnel row. */
  readonly stages: St;
  /** What each stage feeds once its job has run. A stage absent here ends its item's way through the pipeline. */
  readonly feeds: { readonly [S in NameOf<St>]?: readonly Feed<St, DataOf<St, S>, Out[S]>[] };
  /** Where submitted work enters, and the command that submits it. */
  readonly entries: { readonly [E in keyof En & string]: { readonly command: string; readonly feed: Feed<St, En[E], null> } };
}

export type EdgeKind = 'next' | 'fan-out' | 'flow-child' | 'fan-in';

export interface Edge<S extends string = string> {
  /** A stage, or an entry point as `(name)`. */
  readonly from: S | `(${string})`;
  readonly to: S;
  readonly kind: EdgeKind;
}

export interface Pipeline<St extends AnyStages, Out extends OutputsOf<St>, En extends EntryInputsOf> extends PipelineDeclaration<St, Out, En> {
  /** Stage names in pipeline order. */
  readonly names: readonly NameOf<St>[];
  /** Each stage's queue: all stage jobs return a StageResult; a job's id is a hash of its whole data. */
  readonly queues: { readonly [S in NameOf<St>]: QueueDefinition<St[S]['data'], typeof StageResult> };
  isStage(name: string): name is NameOf<St>;
  /** The stage an entry point feeds first (the first of a fan-in's chain). */
  firstStageOf(entry: keyof En & string): NameOf<St>;
  /** The stages whose item is of `kind`, in pipeline order. */
  stagesOfKind(kind: string): NameOf<St>[];
  /** Every edge of the graph: entries first, then stages in pipeline order. */
  edges(): Edge<NameOf<St>>[];
  /**
   * A stage's hash tag on a Redis Cluster: the stages joined by flows (a fan-in's `through` stages and
   * its target) share the fan-in target's name, so a flow's scripts stay in one slot; any other stage
   * has its own name.
   */
  slotTagOf(name: string): string;
  /** How the funnel report reads one counter of a stage. */
  classify(stage: NameOf<St>, outcome: string): 'passed' | 'left' | 'measure' | 'undeclared';
}

function edgesOf<S extends string>(from: Edge<S>['from'], feed: { next: S } | { each: S } | { fanIn: S; through: readonly [S, ...S[]] }): Edge<S>[] {
  if ('next' in feed) return [{ from, to: feed.next, kind: 'next' }];
  if ('each' in feed) return [{ from, to: feed.each, kind: 'fan-out' }];
  const [first, ...rest] = feed.through;
  const chain: Edge<S>[] = [{ from, to: first, kind: 'fan-out' }];
  let previous: S = first;
  for (const s of rest) {
    chain.push({ from: previous, to: s, kind: 'flow-child' });
    previous = s;
  }
  chain.push({ from: previous, to: feed.fanIn, kind: 'fan-in' });
  return chain;
}

/**
 * Checks a declaration (every edge names a declared stage; every declared stage is reachable from an
 * entry) and derives the queues and the graph.
 */
export function definePipeline<St extends AnyStages, Out extends OutputsOf<St>, En extends EntryInputsOf>(declaration: PipelineDeclaration<St, Out, En>): Pipeline<St, Out, En> {
  const names = Object.keys(declaration.stages) as NameOf<St>[];
  const isStage = (name: string): name is NameOf<St> => Object.hasOwn(declaration.stages, name);
  type Targets = Parameters<typeof edgesOf<NameOf<St>>>[1];
  const edges = (): Edge<NameOf<St>>[] => [
    ...Object.entries(declaration.entries).flatMap(([entry, { feed }]) => edgesOf<NameOf<St>>(`(${entry})`, feed as Targets)),
    ...names.flatMap(s => (declaration.feeds[s] ?? []).flatMap(feed => edgesOf<NameOf<St>>(s, feed as Targets))),
  ];
  for (const e of edges()) {
    if (!isStage(e.to) || (!e.from.startsWith('(') && !isStage(e.from))) throw new Error(`pipeline: the edge ${e.from} → ${e.to} names a stage that is not declared`);
  }
  const reached = new Set<string>();
  const pending = edges().filter(e => e.from.startsWith('(')).map(e => e.to);
  while (pending.length) {
    const s = pending.pop()!;
    if (reached.has(s)) continue;
    reached.add(s);
    pending.push(...edges().filter(e => e.from === s).map(e => e.to));
  }
  const unreachable = names.filter(s => !reached.has(s));
  if (unreachable.length) throw new Error(`pipeline: no entry point leads to ${unreachable.join(', ')}`);

  // Flow groups: every stage of a fan-in's chain joins its target's group, the group's tag being the
  // name of the target it ends in (a fan-in target that is itself a flow child joins that flow too).
  const parent = new Map<string, string>();
  const groupOf = (s: string): string => {
    let g = s;
    while (parent.has(g)) g = parent.get(g)!;
    return g;
  };
  for (const e of edges()) {
    if (e.kind !== 'flow-child' && e.kind !== 'fan-in') continue;
    const [from, to] = [groupOf(e.from), groupOf(e.to)];
    if (from !== to) parent.set(from, to);
  }
  const slotTagOf = (name: string): string => groupOf(name);

  const queues = Object.fromEntries(
    names.map(name => {
      const spec = declaration.stages[name]!;
      return [name, defineQueue({ name, description: spec.description, data: spec.data, result: StageResult, jobOptions: baseJobOptions, identity: d => d, slotTag: slotTagOf(name) })];
    }),
  ) as Pipeline<St, Out, En>['queues'];

  return {
    ...declaration,
    names,
    queues,
    isStage,
    firstStageOf(entry) {
      const { feed } = declaration.entries[entry];
      return 'next' in feed ? feed.next : 'each' in feed ? feed.each : feed.through[0];
    },
    stagesOfKind: kind => names.filter(s => declaration.stages[s]!.item.kind === kind),
    edges,
    slotTagOf,
    classify(stage, outcome) {
      const f = declaration.stages[stage]!.funnel;
      const matches = (list: readonly string[] | undefined) => (list ?? []).some(n => (n.endsWith('*') ? outcome.startsWith(n.slice(0, -1)) : n === outcome));
      if (matches(f.measures)) return 'measure';
      if (matches(f.left) || outcome.startsWith('failed:') || outcome.startsWith('dropped:')) return 'left';
      if (matches(f.passed)) return 'passed';
      return 'undeclared';
    },
  };
}
