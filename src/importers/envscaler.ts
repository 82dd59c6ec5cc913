import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { RequestError } from '../errors.js';
import { hashOf } from '../util/canonical.js';
import type { RunOptions } from '../runs/options.js';
import type { RunStore } from '../runs/store.js';
import type { ScenarioRecord } from '../scenarios/types.js';
import type { EnvironmentRecord } from '../synthesis/types.js';
import { ENVSCALER_FIELDS, environmentFromEnvscaler, scenarioFromEnvscaler, scenarioIdOf, type MappedScenario, type RecordPlace, type ScenarioEnv } from './envscaler-records.js';
import { readJsonRecords, type JsonFileEnd } from './json-records.js';
import { rolledOutProblem, rolloutsLookup, writeImported } from './write.js';
import { checkRunName } from '../runs/ids.js';

/**
 * `envfleet import envscaler`: EnvScaler's environments and scenarios (files the user supplies; none
 * of EnvScaler's code or data is in this repository) into a run, as kept environments and ready
 * scenarios, so `envfleet rollouts`, `serve` and `export` use them as they use synthesized ones. The
 * environments are Python (`language: 'python'`), run by the Python runtime.
 */

export type EnvscalerSplit = 'rl' | 'sft' | 'all';
export const ENVSCALER_SPLITS: readonly EnvscalerSplit[] = ['rl', 'sft', 'all'];

/** The files of an import: the env metadata, and scenario files with the set their name says (null: decided per record). */
export interface EnvscalerFiles {
  readonly envs: string;
  readonly scenarios: readonly { readonly path: string; readonly split: 'rl' | 'sft' | null }[];
}

/** EnvScaler's published names: `191_env_metadata.json`, `rl_scenario_metadata.json` (or `envscaler_rl_…`), `sft_scenario_metadata.json`; `.jsonl` too. */
const ENV_FILE = /env_metadata[^/]*\.jsonl?$/i;
const RL_FILE = /(^|[^a-z])rl_scenario_metadata[^/]*\.jsonl?$/i;
const SFT_FILE = /(^|[^a-z])sft_scenario_metadata[^/]*\.jsonl?$/i;

/** The split a scenario file's name says, or null. */
export const splitOfFileName = (path: string): 'rl' | 'sft' | null => (RL_FILE.test(basename(path)) ? 'rl' : SFT_FILE.test(basename(path)) ? 'sft' : null);

/** The EnvScaler files in a directory, by their published names; refuses with what it found and expected. */
export async function findEnvscalerFiles(dir: string): Promise<EnvscalerFiles> {
  let names: string[];
  try {
    if (!(await stat(dir)).isDirectory()) throw new RequestError(`--from ${dir} is a file, not a directory: pass the directory holding EnvScaler's data files, or the files themselves with --envs FILE --scenarios FILE`);
    names = (await readdir(dir)).sort();
  } catch (err) {
    if (err instanceof RequestError) throw err;
    throw new RequestError(`--from ${dir}: cannot read the directory (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); pass the directory holding EnvScaler's data files (interact_with_env/envscaler_env/data in a checkout)`);
  }
  const envs = names.filter(n => ENV_FILE.test(n));
  const scenarios = names.filter(n => RL_FILE.test(n) || SFT_FILE.test(n));
  const expected = 'an env metadata file (191_env_metadata.json) and RL and/or SFT scenario files (rl_scenario_metadata.json, sft_scenario_metadata.json; .json or .jsonl)';
  if (envs.length === 0) {
    throw new RequestError(`--from ${dir}: no env metadata file (*env_metadata*.json or .jsonl) there; expected ${expected}${names.includes('interact_with_env') ? `; in an EnvScaler checkout pass --from ${join(dir, 'interact_with_env/envscaler_env/data')}` : ''}. Or name the files with --envs FILE --scenarios FILE.`);
  }
  if (envs.length > 1) throw new RequestError(`--from ${dir}: several env metadata files (${envs.join(', ')}); name the one to import with --envs FILE (and --scenarios FILE)`);
  return { envs: join(dir, envs[0]!), scenarios: scenarios.map(n => ({ path: join(dir, n), split: splitOfFileName(n) })) };
}

/** A record that was not imported, and why. */
export interface SkippedRecord {
  readonly file: string;
  /** `record 12`, `env_id env_3_rl` or `task_id env_3_rl-task_2`, with the line. */
  readonly where: string;
  readonly problem: string;
}

export interface ImportCounts {
  /** Written now (new). */
  readonly imported: number;
  /** Already in the run, the same: nothing written. */
  readonly unchanged: number;
  /** Already in the run from an earlier import of other content: written again. */
  readonly updated: number;
}

