import { forEachPendingJob } from './pending-jobs.js';
import cliProgress from 'cli-progress';
import type { Redis } from 'ioredis';
import type { RunControl } from '../src/runs/control.js';
import type { SynthesisStore } from '../src/synthesis/store.js';
import type { EnvironmentRecord } from '../src/synthesis/types.js';
import type { ScenarioRecord } from '../src/scenarios/types.js';
import type { RunProgress } from './synth-cli.js';

export interface RunSummary {
  readonly id: string;
  readonly createdAt: string;
  readonly input: string;
  readonly state: string;
  readonly outstanding: number;
}

export async function listRuns(store: SynthesisStore, control: RunControl): Promise<RunSummary[]> {
  const out: RunSummary[] = [];
  for (const id of await store.listRuns()) {
    const run = await store.getRun(id);
    if (!run) continue;
    out.push({ id, createdAt: run.createdAt, input: run.input, state: (await control.get(id)).state, outstanding: await store.pendingCount(id) });
  }
  return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

/**
 * Cancels a run: the run is marked cancelled (jobs that start from now on end at once as
 * RUN_CANCELLED), its waiting and delayed jobs are removed, jobs already running finish, and the
 * environments and scenarios still being built end as failed / dropped with RUN_CANCELLED.
 */
export async function cancelRun(redis: Redis, prefix: string, store: SynthesisStore, control: RunControl, runId: string, reason: string): Promise<{ removed: number; running: number }> {
  await control.cancel(runId, reason);
  let removed = 0;
  let running = 0;
  await forEachPendingJob(redis, prefix, runId, async ({ key, queue, jobId }) => {
    const job = await queue.getJob(jobId);
    const state = job ? await job.getState() : 'missing';
    if (state === 'active') {
      running += 1;
      return;
    }
    if (job) {
      try {
        await job.remove({ removeChildren: true });
      } catch {
        running += 1; // locked by a worker right now: it ends as cancelled when it starts or finishes
        return;
      }
    }
    await store.donePending(runId, key);
    removed += 1;
  });
  // What was still being built ends now, with the reason, so exports and status say why it is missing.
  for (const id of await store.listDocIds(runId, 'env')) {
    const env = await store.getDoc<EnvironmentRecord>(runId, 'env', id);
    if (env && (env.status === 'building' || env.status === 'probing')) {
      await store.putDoc(runId, 'env', id, { ...env, status: 'failed', failure: { stage: 'run', code: 'RUN_CANCELLED', message: reason } });
    }
  }
  for (const id of await store.listDocIds(runId, 'scenario')) {
    const scenario = await store.getDoc<ScenarioRecord>(runId, 'scenario', id);
    if (scenario?.status === 'building') {
      await store.putDoc(runId, 'scenario', id, { ...scenario, status: 'dropped', dropReason: { stage: 'run', code: 'RUN_CANCELLED', message: reason } });
    }
  }
  await store.count(runId, 'run', 'cancelled');
  return { removed, running };
}

/** Progress of a run while a command waits: bars per kind of item on a terminal, plain lines otherwise. */
export function progressReporter(runId: string, out: NodeJS.WriteStream = process.stdout): { report(p: RunProgress): void; stop(): void } {
  if (!out.isTTY) {
    return {
      report: p => out.write(`run ${runId}: ${p.outstanding} jobs outstanding; environments ${JSON.stringify(p.environments)}; scenarios ${JSON.stringify(p.scenarios)}\n`),
      stop: () => undefined,
    };
  }
  const bars = new cliProgress.MultiBar({ format: ' {label} [{bar}] {value}/{total} {detail}', clearOnComplete: false, hideCursor: true }, cliProgress.Presets.shades_classic);
  const made = new Map<string, cliProgress.SingleBar>();
  let peak = 0;
  const bar = (label: string, total: number, value: number, detail: string) => {
    let b = made.get(label);
    if (!b) {
      b = bars.create(Math.max(1, total), value, { label: label.padEnd(12), detail });
      made.set(label, b);
    }
    b.setTotal(Math.max(1, total));
    b.update(value, { label: label.padEnd(12), detail });
  };
  return {
    report(p) {
      peak = Math.max(peak, p.outstanding);
      bar('jobs', peak, peak - p.outstanding, `${p.outstanding} outstanding`);
      const envTotal = Object.values(p.environments).reduce((a, b) => a + b, 0);
      if (envTotal) bar('environments', envTotal, envTotal - (p.environments['building'] ?? 0) - (p.environments['probing'] ?? 0), JSON.stringify(p.environments));
      const scnTotal = Object.values(p.scenarios).reduce((a, b) => a + b, 0);
      if (scnTotal) bar('scenarios', scnTotal, scnTotal - (p.scenarios['building'] ?? 0), JSON.stringify(p.scenarios));
    },
    stop: () => bars.stop(),
  };
}
