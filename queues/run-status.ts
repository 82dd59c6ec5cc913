import type { Ledger, LedgerTotals } from '../src/llm/ports.js';
import { OUTCOME_COUNTERS } from '../src/rollouts/stages.js';
import { budgetAdvice, type RunBudgets, type RunControl, type RunControlState } from '../src/runs/control.js';
import type { RunStore } from '../src/runs/store.js';
import { isOutsideFailure } from '../src/errors.js';
import { EPISODE_STAGE, PIPELINE, PIPELINE_STAGES, RUN_COUNTERS, STAGES, type Entry, type PipelineStage } from './pipeline.js';

export interface FunnelRow {
  readonly stage: PipelineStage;
  readonly entered: number;
  readonly passed: number;
  readonly left: Record<string, number>;
  readonly measures: Record<string, number>;
  /** Outcomes the declaration does not name (a stage that counts something queues/pipeline.ts does not list). */
  readonly undeclared: Record<string, number>;
}

/** The funnel of a run: per stage, in pipeline order, how many items entered, went on, and left (and why), as queues/pipeline.ts classifies its counters. */
export async function funnelReport(store: RunStore, runId: string): Promise<FunnelRow[]> {
  const counters = await store.counters(runId);
  const rows: FunnelRow[] = [];
  for (const stage of PIPELINE_STAGES) {
    const outcomes = counters[stage];
    if (!outcomes) continue;
    const row = { stage, entered: 0, passed: 0, left: {} as Record<string, number>, measures: {} as Record<string, number>, undeclared: {} as Record<string, number> };
    for (const [outcome, n] of Object.entries(outcomes)) {
      if (n === 0) continue; // a count taken back (an item retried)
      const kind = PIPELINE.classify(stage, outcome);
      if (kind === 'measure') row.measures[outcome] = n;
      else if (kind === 'left') row.left[outcome] = n;
      else if (kind === 'passed') row.passed += n;
      else row.undeclared[outcome] = n;
    }
    row.entered = row.passed + Object.values(row.left).reduce((a, b) => a + b, 0) + Object.values(row.undeclared).reduce((a, b) => a + b, 0);
    rows.push(row);
  }
  return rows;
}

export interface StageStatus {
  readonly stage: PipelineStage;
  /** Outstanding jobs of the run in this queue that are not running (waiting, delayed, waiting for children, parked). */
  readonly waiting: number;
  /** Jobs of the run in this queue running now. */
  readonly running: number;
  readonly done: number;
  readonly left: Record<string, number>;
  readonly tokens: number;
  readonly costUsd: number;
}

/** A run's state as people read it: a running run with no outstanding job is finished. */
export type RunState = RunControlState['state'] | 'finished';
export const runState = (control: RunControlState, outstanding: number): RunState => (control.state === 'running' && outstanding === 0 ? 'finished' : control.state);

export interface RunStatus {
  readonly id: string;
  readonly state: RunState;
  readonly createdAt: string;
  readonly input: string;
  readonly control: RunControlState;
  readonly budgets: RunBudgets | null;
  readonly outstanding: number;
  /** When the run ran out of outstanding jobs (null while it has some). */
  readonly finishedAt: string | null;
  readonly environments: Record<string, number>;
  readonly scenarios: Record<string, number>;
  /** meanReward: over the scored trajectories (count − unscored); unscored: those with no reward (reward null). */
  readonly trajectories: { readonly count: number; readonly meanReward: number | null; readonly solvedRate: number | null; readonly unscored: number; readonly byTermination: Record<string, number> };
  readonly stages: readonly StageStatus[];
  readonly funnel: readonly FunnelRow[];
  /** The run's counters that are not stages (queues/pipeline.ts RUN_COUNTERS): input items, environments created, sandbox stops, run events. */
  readonly events: Record<string, Record<string, number>>;
  readonly ledger: LedgerTotals;
  /** What the run keeps in Redis (documents, probe steps, cached model responses), and per item of each family. */
  readonly redis: RedisFootprint;
  /** Jobs finished per minute over the last five minutes that saw any. */
  readonly ratePerMinute: number;
  readonly etaMinutes: number | null;
  /**
   * Stages where jobs of the run are outstanding and no worker consumes the queue now (a worker that stopped, or none
   * started): the run does not move until one starts. Empty when not known (no StatusDeps.workersOf, or Redis refuses
   * CLIENT LIST) and while the run is paused or cancelled.
   */
  readonly unconsumed: readonly PipelineStage[];
  /** Stages where jobs of the run are outstanding and the queue is paused in BullMQ (StatusDeps.pausedOf); empty unless the run is running. */
  readonly pausedQueues: readonly PipelineStage[];
  readonly throughput: readonly { minute: string; count: number }[];
  /** One example reason per `stage|outcome` of a failure or drop (the first item's), for the counts that say only a code. */
  readonly reasons: Record<string, string>;
}

