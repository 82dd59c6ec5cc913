import { ModelOutputError } from '../errors.js';
import { synthLanguageOf } from '../runs/options.js';
import type { FunnelCount, RunDocuments } from '../runs/store.js';
import { judgePrompt, topicPrompt } from './prompts.js';
import { JudgeOutput, TopicOutput } from './schemas.js';
import type { DedupDecision, FailedTopic, InferredTopic } from './types.js';
import { createEnvironment, ctx, options, type SynthesisDeps } from './environments.js';

/** Mining: which source tasks need an environment (mine.judge), what that environment is (mine.topic), one per domain (mine.dedup). */

/**
 * Writes a task's judge or topic document where none is stored yet, with its counts: the one stored, and whether it is
 * this one. (Written over, a twin of the job, one taken over past its lock, counted the task a second time; with the
 * cache off its answer may differ, and the stored one decides for both.)
 */
async function firstWritten<K extends 'judge' | 'topic'>(deps: SynthesisDeps, runId: string, kind: K, taskId: string, value: RunDocuments[K], counts: readonly FunnelCount[]): Promise<{ value: RunDocuments[K]; mine: boolean }> {
  if (await deps.store.addDocText(runId, kind, taskId, JSON.stringify(value), counts)) return { value, mine: true };
  return { value: (await deps.store.getDoc(runId, kind, taskId)) ?? value, mine: false };
}

export async function judgeTask(deps: SynthesisDeps, runId: string, taskId: string): Promise<{ needsEnvironment: boolean }> {
  const existing = await deps.store.getDoc(runId, 'judge', taskId);
  if (existing) return { needsEnvironment: existing.needsEnvironment };
  const task = await deps.store.getDoc(runId, 'task', taskId);
  if (!task) throw new Error(`task ${taskId} not found`);
  try {
    const { value } = await deps.gateway.structured(ctx(deps, runId, 'mine.judge'), { messages: judgePrompt(task.task), schema: JudgeOutput });
    return { needsEnvironment: (await firstWritten(deps, runId, 'judge', taskId, value, [{ stage: 'mine.judge', outcome: value.needsEnvironment ? 'needs-environment' : 'no-environment', n: 1 }])).value.needsEnvironment };
  } catch (err) {
    if (!(err instanceof ModelOutputError)) throw err;
    const failed = { needsEnvironment: false, reason: `unusable model output: ${err.message}`, failed: true };
    const kept = await firstWritten(deps, runId, 'judge', taskId, failed, [{ stage: 'mine.judge', outcome: 'failed:MODEL_OUTPUT_INVALID', n: 1 }]);
    // (the judge document is in no export: status shows this one as the example of the count)
    // (whenever the stored one failed: a noted reason is kept once, and the writer may be a twin that died since)
    if (kept.value.failed) await deps.store.noteReason(runId, 'mine.judge', 'failed:MODEL_OUTPUT_INVALID', `task ${taskId}: ${kept.value.reason}`);
    return { needsEnvironment: kept.value.needsEnvironment };
  }
}

export async function inferTopic(deps: SynthesisDeps, runId: string, taskId: string): Promise<{ candidate: boolean }> {
  const existing = await deps.store.getDoc(runId, 'topic', taskId);
  if (existing) return { candidate: existing.candidate };
  const judged = await deps.store.getDoc(runId, 'judge', taskId);
  if (!judged?.needsEnvironment) return { candidate: false };
  const task = await deps.store.getDoc(runId, 'task', taskId);
  if (!task) throw new Error(`task ${taskId} of run ${runId} not found`);
  const opts = await options(deps, runId);
  try {
    const { value } = await deps.gateway.structured(ctx(deps, runId, 'mine.topic'), { messages: topicPrompt(task.task, synthLanguageOf(opts)), schema: TopicOutput });
    const low = value.usefulness < opts.minUsefulness || value.modelability < opts.minModelability;
    const record: InferredTopic = {
      ...value,
      taskId,
      index: task.index,
      candidate: !low,
      reason: low
        ? `scores below the thresholds (usefulness ${value.usefulness} ≥ ${opts.minUsefulness}, modelability ${value.modelability} ≥ ${opts.minModelability} required)`
        : 'scores meet the thresholds',
    };
    return { candidate: (await firstWritten(deps, runId, 'topic', taskId, record, [{ stage: 'mine.topic', outcome: record.candidate ? 'candidate' : 'low-scores', n: 1 }])).value.candidate };
  } catch (err) {
    if (!(err instanceof ModelOutputError)) throw err;
    // Recorded like an unusable judge answer: the count goes with the record, and a retried job finds
    // the record instead of asking (and counting) again.
    const failed: FailedTopic = { taskId, index: task.index, candidate: false, failed: true, reason: `unusable model output: ${err.message}` };
    const kept = await firstWritten(deps, runId, 'topic', taskId, failed, [{ stage: 'mine.topic', outcome: 'failed:MODEL_OUTPUT_INVALID', n: 1 }]);
    if (kept.value.failed) await deps.store.noteReason(runId, 'mine.topic', 'failed:MODEL_OUTPUT_INVALID', `task ${taskId}: ${kept.value.reason}`);
    return { candidate: kept.value.candidate };
  }
}

