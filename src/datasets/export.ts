import { randomUUID } from 'node:crypto';
import { link, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, join } from 'node:path';
import { ExportFolderBusyError, RequestError, type ArchivedTrajectoryMissingError } from '../errors.js';
import type { Trajectory } from '../rollouts/types.js';
import type { DocKind, RunDocuments, RunStore } from '../runs/store.js';
import { ExportStage, JsonlWriter } from './jsonl-writer.js';
import { droppedScenarioLine, environmentLine, scenarioLine } from './lines.js';
import { forEachFullTrajectory, shardsMovedTo } from './shards.js';
import { PROMPTS_FILE, VERL_FILE, writeRLTrainerFiles } from './rl-exports.js';
import { LLAMAFACTORY_INFO_FILE, readLlamaFactoryInfo, writeLlamaFactoryInfo, type LlamaFactoryInfo } from './llamafactory-info.js';
import { DEFAULT_SFT_OPTIONS, passesFilter, toHF, toLlamaFactory, toOpenAI, toRLGroup, toRLScenario, toShareGPT, type ReasoningMode, type SftFilter, type ShareGPTLeftOut } from './trajectories.js';
import { OutputFileError, makeFolder, writeWholeFile } from '../util/make-dir.js';

export type DatasetFormat = 'openai' | 'sharegpt' | 'llamafactory' | 'hf' | 'rl' | 'verl' | 'prompts';
export const DATASET_FORMATS: readonly DatasetFormat[] = ['openai', 'sharegpt', 'llamafactory', 'hf', 'rl', 'verl', 'prompts'];

export interface ExportOptions {
  readonly formats?: readonly DatasetFormat[];
  readonly filter?: SftFilter;
  /** SFT files: keep every assistant turn's reasoning or drop it from all (default: drop). */
  readonly reasoning?: ReasoningMode;
  /** Where the sink's shard files are now, if its output directory was moved. */
  readonly trajectoriesDir?: string;
  /**
   * Export the trajectories whose sink files are still there, leaving out (and counting) those whose shard is gone or
   * damaged, instead of stopping (TRAJECTORY_ARCHIVE_MISSING): the sink's folder deleted in part, and no copy left.
   */
  readonly skipMissingTrajectories?: boolean;
}

export interface ExportResult {
  readonly path: string;
  readonly count: number;
  readonly byStatus: Record<string, number>;
  readonly scenarios: { readonly ready: number; readonly dropped: number; readonly path: string | null };
  /** Records written per dataset file. */
  readonly datasets: Record<string, number>;
  /** Files of an earlier export in the folder (its manifest lists them) that this one did not write, removed. */
  readonly removed: readonly string[];
  /** Files with an export's names in the folder that no earlier export's manifest lists (written by hand, or by an older envfleet): kept, and said. */
  readonly foreign: readonly string[];
  /**
   * The entries of dataset_info.json that are not envfleet's (the folder's own, as LLaMA-Factory's data/dataset_info.json
   * holds): kept as written and in their order, beside the entries this export added, or after it took its entries out
   * (an export without the LLaMA-Factory files into a folder an earlier one wrote them to). Empty when there are none.
   */
  readonly infoKept: readonly string[];
  /**
   * Target assistant turns a dataset file gives no line for, by file and reason, with the trajectories they are of
   * (sft-sharegpt.jsonl: lines stop at a turn LLaMA-Factory could not read back, or at a break of its turn order).
   */
  readonly leftOut: Record<string, { readonly turns: number; readonly trajectories: number; readonly byReason: Record<string, number> }>;
  /** With skipMissingTrajectories: the trajectories left out because their sink file is gone or damaged, and why (each shard's error). */
  readonly missingTrajectories: { readonly count: number; readonly shards: readonly string[] };
  /** Formats asked for that wrote no file, and why (a run without trajectories, or without ready scenarios, yet). */
  readonly notWritten: readonly { readonly formats: readonly DatasetFormat[]; readonly reason: string }[];
}

/** The manifest an export leaves in its folder: the files it wrote (the next export into the folder removes those it does not write). */
export const EXPORT_MANIFEST = '.envfleet-export.json';

