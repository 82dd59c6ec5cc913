import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { RequestError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { FunctionTool } from '../sandbox/bundle.js';
import { DEFAULT_SANDBOX_LIMITS, type SandboxLimits } from '../sandbox/limits.js';
import type { SandboxRunner } from '../sandbox/runner.js';
import type { RunOptions } from '../runs/options.js';
import type { RunStore } from '../runs/store.js';
import type { ScenarioRecord, ScriptedTurn } from '../scenarios/types.js';
import type { EnvironmentRecord, ImportedFrom } from '../synthesis/types.js';
import { hashOf } from '../util/canonical.js';
import { RawJson } from '../util/raw-json.js';
import { readTextFile } from '../util/bom.js';
import { bfclCheck, type BfclGoldTurn } from './bfcl-check.js';
import { BfclSourceError, LONG_CONTEXT_MODULE, REPLAY_TOOL, UNAVAILABLE_MODULES, routerClassName, routerSource, toolFromFuncDoc, type BfclModule } from './bfcl-source.js';
import { rolledOutProblem, rolloutsLookup, writeImported } from './write.js';
import type { ImportCounts, SkippedRecord } from './envscaler.js';
import { checkRunName } from '../runs/ids.js';
import { jsonMemberText } from '../util/json-member.js';
import { pythonTextWhereLost } from '../util/python-json.js';

/**
 * `envfleet import bfcl`: the multi-turn categories of the Berkeley Function-Calling Leaderboard
 * (a checkout the user supplies; none of its code or data is in this repository) into a run: one
 * Python environment per combination of classes (the class modules behind a generated router,
 * bfcl-source.ts), one scripted multi-turn scenario per entry, and BFCL's per-turn judgement as an
 * episode check whose gold states and results come from replaying the gold calls in the sandbox here.
 */

export const BFCL_CATEGORIES = ['base', 'miss_func', 'miss_param', 'long_context'] as const;
export type BfclCategory = (typeof BFCL_CATEGORIES)[number];

/** Classes of the suite that are not multi-turn environments (they need network services, vector stores or embedding models). */
const NOT_SUPPORTED = /^(WebSearchAPI|MemoryAPI.*)$/;
/** BFCL's limit on agent steps per user turn (MAXIMUM_STEP_LIMIT). */
export const BFCL_STEPS_PER_TURN = 20;
/** The user turn that comes with withheld functions when the entry gives none (BFCL's own text is read from the checkout when it is there). */
const DEFAULT_ADDED_FUNCTIONS_PROMPT = 'More functions are available to you now. Please try the request again with them.';
/** Bump when what the import makes of the same input changes: a re-import then writes the documents again. */
const IMPORT_VERSION = 1;

const ID = /^[A-Za-z0-9_.-]{1,120}$/;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Where the parts of a checkout are. */
export interface BfclLayout {
  /** The bfcl_eval folder. */
  readonly root: string;
  readonly sourceDir: string;
  readonly funcDocDir: string;
  readonly configFile: string;
  readonly promptsFile: string | null;
  /** Per category found: the entries and the gold answers. */
  readonly categories: Readonly<Partial<Record<BfclCategory, { readonly entries: string; readonly answers: string }>>>;
}

const exists = async (p: string, dir: boolean) =>
  stat(p).then(
    s => (dir ? s.isDirectory() : s.isFile()),
    () => false,
  );

/** The data file of a category: BFCL_v<N>_multi_turn_<category>.json, the highest N. */
async function dataFile(dir: string, category: string): Promise<string | null> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const re = new RegExp(`^BFCL_v(\\d+)_multi_turn_${category}\\.jsonl?$`);
  const found = names.map(n => ({ n, m: re.exec(n) })).filter(x => x.m).sort((a, b) => Number(b.m![1]) - Number(a.m![1]));
  return found[0] ? join(dir, found[0].n) : null;
}

/**
 * Finds bfcl_eval in `path` (a gorilla checkout, its berkeley-function-call-leaderboard folder, or
 * bfcl_eval itself) and the files of the requested categories; refuses with every missing part named.
 */
