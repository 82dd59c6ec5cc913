/**
 * Figures of bench/synthesis.ts, computed from the raw data of one configuration: which request
 * belongs to which task, environment, operation and job; the longest chain of dependent model
 * calls; per-stage and per-environment call counts; queue overhead per job; and the observed
 * critical path of the run split into model time, in-job non-model time and hand-offs.
 */
import type { JobRecord, LoggedCall, RunData } from './run.js';

export interface Call extends LoggedCall {
  readonly kind: 'chat' | 'embedding';
  /** Answered normally after the scripted delay (the only requests that cost `delay`). */
  readonly delayed: boolean;
  readonly rateLimited: boolean;
  /** Environment summary the request is about (env stages only). */
  readonly env: string | null;
  /** Source task id (mining stages only). */
  readonly taskId: string | null;
  /** Operation whose method is written (skeleton.method stage only). */
  readonly op: string | null;
  /** A skeleton.method request sent by skeleton.assemble to regenerate a method that does not load. */
  readonly assembleRegen: boolean;
  /** How long the gateway waited for an endpoint slot before sending it (0 when no limiter record matched). */
  readonly limiterWaitMs: number;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The text of a request: every message's content (chat) or every input (embeddings). */
export function requestText(body: unknown): string {
  if (!isRecord(body)) return '';
  const parts: string[] = [];
  const messages = body['messages'];
  if (Array.isArray(messages)) {
    for (const m of messages) {
      if (!isRecord(m)) continue;
      const content = m['content'];
      if (typeof content === 'string') parts.push(content);
      else if (Array.isArray(content)) for (const p of content) if (isRecord(p) && typeof p['text'] === 'string') parts.push(p['text']);
    }
  }
  const input = body['input'];
  if (typeof input === 'string') parts.push(input);
  else if (Array.isArray(input)) for (const i of input) if (typeof i === 'string') parts.push(i);
  return parts.join('\n');
}

/** Marker of repairMethodPrompt (src/synthesis/prompts.ts): only assemble regenerations carry it. */
const ASSEMBLE_REGEN_MARKER = 'That method does not work:';
const OP_RE = /Write the method for operation ([A-Za-z_$][\w$]*):/;

export function classify(data: RunData): Call[] {
  const summaries = data.envs.map(e => e.description.summary);
  const calls = data.calls.map((c): Call => {
    const text = requestText(c.body);
    const stage = c.stage ?? '';
    const mining = stage.startsWith('mine.');
    const env = mining ? null : (summaries.find(s => text.includes(s)) ?? null);
    const taskId = stage === 'mine.judge' || stage === 'mine.topic' ? (data.tasks.find(t => text.includes(t.task))?.id ?? null) : null;
    const isMethod = stage === 'skeleton.method';
    return {
      ...c,
      kind: c.path === '/v1/embeddings' ? 'embedding' : 'chat',
      delayed: c.status === 200 && c.fault === 'delay',
      rateLimited: c.status === 429,
      env,
      taskId,
      op: isMethod ? (OP_RE.exec(text)?.[1] ?? null) : null,
      assembleRegen: isMethod && text.includes(ASSEMBLE_REGEN_MARKER),
      limiterWaitMs: 0,
    };
  });
  const waits = matchLimiterWaits(data, calls);
  return calls.map(c => ({ ...c, limiterWaitMs: waits.get(c.seq) ?? 0 }));
}

/**
 * Pairs each granted slot acquisition with the request it let through: in the order the slots
 * were granted, the earliest request not yet paired of the same stage (and, for skeleton.method,
 * the same operation) that reached the server at most 1 s after the grant. Returns the wait per
 * request seq.
 */
function matchLimiterWaits(data: RunData, calls: readonly Call[]): Map<number, number> {
  const waits = new Map<number, number>();
  const byArrival = [...calls].sort((a, b) => a.startMs - b.startMs || a.seq - b.seq);
  const granted = data.limiterWaits.filter(w => w.granted).sort((a, b) => a.endMs - b.endMs);
  for (const w of granted) {
    const call = byArrival.find(
      c =>
        !waits.has(c.seq) &&
        c.stage === w.stage &&
        (w.stage !== 'skeleton.method' || w.salt === null || c.op === w.salt) &&
        c.startMs >= w.endMs - 2 &&
        c.startMs <= w.endMs + 1000,
    );
    if (call) waits.set(call.seq, w.endMs - w.startMs);
  }
  return waits;
}

export interface LimiterSummary {
  readonly acquisitions: number;
  readonly granted: number;
  /** Refused: the endpoint was cooling down after the 429 (or the wait would have been too long); the job went back to its queue. */
  readonly refused: number;
  /** Granted after waiting ≥ 10 ms (the endpoint was at its cap). */
  readonly waited: number;
  readonly totalWaitMs: number;
  readonly medianWaitOfWaitedMs: number;
  readonly maxWaitMs: number;
  readonly unmatched: number;
}

export function limiterSummary(data: RunData, calls: readonly Call[]): LimiterSummary {
  const granted = data.limiterWaits.filter(w => w.granted);
  const waitsMs = granted.map(w => w.endMs - w.startMs);
  const long = waitsMs.filter(ms => ms >= 10);
  return {
    acquisitions: data.limiterWaits.length,
    granted: granted.length,
    refused: data.limiterWaits.length - granted.length,
    waited: long.length,
    totalWaitMs: sum(waitsMs),
    medianWaitOfWaitedMs: median(long),
    maxWaitMs: Math.max(0, ...waitsMs),
    unmatched: granted.length - matchLimiterWaits(data, calls).size,
  };
}

// ---------------------------------------------------------------- statistics

export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}
export const median = (values: readonly number[]) => quantile(values, 0.5);
export const p95 = (values: readonly number[]) => quantile(values, 0.95);
const sum = (values: readonly number[]) => values.reduce((a, b) => a + b, 0);