/** The lock an export holds on its folder while it writes there (one export per folder at a time). */
export const EXPORT_LOCK = '.envfleet-export.lock';

/** Whether process `pid` of this machine is alive (a process of another user's counts as alive). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

interface LockHolder {
  readonly token: string;
  readonly run: string;
  readonly pid: number;
  readonly host: string;
  readonly startedAt: string;
}

/**
 * Takes `dir`'s export lock, or throws ExportFolderBusyError naming the export that holds it. A lock left by an export
 * of this machine whose process is gone (killed, say) is taken over; then no other export writes into the folder,
 * so the partial files such an export left (NAME.<tag>.partial) are removed. Returns the release.
 */
async function lockFolder(dir: string, runId: string): Promise<() => Promise<void>> {
  const path = join(dir, EXPORT_LOCK);
  const me: LockHolder = { token: randomUUID(), run: runId, pid: process.pid, host: hostname(), startedAt: new Date().toISOString() };
  const tag = me.token.slice(0, 8);
  // Written whole beside the lock, then linked to its name (which fails if the name is taken): the lock is never seen
  // empty or torn, and a write that fails (a full disk) leaves no lock.
  const mine = `${path}.${tag}.partial`;
  try {
    await writeFile(mine, `${JSON.stringify(me)}\n`, 'utf8');
  } catch (err) {
    await rm(mine, { force: true });
    throw new OutputFileError(path, err);
  }
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await link(mine, path);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new OutputFileError(path, err);
      }
      const text = await readFile(path, 'utf8').catch(() => null);
      let holder: Partial<LockHolder> | null = null;
      try {
        holder = text === null ? null : (JSON.parse(text) as Partial<LockHolder>);
      } catch {
        // Not JSON: not a lock an envfleet export wrote (they are linked whole), so not taken over.
      }
      const stale = text !== null && holder?.host === me.host && typeof holder.pid === 'number' && !alive(holder.pid);
      // A lock removed meanwhile (its export ended) or a stale one: try again (a few times: others may race for it).
      if ((text === null || stale) && attempt < 5) {
        if (stale) await setAside(path, text, `${path}.${tag}.stale`);
        continue;
      }
      const who = holder && typeof holder.pid === 'number' ? `run ${JSON.stringify(holder.run)}, process ${holder.pid} on ${holder.host}, since ${holder.startedAt}` : `its lock ${path} does not say whose it is`;
      throw new ExportFolderBusyError(dir, path, who);
    }
  } finally {
    await rm(mine, { force: true });
  }
  await removeLeftPartials(dir);
  return async () => {
    // Only our own lock: one taken over as stale by another export (this process stopped a long while?) stays its own.
    const text = await readFile(path, 'utf8').catch(() => null);
    if (text !== null && text.includes(me.token)) await rm(path, { force: true });
  };
}

/**
 * Takes a stale lock out of the way: renamed aside (of two exports that found it stale, one renames it; the other finds
 * none), then removed if it is the one found stale. Had a live export's lock replaced it meanwhile, that one is put back.
 */
