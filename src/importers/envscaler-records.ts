import { FunctionTool } from '../sandbox/bundle.js';
import { ALLOWED_IMPORTS } from '../sandbox/python/python-harness.mjs';
import type { ScenarioRecord } from '../scenarios/types.js';
import type { Operation, StateOutput } from '../synthesis/schemas.js';
import type { EnvironmentRecord, ImportedFrom } from '../synthesis/types.js';
import { hashOf } from '../util/canonical.js';
import { jsonMemberText } from '../util/json-member.js';
import { pythonTextWhereLost } from '../util/python-json.js';
import { PYTHON_KEYWORD_NAME } from '../sandbox/python/python-runner.js';

/**
 * EnvScaler's data (RUC-NLPIR/EnvScaler; the accepted shapes are in docs/formats.md, "Imported data: envfleet import envscaler") mapped to
 * envfleet's environment and scenario documents. Pure functions: each takes one parsed record and
 * returns the document, or what is wrong with the record in words that name the field. Nothing here
 * runs the Python code; it is carried as text with `language: 'python'`.
 *
 * Both published shapes are accepted: the GitHub files (fields as JSON values) and the Hugging Face
 * rows (`tools`, `init_config` and the other structured fields as JSON strings).
 */

/** A Python identifier as the Python runtime accepts it (ASCII: names are looked up with getattr and passed as keywords). */
export const PYTHON_IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** envfleet ids (environments.jsonl `id`, scenario ids in the serve API): kept as EnvScaler wrote them when they fit. */
const ID = /^[A-Za-z0-9_.-]{1,120}$/;

/** Field names of EnvScaler's environment and scenario records (a JSON object whose first member is one of these is a row, not a file keyed by env_id). */
export const ENVSCALER_FIELDS: ReadonlySet<string> = new Set([
  'env_id',
  'env_class_name',
  'env_class_code',
  'env_class_def',
  'env_func_details',
  'environment_summary',
  'environment_introduction',
  'state_space_definition',
  'constraints_rules',
  'operation_list',
  'tools',
  'task_id',
  'task',
  'init_config',
  'checklist',
  'checklist_with_func',
]);

/**
 * Modules the Python runtime lets environment code import (its own list, checked there on the
 * source's syntax tree). The import only warns about others: the runtime refuses them when the
 * environment loads.
 */
export const PYTHON_IMPORT_ALLOW_LIST: ReadonlySet<string> = new Set(ALLOWED_IMPORTS);

/** Where a record was read: the file's base name, and the record's index (or its key in a file keyed by env_id). */
export interface RecordPlace {
  readonly file: string;
  readonly index: number;
  readonly key?: string;
  readonly line: number;
  /** A row of a page of Hugging Face's rows API (`index` is its row_idx). */
  readonly rowOfPage?: true;
}

export type Mapped<T> = { readonly ok: true; readonly value: T; readonly warnings: readonly string[] } | { readonly ok: false; readonly problem: string };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const fail = (problem: string): Mapped<never> => ({ ok: false, problem });

/** A field that holds JSON, either as the value itself (GitHub) or as a JSON string (Hugging Face rows). */
function jsonField(record: Record<string, unknown>, name: string): { value: unknown } | { problem: string } {
  const v = record[name];
  if (typeof v !== 'string') return { value: v };
  const text = v.trim();
  if (!text) return { value: undefined };
  try {
    return { value: JSON.parse(text) as unknown };
  } catch (err) {
    return { problem: `${name} is a string but not JSON (${(err as Error).message})` };
  }
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v.trim() ? v : undefined);

/** `import a.b, c` and `from a.b import c`, anywhere in the source (EnvScaler hoists imports but does not filter them). */
export function pythonImports(source: string): string[] {
  const out = new Set<string>();
  for (const m of source.matchAll(/^[ \t]*(?:from[ \t]+([A-Za-z_][\w.]*)[ \t]+import\b|import[ \t]+([A-Za-z_][\w.]*(?:[ \t]*,[ \t]*[A-Za-z_][\w.]*)*))/gm)) {
    if (m[1]) out.add(m[1].split('.')[0]!);
    else for (const name of m[2]!.split(',')) out.add(name.trim().split('.')[0]!);
  }
  return [...out];
}

