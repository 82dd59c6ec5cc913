import { PIPELINE, type PipelineStage } from '../../queues/pipeline.js';
import { timeLeftText, type RunStatus } from '../../queues/run-status.js';

/** HTML-escapes a value for the dashboard's pages. */
export const esc = (v: unknown) => String(v).replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const EDGE_MARK = { next: '→', 'fan-out': '⇉', 'flow-child': '→', 'fan-in': '⇒' } as const;

/** What each stage feeds, from the pipeline declaration: "→ skeleton.operations", "⇉ skeleton.method". */
const FEEDS_OF: ReadonlyMap<string, string> = (() => {
  const out = new Map<string, string[]>();
  for (const e of PIPELINE.edges()) out.set(e.from, [...(out.get(e.from) ?? []), `${EDGE_MARK[e.kind]} ${e.to}`]);
  return new Map([...out].map(([from, list]) => [from, list.join(', ')]));
})();

export function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2433;background:#f7f8fa;overflow-wrap:anywhere}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
a{color:#2457c5} table{border-collapse:collapse;background:#fff;margin:6px 0}
th,td{border:1px solid #dde1e8;padding:4px 8px;text-align:left;vertical-align:top} th{background:#eef1f6;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:20px}.state-running{color:#1a7f37}.state-finished{color:#2457c5}.state-paused{color:#9a6700}.state-cancelled{color:#cf222e}
.muted{color:#667085}
</style></head><body><p class="muted"><a href="/">runs</a> · <a href="/queues">queues (bull-board)</a> · <a href="/metrics">metrics</a></p>${body}</body></html>`;
}

const money = (x: number) => `$${x.toFixed(4)}`;
/** "2 kept, 1 rejected": counts by status, in a stable (alphabetical) order. */
const counts = (byStatus: Record<string, number>) =>
  Object.entries(byStatus)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `${n} ${k}`)
    .join(', ') || '–';
const pct = (x: number | null) => (x === null ? '–' : `${(x * 100).toFixed(1)}%`);

export function overview(runs: readonly RunStatus[]): string {
  if (!runs.length) return '<h1>envfleet</h1><p>No runs yet. Start one with <code>envfleet synth</code>.</p>';
  const rows = runs
    .map(
      r => `<tr><td><a href="/runs/${encodeURIComponent(r.id)}">${esc(r.id)}</a></td><td class="state-${r.state}">${r.state}</td>
<td class="n">${r.outstanding}</td><td>${esc(counts(r.environments))}</td><td>${esc(counts(r.scenarios))}</td>
<td class="n">${r.trajectories.count}</td><td class="n">${r.trajectories.meanReward === null ? '–' : r.trajectories.meanReward.toFixed(3)}</td>
<td class="n">${pct(r.trajectories.solvedRate)}</td><td class="n">${r.ledger.promptTokens + r.ledger.completionTokens}</td><td class="n">${money(r.ledger.costUsd)}</td></tr>`,
    )
    .join('');
  return `<h1>envfleet runs</h1><table><tr><th>run</th><th>state</th><th>outstanding</th><th>environments</th><th>scenarios</th><th>trajectories</th><th>mean reward</th><th>solved</th><th>tokens</th><th>cost</th></tr>${rows}</table>`;
}

function chart(points: readonly { minute: string; count: number }[]): string {
  if (!points.length) return '<p class="muted">No finished jobs yet.</p>';
  const w = 640;
  const h = 120;
  const max = Math.max(...points.map(p => p.count), 1);
  const bw = Math.min(24, Math.max(2, Math.floor(w / Math.max(points.length, 1)) - 2));
  const bars = points
    .map((p, i) => {
      const bh = Math.round((p.count / max) * (h - 20));
      return `<rect x="${i * (bw + 2)}" y="${h - bh}" width="${bw}" height="${bh}" fill="#2457c5"><title>${esc(p.minute)}: ${p.count} jobs</title></rect>`;
    })
    .join('');
  return `<svg width="${w}" height="${h}" role="img" aria-label="jobs finished per minute"><text x="0" y="12" font-size="11" fill="#667085">max ${max} jobs/min</text>${bars}</svg>`;
}

export function runPage(s: RunStatus): string {
  const stages = s.stages
    .map(st => {
      // Each count with its first item's reason as a tooltip (status prints them under the table).
      const why = Object.entries(st.left).map(([k, n]) => {
        const reason = s.reasons?.[`${st.stage}|${k}`];
        return reason ? `<span title="${esc(reason)}">${n} ${esc(k)}</span>` : `${n} ${esc(k)}`;
      }).join('<br>') || '–';
      const queueLink = `<a href="/queues/queue/${encodeURIComponent(st.stage)}">${esc(st.stage)}</a>`;
      return `<tr><td>${queueLink}</td><td class="muted">${esc(FEEDS_OF.get(st.stage satisfies PipelineStage) ?? '')}</td><td class="n">${st.waiting}</td><td class="n">${st.running}</td><td class="n">${st.done}</td><td>${why}</td><td class="n">${st.tokens}</td><td class="n">${money(st.costUsd)}</td></tr>`;
    })
    .join('');
  const terminations = Object.entries(s.trajectories.byTermination).map(([k, n]) => `${esc(k)} ${n}`).join(', ') || '–';
  return `<h1>run ${esc(s.id)}</h1>
<p>state <b class="state-${s.state}">${s.state}</b>${s.control.reason ? ` — ${esc(s.control.reason)}` : ''}; created ${esc(s.createdAt)}; input ${esc(s.input)}</p>
<div class="cards">
<div class="card">outstanding jobs<b id="outstanding">${s.outstanding}</b></div>
<div class="card">environments<b id="environments">${esc(counts(s.environments))}</b></div>
<div class="card">scenarios<b id="scenarios">${esc(counts(s.scenarios))}</b></div>
<div class="card">trajectories<b id="trajectories">${s.trajectories.count}</b></div>
<div class="card">mean reward<b id="mean-reward">${s.trajectories.meanReward === null ? '–' : s.trajectories.meanReward.toFixed(3)}</b></div>
<div class="card">solved<b id="solved">${pct(s.trajectories.solvedRate)}</b></div>
<div class="card">unscored<b id="unscored">${s.trajectories.unscored}</b></div>
<div class="card">tokens<b id="tokens">${s.ledger.promptTokens + s.ledger.completionTokens}</b></div>
<div class="card">cost<b id="cost">${money(s.ledger.costUsd)}</b></div>
<div class="card">Redis<b id="redis-bytes">${(s.redis.bytes / 1e6).toFixed(2)} MB</b></div>
</div>
<p>${s.ledger.requests} model requests (${s.ledger.cachedRequests} answered from the cache, saving ${money(s.ledger.savedCostUsd)}${s.ledger.unmeteredRequests ? `; ${s.ledger.unmeteredRequests} answered without token usage, in no count, cost or token budget` : ''}); rate ${s.ratePerMinute.toFixed(1)} jobs/min; ${esc(timeLeftText(s))}${s.budgets ? `; budget ${esc(JSON.stringify(s.budgets))}` : ''}</p>
<h2>Stages</h2><table><tr><th>stage</th><th>feeds</th><th>waiting</th><th>active</th><th>done</th><th>left (why)</th><th>tokens</th><th>cost</th></tr>${stages}</table>
<h2>Rollouts</h2><p>by termination: ${terminations}</p>
<h2>Throughput (jobs finished per minute)</h2>${chart(s.throughput)}`;
}