export interface EnvscalerImportSummary {
  readonly runId: string;
  readonly created: boolean;
  readonly environments: ImportCounts;
  readonly scenarios: ImportCounts & { readonly rl: number; readonly sft: number };
  /** Check functions of the imported scenarios (new and unchanged). */
  readonly checks: number;
  /** Scenarios without checks (EnvScaler SFT): imported unscored. */
  readonly unscored: number;
  readonly skipped: readonly SkippedRecord[];
  /** Records left out by --split or --limit (not errors). */
  readonly notSelected: { readonly environments: number; readonly scenarios: number };
  readonly warnings: readonly SkippedRecord[];
  /** Problems of a file as a whole (truncated, text after the JSON value). */
  readonly fileProblems: readonly string[];
}

export interface EnvscalerImportRequest {
  readonly runId: string;
  readonly files: EnvscalerFiles;
  readonly split: EnvscalerSplit;
  /** At most this many environments (the first selected ones, in the env file's order), with their scenarios. */
  readonly limit?: number;
  /** Import into a run that holds other content (synthesized environments). */
  readonly append?: boolean;
}

export type ImportProgress = { readonly phase: 'read'; readonly file: string; readonly records: number } | { readonly phase: 'write'; readonly kind: 'env' | 'scenario'; readonly done: number; readonly total: number };


const whereOf = (p: RecordPlace, ids: string) => `${ids || `record ${p.index}`} (${p.rowOfPage ? `row_idx ${p.index} of the rows page at line` : 'line'} ${p.line})`;

/**
 * The scenario as an earlier version imported it into this run: a task_id given in several environments
 * (`0315-142201`) was the id of the first one read then (the others were dropped), and is now prefixed with the env_id
 * in each, or a hash where that is too long (scenarioIdOf). A run holding the scenario under the old id keeps it there,
 * so a re-import updates it rather than adding it again.
 */
async function earlierId(store: RunStore, runId: string, doc: ScenarioRecord): Promise<ScenarioRecord> {
  const original = doc.lineage.original;
  if (!original?.taskId || doc.id === original.taskId) return doc;
  const shared = scenarioIdOf({ envId: original.envId, taskId: original.taskId, task: doc.task, initialState: doc.initialState }, true);
  if (doc.id !== shared) return doc;
  const old = await store.getDoc(runId, 'scenario', original.taskId);
  const was = old?.lineage.original;
  return old?.lineage.source === 'envscaler' && was?.envId === original.envId && was.taskId === original.taskId ? { ...doc, id: original.taskId } : doc;
}

/**
 * The rows of a page of the Hugging Face datasets server's rows API (`{"features": […], "rows": [{"row_idx": 0, "row":
 * {…}}, …], …}`, as `curl …/rows?dataset=…` saves it), each with its `row_idx`; null for anything else (a record has
 * EnvScaler's fields at its top level).
 */
function rowsApiPage(value: unknown): { value: unknown; index: number }[] | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  const page = value as Record<string, unknown>;
  if (!Array.isArray(page['rows']) || Object.keys(page).some(k => ENVSCALER_FIELDS.has(k))) return null;
  return page['rows'].map((el: unknown, i) => {
    const row = el !== null && typeof el === 'object' && !Array.isArray(el) ? (el as { row?: unknown; row_idx?: unknown }) : null;
    if (row && row.row !== null && typeof row.row === 'object' && !Array.isArray(row.row)) return { value: row.row, index: typeof row.row_idx === 'number' ? row.row_idx : i };
    return { value: el, index: i };
  });
}

/** Reads the records of one file, with a progress call every 200 records. */
async function eachRecord(path: string, fn: (value: unknown, place: RecordPlace, error: string | undefined, text: string | undefined) => void, progress: ((p: ImportProgress) => void) | undefined, fileProblems: string[]): Promise<void> {
  const file = basename(path);
  const records = readJsonRecords(path, ENVSCALER_FIELDS);
  let n = 0;
  let end: JsonFileEnd;
  for (;;) {
    const next = await records.next();
    if (next.done) {
      end = next.value;
      break;
    }
    const r = next.value;
    const rows = rowsApiPage(r.value);
    if (rows) {
      // A page of Hugging Face's rows API saved as it came: its rows are the records (their JSON-string fields keep
      // what a number's text says; the page's own text is not cut into rows).
      for (const row of rows) fn(row.value, { file, index: row.index, line: r.line, rowOfPage: true }, undefined, undefined);
      n += rows.length;
    } else {
      fn(r.value, { file, index: r.index, line: r.line, ...(r.key !== undefined ? { key: r.key } : {}) }, r.error, r.text);
      n += 1;
    }
    if (n % 200 === 0) progress?.({ phase: 'read', file, records: n });
  }
  progress?.({ phase: 'read', file, records: n });
  const { shape, problem } = end;
  if (problem) fileProblems.push(`${path}: ${problem}`);
  if (shape === 'empty') fileProblems.push(`${path}: the file is empty`);
}