function cosine(a: readonly number[], b: readonly number[]): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i += 1) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return na && nb ? dot / Math.sqrt(na * nb) : 0;
}

/**
 * Drops a description whose embedding's cosine similarity to an already kept one reaches the
 * threshold. Order is deterministic: best scores first (modelability, then usefulness), then input
 * order; each decision records its nearest kept neighbour. Kept descriptions become environments.
 */
export async function dedupDescriptions(deps: SynthesisDeps, runId: string): Promise<{ envIds: string[] }> {
  const opts = await options(deps, runId);
  const topics: InferredTopic[] = [];
  for (const id of await deps.store.listDocIds(runId, 'topic')) {
    const t = await deps.store.getDoc(runId, 'topic', id);
    if (t && !t.failed && t.candidate) topics.push(t);
  }
  topics.sort((a, b) => b.modelability - a.modelability || b.usefulness - a.usefulness || a.index - b.index);
  const vectors: number[][] = [];
  for (let i = 0; i < topics.length; i += 64) {
    const batch = topics.slice(i, i + 64).map(t => `${t.summary}: ${t.introduction}`);
    const { vectors: v } = await deps.gateway.embed(ctx(deps, runId, 'mine.dedup', String(i)), batch);
    vectors.push(...v);
  }
  const kept: { topic: InferredTopic; vector: number[] }[] = [];
  const envIds: string[] = [];
  for (const [i, topic] of topics.entries()) {
    let nearest: DedupDecision['nearest'] = null;
    for (const k of kept) {
      const similarity = cosine(vectors[i]!, k.vector);
      if (!nearest || similarity > nearest.similarity) nearest = { taskId: k.topic.taskId, summary: k.topic.summary, similarity: Math.round(similarity * 1e4) / 1e4 };
    }
    const duplicate = nearest !== null && nearest.similarity >= opts.dedupThreshold;
    const overLimit = !duplicate && opts.maxEnvs > 0 && kept.length >= opts.maxEnvs;
    let envId: string | null = null;
    if (!duplicate && !overLimit) {
      kept.push({ topic, vector: vectors[i]! });
      const task = await deps.store.getDoc(runId, 'task', topic.taskId);
      envId = await createEnvironment(deps.store, runId, opts, { summary: topic.summary, introduction: topic.introduction, task: task?.task, sourceTaskId: topic.taskId, source: task?.source });
      envIds.push(envId);
    }
    const decision: DedupDecision = {
      taskId: topic.taskId,
      summary: topic.summary,
      kept: envId !== null,
      nearest,
      envId,
      reason: duplicate
        ? `duplicate of "${nearest!.summary}" (cosine ${nearest!.similarity} ≥ ${opts.dedupThreshold})`
        : overLimit
          ? `over the limit of ${opts.maxEnvs} environments`
          : 'distinct',
    };
    // A retried job decides every description again (the same way); only the first decision is counted.
    const outcome = decision.kept ? 'kept' : duplicate ? 'duplicate' : 'over-limit';
    await deps.store.putDoc(runId, 'dedup', topic.taskId, decision, [{ stage: 'mine.dedup', outcome, n: 1, once: true }]);
  }
  return { envIds };
}