// ---------------------------------------------------------------- dependent-call chain

export interface EnvChain {
  readonly summary: string;
  readonly status: string;
  /** Every request about this environment (all answered normally here). */
  readonly requests: number;
  readonly state: number;
  readonly operations: number;
  readonly methodByOp: Readonly<Record<string, number>>;
  readonly methodMax: number;
  readonly slowestOp: string;
  readonly assemble: number;
  readonly config: number;
  readonly tester: number;
  readonly checker: number;
  readonly repair: number;
  readonly chain: number;
}

export interface TaskChain {
  readonly taskId: string;
  readonly text: string;
  readonly judge: number;
  readonly topic: number;
  readonly rateLimited: number;
  readonly chain: number;
}

export interface Chains {
  readonly tasks: readonly TaskChain[];
  readonly envs: readonly EnvChain[];
  readonly longestTask: TaskChain;
  readonly longestEnv: EnvChain;
  /** Dependent delayed calls: longest mining chain + longest environment chain. */
  readonly calls: number;
  readonly boundMs: number;
  /** The bound plus the Retry-After of the injected 429s (a fleet-wide cool-down during mining). */
  readonly boundWithRetryAfterMs: number;
}

/**
 * The longest chain of dependent model calls, from the server log and the known dependency
 * structure. Per task: judge → topic (structured-output repairs included). Then mine.dedup
 * (embeddings, not delayed). Per environment: state → operations → the slowest operation's
 * skeleton.method job (its calls in sequence, repairs included; the other operations run in
 * parallel) → the assemble regenerations → check.config → every probe round (tester and checker
 * calls strictly in sequence) and the check.repair calls between rounds. Only requests answered
 * after the delay count (a 429 is answered at once).
 */