export interface RedisFootprint {
  readonly bytes: number;
  /** By area: `doc:KIND`, `outcomes`, `steps`, `cache:MODEL_STAGE`. */
  readonly byArea: Record<string, number>;
  /** Bytes per environment (its mining, skeleton and check documents, probe steps and cached responses), per scenario, per trajectory. */
  readonly perItem: { readonly environment: number | null; readonly scenario: number | null; readonly trajectory: number | null };
}

type Family = 'environment' | 'scenario' | 'trajectory';
/** Which item family a document kind belongs to. */
const DOC_FAMILY: Record<string, Family> = { task: 'environment', judge: 'environment', topic: 'environment', dedup: 'environment', env: 'environment', method: 'environment', scenario: 'scenario', 'scenario-config': 'scenario', trajectory: 'trajectory', group: 'trajectory', 'rollout-config': 'trajectory' };
const KIND_FAMILY: Record<string, Family> = { run: 'environment', task: 'environment', environment: 'environment', scenario: 'scenario', episode: 'trajectory', group: 'trajectory' };
/** Which item family a model stage's cached responses belong to: that of the pipeline stage that spends it. */
const MODEL_FAMILY: Record<string, Family> = Object.fromEntries(PIPELINE_STAGES.flatMap(s => (STAGES[s].models ?? []).map(m => [m, KIND_FAMILY[STAGES[s].item.kind]!])));

/** The run's byte counters, summed by item family and divided by the items of each. */
function footprint(byArea: Record<string, number>, items: Record<Family, number>): RedisFootprint {
  const sums: Record<Family, number> = { environment: 0, scenario: 0, trajectory: 0 };
  for (const [area, n] of Object.entries(byArea)) {
    const family = area === 'steps' ? 'environment' : area === 'outcomes' ? 'trajectory' : area.startsWith('doc:') ? DOC_FAMILY[area.slice(4)] : area.startsWith('cache:') ? MODEL_FAMILY[area.slice(6)] : undefined;
    if (family) sums[family] += n;
  }
  const per = (f: Family) => (items[f] ? Math.round(sums[f] / items[f]) : null);
  return { bytes: Object.values(byArea).reduce((a, b) => a + b, 0), byArea, perItem: { environment: per('environment'), scenario: per('scenario'), trajectory: per('trajectory') } };
}

export interface StatusDeps {
  readonly store: RunStore;
  readonly ledger: Ledger;
  readonly control: RunControl;
  /** How many workers consume a stage's queue now; null when it cannot be known (a Redis that refuses CLIENT LIST). Without it, status says nothing of workers. */
  readonly workersOf?: (stage: PipelineStage) => Promise<number | null>;
  /** Whether a stage's queue is paused in BullMQ (the dashboard's queue view, Queue.pause): its jobs wait, whatever the run's state. */
  readonly pausedOf?: (stage: PipelineStage) => Promise<boolean>;
}

