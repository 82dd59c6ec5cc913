import type { DocOutcome, FunnelCount, RunStore } from '../runs/store.js';
import { groupIdOf, trajectoryIdOf } from '../runs/ids.js';
import { runEpisode } from './episode.js';
import { groupStats, type GroupMember, type GroupStats } from './groups.js';
import { ROLLOUT_PROMPT_VERSIONS } from './prompts.js';
import type { TrajectoryStream } from './stream.js';
import { trajectorySummary, type RolloutMode, type StoredTrajectory, type Termination, type Trajectory } from './types.js';
import type { StageDeps } from '../stage-deps.js';
import { stringifyJsonBytes } from '../util/raw-json.js';
import type { StartPacer } from './start-pacer.js';

export interface RolloutDeps extends StageDeps {
  readonly stream: TrajectoryStream;
  /** The worker process's start pacer: each episode waits for its slot before it starts (none: starts at once). */
  readonly pacer?: StartPacer | undefined;
}

/**
 * What an episode reads before it starts. A scenario, its environment and the run's rollout settings
 * do not change once rollouts start, so a worker keeps them for a minute instead of reading (and
 * parsing) them from Redis for every episode.
 */
const contextCache = new Map<string, { at: number; value: Promise<Awaited<ReturnType<typeof loadContext>>> }>();
const CONTEXT_TTL_MS = 60_000;

function context(store: RunStore, runId: string, scenarioId: string, policy?: string) {
  const key = `${runId}\u0000${scenarioId}\u0000${policy ?? ''}`;
  const hit = contextCache.get(key);
  if (hit && Date.now() - hit.at < CONTEXT_TTL_MS) return hit.value;
  const value = loadContext(store, runId, scenarioId, policy);
  contextCache.set(key, { at: Date.now(), value });
  value.catch(() => contextCache.delete(key));
  if (contextCache.size > 5_000) contextCache.delete(contextCache.keys().next().value!);
  return value;
}

async function loadContext(store: RunStore, runId: string, scenarioId: string, policy?: string) {
  const config = await store.getDoc(runId, 'rollout-config', policy ?? 'current');
  if (!config) throw new Error(`run ${runId} has no rollout configuration${policy ? ` for policy generation ${policy}` : ''} (start rollouts with envfleet rollouts)`);
  const scenario = await store.getDoc(runId, 'scenario', scenarioId);
  if (!scenario) throw new Error(`scenario ${scenarioId} of run ${runId} not found`);
  const env = await store.getDoc(runId, 'env', scenario.environmentId);
  if (!env?.source) throw new Error(`environment ${scenario.environmentId} of run ${runId} not found`);
  const run = await store.getRun(runId);
  if (!run) throw new Error(`run "${runId}" does not exist`);
  // Written once here for every episode of the scenario: sessions get the initial state as JSON text.
  const initialStateJson = scenario.initialStateJson ?? (scenario.initialState === undefined ? undefined : JSON.stringify(scenario.initialState));
  return { config, scenario, env, limits: run.options.limits, initialStateJson };
}

/** rollout.run: one episode, stored and published once (a retried job republishes; the sink writes each id once). */
export async function runRollout(deps: RolloutDeps, runId: string, scenarioId: string, mode: RolloutMode, sample: number, policy?: string): Promise<StoredTrajectory> {
  const id = trajectoryIdOf(runId, scenarioId, mode, sample, policy);
  const existing = await deps.store.getDoc(runId, 'trajectory', id);
  if (existing) {
    // Without a summary: the document may be archived already, and the sink reads it to tell.
    await deps.stream.publish(runId, id);
    return existing;
  }
  const { config, scenario, env, limits, initialStateJson } = await context(deps.store, runId, scenarioId, policy);
  await deps.pacer?.take(deps.signal);
  const began = performance.now();
  const trajectory = await runEpisode(
    { gateway: deps.gateway, sandbox: deps.sandbox, logger: deps.logger, signal: deps.signal, pacer: deps.pacer },
    {
      runId,
      scenario,
      ...(initialStateJson === undefined ? {} : { initialStateJson }),
      env,
      mode,
      sample,
      limits: config.limits[mode],
      sandboxLimits: limits,
      policyModel: config.policyModel,
      userModel: config.userModel,
      sampling: { temperature: config.temperature, maxTokens: config.maxTokensPerTurn },
      policyVersion: config.policyVersion ?? null,
      ...(policy ? { policy } : {}),
    },
  );
  deps.pacer?.observeEpisode(performance.now() - began);
  // Written as this text, and published with its summary and the text's digest: the sink keeps the summary in
  // Redis once the line is written, without parsing the whole document, when what it reads is this text.
  const text = storedText(trajectory);
  if (!(await deps.store.addDocText(runId, 'trajectory', id, text, outcomeCounts(trajectory), groupOutcome(trajectory, policy)))) {
    // Another run of this job stored the episode first (a stalled job taken again while it still ran): that
    // one is the run's, counted once; this one is dropped. Republished without a summary, as above.
    const first = await deps.store.getDoc(runId, 'trajectory', id);
    await deps.stream.publish(runId, id);
    if (first) return first;
  } else {
    await deps.stream.publish(runId, id, { summary: trajectorySummary(trajectory), text });
  }
  return trajectory;
}

