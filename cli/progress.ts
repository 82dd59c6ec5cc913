import cliProgress from 'cli-progress';
import { pausedQueuesText, type RunProgress } from '../queues/run-jobs.js';
import { budgetAdvice } from '../src/runs/control.js';

/**
 * Why a run that waits is not moving, as lines that say what to do: it is paused (with the reason
 * `envfleet status` shows), or jobs wait in queues no worker consumes.
 */
export function waitNotes(runId: string, p: RunProgress, rateLimitPauseMs?: number): string[] {
  const notes: string[] = [];
  if (p.redisAway) {
    notes.push(`run ${runId}: Redis does not answer (${p.redisAway.reason}); a restart keeps the run if Redis keeps its data (AOF or RDB). This command waits for it up to ENVFLEET_REDIS_STARTUP_WAIT_MS`);
    return notes;
  }
  if (p.paused) {
    const budget = p.paused.budget;
    notes.push(
      `run ${runId} is paused${p.paused.reason ? ` (${p.paused.reason})` : ''}: no job of it starts until it is resumed; ` +
        (budget ? `raise its budget and resume it: ${budgetAdvice(runId, budget)}` : `resume it with envfleet resume --run ${runId} (after a budget pause, with --budget-tokens N or --budget-usd X)`) +
        '; this command keeps waiting',
    );
  }
  if (p.endpointWait) {
    const { jobs, minutes } = p.endpointWait;
    notes.push(
      `run ${runId}: ${jobs} job${jobs === 1 ? ' has' : 's have'} been waiting for the model endpoint ${minutes < 1 ? 'for under a minute' : `for ${minutes} min`} (429s, or it cannot be reached or serves nothing: ` +
        'a wrong OPENAI_BASE_URL or port, a server restarting, a proxy answering 502/503 while its model server is down); envfleet doctor checks the endpoints, and the workers\' log says which. ' +
        (rateLimitPauseMs === 0
          ? 'ENVFLEET_RATE_LIMIT_PAUSE_MS is 0 here, so the run never pauses for it (the workers\' own value decides); this command keeps waiting'
          : `the run pauses once the waits have gone on for ENVFLEET_RATE_LIMIT_PAUSE_MS${rateLimitPauseMs === undefined ? '' : ` (${rateLimitPauseMs} ms here, ${Math.round(rateLimitPauseMs / 60_000)} min; the workers' own value decides)`} without a break; this command keeps waiting`),
    );
  }
  if (p.pausedQueues?.length) notes.push(`${pausedQueuesText(runId, p.pausedQueues)}; this command keeps waiting`);
  if (p.unconsumed?.length) {
    notes.push(`run ${runId}: no worker is consuming ${p.unconsumed.join(', ')} (jobs of the run are waiting there); start \`envfleet worker\` with the same REDIS_URL and ENVFLEET_REDIS_PREFIX, or pass --workers; this command keeps waiting`);
  }
  return notes;
}

/** Progress of a run while a command waits: bars per kind of item on a terminal, plain lines otherwise; and, when it does not move, why (waitNotes). */
export function progressReporter(runId: string, out: NodeJS.WriteStream = process.stdout, rateLimitPauseMs?: number): { report(p: RunProgress): void; stop(): void } {
  let lastNotes = '';
  /** The notes, each time they change. */
  const notesOf = (p: RunProgress): string[] => {
    const notes = waitNotes(runId, p, rateLimitPauseMs);
    const text = notes.join('\n');
    if (text === lastNotes) return [];
    lastNotes = text;
    return notes;
  };
  if (!out.isTTY) {
    return {
      report: p => {
        if (p.redisAway) {
          for (const note of notesOf(p)) out.write(`${note}\n`);
          return;
        }
        out.write(`run ${runId}: ${p.outstanding} jobs outstanding; environments ${JSON.stringify(p.environments)}; scenarios ${JSON.stringify(p.scenarios)}\n`);
        for (const note of notesOf(p)) out.write(`${note}\n`);
      },
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
      for (const note of notesOf(p)) bars.log(`${note}\n`);
      // Nothing is known while Redis is away: the bars stay as they were.
      if (p.redisAway) return;
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