/** Everything `envfleet status` and the dashboard show about a run. */
export async function runStatus(deps: StatusDeps, runId: string): Promise<RunStatus | null> {
  const run = await deps.store.getRun(runId);
  if (!run) return null;
  const [outstanding, pendingByStage, runningByStage] = await Promise.all([
    deps.store.pendingCount(runId),
    deps.store.pendingByStage(runId),
    deps.store.runningByStage(runId, PIPELINE_STAGES),
  ]);
  const funnel = await funnelReport(deps.store, runId);
  const ledger = await deps.ledger.totals(runId);
  const spentOf = (stage: PipelineStage) => (STAGES[stage].models ?? []).map(name => ledger.byStage[name]).filter(x => x !== undefined);
  // A stage with jobs, counts, running marks or model spend has its row (a stage cancelled mid-way had spend and no
  // count: its row and its tokens were missing from the table).
  const stages = PIPELINE_STAGES.filter(s => pendingByStage[s] || runningByStage[s] || funnel.some(f => f.stage === s) || spentOf(s).length).map(stage => {
    const f = funnel.find(r => r.stage === stage);
    const spent = spentOf(stage);
    const running = runningByStage[stage] ?? 0;
    return {
      stage,
      waiting: Math.max(0, (pendingByStage[stage] ?? 0) - running),
      running,
      done: f?.passed ?? 0,
      left: f?.left ?? {},
      tokens: spent.reduce((a, l) => a + l.promptTokens + l.completionTokens, 0),
      costUsd: spent.reduce((a, l) => a + l.costUsd, 0),
    };
  });
  // From counters kept as trajectories are stored: status must not read every trajectory of a long run.
  const counters = await deps.store.counters(runId);
  const byTermination: Record<string, number> = { ...counters[EPISODE_STAGE] };
  const trajectoryCount = Object.values(byTermination).reduce((a, b) => a + b, 0);
  const outcome = counters[OUTCOME_COUNTERS] ?? {};
  const unscored = Math.min(outcome['unscored'] ?? 0, trajectoryCount);
  const throughput = await deps.store.throughput(runId);
  const ratePerMinute = recentRate(throughput, Date.now());
  const control = await deps.control.get(runId);
  const workersOf = deps.workersOf;
  const asked = control.state === 'running' ? PIPELINE_STAGES.filter(stage => pendingByStage[stage]) : [];
  const workers = workersOf ? await Promise.all(asked.map(stage => workersOf(stage))) : [];
  const unconsumed = workersOf ? asked.filter((_, i) => workers[i] === 0) : [];
  const pausedOf = deps.pausedOf;
  const pausedFlags = pausedOf && control.state === 'running' ? await Promise.all(asked.map(stage => pausedOf(stage).catch(() => false))) : [];
  const pausedQueues = asked.filter((_, i) => pausedFlags[i] === true);
  const environments = await deps.store.statusCounts(runId, 'env');
  const scenarios = await deps.store.statusCounts(runId, 'scenario');
  const sum = (c: Record<string, number>) => Object.values(c).reduce((a, b) => a + b, 0);
  return {
    id: run.id,
    state: runState(control, outstanding),
    createdAt: run.createdAt,
    input: run.input,
    control,
    budgets: await deps.control.budgets(runId),
    outstanding,
    finishedAt: outstanding === 0 ? await deps.store.finishedAt(runId) : null,
    environments,
    scenarios,
    trajectories: {
      count: trajectoryCount,
      meanReward: trajectoryCount > unscored ? (outcome['reward-micro'] ?? 0) / 1e6 / (trajectoryCount - unscored) : null,
      solvedRate: trajectoryCount ? (outcome['solved'] ?? 0) / trajectoryCount : null,
      unscored,
      byTermination,
    },
    stages,
    funnel,
    events: Object.fromEntries(Object.keys(RUN_COUNTERS).filter(k => counters[k]).map(k => [k, counters[k]!])),
    ledger,
    redis: footprint(await deps.store.bytes(runId), { environment: sum(environments), scenario: sum(scenarios), trajectory: trajectoryCount }),
    ratePerMinute,
    // A paused or cancelled run makes no progress: the last minutes' rate says nothing of when it ends.
    // Nor does a run whose jobs wait where no worker takes them: the rate is of the workers that stopped.
    etaMinutes: outstanding === 0 ? 0 : control.state === 'running' && ratePerMinute > 0 && !unconsumed.length && !pausedQueues.length ? outstanding / ratePerMinute : null,
    unconsumed,
    pausedQueues,
    throughput,
    reasons: await deps.store.reasons(runId),
  };
}


/**
 * Jobs finished per minute over the last five minutes of the clock (the current one included), or over the minutes
 * since the run's first finished job when it began less than five minutes ago. Minutes in which nothing finished
 * count as 0: a run whose workers stopped ten minutes ago has a rate of 0 (and no time left estimated), not that of
 * the last five minutes in which it moved.
 */
export function recentRate(throughput: readonly { readonly minute: string; readonly count: number }[], now: number): number {
  if (!throughput.length) return 0;
  const current = Math.floor(now / 60_000);
  const first = Math.floor(Date.parse(throughput[0]!.minute) / 60_000);
  const window = Math.max(1, Math.min(5, current - first + 1));
  const finished = throughput.filter(b => current - Math.floor(Date.parse(b.minute) / 60_000) < window).reduce((a, b) => a + b.count, 0);
  return finished / window;
}