export async function findBfclLayout(path: string, categories: readonly BfclCategory[]): Promise<BfclLayout> {
  if (!(await exists(path, true))) throw new RequestError(`--from ${path}: not a directory; pass a gorilla checkout, its berkeley-function-call-leaderboard folder, or its bfcl_eval folder`);
  const candidates = [path, join(path, 'bfcl_eval'), join(path, 'berkeley-function-call-leaderboard', 'bfcl_eval')];
  let root: string | null = null;
  for (const c of candidates) if ((await exists(join(c, 'data'), true)) && (await exists(join(c, 'eval_checker'), true))) root ??= c;
  if (!root) {
    throw new RequestError(
      `--from ${path}: no bfcl_eval folder found (looked for data/ and eval_checker/ in ${candidates.map(c => c).join(', ')}); pass a gorilla checkout, its berkeley-function-call-leaderboard folder, or its bfcl_eval folder`,
    );
  }
  const sourceDir = join(root, 'eval_checker', 'multi_turn_eval', 'func_source_code');
  const funcDocDir = join(root, 'data', 'multi_turn_func_doc');
  const configFile = join(root, 'constants', 'executable_backend_config.py');
  const promptsFile = join(root, 'constants', 'default_prompts.py');
  const missing: string[] = [];
  if (!(await exists(sourceDir, true))) missing.push(`${sourceDir} (the class modules)`);
  if (!(await exists(funcDocDir, true))) missing.push(`${funcDocDir} (the function docs)`);
  if (!(await exists(configFile, false))) missing.push(`${configFile} (the class → module and class → function doc maps)`);
  const found: Partial<Record<BfclCategory, { entries: string; answers: string }>> = {};
  for (const cat of categories) {
    const entries = await dataFile(join(root, 'data'), cat);
    const answers = await dataFile(join(root, 'data', 'possible_answer'), cat);
    if (!entries) missing.push(`${join(root, 'data')}/BFCL_v*_multi_turn_${cat}.json (the ${cat} entries)`);
    if (!answers) missing.push(`${join(root, 'data', 'possible_answer')}/BFCL_v*_multi_turn_${cat}.json (the ${cat} gold answers)`);
    if (entries && answers) found[cat] = { entries, answers };
  }
  if (missing.length) throw new RequestError(`--from ${path}: the BFCL checkout at ${root} lacks ${missing.join('; ')}`);
  return { root, sourceDir, funcDocDir, configFile, promptsFile: (await exists(promptsFile, false)) ? promptsFile : null, categories: found };
}

/** A `NAME = { "Key": "value", ... }` dict of a Python constants file, read as text (never run). */
export function pythonStringDict(text: string, name: string): Map<string, string> | null {
  const start = new RegExp(`^${name}\\s*=\\s*\\{`, 'm').exec(text);
  if (!start) return null;
  // The dict ends at the first "}" that starts a line (values such as f"{PREFIX}.module" hold braces).
  const end = text.indexOf('\n}', start.index);
  const body = text.slice(start.index + start[0].length, end < 0 ? text.length : end);
  const out = new Map<string, string>();
  for (const e of body.matchAll(/^\s*"([^"]+)"\s*:\s*f?"([^"]*)"/gm)) out.set(e[1]!, e[2]!);
  return out;
}

/** One entry, read and checked. */
interface BfclEntry {
  readonly id: string;
  readonly category: BfclCategory;
  readonly file: string;
  readonly line: number;
  readonly classes: readonly string[];
  readonly initialConfig: Record<string, unknown>;
  /** `initial_config` as Python reads its text (json.loads in BFCL: 10000.0 a float), where JavaScript's reading differs. */
  readonly initialConfigJson?: string;
  readonly turns: readonly ScriptedTurn[];
  readonly excluded: readonly string[];
  readonly withheld: readonly string[];
  readonly gold: readonly (readonly string[])[];
  readonly raw: unknown;
}

/** One combination of classes: its environment. */
interface BfclEnv {
  readonly id: string;
  readonly classes: readonly string[];
  readonly record: EnvironmentRecord;
}

export interface BfclImportSummary {
  readonly runId: string;
  readonly created: boolean;
  readonly environments: ImportCounts;
  readonly scenarios: ImportCounts & { readonly byCategory: Readonly<Record<string, number>> };
  readonly checks: number;
  /** Gold replays run now (entries new or changed), the calls they made, and the time they took. */
  readonly replay: { readonly entries: number; readonly reused: number; readonly calls: number; readonly ms: number };
  readonly skipped: readonly SkippedRecord[];
  /** Entries left out by --limit (not errors). */
  readonly notSelected: number;
  /** What was done to the class modules to load them in the sandbox. */
  readonly notes: readonly string[];
}

