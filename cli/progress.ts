import cliProgress from 'cli-progress';
import type { RunProgress } from '../queues/run-jobs.js';

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