export function chains(data: RunData, calls: readonly Call[]): Chains {
  const delayed = calls.filter(c => c.delayed);
  const tasks: TaskChain[] = data.tasks.map(t => {
    const mine = calls.filter(c => c.taskId === t.id);
    const judge = mine.filter(c => c.delayed && c.stage === 'mine.judge').length;
    const topic = mine.filter(c => c.delayed && c.stage === 'mine.topic').length;
    return { taskId: t.id, text: t.task, judge, topic, rateLimited: mine.filter(c => c.rateLimited).length, chain: judge + topic };
  });
  const envs: EnvChain[] = data.envs.map(e => {
    const summary = e.description.summary;
    const of = delayed.filter(c => c.env === summary);
    const n = (stage: string) => of.filter(c => c.stage === stage).length;
    const methodByOp: Record<string, number> = {};
    for (const c of of) if (c.stage === 'skeleton.method' && !c.assembleRegen) methodByOp[c.op ?? '?'] = (methodByOp[c.op ?? '?'] ?? 0) + 1;
    const [slowestOp, methodMax] = Object.entries(methodByOp).reduce<[string, number]>((best, cur) => (cur[1] > best[1] ? cur : best), ['-', 0]);
    const assemble = of.filter(c => c.assembleRegen || c.stage === 'skeleton.assemble').length;
    const parts = { state: n('skeleton.state'), operations: n('skeleton.operations'), config: n('check.config'), tester: n('check.probe.tester'), checker: n('check.probe.checker'), repair: n('check.repair') };
    return {
      summary,
      status: e.status,
      requests: calls.filter(c => c.env === summary).length,
      ...parts,
      methodByOp,
      methodMax,
      slowestOp,
      assemble,
      chain: parts.state + parts.operations + methodMax + assemble + parts.config + parts.tester + parts.checker + parts.repair,
    };
  });
  const longestTask = tasks.reduce((a, b) => (b.chain > a.chain ? b : a));
  const longestEnv = envs.reduce((a, b) => (b.chain > a.chain ? b : a));
  const n = longestTask.chain + longestEnv.chain;
  const boundMs = n * data.settings.delayMs;
  const observed429 = calls.filter(c => c.rateLimited).length;
  const retryAfter = sum(data.retryAfterMs.slice(0, observed429));
  return { tasks, envs, longestTask, longestEnv, calls: n, boundMs, boundWithRetryAfterMs: boundMs + retryAfter };
}

// ---------------------------------------------------------------- calls per stage

export interface StageCount {
  readonly stage: string;
  readonly requests: number;
  readonly answered: number;
  readonly rateLimited: number;
  readonly other: number;
}

export function stageCounts(calls: readonly Call[]): StageCount[] {
  const order = ['mine.judge', 'mine.topic', 'mine.dedup', 'skeleton.state', 'skeleton.operations', 'skeleton.method', 'skeleton.assemble', 'check.config', 'check.probe.tester', 'check.probe.checker', 'check.repair'];
  const stages = [...new Set(calls.map(c => c.stage ?? '(none)'))].sort((a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99));
  return stages.map(stage => {
    const of = calls.filter(c => (c.stage ?? '(none)') === stage);
    const answered = of.filter(c => c.status === 200).length;
    const rateLimited = of.filter(c => c.rateLimited).length;
    return { stage, requests: of.length, answered, rateLimited, other: of.length - answered - rateLimited };
  });
}

// ---------------------------------------------------------------- jobs

export interface JobStat {
  readonly job: JobRecord;
  /** When the job could run: its timestamp (added), or for a flow parent its last child's finishedOn. */
  readonly readyAt: number;
  readonly waitMs: number;
  readonly durationMs: number;
  /** Requests made during the job's (last) attempt. */
  readonly calls: readonly Call[];
  /** Sum of those requests' time at the server (arrival → answer sent). */
  readonly modelMs: number;
  readonly nonModelMs: number;
  /** Part of the non-model time spent waiting for endpoint slots (timed in the limiter). */
  readonly limiterMs: number;
  /** nonModelMs − limiterMs. */
  readonly otherMs: number;
  /** Started more than once (the rate-limited judge job, or a retry). */
  readonly restarted: boolean;
}