export interface BfclImportRequest {
  readonly runId: string;
  readonly layout: BfclLayout;
  readonly categories: readonly BfclCategory[];
  /** At most this many entries of each category (the first ones, in file order). */
  readonly limit?: number;
  readonly append?: boolean;
  /** Gold replays run at once (sessions in the Python runtime). */
  readonly concurrency?: number;
  /**
   * Top-level names of the packages the Python runtime is given (config.python.packages): a class module's
   * import of one of them (mpmath) is kept, and the entries that need it are imported.
   */
  readonly pythonPackages?: readonly string[];
}

export type BfclImportProgress =
  | { readonly phase: 'read'; readonly file: string; readonly records: number }
  | { readonly phase: 'replay'; readonly done: number; readonly total: number }
  | { readonly phase: 'write'; readonly kind: 'env' | 'scenario'; readonly done: number; readonly total: number };


/** Limits of the gold replay: the modules with the long-context filler take seconds to load. */
export const BFCL_REPLAY_LIMITS: SandboxLimits = { ...DEFAULT_SANDBOX_LIMITS, createDeadlineMs: 60_000, callDeadlineMs: 10_000, sessionCpuMs: 120_000 };

/** The JSON Lines records of a file, each with its line; a line that is not JSON is reported. */
async function jsonLines(path: string): Promise<{ line: number; value?: unknown; text?: string; error?: string }[]> {
  const text = await readTextFile(path);
  const out: { line: number; value?: unknown; text?: string; error?: string }[] = [];
  text.split('\n').forEach((l, i) => {
    if (!l.trim()) return;
    try {
      out.push({ line: i + 1, value: JSON.parse(l) as unknown, text: l });
    } catch (err) {
      out.push({ line: i + 1, error: `not JSON (${(err as Error).message})` });
    }
  });
  return out;
}

