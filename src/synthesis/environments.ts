import type { ModelStage } from '../../config/index.js';
import type { ErrorCode } from '../errors.js';
import type { CallContext } from '../llm/gateway.js';
import { envIdOf } from '../runs/ids.js';
import { synthLanguageOf, type RunOptions } from '../runs/options.js';
import { changeDoc, type FunnelCount, type RunStore } from '../runs/store.js';
import { endingItemOnInvalidOutput, type StageDeps } from '../stage-deps.js';
import { compileJsonSchema, describeAjvErrors } from '../util/json-schema.js';
import { promptVersionsFor } from './prompts.js';
import type { EnvDescription, EnvironmentRecord } from './types.js';

/**
 * What the synthesis stages (mining.ts, skeleton.ts, check.ts) share: the environment record, how one
 * is created, loaded and failed, and the checks of a state against its schema.
 */

export type SynthesisDeps = StageDeps;

/** An item that cannot be made valid ends here with its reason; the run goes on. */
export interface ItemOutcome {
  readonly ok: boolean;
  readonly reason?: string;
}

export const ctx = (deps: SynthesisDeps, runId: string, stage: ModelStage, cacheSalt?: string): CallContext => ({
  runId,
  stage,
  signal: deps.signal,
  logger: deps.logger,
  cacheSalt,
});

export async function options(deps: SynthesisDeps, runId: string): Promise<RunOptions> {
  const run = await deps.store.getRun(runId);
  if (!run) throw new Error(`run "${runId}" does not exist`);
  return run.options;
}

export async function loadEnv(deps: SynthesisDeps, runId: string, envId: string): Promise<EnvironmentRecord> {
  const env = await deps.store.getDoc(runId, 'env', envId);
  if (!env) throw new Error(`environment ${envId} of run ${runId} not found`);
  return env;
}

const isBuilding = (env: EnvironmentRecord) => env.status === 'building' || env.status === 'probing';

/**
 * Writes what a job made of an environment over it, only while it is still being built with the status the job read
 * (`read`): a cancel marks an environment being built failed while a job is at a model call or a probe, and a write of
 * what the job read would set it back to building or probing, for ever, in a run whose jobs end (and a job that read
 * it failed, after the cancel, writes nothing either). null when written, or when another copy of the job (one taken
 * over past its lock) wrote the same status first: the caller goes on as if it had. Else the job ends here: as
 * cancelled when its run is (RUN_CANCELLED, counted where it stopped), or with the status the environment has now.
 */
export async function writeEnv(deps: SynthesisDeps, runId: string, read: EnvironmentRecord, value: EnvironmentRecord, counts?: readonly FunnelCount[]): Promise<ItemOutcome | null> {
  const building = isBuilding(read);
  if (building && (await deps.store.putDocIf(runId, 'env', read.id, value, read.status, counts))) return null;
  const now = await deps.store.getDoc(runId, 'env', read.id);
  // (before the run's gate: under a cancel, the copy that wrote first has counted the step, and this one's job, counted
  // as cancelled, would count the item twice in the stage's row; the next job ends it as cancelled)
  if (building && now && now.status !== read.status && now.status === value.status) return null;
  await deps.gateway.checkRun?.(runId);
  return { ok: false, reason: `the environment is ${now?.status ?? 'missing'}: it was no longer being built as this job read it (${read.status}) when the job was done` };
}

/**
 * Fails an environment still being built with `failure`, and `counts` in the same write, over what is stored as it is
 * read: one that ended meanwhile (kept by its verdict, failed by a cancel or another job) stays as it is and is not
 * counted twice, and what a job wrote of it meanwhile (a round's report) stays in it. Whether it failed it.
 */
const endEnv = (store: Pick<RunStore, 'getDocBuffer' | 'putDocIf'>, runId: string, envId: string, failure: NonNullable<EnvironmentRecord['failure']>, counts?: readonly FunnelCount[]) =>
  changeDoc(store, runId, 'env', envId, env => (isBuilding(env) ? { ...env, status: 'failed', failure } : null), counts);

/**
 * Ends an environment still being built as cancelled: the cancel's mark, RUN_CANCELLED at the stage "run" with the
 * cancel's `message` (RunCancelledError's), counted where its job stopped, not here.
 */