/**
 * Imports EnvScaler's files into run `runId`: creates the run (input `envscaler`, `options` frozen)
 * when absent; refuses a run made from other input unless `append`. Every record is read and mapped
 * first (a malformed one is skipped with its file, place and problem); then environments are written
 * as kept and scenarios as ready through the run store, which keeps the status counts. Idempotent:
 * a document already in the run with the same content is not written again.
 */
export async function importEnvscaler(store: RunStore, request: EnvscalerImportRequest, options: RunOptions, progress?: (p: ImportProgress) => void): Promise<EnvscalerImportSummary> {
  const { runId } = request;
  checkRunName(runId);
  const existing = await store.getRun(runId);
  if (existing && existing.input !== 'envscaler' && !request.append) {
    throw new RequestError(`run "${runId}" exists and was made from ${existing.input} (envfleet synth), not imported from EnvScaler: import into another run name, or pass --append to add EnvScaler's environments and scenarios to it`);
  }

  const now = new Date().toISOString();
  const skipped: SkippedRecord[] = [];
  const warnings: SkippedRecord[] = [];
  const fileProblems: string[] = [];

  // Environments, in the file's order.
  const envs = new Map<string, EnvironmentRecord>();
  const byEnvscalerId = new Map<string, ScenarioEnv>();
  const envFirstSeen = new Map<string, string>();
  await eachRecord(
    request.files.envs,
    (value, place, error) => {
      const keyId = place.key ?? (value && typeof value === 'object' && typeof (value as { env_id?: unknown }).env_id === 'string' ? (value as { env_id: string }).env_id : '');
      const where = whereOf(place, keyId ? `env_id ${keyId}` : '');
      if (error) return void skipped.push({ file: place.file, where, problem: error });
      const mapped = environmentFromEnvscaler(value, place, runId, now);
      if (!mapped.ok) return void skipped.push({ file: place.file, where, problem: mapped.problem });
      const env = mapped.value;
      const envId = env.lineage.original!.envId;
      const first = envFirstSeen.get(envId);
      if (first) return void skipped.push({ file: place.file, where, problem: `env_id ${envId} was already read at ${first}` });
      envFirstSeen.set(envId, where);
      for (const w of mapped.warnings) warnings.push({ file: place.file, where, problem: w });
      envs.set(env.id, env);
      byEnvscalerId.set(envId, { id: env.id, envId, className: env.className! });
    },
    progress,
    fileProblems,
  );

  // A scenario's environment: one of the env file's (its records that were skipped are not there).
  const envOf = (envId: string) => byEnvscalerId.get(envId);

  // Scenarios, in file order: every record read first (whether a task_id is in several environments decides ids).
  const read: { scenario: MappedScenario; place: RecordPlace; where: string; warnings: readonly string[] }[] = [];
  let scenariosNotSelected = 0;
  for (const { path, split } of request.files.scenarios) {
    await eachRecord(
      path,
      (value, place, error, text) => {
        const v = value && typeof value === 'object' ? (value as { task_id?: unknown; env_id?: unknown }) : {};
        const where = whereOf(place, typeof v.task_id === 'string' || typeof v.task_id === 'number' ? `task_id ${v.task_id}` : typeof v.env_id === 'string' ? `env_id ${v.env_id}` : '');
        if (error) return void skipped.push({ file: place.file, where, problem: error });
        const mapped = scenarioFromEnvscaler(value, place, runId, now, envOf, split, text);
        if (!mapped.ok) return void skipped.push({ file: place.file, where, problem: mapped.problem });
        read.push({ scenario: mapped.value, place, where, warnings: mapped.warnings });
      },
      progress,
      fileProblems,
    );
  }
  // A task_id in more than one environment (EnvScaler's own task generation writes MMDD-HHMMSS timestamps) is prefixed
  // with the env_id in each (scenarioIdOf); one in a single environment keeps its id, whatever --split selects.
  const envsOfTask = new Map<string, Set<string>>();
  for (const { scenario } of read) {
    const taskId = scenario.scenario.lineage.original?.taskId;
    if (taskId !== undefined) envsOfTask.set(taskId, (envsOfTask.get(taskId) ?? new Set()).add(scenario.envId));
  }
  const scenarios: MappedScenario[] = [];
  const seenIds = new Map<string, { where: string; content: string }>();
  for (const { scenario: mapped, place, where, warnings: said } of read) {
    if (request.split !== 'all' && mapped.split !== request.split) {
      scenariosNotSelected += 1;
      continue;
    }
    const taskId = mapped.scenario.lineage.original?.taskId;
    const shared = taskId !== undefined && (envsOfTask.get(taskId)?.size ?? 0) > 1;
    let scenario = shared ? { ...mapped, scenario: { ...mapped.scenario, id: scenarioIdOf({ envId: mapped.envId, taskId, task: mapped.scenario.task, initialState: mapped.scenario.initialState }, true) } } : mapped;
    const content = hashOf({ task: scenario.scenario.task, initialState: scenario.scenario.stateHash, checks: scenario.scenario.checklist ?? null }, 16);
    let first = seenIds.get(scenario.scenario.id);
    if (first && first.content !== content) {
      // Another scenario under the same task_id in the same environment (EnvScaler's timestamps, a second apart at
      // best): kept under the id and a hash of its content, which the same file gives again on a re-import.
      const id = `${scenario.scenario.id}-${content.slice(0, 8)}`;
      scenario = { ...scenario, scenario: { ...scenario.scenario, id: id.length <= 120 ? id : `scn-${content}` } };
      first = seenIds.get(scenario.scenario.id);
    }
    if (first) {
      skipped.push({ file: place.file, where, problem: `scenario ${scenario.scenario.id} (the same task, initial state and checks) was already read at ${first.where}` });
      continue;
    }
    seenIds.set(scenario.scenario.id, { where: `${place.file} ${where}`, content });
    for (const w of said) warnings.push({ file: place.file, where, problem: w });
    scenarios.push(scenario);
  }

  // Which environments: every one (--split all, or no scenario file), else those the selected scenarios use; then --limit.
  const used = new Set(scenarios.map(s => s.scenario.environmentId));
  let chosen = [...envs.values()].filter(e => request.split === 'all' || request.files.scenarios.length === 0 || used.has(e.id));
  if (request.limit !== undefined) chosen = chosen.slice(0, request.limit);
  const chosenIds = new Set(chosen.map(e => e.id));
  const chosenScenarios = scenarios.filter(s => chosenIds.has(s.scenario.environmentId));
  scenariosNotSelected += scenarios.length - chosenScenarios.length;

  const created = existing ? false : await store.createRun({ id: runId, createdAt: now, input: 'envscaler', options });

  const rolledOut = rolloutsLookup(store, runId);
  const envCounts = { imported: 0, unchanged: 0, updated: 0 };
  for (const [i, env] of chosen.entries()) {
    const w = await writeImported(store, runId, 'env', env, 'envscaler', undefined, rolledOut);
    if (w.outcome === 'foreign' || w.outcome === 'rolled-out') {
      const problem = w.outcome === 'foreign' ? `run "${runId}" already has a ${w.other.status} environment ${env.id} that was not imported from EnvScaler: left as it is` : rolledOutProblem(runId, 'env', env.id);
      skipped.push({ file: env.lineage.original!.file, where: `env_id ${env.lineage.original!.envId}`, problem });
      chosenIds.delete(env.id);
      continue;
    }
    envCounts[w.outcome] += 1;
    if ((i + 1) % 50 === 0 || i + 1 === chosen.length) progress?.({ phase: 'write', kind: 'env', done: i + 1, total: chosen.length });
  }

  const scnCounts = { imported: 0, unchanged: 0, updated: 0, rl: 0, sft: 0 };
  let checks = 0;
  let unscored = 0;
  const indexOf = new Map<string, number>();
  const writable = chosenScenarios.filter(s => chosenIds.has(s.scenario.environmentId));
  for (const [i, s] of writable.entries()) {
    const index = indexOf.get(s.scenario.environmentId) ?? 0;
    indexOf.set(s.scenario.environmentId, index + 1);
    const doc: ScenarioRecord = await earlierId(store, runId, { ...s.scenario, index });
    const w = await writeImported(store, runId, 'scenario', doc, 'envscaler', undefined, rolledOut);
    if (w.outcome === 'rolled-out') {
      skipped.push({ file: doc.lineage.original!.file, where: `task_id ${doc.lineage.original!.taskId ?? doc.id}`, problem: rolledOutProblem(runId, 'scenario', doc.id) });
      continue;
    }
    if (w.outcome === 'foreign') {
      skipped.push({ file: doc.lineage.original!.file, where: `task_id ${doc.lineage.original!.taskId ?? doc.id}`, problem: `run "${runId}" already has a scenario ${doc.id} that was not imported from EnvScaler: left as it is` });
      continue;
    }
    scnCounts[w.outcome] += 1;
    scnCounts[s.split] += 1;
    checks += doc.checklist?.length ?? 0;
    if (doc.unscored) unscored += 1;
    if ((i + 1) % 200 === 0 || i + 1 === writable.length) progress?.({ phase: 'write', kind: 'scenario', done: i + 1, total: writable.length });
  }

  return {
    runId,
    created,
    environments: envCounts,
    scenarios: scnCounts,
    checks,
    unscored,
    skipped,
    notSelected: { environments: envs.size - chosen.length, scenarios: scenariosNotSelected },
    warnings,
    fileProblems,
  };
}