/** The names of the functions a gold call string calls (BFCL's own pattern: a name before "("). */
const calledNames = (call: string): string[] => [...call.matchAll(/\b([A-Za-z_]\w*)\s*(?=\()/g)].map(m => m[1]!);

/** Methods of a module whose body uses `name` (a module the sandbox does not have): `def x(` blocks read as text. */
export function methodsUsing(source: string, name: string): string[] {
  const out: string[] = [];
  const defs = [...source.matchAll(/^([ \t]+)def[ \t]+(\w+)[ \t]*\(/gm)];
  defs.forEach((d, i) => {
    const end = i + 1 < defs.length ? defs[i + 1]!.index : source.length;
    if (new RegExp(`\\b${name}\\.`).test(source.slice(d.index, end))) out.push(d[2]!);
  });
  return out;
}

function mapEntry(raw: unknown, answer: unknown, category: BfclCategory, file: string, line: number, classTools: ReadonlyMap<string, readonly string[]>, addedPrompt: string, text?: string): { ok: true; entry: BfclEntry } | { ok: false; id: string; problem: string } {
  const id = isObject(raw) && typeof raw['id'] === 'string' ? raw['id'] : '';
  const fail = (problem: string) => ({ ok: false as const, id, problem });
  if (!isObject(raw)) return fail('not a JSON object');
  if (!ID.test(id)) return fail(`id ${JSON.stringify(raw['id'] ?? null)} is missing or not an id (letters, digits, _ . -)`);
  const classes = raw['involved_classes'];
  if (!Array.isArray(classes) || classes.length === 0 || !classes.every(c => typeof c === 'string')) return fail('involved_classes must be a non-empty list of class names');
  const unsupported = classes.filter(c => NOT_SUPPORTED.test(c));
  if (unsupported.length) return fail(`involves ${unsupported.join(', ')}, which envfleet does not import (they need web search or memory back-ends)`);
  const unknown = classes.filter(c => !classTools.has(c));
  if (unknown.length) return fail(`involves ${unknown.join(', ')}, which the checkout's class map (executable_backend_config.py) does not name`);
  const initialConfig = raw['initial_config'] ?? {};
  if (!isObject(initialConfig)) return fail('initial_config must be an object {Class: {attribute: value}}');
  const configText = text === undefined ? undefined : jsonMemberText(text, 'initial_config');
  // Only for a config that is there: `null` reads as {} and keeps no text.
  const initialConfigJson = configText === undefined || raw['initial_config'] === null ? undefined : pythonTextWhereLost(configText, initialConfig);
  const question = raw['question'];
  if (!Array.isArray(question) || question.length === 0) return fail('question must be a non-empty list of turns');
  const names = new Set(classes.flatMap(c => classTools.get(c) ?? []));
  const excluded = raw['excluded_function'] ?? [];
  if (!Array.isArray(excluded) || !excluded.every(x => typeof x === 'string')) return fail('excluded_function must be a list of function names');
  const missed = raw['missed_function'] ?? {};
  if (!isObject(missed)) return fail('missed_function must be an object {turn: [function names]}');
  const added = new Map<number, string[]>();
  for (const [k, v] of Object.entries(missed)) {
    const turn = Number(k);
    if (!Number.isInteger(turn) || turn < 0 || turn >= question.length) return fail(`missed_function names turn ${JSON.stringify(k)}, not a turn of the entry (0..${question.length - 1})`);
    if (!Array.isArray(v) || !v.every(x => typeof x === 'string')) return fail(`missed_function["${k}"] must be a list of function names`);
    added.set(turn, v);
  }
  for (const n of [...(excluded), ...[...added.values()].flat()]) if (!names.has(n)) return fail(`names the function ${n}, which none of its classes has`);
  const turns: ScriptedTurn[] = [];
  for (const [i, t] of question.entries()) {
    if (!Array.isArray(t)) return fail(`question[${i}] is not a list of messages`);
    const texts: string[] = [];
    for (const [j, m] of t.entries()) {
      if (!isObject(m) || typeof m['content'] !== 'string') return fail(`question[${i}][${j}] is not a message {role, content}`);
      if (m['role'] !== 'user') return fail(`question[${i}][${j}] has role ${JSON.stringify(m['role'])}; only user turns are supported`);
      texts.push(m['content']);
    }
    const add = added.get(i);
    if (texts.length === 0) {
      if (!add) return fail(`question[${i}] is empty and adds no function (missed_function): nothing to say in that turn`);
      texts.push(addedPrompt);
    }
    turns.push({ messages: texts, ...(add ? { addTools: add } : {}) });
  }
  if (!isObject(answer)) return fail(`no gold answer with id ${id} in the possible_answer file`);
  const gt = answer['ground_truth'];
  if (!Array.isArray(gt) || !gt.every(t => Array.isArray(t) && t.every(c => typeof c === 'string'))) return fail('the gold answer\'s ground_truth must be a list of turns, each a list of call strings');
  if (gt.length !== turns.length) return fail(`the gold answer has ${gt.length} turns, the question ${turns.length}`);
  return {
    ok: true,
    entry: { id, category, file, line, classes: [...(classes)].sort(), initialConfig, ...(initialConfigJson === undefined ? {} : { initialConfigJson }), turns, excluded: excluded, withheld: [...added.values()].flat(), gold: gt, raw },
  };
}

/** An environment id for a combination: its class names when they fit. */
const envIdOf = (classes: readonly string[]) => {
  const id = `bfcl-${classes.join('-')}`;
  return ID.test(id) ? id : `bfcl-${hashOf(classes, 16)}`;
};

/** Runs `fn` over `items`, `n` at a time. */
async function pool<T>(items: readonly T[], n: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.max(1, Math.min(n, items.length)) }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i]!, i);
      }
    }),
  );
}

/**
 * Replays an entry's gold calls in the sandbox, turn by turn (each call string parsed with Python's
 * ast there, by the router's `_replay_call`): the state after each turn and each call's result.
 * A call the sandbox refuses or that fails in the router (not in the class: that is a result) is the
 * entry's problem.
 */
async function replayGold(sandbox: SandboxRunner, env: BfclEnv, entry: BfclEntry, limits: SandboxLimits): Promise<{ ok: true; gold: BfclGoldTurn[]; calls: number } | { ok: false; problem: string }> {
  const code = { name: env.record.description.summary, className: env.record.className!, source: env.record.source!, tools: [...env.record.tools!, REPLAY_TOOL], language: 'python' as const };
  let session;
  try {
    session = await sandbox.openSession(code, initialStateOf(entry), limits, initialStateJsonOf(entry));
  } catch (err) {
    return { ok: false, problem: `the environment did not start in the sandbox: ${(err as Error).message}` };
  }
  try {
    const gold: BfclGoldTurn[] = [];
    let calls = 0;
    for (const [t, turn] of entry.gold.entries()) {
      const results: unknown[] = [];
      for (const call of turn) {
        const out = await session.call(REPLAY_TOOL.function.name, { call });
        calls += 1;
        if (out.runtimeError) return { ok: false, problem: `gold call ${JSON.stringify(call)} of turn ${t} could not run: ${out.runtimeError}: ${JSON.stringify(out.result)}` };
        // As the session wrote them (a float 10000.0 stays one), not as JavaScript reads them back.
        results.push(out.resultJson === undefined ? out.result : new RawJson(out.resultJson));
      }
      gold.push({ calls: turn.length, state: session.snapshotJson ? new RawJson(await session.snapshotJson()) : await session.snapshot(), results });
    }
    return { ok: true, gold, calls };
  } catch (err) {
    return { ok: false, problem: `the gold replay failed: ${(err as Error).message}` };
  } finally {
    await session.close().catch(() => undefined);
  }
}