/**
 * A trajectory's JSON text as the store keeps it (its final state's text as the sandbox wrote it), as UTF-8
 * bytes: encoded once, for the store (which sends a large document as bytes) and for the digest the stream
 * entry carries.
 */
function storedText(t: Trajectory): Buffer {
  const bytes = stringifyJsonBytes(t);
  if (bytes === undefined) throw new Error(`trajectory ${t.id}: the document is not JSON`);
  return bytes;
}

/**
 * Counter name of the run's reward totals (funnel hash, stage `rollout.outcome`): `reward-micro` sums
 * rewards in millionths, `solved` counts solved episodes, `unscored` those without a reward. With the `rollout.run` counts by termination
 * they give a run's trajectory statistics without reading any trajectory.
 */
export const OUTCOME_COUNTERS = 'rollout.outcome';

/** What storing a finished (or given-up) episode adds to the run's counters. */
function outcomeCounts(t: Pick<Trajectory, 'reward' | 'solved' | 'termination' | 'steps' | 'checks'>): FunnelCount[] {
  const counts: FunnelCount[] = [{ stage: 'rollout.run', outcome: t.termination.reason, n: 1 }];
  const micro = Math.round((t.reward ?? 0) * 1e6);
  if (micro) counts.push({ stage: OUTCOME_COUNTERS, outcome: 'reward-micro', n: micro });
  if (t.solved) counts.push({ stage: OUTCOME_COUNTERS, outcome: 'solved', n: 1 });
  // No reward (a model or environment error, checks that could not run on the final state): out of the mean.
  if (t.reward === null) counts.push({ stage: OUTCOME_COUNTERS, outcome: 'unscored', n: 1 });
  for (const step of t.steps) if (step.runtimeError) counts.push({ stage: 'sandbox', outcome: step.runtimeError, n: 1 });
  // A check that errs counts as false: said by code, or a check that loops only on a changed state zeroes every reward
  // and status shows only the mean.
  for (const check of t.checks) if (check.errorCode) counts.push({ stage: 'checks', outcome: check.errorCode, n: 1 });
  return counts;
}

/** What a group job needs of a trajectory, kept beside it in its group's hash (see computeGroup). */
function groupOutcome(t: Trajectory, policy?: string): DocOutcome {
  const member: GroupMember = { id: t.id, sample: t.sample, reward: t.reward, solved: t.solved, termination: { reason: t.termination.reason, detail: null } };
  return { group: groupIdOf(t.scenarioId, t.mode, policy), json: JSON.stringify(member) };
}

/** A kept outcome read back; null when the text is not one (then the trajectory itself is read). */
function memberOf(text: string | null, id: string): GroupMember | null {
  if (text === null) return null;
  try {
    const m = JSON.parse(text) as Partial<GroupMember> | null;
    if (!m || m.id !== id || typeof m.sample !== 'number' || (m.reward !== null && typeof m.reward !== 'number') || typeof m.solved !== 'boolean' || typeof m.termination?.reason !== 'string') return null;
    return m as GroupMember;
  } catch {
    return null;
  }
}