const TOLERANCE_MS = 5;

function callsOfJob(job: JobRecord, calls: readonly Call[], summaryOf: (envId: string | undefined) => string | null): Call[] {
  const d = job.data;
  const env = summaryOf(d.envId);
  const match = (c: Call): boolean => {
    switch (job.queue) {
      case 'mine.judge':
      case 'mine.topic':
        return c.stage === job.queue && c.taskId === d.taskId;
      case 'mine.dedup':
        return c.stage === 'mine.dedup';
      case 'skeleton.state':
      case 'skeleton.operations':
      case 'check.config':
        return c.stage === job.queue && c.env === env;
      case 'skeleton.method':
        return c.stage === 'skeleton.method' && !c.assembleRegen && c.env === env && c.op === d.op;
      case 'skeleton.assemble':
        return (c.assembleRegen || c.stage === 'skeleton.assemble') && c.env === env;
      case 'check.probe':
        return (c.stage === 'check.probe.tester' || c.stage === 'check.probe.checker') && c.env === env;
      case 'check.verdict':
        return c.stage === 'check.repair' && c.env === env;
      default:
        return false;
    }
  };
  return calls.filter(c => match(c) && c.startMs >= job.processedOn - TOLERANCE_MS && c.endMs <= job.finishedOn + TOLERANCE_MS);
}

export function jobStats(data: RunData, calls: readonly Call[]): JobStat[] {
  const summaryOf = (envId: string | undefined) => data.envs.find(e => e.id === envId)?.description.summary ?? null;
  const jobs = data.jobs;
  return jobs.map(job => {
    const children = jobs.filter(j => j.parentId === job.id);
    const readyAt = children.length ? Math.max(...children.map(c => c.finishedOn)) : job.timestamp;
    const mine = callsOfJob(job, calls, summaryOf);
    const modelMs = sum(mine.map(c => c.endMs - c.startMs));
    const limiterMs = sum(mine.map(c => c.limiterWaitMs));
    const durationMs = job.finishedOn - job.processedOn;
    return {
      job,
      readyAt,
      waitMs: job.processedOn - readyAt,
      durationMs,
      calls: mine,
      modelMs,
      nonModelMs: durationMs - modelMs,
      limiterMs,
      otherMs: durationMs - modelMs - limiterMs,
      restarted: job.attemptsStarted > 1,
    };
  });
}

export interface QueueRow {
  readonly queue: string;
  readonly jobs: number;
  readonly restarted: number;
  readonly waitMedian: number;
  readonly waitP95: number;
  readonly durationMedian: number;
  readonly durationP95: number;
  readonly callsMedian: number;
  readonly callsMax: number;
  readonly modelMedian: number;
  readonly nonModelMedian: number;
  readonly nonModelP95: number;
  readonly limiterMedian: number;
  readonly limiterP95: number;
  readonly otherMedian: number;
  readonly otherP95: number;
}

export const QUEUE_ORDER = ['mine.judge', 'mine.topic', 'mine.dedup', 'skeleton.state', 'skeleton.operations', 'skeleton.method', 'skeleton.assemble', 'check.config', 'check.probe', 'check.verdict'];