/** The router's initial state: keys with a double underscore, so they are set on the instance but are not its state. */
const initialStateOf = (entry: BfclEntry) => ({ __initial_config: entry.initialConfig, __long_context: entry.category === 'long_context' });
/** The same as Python reads the entry's text (10000.0 a float), where JavaScript's reading differs; else undefined. */
const initialStateJsonOf = (entry: BfclEntry): string | undefined =>
  entry.initialConfigJson === undefined ? undefined : `{"__initial_config":${entry.initialConfigJson},"__long_context":${entry.category === 'long_context'}}`;

/**
 * Imports BFCL's multi-turn entries into run `runId`: creates the run (input `bfcl`) when absent;
 * refuses a run made from other input unless `append`. Reads the checkout, builds the environments,
 * replays the gold calls of every entry that is new or changed in the sandbox (`sandbox`: it must
 * run Python), then writes environments as kept and scenarios as ready. Idempotent: a document
 * already in the run with the same content is not written again, and an entry already imported from
 * the same input is not replayed again.
 */
export async function importBfcl(store: RunStore, sandbox: SandboxRunner, request: BfclImportRequest, options: RunOptions, progress?: (p: BfclImportProgress) => void, logger?: Logger): Promise<BfclImportSummary> {
  const { runId, layout } = request;
  checkRunName(runId);
  const existing = await store.getRun(runId);
  if (existing && existing.input !== 'bfcl' && !request.append) {
    throw new RequestError(`run "${runId}" exists and was made from ${existing.input}, not imported from BFCL: import into another run name, or pass --append to add BFCL's environments and scenarios to it`);
  }
  const now = new Date().toISOString();
  const skipped: SkippedRecord[] = [];
  const notes: string[] = [];

  // Classes, modules and tools.
  const configText = await readTextFile(layout.configFile);
  const classModule = pythonStringDict(configText, 'CLASS_FILE_PATH_MAPPING');
  const classDoc = pythonStringDict(configText, 'MULTI_TURN_FUNC_DOC_FILE_MAPPING');
  if (!classModule || !classDoc) throw new RequestError(`${layout.configFile}: no ${classModule ? 'MULTI_TURN_FUNC_DOC_FILE_MAPPING' : 'CLASS_FILE_PATH_MAPPING'} = {...} there; is this a BFCL checkout of a supported version?`);
  const modules = new Map<string, BfclModule>();
  const classTools = new Map<string, string[]>();
  const toolDefs = new Map<string, FunctionTool>();
  const toolOwner = new Map<string, string>();
  const stubbedMethods = new Map<string, string>();
  const available = new Set(request.pythonPackages ?? []);
  for (const [className, path] of classModule) {
    if (NOT_SUPPORTED.test(className)) continue;
    const module = path.split('.').pop()!;
    const file = join(layout.sourceDir, `${module}.py`);
    const docName = classDoc.get(className);
    const docFile = docName ? join(layout.funcDocDir, docName) : null;
    if (!(await exists(file, false)) || !docFile || !(await exists(docFile, false))) {
      notes.push(`class ${className}: ${!(await exists(file, false)) ? `${file} is missing` : `no function doc file${docFile ? ` (${docFile})` : ''}`}; its entries are skipped`);
      continue;
    }
    const source = await readTextFile(file);
    if (!new RegExp(`^class[ \\t]+${className}\\b`, 'm').test(source)) {
      notes.push(`class ${className}: ${file} does not define it; its entries are skipped`);
      continue;
    }
    modules.set(className, { className, module, source });
    const names: string[] = [];
    for (const r of await jsonLines(docFile)) {
      const where = `${basename(docFile)} line ${r.line}`;
      if (r.error) throw new RequestError(`${docFile} line ${r.line}: ${r.error}`);
      let tool: FunctionTool;
      try {
        tool = toolFromFuncDoc(r.value, where);
      } catch (err) {
        throw new RequestError(`${docFile}: ${(err as Error).message}`);
      }
      const name = tool.function.name;
      const owner = toolOwner.get(name);
      if (owner) throw new RequestError(`${docFile} line ${r.line}: the function ${name} is also ${owner}'s; function names must be unique across classes (the router dispatches by name)`);
      toolOwner.set(name, className);
      toolDefs.set(name, tool);
      names.push(name);
    }
    classTools.set(className, names);
    for (const [mod, why] of Object.entries(UNAVAILABLE_MODULES)) {
      if (!new RegExp(`^import[ \\t]+${mod}\\b`, 'm').test(source)) continue;
      if (available.has(mod)) {
        notes.push(`${module}.py imports ${mod}: the Python runtime is given it (ENVFLEET_PYTHON_PACKAGES), so the import is kept; the workers that run these environments need it too`);
        continue;
      }
      const using = methodsUsing(source, mod).filter(m => names.includes(m));
      for (const m of using) stubbedMethods.set(m, `${className}.${m} needs ${mod}: ${why}`);
      notes.push(`${module}.py imports ${mod}, which the sandbox does not have: it is a stand-in that raises, so ${using.join(', ') || 'no tool'} fail${using.length === 1 ? 's' : ''} as a tool error; entries whose gold calls use ${using.length === 1 ? 'it' : 'them'} are skipped`);
    }
    if (/^import[ \t]+subprocess[ \t]*$/m.test(source)) notes.push(`${module}.py imports subprocess without using it: the import is left out (the sandbox refuses subprocess)`);
  }
  const lcFile = join(layout.sourceDir, `${LONG_CONTEXT_MODULE}.py`);
  const longContext: BfclModule | null = (await exists(lcFile, false)) ? { className: '', module: LONG_CONTEXT_MODULE, source: await readTextFile(lcFile) } : null;
  let addedPrompt = DEFAULT_ADDED_FUNCTIONS_PROMPT;
  if (layout.promptsFile) {
    const text = await readTextFile(layout.promptsFile);
    const m = /^DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC\s*=\s*(\(?)\s*"((?:[^"\\]|\\.)*)"(\s*\)?)/m.exec(text);
    let read: string | null = null;
    try {
      // A plain one-part literal whose escapes JSON also has; anything else (\x41, \', "a" "b") is not read.
      if (m && (m[1] === '' || m[3]!.trim() === ')')) read = JSON.parse(`"${m[2]!}"`) as string;
    } catch {
      read = null;
    }
    if (read !== null) addedPrompt = read;
    else if (m) notes.push(`${layout.promptsFile}: DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC (line ${text.slice(0, m.index).split('\n').length}) is not a plain string literal envfleet can read; the turns that add functions say "${DEFAULT_ADDED_FUNCTIONS_PROMPT}" instead`);
  }

  // Entries.
  const entries: BfclEntry[] = [];
  const seen = new Map<string, string>();
  let notSelected = 0;
  for (const category of request.categories) {
    const files = layout.categories[category];
    if (!files) continue;
    const answers = new Map<string, unknown>();
    for (const r of await jsonLines(files.answers)) {
      if (r.error) skipped.push({ file: basename(files.answers), where: `line ${r.line}`, problem: r.error });
      else if (isObject(r.value) && typeof r.value['id'] === 'string') answers.set(r.value['id'], r.value);
    }
    const file = basename(files.entries);
    const records = await jsonLines(files.entries);
    progress?.({ phase: 'read', file, records: records.length });
    let taken = 0;
    for (const r of records) {
      const where = (id: string) => `${id ? `id ${id} ` : ''}(line ${r.line})`;
      if (r.error) {
        skipped.push({ file, where: where(''), problem: r.error });
        continue;
      }
      if (request.limit !== undefined && taken >= request.limit) {
        notSelected += 1;
        continue;
      }
      const id = isObject(r.value) && typeof r.value['id'] === 'string' ? r.value['id'] : '';
      const mapped = mapEntry(r.value, answers.get(id), category, file, r.line, classTools, addedPrompt, r.text);
      if (!mapped.ok) {
        skipped.push({ file, where: where(mapped.id), problem: mapped.problem });
        continue;
      }
      const e = mapped.entry;
      const first = seen.get(e.id);
      if (first) {
        skipped.push({ file, where: where(e.id), problem: `id ${e.id} was already read at ${first}` });
        continue;
      }
      const needs = [...new Set(e.gold.flat().flatMap(calledNames))].filter(n => stubbedMethods.has(n));
      if (needs.length) {
        skipped.push({ file, where: where(e.id), problem: `its gold calls use ${needs.join(', ')}: ${needs.map(n => stubbedMethods.get(n)).join('; ')}` });
        continue;
      }
      seen.set(e.id, `${file} line ${r.line}`);
      entries.push(e);
      taken += 1;
    }
  }

  // Environments: one per combination of classes that an entry uses.
  const envs = new Map<string, BfclEnv>();
  const envProblems = new Map<string, string>();
  for (const e of entries) {
    const key = e.classes.join('+');
    if (envs.has(key) || envProblems.has(key)) continue;
    const toolsByClass = new Map(e.classes.map(c => [c, classTools.get(c)!] as const));
    let source: string;
    try {
      source = routerSource(e.classes, modules, longContext, toolsByClass, available);
    } catch (err) {
      if (!(err instanceof BfclSourceError)) throw err;
      envProblems.set(key, err.message);
      continue;
    }
    const id = envIdOf(e.classes);
    const className = routerClassName(e.classes);
    const tools = e.classes.flatMap(c => classTools.get(c)!.map(n => toolDefs.get(n)!));
    const summary = `BFCL multi-turn: ${e.classes.join(' + ')}`;
    const original: ImportedFrom = { envId: e.classes.join('+'), className, file: e.classes.map(c => `${modules.get(c)!.module}.py`).join(', '), record: e.classes.join('+'), contentHash: hashOf({ v: IMPORT_VERSION, source, tools }, 32) };
    const record: EnvironmentRecord = {
      id,
      runId,
      status: 'kept',
      description: {
        summary,
        introduction: `${summary}. The Berkeley Function-Calling Leaderboard's multi-turn classes (${e.classes.join(', ')}), each instance loaded from the scenario's initial configuration; every tool belongs to one class.`,
      },
      state: {
        className,
        entities: e.classes.map(c => ({ name: c, description: `the public attributes of the ${c} instance`, attributes: [] })),
        rules: [],
        stateSchema: { type: 'object', description: 'BFCL: one member per class, holding that instance\'s public attributes (objects as their public attributes, without parent links)', properties: Object.fromEntries(e.classes.map(c => [c, { type: 'object' }])) },
        exampleState: {},
      },
      className,
      operations: tools.map(t => ({ name: t.function.name, kind: 'state_change' as const, description: t.function.description ?? t.function.name, parameters: t.function.parameters ?? { type: 'object', properties: {} } })),
      source,
      language: 'python',
      tools,
      failure: null,
      lineage: { runId, sourceTaskId: null, models: {}, prompts: {}, createdAt: now, source: 'bfcl', original },
    };
    envs.set(key, { id, classes: e.classes, record });
  }

  const created = existing ? false : await store.createRun({ id: runId, createdAt: now, input: 'bfcl', options });

  // Gold replay, for entries not already imported from the same input.
  const scenarioDocs: ScenarioRecord[] = [];
  const toReplay: { e: BfclEntry; env: BfclEnv; hash: string }[] = [];
  const reusedDocs = new Map<string, ScenarioRecord>();
  for (const e of entries) {
    const key = e.classes.join('+');
    const env = envs.get(key);
    if (!env) {
      skipped.push({ file: e.file, where: `id ${e.id} (line ${e.line})`, problem: `its environment (${e.classes.join(' + ')}) could not be built: ${envProblems.get(key)}` });
      continue;
    }
    const hash = hashOf({ v: IMPORT_VERSION, raw: e.raw, gold: e.gold, env: env.record.lineage.original!.contentHash, addedPrompt }, 32);
    const before = await store.getDoc(runId, 'scenario', e.id);
    if (before && before.lineage.source === 'bfcl' && before.lineage.original?.contentHash === hash && before.checklist?.length) reusedDocs.set(e.id, before);
    else toReplay.push({ e, env, hash });
  }
  const golds = new Map<string, BfclGoldTurn[]>();
  const started = Date.now();
  let calls = 0;
  let done = 0;
  await pool(toReplay, request.concurrency ?? 2, async ({ e, env }) => {
    const r = await replayGold(sandbox, env, e, BFCL_REPLAY_LIMITS);
    if (r.ok) {
      golds.set(e.id, r.gold);
      calls += r.calls;
    } else {
      skipped.push({ file: e.file, where: `id ${e.id} (line ${e.line})`, problem: r.problem });
      logger?.warn({ entry: e.id, problem: r.problem }, 'a BFCL gold replay failed; the entry is skipped');
    }
    done += 1;
    if (done % 10 === 0 || done === toReplay.length) progress?.({ phase: 'replay', done, total: toReplay.length });
  });
  const replayMs = Date.now() - started;

  const usedEnvs = new Set<string>();
  const indexOf = new Map<string, number>();
  const byCategory: Record<string, number> = {};
  for (const e of entries) {
    const env = envs.get(e.classes.join('+'));
    if (!env) continue;
    const reused = reusedDocs.get(e.id);
    const gold = golds.get(e.id);
    if (!reused && !gold) continue;
    const item = toReplay.find(x => x.e.id === e.id);
    const index = indexOf.get(env.id) ?? 0;
    indexOf.set(env.id, index + 1);
    usedEnvs.add(env.id);
    byCategory[e.category] = (byCategory[e.category] ?? 0) + 1;
    const initialStateJson = initialStateJsonOf(e);
    if (reused) {
      // A scenario imported before its config was read as Python reads it gets the text too (its gold compares alike: the check's _norm).
      scenarioDocs.push({ ...reused, index, ...(initialStateJson === undefined ? {} : { initialStateJson }) });
      continue;
    }
    const check = bfclCheck(e.id, gold!);
    const initialState = initialStateOf(e);
    const original: ImportedFrom = { envId: env.record.lineage.original!.envId, className: env.record.className!, taskId: e.id, category: e.category, contentHash: item!.hash, file: e.file, record: e.line };
    scenarioDocs.push({
      id: e.id,
      runId,
      environmentId: env.id,
      index,
      status: 'ready',
      initialState,
      ...(initialStateJson === undefined ? {} : { initialStateJson }),
      stateHash: hashOf(initialState, 32),
      task: e.turns[0]!.messages.join('\n'),
      checklistItems: [check.item],
      checklist: [check],
      script: {
        turns: e.turns,
        ...(e.excluded.length ? { excludedTools: e.excluded } : {}),
        ...(e.withheld.length ? { withheldTools: e.withheld } : {}),
        maxStepsPerTurn: BFCL_STEPS_PER_TURN,
      },
      dropReason: null,
      lineage: { runId, environmentId: env.id, models: {}, prompts: {}, createdAt: now, source: 'bfcl', original },
    });
  }

  const rolledOut = rolloutsLookup(store, runId);
  const envCounts = { imported: 0, unchanged: 0, updated: 0 };
  const chosen = [...envs.values()].filter(e => usedEnvs.has(e.id));
  const blocked = new Set<string>();
  for (const [i, { record: env }] of chosen.entries()) {
    const w = await writeImported(store, runId, 'env', env, 'bfcl', undefined, rolledOut);
    if (w.outcome === 'foreign' || w.outcome === 'rolled-out') {
      const problem = w.outcome === 'foreign' ? `run "${runId}" already has a ${w.other.status} environment ${env.id} that was not imported from BFCL: left as it is` : rolledOutProblem(runId, 'env', env.id);
      skipped.push({ file: env.lineage.original!.file, where: `environment ${env.id}`, problem });
      blocked.add(env.id);
      continue;
    }
    envCounts[w.outcome] += 1;
    progress?.({ phase: 'write', kind: 'env', done: i + 1, total: chosen.length });
  }
  const scnCounts = { imported: 0, unchanged: 0, updated: 0 };
  let checks = 0;
  const writable = scenarioDocs.filter(d => !blocked.has(d.environmentId));
  for (const [i, doc] of writable.entries()) {
    const w = await writeImported(store, runId, 'scenario', doc, 'bfcl', reusedDocs.get(doc.id), rolledOut);
    if (w.outcome === 'rolled-out') {
      skipped.push({ file: String(doc.lineage.original?.file ?? ''), where: `id ${doc.id}`, problem: rolledOutProblem(runId, 'scenario', doc.id) });
      continue;
    }
    if (w.outcome === 'foreign') {
      skipped.push({ file: String(doc.lineage.original?.file ?? ''), where: `id ${doc.id}`, problem: `run "${runId}" already has a scenario ${doc.id} that was not imported from BFCL: left as it is` });
      continue;
    }
    scnCounts[w.outcome] += 1;
    checks += doc.checklist?.length ?? 0;
    if ((i + 1) % 100 === 0 || i + 1 === writable.length) progress?.({ phase: 'write', kind: 'scenario', done: i + 1, total: writable.length });
  }

  return {
    runId,
    created,
    environments: envCounts,
    scenarios: { ...scnCounts, byCategory },
    checks,
    replay: { entries: toReplay.length, reused: reusedDocs.size, calls, ms: replayMs },
    skipped,
    notSelected,
    notes,
  };
}
