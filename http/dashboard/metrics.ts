import type { Queue } from 'bullmq';
import { Counter, Gauge, Registry } from 'prom-client';
import { EPISODE_STAGE } from '../../queues/pipeline.js';
import { runState, type StatusDeps } from '../../queues/run-status.js';
import type { HistogramSnapshot } from '../../src/runs/metrics.js';

function histogramText(name: string, help: string, series: readonly HistogramSnapshot[]): string {
  const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} histogram`];
  const fmt = (labels: Record<string, string>) => Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, '_')}"`).join(',');
  for (const s of series) {
    for (const b of s.buckets) lines.push(`${name}_bucket{${fmt({ ...s.labels, le: b.le })}} ${b.count}`);
    lines.push(`${name}_sum{${fmt(s.labels)}} ${s.sum}`, `${name}_count{${fmt(s.labels)}} ${s.count}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The Prometheus exposition of every queue and run, and of the histograms the workers record. */
export async function renderMetrics(d: Omit<StatusDeps, 'at'> & { readonly queues: readonly Queue[]; readonly metrics: { read(series: string): Promise<HistogramSnapshot[]> } }): Promise<string> {
  const registry = new Registry();
  const queueJobs = new Gauge({ name: 'envfleet_queue_jobs', help: 'Jobs in each queue by state', labelNames: ['queue', 'state'], registers: [registry] });
  const runsByState = new Gauge({ name: 'envfleet_runs', help: 'Runs by state', labelNames: ['state'], registers: [registry] });
  const outstanding = new Gauge({ name: 'envfleet_run_outstanding_jobs', help: 'Jobs of a run not finished yet', labelNames: ['run'], registers: [registry] });
  const tokens = new Counter({ name: 'envfleet_tokens_total', help: 'Model tokens paid, by run, stage and kind', labelNames: ['run', 'stage', 'kind'], registers: [registry] });
  const cost = new Counter({ name: 'envfleet_cost_usd_total', help: 'Model cost in US dollars, by run and stage', labelNames: ['run', 'stage'], registers: [registry] });
  const requests = new Counter({ name: 'envfleet_model_requests_total', help: 'Model requests by run, stage and whether the cache answered', labelNames: ['run', 'stage', 'cached'], registers: [registry] });
  const rollouts = new Counter({ name: 'envfleet_rollouts_total', help: 'Finished rollouts by run and termination reason', labelNames: ['run', 'termination'], registers: [registry] });
  const sandboxErrors = new Counter({ name: 'envfleet_sandbox_errors_total', help: 'Tool calls the sandbox stopped, by run and error code', labelNames: ['run', 'code'], registers: [registry] });
  const environments = new Gauge({ name: 'envfleet_environments', help: 'Environments by run and status', labelNames: ['run', 'status'], registers: [registry] });
  const scenarios = new Gauge({ name: 'envfleet_scenarios', help: 'Scenarios by run and status', labelNames: ['run', 'status'], registers: [registry] });

  for (const q of d.queues) {
    const counts = await q.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed', 'waiting-children', 'prioritized');
    for (const [state, n] of Object.entries(counts)) queueJobs.set({ queue: q.name, state }, n);
  }
  const states: Record<string, number> = { running: 0, finished: 0, paused: 0, cancelled: 0 };
  for (const runId of await d.store.listRuns()) {
    const pending = await d.store.pendingCount(runId);
    const state = runState(await d.control.get(runId), pending);
    states[state] = (states[state] ?? 0) + 1;
    outstanding.set({ run: runId }, pending);
    const totals = await d.ledger.totals(runId);
    for (const [stage, t] of Object.entries(totals.byStage)) {
      if (t.promptTokens) tokens.inc({ run: runId, stage, kind: 'prompt' }, t.promptTokens);
      if (t.completionTokens) tokens.inc({ run: runId, stage, kind: 'completion' }, t.completionTokens);
      if (t.costUsd) cost.inc({ run: runId, stage }, t.costUsd);
      if (t.requests) requests.inc({ run: runId, stage, cached: 'false' }, t.requests);
      if (t.cachedRequests) requests.inc({ run: runId, stage, cached: 'true' }, t.cachedRequests);
    }
    const counters = await d.store.counters(runId);
    for (const [reason, n] of Object.entries(counters[EPISODE_STAGE] ?? {})) rollouts.inc({ run: runId, termination: reason }, n);
    for (const [code, n] of Object.entries(counters['sandbox'] ?? {})) sandboxErrors.inc({ run: runId, code }, n);
    for (const [s, n] of Object.entries(await d.store.statusCounts(runId, 'env'))) environments.set({ run: runId, status: s }, n);
    for (const [s, n] of Object.entries(await d.store.statusCounts(runId, 'scenario'))) scenarios.set({ run: runId, status: s }, n);
  }
  for (const [state, n] of Object.entries(states)) runsByState.set({ state }, n);
  return (
    (await registry.metrics()) +
    histogramText('envfleet_job_duration_seconds', 'Duration of finished jobs by queue and status', await d.metrics.read('job')) +
    histogramText('envfleet_model_request_duration_seconds', 'Latency of model requests by stage and outcome', await d.metrics.read('model_request'))
  );
}
