import { readdir, stat } from 'node:fs/promises';
import { basename, join, relative } from 'node:path';
import { RequestError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { RunOptions } from '../runs/options.js';
import type { RunStore } from '../runs/store.js';
import { FunctionTool, type CheckSpec, type EnvironmentCode } from '../sandbox/bundle.js';
import { DEFAULT_SANDBOX_LIMITS, type SandboxLimits } from '../sandbox/limits.js';
import type { EnvSession, SandboxRunner } from '../sandbox/runner.js';
import type { ScenarioRecord } from '../scenarios/types.js';
import type { Operation } from '../synthesis/schemas.js';
import type { EnvironmentRecord, ImportedFrom } from '../synthesis/types.js';
import { hashOf } from '../util/canonical.js';
import { readTextFile } from '../util/bom.js';
import { rolledOutProblem, rolloutsLookup, writeImported } from './write.js';
import type { ImportCounts, SkippedRecord } from './envscaler.js';
import { MODULE_HEADER_PY, READER_PY, READER_TOOLS, REPLAY_PY, REPLAY_TOOLS, goldHashCheck, outputsCheck } from './tau-bench-python.js';
import { checkRunName } from '../runs/ids.js';

/**
 * `envfleet import tau-bench`: τ-bench v1's domains (sierra-research/tau-bench, a checkout the user
 * supplies; none of its code or data is in this repository) into a run, one Python environment per
 * domain and one scenario per task, with τ-bench's reward as checks (docs/formats.md § "τ-bench").
 *
 * Nothing of τ-bench runs in Node: its files are read as text, taken apart with Python's `ast` in the
 * sandbox (the reader session), and its tools run only in the sandbox (the replay session, and every
 * session of the imported environment). The database is embedded once in the environment's source
 * (its JSON text, so that Python reads the same ints and floats τ-bench does), never in a scenario.
 */

export const TAU_SPLITS = ['test', 'dev', 'train'] as const;
export type TauSplit = (typeof TAU_SPLITS)[number];

/** The tool that ends a τ-bench episode; calculate_reward skips it when it replays the gold actions. */
export const TAU_TERMINATE_TOOLS = ['transfer_to_human_agents'];

export interface TauDomainFiles {
  readonly name: string;
  readonly dir: string;
  /** tools/*.py except __init__.py, by name. */
  readonly toolFiles: readonly string[];
  readonly toolsInit: string | null;
  /** data/*.json: each file's stem is its key in the database (orders.json → data["orders"]), as τ-bench's load_data builds it. */
  readonly dataFiles: readonly string[];
  readonly wiki: string;
  readonly tasks: readonly { readonly split: TauSplit; readonly path: string }[];
}

const isDir = async (p: string) => (await stat(p).catch(() => null))?.isDirectory() ?? false;
const isFile = async (p: string) => (await stat(p).catch(() => null))?.isFile() ?? false;

/** What a folder lacks to be a τ-bench domain (empty: it is one). */
async function domainProblems(dir: string): Promise<{ problems: string[]; files: TauDomainFiles | null }> {
  const problems: string[] = [];
  const toolsDir = join(dir, 'tools');
  const dataDir = join(dir, 'data');
  const toolFiles = (await isDir(toolsDir)) ? (await readdir(toolsDir)).filter(n => n.endsWith('.py') && n !== '__init__.py').sort() : null;
  if (toolFiles === null) problems.push('no tools/ folder');
  else if (toolFiles.length === 0) problems.push('no tool files (tools/*.py) in tools/');
  const dataFiles = (await isDir(dataDir)) ? (await readdir(dataDir)).filter(n => n.endsWith('.json')).sort() : null;
  if (dataFiles === null) problems.push('no data/ folder');
  else if (dataFiles.length === 0) problems.push('no database files (data/*.json) in data/');
  const wiki = join(dir, 'wiki.md');
  if (!(await isFile(wiki))) problems.push('no wiki.md (the policy)');
  const tasks: { split: TauSplit; path: string }[] = [];
  for (const split of TAU_SPLITS) if (await isFile(join(dir, `tasks_${split}.py`))) tasks.push({ split, path: join(dir, `tasks_${split}.py`) });
  if (tasks.length === 0) problems.push('no task files (tasks_test.py, tasks_dev.py, tasks_train.py)');
  if (problems.length) return { problems, files: null };
  const init = join(toolsDir, '__init__.py');
  return {
    problems,
    files: { name: basename(dir), dir, toolFiles: toolFiles!, toolsInit: (await isFile(init)) ? init : null, dataFiles: dataFiles!, wiki, tasks },
  };
}

/**
 * The domains under PATH: a checkout (PATH/tau_bench/envs/<domain>), its envs folder (PATH/<domain>),
 * or one domain folder. A domain folder has tools/*.py, data/*.json, wiki.md and tasks_<split>.py.
 * Refuses with what each candidate folder lacks.
 */
export async function findTauBenchDomains(path: string): Promise<TauDomainFiles[]> {
  if (!(await isDir(path))) {
    throw new RequestError(`--from ${path}: ${(await stat(path).catch(() => null)) ? 'is a file' : 'no such directory'}; pass a checkout of sierra-research/tau-bench, or its tau_bench/envs folder`);
  }
  const self = await domainProblems(path);
  if (self.files) return [self.files];
  const envs = (await isDir(join(path, 'tau_bench', 'envs'))) ? join(path, 'tau_bench', 'envs') : path;
  const found: TauDomainFiles[] = [];
  const lacking: string[] = [];
  for (const name of (await readdir(envs)).sort()) {
    const dir = join(envs, name);
    if (name.startsWith('.') || name === '__pycache__' || !(await isDir(dir))) continue;
    const d = await domainProblems(dir);
    if (d.files) found.push(d.files);
    else if (d.problems.length < 5) lacking.push(`${relative(path, dir) || dir}: ${d.problems.join('; ')}`);
  }
  if (found.length === 0) {
    throw new RequestError(
      `--from ${path}: no τ-bench domain found. A domain is a folder with tools/*.py (Tool classes), data/*.json (the database), wiki.md (the policy) and tasks_test.py / tasks_dev.py / tasks_train.py, ` +
        `found in a checkout under tau_bench/envs/<domain>, or under the folder given.${lacking.length ? ` Folders that come close: ${lacking.join(' | ')}` : envs === path ? ' Pass the checkout (the folder holding tau_bench/) or tau_bench/envs.' : ''}`,
    );
  }
  return found;
}

export interface TauImportRequest {
  readonly runId: string;
  readonly domains: readonly TauDomainFiles[];
  readonly splits: readonly TauSplit[];
  /** At most this many tasks per split and domain (the first ones). */
  readonly limit?: number;
  readonly append?: boolean;
}

export type TauImportProgress =
  | { readonly phase: 'read'; readonly domain: string; readonly what: string }
  | { readonly phase: 'replay'; readonly domain: string; readonly split: TauSplit; readonly done: number; readonly total: number; readonly reused: number }
  | { readonly phase: 'write'; readonly kind: 'env' | 'scenario'; readonly done: number; readonly total: number };

export interface TauDomainSummary {
  readonly domain: string;
  readonly environmentId: string;
  readonly tools: number;
  /** τ-bench's hash of the initial database. */
  readonly initialHash: string;
  /** Bytes of the database as canonical JSON (the session state's size, against the state cap). */
  readonly stateBytes: number;
  /** Bytes of the environment source (the database's JSON text is in it). */
  readonly sourceBytes: number;
  readonly tasks: Readonly<Partial<Record<TauSplit, number>>>;
  /** Gold replays run now, and gold hashes reused from the run's scenarios (same module and task). */
  readonly replayed: number;
  readonly reused: number;
  /** Tasks whose gold actions leave the database as it was. */
  readonly unchangedByGold: number;
  /** Tasks with outputs (an episode check besides the gold-hash check). */
  readonly withOutputs: number;
  readonly replayMs: number;
}

export interface TauImportSummary {
  readonly runId: string;
  readonly created: boolean;
  readonly domains: readonly TauDomainSummary[];
  readonly environments: ImportCounts;
  readonly scenarios: ImportCounts;
  readonly checks: number;
  readonly skipped: readonly SkippedRecord[];
  readonly notSelected: { readonly scenarios: number };
  readonly warnings: readonly string[];
  /** The run's frozen sandbox limits (raised for τ-bench when the import created the run). */
  readonly limits: Pick<SandboxLimits, 'createDeadlineMs' | 'callDeadlineMs' | 'checkDeadlineMs' | 'sessionCpuMs' | 'maxStateBytes'>;
}

const DOMAIN_ID = /^[A-Za-z0-9_]{1,60}$/;

/**
 * What an imported τ-bench environment needs of the run's sandbox limits: its sessions parse a 2–5 MB
 * database at start, copy it at the end, and its checks hash it (about 1 s in Pyodide). The importer
 * freezes at least these into a run it creates (measured figures in docs/benchmarks.md).
 */
export const TAU_MIN_LIMITS = { createDeadlineMs: 60_000, callDeadlineMs: 10_000, checkDeadlineMs: 30_000, sessionCpuMs: 300_000 } as const;

export function tauLimits(base: SandboxLimits): SandboxLimits {
  return {
    ...base,
    createDeadlineMs: Math.max(base.createDeadlineMs, TAU_MIN_LIMITS.createDeadlineMs),
    callDeadlineMs: Math.max(base.callDeadlineMs, TAU_MIN_LIMITS.callDeadlineMs),
    checkDeadlineMs: Math.max(base.checkDeadlineMs, TAU_MIN_LIMITS.checkDeadlineMs),
    sessionCpuMs: Math.max(base.sessionCpuMs, TAU_MIN_LIMITS.sessionCpuMs),
  };
}

/** The import's own sessions (the reader, the replays): generous, they run trusted helpers on untrusted input. */
const IMPORT_LIMITS: SandboxLimits = {
  ...DEFAULT_SANDBOX_LIMITS,
  createDeadlineMs: 300_000,
  callDeadlineMs: 300_000,
  checkDeadlineMs: 60_000,
  sessionCpuMs: 24 * 3_600_000,
  maxResultBytes: 32 << 20,
  maxStateBytes: 64 << 20,
};

const looseTools = (names: readonly string[]): FunctionTool[] => names.map(name => ({ type: 'function', function: { name, parameters: { type: 'object' } } }));

/** JSON text without the whitespace between tokens (strings untouched): the database's text as Python reads it, smaller. */
export function minifyJson(text: string): string {
  let start = 0;
  let i = 0;
  const n = text.length;
  const parts: string[] = [];
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // a string: up to the closing quote, escapes skipped
      i += 1;
      while (i < n) {
        const d = text.charCodeAt(i);
        if (d === 0x5c) i += 2;
        else if (d === 0x22) break;
        else i += 1;
      }
      i += 1;
    } else if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) {
      if (i > start) parts.push(text.slice(start, i));
      while (i < n && [0x20, 0x0a, 0x0d, 0x09].includes(text.charCodeAt(i))) i += 1;
      start = i;
    } else i += 1;
  }
  if (start < n) parts.push(text.slice(start));
  return parts.join('');
}