/** A tool of the record: an OpenAI function tool, or its bare `{name, description, parameters}`. */
function toolOf(raw: unknown, i: number): FunctionTool | string {
  const wrapped = isObject(raw) && raw['type'] === undefined && typeof raw['name'] === 'string' ? { type: 'function', function: raw } : raw;
  const parsed = FunctionTool.safeParse(wrapped);
  if (!parsed.success) return `tools[${i}]: not an OpenAI function tool ({"type": "function", "function": {"name", "description", "parameters"}}): ${parsed.error.issues.map(x => `${x.path.join('.') || '(tool)'}: ${x.message}`).join('; ')}`;
  const name = parsed.data.function.name;
  if (!PYTHON_IDENTIFIER.test(name)) return `tools[${i}]: the name ${JSON.stringify(name)} is not a Python identifier (ASCII letters, digits and _, not starting with a digit): it is the tool's name too, and model APIs take ASCII tool names only`;
  const params = parsed.data.function.parameters;
  if (params !== undefined && params['type'] !== undefined && params['type'] !== 'object') return `tools[${i}] (${name}): parameters must be a JSON Schema of type "object"`;
  return parsed.data;
}

/** Text of a field that should hold text: a string as it is, anything else as JSON (never "[object Object]"). */
const text = (v: unknown): string => (typeof v === 'string' ? v : v === undefined || v === null ? '' : JSON.stringify(v));

/** EnvScaler's state_space_definition ({entity, attributes, description}; attributes a list or a comma-separated string) as entities. */
function entitiesOf(raw: unknown): StateOutput['entities'] {
  if (!Array.isArray(raw)) return [];
  return raw.filter(isObject).map(e => {
    const attrs = e['attributes'];
    const list: unknown[] = typeof attrs === 'string' ? attrs.split(',') : Array.isArray(attrs) ? attrs : [];
    return {
      name: text(e['entity'] ?? e['name']),
      description: text(e['description']),
      attributes: list.map(a => (isObject(a) ? { name: text(a['name']), type: text(a['type']), description: text(a['description']) } : { name: text(a).trim(), type: '', description: '' })),
    };
  });
}

const QUERY = /^(query|read|get|list|search|retrieve|check|view|lookup|find)/i;

/**
 * One environment record of EnvScaler's env metadata (`191_env_metadata.json`: a member of the object
 * keyed by env_id; or a Hugging Face row) as a kept environment of run `runId`.
 */
