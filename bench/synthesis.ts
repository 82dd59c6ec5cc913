/**
 * Environment synthesis end to end, timed: the demo source tasks (fixtures/demo) through every
 * synthesis stage on real BullMQ queues and workers, against the scripted model server with every
 * answer delayed by a fixed time, under two endpoint concurrency caps in the same run.
 *
 *   node --import tsx bench/synthesis.ts [--delay 200] [--concurrency 4] [--wide-concurrency 64]
 *                                        [--probe-steps 8] [--worker-concurrency 8]
 *
 * Prints a markdown report on stdout (progress on stderr): makespan against the critical-path
 * bound (the longest chain of dependent model calls × delay), model calls per stage and per kept
 * environment, queue overhead per job, and where the makespan goes along the observed critical
 * path. Checks that the result is what the fixtures imply (2 kept, 1 rejected); exits 1 if not.
 * Each configuration uses its own Redis key prefix, deleted at the end (SCAN + DEL).
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import {
  chains,
  classify,
  concurrencyProfile,
  criticalPath,
  jobStats,
  limiterSummary,
  queueRows,
  stageCounts,
  verify,
  type Call,
  type Chains,
  type ConcurrencyProfile,
  type CriticalPath,
  type JobStat,
  type LimiterSummary,
  type QueueRow,
  type StageCount,
  type Verification,
} from './synthesis/analyze.js';
import { benchArgs } from './args.js';
import { deletePrefix, interruptRun, runConfiguration, type RunData } from './synthesis/run.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

const args = benchArgs(import.meta.url, { values: ['delay', 'concurrency', 'wide-concurrency', 'probe-steps', 'worker-concurrency'] });
const argValue = (name: string, fallback: number) => args.int(name, fallback);

const DELAY = argValue('delay', 200);
const CAP = argValue('concurrency', 4);
const WIDE = argValue('wide-concurrency', 64);
const PROBE_STEPS = argValue('probe-steps', 8);
const WORKER_CONCURRENCY = argValue('worker-concurrency', 8);
const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';

const progress = (line: string) => process.stderr.write(`[bench/synthesis] ${line}\n`);

interface Analysis {
  readonly data: RunData;
  readonly calls: readonly Call[];
  readonly chains: Chains;
  readonly stages: readonly StageCount[];
  readonly stats: readonly JobStat[];
  readonly queues: { rows: readonly QueueRow[]; all: QueueRow };
  readonly path: CriticalPath;
  readonly profile: ConcurrencyProfile;
  readonly limiter: LimiterSummary;
  readonly verification: Verification;
}

function analyse(data: RunData): Analysis {
  const calls = classify(data);
  const stats = jobStats(data, calls);
  return {
    data,
    calls,
    chains: chains(data, calls),
    stages: stageCounts(calls),
    stats,
    queues: queueRows(stats),
    path: criticalPath(data, stats),
    profile: concurrencyProfile(data, calls, data.settings.modelCap),
    limiter: limiterSummary(data, calls),
    verification: verify(data),
  };
}

// ---------------------------------------------------------------- formatting

const s2 = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const ms0 = (ms: number) => (Number.isFinite(ms) ? `${Math.round(ms)} ms` : '–');
const pct = (x: number) => `${(x * 100).toFixed(0)} %`;
const x2 = (x: number) => `${x.toFixed(2)}×`;
const short = (summary: string | null | undefined) => (summary ?? '?').split(' ')[0]!.toLowerCase();
const row = (cells: readonly (string | number)[]) => `| ${cells.join(' | ')} |`;
const header = (cells: readonly string[]) => `${row(cells)}\n${row(cells.map(() => '---'))}`;

function jobLabel(a: Analysis, s: JobStat): string {
  const d = s.job.data;
  const env = d.envId ? short(a.data.envs.find(e => e.id === d.envId)?.description.summary) : null;
  const parts = [s.job.queue, d.taskId ? `task ${d.taskId}` : null, env, d.op ?? null, d.round !== undefined ? `round ${d.round}` : null].filter(Boolean);
  return parts.length > 1 ? `${parts[0]} (${parts.slice(1).join(', ')})` : parts[0]!;
}

const chainKey = (r: Analysis) =>
  JSON.stringify([...r.chains.envs.map(e => [e.summary, e.chain, e.requests]), ...r.chains.tasks.map(t => [t.taskId, t.chain])].sort());
const sameChains = (a: Analysis, b: Analysis) => chainKey(a) === chainKey(b);

function report(results: readonly Analysis[]): string {
  const out: string[] = [];
  const push = (...lines: string[]) => out.push(...lines);
  const cols = results.map(r => `cap ${r.data.settings.modelCap}`);
  const first = results[0]!;
  const cpu = os.cpus()[0];

  push('# Environment synthesis benchmark', '');
  push(`- machine: ${cpu?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.type()} ${os.release()}, Node ${process.version}`);
  push(`- date: ${new Date().toISOString()}`);
  push(`- command: \`node --import tsx bench/synthesis.ts${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}\``);
  push(`- input: fixtures/demo/source-tasks.jsonl (${first.data.tasks.length} valid tasks), scripted model server with fixtures/demo/*.yaml; every rule without a fault answers after ${DELAY} ms (the one 429 rule answers at once; embeddings are not delayed)`);
  push(`- settings: probe steps ${PROBE_STEPS}; ${Object.entries(first.data.configEcho).filter(([k]) => k !== 'endpoint concurrency cap').map(([k, v]) => `${k} ${v}`).join('; ')}`);
  push(`- configurations: endpoint concurrency cap (ENVFLEET_MODEL_MAX_CONCURRENCY) ${results.map(r => r.data.settings.modelCap).join(' and ')}, one after the other, each with a fresh server, worker process context and Redis prefix`);
  push('');

  push('## Result check', '');
  for (const r of results) {
    push(`- cap ${r.data.settings.modelCap}: **${r.verification.ok ? 'PASS' : 'FAIL'}**`);
    for (const l of r.verification.lines) push(`  - ${l}`);
  }
  push('');

  push('## Makespan and the critical-path bound', '');
  push(header(['', ...cols]));
  const line = (label: string, f: (r: Analysis) => string) => push(row([label, ...results.map(f)]));
  line('makespan (submit → run finished)', r => `**${s2(r.data.tDone - r.data.t0)}**`);
  line('submit → last job finished', r => s2(Math.max(...r.data.jobs.map(j => j.finishedOn)) - r.data.t0));
  line('longest chain of dependent model calls', r => `${r.chains.calls} = ${r.chains.longestTask.chain} (mining, task ${r.chains.longestTask.taskId}) + ${r.chains.longestEnv.chain} (${short(r.chains.longestEnv.summary)})`);
  line(`critical-path bound (chain × ${DELAY} ms)`, r => s2(r.chains.boundMs));
  line('**makespan ÷ bound**', r => `**${x2((r.data.tDone - r.data.t0) / r.chains.boundMs)}**`);
  line('bound + the 429\'s Retry-After (fleet-wide cool-down)', r => `${s2(r.chains.boundWithRetryAfterMs)} (makespan ÷ it: ${x2((r.data.tDone - r.data.t0) / r.chains.boundWithRetryAfterMs)})`);
  line('capacity bound (delayed calls × delay ÷ cap)', r => s2((r.calls.filter(c => c.delayed).length * DELAY) / r.data.settings.modelCap));
  line('each environment\'s last job finished at (after submit)', r =>
    r.data.envs
      .map(e => ({ name: short(e.description.summary), at: Math.max(...r.data.jobs.filter(j => j.data.envId === e.id).map(j => j.finishedOn)) - r.data.t0 }))
      .sort((a, b) => a.at - b.at)
      .map(e => `${e.name} ${s2(e.at)}`)
      .join(', '));
  line('requests in flight at the server: peak / mean', r => `${r.profile.peak} / ${r.profile.meanInFlight.toFixed(2)}`);
  line('share of the makespan with ≥ 1 request in flight', r => pct(r.profile.busyShare));
  line('share of the makespan at the cap', r => pct(r.profile.atCapShare));
  line('CPU during the run: this process / Redis / other processes', r => `${r.data.cpu.selfCores.toFixed(2)} / ${r.data.cpu.redisCores.toFixed(2)} / ${r.data.cpu.otherCores.toFixed(2)} cores`);
  push('');

  push('### The chain, per environment and per task', '');
  push(`Counts of requests answered after the delay, from the server log (cap ${first.data.settings.modelCap}; ${results.every(r => sameChains(r, first)) ? 'identical in every configuration' : 'see the note below: the configurations differ'}).`, '');
  push(header(['environment', 'status', 'requests', 'state', 'operations', 'slowest method job (op: calls)', 'assemble regenerations', 'config', 'probe tester', 'probe checker', 'check.repair', '**chain**']));
  for (const e of first.chains.envs) {
    push(row([e.summary, e.status, e.requests, e.state, e.operations, `${e.slowestOp}: ${e.methodMax} (all ops: ${Object.values(e.methodByOp).join('+')})`, e.assemble, e.config, e.tester, e.checker, e.repair, `**${e.chain}**`]));
  }
  push('');
  push(header(['task', 'judge', 'topic', '429 answers', '**chain**']));
  for (const t of first.chains.tasks) push(row([`${t.taskId}: ${t.text.length > 48 ? `${t.text.slice(0, 47)}…` : t.text}`, t.judge, t.topic, t.rateLimited, `**${t.chain}**`]));
  push('');
  for (const r of results.slice(1)) {
    if (!sameChains(r, first)) push(`Note: with cap ${r.data.settings.modelCap} the chains differ: ${r.chains.envs.map(e => `${short(e.summary)} ${e.chain} (${e.requests} requests)`).join(', ')}; tasks ${r.chains.tasks.map(t => `${t.taskId} ${t.chain}`).join(', ')}.`, '');
  }

  push('## Model calls', '');
  push(header(['stage (X-Envfleet-Stage)', ...results.flatMap(r => [`requests (cap ${r.data.settings.modelCap})`, `of which 429`])]));
  const stageNames = [...new Set(results.flatMap(r => r.stages.map(s => s.stage)))];
  for (const stage of stageNames) {
    push(row([stage === 'mine.dedup' ? 'mine.dedup (embeddings, not delayed)' : stage, ...results.flatMap(r => {
      const s = r.stages.find(x => x.stage === stage);
      return [String(s?.requests ?? 0) + (s?.other ? ` (${s.other} other errors)` : ''), String(s?.rateLimited ?? 0)];
    })]));
  }
  const totals = (r: Analysis) => ({
    all: r.calls.length,
    r429: r.calls.filter(c => c.rateLimited).length,
    emb: r.calls.filter(c => c.kind === 'embedding').length,
    delayed: r.calls.filter(c => c.delayed).length,
    kept: r.data.envs.filter(e => e.status === 'kept').length,
  });
  push(row(['**total**', ...results.flatMap(r => [`**${totals(r).all}**`, `**${totals(r).r429}**`])]));
  push('');
  for (const r of results) {
    const t = totals(r);
    const regen = r.calls.filter(c => c.assembleRegen).length;
    push(`- cap ${r.data.settings.modelCap}: ${t.all} requests = ${t.delayed} chat answers after the delay + ${t.r429} × 429 + ${t.emb} embeddings request(s)` +
      `${t.all - t.delayed - t.r429 - t.emb ? ` + ${t.all - t.delayed - t.r429 - t.emb} other` : ''}; skeleton.method includes ${regen} assemble regeneration(s); ` +
      `**${(t.all / Math.max(1, t.kept)).toFixed(1)} requests per kept environment** (${t.all} ÷ ${t.kept}; ${(t.delayed / Math.max(1, t.kept)).toFixed(1)} delayed chat answers per kept env). ` +
      `Per environment: ${r.chains.envs.map(e => `${short(e.summary)} ${e.requests}`).join(', ')}; mining ${r.calls.filter(c => c.stage?.startsWith('mine.')).length}. ` +
      `Ledger: ${r.data.ledger.requests} requests recorded (answered ones; ${r.data.ledger.cachedRequests} from the response cache).`);
  }
  push('');

  push('## Queue overhead per job', '');
  push('Times from BullMQ\'s job hashes (`timestamp` = added, `processedOn` = last attempt started, `finishedOn`), all on this machine\'s clock. ' +
    '**wait** = processedOn − ready, where ready is `timestamp`, or for a flow parent (mine.topic, mine.dedup, skeleton.assemble) its last child\'s `finishedOn`; ' +
    'jobs started more than once (rate-limited during the 429\'s cool-down) are left out of the wait figures, because their processedOn is their last start. ' +
    '**model time** = the server-side time (request arrival → answer sent) of the requests that match the job (same stage and task/environment/operation) and fall inside its last attempt. ' +
    '**non-model** = (finishedOn − processedOn) − model time, split into **slot wait** (timed in the gateway\'s limiter: the Redis script, and waiting while the endpoint is at its cap — woken by a release in this process, else polling every 250 ms) ' +
    'and **other** (HTTP client and JSON, sandbox work — method checks, class probes, probe sessions — the run store, enqueueing the next stage).', '');
  for (const r of results) {
    push(`### cap ${r.data.settings.modelCap}`, '');
    push(header(['queue', 'jobs', 'restarted', 'wait median / p95', 'duration median / p95', 'model calls per job: median (max)', 'model time median', 'non-model median / p95', 'of which slot wait median / p95', 'of which other median / p95']));
    for (const q of [...r.queues.rows, r.queues.all]) {
      const name = q.queue === 'all jobs' ? '**all jobs**' : q.queue;
      push(row([name, q.jobs, q.restarted, `${ms0(q.waitMedian)} / ${ms0(q.waitP95)}`, `${ms0(q.durationMedian)} / ${ms0(q.durationP95)}`, `${q.callsMedian} (${q.callsMax})`, ms0(q.modelMedian), `${ms0(q.nonModelMedian)} / ${ms0(q.nonModelP95)}`, `${ms0(q.limiterMedian)} / ${ms0(q.limiterP95)}`, `${ms0(q.otherMedian)} / ${ms0(q.otherP95)}`]));
    }
    const l = r.limiter;
    const unattributed = r.calls.length - new Set(r.stats.flatMap(s => s.calls.map(c => c.seq))).size;
    push('');
    push(`- endpoint slots: ${l.acquisitions} acquisitions, ${l.granted} granted (${l.waited} after waiting ≥ 10 ms: median ${ms0(l.medianWaitOfWaitedMs)}, longest ${ms0(l.maxWaitMs)}, ${s2(l.totalWaitMs)} in all), ` +
      `${l.refused} refused during the 429's cool-down (those jobs went back to their queue without using an attempt)` +
      `${l.unmatched ? `; ${l.unmatched} granted slot(s) not matched to a request in the server log` : ''}.`);
    push(`- ${unattributed} request(s) not attributed to a job's last attempt (the 429 answer belongs to the judge job's first start).`);
    push(`- jobs retried after a failed attempt (attemptsMade > 1, i.e. through the ${r.data.configEcho['job backoff (ms, exponential)']} ms exponential backoff): ${r.data.jobs.filter(j => j.attemptsMade > 1).length}; failed for good: ${r.data.jobs.filter(j => j.state === 'failed').length}.`);
    push('');
  }

  push('## Where the makespan goes: the observed critical path', '');
  push('Walking back from the job that finished last: a flow parent\'s predecessor is its child that finished last; any other job\'s is the job (of another queue, of the same environment when it has one) that was running when it was added, i.e. the job that enqueued it. ' +
    'hand-off = processedOn − the predecessor\'s finishedOn (negative when a job was picked up before its predecessor was marked finished). ' +
    'The sum telescopes: start + Σ job durations + Σ hand-offs + tail = makespan.', '');
  for (const r of results) {
    const p = r.path;
    const makespan = r.data.tDone - r.data.t0;
    push(`### cap ${r.data.settings.modelCap}: ${s2(makespan)}`, '');
    push(header(['job', 'hand-off', 'duration', 'model calls', 'model time', 'non-model', 'of which slot wait']));
    for (const st of p.steps) push(row([jobLabel(r, st.stat) + (st.stat.restarted ? ' ¹' : ''), ms0(st.handoffMs), ms0(st.stat.durationMs), st.stat.calls.length, ms0(st.stat.modelMs), ms0(st.stat.nonModelMs), ms0(st.stat.limiterMs)]));
    if (p.steps.some(st => st.stat.restarted)) push('', '¹ started more than once: its hand-off includes the earlier start(s) and the time the queue was rate-limited.');
    push('');
    push(`- model time on the path: **${s2(p.modelMs)}** (${p.modelCalls} requests; ${pct(p.modelMs / makespan)} of the makespan; the bound is ${s2(r.chains.boundMs)})`);
    push(`- non-model time inside the path's jobs: **${s2(p.nonModelMs)}** (${pct(p.nonModelMs / makespan)}), of which waiting for endpoint slots ${s2(p.limiterMs)}`);
    push(`- submit → first job on the path started: ${s2(p.startMs)}; hand-offs between the path's jobs: ${s2(p.handoffMs)} over ${Math.max(0, p.steps.length - 1)} hand-offs; last job finished → run seen finished: ${ms0(p.tailMs)}`);
    push('');
  }
  return out.join('\n');
}

// ---------------------------------------------------------------- main

async function redisVersion(): Promise<string> {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  try {
    return /redis_version:(\S+)/.exec(await redis.info('server'))?.[1] ?? 'unknown';
  } finally {
    redis.disconnect();
  }
}

const started = Date.now();
const caps = WIDE > 0 && WIDE !== CAP ? [CAP, WIDE] : [CAP];
const tag = randomUUID().slice(0, 8);
const prefixOf = (cap: number) => `envfleet-bench-synth-${tag}-cap${cap}`;
// Ctrl-C: stop the server and the workers, then delete this run's keys before exiting.
process.once('SIGINT', () => {
  progress('interrupted; stopping the workers and deleting this run\'s Redis keys');
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  void interruptRun()
    .then(() => Promise.allSettled(caps.map(cap => deletePrefix(redis, prefixOf(cap)))))
    .finally(() => {
      redis.disconnect();
      process.exit(130);
    });
});
const results: Analysis[] = [];
for (const cap of caps) {
  const data = await runConfiguration({
    label: `cap ${cap}`,
    prefix: prefixOf(cap),
    redisUrl: REDIS_URL,
    fixtures: `${ROOT}fixtures/demo`,
    tasksFile: `${ROOT}fixtures/demo/source-tasks.jsonl`,
    delayMs: DELAY,
    modelCap: cap,
    workerConcurrency: WORKER_CONCURRENCY,
    probeSteps: PROBE_STEPS,
    timeoutMs: 75_000,
    progress,
  });
  if (data.keysLeft !== 0) progress(`WARNING: ${data.keysLeft} keys left under ${data.prefix}:*`);
  results.push(analyse(data));
}
let text = report(results);
text += `\nRedis ${await redisVersion()} at ${REDIS_URL.replace(/\/\/[^@]*@/, '//')}; keys left under the run prefixes after clean-up: ${results.map(r => `${r.data.prefix}:* ${r.data.keysLeft}`).join(', ')}. Whole benchmark: ${s2(Date.now() - started)}.\n`;
process.stdout.write(`${text}\n`);
if (!results.every(r => r.verification.ok && r.data.keysLeft === 0)) process.exitCode = 1;