/**
 * A Python string literal with the value of `text`, in single quotes: JSON text is full of double
 * quotes, which then need no escape (the source is stored as JSON, where each escape doubles).
 */
export const pyString = (text: string): string =>
  // eslint-disable-next-line no-control-regex -- control characters are exactly what must be escaped
  `'${text.replace(/[\\'\u0000-\u001f\u007f\u2028\u2029]/g, c => (c === '\\' ? '\\\\' : c === "'" ? "\\'" : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`))}'`;

const classNameOf = (domain: string) => `TauBench${domain.replace(/(^|_)([a-z0-9])/g, (_, __: string, c: string) => c.toUpperCase())}`;

interface ToolAnalysis {
  readonly files: Record<string, { problems: string[]; classes?: string[]; evals?: number; source?: string }>;
  readonly order: [string | null, string][] | null;
}

interface ParsedTask {
  readonly index: number;
  readonly line: number;
  readonly task: { annotator: unknown; user_id: string; instruction: string; actions: { name: string; kwargs: Record<string, unknown> }[]; outputs: string[] } | null;
  readonly problem: string | null;
  /** sha256 of the task's Python repr (ints and floats told apart). */
  readonly key: string | null;
}

/** Calls a helper session's tool; a runtime error is an import error naming the step. */
async function ask<T>(session: EnvSession, tool: string, args: Record<string, unknown>, what: string): Promise<T> {
  const out = await session.call(tool, args);
  if (out.runtimeError) {
    const message = (out.result as { error?: string } | null)?.error ?? JSON.stringify(out.result);
    throw new TauImportError(`${what}: ${out.runtimeError}: ${message}`);
  }
  return out.result as T;
}