export function environmentFromEnvscaler(raw: unknown, place: RecordPlace, runId: string, now: string): Mapped<EnvironmentRecord> {
  if (!isObject(raw)) return fail(`not a JSON object (${Array.isArray(raw) ? 'an array' : typeof raw})`);
  const envId = str(raw['env_id']) ?? place.key;
  if (!envId) return fail('no env_id');
  if (place.key !== undefined && raw['env_id'] !== undefined && raw['env_id'] !== place.key) return fail(`env_id ${JSON.stringify(raw['env_id'])} differs from its key ${JSON.stringify(place.key)} in the file`);
  const className = raw['env_class_name'];
  if (typeof className !== 'string' || !PYTHON_IDENTIFIER.test(className)) return fail(`env_class_name ${JSON.stringify(className ?? null)} is not a Python identifier (ASCII letters, digits and _, not starting with a digit)`);
  const source = str(raw['env_class_code']);
  if (!source) return fail('env_class_code (the class source) is missing or empty');
  if (!new RegExp(`^[ \\t]*class[ \\t]+${className}\\b`, 'm').test(source)) return fail(`env_class_code does not define class ${className}`);

  const toolsField = jsonField(raw, 'tools');
  if ('problem' in toolsField) return fail(toolsField.problem);
  if (!Array.isArray(toolsField.value) || toolsField.value.length === 0) return fail('tools must be a non-empty list of OpenAI function tools (or a JSON string of one)');
  const tools: FunctionTool[] = [];
  for (const [i, t] of toolsField.value.entries()) {
    const tool = toolOf(t, i);
    if (typeof tool === 'string') return fail(tool);
    if (tools.some(x => x.function.name === tool.function.name)) return fail(`tools[${i}]: the name ${tool.function.name} is given twice`);
    tools.push(tool);
  }

  const structured: Record<string, unknown> = {};
  for (const name of ['state_space_definition', 'constraints_rules', 'operation_list']) {
    const f = jsonField(raw, name);
    // A plain-text rules field (not JSON) is one rule; the others must be JSON when they are strings.
    if ('problem' in f) {
      if (name === 'constraints_rules') structured[name] = [raw[name]];
      else return fail(f.problem);
    } else structured[name] = f.value;
  }
  const rulesRaw = structured['constraints_rules'];
  const rules = (Array.isArray(rulesRaw) ? rulesRaw : typeof rulesRaw === 'string' ? [rulesRaw] : []).filter((r): r is string => typeof r === 'string' && r.trim() !== '');

  const warnings: string[] = [];
  for (const t of tools) if (!new RegExp(`^[ \\t]*def[ \\t]+${t.function.name}[ \\t]*\\(`, 'm').test(source)) warnings.push(`tool ${t.function.name} has no "def ${t.function.name}(" in env_class_code`);
  // The Python runtime passes arguments as keywords and refuses a key that is not a Python identifier (INVALID_ARGUMENTS;
  // accented and CJK letters are identifiers): a tool with such a parameter imports, but no call that gives it can run.
  for (const t of tools) {
    const props = t.function.parameters?.['properties'];
    const bad = isObject(props) ? Object.keys(props).filter(k => !PYTHON_KEYWORD_NAME.test(k)) : [];
    if (bad.length) warnings.push(`tool ${t.function.name}: the parameter${bad.length > 1 ? 's' : ''} ${bad.map(k => JSON.stringify(k)).join(', ')} ${bad.length > 1 ? 'are not Python identifiers' : 'is not a Python identifier'} (letters, digits and _, not starting with a digit): the Python runtime refuses every call that passes ${bad.length > 1 ? 'them' : 'it'} (INVALID_ARGUMENTS); rename ${bad.length > 1 ? 'them' : 'it'} in tools and in the method`);
  }
  const imports = pythonImports(source);
  const refused = imports.filter(m => !PYTHON_IMPORT_ALLOW_LIST.has(m));
  if (refused.length) warnings.push(`env_class_code imports ${refused.join(', ')}, outside the Python runtime's allow-list: it will fail to load (SOURCE_LOAD_FAILED) unless each such import is optional, inside a try whose except catches ImportError or under if TYPE_CHECKING: (there the import raises ModuleNotFoundError, as in a CPython without the module)`);

  const kinds = new Map<string, Operation['kind']>();
  const opDescriptions = new Map<string, string>();
  if (Array.isArray(structured['operation_list'])) {
    for (const op of structured['operation_list'].filter(isObject)) {
      const name = str(op['operation_name']);
      if (!name) continue;
      const type = str(op['operation_type']) ?? '';
      kinds.set(name, QUERY.test(type) ? 'query' : 'state_change');
      if (str(op['operation_description'])) opDescriptions.set(name, op['operation_description'] as string);
    }
  }
  const operations: Operation[] = tools.map(t => ({
    name: t.function.name,
    kind: kinds.get(t.function.name) ?? (QUERY.test(t.function.name) ? 'query' : 'state_change'),
    description: t.function.description ?? opDescriptions.get(t.function.name) ?? t.function.name,
    parameters: t.function.parameters ?? { type: 'object', properties: {} },
  }));

  const introduction = str(raw['environment_introduction']);
  const summary = str(raw['environment_summary']) ?? introduction?.split('\n')[0] ?? className;
  const id = ID.test(envId) ? envId : `envscaler-${hashOf(envId, 16)}`;
  const original: ImportedFrom = { envId, className, file: place.file, record: place.key ?? place.index };
  return {
    ok: true,
    warnings,
    value: {
      id,
      runId,
      status: 'kept',
      description: { summary, introduction: introduction ?? summary },
      state: {
        className,
        entities: entitiesOf(structured['state_space_definition']),
        rules,
        // EnvScaler has no state schema: the state is vars(instance), whatever the class keeps.
        stateSchema: { type: 'object', description: 'EnvScaler environment: the state is the instance attributes (vars(instance)); no schema was published' },
        exampleState: {},
      },
      className,
      operations,
      source,
      language: 'python',
      tools,
      failure: null,
      lineage: { runId, sourceTaskId: null, models: {}, prompts: {}, createdAt: now, source: 'envscaler', original },
    },
  };
}

/** What a scenario record needs of its environment. */
export interface ScenarioEnv {
  readonly id: string;
  readonly envId: string;
  readonly className: string;
}

/**
 * A scenario's id from its EnvScaler task_id: the task_id as written, unless it is `shared` (the import reads it in
 * more than one environment: EnvScaler's own task generation writes local `MMDD-HHMMSS` timestamps, and scenario ids
 * are per run, not per environment) and does not name its environment (the published files' `env_148_rl-task_1`):
 * then the env_id, a dash and the task_id. `scn-` and a hash of the record when there is no task_id or that is not an
 * envfleet id.
 */
export function scenarioIdOf(record: { readonly envId: string; readonly taskId: string | undefined; readonly task: string | undefined; readonly initialState: unknown }, shared = false): string {
  const { envId, taskId } = record;
  const named = taskId !== undefined && taskId.startsWith(envId) && !/[A-Za-z0-9]/.test(taskId.charAt(envId.length));
  const id = taskId === undefined ? undefined : named || !shared ? taskId : `${envId}-${taskId}`;
  return id !== undefined && ID.test(id) ? id : `scn-${hashOf({ envId, taskId: taskId ?? null, task: record.task, initialState: record.initialState }, 16)}`;
}

/** An EnvScaler scenario, mapped: the document (without its index among its environment's scenarios) and its set. */
export interface MappedScenario {
  readonly envId: string;
  readonly split: 'rl' | 'sft';
  readonly scenario: Omit<ScenarioRecord, 'index'>;
}