export function queueRows(stats: readonly JobStat[]): { rows: QueueRow[]; all: QueueRow } {
  // Waits only for jobs that started once (a restarted job's processedOn is its last start);
  // durations and time splits for every job (they describe its last attempt).
  const row = (queue: string, of: readonly JobStat[]): QueueRow => {
    const once = of.filter(s => !s.restarted);
    return {
      queue,
      jobs: of.length,
      restarted: of.length - once.length,
      waitMedian: median(once.map(s => s.waitMs)),
      waitP95: p95(once.map(s => s.waitMs)),
      durationMedian: median(of.map(s => s.durationMs)),
      durationP95: p95(of.map(s => s.durationMs)),
      callsMedian: median(of.map(s => s.calls.length)),
      callsMax: Math.max(0, ...of.map(s => s.calls.length)),
      modelMedian: median(of.map(s => s.modelMs)),
      nonModelMedian: median(of.map(s => s.nonModelMs)),
      nonModelP95: p95(of.map(s => s.nonModelMs)),
      limiterMedian: median(of.map(s => s.limiterMs)),
      limiterP95: p95(of.map(s => s.limiterMs)),
      otherMedian: median(of.map(s => s.otherMs)),
      otherP95: p95(of.map(s => s.otherMs)),
    };
  };
  const queues = [...new Set(stats.map(s => s.job.queue))].sort((a, b) => (QUEUE_ORDER.indexOf(a) + 1 || 99) - (QUEUE_ORDER.indexOf(b) + 1 || 99));
  return { rows: queues.map(q => row(q, stats.filter(s => s.job.queue === q))), all: row('all jobs', stats) };
}

// ---------------------------------------------------------------- observed critical path

export interface PathStep {
  readonly stat: JobStat;
  /** processedOn − the predecessor's finishedOn (or − t0 for the first job); negative when the job started before its predecessor was marked finished. */
  readonly handoffMs: number;
}

export interface CriticalPath {
  readonly steps: readonly PathStep[];
  readonly startMs: number;
  readonly modelMs: number;
  readonly modelCalls: number;
  readonly nonModelMs: number;
  readonly limiterMs: number;
  readonly handoffMs: number;
  /** tDone − the last job's finishedOn: the settle hook and the 20 ms poll. */
  readonly tailMs: number;
}

/**
 * Walks back from the job that finished last: a flow parent's predecessor is its child that
 * finished last; any other job's is the job of another queue (no stage enqueues its own queue;
 * this also rules out flow siblings), of the same environment when it has one, that was running
 * when it was added (the job that enqueued it). The first job's hand-off counts from t0.
 */
export function criticalPath(data: RunData, stats: readonly JobStat[]): CriticalPath {
  const done = stats.filter(s => s.job.state === 'completed');
  const byId = new Map(done.map(s => [s.job.id, s]));
  const predecessor = (s: JobStat): JobStat | null => {
    const children = done.filter(c => c.job.parentId === s.job.id);
    if (children.length) return children.reduce((a, b) => (b.job.finishedOn > a.job.finishedOn ? b : a));
    const t = s.job.timestamp;
    const running = done.filter(k => k.job.queue !== s.job.queue && k.job.processedOn <= t && t <= k.job.finishedOn + TOLERANCE_MS);
    const sameEnv = running.filter(k => s.job.data.envId !== undefined && k.job.data.envId === s.job.data.envId);
    const pick = sameEnv.length ? sameEnv : running.filter(k => k.job.data.envId === undefined);
    return pick.length ? pick.reduce((a, b) => (b.job.processedOn > a.job.processedOn ? b : a)) : null;
  };
  const chain: JobStat[] = [];
  let cur: JobStat | null | undefined = done.reduce<JobStat | undefined>((a, b) => (!a || b.job.finishedOn > a.job.finishedOn ? b : a), undefined);
  const seen = new Set<string>();
  while (cur && !seen.has(cur.job.id)) {
    seen.add(cur.job.id);
    chain.unshift(cur);
    cur = predecessor(cur);
    if (cur) cur = byId.get(cur.job.id);
  }
  const steps: PathStep[] = chain.map((stat, i) => ({
    stat,
    handoffMs: stat.job.processedOn - (i === 0 ? data.t0 : chain[i - 1]!.job.finishedOn),
  }));
  const last = chain.at(-1);
  return {
    steps,
    startMs: steps[0]?.handoffMs ?? 0,
    modelMs: sum(chain.map(s => s.modelMs)),
    modelCalls: sum(chain.map(s => s.calls.length)),
    nonModelMs: sum(chain.map(s => s.nonModelMs)),
    limiterMs: sum(chain.map(s => s.limiterMs)),
    handoffMs: sum(steps.slice(1).map(s => s.handoffMs)),
    tailMs: last ? data.tDone - last.job.finishedOn : 0,
  };
}