/** An import that cannot go on (a domain's files are not τ-bench's shape, or the sandbox refused them). */
export class TauImportError extends RequestError {}

/** The module of a domain without its environment class: header, the rewritten tool files, the tool list, the database text. */
function moduleOf(domain: TauDomainFiles, analysis: ToolAnalysis, dbTexts: readonly { key: string; text: string }[]): { module: string; toolClasses: string[] } {
  const problems: string[] = [];
  const classFile = new Map<string, string>();
  for (const [file, a] of Object.entries(analysis.files)) {
    problems.push(...a.problems);
    for (const c of a.classes ?? []) {
      if (classFile.has(c)) problems.push(`tools/${file}: class ${c} is also defined in tools/${classFile.get(c)}`);
      classFile.set(c, file);
    }
  }
  if (problems.length) throw new TauImportError(`${domain.name}: the tool files cannot be used: ${problems.join('; ')}`);
  // ALL_TOOLS's order when tools/__init__.py lists it; else the files' order.
  let toolClasses: string[];
  if (analysis.order) {
    const missing = analysis.order.filter(([, c]) => !classFile.has(c)).map(([, c]) => c);
    if (missing.length) throw new TauImportError(`${domain.name}: tools/__init__.py lists ${missing.join(', ')} in ALL_TOOLS, but no tool file defines ${missing.length > 1 ? 'them' : 'it'} as a Tool subclass`);
    toolClasses = analysis.order.map(([, c]) => c);
  } else toolClasses = [...classFile.keys()];
  if (toolClasses.length === 0) throw new TauImportError(`${domain.name}: no Tool subclass in tools/*.py`);
  const files = [...new Set(toolClasses.map(c => classFile.get(c)!))];
  const parts = [
    `# Generated by envfleet import tau-bench from the ${domain.name} domain of a τ-bench checkout: the tool files`,
    `# (tools/*.py, rewritten as marked), the database (data/*.json) and a class over them. Runs only in the sandbox.`,
    MODULE_HEADER_PY,
    ...files.map(f => `# ---- tools/${f} ----\n${analysis.files[f]!.source!.replace(/\s*$/, '')}\n`),
    `\n_ENVFLEET_TOOLS = [${toolClasses.join(', ')}]\n`,
    '# The database: data/*.json as JSON text (whitespace between tokens removed), parsed by each session.',
    `_ENVFLEET_DB_TEXT = {\n${dbTexts.map(d => `    ${pyString(d.key)}: ${pyString(d.text)},`).join('\n')}\n}\n`,
    'def _envfleet_load_db():\n    return {k: _envfleet_json.loads(v) for k, v in _ENVFLEET_DB_TEXT.items()}\n',
  ];
  return { module: parts.join('\n'), toolClasses };
}