/**
 * One scenario record of EnvScaler's RL or SFT scenario metadata (`rl_scenario_metadata.json`,
 * `sft_scenario_metadata.json`, or a Hugging Face row). RL scenarios carry `checklist_with_func`, each
 * item becoming a Python check `{item: check_item, check: check_func, language: 'python'}`; SFT ones
 * have none and are imported `unscored`. `split` is the file's set when its name says it, else the
 * record's (checks or not). `envOf` finds the environment by EnvScaler env_id.
 * `recordText`: the record's JSON text (JsonRecord.text), from which `init_config` is read again as Python reads it
 * (json.load in EnvScaler): where JavaScript's reading differs (`5.0`, an integer past 2^53, `1e16`), the scenario
 * keeps that text as `initialStateJson`, and its Python sessions are made from it.
 */
export function scenarioFromEnvscaler(raw: unknown, place: RecordPlace, runId: string, now: string, envOf: (envId: string) => ScenarioEnv | undefined, fileSplit: 'rl' | 'sft' | null, recordText?: string): Mapped<MappedScenario> {
  if (!isObject(raw)) return fail(`not a JSON object (${Array.isArray(raw) ? 'an array' : typeof raw})`);
  const envId = str(raw['env_id']);
  if (!envId) return fail('no env_id');
  const task = str(raw['task']);
  if (!task) return fail('task is missing or empty');
  const rawTaskId = raw['task_id'];
  const taskId = rawTaskId === undefined || rawTaskId === null ? undefined : typeof rawTaskId === 'number' && Number.isSafeInteger(rawTaskId) ? String(rawTaskId) : str(rawTaskId);
  if (rawTaskId !== undefined && rawTaskId !== null && !taskId) return fail('task_id is not a non-empty string or an integer');

  const init = jsonField(raw, 'init_config');
  if ('problem' in init) return fail(init.problem);
  const initialState = init.value === undefined || init.value === null ? {} : init.value;
  if (!isObject(initialState)) return fail(`init_config must be a JSON object of attribute → value (or a JSON string of one), not ${Array.isArray(initialState) ? 'an array' : typeof initialState}`);
  const configText = typeof raw['init_config'] === 'string' ? raw['init_config'].trim() : recordText === undefined ? undefined : jsonMemberText(recordText, 'init_config');
  const initialStateJson = configText && init.value !== null ? pythonTextWhereLost(configText, initialState) : undefined;

  const checksField = jsonField(raw, 'checklist_with_func');
  if ('problem' in checksField) return fail(checksField.problem);
  const hasChecks = checksField.value !== undefined && checksField.value !== null;
  if (hasChecks && !Array.isArray(checksField.value)) return fail('checklist_with_func must be a list of {check_item, check_func}');
  const checklist: { item: string; check: string; language: 'python' }[] = [];
  for (const [i, c] of ((checksField.value as unknown[] | undefined) ?? []).entries()) {
    if (!isObject(c)) return fail(`checklist_with_func[${i}] is not an object {check_item, check_func}`);
    const item = c['check_item'];
    const check = str(c['check_func']);
    if (typeof item !== 'string') return fail(`checklist_with_func[${i}].check_item is not a string`);
    if (!check) return fail(`checklist_with_func[${i}].check_func is missing or empty`);
    if (!/^[ \t]*def[ \t]+check_func[ \t]*\(/m.test(check)) return fail(`checklist_with_func[${i}].check_func does not define check_func(final_state)`);
    checklist.push({ item, check, language: 'python' });
  }
  const split: 'rl' | 'sft' = fileSplit ?? (hasChecks ? 'rl' : 'sft');

  const env = envOf(envId);
  if (!env) return fail(`its environment ${envId} is not imported (not in the env metadata file, or skipped there)`);
  const className = raw['env_class_name'];
  if (className !== undefined && className !== env.className) return fail(`env_class_name ${JSON.stringify(className)} differs from its environment's (${env.className})`);

  const id = scenarioIdOf({ envId, taskId, task, initialState });
  const original: ImportedFrom = { envId, className: env.className, ...(taskId ? { taskId } : {}), split, file: place.file, record: place.key ?? place.index };
  const warnings = split === 'rl' && checklist.length === 0 ? ['an RL scenario without check functions: imported unscored (no reward)'] : [];
  return {
    ok: true,
    warnings,
    value: {
      envId,
      split,
      scenario: {
        id,
        runId,
        environmentId: env.id,
        status: 'ready',
        initialState,
        ...(initialStateJson === undefined ? {} : { initialStateJson }),
        stateHash: hashOf(initialState, 32),
        task,
        checklistItems: checklist.map(c => c.item),
        checklist,
        ...(checklist.length === 0 ? { unscored: true } : {}),
        dropReason: null,
        lineage: { runId, environmentId: env.id, models: {}, prompts: {}, createdAt: now, source: 'envscaler', original },
      },
    },
  };
}