async function setAside(path: string, staleText: string, aside: string): Promise<void> {
  try {
    await rename(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new OutputFileError(path, err);
  }
  const moved = await readFile(aside, 'utf8').catch(() => null);
  if (moved !== null && moved !== staleText) await link(aside, path).catch(() => undefined);
  await rm(aside, { force: true });
}

/** Partial files an export of the folder left when it was killed: removed while this export holds the folder's lock. */
async function removeLeftPartials(dir: string): Promise<void> {
  // (Not the lock's own: another export's, waiting to be linked, is in use.)
  const names = new Set([...EXPORT_FILES, EXPORT_MANIFEST]);
  for (const entry of await readdir(dir)) {
    const m = /^(.+)\.[0-9a-f]{8}\.partial$/.exec(entry);
    if (m && names.has(m[1]!)) await rm(join(dir, entry), { force: true });
  }
}

/** The names of the files this module writes; with the RL trainers' files, every file an export may write into its folder. */
const FILE = {
  environments: 'environments.jsonl',
  scenarios: 'scenarios.jsonl',
  dropped: 'scenarios-dropped.jsonl',
  openai: 'sft-openai.jsonl',
  sharegpt: 'sft-sharegpt.jsonl',
  llamafactory: 'sft-llamafactory.jsonl',
  hf: 'sft-hf.jsonl',
  rlScenarios: 'rl-scenarios.jsonl',
  rlGroups: 'rl-groups.jsonl',
} as const;
const EXPORT_FILES: readonly string[] = [...Object.values(FILE), LLAMAFACTORY_INFO_FILE, VERL_FILE, PROMPTS_FILE];

/** The formats of `formats` whose files need what the run does not have yet, and what to run first. */
function notWritten(formats: ReadonlySet<DatasetFormat>, trajectories: number, readyScenarios: number, runId: string): ExportResult['notWritten'] {
  const out: { formats: DatasetFormat[]; reason: string }[] = [];
  // (verl and prompts are written from ready scenarios, every other format from trajectories)
  const asked = DATASET_FORMATS.filter(f => formats.has(f));
  const fromScenarios: DatasetFormat[] = asked.filter(f => f === 'verl' || f === 'prompts');
  const fromTrajectories = asked.filter(f => !fromScenarios.includes(f));
  if (!trajectories && fromTrajectories.length) out.push({ formats: fromTrajectories, reason: `run "${runId}" has no trajectories yet (roll out first: envfleet rollouts --run ${runId})` });
  if (!readyScenarios && fromScenarios.length) out.push({ formats: fromScenarios, reason: `run "${runId}" has no ready scenarios yet (build them first: envfleet scenarios --run ${runId})` });
  return out;
}

/**
 * Writes the datasets of a run into `dir`: environments.jsonl (every environment, kept, rejected and
 * failed, by id); when the run has scenarios, scenarios.jsonl (ready ones) and scenarios-dropped.jsonl
 * (with the reason each was dropped); when it has trajectories, the SFT and RL files of `formats`.
 * Every file is written one record at a time and appears under its name only when complete.
 */
export async function exportRun(store: RunStore, runId: string, dir: string, options: ExportOptions = {}): Promise<ExportResult> {
  if (!(await store.getRun(runId))) throw new RequestError(`run "${runId}" does not exist (check --run and REDIS_URL / ENVFLEET_REDIS_PREFIX)`);
  await makeFolder(dir, 'the output folder (export --out)');
  const release = await lockFolder(dir, runId);
  try {
    return await exportLocked(store, runId, dir, options);
  } finally {
    await release();
  }
}

async function exportLocked(store: RunStore, runId: string, dir: string, options: ExportOptions): Promise<ExportResult> {
  const formats = new Set(options.formats ?? DATASET_FORMATS);
  const trajectoryIds = (await store.listDocIds(runId, 'trajectory')).sort();
  const earlier = await readManifest(dir);
  // A dataset_info.json this export adds its entries to (or takes them out of) is read first: one it cannot read stops
  // the export before anything is written, and it is never overwritten.
  const lfFiles = trajectoryIds.length > 0 && (formats.has('sharegpt') || formats.has('llamafactory'));
  const info = lfFiles || earlier.has(LLAMAFACTORY_INFO_FILE) ? await readLlamaFactoryInfo(dir) : null;
  const byStatus: Record<string, number> = {};
  const path = join(dir, FILE.environments);
  // Every file goes under its name at the end, together (ExportStage): a failed or killed export leaves the earlier one.
  const stage = new ExportStage();
  try {
    const count = await writeDocs(store, runId, 'env', { [path]: env => ((byStatus[env.status] = (byStatus[env.status] ?? 0) + 1), [environmentLine(env)]) }, stage);
    let scenarios: ExportResult['scenarios'] = { ready: 0, dropped: 0, path: null };
    if ((await store.listDocIds(runId, 'scenario')).length) {
      const readyPath = join(dir, FILE.scenarios);
      const droppedPath = join(dir, FILE.dropped);
      const written = await writeFiles(store, runId, 'scenario', {
        [readyPath]: s => (s.status === 'ready' ? [scenarioLine(s)] : []),
        [droppedPath]: s => (s.status === 'dropped' ? [droppedScenarioLine(s)] : []),
      }, stage);
      scenarios = { ready: written[readyPath] ?? 0, dropped: written[droppedPath] ?? 0, path: readyPath };
      // Scenarios all still being built: no scenario files yet.
      if (!scenarios.ready && !scenarios.dropped) {
        await Promise.all([stage.drop(readyPath), stage.drop(droppedPath)]);
        scenarios = { ready: 0, dropped: 0, path: null };
      }
    }
    // The files still to come are known now: a hand-written one among them stops the export before the transcripts are
    // read and written (minutes and gigabytes on a large run, or a full disk said instead of the file).
    const sftAsked = (['openai', 'sharegpt', 'llamafactory', 'hf'] as const).filter(f => formats.has(f)).map(f => FILE[f]);
    const toCome = [
      ...(trajectoryIds.length ? [...sftAsked, ...(formats.has('rl') ? [FILE.rlScenarios, FILE.rlGroups] : [])] : []),
      ...(scenarios.ready ? [...(formats.has('verl') ? [VERL_FILE] : []), ...(formats.has('prompts') ? [PROMPTS_FILE] : [])] : []),
    ];
    await refuseHandWritten(dir, [...stage.files().map(f => basename(f)), ...toCome], earlier);
    const { datasets, infoKept, leftOut, missing } = await exportDatasets(store, runId, dir, trajectoryIds, info, options, stage);
    // The RL trainers' files (rl-exports.ts) need ready scenarios, not trajectories.
    if (scenarios.ready) {
      Object.assign(datasets, await writeRLTrainerFiles(store, runId, dir, { verl: formats.has('verl'), prompts: formats.has('prompts') }, 'train', stage));
    }
    // Checked again on the files written (the check above is on the files foreseen).
    await refuseHandWritten(dir, stage.files().map(f => basename(f)), earlier);
    const written = new Set([FILE.environments, ...(scenarios.path ? [FILE.scenarios, FILE.dropped] : []), ...Object.keys(datasets)]);
    // The manifest goes under its name first, listing this export's files and the earlier one's: whatever stops the
    // commit part way (a kill), every file of either export in the folder is listed, so the next export takes them as
    // its own (a file under its name that no manifest listed was refused as hand-written from then on). A folder without
    // room for it fails here, before any file is renamed.
    const manifestPath = join(dir, EXPORT_MANIFEST);
    const both = manifestText(runId, new Set([...written, ...earlier]));
    await stage.addText(manifestPath, both, true);
    await stage.commit();
    // An export into a folder that holds an earlier one replaces it whole: a file this export did not write (another
    // --format, a run without trajectories now) would otherwise stay beside the new ones, of another filter or run, and
    // a trainer pointed at the folder (LLaMA-Factory's dataset_dir) would mix them. Only files an earlier export's
    // manifest lists are removed: a folder's own dataset_info.json (LLaMA-Factory's data/) or a hand-written
    // scenarios.jsonl is kept, and named. A dataset_info.json holds others' entries beside envfleet's: only envfleet's go.
    const removed: string[] = [];
    const foreign: string[] = [];
    let kept = infoKept;
    for (const file of EXPORT_FILES) {
      if (written.has(file)) continue;
      if (!earlier.has(file)) {
        if (await exists(join(dir, file))) foreign.push(file);
        continue;
      }
      if (file === LLAMAFACTORY_INFO_FILE) {
        const left = await writeLlamaFactoryInfo(dir, {}, info);
        if (left.removed) removed.push(file);
        kept = left.kept;
        continue;
      }
      try {
        await rm(join(dir, file));
        removed.push(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    // Then it lists this export's files alone. Not written (no room left, say), it lists more files than the folder holds,
    // which the next export handles (a listed file that is gone is nothing to remove): the export itself is complete.
    const exact = manifestText(runId, written);
    if (exact !== both) await writeWholeFile(manifestPath, exact).catch(() => undefined);
    return { path, count, byStatus, scenarios, datasets, removed, foreign, infoKept: kept, leftOut, missingTrajectories: missing, notWritten: notWritten(formats, trajectoryIds.length, scenarios.ready, runId) };
  } catch (err) {
    await stage.abort();
    throw err;
  }
}

/** A manifest listing `files`. No time in it: the same run exported twice gives the same files, byte for byte (the chaos run compares them). */
const manifestText = (runId: string, files: ReadonlySet<string>) => `${JSON.stringify({ run: runId, files: [...files].sort() })}\n`;

/**
 * Stops the export when a file of an export's name among `names` is in `dir` and no earlier export's manifest lists it
 * (written by hand, by another tool): it is never replaced. (dataset_info.json is merged, never replaced; a folder
 * holding the name is the commit's to refuse, as a file it cannot write.)
 */
async function refuseHandWritten(dir: string, names: readonly string[], earlier: ReadonlySet<string>): Promise<void> {
  const held: string[] = [];
  for (const name of new Set(names)) {
    if (name === LLAMAFACTORY_INFO_FILE || name === EXPORT_MANIFEST || earlier.has(name)) continue;
    if (await stat(join(dir, name)).then(st => !st.isDirectory(), () => false)) held.push(name);
  }
  if (held.length) {
    throw new RequestError(
      `${dir} holds ${held.join(', ')}, which no earlier envfleet export there wrote (the folder's ${EXPORT_MANIFEST} does not list ${held.length === 1 ? 'it' : 'them'}: written by hand, by another tool, or by an envfleet older than the manifest); ` +
        `this export would replace ${held.length === 1 ? 'it' : 'them'}, so it stopped without writing anything: move ${held.length === 1 ? 'it' : 'them'} away, or export into another folder`,
    );
  }
}

/** The files an earlier export's manifest in `dir` lists (none when there is no manifest, or it cannot be read). */
async function readManifest(dir: string): Promise<Set<string>> {
  try {
    const m = JSON.parse(await readFile(join(dir, EXPORT_MANIFEST), 'utf8')) as { files?: unknown };
    return new Set(Array.isArray(m.files) ? m.files.filter((f): f is string => typeof f === 'string' && EXPORT_FILES.includes(f)) : []);
  } catch {
    return new Set();
  }
}

const exists = (path: string) => stat(path).then(() => true, () => false);

/** Writes one file per entry from the documents of `kind`, in id order; each document gives each file zero or more records. Returns the records per file. */
type Records<K extends DocKind> = (doc: RunDocuments[K]) => readonly unknown[] | Promise<readonly unknown[]>;

async function writeFiles<K extends DocKind>(store: RunStore, runId: string, kind: K, files: Record<string, Records<K>>, stage?: ExportStage): Promise<Record<string, number>> {
  const writers = Object.entries(files).map(([path, records]) => ({ path, records, writer: new JsonlWriter(path, stage) }));
  const out: Record<string, number> = {};
  try {
    for (const id of (await store.listDocIds(runId, kind)).sort()) {
      const doc = await store.getDoc(runId, kind, id);
      if (doc) for (const w of writers) for (const record of await w.records(doc)) await w.writer.write(record);
    }
    for (const w of writers) out[w.path] = await w.writer.close();
  } catch (err) {
    // Also when a close fails (the flush or the rename): no partial file is left behind.
    await Promise.all(writers.map(w => w.writer.abort()));
    throw err;
  }
  return out;
}

/** writeFiles for one file. */
async function writeDocs<K extends DocKind>(store: RunStore, runId: string, kind: K, file: Record<string, Records<K>>, stage?: ExportStage): Promise<number> {
  return Object.values(await writeFiles(store, runId, kind, file, stage))[0] ?? 0;
}

/**
 * The SFT and RL datasets of a run's trajectories (written only when the run has trajectories),
 * one trajectory at a time: those still whole in Redis first (by id), then those the sink wrote,
 * in its shard order.
 */
async function exportDatasets(
  store: RunStore,
  runId: string,
  dir: string,
  ids: readonly string[],
  info: LlamaFactoryInfo | null,
  options: ExportOptions,
  stage: ExportStage,
): Promise<{ datasets: Record<string, number>; infoKept: readonly string[]; leftOut: ExportResult['leftOut']; missing: ExportResult['missingTrajectories'] }> {
  if (!ids.length) return { datasets: {}, infoKept: [], leftOut: {}, missing: { count: 0, shards: [] } };
  const formats = new Set(options.formats ?? DATASET_FORMATS);
  const filter = options.filter ?? { solvedOnly: false, minReward: null };
  const o = options.reasoning ? { reasoning: options.reasoning } : DEFAULT_SFT_OPTIONS;
  const sharegptLeft = { turns: 0, trajectories: 0, byReason: {} as Record<string, number> };
  const countLeft = (why: ShareGPTLeftOut, turns: number) => {
    sharegptLeft.turns += turns;
    sharegptLeft.trajectories += 1;
    sharegptLeft.byReason[why] = (sharegptLeft.byReason[why] ?? 0) + turns;
  };
  // Each SFT format: its file, and the records one trajectory gives (none when it has no assistant turn to learn from).
  const sft: readonly [DatasetFormat, string, (t: Trajectory) => readonly unknown[]][] = [
    ['openai', FILE.openai, t => [toOpenAI(t, o)].filter(x => x !== null)],
    ['sharegpt', FILE.sharegpt, t => toShareGPT(t, o, countLeft)],
    ['llamafactory', FILE.llamafactory, t => toLlamaFactory(t, o)],
    ['hf', FILE.hf, t => toHF(t, o)],
  ];
  const writers = sft.filter(([format]) => formats.has(format)).map(([, file, records]) => ({ writer: new JsonlWriter(join(dir, file), stage), file, records }));
  const out: Record<string, number> = {};
  const missing = { count: 0, shards: [] as string[] };
  try {
    const relocate = options.trajectoriesDir ? shardsMovedTo(options.trajectoriesDir) : undefined;
    const onMissing = options.skipMissingTrajectories
      ? (lost: ArchivedTrajectoryMissingError) => {
          missing.count += lost.count;
          missing.shards.push(`${lost.count} in ${lost.place}`);
        }
      : undefined;
    // Only the SFT files read the transcripts: --format verl,prompts,rl needs none of the sink's files.
    if (writers.length) {
      await forEachFullTrajectory(store, runId, ids, { relocate, onMissing }, async t => {
        if (!passesFilter(t, filter)) return;
        for (const { writer, records } of writers) for (const record of records(t)) await writer.write(record);
      });
    }
    for (const { writer, file } of writers) out[file] = await writer.close();
  } catch (err) {
    await Promise.all(writers.map(w => w.writer.abort()));
    throw err;
  }
  // LLaMA-Factory finds its files through dataset_info.json beside them (added to the folder's own, if it has one).
  const lfFiles = Object.fromEntries(sft.filter(([format]) => formats.has(format) && (format === 'sharegpt' || format === 'llamafactory')).map(([format, file]) => [format, file]));
  let infoKept: readonly string[] = [];
  if (Object.keys(lfFiles).length) {
    const lf = await writeLlamaFactoryInfo(dir, lfFiles, info, stage);
    out[LLAMAFACTORY_INFO_FILE] = lf.entries;
    infoKept = lf.kept;
  }
  if (formats.has('rl')) {
    const envs = new Map<string, RunDocuments['env'] | null>();
    const envOf = async (id: string) => {
      if (!envs.has(id)) envs.set(id, await store.getDoc(runId, 'env', id));
      return envs.get(id) ?? null;
    };
    out[FILE.rlScenarios] = await writeDocs(store, runId, 'scenario', {
      [join(dir, FILE.rlScenarios)]: async s => {
        const env = s.status === 'ready' ? await envOf(s.environmentId) : null;
        return env ? [toRLScenario(s, env)] : [];
      },
    }, stage);
    out[FILE.rlGroups] = await writeDocs(store, runId, 'group', { [join(dir, FILE.rlGroups)]: g => [toRLGroup(g)] }, stage);
  }
  return { datasets: out, infoKept, leftOut: sharegptLeft.turns ? { [FILE.sharegpt]: sharegptLeft } : {}, missing };
}