/** What is left of a run's time, for status and the dashboard: none while it is paused (with the command that resumes it), cancelled, or waiting for a worker. */
export function timeLeftText(s: Pick<RunStatus, 'id' | 'state' | 'outstanding' | 'etaMinutes'> & Partial<Pick<RunStatus, 'control' | 'unconsumed' | 'pausedQueues'>>): string {
  if (s.state === 'paused' && s.outstanding > 0) {
    // A budget pause needs a higher budget: resuming without one pauses the run again (and resume refuses it).
    const budget = s.control?.budget;
    return `no time left estimated while it is paused (${budget ? budgetAdvice(s.id, budget) : `envfleet resume --run ${s.id}`})`;
  }
  if (s.state === 'cancelled' && s.outstanding > 0) return 'no time left estimated: it is cancelled';
  if (s.state === 'running' && s.pausedQueues?.length) {
    const many = s.pausedQueues.length > 1;
    return `no time left estimated: the queue${many ? 's' : ''} ${s.pausedQueues.join(', ')}, where jobs of the run are outstanding, ${many ? 'are' : 'is'} paused in BullMQ (the dashboard's queue view at /queues, or a Queue.pause): ${many ? 'their' : 'its'} jobs wait until ${many ? 'they are' : 'it is'} resumed there (envfleet resume resumes runs, not queues)`;
  }
  if (s.state === 'running' && s.unconsumed?.length) return `no time left estimated: ${noWorkerText(s.unconsumed)}`;
  if (s.outstanding === 0) return 'nothing left to do';
  return s.etaMinutes === null ? 'time left unknown' : `about ${s.etaMinutes.toFixed(1)} min left`;
}

/** What status says of stages no worker consumes, and what to do. */
export function noWorkerText(stages: readonly string[]): string {
  return `no worker is consuming ${stages.join(', ')}, where jobs of the run are outstanding (start \`envfleet worker\` with the same REDIS_URL and ENVFLEET_REDIS_PREFIX)`;
}

export interface RunSummary {
  readonly id: string;
  readonly createdAt: string;
  readonly input: string;
  readonly state: RunState;
  readonly outstanding: number;
}

/** Every run, oldest first, with its state and outstanding jobs (`envfleet runs`, the dashboard's overview). */
export async function listRuns(store: RunStore, control: RunControl): Promise<RunSummary[]> {
  const out: RunSummary[] = [];
  for (const id of await store.listRuns()) {
    const run = await store.getRun(id);
    if (!run) continue;
    const outstanding = await store.pendingCount(id);
    out.push({ id, createdAt: run.createdAt, input: run.input, state: runState(await control.get(id), outstanding), outstanding });
  }
  return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

/** The stages an entry point's work goes through: those reachable from it in the graph. */
export function stagesOfEntry(entry: Entry): PipelineStage[] {
  const edges = PIPELINE.edges();
  const reached = new Set<string>();
  const pending = edges.filter(e => e.from === `(${entry})`).map(e => e.to);
  while (pending.length) {
    const s = pending.pop()!;
    if (reached.has(s)) continue;
    reached.add(s);
    pending.push(...edges.filter(e => e.from === s).map(e => e.to));
  }
  return PIPELINE_STAGES.filter(s => reached.has(s));
}

export interface RunFailures {
  /** Items that ended for a cause outside them (src/errors.ts isOutsideFailure), by code: running the same command again retries them. */
  readonly byCode: Record<string, number>;
  readonly total: number;
  /** Episodes recorded with termination model-error (they stay in the dataset; not retried). */
  readonly modelErrorEpisodes: number;
}

/**
 * What failed in the stages an entry point's work goes through, from the run's counters (a retried
 * item's count is taken back when it runs again, so this is what is failed now).
 */
export async function runFailures(store: RunStore, runId: string, entries: readonly Entry[]): Promise<RunFailures> {
  const counters = await store.counters(runId);
  const stages = new Set(entries.flatMap(stagesOfEntry));
  const byCode: Record<string, number> = {};
  for (const stage of stages) {
    for (const [outcome, n] of Object.entries(counters[stage] ?? {})) {
      const code = /^(?:failed|dropped):(.+)$/.exec(outcome)?.[1];
      if (code && n > 0 && isOutsideFailure(code)) byCode[code] = (byCode[code] ?? 0) + n;
    }
  }
  const modelErrorEpisodes = stages.has(EPISODE_STAGE) ? (counters[EPISODE_STAGE]?.['model-error'] ?? 0) : 0;
  return { byCode, total: Object.values(byCode).reduce((a, b) => a + b, 0), modelErrorEpisodes };
}