/** The environment class: the database as self.data, one method per tool calling its invoke with data=self.data. */
function classOf(className: string, domain: string, tools: readonly { name: string; cls: string }[]): string {
  return [
    `class ${className}:`,
    `    """τ-bench's ${domain} domain: the database in self.data (reloaded from the embedded JSON for each session), one method per tool."""`,
    '',
    '    def __init__(self, config=None):',
    '        self.data = _envfleet_load_db()',
    ...tools.flatMap(t => ['', `    def ${t.name}(self, **kwargs):`, `        return _envfleet_invoke(${t.cls}, self.data, kwargs)`]),
    '',
  ].join('\n');
}

/**
 * Imports the domains' environments and tasks into run `runId` (created with input `tau-bench` and
 * τ-bench's sandbox limits when absent). Per domain: the reader session parses the tool and task
 * files; the replay session loads the generated module, answers the tools' get_info(), τ-bench's hash
 * of the initial database and of each task's gold replay. Idempotent: documents already in the run
 * with the same content are not written again, and a task whose module and parsed form are unchanged
 * keeps its gold hash without a replay.
 */
export async function importTauBench(store: RunStore, sandbox: SandboxRunner, request: TauImportRequest, options: RunOptions, logger: Logger, progress?: (p: TauImportProgress) => void): Promise<TauImportSummary> {
  const { runId } = request;
  checkRunName(runId);
  const existing = await store.getRun(runId);
  if (existing && existing.input !== 'tau-bench' && !request.append) {
    throw new RequestError(`run "${runId}" exists and was made from ${existing.input}, not imported from τ-bench: import into another run name, or pass --append to add τ-bench's environments and scenarios to it`);
  }
  const now = new Date().toISOString();
  const skipped: SkippedRecord[] = [];
  const warnings: string[] = [];
  const runOptions: RunOptions = existing ? existing.options : { ...options, limits: tauLimits(options.limits) };
  const limits = runOptions.limits;
  for (const [k, v] of Object.entries(TAU_MIN_LIMITS)) {
    if (limits[k as keyof typeof TAU_MIN_LIMITS] < v) warnings.push(`run "${runId}" froze ${k} = ${limits[k as keyof typeof TAU_MIN_LIMITS]} ms, below the ${v} ms τ-bench's sessions and checks need: episodes may end with DEADLINE_EXCEEDED. Import into a new run (it gets τ-bench's limits).`);
  }

  const envs: EnvironmentRecord[] = [];
  const scenarios: Omit<ScenarioRecord, 'index'>[] = [];
  const domains: TauDomainSummary[] = [];
  let notSelected = 0;

  for (const domain of request.domains) {
    if (!DOMAIN_ID.test(domain.name)) throw new TauImportError(`${domain.dir}: the domain folder's name "${domain.name}" must be letters, digits and _ (it names the environment)`);
    const log = logger.child({ domain: domain.name });
    progress?.({ phase: 'read', domain: domain.name, what: 'tool and task files' });
    const toolSources: Record<string, string> = {};
    for (const f of domain.toolFiles) toolSources[f] = await readTextFile(join(domain.dir, 'tools', f));
    const initSource = domain.toolsInit ? await readTextFile(domain.toolsInit) : '';
    // As τ-bench reads it (open() in text mode: universal newlines), so a checkout with CRLF gives the same policy text.
    const wiki = (await readTextFile(domain.wiki)).replace(/\r\n?/g, '\n');
    const dbTexts: { key: string; text: string }[] = [];
    for (const f of domain.dataFiles) dbTexts.push({ key: f.replace(/\.json$/, ''), text: minifyJson(await readTextFile(join(domain.dir, 'data', f))) });
    const splits = domain.tasks.filter(t => request.splits.includes(t.split));
    for (const s of request.splits) if (!domain.tasks.some(t => t.split === s)) warnings.push(`${domain.name}: no tasks_${s}.py; that split is not imported for this domain`);

    // 1. The reader: the tool files rewritten, the tasks parsed (ast, literals only).
    const reader = await sandbox.openSession({ name: 'τ-bench reader', className: 'TauBenchReader', source: READER_PY, tools: looseTools(READER_TOOLS), language: 'python' }, {}, IMPORT_LIMITS);
    const parsed = new Map<TauSplit, { file: string; tasks: ParsedTask[]; source: string }>();
    let analysis: ToolAnalysis;
    try {
      analysis = await ask<ToolAnalysis>(reader, 'analyze_tools', { files: toolSources, init_source: initSource }, `${domain.name}: reading tools/*.py`);
      for (const { split, path } of splits) {
        const file = basename(path);
        const source = await readTextFile(path);
        const head = await ask<{ problem?: string; count?: number }>(reader, 'parse_tasks', { file, source }, `${domain.name}: reading ${file}`);
        if (head.problem) {
          skipped.push({ file: `${domain.name}/${file}`, where: 'the file', problem: head.problem });
          continue;
        }
        const tasks: ParsedTask[] = [];
        for (let start = 0; start < head.count!; start += 100) tasks.push(...(await ask<ParsedTask[]>(reader, 'task_batch', { file, start, count: 100 }, `${domain.name}: reading ${file}`)));
        parsed.set(split, { file, tasks, source });
      }
    } finally {
      await reader.close();
    }

    // 2. The module, and the replay session on it: tool infos, hashes.
    const { module } = moduleOf(domain, analysis, dbTexts);
    const moduleHash = hashOf(module, 32);
    const className = classNameOf(domain.name);
    const envId = `tau-${domain.name}`;
    progress?.({ phase: 'read', domain: domain.name, what: 'the tools in the sandbox (get_info) and the initial database hash' });
    const replayCode: EnvironmentCode = { name: 'τ-bench replay', className: 'TauBenchReplay', source: `${module}\n${REPLAY_PY}`, tools: looseTools(REPLAY_TOOLS), language: 'python' };
    const replay = await sandbox.openSession(replayCode, {}, IMPORT_LIMITS);
    const domainScenarios: Omit<ScenarioRecord, 'index'>[] = [];
    let tools: FunctionTool[];
    let toolMap: { name: string; cls: string }[];
    let initial: { hash: string; bytes: number };
    const counts: Partial<Record<TauSplit, number>> = {};
    let replayed = 0;
    let reused = 0;
    let unchangedByGold = 0;
    let withOutputs = 0;
    const replayStarted = performance.now();
    try {
      const infos = await ask<[string, unknown][]>(replay, 'tool_infos', {}, `${domain.name}: get_info() of the tools`);
      tools = [];
      toolMap = [];
      for (const [cls, info] of infos) {
        const tool = FunctionTool.safeParse(info);
        if (!tool.success) throw new TauImportError(`${domain.name}: ${cls}.get_info() is not an OpenAI function tool: ${tool.error.issues.map(i => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(tool.data.function.name)) throw new TauImportError(`${domain.name}: ${cls}.get_info() names the tool ${JSON.stringify(tool.data.function.name)}, not a Python identifier`);
        if (toolMap.some(t => t.name === tool.data.function.name)) throw new TauImportError(`${domain.name}: two tools are named ${tool.data.function.name}`);
        tools.push(tool.data);
        toolMap.push({ name: tool.data.function.name, cls });
      }
      initial = await ask<{ hash: string; bytes: number }>(replay, 'initial_hash', {}, `${domain.name}: hashing the initial database`);
      log.info({ initialHash: initial.hash, stateBytes: initial.bytes, tools: tools.length }, 'τ-bench domain loaded in the sandbox');
      if (initial.bytes > limits.maxStateBytes) {
        warnings.push(`${domain.name}: the database is ${initial.bytes} bytes of JSON, more than the run's state cap of ${limits.maxStateBytes} (ENVFLEET_SANDBOX_MAX_STATE_KB): its sessions will fail with STATE_TOO_LARGE`);
      }

      for (const [split, { file, tasks, source }] of parsed) {
        const chosen = request.limit !== undefined ? tasks.slice(0, request.limit) : tasks;
        notSelected += tasks.length - chosen.length;
        await ask(replay, 'load_tasks', { file, source }, `${domain.name}: reading ${file} for the replays`);
        let done = 0;
        let splitReused = 0;
        for (const t of chosen) {
          done += 1;
          if (!t.task) {
            skipped.push({ file: `${domain.name}/${file}`, where: `task ${t.index} (line ${t.line})`, problem: t.problem ?? 'unreadable' });
            continue;
          }
          const id = `${envId}-${split}-${t.index}`;
          const goldKey = hashOf({ moduleHash, task: t.key, terminate: TAU_TERMINATE_TOOLS }, 32);
          const before = await store.getDoc(runId, 'scenario', id);
          let goldHash = before?.lineage.original?.goldKey === goldKey ? before.lineage.original.goldHash : undefined;
          if (goldHash) {
            reused += 1;
            splitReused += 1;
          } else {
            const r = await ask<{ hash: string; errors: number }>(replay, 'replay', { file, index: t.index, terminate: TAU_TERMINATE_TOOLS }, `${domain.name}: replaying ${file} task ${t.index}`);
            goldHash = r.hash;
            replayed += 1;
          }
          if (goldHash === initial.hash) unchangedByGold += 1;
          if (done % 10 === 0 || done === chosen.length) progress?.({ phase: 'replay', domain: domain.name, split, done, total: chosen.length, reused: splitReused });
          const checklist: CheckSpec[] = [{ item: `The database ends as the gold actions leave it (τ-bench's hash ${goldHash.slice(0, 16)}…)`, check: goldHashCheck(goldHash), language: 'python' }];
          if (t.task.outputs.length) {
            withOutputs += 1;
            checklist.push({ item: `The agent tells the user ${t.task.outputs.map(o => JSON.stringify(o)).join(', ')}`, check: outputsCheck(t.task.outputs), language: 'python', episode: true });
          }
          const original: ImportedFrom = { envId: domain.name, className, taskId: `${split}-${t.index}`, split, file, record: t.index, userId: t.task.user_id, goldHash, goldKey };
          const instruction = t.task.instruction;
          domainScenarios.push({
            id,
            runId,
            environmentId: envId,
            status: 'ready',
            initialState: {},
            stateHash: hashOf({}, 32),
            task: instruction,
            userGoal: { goal: instruction, facts: [] },
            expectedTools: [...new Set(t.task.actions.map(a => a.name))],
            checklistItems: checklist.map(c => c.item),
            checklist,
            dropReason: null,
            lineage: { runId, environmentId: envId, models: {}, prompts: {}, createdAt: now, source: 'tau-bench', original },
          });
          counts[split] = (counts[split] ?? 0) + 1;
        }
      }
    } finally {
      await replay.close();
    }
    const replayMs = performance.now() - replayStarted;

    const source = `${module}\n\n${classOf(className, domain.name, toolMap)}`;
    const operations: Operation[] = tools.map(t => ({
      name: t.function.name,
      kind: /^(get|find|list|search|calculate|think)/.test(t.function.name) ? 'query' : 'state_change',
      description: t.function.description ?? t.function.name,
      parameters: t.function.parameters ?? { type: 'object', properties: {} },
    }));
    const summary = `τ-bench ${domain.name} domain (${tools.length} tools; database ${dbTexts.map(d => d.key).join(', ')})`;
    envs.push({
      id: envId,
      runId,
      status: 'kept',
      description: { summary, introduction: wiki },
      state: {
        className,
        entities: dbTexts.map(d => ({ name: d.key, description: `data["${d.key}"], from data/${d.key}.json`, attributes: [] })),
        rules: [],
        stateSchema: { type: 'object', description: 'τ-bench database: {"data": {<data file stem>: <its JSON>}}; the instance keeps it in self.data' },
        exampleState: {},
      },
      className,
      operations,
      source,
      language: 'python',
      tools,
      endTools: TAU_TERMINATE_TOOLS.filter(name => tools.some(t => t.function.name === name)),
      failure: null,
      lineage: { runId, sourceTaskId: null, models: {}, prompts: {}, createdAt: now, source: 'tau-bench', original: { envId: domain.name, className, file: `${domain.name}/tools`, record: domain.name } },
    });
    scenarios.push(...domainScenarios);
    domains.push({ domain: domain.name, environmentId: envId, tools: tools.length, initialHash: initial.hash, stateBytes: initial.bytes, sourceBytes: Buffer.byteLength(source), tasks: counts, replayed, reused, unchangedByGold, withOutputs, replayMs: Math.round(replayMs) });
  }

  const created = existing ? false : await store.createRun({ id: runId, createdAt: now, input: 'tau-bench', options: runOptions });

  const rolledOut = rolloutsLookup(store, runId);
  const envCounts = { imported: 0, unchanged: 0, updated: 0 };
  const writtenEnvs = new Set<string>();
  for (const [i, env] of envs.entries()) {
    const w = await writeImported(store, runId, 'env', env, 'tau-bench', undefined, rolledOut);
    if (w.outcome === 'foreign' || w.outcome === 'rolled-out') {
      const problem = w.outcome === 'foreign' ? `run "${runId}" already has a ${w.other.status} environment ${env.id} that was not imported from τ-bench: left as it is` : rolledOutProblem(runId, 'env', env.id);
      skipped.push({ file: env.lineage.original!.file, where: `domain ${env.lineage.original!.envId}`, problem });
      continue;
    }
    writtenEnvs.add(env.id);
    envCounts[w.outcome] += 1;
    progress?.({ phase: 'write', kind: 'env', done: i + 1, total: envs.length });
  }

  const scnCounts = { imported: 0, unchanged: 0, updated: 0 };
  let checks = 0;
  const indexOf = new Map<string, number>();
  const writable = scenarios.filter(s => writtenEnvs.has(s.environmentId));
  for (const [i, s] of writable.entries()) {
    const index = indexOf.get(s.environmentId) ?? 0;
    indexOf.set(s.environmentId, index + 1);
    const doc: ScenarioRecord = { ...s, index };
    const w = await writeImported(store, runId, 'scenario', doc, 'tau-bench', undefined, rolledOut);
    if (w.outcome === 'rolled-out') {
      skipped.push({ file: doc.lineage.original!.file, where: `task ${doc.lineage.original!.taskId}`, problem: rolledOutProblem(runId, 'scenario', doc.id) });
      continue;
    }
    if (w.outcome === 'foreign') {
      skipped.push({ file: doc.lineage.original!.file, where: `task ${doc.lineage.original!.taskId}`, problem: `run "${runId}" already has a scenario ${doc.id} that was not imported from τ-bench: left as it is` });
      continue;
    }
    scnCounts[w.outcome] += 1;
    checks += doc.checklist?.length ?? 0;
    if ((i + 1) % 200 === 0 || i + 1 === writable.length) progress?.({ phase: 'write', kind: 'scenario', done: i + 1, total: writable.length });
  }

  const { createDeadlineMs, callDeadlineMs, checkDeadlineMs, sessionCpuMs, maxStateBytes } = limits;
  return { runId, created, domains, environments: envCounts, scenarios: scnCounts, checks, skipped, notSelected: { scenarios: notSelected }, warnings, limits: { createDeadlineMs, callDeadlineMs, checkDeadlineMs, sessionCpuMs, maxStateBytes } };
}