/** The record of an episode whose job failed for good (so scores are over the planned set, not the survivors). */
export async function recordFailedRollout(deps: Pick<RolloutDeps, 'store' | 'stream'>, runId: string, scenarioId: string, mode: RolloutMode, sample: number, reason: Termination, detail: string, policy?: string): Promise<void> {
  const id = trajectoryIdOf(runId, scenarioId, mode, sample, policy);
  if (await deps.store.getDoc(runId, 'trajectory', id)) return;
  const scenario = await deps.store.getDoc(runId, 'scenario', scenarioId);
  const config = await deps.store.getDoc(runId, 'rollout-config', policy ?? 'current');
  const record: Trajectory = {
    id,
    runId,
    scenarioId,
    environmentId: scenario?.environmentId ?? '',
    mode,
    sample,
    ...(policy ? { policy } : {}),
    model: config?.policyModel ?? 'unknown',
    policyVersion: config?.policyVersion ?? null,
    userModel: null,
    sampling: { temperature: 0, maxTokens: 0 },
    tools: [],
    messages: [],
    userMessages: null,
    steps: [],
    checks: [],
    reward: null,
    solved: false,
    checksError: 'the episode did not run to the end',
    termination: { reason, detail },
    turns: 0,
    usage: { promptTokens: 0, completionTokens: 0, modelCalls: 0 },
    timings: { startedAt: new Date().toISOString(), wallMs: 0, envUs: 0 },
    finalState: null,
    lineage: { runId, scenarioId, prompts: { ...ROLLOUT_PROMPT_VERSIONS } },
  };
  const text = storedText(record);
  // A run of the job that is still going may have stored its episode first: then that one stands, republished
  // without a summary as runRollout does (also when this very write was applied but its reply lost, and sent again).
  if (await deps.store.addDocText(runId, 'trajectory', id, text, outcomeCounts(record), groupOutcome(record, policy))) await deps.stream.publish(runId, id, { summary: trajectorySummary(record), text });
  else await deps.stream.publish(runId, id);
}

/** Trajectories a group job reads at once (a trajectory not yet archived by the sink is ≈ 100 KB). */
const GROUP_READS = 64;

export async function computeGroup(store: RunStore, runId: string, scenarioId: string, mode: RolloutMode, samples: number, policy?: string): Promise<GroupStats> {
  const trajectories: GroupMember[] = [];
  let missing = 0;
  const group = groupIdOf(scenarioId, mode, policy);
  // Read GROUP_READS at a time (one round trip each on an auto-pipelined connection), not one after another: the
  // outcomes kept beside the trajectories first (one small hash read), and the trajectory itself only where none
  // is kept (one stored by an older worker). A trajectory not archived yet is ≈ 100 KB, and reading and parsing it
  // cost the worker ≈ 1 ms; its outcome, well under 0.1 ms (bench/group-reads.ts).
  for (let from = 0; from < samples; from += GROUP_READS) {
    const ids = Array.from({ length: Math.min(GROUP_READS, samples - from) }, (_, i) => trajectoryIdOf(runId, scenarioId, mode, from + i, policy));
    const kept = (await store.groupOutcomes(runId, group, ids)).map((text, i) => memberOf(text, ids[i]!));
    const read = await Promise.all(ids.map((id, i) => (kept[i] ? Promise.resolve(kept[i]) : store.getDoc(runId, 'trajectory', id))));
    for (const t of read) {
      if (t) trajectories.push(t);
      else missing += 1;
    }
  }
  const scenario = await store.getDoc(runId, 'scenario', scenarioId);
  const config = await store.getDoc(runId, 'rollout-config', policy ?? 'current');
  const stats = { ...groupStats(runId, scenarioId, scenario?.environmentId ?? '', mode, trajectories, samples, policy), policyModel: config?.policyModel ?? null, policyVersion: config?.policyVersion ?? null };
  // A sample without a trajectory still counts, with reward 0 (groupStats pads to the planned samples).
  // Counted when the group is first written: a retried job recomputes the same group, uncounted. A group written again
  // with other samples missing (a resubmission brought episodes back) moves the count by the difference.
  const counts: FunnelCount[] = [{ stage: 'rollout.group', outcome: 'done', n: 1, once: true }];
  const earlier = await store.getDoc(runId, 'group', stats.id);
  const missingBefore = earlier ? (earlier.terminations['missing'] ?? 0) : 0;
  if (missing !== missingBefore) counts.push({ stage: 'rollout.group', outcome: 'samples-missing', n: missing - missingBefore, once: !earlier });
  await store.putDoc(runId, 'group', stats.id, stats, counts);
  // The group's statistics hold what the outcomes said (≈ 230 bytes of Redis memory each): let them go. A retried
  // or later group job reads the trajectories instead (by then mostly the sink's summaries).
  await store.dropGroupOutcomes(runId, group);
  return stats;
}
