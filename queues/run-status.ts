import { Queue } from 'bullmq';
import type { Ledger, LedgerTotals } from '../src/llm/ports.js';
import { OUTCOME_COUNTERS } from '../src/rollouts/stages.js';
import type { RunBudgets, RunControl, RunControlState } from '../src/runs/control.js';
import type { RunStore } from '../src/runs/store.js';
import { parsePendingKey } from './enqueuer.js';
import { EPISODE_STAGE, PIPELINE, PIPELINE_STAGES, RUN_COUNTERS, STAGES, type PipelineStage } from './pipeline.js';
import { countByStatus, type QueuesAt } from './run-jobs.js';

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
  /** Outstanding jobs of the run in this queue, by BullMQ state. */
  readonly jobs: Record<string, number>;
  readonly done: number;
  readonly left: Record<string, number>;
  readonly tokens: number;
  readonly costUsd: number;
}

export interface RunStatus {
  readonly id: string;
  readonly createdAt: string;
  readonly input: string;
  readonly control: RunControlState;
  readonly budgets: RunBudgets | null;
  readonly outstanding: number;
  readonly environments: Record<string, number>;
  readonly scenarios: Record<string, number>;
  readonly trajectories: { readonly count: number; readonly meanReward: number | null; readonly solvedRate: number | null; readonly byTermination: Record<string, number> };
  readonly stages: readonly StageStatus[];
  readonly funnel: readonly FunnelRow[];
  /** The run's counters that are not stages (queues/pipeline.ts RUN_COUNTERS): input items, environments created, sandbox stops, run events. */
  readonly events: Record<string, Record<string, number>>;
  readonly ledger: LedgerTotals;
  /** Jobs finished per minute over the last five minutes that saw any. */
  readonly ratePerMinute: number;
  readonly etaMinutes: number | null;
  readonly throughput: readonly { minute: string; count: number }[];
}

export interface StatusDeps {
  readonly at: QueuesAt;
  readonly store: RunStore;
  readonly ledger: Ledger;
  readonly control: RunControl;
}

const MAX_STATE_LOOKUPS = 2_000;

/** Everything `envfleet status` and the dashboard show about a run. */
export async function runStatus(deps: StatusDeps, runId: string): Promise<RunStatus | null> {
  const run = await deps.store.getRun(runId);
  if (!run) return null;
  const pending = await deps.store.pending(runId);
  const byQueue = new Map<string, string[]>();
  for (const key of pending) {
    const { queue, jobId } = parsePendingKey(key);
    byQueue.set(queue, [...(byQueue.get(queue) ?? []), jobId]);
  }
  const jobStates = new Map<string, Record<string, number>>();
  let looked = 0;
  for (const [name, ids] of byQueue) {
    const q = new Queue(name, { connection: deps.at.connection, prefix: deps.at.prefix });
    const counts: Record<string, number> = {};
    try {
      for (const id of ids) {
        const state = looked < MAX_STATE_LOOKUPS ? await q.getJobState(id) : 'unknown';
        looked += 1;
        counts[state] = (counts[state] ?? 0) + 1;
      }
    } finally {
      await q.close();
    }
    jobStates.set(name, counts);
  }
  const funnel = await funnelReport(deps.store, runId);
  const ledger = await deps.ledger.totals(runId);
  const stages = PIPELINE_STAGES.filter(s => jobStates.has(s) || funnel.some(f => f.stage === s)).map(stage => {
    const f = funnel.find(r => r.stage === stage);
    const spent = (STAGES[stage].models ?? []).map(name => ledger.byStage[name]).filter(x => x !== undefined);
    return {
      stage,
      jobs: jobStates.get(stage) ?? {},
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
  const throughput = await deps.store.throughput(runId);
  const recent = throughput.slice(-5);
  const ratePerMinute = recent.length ? recent.reduce((a, b) => a + b.count, 0) / recent.length : 0;
  return {
    id: run.id,
    createdAt: run.createdAt,
    input: run.input,
    control: await deps.control.get(runId),
    budgets: await deps.control.budgets(runId),
    outstanding: pending.length,
    environments: await countByStatus(deps.store, runId, 'env'),
    scenarios: await countByStatus(deps.store, runId, 'scenario'),
    trajectories: {
      count: trajectoryCount,
      meanReward: trajectoryCount ? (outcome['reward-micro'] ?? 0) / 1e6 / trajectoryCount : null,
      solvedRate: trajectoryCount ? (outcome['solved'] ?? 0) / trajectoryCount : null,
      byTermination,
    },
    stages,
    funnel,
    events: Object.fromEntries(Object.keys(RUN_COUNTERS).filter(k => counters[k]).map(k => [k, counters[k]!])),
    ledger,
    ratePerMinute,
    etaMinutes: pending.length === 0 ? 0 : ratePerMinute > 0 ? pending.length / ratePerMinute : null,
    throughput,
  };
}


export interface RunSummary {
  readonly id: string;
  readonly createdAt: string;
  readonly input: string;
  readonly state: string;
  readonly outstanding: number;
}

/** Every run, oldest first, with its state and outstanding jobs (`envfleet runs`, the dashboard's overview). */
export async function listRuns(store: RunStore, control: RunControl): Promise<RunSummary[]> {
  const out: RunSummary[] = [];
  for (const id of await store.listRuns()) {
    const run = await store.getRun(id);
    if (!run) continue;
    out.push({ id, createdAt: run.createdAt, input: run.input, state: (await control.get(id)).state, outstanding: await store.pendingCount(id) });
  }
  return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}
