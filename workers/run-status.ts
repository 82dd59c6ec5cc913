import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { QUEUE_NAMES } from '../queues/index.js';
import type { Ledger, LedgerTotals } from '../src/llm/ports.js';
import { OUTCOME_COUNTERS } from '../src/rollouts/stages.js';
import type { RunBudgets, RunControl, RunControlState } from '../src/runs/control.js';
import type { ScenarioRecord } from '../src/scenarios/types.js';
import type { SynthesisStore } from '../src/synthesis/store.js';
import type { EnvironmentRecord } from '../src/synthesis/types.js';
import { funnelReport, type FunnelRow } from './synth-cli.js';

export interface StageStatus {
  readonly stage: string;
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
  readonly ledger: LedgerTotals;
  /** Jobs finished per minute over the last five minutes that saw any. */
  readonly ratePerMinute: number;
  readonly etaMinutes: number | null;
  readonly throughput: readonly { minute: string; count: number }[];
}

export interface StatusDeps {
  readonly redis: Redis;
  readonly prefix: string;
  readonly store: SynthesisStore;
  readonly ledger: Ledger;
  readonly control: RunControl;
}

const MAX_STATE_LOOKUPS = 2_000;

/** The model stages whose tokens a queue's jobs spend (a queue's own name when not listed). */
const LEDGER_STAGES: Record<string, readonly string[]> = {
  'check.probe': ['check.probe.tester', 'check.probe.checker'],
  'check.verdict': ['check.repair'],
  'rollout.run': ['rollout.policy', 'rollout.user'],
  'scenario.verify': ['rollout.policy'],
};

async function docs<T>(store: SynthesisStore, runId: string, kind: 'env' | 'scenario'): Promise<T[]> {
  const out: T[] = [];
  for (const id of await store.listDocIds(runId, kind)) {
    const d = await store.getDoc<T>(runId, kind, id);
    if (d) out.push(d);
  }
  return out;
}

/** Everything `envfleet status` and the dashboard show about a run. */
export async function runStatus(deps: StatusDeps, runId: string): Promise<RunStatus | null> {
  const run = await deps.store.getRun(runId);
  if (!run) return null;
  const pending = await deps.redis.smembers(`${deps.prefix}:run:${runId}:pending`);
  const byQueue = new Map<string, string[]>();
  for (const key of pending) {
    const [queue, jobId] = key.split('|') as [string, string];
    byQueue.set(queue, [...(byQueue.get(queue) ?? []), jobId]);
  }
  const jobStates = new Map<string, Record<string, number>>();
  let looked = 0;
  for (const [queue, ids] of byQueue) {
    const q = new Queue(queue, { connection: deps.redis, prefix: deps.prefix });
    const counts: Record<string, number> = {};
    for (const id of ids) {
      const state = looked < MAX_STATE_LOOKUPS ? await q.getJobState(id) : 'unknown';
      looked += 1;
      counts[state] = (counts[state] ?? 0) + 1;
    }
    jobStates.set(queue, counts);
  }
  const funnel = await funnelReport(deps.store, runId);
  const ledger = await deps.ledger.totals(runId);
  const stageNames = [...new Set([...QUEUE_NAMES.filter(q => jobStates.has(q) || funnel.some(f => f.stage === q)), ...funnel.map(f => f.stage)])];
  const stages = stageNames.map(stage => {
    const f = funnel.find(r => r.stage === stage);
    const spent = (LEDGER_STAGES[stage] ?? [stage]).map(name => ledger.byStage[name]).filter(x => x !== undefined);
    return {
      stage,
      jobs: jobStates.get(stage) ?? {},
      done: f?.passed ?? 0,
      left: f?.left ?? {},
      tokens: spent.reduce((a, l) => a + l.promptTokens + l.completionTokens, 0),
      costUsd: spent.reduce((a, l) => a + l.costUsd, 0),
    };
  });
  const environments: Record<string, number> = {};
  for (const e of await docs<EnvironmentRecord>(deps.store, runId, 'env')) environments[e.status] = (environments[e.status] ?? 0) + 1;
  const scenarios: Record<string, number> = {};
  for (const s of await docs<ScenarioRecord>(deps.store, runId, 'scenario')) scenarios[s.status] = (scenarios[s.status] ?? 0) + 1;
  // From counters kept as trajectories are stored: status must not read every trajectory of a long run.
  const counters = await deps.store.funnel(runId);
  const byTermination: Record<string, number> = { ...counters['rollout.run'] };
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
    environments,
    scenarios,
    trajectories: {
      count: trajectoryCount,
      meanReward: trajectoryCount ? (outcome['reward-micro'] ?? 0) / 1e6 / trajectoryCount : null,
      solvedRate: trajectoryCount ? (outcome['solved'] ?? 0) / trajectoryCount : null,
      byTermination,
    },
    stages,
    funnel,
    ledger,
    ratePerMinute,
    etaMinutes: pending.length === 0 ? 0 : ratePerMinute > 0 ? pending.length / ratePerMinute : null,
    throughput,
  };
}

export function formatStatus(s: RunStatus): string {
  const lines = [
    `run ${s.id} — ${s.control.state}${s.control.reason ? ` (${s.control.reason})` : ''}; created ${s.createdAt}; input ${s.input}`,
    `outstanding jobs: ${s.outstanding}; rate ${s.ratePerMinute.toFixed(1)} jobs/min; ${s.etaMinutes === null ? 'time left unknown' : `about ${s.etaMinutes.toFixed(1)} min left`}`,
    `environments ${JSON.stringify(s.environments)}; scenarios ${JSON.stringify(s.scenarios)}; trajectories ${s.trajectories.count}` +
      (s.trajectories.meanReward === null ? '' : ` (mean reward ${s.trajectories.meanReward.toFixed(3)}, solved ${((s.trajectories.solvedRate ?? 0) * 100).toFixed(1)}%)`),
    `model: ${s.ledger.requests} requests (${s.ledger.cachedRequests} cached), ${s.ledger.promptTokens + s.ledger.completionTokens} tokens, $${s.ledger.costUsd.toFixed(4)}` +
      (s.budgets ? `; budget ${s.budgets.tokens ? `${s.budgets.tokens} tokens` : ''}${s.budgets.usd ? ` $${s.budgets.usd}` : ''}${Object.keys(s.budgets.byStage).length ? ` per stage ${JSON.stringify(s.budgets.byStage)}` : ''}` : ''),
    '',
    'stage                  waiting  active  done   left (why)                         tokens      cost',
  ];
  for (const st of s.stages) {
    const waiting = (st.jobs['waiting'] ?? 0) + (st.jobs['wait'] ?? 0) + (st.jobs['delayed'] ?? 0) + (st.jobs['waiting-children'] ?? 0) + (st.jobs['prioritized'] ?? 0);
    const why = Object.entries(st.left).map(([k, n]) => `${n} ${k}`).join(', ') || '-';
    lines.push(`${st.stage.padEnd(22)} ${String(waiting).padStart(7)} ${String(st.jobs['active'] ?? 0).padStart(7)} ${String(st.done).padStart(5)}   ${why.padEnd(34)} ${String(st.tokens).padStart(8)}  $${st.costUsd.toFixed(4)}`);
  }
  return lines.join('\n');
}
