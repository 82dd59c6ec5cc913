import { InvalidArgumentError } from 'commander';
import { MODEL_STAGE_NAMES, isModelStage } from '../config/index.js';
import { cancelRun } from '../queues/run-jobs.js';
import { listRuns, runStatus, type FunnelRow, type RunStatus } from '../queues/run-status.js';
import { OUTCOME_COUNTERS } from '../src/rollouts/stages.js';
import type { RunBudgets } from '../src/runs/control.js';
import { requireRun, withRuns, type CommandContext } from './context.js';

/** `envfleet runs`. */
export async function runsCommand(opts: { json?: boolean }): Promise<void> {
  await withRuns(async ({ store, control }) => {
    const runs = await listRuns(store, control);
    if (opts.json) process.stdout.write(`${JSON.stringify(runs)}\n`);
    else if (!runs.length) process.stdout.write('no runs yet (start one with envfleet synth)\n');
    else for (const r of runs) process.stdout.write(`${r.id.padEnd(40)} ${r.state.padEnd(10)} ${String(r.outstanding).padStart(6)} outstanding   ${r.createdAt}   ${r.input}\n`);
  });
}

/** `envfleet status`. */
export async function statusCommand(opts: { run: string; json?: boolean }): Promise<void> {
  await withRuns(async ({ at, store, control, ledger }) => {
    const status = await runStatus({ at, store, ledger, control }, opts.run);
    if (!status) await requireRun(store, opts.run);
    process.stdout.write(opts.json ? `${JSON.stringify(status)}\n` : `${formatStatus(status!)}\n\n${formatFunnel(status!.funnel)}\n`);
  });
}

export interface ControlOptions {
  readonly run: string;
  readonly reason: string;
  readonly budgetUsd?: number;
  readonly budgetTokens?: number;
}

/** The run's budgets, or the configured defaults when it has none. */
const budgetsOf = async ({ config, control }: CommandContext, runId: string): Promise<RunBudgets> => (await control.budgets(runId)) ?? { ...config.budgets, byStage: {} };

/** `envfleet pause | resume | cancel`. */
export async function controlCommand(action: 'pause' | 'resume' | 'cancel', opts: ControlOptions): Promise<void> {
  await withRuns(async c => {
    await requireRun(c.store, opts.run);
    if (action === 'pause') {
      await c.control.pause(opts.run, opts.reason);
      process.stdout.write(`run ${opts.run} paused; jobs already running finish and are kept\n`);
    } else if (action === 'resume') {
      if (opts.budgetUsd !== undefined || opts.budgetTokens !== undefined) {
        const current = await budgetsOf(c, opts.run);
        await c.control.setBudgets(opts.run, { ...current, ...(opts.budgetUsd !== undefined ? { usd: opts.budgetUsd } : {}), ...(opts.budgetTokens !== undefined ? { tokens: opts.budgetTokens } : {}) });
      }
      await c.control.resume(opts.run);
      process.stdout.write(`run ${opts.run} resumed\n`);
    } else {
      const r = await cancelRun(c.at, c.store, c.control, opts.run, opts.reason);
      process.stdout.write(`run ${opts.run} cancelled: ${r.removed} waiting jobs removed, ${r.running} running jobs finish\n`);
    }
  });
}

export interface BudgetOptions {
  readonly run: string;
  readonly usd?: number;
  readonly tokens?: number;
  readonly stage?: string;
  readonly json?: boolean;
}

/** `envfleet budget`. */
export async function budgetCommand(opts: BudgetOptions): Promise<void> {
  if (opts.stage && !isModelStage(opts.stage)) throw new InvalidArgumentError(`unknown stage "${opts.stage}"; stages: ${MODEL_STAGE_NAMES.join(', ')}`);
  await withRuns(async c => {
    await requireRun(c.store, opts.run);
    const current = await budgetsOf(c, opts.run);
    const patch = { ...(opts.usd !== undefined ? { usd: opts.usd } : {}), ...(opts.tokens !== undefined ? { tokens: Math.floor(opts.tokens) } : {}) };
    const next = opts.stage ? { ...current, byStage: { ...current.byStage, [opts.stage]: { usd: 0, tokens: 0, ...current.byStage[opts.stage], ...patch } } } : { ...current, ...patch };
    await c.control.setBudgets(opts.run, next);
    process.stdout.write(opts.json ? `${JSON.stringify(next)}\n` : `run ${opts.run} budgets: ${JSON.stringify(next)}\n`);
  });
}

export function formatFunnel(rows: readonly FunnelRow[]): string {
  const lines = ['stage                  entered  passed  left (why)'];
  for (const r of rows) {
    const why = Object.entries(r.left).map(([k, n]) => `${n} ${k}`).join(', ');
    const measures = Object.entries(r.measures).map(([k, n]) => `${k} ${n}`).join(', ');
    const undeclared = Object.entries(r.undeclared).map(([k, n]) => `${k} ${n}`).join(', ');
    lines.push(`${r.stage.padEnd(22)} ${String(r.entered).padStart(7)} ${String(r.passed).padStart(7)}  ${why || '-'}${measures ? `   [${measures}]` : ''}${undeclared ? `   (undeclared: ${undeclared})` : ''}`);
  }
  return lines.join('\n');
}

/** "input tasks 7; environments created 3": the run counters that are not stages (reward sums are shown as the mean reward instead). */
export const formatEvents = (events: RunStatus['events']) =>
  Object.entries(events)
    .filter(([group]) => group !== OUTCOME_COUNTERS)
    .map(([group, outcomes]) => `${group} ${Object.entries(outcomes).map(([k, n]) => `${k} ${n}`).join(', ')}`)
    .join('; ');

export function formatStatus(s: RunStatus): string {
  const lines = [
    `run ${s.id} — ${s.control.state}${s.control.reason ? ` (${s.control.reason})` : ''}; created ${s.createdAt}; input ${s.input}`,
    `outstanding jobs: ${s.outstanding}; rate ${s.ratePerMinute.toFixed(1)} jobs/min; ${s.etaMinutes === null ? 'time left unknown' : `about ${s.etaMinutes.toFixed(1)} min left`}`,
    `environments ${JSON.stringify(s.environments)}; scenarios ${JSON.stringify(s.scenarios)}; trajectories ${s.trajectories.count}` +
      (s.trajectories.meanReward === null ? '' : ` (mean reward ${s.trajectories.meanReward.toFixed(3)}, solved ${((s.trajectories.solvedRate ?? 0) * 100).toFixed(1)}%)`),
    ...(Object.keys(s.events).length ? [`counters: ${formatEvents(s.events)}`] : []),
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