// ---------------------------------------------------------------- endpoint concurrency

export interface ConcurrencyProfile {
  readonly peak: number;
  /** Share of the makespan with at least one request at the server. */
  readonly busyShare: number;
  /** Share of the makespan with `cap` or more requests at the server. */
  readonly atCapShare: number;
  readonly meanInFlight: number;
}

export function concurrencyProfile(data: RunData, calls: readonly Call[], cap: number): ConcurrencyProfile {
  const events = calls.flatMap(c => [
    { t: Math.max(c.startMs, data.t0), d: 1 },
    { t: Math.min(Math.max(c.endMs, c.startMs), data.tDone), d: -1 },
  ]);
  events.sort((a, b) => a.t - b.t || a.d - b.d);
  let n = 0;
  let peak = 0;
  let prev = data.t0;
  let busy = 0;
  let atCap = 0;
  let area = 0;
  for (const e of events) {
    const dt = Math.max(0, e.t - prev);
    if (n >= 1) busy += dt;
    if (n >= cap) atCap += dt;
    area += n * dt;
    n += e.d;
    peak = Math.max(peak, n);
    prev = Math.max(prev, e.t);
  }
  const span = Math.max(1, data.tDone - data.t0);
  return { peak, busyShare: busy / span, atCapShare: atCap / span, meanInFlight: area / span };
}

// ---------------------------------------------------------------- the fixtures' expected result

export interface Verification {
  readonly ok: boolean;
  readonly lines: readonly string[];
}

/** What fixtures/demo implies: library kept, parking kept after an assemble repair of exit_vehicle, clinic rejected after a repair round. */
export function verify(data: RunData): Verification {
  const lines: string[] = [];
  let ok = data.finished;
  if (!data.finished) lines.push('the run did not finish within the time limit');
  const kept = data.envs.filter(e => e.status === 'kept');
  const rejected = data.envs.filter(e => e.status === 'rejected');
  const other = data.envs.filter(e => e.status !== 'kept' && e.status !== 'rejected');
  const expect = (cond: boolean, what: string) => {
    lines.push(`${cond ? 'ok  ' : 'FAIL'} ${what}`);
    if (!cond) ok = false;
  };
  expect(data.envs.length === 3 && kept.length === 2 && rejected.length === 1 && other.length === 0, `3 environments: ${kept.length} kept, ${rejected.length} rejected, ${other.length} other (expected 2 kept, 1 rejected)`);
  const bySummary = (s: string) => data.envs.find(e => e.description.summary === s);
  const library = bySummary('Library circulation system');
  const parking = bySummary('Parking garage management');
  const clinic = bySummary('Clinic appointment scheduling');
  expect(library?.status === 'kept', `Library circulation system: ${library?.status ?? 'missing'} (expected kept)`);
  expect(
    parking?.status === 'kept' && (parking.assembleRepairs ?? []).some(r => r.methods.includes('exit_vehicle')),
    `Parking garage management: ${parking?.status ?? 'missing'}, assemble repaired ${(parking?.assembleRepairs ?? []).flatMap(r => r.methods).join(', ') || 'nothing'} (expected kept after an assemble repair of exit_vehicle)`,
  );
  expect(
    clinic?.status === 'rejected' && clinic.quality?.repair?.attempted === true && clinic.quality.repair.saved === false,
    `Clinic appointment scheduling: ${clinic?.status ?? 'missing'}, repair round ${clinic?.quality?.repair ? (clinic.quality.repair.saved ? 'saved it' : 'did not save it') : 'not run'} (expected rejected after a repair round)`,
  );
  const failedJobs = data.jobs.filter(j => j.state === 'failed').length;
  expect(failedJobs === 0, `${failedJobs} failed jobs`);
  return { ok, lines };
}
