import { stat } from 'node:fs/promises';
import { InvalidArgumentError } from 'commander';
import { runOptionsFrom } from '../queues/submit.js';
import { ENVSCALER_SPLITS, findEnvscalerFiles, importEnvscaler, splitOfFileName, type EnvscalerFiles, type EnvscalerImportSummary, type EnvscalerSplit, type ImportCounts, type ImportProgress } from '../src/importers/envscaler.js';
import { BFCL_CATEGORIES, findBfclLayout, importBfcl, type BfclCategory, type BfclImportProgress, type BfclImportSummary } from '../src/importers/bfcl.js';
import { findTauBenchDomains, importTauBench, TAU_SPLITS, type TauDomainFiles, type TauImportProgress, type TauImportSummary, type TauSplit } from '../src/importers/tau-bench.js';
import type { AppConfig } from '../config/index.js';
import { createLogger, type Logger } from '../src/logger.js';
import { boundedRunner } from '../src/sandbox/language-router.js';
import { createPythonSandboxRunner } from '../src/sandbox/python/python-runner.js';
import type { SandboxRunner } from '../src/sandbox/runner.js';
import { withRuns } from './context.js';
import { oneLineText } from '../src/util/text.js';

export interface ImportEnvscalerOptions {
  readonly run: string;
  readonly from?: string;
  readonly envs?: string;
  readonly scenarios: readonly string[];
  readonly split: string;
  readonly limit?: number;
  readonly append?: boolean;
  readonly json?: boolean;
}

/** Skipped records printed one by one before the rest are only counted. */
const SHOWN = 50;

async function requireFile(option: string, path: string): Promise<void> {
  const s = await stat(path).catch((err: NodeJS.ErrnoException) => {
    throw new InvalidArgumentError(`${option} ${path}: ${err.code === 'ENOENT' ? 'no such file' : (err.code ?? err.message)}`);
  });
  if (!s.isFile()) throw new InvalidArgumentError(`${option} ${path} is not a file${s.isDirectory() ? ' (for a directory of EnvScaler files use --from DIR)' : ''}`);
}

/** The options, checked before anything connects: each message says what to fix. */
async function filesOf(opts: ImportEnvscalerOptions): Promise<EnvscalerFiles> {
  if (!ENVSCALER_SPLITS.includes(opts.split as EnvscalerSplit)) throw new InvalidArgumentError(`--split takes rl, sft or all, not "${opts.split}"`);
  if (opts.from && (opts.envs || opts.scenarios.length)) throw new InvalidArgumentError('give either --from DIR (files found by their published names) or --envs FILE [--scenarios FILE ...], not both');
  if (!opts.from && !opts.envs) {
    throw new InvalidArgumentError(
      opts.scenarios.length
        ? '--scenarios needs --envs FILE too: scenarios are imported with the env metadata file that defines their environments'
        : 'say what to import: --from DIR (holding 191_env_metadata.json and rl_scenario_metadata.json / sft_scenario_metadata.json) or --envs FILE [--scenarios FILE ...]',
    );
  }
  if (opts.from) return findEnvscalerFiles(opts.from);
  await requireFile('--envs', opts.envs!);
  for (const s of opts.scenarios) await requireFile('--scenarios', s);
  return { envs: opts.envs!, scenarios: opts.scenarios.map(path => ({ path, split: splitOfFileName(path) })) };
}

function reporter(): (p: ImportProgress) => void {
  return p => {
    if (p.phase === 'read') process.stderr.write(`envfleet import: read ${p.records} records of ${p.file}\n`);
    else process.stderr.write(`envfleet import: wrote ${p.done}/${p.total} ${p.kind === 'env' ? 'environments' : 'scenarios'}\n`);
  };
}

/** The most characters of one skipped record's or warning's line the summary shows (--json has them whole). */
const SHOWN_CHARS = 2_000;
/**
 * A skipped record or a warning as the summary's line: its text comes from the data file (an id, a class name), so its
 * control characters (an ANSI escape, a right-to-left override, a NUL) are shown as U+FFFD, not sent to the terminal.
 */
const shownItem = (k: { readonly file: string; readonly where: string; readonly problem: string }): string => `  ${oneLineText(`${k.file} ${k.where}: ${k.problem}`, SHOWN_CHARS)}`;