export async function endEnvCancelled(store: RunStore, runId: string, envId: string, message: string): Promise<void> {
  await endEnv(store, runId, envId, { stage: 'run', code: 'RUN_CANCELLED', message });
}

/** Records an item-level failure: the environment ends with its stage, code and reason, counted in the same write. */
export async function failEnv(deps: Pick<SynthesisDeps, 'store'>, runId: string, envId: string, stage: string, code: ErrorCode, message: string): Promise<void> {
  if (await endEnv(deps.store, runId, envId, { stage, code, message }, [{ stage, outcome: `failed:${code}`, n: 1 }])) await deps.store.noteReason(runId, stage, `failed:${code}`, message);
}

/**
 * Undoes `failEnv` for a job that is about to run again (`envfleet synth` run again after a failure
 * whose cause was fixed): an environment that failed at `stage` with `code` is back where it failed, its
 * failure forgotten and its count taken back in the same write. Anything else is left as it is.
 *
 * Where it failed: probing once check.config had given it its test state (check.probe and check.judge run only on a
 * probing environment: set back to building, a retried probe ended at once with "environment is building", and the
 * run finished with the environment building for ever), building before.
 */
export async function reopenEnv(store: RunStore, runId: string, envId: string, stage: string, code: ErrorCode): Promise<void> {
  await changeDoc(
    store,
    runId,
    'env',
    envId,
    env => (env.status === 'failed' && env.failure?.stage === stage && env.failure.code === code ? { ...env, status: env.testState !== undefined ? 'probing' : 'building', failure: null } : null),
    [{ stage, outcome: `failed:${code}`, n: -1 }],
  );
}

/** Runs `fn`; output still invalid after the repair rounds fails the environment instead of the job. */
export const orFail = (deps: SynthesisDeps, runId: string, envId: string, stage: string, fn: () => Promise<ItemOutcome>): Promise<ItemOutcome> =>
  endingItemOnInvalidOutput(fn, async err => {
    await failEnv(deps, runId, envId, stage, err.code, err.message);
    return { ok: false, reason: err.message };
  });

/** Creates the environment record of a description (idempotent: returns the existing id). */
export async function createEnvironment(store: RunStore, runId: string, opts: RunOptions, desc: EnvDescription): Promise<string> {
  const id = envIdOf(runId, desc);
  if (await store.getDoc(runId, 'env', id)) return id;
  const language = synthLanguageOf(opts);
  const record: EnvironmentRecord = {
    id,
    runId,
    status: 'building',
    description: desc,
    // Absent for JavaScript (as every environment made before Python synthesis).
    ...(language === 'python' ? { language } : {}),
    failure: null,
    lineage: { runId, sourceTaskId: desc.sourceTaskId ?? null, models: { ...opts.models }, prompts: { ...promptVersionsFor(language) }, createdAt: new Date().toISOString() },
  };
  // (only where none is: two submissions at once, or a twin of mine.dedup's job, counted it created twice)
  await store.putDocIf(runId, 'env', id, record, null, [{ stage: 'environments', outcome: 'created', n: 1 }]);
  return id;
}

/** null when the schema compiles and the state matches it, else the problem. */
export function checkStateSchema(schema: Record<string, unknown>, state: unknown, what: string): string | null {
  let validate;
  try {
    validate = compileJsonSchema(schema);
  } catch (err) {
    return `stateSchema is not a valid JSON Schema: ${(err as Error).message}`;
  }
  return validate(state) ? null : `${what} does not match stateSchema:\n${describeAjvErrors(validate.errors)}`;
}

export function dedupeHelpers(helpers: readonly string[]): string[] {
  const byName = new Map<string, string>();
  for (const h of helpers) {
    // `_name(…) {` (JavaScript) or `def _name(self, …):` (Python, after any decorator lines).
    const name = /^\s*(?:@[^\n]*\n\s*)*(?:async\s+)?(?:def\s+)?([A-Za-z_$][\w$]*)\s*\(/.exec(h)?.[1] ?? h;
    if (!byName.has(name)) byName.set(name, h);
  }
  return [...byName.values()];
}