function summaryText(s: EnvscalerImportSummary, opts: ImportEnvscalerOptions): string {
  const counts = (c: { imported: number; unchanged: number; updated: number }) => `${c.imported} new, ${c.unchanged} unchanged, ${c.updated} updated`;
  const lines = [
    `run ${s.runId}: ${s.created ? 'created' : 'exists'}`,
    `environments: ${counts(s.environments)}`,
    `scenarios:    ${counts(s.scenarios)} (rl ${s.scenarios.rl}, sft ${s.scenarios.sft}; ${s.unscored} without checks, imported unscored)`,
    `checks:       ${s.checks}`,
    `not selected: ${s.notSelected.environments} environments, ${s.notSelected.scenarios} scenarios (--split ${opts.split}${opts.limit ? `, --limit ${opts.limit}` : ''})`,
    `skipped:      ${s.skipped.length} records${s.skipped.length ? ':' : ''}`,
    ...s.skipped.slice(0, SHOWN).map(shownItem),
    ...(s.skipped.length > SHOWN ? [`  … and ${s.skipped.length - SHOWN} more (--json lists them all)`] : []),
    ...(s.warnings.length ? [`warnings:     ${s.warnings.length}`, ...s.warnings.slice(0, SHOWN).map(shownItem)] : []),
    ...s.fileProblems.map(p => `file problem: ${oneLineText(p, SHOWN_CHARS)}`),
    `The environments are Python (language "python", run by the Python runtime). Roll out with: envfleet rollouts --run ${s.runId}; serve with: envfleet serve --run ${s.runId}; export with: envfleet export --run ${s.runId} --out DIR`,
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * Every record was skipped: nothing is in the run from this import. Says so on stderr and makes the command exit 1.
 * `records` says what the skipped records are: envscaler's are environments and scenarios alike; bfcl's entries and
 * τ-bench's tasks are scenarios, whose environments (a domain, a class set) are written whatever becomes of them, so
 * there an import whose every entry or task was skipped left a run with nothing to roll out, and is judged by its
 * scenarios.
 */
function failIfNothingImported(
  s: { readonly runId: string; readonly created: boolean; readonly environments: ImportCounts; readonly scenarios: ImportCounts; readonly skipped: readonly unknown[] },
  what: string,
  records: 'environments and scenarios' | 'scenarios',
): void {
  const none = (c: ImportCounts) => c.imported + c.unchanged + c.updated === 0;
  if (!none(s.scenarios) || (records === 'environments and scenarios' && !none(s.environments)) || s.skipped.length === 0) return;
  const envs = none(s.environments) ? '' : ` (only ${s.environments.imported + s.environments.unchanged + s.environments.updated} environment${s.environments.imported + s.environments.unchanged + s.environments.updated === 1 ? '' : 's'}, without a scenario to roll out)`;
  process.stderr.write(
    `envfleet import: nothing was imported${envs}: all ${s.skipped.length} ${what} were skipped (their problems are listed under "skipped"). Fix them and run the same command again` +
      (s.created ? `; run ${s.runId} was created ${envs ? 'without scenarios' : 'empty'} (envfleet runs delete --run ${s.runId} removes it)` : '') +
      '\n',
  );
  process.exitCode = 1;
}

/** `envfleet import envscaler`. */
export async function importEnvscalerCommand(opts: ImportEnvscalerOptions): Promise<void> {
  const files = await filesOf(opts);
  await withRuns(async c => {
    const summary = await importEnvscaler(c.store, { runId: opts.run, files, split: opts.split as EnvscalerSplit, ...(opts.limit ? { limit: opts.limit } : {}), append: opts.append ?? false }, runOptionsFrom(c.config), reporter());
    process.stdout.write(opts.json ? `${JSON.stringify(summary, null, 2)}\n` : summaryText(summary, opts));
    failIfNothingImported(summary, 'records', 'environments and scenarios');
  });
}

export interface ImportBfclOptions {
  readonly run: string;
  readonly from: string;
  readonly category: string;
  readonly limit?: number;
  readonly append?: boolean;
  readonly json?: boolean;
}

/** The --category list, checked. */
export function bfclCategoriesOf(text: string): BfclCategory[] {
  const list = text
    .split(',')
    .map(s => s.trim())
    .filter(Boolean);
  const bad = list.filter(c => !BFCL_CATEGORIES.includes(c as BfclCategory));
  if (bad.length || list.length === 0) throw new InvalidArgumentError(`--category takes a comma-separated list of ${BFCL_CATEGORIES.join(', ')}${bad.length ? `, not ${bad.map(b => JSON.stringify(b)).join(', ')}` : ''}`);
  return [...new Set(list as BfclCategory[])];
}

function bfclReporter(): (p: BfclImportProgress) => void {
  return p => {
    if (p.phase === 'read') process.stderr.write(`envfleet import: read ${p.records} entries of ${p.file}\n`);
    else if (p.phase === 'replay') process.stderr.write(`envfleet import: replayed the gold calls of ${p.done}/${p.total} entries in the sandbox\n`);
    else process.stderr.write(`envfleet import: wrote ${p.done}/${p.total} ${p.kind === 'env' ? 'environments' : 'scenarios'}\n`);
  };
}

function bfclSummaryText(s: BfclImportSummary, opts: ImportBfclOptions): string {
  const counts = (c: { imported: number; unchanged: number; updated: number }) => `${c.imported} new, ${c.unchanged} unchanged, ${c.updated} updated`;
  const lines = [
    `run ${s.runId}: ${s.created ? 'created' : 'exists'}`,
    `environments: ${counts(s.environments)}`,
    `scenarios:    ${counts(s.scenarios)} (${Object.entries(s.scenarios.byCategory).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'})`,
    `checks:       ${s.checks}`,
    `gold replay:  ${s.replay.entries} entries replayed in the sandbox (${s.replay.calls} calls, ${(s.replay.ms / 1000).toFixed(1)} s), ${s.replay.reused} already imported from the same input`,
    `not selected: ${s.notSelected} entries${opts.limit ? ` (--limit ${opts.limit})` : ''}`,
    `skipped:      ${s.skipped.length} entries${s.skipped.length ? ':' : ''}`,
    ...s.skipped.slice(0, SHOWN).map(shownItem),
    ...(s.skipped.length > SHOWN ? [`  … and ${s.skipped.length - SHOWN} more (--json lists them all)`] : []),
    ...s.notes.map(n => `note: ${n}`),
    `The scenarios are scripted multi-turn (no user simulator). Roll out with: envfleet rollouts --run ${s.runId} --mode non-conversational --max-steps 100 (the steps of all turns count). envfleet serve --run ${s.runId} serves the environments, but gives their sessions no reward: BFCL's checks replay the transcript turn by turn, which a served session does not have`,
  ];
  return `${lines.join('\n')}\n`;
}

/** The Python runtime an import replays gold actions in, its error messages bounded as the fleet's are. */
function importRunner(config: AppConfig, interpreters: number, logger: Logger): SandboxRunner {
  const { snapshotDir, heapMb, packages } = config.python;
  return boundedRunner(createPythonSandboxRunner({ snapshotDir, interpreters, heapMb, packages, logger: logger.child({ component: 'python-sandbox' }) }));
}

/** `envfleet import bfcl`. */
export async function importBfclCommand(opts: ImportBfclOptions): Promise<void> {
  const categories = bfclCategoriesOf(opts.category);
  const layout = await findBfclLayout(opts.from, categories);
  await withRuns(async c => {
    const logger = createLogger(c.config).child({ component: 'import-bfcl' });
    const python = importRunner(c.config, Math.max(1, Math.min(2, c.config.python.interpreters)), logger);
    try {
      const summary = await importBfcl(c.store, python, { runId: opts.run, layout, categories, ...(opts.limit ? { limit: opts.limit } : {}), append: opts.append ?? false, concurrency: 2, pythonPackages: c.config.python.packages.map(p => p.name) }, runOptionsFrom(c.config), bfclReporter(), logger);
      process.stdout.write(opts.json ? `${JSON.stringify(summary, null, 2)}\n` : bfclSummaryText(summary, opts));
      failIfNothingImported(summary, 'entries', 'scenarios');
    } finally {
      await python.close();
    }
  });
}

export interface ImportTauBenchOptions {
  readonly run: string;
  readonly from: string;
  readonly domain?: string;
  readonly split: string;
  readonly limit?: number;
  readonly append?: boolean;
  readonly json?: boolean;
}

/** The domains and splits asked for, checked against what --from holds before anything connects. */
async function tauRequestOf(opts: ImportTauBenchOptions): Promise<{ domains: TauDomainFiles[]; splits: TauSplit[] }> {
  const splits = opts.split.split(',').map(s => s.trim()).filter(Boolean);
  const badSplit = splits.find(s => !TAU_SPLITS.includes(s as TauSplit));
  if (badSplit !== undefined || splits.length === 0) throw new InvalidArgumentError(`--split takes a comma-separated list of ${TAU_SPLITS.join(', ')}, not "${opts.split}"`);
  const found = await findTauBenchDomains(opts.from);
  if (!opts.domain) return { domains: found, splits: splits as TauSplit[] };
  const wanted = opts.domain.split(',').map(s => s.trim()).filter(Boolean);
  const missing = wanted.filter(w => !found.some(d => d.name === w));
  if (missing.length) throw new InvalidArgumentError(`--domain ${missing.join(', ')}: not a τ-bench domain under ${opts.from}; the domains there are ${found.map(d => d.name).join(', ')}`);
  return { domains: found.filter(d => wanted.includes(d.name)), splits: splits as TauSplit[] };
}

function tauReporter(): (p: TauImportProgress) => void {
  return p => {
    if (p.phase === 'read') process.stderr.write(`envfleet import: ${p.domain}: reading ${p.what}\n`);
    else if (p.phase === 'replay') process.stderr.write(`envfleet import: ${p.domain} ${p.split}: gold hashes ${p.done}/${p.total}${p.reused ? ` (${p.reused} kept from the run, not replayed)` : ''}\n`);
    else process.stderr.write(`envfleet import: wrote ${p.done}/${p.total} ${p.kind === 'env' ? 'environments' : 'scenarios'}\n`);
  };
}

function tauSummaryText(s: TauImportSummary, opts: ImportTauBenchOptions): string {
  const counts = (c: { imported: number; unchanged: number; updated: number }) => `${c.imported} new, ${c.unchanged} unchanged, ${c.updated} updated`;
  const lines = [
    `run ${s.runId}: ${s.created ? 'created' : 'exists'}`,
    ...s.domains.map(
      d =>
        `domain ${d.domain}: environment ${d.environmentId}, ${d.tools} tools, database ${d.stateBytes} bytes of JSON (initial hash ${d.initialHash.slice(0, 16)}…), tasks ${Object.entries(d.tasks)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ') || 'none'}; gold replays ${d.replayed} (${d.reused} kept), ${d.unchangedByGold} leave the database unchanged, ${d.withOutputs} with outputs; ${(d.replayMs / 1000).toFixed(1)} s`,
    ),
    `environments: ${counts(s.environments)}`,
    `scenarios:    ${counts(s.scenarios)}`,
    `checks:       ${s.checks}`,
    `not selected: ${s.notSelected.scenarios} tasks (--limit ${opts.limit ?? 'none'})`,
    `skipped:      ${s.skipped.length} tasks${s.skipped.length ? ':' : ''}`,
    ...s.skipped.slice(0, SHOWN).map(shownItem),
    ...(s.skipped.length > SHOWN ? [`  … and ${s.skipped.length - SHOWN} more (--json lists them all)`] : []),
    ...s.warnings.map(w => `warning: ${oneLineText(w, SHOWN_CHARS)}`),
    `run limits:   create ${s.limits.createDeadlineMs} ms, call ${s.limits.callDeadlineMs} ms, check ${s.limits.checkDeadlineMs} ms, session CPU ${s.limits.sessionCpuMs} ms, state cap ${s.limits.maxStateBytes} bytes`,
    `The environments are Python (run by the Python runtime). Roll out with: envfleet rollouts --run ${s.runId} --mode conversational; serve with: envfleet serve --run ${s.runId}`,
  ];
  return `${lines.join('\n')}\n`;
}

/** `envfleet import tau-bench`. */
export async function importTauBenchCommand(opts: ImportTauBenchOptions): Promise<void> {
  const request = await tauRequestOf(opts);
  await withRuns(async c => {
    const logger = createLogger(c.config).child({ command: 'import tau-bench' });
    const python = importRunner(c.config, 1, logger);
    try {
      const summary = await importTauBench(c.store, python, { runId: opts.run, ...request, ...(opts.limit ? { limit: opts.limit } : {}), append: opts.append ?? false }, runOptionsFrom(c.config), logger, tauReporter());
      process.stdout.write(opts.json ? `${JSON.stringify(summary, null, 2)}\n` : tauSummaryText(summary, opts));
      failIfNothingImported(summary, 'tasks', 'scenarios');
    } finally {
      await python.close();
    }
  });
}
